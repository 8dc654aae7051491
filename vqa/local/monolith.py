"""Local emulation of the monolith architecture: ``vqa run SOURCE --arch monolith``.

No AWS account: moto's threaded server on 127.0.0.1 stands in for S3, DynamoDB, SNS and SQS. The
run creates what the stack creates (a source bucket, a checkpoint bucket, the defects table, the
alerts topic, and per shard a job queue with a dead-letter queue and the same redrive policy),
uploads the source, invokes the real orchestrator handler as Lambda would (its module loaded
fresh with the function's environment), then starts one real worker process per shard
(``python -m vqa.worker --drain``, configured through the same ``VQA_*`` variables as the ECS
task definition) and waits until every queue is drained.

Usage is metered as in the deployed system: every API call of the orchestrator and the workers
goes through a :class:`vqa.meter.Meter`; each worker process measures its own CPU time
(``worker_cpu_seconds``, decoder threads included, moto excluded) and the bytes of log lines it
wrote (``log_bytes``); the orchestrator invocation adds ``lambda_invocations`` and
``lambda_gb_seconds``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from vqa.errors import BadSourceError, VqaError
from vqa.meter import Meter

log = logging.getLogger("vqa.local.monolith")

ROOT = Path(__file__).resolve().parents[2]
ORCHESTRATOR_HANDLER = ROOT / "lambdas" / "orchestrator" / "handler.py"
REGION = "us-east-1"
#: The orchestrator Lambda's configured memory (stacks/constructs/orchestrator.py).
ORCHESTRATOR_MEMORY_MB = 256
#: The queues' redrive maxReceiveCount and visibility (stacks/constructs/shard_service.py).
MAX_RECEIVES = 3
VISIBILITY_SECONDS = 120
#: Segments between checkpoints (stacks/monolith.py CHECKPOINT_EVERY).
CHECKPOINT_EVERY = 10
_FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}
_DEFAULT_SHARDS: tuple[tuple[str, ...], ...] = (
    ("black", "freeze", "corruption", "av_sync"),
    ("silence", "clipping"),
)


@dataclass(frozen=True)
class MonolithSettings:
    """The monolith part of the app configuration (a ``stacks.config.VqaConfig`` or cdk.json)."""

    shards: tuple[tuple[str, ...], ...] = _DEFAULT_SHARDS
    segment_seconds: float = 1.0
    instance_type: str = "c7i.large"
    worker_cpu: int = 1024
    worker_memory_mb: int = 1536
    lambda_architecture: str = "x86_64"

    @classmethod
    def from_config(cls, config: Any | None) -> MonolithSettings:
        """From a ``VqaConfig``-like object, a dict, or (``None``) cdk.json's ``vqa`` context.

        Reading cdk.json directly keeps ``vqa run`` from importing the CDK (seconds of start-up).
        """
        if config is None:
            try:
                ctx = json.loads((ROOT / "cdk.json").read_text())["context"].get("vqa", {})
            except (OSError, ValueError, KeyError):
                ctx = {}
            config = ctx
        get = config.get if isinstance(config, dict) else lambda k, d: getattr(config, k, d)
        defaults = cls()
        return cls(
            shards=tuple(tuple(s) for s in get("shards", defaults.shards)),
            segment_seconds=float(get("segment_seconds", defaults.segment_seconds)),
            instance_type=str(get("instance_type", defaults.instance_type)),
            worker_cpu=int(get("worker_cpu", defaults.worker_cpu)),
            worker_memory_mb=int(get("worker_memory_mb", defaults.worker_memory_mb)),
            lambda_architecture=str(get("lambda_architecture", defaults.lambda_architecture)),
        )

    @property
    def shard_names(self) -> list[str]:
        # Same naming as stacks.monolith.shard_names.
        return [f"shard{i}" for i in range(len(self.shards))]

    def to_usage_config(self) -> dict[str, Any]:
        return {
            "shards": [list(s) for s in self.shards],
            "instance_type": self.instance_type,
            "worker_cpu": self.worker_cpu,
            "worker_memory_mb": self.worker_memory_mb,
            "segment_seconds": self.segment_seconds,
            "orchestrator_memory_mb": ORCHESTRATOR_MEMORY_MB,
            "lambda_architecture": self.lambda_architecture,
            "checkpoint_every": CHECKPOINT_EVERY,
        }


# --------------------------------------------------------------------------------------------
# The emulated account
# --------------------------------------------------------------------------------------------


@dataclass
class ShardResources:
    name: str
    detectors: tuple[str, ...]
    queue_url: str
    dlq_url: str


@dataclass
class Emulation:
    """Resources of one emulated deployment, named uniquely so that runs never collide."""

    endpoint: str
    source_bucket: str
    checkpoint_bucket: str
    table: str
    topic_arn: str
    shards: list[ShardResources] = field(default_factory=list)

    def client(self, service: str, meter: Meter | None = None) -> Any:
        """A client of the emulated account; unmetered ones are shared, metered ones are new."""
        if meter is None:
            with _clients_lock:
                cached = _plain_clients.get((self.endpoint, service))
            if cached is not None:
                return cached
        with _clients_lock:  # botocore sessions are not thread-safe while creating clients
            client = _session().client(  # type: ignore[call-overload]
                service,
                endpoint_url=self.endpoint,
                region_name=REGION,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                aws_session_token="testing",
            )
            if meter is None:
                _plain_clients[(self.endpoint, service)] = client
        return meter.attach(client) if meter is not None else client

    def worker_env(self, shard: ShardResources, settings: MonolithSettings) -> dict[str, str]:
        """What the ECS task definition gives a shard's container, pointed at moto."""
        return {
            **_FAKE_CREDENTIALS,
            "VQA_ENDPOINT_URL": self.endpoint,
            "VQA_TABLE": self.table,
            "VQA_TOPIC_ARN": self.topic_arn,
            "VQA_CHECKPOINT_BUCKET": self.checkpoint_bucket,
            "VQA_SEGMENT_SECONDS": repr(settings.segment_seconds),
            "VQA_CHECKPOINT_EVERY": str(CHECKPOINT_EVERY),
            "VQA_SHARD": shard.name,
            "VQA_DETECTORS": ",".join(shard.detectors),
            "VQA_QUEUE_URL": shard.queue_url,
            "VQA_MAX_RECEIVES": str(MAX_RECEIVES),
            "VQA_VISIBILITY_SECONDS": str(VISIBILITY_SECONDS),
        }

    def orchestrator_env(self, settings: MonolithSettings) -> dict[str, str]:
        """The orchestrator function's environment (stacks/constructs/orchestrator.py)."""
        return {
            **_FAKE_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint,
            "VQA_TABLE": self.table,
            "VQA_SHARD_QUEUES": json.dumps({s.name: s.queue_url for s in self.shards}),
            "VQA_SHARD_DETECTORS": json.dumps({s.name: list(s.detectors) for s in self.shards}),
            "VQA_SEGMENT_SECONDS": repr(settings.segment_seconds),
            "VQA_SOURCE_BUCKET": self.source_bucket,
        }


