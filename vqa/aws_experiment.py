"""``vqa experiment --aws``: the A/B against the two deployed stacks in a sandbox account.

The stacks are found through CloudFormation (``VqaDistributed`` and ``VqaMonolith``: their
outputs name the front doors, their resources the functions, queues and the Auto Scaling group
to meter). Both are driven the same way, through their front doors (:mod:`vqa.api`, called by
:class:`vqa.client.ApiClient`: SigV4 to each stack's ``ApiUrl``), as ``vqa submit/status`` do:
each source is uploaded to both stacks' source buckets, ``POST /streams`` starts it on both at
the same time (the client token names the stream, so a retried request starts nothing twice),
``GET /streams/{id}`` is polled until each is done, and its defects are read from that same
view.

Usage is metered from AWS itself over the run's time window, into the same usage schema the local
runners produce (so one cost model prices both):

- Step Functions: the execution histories (one transition per state entered, plus retries) of the
  executions started in the window; Express: CloudWatch ``ExecutionsStarted``/``ExecutionTime``;
- Lambda: CloudWatch ``Invocations`` and ``Duration`` per function, times its configured memory;
- S3: CloudWatch request metrics (the buckets' ``EntireBucket`` request-metrics filter);
- DynamoDB consumed capacity, SNS publishes, SQS messages, CloudWatch Logs ``IncomingBytes``;
- the monolith's worker CPU-seconds from the shard services' ``CPUUtilization`` and the ASG's
  instance-hours from ``GroupInServiceInstances`` (or, without group metrics, its instances'
  launch times).

With ``--cost-explorer FROM TO`` it also reads the actual cost grouped by the
``vqa:architecture`` cost allocation tag (``ce:GetCostAndUsage``).
"""

from __future__ import annotations

import datetime as dt
import math
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from vqa.client import API_URL_OUTPUT, ApiClient, ClientError
from vqa.errors import BadSourceError, ConfigError, VqaError

DISTRIBUTED_STACK = "VqaDistributed"
MONOLITH_STACK = "VqaMonolith"
ARCHITECTURE_TAG = "vqa:architecture"
#: The S3 request-metrics filter id the stacks configure on their buckets.
S3_METRICS_FILTER = "EntireBucket"
#: S3 request metric -> the API operation it counts.
S3_REQUEST_METRICS = {
    "PutRequests": "PutObject",
    "GetRequests": "GetObject",
    "HeadRequests": "HeadObject",
    "ListRequests": "ListObjectsV2",
    "PostRequests": "PostObject",
    "DeleteRequests": "DeleteObject",
}
#: History events that schedule a task; more of them than Task states entered are retries.
_SCHEDULED = frozenset({"TaskScheduled", "LambdaFunctionScheduled", "ActivityScheduled"})
#: States of a stream after which nothing more happens (vqa.api's); only ``done`` is a success.
DONE_STATES = frozenset({"done", "failed", "stopped"})


class AwsExperimentError(VqaError):
    """The deployed stacks cannot be found, started or waited for."""


# --- stacks -------------------------------------------------------------------------------------


@dataclass
class StackInfo:
    """A deployed stack's outputs and its resources' physical ids by resource type."""

    name: str
    outputs: dict[str, str]
    resources: dict[str, list[str]] = field(default_factory=dict)

    def output(self, *candidates: str) -> str:
        """The first output whose key equals or ends with a candidate (case-insensitive)."""
        lowered = {k.lower(): v for k, v in self.outputs.items()}
        for cand in candidates:
            c = cand.lower()
            if c in lowered:
                return lowered[c]
            for k, v in lowered.items():
                if k.endswith(c):
                    return v
        raise AwsExperimentError(
            f"stack {self.name}: no output {' or '.join(candidates)} "
            f"(outputs: {', '.join(sorted(self.outputs)) or 'none'})"
        )

    def outputs_ending(self, suffix: str) -> dict[str, str]:
        return {k: v for k, v in self.outputs.items() if k.lower().endswith(suffix.lower())}

    def of_type(self, resource_type: str) -> list[str]:
        return list(self.resources.get(resource_type, []))


