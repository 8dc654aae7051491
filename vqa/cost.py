"""The cost model: metered usage (``vqa run --json``'s ``"usage"``) -> USD per stream-hour.

Every quantity priced here is one the runners metered (see :mod:`vqa.meter` for the schema); every
price comes from :mod:`vqa.pricing`. Nothing is priced that was not counted, and a metered
operation the model does not price is listed under ``unpriced`` rather than dropped silently.

Per stream-hour figures scale the run's cost by ``3600 / stream_seconds``, except the work done
once per stream (:data:`PER_STREAM_OPS`, :data:`PER_STREAM_HANDLERS`), which is priced per stream
and spread over ``ModelParams.stream_lifetime_hours``. The monolith's EC2
instances are not CPU-seconds: ECS places each shard's task by its *reserved* CPU units and
memory, read from the synthesized template (:class:`vqa.deployment.Capacity`), one stream per task
as the worker runs today; the per-stream-hour figure is the instances placed for
``ModelParams.fleet_streams`` concurrent streams divided by that many streams, and
:func:`project` places 1 to 10,000.

Lambda is billed as Lambda bills it: a function gets CPU in proportion to its memory (1,769 MB is
one vCPU), so a handler timed on a full host core runs ``1769 / memory`` times longer below that
size (all of its time is taken as CPU-bound: an upper bound); each execution environment's INIT
(measured in a fresh process) is billed per cold start, environments being as many as the
measured concurrency and re-created every ``lambda_environment_lifetime_hours``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vqa.deployment import Capacity
from vqa.errors import ConfigError
from vqa.pricing import PriceTable

#: Display order and names of the services in breakdowns.
SERVICES: dict[str, str] = {
    "stepfunctions": "Step Functions",
    "lambda": "Lambda",
    "s3": "S3",
    "sqs": "SQS",
    "sns": "SNS",
    "events": "EventBridge",
    "dynamodb": "DynamoDB",
    "logs": "CloudWatch Logs",
    "xray": "X-Ray",
    "ec2": "EC2",
    "ebs": "EBS",
}

#: S3 operations billed in the PUT, COPY, POST, LIST class.
S3_PUT_CLASS = frozenset(
    {
        "PutObject",
        "CopyObject",
        "PostObject",
        "ListObjects",
        "ListObjectsV2",
        "ListObjectVersions",
        "ListBuckets",
        "ListMultipartUploads",
        "ListParts",
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPartCopy",
        "CompleteMultipartUpload",
        "CreateBucket",
        "PutObjectTagging",
        "PutObjectAcl",
        "PutBucketLifecycleConfiguration",
        "PutBucketPolicy",
        "PutBucketTagging",
        "PutBucketEncryption",
        "PutBucketVersioning",
        "PutBucketNotificationConfiguration",
        "PutPublicAccessBlock",
    }
)
#: S3 operations that are free (DELETE and CANCEL requests).
S3_FREE = frozenset({"DeleteObject", "DeleteObjects", "DeleteBucket", "AbortMultipartUpload"})
# Every other S3 operation (GetObject, HeadObject, HeadBucket, ...) is "GET, SELECT and all other".

#: DynamoDB data-plane operations -> request units per call, for items of at most 1 KB (write)
#: or 4 KB (strongly consistent read); VQA's defect and status items are a few hundred bytes.
#: A transactional operation costs two units per item; batches are counted per call, so a
#: batch of n items is under-counted by n-1 (the runners do not batch today).
DYNAMODB_WRITE_UNITS = {
    "PutItem": 1,
    "UpdateItem": 1,
    "DeleteItem": 1,
    "BatchWriteItem": 1,
    "TransactWriteItems": 2,
}
DYNAMODB_READ_UNITS = {
    "GetItem": 1,
    "Query": 1,
    "Scan": 1,
    "BatchGetItem": 1,
    "TransactGetItems": 2,
}

GIB = 1024**3
SECONDS_PER_HOUR = 3600.0

#: Work each architecture does a fixed number of times per stream whatever its length, by
#: design: (service, operation) of the metered requests. The monolith's orchestrator hands each
#: shard one job message (sent, deleted when done) and each shard opens the source once (HEAD);
#: both write the stream's status items and one alert item and publish per defect event (the
#: corpus clips carry the same defects at any length). The distributed converter HEADs the source
#: for every segment: per stream-second there.
PER_STREAM_OPS: dict[str, frozenset[tuple[str, str]]] = {
    "monolith": frozenset(
        {
            ("sqs", "SendMessage"),
            ("sqs", "DeleteMessage"),
            ("s3", "HeadObject"),
            *(("dynamodb", op) for op in ("PutItem", "UpdateItem", "GetItem", "Query")),
            ("sns", "Publish"),
            ("events", "PutEvents"),
        }
    ),
    "distributed": frozenset(
        {
            *(("dynamodb", op) for op in ("PutItem", "UpdateItem", "GetItem", "Query")),
            ("sns", "Publish"),
            ("events", "PutEvents"),
        }
    ),
}
#: Lambda handlers invoked once per stream: the monolith's orchestrator (the fan-out) and the
#: distributed start function (which starts the stream's first execution).
PER_STREAM_HANDLERS = frozenset(
    {"lambdas.orchestrator.handler.handler", "lambdas.distributed.start.handler"}
)


@dataclass(frozen=True)
class ModelParams:
    """Assumptions of the model that are not prices (all stated in the report)."""

    #: Concurrent streams the per-stream-hour monolith figure places (instances / streams).
    fleet_streams: int = 100
    #: Lambda memory that buys one full vCPU (AWS Lambda developer guide, "memory and computing
    #: power"); below it a function gets that fraction of a core.
    lambda_mb_per_vcpu: float = 1769.0
    #: How long an execution environment lives before Lambda replaces it (AWS publishes no
    #: figure; hours for busy functions are what users observe).
    lambda_environment_lifetime_hours: float = 2.0
    #: CloudWatch Logs bytes the Lambda platform writes per invocation (START, END and REPORT
    #: lines, the REPORT line with its X-Ray trace id), on top of the handlers' own lines.
    lambda_platform_log_bytes: float = 350.0
    #: Root volume of each ECS container instance (the ECS-optimized AMI's default).
    ebs_gb_per_instance: float = 30.0
    #: Hours in a billing month, as AWS's own calculators use.
    hours_per_month: float = 730.0
    #: How long intermediate objects stay stored (S3 lifecycle expiry), if the usage's config
    #: does not say (``intermediate_expiry_days``).
    intermediate_lifetime_days: float = 1.0
    #: How long one monitored stream lasts (a 24/7 channel's monitoring restarts daily): the
    #: per-stream work (:data:`PER_STREAM_OPS`, :data:`PER_STREAM_HANDLERS`) is spread over
    #: it. None: each stream lasts as long as it ran (an on-demand file check), so that work is
    #: charged to the run in full. (The workers' job start-up CPU cannot be split from one run:
    #: it stays in the measured CPU per stream-second.)
    stream_lifetime_hours: float | None = 24.0

    def __post_init__(self) -> None:
        if self.fleet_streams < 1:
            raise ConfigError("fleet_streams must be at least 1")
        if self.lambda_environment_lifetime_hours <= 0 or self.lambda_mb_per_vcpu <= 0:
            raise ConfigError("Lambda environment lifetime and MB per vCPU must be positive")
        if self.stream_lifetime_hours is not None and self.stream_lifetime_hours <= 0:
            raise ConfigError("stream_lifetime_hours must be positive (or None: as run)")

    def per_stream_share(self, seconds_per_stream: float) -> float:
        """The share of each per-stream operation a run of ``seconds_per_stream`` bears: its
        part of the stream's lifetime (1 when the stream lasts as long as it ran)."""
        if self.stream_lifetime_hours is None:
            return 1.0
        lifetime = max(seconds_per_stream, self.stream_lifetime_hours * SECONDS_PER_HOUR)
        return seconds_per_stream / lifetime