_server_lock = threading.Lock()
_server: Any = None
_clients_lock = threading.Lock()
_plain_clients: dict[tuple[str, str], Any] = {}
_boto_session: Any = None


def _session() -> Any:
    """One botocore session for the emulation's clients: service models are loaded once."""
    global _boto_session
    if _boto_session is None:
        import boto3

        _boto_session = boto3.session.Session()
    return _boto_session


def moto_endpoint() -> str:
    """Start (once per process) moto's threaded server on 127.0.0.1 and return its URL."""
    global _server
    with _server_lock:
        if _server is None:
            from moto.server import ThreadedMotoServer

            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            _server = server
            # werkzeug logs every request at INFO on the root logger: keep stderr clean.
            logging.getLogger("werkzeug").setLevel(logging.ERROR)
        host, port = _server.get_host_and_port()
    return f"http://{host}:{port}"


def create_emulation(settings: MonolithSettings, *, endpoint: str | None = None) -> Emulation:
    """Create the stack's data-plane resources in moto (not metered: created once per deploy)."""
    endpoint = endpoint or moto_endpoint()
    run = uuid.uuid4().hex[:10]
    emu = Emulation(
        endpoint=endpoint,
        source_bucket=f"vqa-monolith-sources-{run}",
        checkpoint_bucket=f"vqa-monolith-checkpoints-{run}",
        table=f"vqa-monolith-defects-{run}",
        topic_arn="",
    )
    s3 = emu.client("s3")
    for bucket in (emu.source_bucket, emu.checkpoint_bucket):
        s3.create_bucket(Bucket=bucket)
    ddb = emu.client("dynamodb")
    ddb.create_table(
        TableName=emu.table,
        KeySchema=[
            {"AttributeName": "stream", "KeyType": "HASH"},
            {"AttributeName": "defect", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "stream", "AttributeType": "S"},
            {"AttributeName": "defect", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    emu.topic_arn = emu.client("sns").create_topic(Name=f"vqa-monolith-alerts-{run}")["TopicArn"]
    sqs = emu.client("sqs")
    for name, detectors in zip(settings.shard_names, settings.shards, strict=True):
        dlq_url = sqs.create_queue(QueueName=f"vqa-{run}-{name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        queue_url = sqs.create_queue(
            QueueName=f"vqa-{run}-{name}",
            Attributes={
                "VisibilityTimeout": str(VISIBILITY_SECONDS),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES}
                ),
            },
        )["QueueUrl"]
        emu.shards.append(ShardResources(name, tuple(detectors), queue_url, dlq_url))
    return emu


# --------------------------------------------------------------------------------------------
# The orchestrator, invoked as Lambda would
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _LambdaContext:
    def __init__(self, name: str, memory_mb: int, timeout_s: float) -> None:
        self.function_name = name
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = uuid.uuid4().hex
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:{name}"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class _LogBytes(logging.Handler):
    """Counts the bytes of the log lines a handler emits (CloudWatch Logs ingestion)."""

    def __init__(self, meter: Meter) -> None:
        super().__init__(logging.INFO)
        self.meter = meter

    def emit(self, record: logging.LogRecord) -> None:
        self.meter.add("log_bytes", len(self.format(record).encode()) + 1)


def invoke_orchestrator(
    emu: Emulation, settings: MonolithSettings, event: dict[str, Any], meter: Meter
) -> dict[str, Any]:
    """Load the handler module fresh with the function's environment and invoke it once."""
    spec = importlib.util.spec_from_file_location(
        f"vqa_orchestrator_{uuid.uuid4().hex[:8]}", ORCHESTRATOR_HANDLER
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with _environ(emu.orchestrator_env(settings)):
        spec.loader.exec_module(module)  # creates its clients, pointed at moto
    for name in ("DYNAMODB", "SQS", "S3"):
        meter.attach(getattr(module, name))
    counter = _LogBytes(meter)
    module.log.addHandler(counter)
    module.log.propagate = False  # CloudWatch's copy is counted, not printed on our stderr
    ctx = _LambdaContext("vqa-monolith-orchestrator", ORCHESTRATOR_MEMORY_MB, 30)
    t0 = time.perf_counter()
    try:
        result: dict[str, Any] = module.handler(event, ctx)
    finally:
        # Lambda bills the duration rounded up to the millisecond.
        billed = math.ceil((time.perf_counter() - t0) * 1000.0) / 1000.0
        module.log.removeHandler(counter)
        meter.count_request("lambda", "Invoke")
        meter.add("lambda_invocations", 1)
        meter.add("lambda_seconds", billed)
        meter.add("lambda_gb_seconds", billed * ORCHESTRATOR_MEMORY_MB / 1024)
    return result


# --------------------------------------------------------------------------------------------
# Workers
# --------------------------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    shard: ShardResources
    proc: subprocess.Popen[str]
    usage_file: Path
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None


def start_worker(
    emu: Emulation,
    shard: ShardResources,
    settings: MonolithSettings,
    workdir: Path,
    *,
    extra_args: list[str] | None = None,
    on_line: Any = None,
) -> WorkerProcess:
    """Start ``python -m vqa.worker --drain`` for one shard, configured like its ECS task."""
    usage = workdir / f"usage-{shard.name}-{uuid.uuid4().hex[:6]}.json"
    env = {**os.environ, **emu.worker_env(shard, settings), "PYTHONUNBUFFERED": "1"}
    env.pop("AWS_PROFILE", None)
    cmd = [
        sys.executable,
        "-m",
        "vqa.worker",
        "--drain",
        "--retry-delay-cap",
        "0",
        "--usage-out",
        str(usage),
        *(extra_args or []),
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=str(ROOT),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wp = WorkerProcess(shard=shard, proc=proc, usage_file=usage)

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            wp.lines.append(line)
            if on_line is not None:
                on_line(wp, line)

    wp.reader = threading.Thread(target=read, daemon=True)
    wp.reader.start()
    return wp


def finish_worker(wp: WorkerProcess, meter: Meter) -> None:
    """Wait for the worker and merge its metered usage; a crash is an error, not a silent gap."""
    rc = wp.proc.wait()
    if wp.reader is not None:
        wp.reader.join()
    if wp.usage_file.exists():
        meter.merge(json.loads(wp.usage_file.read_text()))
    if rc != 0:
        tail = "".join(wp.lines[-5:]).strip()
        raise VqaError(f"worker {wp.shard.name} exited with status {rc}: {tail}")


# --------------------------------------------------------------------------------------------
# run_local
# --------------------------------------------------------------------------------------------


def _stage_source(emu: Emulation, source: str) -> str:
    """Put the source where the deployed system expects it: the source bucket.

    Not metered: uploading is the client's step, the same for both architectures; what the
    architecture reads back from the bucket is metered.
    """
    url = urlparse(source)
    if url.scheme in ("http", "https"):
        return source  # workers read HLS/TS URLs directly
    s3 = emu.client("s3")
    key = f"sources/{uuid.uuid4().hex[:8]}/{Path(url.path).name or 'source'}"
    if url.scheme == "s3":
        import boto3

        # A real S3 object (the user's credentials) copied into the emulated source bucket.
        try:
            body = boto3.client("s3").get_object(Bucket=url.netloc, Key=url.path.lstrip("/"))
            data = body["Body"].read()
        except Exception as exc:
            raise BadSourceError(source, f"cannot read: {exc}") from None
    else:
        path = Path(source)
        if not path.is_file():
            raise BadSourceError(source, "no such file")
        data = path.read_bytes()
    if not data:
        raise BadSourceError(source, "empty file")
    s3.put_object(Bucket=emu.source_bucket, Key=key, Body=data)
    return f"s3://{emu.source_bucket}/{key}"


def _status(emu: Emulation, stream: str) -> dict[str, Any]:
    from vqa.results import get_status

    return get_status(dynamodb=emu.client("dynamodb"), table=emu.table, stream=stream) or {}


def _failure(source: str, status: dict[str, Any], shards: list[ShardResources]) -> VqaError:
    for shard in shards:
        reason = status.get(f"reason_{shard.name}")
        if reason:
            return BadSourceError(source, reason)
    return VqaError(f"{source}: monolith run failed: {status.get('error', 'unknown error')}")


def run_local(source: str, *, progress: bool = False, config: Any | None = None) -> dict[str, Any]:
    """Run ``source`` through the emulated monolith; the JSON of ``vqa run --arch monolith``.

    ``config`` is a ``stacks.config.VqaConfig`` (or a dict of its fields); default: cdk.json.
    Raises :class:`BadSourceError` when the shards dead-letter the job for a bad source.
    """
    settings = MonolithSettings.from_config(config)
    t0 = time.perf_counter()
    meter = Meter()
    emu = create_emulation(settings)
    staged = _stage_source(emu, source)
    stream = f"local-{uuid.uuid4().hex[:12]}"
    bar = _progress_bar(progress, len(emu.shards))
    lock = threading.Lock()
    done_segments: dict[str, int] = {}

    def on_line(wp: WorkerProcess, line: str) -> None:
        if bar is None:
            return
        with contextlib.suppress(ValueError):
            doc = json.loads(line)
            if doc.get("msg") in ("checkpoint", "job done"):
                n = int(doc.get("next_index", doc.get("segments", 0)))
                with lock:
                    prev = done_segments.get(wp.shard.name, 0)
                    done_segments[wp.shard.name] = max(prev, n)
                    bar.update(max(0, n - prev))

    with tempfile.TemporaryDirectory(prefix="vqa-monolith-") as tmp:
        # Like ECS tasks already running: the workers start (importing PyAV, numpy and the
        # detectors) while the orchestrator fans the request out; they long-poll for the job.
        workers = [
            start_worker(
                emu, shard, settings, Path(tmp), on_line=on_line, extra_args=["--first-wait", "20"]
            )
            for shard in emu.shards
        ]
        try:
            invoke_orchestrator(emu, settings, {"stream": stream, "source": staged}, meter)
        except BaseException:
            for wp in workers:
                wp.proc.terminate()
                wp.proc.wait()
            raise
        errors: list[VqaError] = []
        for wp in workers:
            try:
                finish_worker(wp, meter)
            except VqaError as exc:
                errors.append(exc)
    if bar is not None:
        bar.close()
    if errors:
        raise errors[0]

    status = _status(emu, stream)
    if status.get("state") != "done":
        raise _failure(source, status, emu.shards)
    from vqa.results import read_defects

    defects = read_defects(dynamodb=emu.client("dynamodb"), table=emu.table, stream=stream)
    duration = max(float(status.get(f"duration_{shard.name}") or 0.0) for shard in emu.shards)
    skipped: dict[str, str] = {}
    for shard in emu.shards:
        skipped.update(json.loads(status.get(f"skipped_{shard.name}") or "{}"))
    wall = time.perf_counter() - t0
    usage = {
        **meter.snapshot(),
        "architecture": "monolith",
        "stream_seconds": duration,
        "wall_seconds": wall,
        "config": settings.to_usage_config(),
    }
    return {
        "source": source,
        "duration": duration,
        "defects": [d.to_json() for d in defects],
        "skipped": skipped,
        "usage": usage,
    }


def _progress_bar(progress: bool, shards: int) -> Any:
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(desc=f"monolith ({shards} shards)", unit="seg", file=sys.stderr, leave=False)