def describe_stack(cfn: Any, name: str) -> StackInfo:
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except cfn.exceptions.ClientError as exc:
        raise AwsExperimentError(
            f"stack {name}: not found ({exc.response.get('Error', {}).get('Message', exc)});"
            " deploy it first: npx cdk deploy " + name
        ) from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    resources: dict[str, list[str]] = {}
    paginator = cfn.get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=name):
        for r in page["StackResourceSummaries"]:
            if r.get("PhysicalResourceId"):
                resources.setdefault(r["ResourceType"], []).append(r["PhysicalResourceId"])
    return StackInfo(name=name, outputs=outputs, resources=resources)


# --- metering -----------------------------------------------------------------------------------


def count_transitions(events: Iterable[Mapping[str, Any]]) -> int:
    """Billed Standard transitions in an execution history: every state entered, plus one per
    retry (a task scheduled again within the same state)."""
    entered = scheduled = task_entered = 0
    for e in events:
        kind = str(e.get("type", ""))
        if kind.endswith("StateEntered"):
            entered += 1
            if kind == "TaskStateEntered":
                task_entered += 1
        elif kind in _SCHEDULED:
            scheduled += 1
    return entered + max(0, scheduled - task_entered)


class Metrics:
    """Sums of CloudWatch metrics over one time window."""

    def __init__(self, cloudwatch: Any, start: dt.datetime, end: dt.datetime) -> None:
        self.cw = cloudwatch
        self.start = start
        self.end = end
        seconds = max(60.0, (end - start).total_seconds())
        # At most 1,440 datapoints per call.
        self.period = int(max(60, math.ceil(seconds / 1440 / 60) * 60))

    def _datapoints(
        self, namespace: str, metric: str, dims: Mapping[str, str], stat: str
    ) -> list[dict[str, Any]]:
        resp = self.cw.get_metric_statistics(
            Namespace=namespace,
            MetricName=metric,
            Dimensions=[{"Name": k, "Value": v} for k, v in dims.items()],
            StartTime=self.start,
            EndTime=self.end,
            Period=self.period,
            Statistics=[stat],
        )
        return list(resp.get("Datapoints", []))

    def sum(self, namespace: str, metric: str, **dims: str) -> float:
        return float(sum(dp["Sum"] for dp in self._datapoints(namespace, metric, dims, "Sum")))

    def time_integral(self, namespace: str, metric: str, **dims: str) -> float:
        """Sum of per-period averages times the period: value-seconds (e.g. instance-seconds)."""
        dps = self._datapoints(namespace, metric, dims, "Average")
        return float(sum(dp["Average"] * self.period for dp in dps))


@dataclass
class Window:
    start: dt.datetime
    end: dt.datetime


