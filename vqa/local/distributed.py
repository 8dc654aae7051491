"""``vqa run --arch distributed``, locally: the synthesized stack, emulated in-process with moto.

What runs is what would be deployed: the CDK app is synthesized, the template's resources (buckets,
table, topic and its key, roles and their policies, functions) are created in moto by
:mod:`vqa.local.provision`, the state machine definition is taken from the template (tokens
resolved to the local resources) and executed by moto's Step Functions interpreter, and every
Lambda task runs the real handler in this process (:mod:`vqa.local.moto_lambda`).

IAM is enforced (:mod:`vqa.local.iam`): each handler's calls against its own function's role, the
interpreter's (Lambda invocations, the failure record) against the state machine's role; a denied
call fails the run naming role, action and resource. ``usage.config`` is read from the template.

Metering (``usage``): S3/DynamoDB/SNS requests and bytes through a :class:`vqa.meter.Meter` on
the clients the handlers use; Lambda invocations and GB-seconds from the dispatcher; state
transitions from the execution histories (every state entered, plus every retried attempt),
executions, Express duration, and the state machine's own service calls (the failure record,
the hand-over to a fresh execution).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from vqa.errors import BadSourceError, ConfigError, VqaError
from vqa.local import aws, iam, lifecycle
from vqa.local.provision import Deployment, Function, provision
from vqa.local.template import (
    DISTRIBUTED_STACK,
    config_context,
    definition,
    state_machine,
    synth_template,
)
from vqa.meter import Meter

log = logging.getLogger("vqa.local.distributed")

#: A run that makes no progress for this long is reported as hung (a bug, never expected).
STALL_SECONDS = 300.0
_POLL_SECONDS = 0.25
#: How often a live run drops the intermediate objects no step reads again.
_EXPIRE_SECONDS = 2.0


def _create_state_machine(dep: Deployment, *, suffix: str) -> tuple[str, str]:
    """The template's state machine in moto: its ARN and the logical id of its role."""
    sfn = aws.client("stepfunctions")
    logical_id, props = state_machine(dep.template)
    asl = definition(dep.template, dep.resolver)
    name = props.get("StateMachineName")
    arn = sfn.create_state_machine(
        # CloudFormation generates the name (<logical id>-<random>) when the template sets none.
        name=dep.resolver.resolve(name) if name else f"{logical_id[:60]}-{suffix}",
        definition=json.dumps(asl),
        roleArn=dep.resolver.resolve(props["RoleArn"]),
        type=props.get("StateMachineType", "STANDARD"),
    )["stateMachineArn"]
    dep.resolver.define(logical_id, arn, Arn=arn, Name=str(arn).rsplit(":", 1)[-1])
    role = props["RoleArn"]["Fn::GetAtt"]
    return str(arn), str(role[0] if isinstance(role, list) else role.split(".", 1)[0])


@contextmanager
def _handler_io(meter: Meter, *, fast_s3: bool = False) -> Iterator[list[str]]:
    """Install metered clients and a metered log sink for the handlers; restore them after.
    ``fast_s3``: the handlers' plain S3 PutObject/GetObject skip the in-process HTTP round trip
    (:mod:`vqa.local.fast_s3`; same objects, same checks, same metering)."""
    from lambdas.distributed import common
    from vqa.local import fast_s3 as fast

    lines: list[str] = []

    def sink(line: str) -> None:
        meter.add("log_bytes", len(line.encode()) + 1)
        lines.append(line)
        log.debug("%s", line)

    previous_sink = common.LOG_SINK
    s3 = aws.client("s3", meter=meter)
    common.CLIENTS.install(
        s3=fast.attach(s3, meter) if fast_s3 else s3,
        dynamodb=aws.client("dynamodb", meter=meter),
        sns=aws.client("sns", meter=meter),
        events=aws.client("events", meter=meter),
        stepfunctions=aws.client("stepfunctions", meter=meter),
    )
    common.LOG_SINK = sink
    try:
        yield lines
    finally:
        common.LOG_SINK = previous_sink
        common.CLIENTS.install()


