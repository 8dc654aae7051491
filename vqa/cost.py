"""The cost model: metered usage (``vqa run --json``'s ``"usage"``) -> USD per stream-hour.

Every quantity priced here is one the runners metered (see :mod:`vqa.meter` for the schema); every
price comes from :mod:`vqa.pricing`. Nothing is priced that was not counted, and a metered
operation the model does not price is listed under ``unpriced`` rather than dropped silently.

Per stream-hour figures scale the run's cost by ``3600 / stream_seconds``. For the monolith the
EC2 instance-hours are the measured worker CPU-seconds spread over instances run at a target
utilisation: ``instances per stream = (cpu_s / stream_s) / (vCPUs x utilisation)``. That is the
cost at scale, where instances are shared; :func:`project` adds the whole-instance steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vqa.errors import ConfigError
from vqa.pricing import PriceTable

#: Display order and names of the services in breakdowns.
SERVICES: dict[str, str] = {
    "stepfunctions": "Step Functions",
    "lambda": "Lambda",
    "s3": "S3",
    "sqs": "SQS",
    "sns": "SNS",
    "dynamodb": "DynamoDB",
    "logs": "CloudWatch Logs",
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


@dataclass(frozen=True)
class ModelParams:
    """Assumptions of the model that are not prices (all stated in the report)."""

    #: Fraction of an instance's vCPUs the monolith's workers are packed to.
    target_utilization: float = 0.7
    #: Root volume of each ECS container instance (the ECS-optimized AMI's default).
    ebs_gb_per_instance: float = 30.0
    #: Hours in a billing month, as AWS's own calculators use.
    hours_per_month: float = 730.0
    #: How long intermediate objects stay stored (S3 lifecycle expiry), if the usage's config
    #: does not say (``intermediate_expiry_days``).
    intermediate_lifetime_days: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.target_utilization <= 1:
            raise ConfigError("target utilisation must be in (0, 1]")


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
    #: Fractional instances one stream keeps busy (monolith; 0 for the distributed architecture).
    instances_per_stream: float = 0.0
    instance_type: str | None = None
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

    def to_json(self) -> dict[str, Any]:
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
        }


def _num(d: Mapping[str, Any], key: str) -> float:
    v = d.get(key)
    return float(v) if isinstance(v, int | float) else 0.0


def price_usage(
    usage: Mapping[str, Any], prices: PriceTable, params: ModelParams | None = None
) -> CostResult:
    """Price one metered usage dict (one architecture, one or more sources)."""
    params = params or ModelParams()
    arch = str(usage.get("architecture") or "unknown")
    stream_seconds = _num(usage, "stream_seconds")
    if stream_seconds <= 0:
        raise ConfigError(f"usage of {arch}: stream_seconds must be positive")
    requests: Mapping[str, Mapping[str, int]] = usage.get("requests") or {}
    counters: Mapping[str, Any] = usage.get("counters") or {}
    byte_counts: Mapping[str, Any] = usage.get("bytes") or {}
    config: Mapping[str, Any] = usage.get("config") or {}
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
        rates["standard_start_execution"] = executions / stream_seconds

    # Lambda: invocations and GB-seconds, the price by the functions' architecture.
    invocations = _num(counters, "lambda_invocations") or float(ops("lambda").get("Invoke", 0))
    if invocations:
        add("lambda", "requests", "Lambda requests", invocations)
    gb_seconds = _num(counters, "lambda_gb_seconds")
    if gb_seconds:
        lambda_arch = str(config.get("lambda_architecture") or "x86_64")
        if lambda_arch not in ("x86_64", "arm64"):
            raise ConfigError(f"usage of {arch}: unknown lambda_architecture {lambda_arch!r}")
        add("lambda", f"duration_{lambda_arch}", f"Lambda GB-seconds ({lambda_arch})", gb_seconds)
    lambda_seconds = _num(counters, "lambda_seconds")
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
    put_n = get_n = 0
    for op, n in ops("s3").items():
        if op in S3_FREE:
            continue
        if op in S3_PUT_CLASS:
            put_n += n
        else:
            get_n += n
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
    sqs_n = sum(ops("sqs").values())
    if sqs_n:
        add("sqs", "requests", "SQS requests", sqs_n)
    sns_n = sum(ops("sns").values())
    if sns_n:
        add("sns", "requests", "SNS requests", sns_n)
    rates["sns_publish"] = (ops("sns").get("Publish", 0) + ops("sns").get("PublishBatch", 0)) / (
        stream_seconds
    )

    # DynamoDB on-demand: request units per data-plane call.
    # Consumed capacity when it was metered (CloudWatch, --aws), else per call.
    wru = _num(counters, "dynamodb_write_units") or sum(
        DYNAMODB_WRITE_UNITS.get(op, 0) * n for op, n in ops("dynamodb").items()
    )
    rru = _num(counters, "dynamodb_read_units") or sum(
        DYNAMODB_READ_UNITS.get(op, 0) * n for op, n in ops("dynamodb").items()
    )
    if wru:
        add("dynamodb", "write_request_units", "DynamoDB write request units", wru)
    if rru:
        add("dynamodb", "read_request_units", "DynamoDB read request units", rru)

    # CloudWatch Logs ingestion of what handlers and workers logged.
    log_bytes = _num(counters, "log_bytes")
    if log_bytes:
        add("logs", "ingestion", "CloudWatch Logs ingestion (GB)", log_bytes / GIB)

    # EC2 + EBS: worker CPU-seconds at the target utilisation of the instance type's vCPUs.
    cpu_seconds = _num(counters, "worker_cpu_seconds")
    instances_per_stream = 0.0
    instance_type: str | None = None
    if cpu_seconds:
        instance_type = str(config.get("instance_type") or "")
        if not instance_type:
            raise ConfigError(f"usage of {arch}: worker CPU metered but no instance_type")
        it = prices.instance(instance_type)
        instances_per_stream = cpu_seconds / stream_seconds / (it.vcpus * params.target_utilization)
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
        rates=rates,
        unpriced=unpriced,
        assumptions=notes,
    )


def _is_priced(service: str, op: str, workflow: str) -> bool:
    if service in ("s3", "sqs", "sns"):
        return op not in S3_FREE
    if service == "dynamodb":
        return op in DYNAMODB_WRITE_UNITS or op in DYNAMODB_READ_UNITS
    if service == "lambda":
        return op == "Invoke"
    if service == "stepfunctions":
        # Standard bills transitions, not API calls; Express bills each execution started.
        return workflow == "EXPRESS" and op in ("StartExecution", "StartSyncExecution")
    return False


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
            out["counters"][k] = out["counters"].get(k, 0) + v
        total_stream += _num(u, "stream_seconds")
        total_wall += _num(u, "wall_seconds")
    out["architecture"] = usages[0].get("architecture")
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


def instances_for(streams: int, instances_per_stream: float) -> int:
    """Whole instances for ``streams`` concurrent streams (at least one while any run)."""
    if streams <= 0 or instances_per_stream <= 0:
        return 0
    return max(1, math.ceil(streams * instances_per_stream - 1e-9))


def hourly_cost(
    result: CostResult, streams: int, prices: PriceTable, params: ModelParams | None = None
) -> tuple[float, int]:
    """USD per hour and instance count for ``streams`` concurrent streams like the metered ones."""
    params = params or ModelParams()
    linear = result.fixed_per_hour() * streams
    if not result.instance_type:
        return result.usd_per_stream_hour * streams, 0
    n = instances_for(streams, result.instances_per_stream)
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
        out.append(_marker(name, q, what, rate, at, max_streams))
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
    if result.instance_type and result.instances_per_stream > 0:
        q = prices.quota("ec2_on_demand_standard_vcpus")
        it = prices.instance(result.instance_type)
        assert q.value is not None
        allowed = math.floor(q.value / it.vcpus)
        at = allowed / result.instances_per_stream
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