class Metering:
    """Reads one stack's usage from AWS over a window into the usage schema."""

    def __init__(self, clients: Callable[[str], Any], window: Window) -> None:
        self.client = clients
        self.window = window
        self.metrics = Metrics(clients("cloudwatch"), window.start, window.end)
        self.requests: dict[str, dict[str, int]] = {}
        self.counters: dict[str, float] = {}
        self.bytes: dict[str, int] = {"s3_put": 0, "s3_get": 0}
        self.config: dict[str, Any] = {}
        self._log_groups: set[str] = set()

    def _req(self, service: str, op: str, n: float) -> None:
        if n:
            ops = self.requests.setdefault(service, {})
            ops[op] = ops.get(op, 0) + round(n)

    def _add(self, counter: str, v: float) -> None:
        self.counters[counter] = self.counters.get(counter, 0.0) + v

    def state_machine(self, arn: str) -> None:
        sfn = self.client("stepfunctions")
        sm = sfn.describe_state_machine(stateMachineArn=arn)
        workflow = str(sm.get("type", "STANDARD")).upper()
        self.config["workflow_type"] = workflow
        if workflow == "EXPRESS":
            started = self.metrics.sum("AWS/States", "ExecutionsStarted", StateMachineArn=arn)
            ms = self.metrics.sum("AWS/States", "ExecutionTime", StateMachineArn=arn)
            self._add("sfn_executions", started)
            self._add("sfn_express_duration_seconds", ms / 1000)
            return
        executions = 0
        transitions = 0
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn):
            for ex in page["executions"]:
                if not self.window.start <= _aware(ex["startDate"]) <= self.window.end:
                    continue
                executions += 1
                events: list[dict[str, Any]] = []
                for hp in sfn.get_paginator("get_execution_history").paginate(
                    executionArn=ex["executionArn"]
                ):
                    events += hp["events"]
                transitions += count_transitions(events)
        self._add("sfn_executions", executions)
        self._add("state_transitions", transitions)

    def functions(self, names: Iterable[str]) -> None:
        lam = self.client("lambda")
        archs: dict[str, float] = {}
        for name in names:
            cfg = lam.get_function_configuration(FunctionName=name)
            invocations = self.metrics.sum("AWS/Lambda", "Invocations", FunctionName=name)
            seconds = self.metrics.sum("AWS/Lambda", "Duration", FunctionName=name) / 1000
            if not invocations:
                continue
            gb_s = seconds * float(cfg.get("MemorySize", 128)) / 1024
            self._add("lambda_invocations", invocations)
            self._add("lambda_seconds", seconds)
            self._add("lambda_gb_seconds", gb_s)
            arch = (cfg.get("Architectures") or ["x86_64"])[0]
            archs[arch] = archs.get(arch, 0.0) + gb_s
            self.config[f"{_short(name)}_memory_mb"] = cfg.get("MemorySize")
            self._add_log_group(f"/aws/lambda/{name}")
        if archs:
            self.config["lambda_architecture"] = max(archs, key=archs.__getitem__)

    def buckets(self, names: Iterable[str]) -> None:
        for bucket in names:
            dims = {"BucketName": bucket, "FilterId": S3_METRICS_FILTER}
            for metric, op in S3_REQUEST_METRICS.items():
                self._req("s3", op, self.metrics.sum("AWS/S3", metric, **dims))
            self.bytes["s3_put"] += int(self.metrics.sum("AWS/S3", "BytesUploaded", **dims))
            self.bytes["s3_get"] += int(self.metrics.sum("AWS/S3", "BytesDownloaded", **dims))

    def tables(self, names: Iterable[str]) -> None:
        for table in names:
            self._add(
                "dynamodb_write_units",
                self.metrics.sum("AWS/DynamoDB", "ConsumedWriteCapacityUnits", TableName=table),
            )
            self._add(
                "dynamodb_read_units",
                self.metrics.sum("AWS/DynamoDB", "ConsumedReadCapacityUnits", TableName=table),
            )

    def topics(self, arns: Iterable[str]) -> None:
        for arn in arns:
            self._req(
                "sns",
                "Publish",
                self.metrics.sum(
                    "AWS/SNS", "NumberOfMessagesPublished", TopicName=arn.rsplit(":", 1)[-1]
                ),
            )

    def queues(self, urls: Iterable[str]) -> None:
        for url in urls:
            q = url.rstrip("/").rsplit("/", 1)[-1]
            self._req(
                "sqs",
                "SendMessage",
                self.metrics.sum("AWS/SQS", "NumberOfMessagesSent", QueueName=q),
            )
            self._req(
                "sqs",
                "ReceiveMessage",
                self.metrics.sum("AWS/SQS", "NumberOfMessagesReceived", QueueName=q)
                + self.metrics.sum("AWS/SQS", "NumberOfEmptyReceives", QueueName=q),
            )
            self._req(
                "sqs",
                "DeleteMessage",
                self.metrics.sum("AWS/SQS", "NumberOfMessagesDeleted", QueueName=q),
            )

    def _add_log_group(self, name: str) -> None:
        if name in self._log_groups:
            return
        self._log_groups.add(name)
        self._add("log_bytes", self.metrics.sum("AWS/Logs", "IncomingBytes", LogGroupName=name))

    def log_groups(self, names: Iterable[str]) -> None:
        for name in names:
            self._add_log_group(name)

    def services(self, cluster: str, services: Iterable[str]) -> None:
        """Worker CPU-seconds: ``CPUUtilization`` (% of the reserved CPU of all the service's
        tasks) x reserved vCPUs x running tasks, integrated over the window."""
        ecs = self.client("ecs")
        names = list(services)
        if not names:
            return
        described = ecs.describe_services(cluster=cluster, services=names)["services"]
        for svc in described:
            td = ecs.describe_task_definition(taskDefinition=svc["taskDefinition"])
            cpu_units = float(td["taskDefinition"].get("cpu") or 0) or sum(
                float(c.get("cpu", 0)) for c in td["taskDefinition"]["containerDefinitions"]
            )
            tasks = max(1, int(svc.get("runningCount") or svc.get("desiredCount") or 1))
            pct_seconds = self.metrics.time_integral(
                "AWS/ECS", "CPUUtilization", ClusterName=cluster, ServiceName=svc["serviceName"]
            )
            self._add("worker_cpu_seconds", pct_seconds / 100 * cpu_units / 1024 * tasks)

    def auto_scaling_groups(self, names: Iterable[str]) -> None:
        asg = self.client("autoscaling")
        for name in names:
            groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])
            for g in groups["AutoScalingGroups"]:
                itype = _asg_instance_type(self.client, g)
                if itype:
                    self.config["instance_type"] = itype
                seconds = self.metrics.time_integral(
                    "AWS/AutoScaling", "GroupInServiceInstances", AutoScalingGroupName=name
                )
                if not seconds:
                    seconds = _instance_seconds(self.client, g, self.window)
                self._add("asg_instance_hours", seconds / 3600)

    def launch_templates(self, ids: Iterable[str]) -> None:
        ec2 = self.client("ec2")
        for lt in ids:
            versions = ec2.describe_launch_template_versions(
                LaunchTemplateId=lt, Versions=["$Default"]
            )["LaunchTemplateVersions"]
            for v in versions:
                it = v.get("LaunchTemplateData", {}).get("InstanceType")
                if it:
                    self.config["instance_type"] = str(it)
                    return

    def usage(
        self, architecture: str, stream_seconds: float, wall_seconds: float
    ) -> dict[str, Any]:
        return {
            "requests": {s: dict(ops) for s, ops in sorted(self.requests.items())},
            "bytes": dict(self.bytes),
            "counters": dict(self.counters),
            "architecture": architecture,
            "stream_seconds": stream_seconds,
            "wall_seconds": wall_seconds,
            "config": dict(self.config),
        }