@contextmanager
def _quiet_interpreter() -> Iterator[None]:
    """moto's interpreter logs every caught task failure with its whole state tree at ERROR;
    the run reports failures itself (status item, one-line error), so keep stderr for that."""
    loggers = [logging.getLogger(n) for n in ("moto.stepfunctions.parser", "moto.awslambda")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events.extend(page["events"])
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def meter_history(meter: Meter, events: list[dict[str, Any]]) -> dict[str, int]:
    """Add one execution's billable workflow usage to ``meter``; returns its event counts.

    A state transition is billed for every state entered and for every retry of a task, so
    transitions = states entered + task attempts beyond the first of each task state entered.
    """
    entered = sum(1 for e in events if e["type"].endswith("StateEntered"))
    task_entered = sum(1 for e in events if e["type"] == "TaskStateEntered")
    attempts = sum(1 for e in events if e["type"] in ("LambdaFunctionScheduled", "TaskScheduled"))
    transitions = entered + max(0, attempts - task_entered)
    meter.add("state_transitions", transitions)
    for e in events:
        if e["type"] != "TaskScheduled":
            continue
        details = e.get("taskScheduledEventDetails", {})
        service, action = details.get("resourceType", ""), details.get("resource", "")
        if service == "dynamodb":
            meter.count_request("dynamodb", action[:1].upper() + action[1:])
        elif service == "states":
            meter.count_request("stepfunctions", action[:1].upper() + action[1:])
    return {"events": len(events), "transitions": transitions, "retries": attempts - task_entered}


def _duration_seconds(start: datetime, stop: datetime | None) -> float:
    return max(0.0, ((stop or start) - start).total_seconds())


def _progress_bar(progress: bool, source: str, segment_seconds: float) -> Any:
    """Segments analysed so far, on stderr (total from the container header when it has one)."""
    if not progress:
        return None
    from tqdm import tqdm

    from vqa.media import probe

    try:
        total: int | None = math.ceil(probe(source).duration / segment_seconds) or None
    except VqaError:
        total = None  # the run itself reports a bad source
    return tqdm(total=total, unit="seg", desc="distributed", file=sys.stderr, leave=False)


def _failure(source: str, status: Mapping[str, Any]) -> VqaError:
    """The one-line error of a run the state machine recorded as failed."""
    error = str(status.get("error", "Error"))
    try:
        message = str(json.loads(status.get("cause", "{}")).get("errorMessage", ""))
    except (ValueError, AttributeError):
        message = str(status.get("cause", ""))
    err: VqaError
    if error == "BadSourceError":
        # The handler names the uploaded copy ("s3://bucket/key: reason"); name the user's source.
        _, sep, reason = message.partition(": ")
        err = BadSourceError(source, reason if sep else message)
    else:
        segment = status.get("segment", "?")
        detail = " ".join(f"{error}: {message}".split())
        err = VqaError(f"{source}: distributed run failed at segment {segment}: {detail}")
    err.recorded = dict(status)  # type: ignore[attr-defined]  # the stream status item, as stored
    return err


def _upload(source: str, s3: Any, bucket: str, stream: str) -> str:
    """The ``s3://`` URI the state machine reads: local files are uploaded to the source bucket."""
    if source.startswith(("http://", "https://")):
        return source
    if source.startswith("s3://"):
        raise ConfigError(
            "the local emulation reads local files or http(s) URLs; use --aws for s3:// sources"
        )
    path = Path(source)
    if not path.is_file():
        raise BadSourceError(source, "no such file")
    key = f"{stream}/{path.name}"
    s3.upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"


def run_local(
    source: str,
    *,
    granularity: str | None = None,
    workflow_type: str | None = None,
    progress: bool = False,
    config: Any = None,
    template: dict[str, Any] | None = None,
    thresholds: Mapping[str, Mapping[str, Any]] | None = None,
    request: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``source`` through the emulated distributed stack; the JSON of ``vqa run --json``.

    ``request``: what the front door would put in the execution input (vqa.api:
    ``{"detectors", "thresholds"}`` of one stream), read by the Start step.

    ``config``: a :class:`stacks.config.VqaConfig` or a mapping of ``vqa`` context keys
    overriding ``cdk.json``; ``granularity``/``workflow_type``/``thresholds`` (``--set``:
    ``{detector: {field: value}}``) override it further. Thresholds reach the detector functions
    the way a deployment's do: through the synthesized template.
    Raises :class:`BadSourceError` when the source is not media (the failure recorded by the
    state machine), :class:`VqaError` when a run failed otherwise.
    """
    aws.ensure_repo_on_path()
    from moto import mock_aws

    from vqa import results
    from vqa.local import moto_lambda

    overrides = config_context(config)
    if granularity is not None:
        overrides["granularity"] = granularity
    if workflow_type is not None:
        overrides["workflow_type"] = workflow_type.upper()
    if thresholds:
        overrides["thresholds"] = {d: dict(f) for d, f in thresholds.items()}
    if template is None:  # a given template (tests) must come from the same configuration
        template = synth_template(vqa_context=overrides)
    wall0 = time.perf_counter()
    meter = Meter()
    suffix = uuid.uuid4().hex[:8]
    stream = f"s{uuid.uuid4().hex[:12]}"

    with (
        _quiet_interpreter(),
        mock_aws(config={"stepfunctions": {"execute_state_machine": True}}),  # type: ignore[arg-type]
    ):
        dep = provision(template, stack=DISTRIBUTED_STACK, client=aws.client, suffix=suffix)
        arn, machine_role = _create_state_machine(dep, suffix=suffix)
        settings = _deployed_config(dep)
        outputs = dep.outputs()
        ledger = iam.Ledger()
        principals = {
            fn.name: dep.principal(fn.role, ledger=ledger) for fn in dep.functions.values()
        }
        machine = dep.principal(machine_role, ledger=ledger)
        s3, ddb = aws.client("s3"), aws.client("dynamodb")
        uri = _upload(source, s3, outputs["SourceBucket"], stream)

        bar = _progress_bar(progress, source, float(settings["segment_seconds"]))
        done_segments: list[int] = []

        def on_invoke(inv: moto_lambda.Invocation) -> None:
            if inv.handler.endswith(".aggregate.handler") and inv.error is None:
                done_segments.append(1)
                if bar is not None:
                    bar.update(1)

        sfn = aws.client("stepfunctions")
        with (
            _handler_io(meter),
            moto_lambda.dispatch_in_process(
                meter=meter, on_invoke=on_invoke, principals=principals
            ),
            iam.state_machine_acting_as(machine),
        ):
            aws.client("stepfunctions", meter=meter).start_execution(
                stateMachineArn=arn,
                name=f"{stream}-0",
                input=json.dumps(
                    {
                        "stream": stream,
                        "source": uri,
                        "index": 0,
                        **({"request": dict(request)} if request else {}),
                    }
                ),
            )
            executions = _wait(sfn, arn, done_segments)
        if bar is not None:
            bar.close()

        counts = []
        for ex in executions:
            counts.append(meter_history(meter, _history(sfn, ex["executionArn"])))
            meter.add("sfn_executions", 1)
            if settings["workflow_type"] == "EXPRESS":
                meter.add(
                    "sfn_express_duration_seconds",
                    _duration_seconds(ex["startDate"], ex.get("stopDate")),
                )
        iam.raise_if_denied(ledger.denials)
        status = results.read_status(dynamodb=ddb, table=outputs["ResultsTable"], stream=stream)
        if status is None or status.state != "done":
            if status is not None and status.state == "failed":
                raise _failure(source, status.raw)
            states = sorted({ex["status"] for ex in executions})
            raise VqaError(
                f"{source}: distributed run ended ({', '.join(states)}) without a result"
            )
        defects = results.read_defects(dynamodb=ddb, table=outputs["ResultsTable"], stream=stream)

    duration = round(status.duration, 6)
    skipped = status.skipped
    usage = {
        **meter.snapshot(),
        "architecture": "distributed",
        "stream_seconds": duration,
        "wall_seconds": round(time.perf_counter() - wall0, 3),
        "config": settings,
    }
    return {
        "source": source,
        "duration": duration,
        "defects": [d.to_json() for d in defects],
        "skipped": skipped,
        "usage": usage,
        "workflow": {
            "executions": len(executions),
            "segments": status.segments,
            "history_events": [c["events"] for c in counts],
            "retries": sum(c["retries"] for c in counts),
        },
    }


def _deployed_config(dep: Deployment) -> dict[str, Any]:
    """The settings priced by the cost model (``usage.config``), read from the template: the
    functions' memory, architecture and environment, and the state machine's type."""
    from stacks.distributed import HANDLERS

    def function(module: str) -> Function:
        return dep.function_by_handler(f"{HANDLERS}.{module}.handler")

    start, convert, aggregate = function("start"), function("convert"), function("aggregate")
    detectors = [f for f in dep.functions.values() if f.handler == f"{HANDLERS}.detect.handler"]
    _, machine = state_machine(dep.template)
    props = dep.template["Resources"][convert.logical_id]["Properties"]
    return {
        "workflow_type": str(machine.get("StateMachineType", "STANDARD")),
        "granularity": convert.environment["GRANULARITY"],
        "lambda_architecture": str(props.get("Architectures", ["x86_64"])[0]),
        "convert_memory_mb": convert.memory_mb,
        "detector_memory_mb": max(f.memory_mb for f in detectors),
        "aggregate_memory_mb": aggregate.memory_mb,
        "segment_seconds": float(convert.environment["SEGMENT_SECONDS"]),
        "detectors": [d for d in start.environment["DETECTORS"].split(",") if d],
        "segments_per_execution": int(aggregate.environment["SEGMENTS_PER_EXECUTION"]),
    }


def _wait(sfn: Any, arn: str, progress: list[int]) -> list[dict[str, Any]]:
    """Every execution of the stream, once none is running (a hand-over starts the next
    execution before the current one ends, so "none running" means the stream is over)."""
    last_change, seen = time.monotonic(), -1
    while True:
        executions: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"stateMachineArn": arn}
        while True:
            page = sfn.list_executions(**kwargs)
            executions.extend(page["executions"])
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
        if executions and all(ex["status"] != "RUNNING" for ex in executions):
            return sorted(executions, key=lambda ex: ex["startDate"])
        if len(progress) != seen:
            seen, last_change = len(progress), time.monotonic()
        elif time.monotonic() - last_change > STALL_SECONDS:
            raise VqaError(f"distributed run made no progress for {STALL_SECONDS:.0f} s")
        time.sleep(_POLL_SECONDS)


def _alert_queues(dep: Deployment, outputs: Mapping[str, str]) -> tuple[str, str]:
    """Queues that receive what the stack publishes, as a subscriber would: one subscribed to
    the alerts topic (raw delivery: the body is the alert object), one the target of an
    EventBridge rule on the alerts bus matching source ``vqa``. Their URLs."""
    from vqa.alerts import EVENT_SOURCE

    sqs, sns, events = aws.client("sqs"), aws.client("sns"), aws.client("events")
    urls = []
    for name in ("topic", "bus"):
        url = sqs.create_queue(QueueName=f"vqa-watch-{name}-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        urls.append(url)
    arns = [
        sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for u in urls
    ]
    sns.subscribe(
        TopicArn=outputs["AlertsTopic"],
        Protocol="sqs",
        Endpoint=arns[0],
        Attributes={"RawMessageDelivery": "true"},
    )
    rule = f"vqa-watch-{uuid.uuid4().hex[:8]}"
    events.put_rule(
        Name=rule,
        EventBusName=outputs["AlertsBus"],
        EventPattern=json.dumps({"source": [EVENT_SOURCE]}),
    )
    events.put_targets(
        Rule=rule, EventBusName=outputs["AlertsBus"], Targets=[{"Id": "watch", "Arn": arns[1]}]
    )
    return urls[0], urls[1]


def _drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message waiting in the queue, parsed, in arrival order."""
    out: list[dict[str, Any]] = []
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            out.append(json.loads(m["Body"]))
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)
            ],
        )