@dataclass(frozen=True)
class LineItem:
    """One priced quantity of the metered run."""

    service: str
    item: str
    quantity: float
    unit: str
    unit_usd: float
    usd: float
    source: str

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "item": self.item,
            "quantity": self.quantity,
            "unit": self.unit,
            "unit_usd": self.unit_usd,
            "usd": self.usd,
            "source": self.source,
        }


@dataclass
class CostResult:
    """The priced run: line items for the run, and the same per stream-hour."""

    architecture: str
    stream_seconds: float
    line_items: list[LineItem]
    #: Instances per stream at ``fleet_streams`` concurrent streams (monolith; else 0).
    instances_per_stream: float = 0.0
    instance_type: str | None = None
    #: The monolith's task sizes and instances, from the template (None: distributed).
    capacity: Capacity | None = None
    #: Measured worker CPU per stream-second / reserved vCPUs per stream (monolith).
    reserved_cpu_utilisation: float | None = None
    #: Measured worker CPU of ``fleet_streams`` streams / the vCPUs of the instances they need.
    instance_cpu_utilisation: float | None = None
    #: Per Lambda function (handler, memory): metered and billed seconds, CPU share, INIT.
    lambda_functions: list[dict[str, Any]] = field(default_factory=list)
    #: Per stream-second rates of the quantities that have quotas.
    rates: dict[str, float] = field(default_factory=dict)
    unpriced: dict[str, dict[str, int]] = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=list)

    @property
    def scale(self) -> float:
        """Factor from the run to one stream-hour."""
        return SECONDS_PER_HOUR / self.stream_seconds

    @property
    def usd_run(self) -> float:
        return sum(li.usd for li in self.line_items)

    @property
    def usd_per_stream_hour(self) -> float:
        return self.usd_run * self.scale

    @property
    def breakdown(self) -> dict[str, float]:
        """USD per stream-hour by service, every service of :data:`SERVICES` present."""
        out = dict.fromkeys(SERVICES, 0.0)
        for li in self.line_items:
            out[li.service] += li.usd * self.scale
        return out

    def fixed_per_hour(self) -> float:
        """USD per stream-hour that scales with streams linearly (everything but instances)."""
        return sum(v for k, v in self.breakdown.items() if k not in ("ec2", "ebs"))

    def instances(self, streams: int) -> int:
        """Instances ECS places for ``streams`` concurrent streams (0 without instances)."""
        return self.capacity.instances(streams) if self.capacity else 0

    def to_json(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.capacity is not None:
            extra["placement"] = self.capacity.placement()
            extra["reserved_cpu_utilisation"] = self.reserved_cpu_utilisation
            extra["instance_cpu_utilisation"] = self.instance_cpu_utilisation
        if self.lambda_functions:
            extra["lambda_functions"] = self.lambda_functions
        return {
            "usd_per_stream_hour": self.usd_per_stream_hour,
            "breakdown": self.breakdown,
            "usd_run": self.usd_run,
            "stream_seconds": self.stream_seconds,
            "line_items": [
                {**li.to_json(), "usd_per_stream_hour": li.usd * self.scale}
                for li in self.line_items
            ],
            "instances_per_stream": self.instances_per_stream,
            "instance_type": self.instance_type,
            "rates_per_stream_second": self.rates,
            "unpriced": self.unpriced,
            **extra,
        }


def _num(d: Mapping[str, Any], key: str) -> float:
    v = d.get(key)
    return float(v) if isinstance(v, int | float) else 0.0


def price_usage(
    usage: Mapping[str, Any],
    prices: PriceTable,
    params: ModelParams | None = None,
    *,
    capacity: Capacity | None = None,
    lambda_init_seconds: Mapping[str, float] | None = None,
    tracing: Mapping[str, Any] | None = None,
) -> CostResult:
    """Price one metered usage dict (one architecture, one or more sources).

    ``capacity``: the monolith's task sizes and instances (:mod:`vqa.deployment`), required
    when worker CPU was metered. ``lambda_init_seconds``: handler -> INIT seconds measured on a
    full core. ``tracing``: :func:`vqa.deployment.traced` of the architecture's template.
    """
    params = params or ModelParams()
    arch = str(usage.get("architecture") or "unknown")
    stream_seconds = _num(usage, "stream_seconds")
    if stream_seconds <= 0:
        raise ConfigError(f"usage of {arch}: stream_seconds must be positive")
    requests: Mapping[str, Mapping[str, int]] = usage.get("requests") or {}
    counters: Mapping[str, Any] = usage.get("counters") or {}
    byte_counts: Mapping[str, Any] = usage.get("bytes") or {}
    config: Mapping[str, Any] = usage.get("config") or {}
    streams = max(1.0, _num(usage, "streams"))
    # Per-stream work is priced per stream, spread over the stream's lifetime.
    share = params.per_stream_share(stream_seconds / streams)
    per_stream_ops = PER_STREAM_OPS.get(arch, frozenset())

    def count(service: str, op: str, n: float) -> float:
        return n * share if (service, op) in per_stream_ops else float(n)

    items: list[LineItem] = []
    rates: dict[str, float] = {}
    unpriced: dict[str, dict[str, int]] = {}
    notes: list[str] = []

    def add(service: str, name: str, item: str, quantity: float) -> None:
        p = prices.price(service, name)
        items.append(
            LineItem(service, item, quantity, p.unit, p.unit_usd, quantity * p.unit_usd, p.source)
        )

    def ops(service: str) -> Mapping[str, int]:
        return requests.get(service) or {}

    # Step Functions: Standard bills transitions; Express bills requests and duration.
    sfn_ops = ops("stepfunctions")
    executions = _num(counters, "sfn_executions") or float(
        sfn_ops.get("StartExecution", 0) + sfn_ops.get("StartSyncExecution", 0)
    )
    workflow = str(config.get("workflow_type") or "").upper()
    if not workflow:
        express_metered = "sfn_express_duration_seconds" in counters
        workflow = "EXPRESS" if express_metered else "STANDARD"
    transitions = _num(counters, "state_transitions")
    rates["sfn_executions"] = executions / stream_seconds
    if workflow == "EXPRESS":
        if executions:
            add("stepfunctions", "express_requests", "Express requests", executions)
            add(
                "stepfunctions",
                "express_duration",
                "Express duration",
                _express_gb_seconds(counters, executions, prices),
            )
        rates["express_start_execution"] = executions / stream_seconds
    else:
        if transitions:
            add("stepfunctions", "standard_transitions", "state transitions", transitions)
        rates["state_transitions"] = transitions / stream_seconds
        rates["standard_start_execution"] = _standard_start_rate(
            executions, stream_seconds, streams, config, params
        )

    # Lambda: invocations and GB-seconds, the price by the functions' architecture.
    functions = lambda_functions(counters)
    invocations = _num(counters, "lambda_invocations") or float(ops("lambda").get("Invoke", 0))
    # The per-stream functions' calls are spread over the stream's lifetime.
    invocations -= (1 - share) * sum(
        calls for (h, _), (_, calls) in functions.items() if h in PER_STREAM_HANDLERS
    )
    if invocations:
        add("lambda", "requests", "Lambda requests", invocations)
    lambda_arch = str(config.get("lambda_architecture") or "x86_64")
    if lambda_arch not in ("x86_64", "arm64"):
        raise ConfigError(f"usage of {arch}: unknown lambda_architecture {lambda_arch!r}")
    gb_seconds = _num(counters, "lambda_gb_seconds")
    lambda_seconds = _num(counters, "lambda_seconds")
    init_gb_seconds = 0.0
    fn_rows: list[dict[str, Any]] = []
    if functions:
        # Timed on a full host core: bill each function at its memory's CPU share.
        gb_seconds = lambda_seconds = 0.0
        lifetime_s = params.lambda_environment_lifetime_hours * SECONDS_PER_HOUR
        for (handler, memory_mb), (metered_s, calls) in sorted(functions.items()):
            # A per-stream function's run is spread over the stream's lifetime.
            charged = share if handler in PER_STREAM_HANDLERS else 1.0
            cpu_share = min(1.0, memory_mb / params.lambda_mb_per_vcpu)
            billed_s = metered_s / cpu_share
            gb_seconds += billed_s * charged * memory_mb / 1024
            lambda_seconds += billed_s * charged
            init_s = (lambda_init_seconds or {}).get(handler)
            # Environments = measured concurrency (billed_s / stream_s), each initialised once
            # per lifetime: billed_s / lifetime_s cold starts in the run.
            cold_starts = billed_s * charged / lifetime_s
            init_billed = (init_s / cpu_share) if init_s is not None else 0.0
            init_gb_seconds += cold_starts * init_billed * memory_mb / 1024
            fn_rows.append(
                {
                    "handler": handler,
                    "memory_mb": memory_mb,
                    "invocations": calls,
                    "metered_seconds": metered_s,
                    "cpu_share": cpu_share,
                    "billed_seconds": billed_s,
                    "charged_share": charged,
                    "concurrency_per_stream": billed_s * charged / stream_seconds,
                    "init_seconds_full_core": init_s,
                    "init_seconds_billed": init_billed if init_s is not None else None,
                    "cold_starts": cold_starts,
                }
            )
    if gb_seconds:
        add("lambda", f"duration_{lambda_arch}", f"Lambda GB-seconds ({lambda_arch})", gb_seconds)
    if init_gb_seconds:
        add(
            "lambda",
            f"duration_{lambda_arch}",
            f"Lambda INIT GB-seconds ({lambda_arch})",
            init_gb_seconds,
        )
    if not lambda_seconds and gb_seconds:
        mems = [
            float(v)
            for k, v in config.items()
            if k.endswith("_memory_mb")
            and not k.startswith("worker")
            and isinstance(v, int | float)
            and v > 0
        ]
        if mems:
            lambda_seconds = gb_seconds / (sum(mems) / len(mems) / 1024)
            notes.append(
                "Lambda concurrency estimated from GB-seconds at the mean configured"
                " Lambda memory (no lambda_seconds counter metered)."
            )
    rates["lambda_concurrency"] = lambda_seconds / stream_seconds

    # S3: requests by price class, and storage for the objects' lifetime.
    put_n = get_n = 0.0
    for op, n in ops("s3").items():
        if op in S3_FREE:
            continue
        if op in S3_PUT_CLASS:
            put_n += count("s3", op, n)
        else:
            get_n += count("s3", op, n)
    if put_n:
        add("s3", "put_class", "S3 PUT/COPY/POST/LIST requests", put_n)
    if get_n:
        add("s3", "get_class", "S3 GET and other requests", get_n)
    rates["s3_put"] = put_n / stream_seconds
    rates["s3_get"] = get_n / stream_seconds
    put_bytes = _num(byte_counts, "s3_put")
    if put_bytes:
        lifetime_days = (
            _num(config, "intermediate_expiry_days") or params.intermediate_lifetime_days
        )
        gb_months = put_bytes / GIB * lifetime_days * 24 / params.hours_per_month
        add("s3", "storage", f"S3 storage ({lifetime_days:g} day lifetime)", gb_months)

    # SQS and SNS: every API call is a request (payloads are far below the 64 KB chunk).
    sqs_n = sum(count("sqs", op, n) for op, n in ops("sqs").items())
    if sqs_n:
        add("sqs", "requests", "SQS requests", sqs_n)
    sns_n = sum(count("sns", op, n) for op, n in ops("sns").items())
    if sns_n:
        add("sns", "requests", "SNS requests", sns_n)
    # EventBridge: each alert is one PutEvents call with one custom event (vqa.alerts).
    events_n = count("events", "PutEvents", ops("events").get("PutEvents", 0))
    if events_n:
        add("events", "custom_events", "EventBridge custom events", events_n)
    rates["sns_publish"] = sum(
        count("sns", op, ops("sns").get(op, 0)) for op in ("Publish", "PublishBatch")
    ) / (stream_seconds)

    # DynamoDB on-demand: request units per data-plane call.
    # Consumed capacity when it was metered (CloudWatch, --aws), else per call.
    wru = _num(counters, "dynamodb_write_units") or sum(
        DYNAMODB_WRITE_UNITS.get(op, 0) * count("dynamodb", op, n)
        for op, n in ops("dynamodb").items()
    )
    rru = _num(counters, "dynamodb_read_units") or sum(
        DYNAMODB_READ_UNITS.get(op, 0) * count("dynamodb", op, n)
        for op, n in ops("dynamodb").items()
    )
    if wru:
        add("dynamodb", "write_request_units", "DynamoDB write request units", wru)
    if rru:
        add("dynamodb", "read_request_units", "DynamoDB read request units", rru)

    # CloudWatch Logs ingestion: what handlers and workers logged, plus the Lambda platform's
    # own lines per invocation.
    log_bytes = _num(counters, "log_bytes") + invocations * params.lambda_platform_log_bytes
    if log_bytes:
        add("logs", "ingestion", "CloudWatch Logs ingestion (GB)", log_bytes / GIB)

    # X-Ray: a traced state machine records one trace per execution (its Lambda segments join
    # it); traced functions invoked otherwise record one trace per invocation (upper bound:
    # the default sampling rule records fewer at high rates).
    if tracing:
        if tracing.get("state_machine") and executions:
            traces = executions
        else:
            handlers = set(tracing.get("lambda_handlers") or ())
            traces = sum(calls for (h, _), (_, calls) in functions.items() if h in handlers)
        if traces:
            add("xray", "traces_recorded", "X-Ray traces recorded", traces)

    # EC2 + EBS: the instances ECS places for fleet_streams streams' tasks, per stream.
    cpu_seconds = _num(counters, "worker_cpu_seconds")
    instances_per_stream = 0.0
    instance_type: str | None = None
    utilisation: float | None = None
    instance_utilisation: float | None = None
    if cpu_seconds:
        if capacity is None:
            raise ConfigError(f"usage of {arch}: worker CPU metered but no task sizes to place")
        instance_type = capacity.instance_type
        ran = str(config.get("instance_type") or instance_type)
        if ran != instance_type:
            raise ConfigError(
                f"usage of {arch}: ran on {ran}, the template deploys {instance_type}"
            )
        it = prices.instance(instance_type)
        instances_per_stream = capacity.instances(params.fleet_streams) / params.fleet_streams
        utilisation = cpu_seconds / stream_seconds / capacity.reserved_vcpus_per_stream
        instance_utilisation = (
            cpu_seconds / stream_seconds / (instances_per_stream * capacity.instance_vcpus)
        )
        instance_hours = instances_per_stream * stream_seconds / SECONDS_PER_HOUR
        items.append(
            LineItem(
                "ec2",
                f"{instance_type} instance-hours",
                instance_hours,
                "instance-hours",
                it.usd_per_hour,
                instance_hours * it.usd_per_hour,
                it.source,
            )
        )
        add(
            "ebs",
            "gp3_storage",
            f"EBS gp3 root volumes ({params.ebs_gb_per_instance:g} GB each)",
            instance_hours * params.ebs_gb_per_instance / params.hours_per_month,
        )
        rates["instances"] = instances_per_stream

    for service, service_ops in requests.items():
        for op, n in service_ops.items():
            if _is_priced(service, op, workflow):
                continue
            unpriced.setdefault(service, {})[op] = int(n)
    return CostResult(
        architecture=arch,
        stream_seconds=stream_seconds,
        line_items=items,
        instances_per_stream=instances_per_stream,
        instance_type=instance_type,
        capacity=capacity if cpu_seconds else None,
        reserved_cpu_utilisation=utilisation,
        instance_cpu_utilisation=instance_utilisation,
        lambda_functions=fn_rows,
        rates=rates,
        unpriced=unpriced,
        assumptions=notes,
    )


def lambda_functions(counters: Mapping[str, Any]) -> dict[tuple[str, int], tuple[float, float]]:
    """(handler, memory MB) -> (metered seconds, invocations) from the runners' per-function
    counters ``lambda_seconds@HANDLER@MB`` and ``lambda_invocations@HANDLER@MB``."""
    out: dict[tuple[str, int], tuple[float, float]] = {}
    for key, v in counters.items():
        name, _, rest = key.partition("@")
        if name not in ("lambda_seconds", "lambda_invocations") or not rest:
            continue
        handler, _, mem = rest.rpartition("@")
        seconds, calls = out.get((handler, int(mem)), (0.0, 0.0))
        if name == "lambda_seconds":
            seconds += float(v)
        else:
            calls += float(v)
        out[(handler, int(mem))] = (seconds, calls)
    return out


def per_shard(counters: Mapping[str, Any], name: str) -> dict[str, float]:
    """``{shard: value}`` of the runners' ``NAME@SHARD`` counters."""
    prefix = f"{name}@"
    return {k[len(prefix) :]: float(v) for k, v in counters.items() if k.startswith(prefix)}


def _is_priced(service: str, op: str, workflow: str) -> bool:
    if service in ("s3", "sqs", "sns"):
        return op not in S3_FREE
    if service == "events":
        return op == "PutEvents"
    if service == "dynamodb":
        return op in DYNAMODB_WRITE_UNITS or op in DYNAMODB_READ_UNITS
    if service == "lambda":
        return op == "Invoke"
    if service == "stepfunctions":
        # Standard bills transitions, not API calls; Express bills each execution started.
        return workflow == "EXPRESS" and op in ("StartExecution", "StartSyncExecution")
    return False


def _standard_start_rate(
    executions: float,
    stream_seconds: float,
    streams: float,
    config: Mapping[str, Any],
    params: ModelParams,
) -> float:
    """Standard executions started per stream-second over a stream's lifetime: one execution
    per ``segments_per_execution`` segments (the hand-over chunks a long stream), so a clip
    shorter than one chunk, which starts one execution, does not set the rate."""
    chunk_s = _num(config, "segments_per_execution") * _num(config, "segment_seconds")
    if params.stream_lifetime_hours is None or chunk_s <= 0:
        return executions / stream_seconds
    lifetime = max(stream_seconds / streams, params.stream_lifetime_hours * SECONDS_PER_HOUR)
    return math.ceil(lifetime / chunk_s - 1e-9) / lifetime


def _express_gb_seconds(
    counters: Mapping[str, Any], executions: float, prices: PriceTable
) -> float:
    """Billed Express GB-seconds: each execution's duration rounded up to the billing increment
    (from the mean duration per execution, all that is metered) at the minimum billed memory."""
    if "express_gb_seconds" in counters:
        return _num(counters, "express_gb_seconds")
    p = prices.price("stepfunctions", "express_duration")
    inc_s = float(p.extra.get("billing_increment_ms", 100)) / 1000
    mem_gb = float(p.extra.get("min_billed_mb", 64)) / 1024
    duration = _num(counters, "sfn_express_duration_seconds")
    if not executions or not duration:
        return 0.0
    per_exec = math.ceil(duration / executions / inc_s - 1e-9) * inc_s
    return per_exec * executions * mem_gb


def merge_usage(usages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Add the usage of several runs of one architecture (several sources) into one."""
    if not usages:
        raise ConfigError("no usage to merge")
    out: dict[str, Any] = {"requests": {}, "bytes": {}, "counters": {}}
    total_stream = total_wall = 0.0
    for u in usages:
        for service, service_ops in (u.get("requests") or {}).items():
            dst = out["requests"].setdefault(service, {})
            for op, n in service_ops.items():
                dst[op] = dst.get(op, 0) + n
        for k, v in (u.get("bytes") or {}).items():
            out["bytes"][k] = out["bytes"].get(k, 0) + v
        for k, v in (u.get("counters") or {}).items():
            if k.startswith("worker_peak_rss_mb@"):  # a peak: the largest, not the sum
                out["counters"][k] = max(out["counters"].get(k, 0), v)
            else:
                out["counters"][k] = out["counters"].get(k, 0) + v
        total_stream += _num(u, "stream_seconds")
        total_wall += _num(u, "wall_seconds")
    out["architecture"] = usages[0].get("architecture")
    out["streams"] = sum(max(1.0, _num(u, "streams")) for u in usages)
    out["stream_seconds"] = total_stream
    out["wall_seconds"] = total_wall
    out["config"] = dict(usages[0].get("config") or {})
    return out


# --- projection -------------------------------------------------------------------------------


def stream_points(max_streams: int = 10_000) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... up to ``max_streams``: log-spaced concurrent stream counts."""
    out: list[int] = []
    decade = 1
    while decade <= max_streams:
        out += [m * decade for m in (1, 2, 5) if m * decade <= max_streams]
        decade *= 10
    if out[-1] != max_streams:
        out.append(max_streams)
    return out


def hourly_cost(
    result: CostResult, streams: int, prices: PriceTable, params: ModelParams | None = None
) -> tuple[float, int]:
    """USD per hour and instance count for ``streams`` concurrent streams like the metered ones."""
    params = params or ModelParams()
    linear = result.fixed_per_hour() * streams
    if not result.instance_type:
        return result.usd_per_stream_hour * streams, 0
    n = result.instances(streams)
    it = prices.instance(result.instance_type)
    ebs = (
        prices.unit_usd("ebs", "gp3_storage") * params.ebs_gb_per_instance / params.hours_per_month
    )
    return linear + n * (it.usd_per_hour + ebs), n


#: Quota name -> (rate key in CostResult.rates, what the rate counts, architectures it applies to)
QUOTA_RATES: dict[str, tuple[str, str]] = {
    "stepfunctions_state_transitions_per_second": ("state_transitions", "state transitions/s"),
    "stepfunctions_standard_start_execution_per_second": (
        "standard_start_execution",
        "Standard executions started/s",
    ),
    "stepfunctions_express_start_execution_per_second": (
        "express_start_execution",
        "Express executions started/s",
    ),
    "lambda_concurrent_executions": ("lambda_concurrency", "concurrent Lambda executions"),
    "s3_put_per_second_per_prefix": ("s3_put", "S3 PUT-class requests/s"),
    "s3_get_per_second_per_prefix": ("s3_get", "S3 GET-class requests/s"),
    "sns_publish_per_second": ("sns_publish", "SNS publishes/s"),
}


def quota_markers(
    result: CostResult, prices: PriceTable, *, max_streams: int = 10_000
) -> list[dict[str, Any]]:
    """Where ``result``'s architecture reaches each default quota, in concurrent streams.

    ``streams_at_limit`` is the largest number of streams that stays within the quota (None when
    the architecture does not use the resource or the service has no practical limit);
    ``hit`` is True when that is below ``max_streams``.
    """
    out: list[dict[str, Any]] = []
    for name, (rate_key, what) in QUOTA_RATES.items():
        if rate_key not in result.rates:
            continue
        rate = result.rates[rate_key]
        q = prices.quota(name)
        if rate <= 0 or q.value is None:
            continue
        at = q.value / rate
        m = _marker(name, q, what, rate, at, max_streams)
        if name.startswith("s3_"):
            m["note"] = (
                "Streams at the limit if every stream's requests land on one partition; the"
                " intermediate keys put each stream under its own prefix (segments/<stream>/,"
                " state/<stream>/), so S3 can partition by stream as the load grows, answering"
                " 503 Slow Down (retried) until it has. " + q.note
            )
        out.append(m)
    sqs_used = any(li.service == "sqs" for li in result.line_items)
    if sqs_used:
        q = prices.quota("sqs_standard_requests_per_second")
        out.append(
            {
                "quota": "sqs_standard_requests_per_second",
                "what": "SQS requests/s",
                "per_stream": None,
                "limit": q.value,
                "streams_at_limit": None,
                "hit": False,
                "note": q.note,
                "source": q.source,
                "as_of": q.as_of,
            }
        )
    if result.capacity is not None:
        q = prices.quota("ec2_on_demand_standard_vcpus")
        it = prices.instance(result.capacity.instance_type)
        assert q.value is not None
        allowed = math.floor(q.value / it.vcpus)
        at = float(result.capacity.streams_within(allowed))
        m = _marker(
            "ec2_on_demand_standard_vcpus",
            q,
            f"vCPUs of {it.name}",
            result.instances_per_stream * it.vcpus,
            at,
            max_streams,
        )
        m["note"] = f"{allowed} x {it.name} ({it.vcpus} vCPUs) fit in {q.value:g} vCPUs. " + q.note
        out.append(m)
    out.sort(key=lambda m: (m["streams_at_limit"] is None, m["streams_at_limit"] or 0))
    return out


def cheapest_instance_type(
    capacity: Capacity, prices: PriceTable, params: ModelParams | None = None
) -> str:
    """The instance type of ``capacity``'s processor generation (``7i`` of ``c7i.large``) that
    places ``fleet_streams`` streams' tasks for the least EC2 + EBS per hour: an operator
    matching the instance's CPU:memory ratio to the tasks'. The measured CPU time is assumed to
    carry over between types of one generation."""
    params = params or ModelParams()
    arch = prices.instance(capacity.instance_type).architecture
    generation = _generation(capacity.instance_type)
    ebs_hour = (
        prices.unit_usd("ebs", "gp3_storage") * params.ebs_gb_per_instance / params.hours_per_month
    )
    best = (math.inf, capacity.instance_type)
    for it in sorted(prices.instances.values(), key=lambda i: i.name):
        if it.architecture != arch or _generation(it.name) != generation:
            continue
        try:
            candidate = dataclasses.replace(
                capacity,
                instance_type=it.name,
                instance_vcpus=it.vcpus,
                instance_memory_mib=it.memory_mib,
            )
        except ConfigError:  # a task does not fit this type
            continue
        usd = candidate.instances(params.fleet_streams) * (it.usd_per_hour + ebs_hour)
        best = min(best, (usd, it.name))
    return best[1]


def _generation(instance_type: str) -> str:
    """``7i`` of ``c7i.large``: the processor generation the measured CPU time belongs to."""
    family = instance_type.split(".", 1)[0]
    return family.lstrip("abcdefghijklmnopqrstuvwxyz") or family


def _marker(
    name: str, q: Any, what: str, rate: float, at: float, max_streams: int
) -> dict[str, Any]:
    return {
        "quota": name,
        "what": what,
        "per_stream": rate,
        "limit": q.value,
        "streams_at_limit": at,
        "hit": at < max_streams,
        "note": q.note,
        "source": q.source,
        "as_of": q.as_of,
    }


def project(
    results: Mapping[str, CostResult],
    prices: PriceTable,
    *,
    params: ModelParams | None = None,
    max_streams: int = 10_000,
    points: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Cost of 1..``max_streams`` concurrent streams for each architecture (see
    :func:`quota_markers` for where each reaches a default quota)."""
    pts = list(points) if points is not None else stream_points(max_streams)
    out: dict[str, Any] = {"streams": pts, "free_tiers": "ignored", "architectures": {}}
    for arch, r in results.items():
        usd_hour: list[float] = []
        instances: list[int] = []
        for n in pts:
            usd, k = hourly_cost(r, n, prices, params)
            usd_hour.append(usd)
            instances.append(k)
        entry: dict[str, Any] = {
            "usd_per_hour": usd_hour,
            "usd_per_stream_hour": [u / n for u, n in zip(usd_hour, pts, strict=True)],
        }
        if r.instance_type:
            entry["instances"] = instances
            entry["instance_type"] = r.instance_type
        out["architectures"][arch] = entry
    return out