def _short(function_name: str) -> str:
    """A config key for a function: 'VqaDistributed-ConvertFunction1A2B-xyz' -> 'convert'."""
    base = function_name.split("-")[1] if "-" in function_name else function_name
    for suffix in ("Function", "Handler", "Fn"):
        base = base.split(suffix)[0] or base
    return base.lower() or "lambda"


def _aware(t: Any) -> dt.datetime:
    if isinstance(t, dt.datetime):
        return t if t.tzinfo else t.replace(tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(str(t)).astimezone(dt.UTC)


def _asg_instance_type(clients: Callable[[str], Any], group: Mapping[str, Any]) -> str | None:
    for inst in group.get("Instances", []):
        if inst.get("InstanceType"):
            return str(inst["InstanceType"])
    lt = group.get("LaunchTemplate") or (group.get("MixedInstancesPolicy") or {}).get(
        "LaunchTemplate", {}
    ).get("LaunchTemplateSpecification")
    if lt:
        ec2 = clients("ec2")
        ref = (
            {"LaunchTemplateId": lt["LaunchTemplateId"]}
            if lt.get("LaunchTemplateId")
            else {"LaunchTemplateName": lt["LaunchTemplateName"]}
        )
        versions = ec2.describe_launch_template_versions(
            **ref, Versions=[str(lt.get("Version") or "$Default")]
        )["LaunchTemplateVersions"]
        if versions:
            it = versions[0].get("LaunchTemplateData", {}).get("InstanceType")
            return str(it) if it else None
    return None


def _instance_seconds(clients: Callable[[str], Any], group: Mapping[str, Any], w: Window) -> float:
    """Instance-seconds within the window of the group's current instances (launch time on)."""
    ids = [i["InstanceId"] for i in group.get("Instances", [])]
    if not ids:
        return 0.0
    total = 0.0
    for res in clients("ec2").describe_instances(InstanceIds=ids)["Reservations"]:
        for inst in res["Instances"]:
            start = max(_aware(inst["LaunchTime"]), w.start)
            total += max(0.0, (w.end - start).total_seconds())
    return total


# --- cost explorer ------------------------------------------------------------------------------


def cost_explorer_costs(ce: Any, start: str, end: str) -> dict[str, Any]:
    """Actual unblended cost from ``start`` to ``end`` (YYYY-MM-DD, end exclusive) grouped by
    the ``vqa:architecture`` tag and service: ``{"by_architecture": {arch: {service: usd}},
    "totals": {arch: usd}}``; resources without the tag are under ``"untagged"``."""
    for d in (start, end):
        try:
            dt.date.fromisoformat(d)
        except ValueError:
            raise ConfigError(f"--cost-explorer: {d!r} is not a YYYY-MM-DD date") from None
    if end <= start:
        raise ConfigError("--cost-explorer: TO must be after FROM")
    by_arch: dict[str, dict[str, float]] = {}
    kwargs: dict[str, Any] = {
        "TimePeriod": {"Start": start, "End": end},
        "Granularity": "DAILY",
        "Metrics": ["UnblendedCost"],
        "GroupBy": [
            {"Type": "TAG", "Key": ARCHITECTURE_TAG},
            {"Type": "DIMENSION", "Key": "SERVICE"},
        ],
    }
    while True:
        resp = ce.get_cost_and_usage(**kwargs)
        for period in resp.get("ResultsByTime", []):
            for g in period.get("Groups", []):
                tag, service = [*g.get("Keys", []), "", ""][:2]
                arch = tag.split("$", 1)[1] if "$" in tag else tag
                arch = arch or "untagged"
                amount = float(g["Metrics"]["UnblendedCost"]["Amount"])
                svc = by_arch.setdefault(arch, {})
                svc[service] = svc.get(service, 0.0) + amount
        token = resp.get("NextPageToken")
        if not token:
            break
        kwargs["NextPageToken"] = token
    return {
        "from": start,
        "to": end,
        "metric": "UnblendedCost",
        "tag": ARCHITECTURE_TAG,
        "by_architecture": by_arch,
        "totals": {a: sum(s.values()) for a, s in by_arch.items()},
        "note": "Cost Explorer lags by up to 24 hours; the tag must be activated as a cost "
        "allocation tag; idle capacity and other runs in the period are included.",
    }


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Stream:
    architecture: str
    stream: str  # the stream's id: the client token it was submitted with
    source: str
    uri: str
    duration: float
    state: str = "pending"
    error: str = ""
    #: The last ``GET /streams/{id}`` body (state, defects, open defects, monitored time).
    view: dict[str, Any] = field(default_factory=dict)


class AwsExperiment:
    """Runs sources through both deployed stacks and meters them."""

    def __init__(
        self,
        *,
        session: Any = None,
        region: str | None = None,
        distributed_stack: str = DISTRIBUTED_STACK,
        monolith_stack: str = MONOLITH_STACK,
        poll_seconds: float = 10.0,
        timeout_seconds: float = 3 * 3600,
        metrics_delay_seconds: float = 300.0,
        progress: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        if session is None:
            import boto3

            session = boto3.Session(region_name=region)
        self.session = session
        self.region = region or session.region_name
        self._clients: dict[str, Any] = {}
        self._apis: dict[str, ApiClient] = {}
        self.stack_names = {"distributed": distributed_stack, "monolith": monolith_stack}
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self.metrics_delay_seconds = metrics_delay_seconds
        self.progress = progress
        self.sleep = sleep
        self.clock = clock
        self.run_id = uuid.uuid4().hex[:8]

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service, region_name=self.region)
        return self._clients[service]

    def stacks(self) -> dict[str, StackInfo]:
        cfn = self.client("cloudformation")
        return {arch: describe_stack(cfn, name) for arch, name in self.stack_names.items()}

    # -- sources

    def upload(self, source: str, bucket: str) -> str:
        """The source's URI as the stack reads it: uploaded (local file) or copied (s3://) into
        ``bucket``; http(s) URLs are passed through."""
        url = urlparse(source)
        key = f"experiment/{self.run_id}/{Path(url.path).name or 'source'}"
        s3 = self.client("s3")
        if url.scheme in ("http", "https"):
            return source
        if url.scheme == "s3":
            if url.netloc != bucket:
                s3.copy_object(
                    Bucket=bucket,
                    Key=key,
                    CopySource={"Bucket": url.netloc, "Key": url.path.lstrip("/")},
                )
                return f"s3://{bucket}/{key}"
            return source
        path = Path(source)
        if not path.is_file():
            raise BadSourceError(source, "no such file")
        s3.upload_file(str(path), bucket, key)
        return f"s3://{bucket}/{key}"

    @staticmethod
    def duration_of(source: str) -> float:
        from vqa.media import probe

        return float(probe(source).duration)

    # -- the front doors

    def api(self, info: StackInfo, architecture: str) -> ApiClient:
        """The front door of ``architecture``'s stack (its ``ApiUrl`` output), signed with this
        session's credentials."""
        if architecture not in self._apis:
            url = info.output(API_URL_OUTPUT)
            try:
                self._apis[architecture] = ApiClient.for_endpoint(url, session=self.session)
            except ClientError as exc:
                raise AwsExperimentError(f"stack {info.name}: {exc}") from None
        return self._apis[architecture]

    def submit(self, api: ApiClient, st: Stream) -> None:
        """``POST /streams``: start ``st`` (idempotent on its id, the client token)."""
        try:
            view = api.submit(st.uri, client_token=st.stream)
        except ClientError as exc:
            raise AwsExperimentError(
                f"{st.source}: the {st.architecture} front door refused it: {exc}"
            ) from None
        st.stream, st.view = str(view["id"]), view
        st.state = str(view.get("state", "submitted"))

    # -- wait

    def status(self, api: ApiClient, st: Stream) -> tuple[str, str]:
        """``GET /streams/{id}``: the stream's state (one for both architectures: the monolith's
        shards are summed up by the stack) and, once it failed, why."""
        try:
            st.view = api.status(st.stream)
        except ClientError as exc:
            if exc.status is not None and exc.status < 500 and exc.status != 429:
                raise AwsExperimentError(f"{st.architecture}:{st.stream}: {exc}") from None
            return st.state, ""  # throttled or a transient failure: ask again next poll
        state = str(st.view.get("state", "pending"))
        if state == "stopped":
            return "failed", "stopped before its end"
        return state, str(st.view.get("error", "")) if state == "failed" else ""

    def wait(self, streams: list[Stream], apis: Mapping[str, ApiClient]) -> None:
        from tqdm import tqdm

        deadline = time.monotonic() + self.timeout_seconds
        with tqdm(
            total=len(streams),
            desc="aws streams",
            unit="stream",
            file=sys.stderr,
            disable=not self.progress,
        ) as bar:
            while True:
                for st in streams:
                    if st.state in DONE_STATES:
                        continue
                    st.state, st.error = self.status(apis[st.architecture], st)
                    if st.state in DONE_STATES:
                        bar.update()
                pending = [st for st in streams if st.state not in DONE_STATES]
                if not pending:
                    return
                if time.monotonic() > deadline:
                    names = ", ".join(f"{s.architecture}:{s.stream}" for s in pending)
                    raise AwsExperimentError(f"timed out waiting for {names}")
                self.sleep(self.poll_seconds)

    # -- the whole run

    def run(
        self, sources: Sequence[str], *, cost_explorer: Sequence[str] | None = None
    ) -> dict[str, Any]:
        stacks = self.stacks()
        apis = {arch: self.api(info, arch) for arch, info in stacks.items()}
        buckets = {
            "distributed": stacks["distributed"].output("SourceBucket", "SourceBucketName"),
            "monolith": stacks["monolith"].output("SourceBucketName", "SourceBucket"),
        }
        streams: list[Stream] = []
        for i, src in enumerate(sources):
            duration = self.duration_of(src)
            for arch in ("distributed", "monolith"):
                streams.append(
                    Stream(
                        architecture=arch,
                        stream=f"exp-{self.run_id}-{i}-{arch[:4]}",
                        source=src,
                        uri=self.upload(src, buckets[arch]),
                        duration=duration,
                    )
                )
        start = self.clock()
        for st in streams:
            self.submit(apis[st.architecture], st)
        self.wait(streams, apis)
        end = self.clock()
        failed = [
            f"{s.architecture}:{s.source}: {s.error or 'failed'}"
            for s in streams
            if s.state == "failed"
        ]
        if failed:
            raise AwsExperimentError("streams failed: " + "; ".join(failed))

        runs: dict[str, list[dict[str, Any]]] = {"distributed": [], "monolith": []}
        for st in streams:
            runs[st.architecture].append(
                {
                    "source": st.source,
                    "stream": st.stream,
                    "duration": st.duration,
                    # The done stream's view, as GET /streams/{id} gives it for both stacks.
                    "defects": list(st.view.get("defects", [])),
                }
            )
        if self.metrics_delay_seconds > 0:
            # CloudWatch metrics (S3 request metrics especially) arrive minutes late.
            self.sleep(self.metrics_delay_seconds)
        window = Window(
            start - dt.timedelta(minutes=1), max(end, self.clock()) + dt.timedelta(minutes=1)
        )
        wall = (end - start).total_seconds()
        stream_seconds = sum(s.duration for s in streams if s.architecture == "monolith")
        usage = {
            "distributed": self.meter_distributed(stacks["distributed"], window).usage(
                "distributed", stream_seconds, wall
            ),
            "monolith": self.meter_monolith(stacks["monolith"], window).usage(
                "monolith", stream_seconds, wall
            ),
        }
        out: dict[str, Any] = {
            "runs": runs,
            "usage": usage,
            "aws": {
                "region": self.region,
                "run_id": self.run_id,
                "window": {"start": window.start.isoformat(), "end": window.end.isoformat()},
                "stacks": self.stack_names,
                "asg_instance_hours": usage["monolith"]["counters"].get("asg_instance_hours", 0.0),
            },
        }
        if cost_explorer:
            out["cost_explorer"] = cost_explorer_costs(self.client("ce"), *cost_explorer)
        return out

    def meter_distributed(self, info: StackInfo, window: Window) -> Metering:
        m = Metering(self.client, window)
        m.state_machine(info.output("StateMachineArn"))
        m.functions(info.of_type("AWS::Lambda::Function"))
        m.buckets(info.of_type("AWS::S3::Bucket"))
        m.tables(info.of_type("AWS::DynamoDB::GlobalTable") + info.of_type("AWS::DynamoDB::Table"))
        m.topics(info.of_type("AWS::SNS::Topic"))
        m.queues(info.of_type("AWS::SQS::Queue"))
        m.log_groups(info.of_type("AWS::Logs::LogGroup"))
        m.config["granularity"] = info.outputs.get("Granularity", "")
        if not m.config["granularity"]:
            del m.config["granularity"]
        return m

    def meter_monolith(self, info: StackInfo, window: Window) -> Metering:
        m = Metering(self.client, window)
        m.functions(info.of_type("AWS::Lambda::Function"))
        m.buckets(info.of_type("AWS::S3::Bucket"))
        m.tables(info.of_type("AWS::DynamoDB::GlobalTable") + info.of_type("AWS::DynamoDB::Table"))
        m.topics(info.of_type("AWS::SNS::Topic"))
        m.queues(info.of_type("AWS::SQS::Queue"))
        m.log_groups(info.of_type("AWS::Logs::LogGroup"))
        services = [v for v in info.outputs_ending("ServiceName").values()]
        if services:
            m.services(info.output("ClusterName"), services)
        m.auto_scaling_groups(info.of_type("AWS::AutoScaling::AutoScalingGroup"))
        if "instance_type" not in m.config:
            m.launch_templates(info.of_type("AWS::EC2::LaunchTemplate"))
        if "instance_type" not in m.config:
            raise AwsExperimentError(
                f"stack {info.name}: cannot tell the container instances' type (no Auto Scaling"
                " group or launch template with an InstanceType)"
            )
        return m


def run_aws(
    sources: Sequence[str],
    *,
    region: str | None = None,
    progress: bool = True,
    cost_explorer: Sequence[str] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run the A/B on the deployed stacks: ``{"runs": {arch: [output]}, "usage": {arch: usage},
    "aws": {...}, "cost_explorer": {...}}`` (the last with ``cost_explorer=(FROM, TO)``)."""
    exp = AwsExperiment(region=region, progress=progress, **kwargs)
    return exp.run(sources, cost_explorer=cost_explorer)