def watch(
    source: str,
    *,
    detectors: Sequence[str] | str | None = None,
    thresholds: Mapping[str, Mapping[str, Any]] | None = None,
    stop: threading.Event | None = None,
    config: Any = None,
    template: dict[str, Any] | None = None,
    bus_events: list[dict[str, Any]] | None = None,
    executions: list[dict[str, Any]] | None = None,
    on_ready: Callable[[], None] | None = None,
    meter: Meter | None = None,
) -> Iterator[dict[str, Any]]:
    """Follow ``source`` through the emulated distributed stack; yield each alert it publishes.

    The alerts are read where a subscriber reads them: a queue subscribed to the stack's alerts
    topic (the bodies yielded, in the order published) and a queue behind an EventBridge rule on
    its bus (the events appended to ``bus_events`` if given). Runs until the stream ends or
    ``stop`` is set; then the converter finds a stop request in the stream status at its next
    segment, the detectors end their open defects at the last media seen, and the last alerts
    are yielded before this returns. ``executions`` receives the Step Functions executions of
    the stream (the ``list_executions`` entries plus their ``history``) at the end.
    ``on_ready`` is called once the emulated stack is provisioned, just before the stream's
    execution starts (a test starts airing its origin there). ``meter`` receives the run's
    metered work (handler seconds per function, requests), as the A/B's emulated runs do.

    Raises :class:`~vqa.errors.BadSourceError` for a source that cannot be followed, and
    :class:`~vqa.local.iam.IamDenied` if a handler made a call its role does not allow.
    """
    aws.ensure_repo_on_path()
    from moto import mock_aws

    from vqa import results
    from vqa.alerts import iso_utc
    from vqa.detectors import parse_names
    from vqa.local import moto_lambda
    from vqa.overrides import validate_thresholds

    overrides = config_context(config)
    if detectors is not None:
        overrides["detectors"] = parse_names(detectors)
    if thresholds:
        overrides["thresholds"] = validate_thresholds(thresholds)
    if template is None:
        template = synth_template(vqa_context=overrides)
    stop = stop or threading.Event()
    suffix = uuid.uuid4().hex[:8]
    stream = f"w{uuid.uuid4().hex[:12]}"
    meter = Meter() if meter is None else meter
    with (
        _quiet_interpreter(),
        mock_aws(config={"stepfunctions": {"execute_state_machine": True}}),  # type: ignore[arg-type]
    ):
        dep = provision(template, stack=DISTRIBUTED_STACK, client=aws.client, suffix=suffix)
        arn, machine_role = _create_state_machine(dep, suffix=suffix)
        outputs = dep.outputs()
        ledger = iam.Ledger()
        principals = {
            fn.name: dep.principal(fn.role, ledger=ledger) for fn in dep.functions.values()
        }
        machine = dep.principal(machine_role, ledger=ledger)
        sqs, ddb, sfn = aws.client("sqs"), aws.client("dynamodb"), aws.client("stepfunctions")
        topic_queue, bus_queue = _alert_queues(dep, outputs)
        uri = _upload(source, aws.client("s3"), outputs["SourceBucket"], stream)
        table = outputs["ResultsTable"]

        def running() -> bool:
            page = sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")
            return bool(page["executions"])

        def pending() -> list[dict[str, Any]]:
            if bus_events is not None:
                bus_events.extend(m["detail"] for m in _drain(sqs, bus_queue))
            return _drain(sqs, topic_queue)

        with (
            # Live, the emulation must keep up with the stream: at per-frame granularity the
            # S3 round trips through moto were what fell behind.
            _handler_io(meter, fast_s3=True),
            moto_lambda.dispatch_in_process(meter=meter, principals=principals),
            iam.state_machine_acting_as(machine),
        ):
            if on_ready is not None:
                on_ready()
            sfn.start_execution(
                stateMachineArn=arn,
                name=f"{stream}-0",
                input=json.dumps({"stream": stream, "source": uri, "index": 0}),
            )
            asked = False
            expired_at = time.monotonic()
            while True:
                if time.monotonic() - expired_at > _EXPIRE_SECONDS:
                    # The bucket's lifecycle rule, on the emulation's clock (vqa.local.lifecycle).
                    lifecycle.expire_consumed(outputs["IntermediateBucket"], stream)
                    expired_at = time.monotonic()
                if stop.is_set() and not asked:
                    # The stream's converter reads this at its next segment and ends there.
                    results.request_stop(dynamodb=ddb, table=table, stream=stream, at=iso_utc())
                    asked = True
                yield from pending()
                if not running():
                    break
                time.sleep(_POLL_SECONDS)
            yield from pending()
        listed = sfn.list_executions(stateMachineArn=arn)["executions"]
        if executions is not None:
            for ex in sorted(listed, key=lambda ex: ex["startDate"]):
                executions.append({**ex, "history": _history(sfn, ex["executionArn"])})
        iam.raise_if_denied(ledger.denials)
        status = results.read_status(dynamodb=ddb, table=table, stream=stream)
        if status is not None and status.state == "failed":
            raise _failure(source, status.raw)
