"""Local emulation of the monolith architecture: ``vqa run SOURCE --arch monolith``.

No AWS account: moto's threaded server on 127.0.0.1 stands in for S3, DynamoDB, SNS, SQS, KMS
and IAM. The run synthesizes the ``VqaMonolith`` stack for the configuration
(:class:`stacks.config.VqaConfig`) and creates its resources from the template
(:mod:`vqa.local.provision`): buckets, the defects table, the alerts topic, per shard a job queue
with its dead-letter queue, the roles and their policies, the orchestrator function and the shard
task definitions. Nothing about the architecture is restated here.

A run uploads the source, starts one worker process per shard as ECS starts a task (the image's
entry point with the task definition's command and environment, resolved), invokes the real
orchestrator handler as Lambda would (its module loaded fresh with the function's environment),
waits until the stream's status item says done or failed, and then stops the workers with SIGTERM
as ECS does on scale-in (SIGKILL after the container's ``StopTimeout``).

Besides the task definition's variables a worker gets only what the platform provides: from the
ECS agent, credentials, the region and ``ECS_AGENT_URI`` (:class:`EcsAgent`: task protection,
checked against the task role); from the emulator, ``AWS_ENDPOINT_URL`` (moto is the network),
``PYTHONPATH`` with ``vqa/local/ecs_task`` (local IAM for the task role, ``VQA_LOCAL_IAM_*``) and
``VQA_USAGE_OUT`` (the emulator's metering, what billing would see).

IAM is enforced (:mod:`vqa.local.iam`): the orchestrator's calls against its execution role, each
worker's against its task role; a denied call fails the run naming role, action and resource.

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
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from vqa.errors import BadSourceError, VqaError
from vqa.local import aws, iam
from vqa.local.provision import ACCOUNT, REGION, Container, Deployment, Function, provision
from vqa.local.template import MONOLITH_STACK, config_context, synth_template
from vqa.meter import Meter
from vqa.results import StreamStatus, read_defects, read_status

if TYPE_CHECKING:
    from stacks.config import VqaConfig

log = logging.getLogger("vqa.local.monolith")

ROOT = Path(__file__).resolve().parents[2]
#: Python start-up hook of an emulated task (local IAM).
ECS_TASK_DIR = Path(__file__).resolve().parent / "ecs_task"
#: A run that makes no progress for this long is reported as hung (a bug, never expected).
STALL_SECONDS = 300.0
#: What the platform (the ECS agent, the Lambda runtime) gives every task and function: the role's
#: credentials (moto accepts any) and the region.
_PLATFORM_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
}


def load_config(config: Any | None = None) -> VqaConfig:
    """The app configuration (:class:`stacks.config.VqaConfig`): ``cdk.json``'s ``vqa`` context,
    overridden by a ``VqaConfig`` or a mapping of its fields."""
    from stacks import load_context
    from stacks.config import VqaConfig

    return VqaConfig.from_context({**load_context().get("vqa", {}), **config_context(config)})


# --------------------------------------------------------------------------------------------
# The emulated deployment
# --------------------------------------------------------------------------------------------


@dataclass
class ShardResources:
    name: str
    detectors: tuple[str, ...]
    queue_url: str
    dlq_url: str
    container: Container


@dataclass
class Emulation:
    """One deployment of the stack in moto, named uniquely so that runs never collide."""

    endpoint: str
    deployment: Deployment
    source_bucket: str
    checkpoint_bucket: str
    table: str
    topic_arn: str
    orchestrator: Function
    #: The alerts bus (EventBridge).
    bus_name: str = ""
    shards: list[ShardResources] = field(default_factory=list)
    #: Denied calls of in-process principals (the orchestrator).
    ledger: iam.Ledger = field(default_factory=iam.Ledger)

    def client(self, service: str, meter: Meter | None = None) -> Any:
        """A client of the emulated account; unmetered ones are shared, metered ones are new."""
        return _client(self.endpoint, service, meter)

    def worker_env(self, shard: ShardResources) -> dict[str, str]:
        """A task's environment: the task definition's, plus what the platform provides."""
        return {
            **shard.container.environment,
            **_PLATFORM_ENV,
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def orchestrator_env(self) -> dict[str, str]:
        """The function's environment, plus what the Lambda runtime provides."""
        return {
            **self.orchestrator.environment,
            **_PLATFORM_ENV,
            "AWS_LAMBDA_FUNCTION_NAME": self.orchestrator.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.orchestrator.memory_mb),
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def usage_config(self) -> dict[str, Any]:
        """The deployment's settings priced by the cost model (``usage.config``), as deployed."""
        first = self.shards[0].container
        template = self.deployment.template
        instance_type = ""
        for res in template["Resources"].values():
            if res["Type"] == "AWS::EC2::LaunchTemplate":
                data = res["Properties"].get("LaunchTemplateData", {})
                instance_type = str(data.get("InstanceType", instance_type))
        arch = self.deployment.template["Resources"][self.orchestrator.logical_id]["Properties"]
        return {
            "shards": [list(s.detectors) for s in self.shards],
            "instance_type": instance_type,
            "worker_cpu": first.cpu,
            "worker_memory_mb": first.memory_mb,
            "segment_seconds": float(first.environment["VQA_SEGMENT_SECONDS"]),
            "orchestrator_memory_mb": self.orchestrator.memory_mb,
            "lambda_architecture": str(arch.get("Architectures", ["x86_64"])[0]),
            "checkpoint_every": int(first.environment["VQA_CHECKPOINT_EVERY"]),
        }


_server_lock = threading.Lock()
_server: Any = None
_clients_lock = threading.Lock()
_plain_clients: dict[tuple[str, str], Any] = {}
_boto_session: Any = None


def _client(endpoint: str, service: str, meter: Meter | None = None) -> Any:
    if meter is None:
        with _clients_lock:
            cached = _plain_clients.get((endpoint, service))
        if cached is not None:
            return cached
    with _clients_lock:  # botocore sessions are not thread-safe while creating clients
        client = _session().client(  # type: ignore[call-overload]
            service,
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            aws_session_token="testing",
        )
        if meter is None:
            _plain_clients[(endpoint, service)] = client
    return meter.attach(client) if meter is not None else client


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


def create_emulation(
    config: Any | None = None,
    *,
    endpoint: str | None = None,
    template: dict[str, Any] | None = None,
) -> Emulation:
    """Deploy the monolith stack (``config``, default cdk.json; or a given ``template``) in moto.

    Not metered: resources are created once per deploy.
    """
    endpoint = endpoint or moto_endpoint()
    if template is None:
        template = synth_template(MONOLITH_STACK, vqa_context=config_context(config))
    dep = provision(
        template, stack=MONOLITH_STACK, client=lambda service: _client(endpoint, service)
    )
    out = dep.outputs()
    shards = []
    for container in dep.containers.values():
        env = container.environment
        name = env["VQA_SHARD"]
        shards.append(
            ShardResources(
                name=name,
                detectors=tuple(d for d in env["VQA_DETECTORS"].split(",") if d),
                queue_url=env["VQA_QUEUE_URL"],
                dlq_url=out[f"{name}DeadLetterQueueUrl"],
                container=container,
            )
        )
    shards.sort(key=lambda s: s.name)
    orchestrator = next(
        f for f in dep.functions.values() if f.name == out["OrchestratorFunctionName"]
    )
    return Emulation(
        endpoint=endpoint,
        deployment=dep,
        source_bucket=out["SourceBucketName"],
        checkpoint_bucket=out["CheckpointBucketName"],
        table=out["DefectsTableName"],
        topic_arn=out["AlertsTopicArn"],
        bus_name=out.get("AlertsBusName", ""),
        orchestrator=orchestrator,
        shards=shards,
    )


# --------------------------------------------------------------------------------------------
# The orchestrator, invoked as Lambda would
# --------------------------------------------------------------------------------------------


def _handler_file(fn: Function) -> Path:
    """The file of ``fn``'s handler in the shared code asset (the repository's layout)."""
    from stacks.constructs.packaging import ROOT

    module = fn.handler.rpartition(".")[0]
    return ROOT / f"{module.replace('.', '/')}.py"


def invoke_orchestrator(emu: Emulation, event: dict[str, Any], meter: Meter) -> dict[str, Any]:
    """Load the handler module fresh with the function's environment and invoke it once, its
    AWS calls checked against the function's role."""
    from vqa.local.moto_lambda import LambdaContext

    fn = emu.orchestrator
    spec = importlib.util.spec_from_file_location(
        f"vqa_orchestrator_{uuid.uuid4().hex[:8]}", _handler_file(fn)
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with aws.environ(emu.orchestrator_env()):
        spec.loader.exec_module(module)  # creates its clients, pointed at moto
    for name in ("DYNAMODB", "SQS", "S3"):
        meter.attach(getattr(module, name))
    # Its log lines and EMF documents: counted as CloudWatch would ingest them (the sink
    # keeps them off our stdout: the host's debug log).
    module.OBS.meter = meter
    ctx = LambdaContext(fn.name, fn.memory_mb, fn.timeout_s, fn.arn)
    iam.install()
    principal = emu.deployment.principal(fn.role, ledger=emu.ledger)
    t0 = time.perf_counter()
    try:
        with iam.acting_as(principal):
            result: dict[str, Any] = module.handler(event, ctx)
    finally:
        # Lambda bills the duration rounded up to the millisecond.
        billed = math.ceil((time.perf_counter() - t0) * 1000.0) / 1000.0
        meter.count_request("lambda", "Invoke")
        meter.add("lambda_invocations", 1)
        meter.add("lambda_seconds", billed)
        meter.add("lambda_gb_seconds", billed * fn.memory_mb / 1024)
        # Per handler and memory size: the cost model bills each at its CPU share.
        key = f"{fn.handler}@{fn.memory_mb}"
        meter.add(f"lambda_seconds@{key}", billed)
        meter.add(f"lambda_invocations@{key}", 1)
    return result


# --------------------------------------------------------------------------------------------
# Workers: ECS tasks
# --------------------------------------------------------------------------------------------


class EcsAgent:
    """The ECS agent's task-protection endpoint, ``$ECS_AGENT_URI/task-protection/v1/state``.

    In ECS the agent calls ``ecs:UpdateTaskProtection`` with the task role's credentials, so the
    role needs that grant on the task's ARN; here the request is checked against the task role
    the same way (:mod:`vqa.local.iam`) and a denial is recorded like any other.
    """

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        agent = self
        self.tasks: dict[str, tuple[iam.Principal, str]] = {}
        self.protected: dict[str, bool] = {}

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                status, reply = agent.update(self.path, body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return  # keep stderr for the run's own messages

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def register(self, principal: iam.Principal, task_arn: str) -> str:
        """A new task: its ``ECS_AGENT_URI``."""
        task_id = task_arn.rsplit("/", 1)[-1]
        self.tasks[task_id] = (principal, task_arn)
        return f"http://127.0.0.1:{self.server.server_port}/api/{task_id}"

    def update(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        match = re.fullmatch(r"/api/([^/]+)/task-protection/v1/state", path)
        if match is None or match.group(1) not in self.tasks:
            return 404, {"error": {"Code": "NotFound", "Message": path}}
        principal, task_arn = self.tasks[match.group(1)]
        action = "ecs:UpdateTaskProtection"
        allowed, reason = iam.evaluate(principal, action, task_arn)
        if not allowed:
            principal.ledger.record(iam.Denial(principal.role, action, task_arn, reason))
            message = f"{principal.arn} is not authorized to perform: {action} ({reason})"
            return 400, {"error": {"Code": "AccessDeniedException", "Message": message}}
        self.protected[match.group(1)] = bool(body.get("ProtectionEnabled"))
        return 200, {
            "protection": {"ProtectionEnabled": self.protected[match.group(1)], "TaskArn": task_arn}
        }


_agent_lock = threading.Lock()
_agent: EcsAgent | None = None


def ecs_agent() -> EcsAgent:
    """The process's emulated ECS agent (one for every task, as on one container instance)."""
    global _agent
    with _agent_lock:
        if _agent is None:
            _agent = EcsAgent()
        return _agent


def _dockerfile() -> str:
    from stacks.monolith import DOCKERFILE  # the image's build file, as the stack builds it

    return (ROOT / DOCKERFILE).read_text().replace("\\\n", " ")  # continuation lines joined


def image_argv(container: Container) -> list[str]:
    """What the container runs: the task definition's EntryPoint/Command, else the image's
    ENTRYPOINT/CMD, with image paths mapped back to this checkout (via WORKDIR and COPY)."""
    text = _dockerfile()

    def instruction(name: str) -> list[str]:
        found = re.findall(rf"^{name}\s+(\[.*\])\s*$", text, flags=re.M)
        return list(json.loads(found[-1])) if found else []

    workdir = (re.findall(r"^WORKDIR\s+(\S+)", text, flags=re.M) or ["/"])[-1]
    copies = {}
    for src, dest in re.findall(r"^COPY\s+(\S+)\s+(\S+)\s*$", text, flags=re.M):
        target = dest if dest.startswith("/") else f"{workdir.rstrip('/')}/{dest.lstrip('./')}"
        copies[target] = ROOT / src
    argv = list(container.entry_point or instruction("ENTRYPOINT"))
    argv += list(container.command if container.command is not None else instruction("CMD"))
    mapped = [str(copies.get(a, a)) for a in argv]
    if mapped and mapped[0].endswith(".sh"):
        mapped.insert(0, "sh")  # a checkout may not keep the executable bit
    return mapped


def image_env() -> dict[str, str]:
    """The image's ``ENV`` variables."""
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV\s+(.+)$", _dockerfile(), flags=re.M):
        for pair in shlex.split(line):
            key, sep, value = pair.partition("=")
            if sep:
                env[key] = value
    return env


@dataclass
class WorkerProcess:
    shard: ShardResources
    proc: subprocess.Popen[str]
    usage_file: Path
    denials_file: Path
    #: The task role as the ECS agent uses it (task protection), and the task's ARN.
    agent_principal: iam.Principal
    task_arn: str
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None
    #: The worker's peak resident memory (VmHWM), sampled at each line it logs.
    peak_rss_mb: float = 0.0


def _peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory so far (Linux ``VmHWM``), in MiB; 0 when unknown."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def start_worker(
    emu: Emulation,
    shard: ShardResources,
    workdir: Path,
    *,
    extra_args: list[str] | None = None,
    drain: bool = False,
    on_line: Callable[[WorkerProcess, str], None] | None = None,
    role_statements: list[dict[str, Any]] | None = None,
) -> WorkerProcess:
    """Start one ECS task of ``shard``: the image's entry point with the task definition's
    command and environment, local IAM acting as the task role.

    ``extra_args``/``drain`` (tests only: exit once the queue is empty) are appended to the
    command; ECS passes neither. ``role_statements`` replaces the role's policy (tests).
    """
    tag = f"{shard.name}-{uuid.uuid4().hex[:6]}"
    usage = workdir / f"usage-{tag}.json"
    denials = workdir / f"denials-{tag}.jsonl"
    principal = emu.deployment.principal(shard.container.task_role)
    if role_statements is not None:
        principal.statements = list(role_statements)
    policy = workdir / f"role-{tag}.json"
    policy.write_text(json.dumps(principal.to_json()))
    cluster = shard.container.cluster or "default"
    task_arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster}/{uuid.uuid4().hex}"
    python_bin = str(Path(sys.executable).parent)
    env = {
        **emu.worker_env(shard),
        "ECS_AGENT_URI": ecs_agent().register(principal, task_arn),
        # The image: its ENV, its Python first on PATH, its code (WORKDIR) importable.
        **image_env(),
        "PATH": f"{python_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": f"{ECS_TASK_DIR}{os.pathsep}{ROOT}",
        # The emulator's own hooks.
        iam.POLICY_ENV: str(policy),
        iam.DENIALS_ENV: str(denials),
        "VQA_USAGE_OUT": str(usage),
    }
    for key in ("HOME", "TMPDIR", "LANG"):
        if key in os.environ:
            env[key] = os.environ[key]
    argv = image_argv(shard.container) + list(extra_args or []) + (["--drain"] if drain else [])
    proc = subprocess.Popen(
        argv,
        cwd=str(ROOT),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wp = WorkerProcess(
        shard=shard,
        proc=proc,
        usage_file=usage,
        denials_file=denials,
        agent_principal=principal,
        task_arn=task_arn,
    )

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            wp.lines.append(line)
            wp.peak_rss_mb = max(wp.peak_rss_mb, _peak_rss_mb(proc.pid))
            if on_line is not None:
                on_line(wp, line)

    wp.reader = threading.Thread(target=read, daemon=True)
    wp.reader.start()
    return wp


def stop_worker(wp: WorkerProcess) -> None:
    """What ECS does on scale-in: SIGTERM, then SIGKILL after the container's StopTimeout."""
    if wp.proc.poll() is None:
        wp.proc.send_signal(signal.SIGTERM)
    try:
        wp.proc.wait(timeout=wp.shard.container.stop_timeout_s)
    except subprocess.TimeoutExpired:
        wp.proc.kill()
        wp.proc.wait()


def finish_worker(wp: WorkerProcess, meter: Meter) -> None:
    """Wait for the worker and merge its metered usage; a crash is an error, not a silent gap;
    a call its task role would be denied fails the run."""
    rc = wp.proc.wait()
    if wp.reader is not None:
        wp.reader.join()
    if wp.usage_file.exists():
        worker_usage = json.loads(wp.usage_file.read_text())
        meter.merge(worker_usage)
        # Per shard too: the cost model sizes each shard's CPU reservation from it.
        cpu = float(worker_usage.get("counters", {}).get("worker_cpu_seconds", 0.0))
        meter.add(f"worker_cpu_seconds@{wp.shard.name}", cpu)
    if wp.peak_rss_mb:
        meter.add(f"worker_peak_rss_mb@{wp.shard.name}", wp.peak_rss_mb)
    iam.raise_if_denied(iam.Ledger.read(wp.denials_file) + wp.agent_principal.ledger.denials)
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


def _status(emu: Emulation, stream: str) -> StreamStatus:
    found = read_status(dynamodb=emu.client("dynamodb"), table=emu.table, stream=stream)
    return found or StreamStatus(state="")


def _failure(source: str, status: StreamStatus) -> VqaError:
    if status.reason:
        return BadSourceError(source, status.reason)
    return VqaError(f"{source}: monolith run failed: {status.error or 'unknown error'}")


def run_local(
    source: str,
    *,
    progress: bool = False,
    config: Any | None = None,
    template: dict[str, Any] | None = None,
    thresholds: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run ``source`` through the emulated monolith; the JSON of ``vqa run --arch monolith``.

    ``config`` is a ``stacks.config.VqaConfig`` (or a mapping of its fields); default: cdk.json.
    ``thresholds`` (``--set``) override the config's: they go into the synthesized template
    (the task definitions' ``VQA_THRESHOLDS``), so the workers read them where ECS would.
    Raises :class:`BadSourceError` when the shards dead-letter the job for a bad source and
    :class:`vqa.local.iam.IamDenied` when a role lacks a permission its code needs.
    """
    t0 = time.perf_counter()
    meter = Meter()
    emu = create_emulation(with_thresholds(config, thresholds), template=template)
    staged = _stage_source(emu, source)
    stream = f"local-{uuid.uuid4().hex[:12]}"
    bar = _progress_bar(progress, len(emu.shards))
    lock = threading.Lock()
    done_segments: dict[str, int] = {}
    last_line = [time.monotonic()]

    def on_line(wp: WorkerProcess, line: str) -> None:
        last_line[0] = time.monotonic()
        if bar is None:
            return
        with contextlib.suppress(ValueError):
            doc = json.loads(line)
            if doc.get("message") in ("checkpoint", "job done"):  # Powertools' message key
                n = int(doc.get("next_index", doc.get("segments", 0)))
                with lock:
                    prev = done_segments.get(wp.shard.name, 0)
                    done_segments[wp.shard.name] = max(prev, n)
                    bar.update(max(0, n - prev))

    with tempfile.TemporaryDirectory(prefix="vqa-monolith-") as tmp:
        # Like ECS tasks already running: the workers start (importing PyAV, numpy and the
        # detectors) while the orchestrator fans the request out; they long-poll for the job.
        workers = [start_worker(emu, shard, Path(tmp), on_line=on_line) for shard in emu.shards]
        errors: list[VqaError] = []
        try:
            invoke_orchestrator(emu, {"stream": stream, "source": staged}, meter)
            _wait_for_stream(emu, stream, workers, last_line)
        finally:
            for wp in workers:
                stop_worker(wp)
            for wp in workers:
                try:
                    finish_worker(wp, meter)
                except VqaError as exc:
                    errors.append(exc)
    if bar is not None:
        bar.close()
    iam.raise_if_denied(emu.ledger.denials)
    for err in errors:
        if isinstance(err, iam.IamDenied):
            raise err
    if errors:
        raise errors[0]

    status = _status(emu, stream)
    if status.state != "done":
        raise _failure(source, status)
    defects = read_defects(dynamodb=emu.client("dynamodb"), table=emu.table, stream=stream)
    duration, skipped = status.duration, status.skipped
    wall = time.perf_counter() - t0
    usage = {
        **meter.snapshot(),
        "architecture": "monolith",
        "stream_seconds": duration,
        "wall_seconds": wall,
        "config": emu.usage_config(),
    }
    return {
        "source": source,
        "duration": duration,
        "defects": [d.to_json() for d in defects],
        "skipped": skipped,
        "usage": usage,
    }


def with_thresholds(config: Any | None, thresholds: dict[str, dict[str, Any]] | None) -> Any | None:
    """``config`` with ``thresholds`` merged over its own (a detector's fields, field by field)."""
    if not thresholds:
        return config
    base = load_config(config).thresholds
    merged = {d: {**base.get(d, {}), **thresholds.get(d, {})} for d in {*base, *thresholds}}
    return {**config_context(config), "thresholds": merged}


def _wait_for_stream(
    emu: Emulation, stream: str, workers: list[WorkerProcess], last_line: list[float]
) -> None:
    """Until the stream's status is final (every shard done, or one failed for good)."""
    while True:
        if _status(emu, stream).state in ("done", "failed"):
            return
        if all(wp.proc.poll() is not None for wp in workers):
            return  # every task exited: finish_worker reports why
        if emu.ledger.denials or any(
            wp.denials_file.exists() or wp.agent_principal.ledger.denials for wp in workers
        ):
            return  # a denied call: the run fails, do not wait for retries
        if time.monotonic() - last_line[0] > STALL_SECONDS:
            raise VqaError(f"monolith run made no progress for {STALL_SECONDS:.0f} s")
        time.sleep(0.2)


def _progress_bar(progress: bool, shards: int) -> Any:
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(desc=f"monolith ({shards} shards)", unit="seg", file=sys.stderr, leave=False)


# --------------------------------------------------------------------------------------------
# Live: vqa watch --arch monolith
# --------------------------------------------------------------------------------------------


class LiveMonolith:
    """A live stream through the emulated monolith, its alerts read as a subscriber would.

    ``with LiveMonolith(source) as live:`` deploys the stack, subscribes an :class:`AlertTap`
    to its topic and bus, starts one task per shard, waits until each is polling its queue and
    (unless ``submit=False``: then :meth:`submit`) invokes the orchestrator for the stream;
    ``live.tap.fresh()`` returns the alerts published since. Leaving the block stops the tasks
    as ECS does (SIGTERM: each ends its open defects at the last media seen, publishes the ends
    and hands its job back), reads the last alerts and checks that no call was denied.
    Tests replace a task (:meth:`kill` with SIGKILL, :meth:`start`) and read the stream status.
    """

    def __init__(
        self,
        source: str,
        *,
        config: Any | None = None,
        template: dict[str, Any] | None = None,
        thresholds: dict[str, dict[str, Any]] | None = None,
        stream: str | None = None,
        submit: bool = True,
    ) -> None:
        self.source = source
        self.stream = stream or f"live-{uuid.uuid4().hex[:12]}"
        self.auto_submit = submit
        self.meter = Meter()
        self.emu = create_emulation(with_thresholds(config, thresholds), template=template)
        from vqa.local.alert_tap import AlertTap

        self.tap = AlertTap(
            lambda service: self.emu.client(service),
            topic_arn=self.emu.topic_arn,
            bus_name=self.emu.bus_name,
        )
        self.workers: list[WorkerProcess] = []
        self.retired: list[WorkerProcess] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="vqa-monolith-live-")
        self.closed_alerts: list[dict[str, Any]] = []

    def __enter__(self) -> LiveMonolith:
        for shard in self.emu.shards:
            self.start(shard)
        if self.auto_submit:
            self.submit()
        return self

    def submit(self, source: str | None = None) -> None:
        """Request the stream from the orchestrator, as a client of the deployed stack would."""
        self.source = source or self.source
        staged = _stage_source(self.emu, self.source)
        invoke_orchestrator(self.emu, {"stream": self.stream, "source": staged}, self.meter)

    def start(self, shard: ShardResources, *, ready_timeout: float = 60.0) -> WorkerProcess:
        """Start a task of ``shard`` (a replacement, after :meth:`kill`); return once it polls."""
        ready = threading.Event()

        def on_line(_wp: WorkerProcess, line: str) -> None:
            if '"worker started"' in line:
                ready.set()

        wp = start_worker(self.emu, shard, Path(self._tmp.name), on_line=on_line)
        self.workers.append(wp)
        deadline = time.monotonic() + ready_timeout
        while not ready.wait(0.1):
            if wp.proc.poll() is not None or time.monotonic() > deadline:
                tail = "".join(wp.lines[-5:]).strip()
                raise VqaError(f"worker {shard.name} did not start: {tail}")
        return wp

    def kill(self, shard: ShardResources) -> None:
        """The instance under ``shard``'s task dies: SIGKILL, no chance to hand anything back."""
        for wp in [w for w in self.workers if w.shard is shard]:
            wp.proc.kill()
            wp.proc.wait()
            self.workers.remove(wp)
            self.retired.append(wp)

    def status(self) -> StreamStatus:
        return _status(self.emu, self.stream)

    def finished(self) -> bool:
        """The stream ended (every shard done) or failed, or every task exited."""
        if self.status().state in ("done", "failed"):
            return True
        return all(wp.proc.poll() is not None for wp in self.workers)

    def denied(self) -> bool:
        return bool(self.emu.ledger.denials) or any(
            wp.denials_file.exists() or wp.agent_principal.ledger.denials
            for wp in self.workers + self.retired
        )

    def close(self) -> list[dict[str, Any]]:
        """Stop the tasks (SIGTERM) and return the alerts they published meanwhile."""
        # All at once, as ECS stops a service's tasks; a second SIGTERM could reach a task
        # shutting down (its handlers already reset), so each gets one.
        for wp in self.workers:
            if wp.proc.poll() is None:
                wp.proc.send_signal(signal.SIGTERM)
        for wp in self.workers:
            try:
                wp.proc.wait(timeout=wp.shard.container.stop_timeout_s)
            except subprocess.TimeoutExpired:
                wp.proc.kill()
                wp.proc.wait()
        errors: list[VqaError] = []
        for wp in self.workers:
            try:
                finish_worker(wp, self.meter)
            except VqaError as exc:
                errors.append(exc)
        for wp in self.retired:
            iam.raise_if_denied(
                iam.Ledger.read(wp.denials_file) + wp.agent_principal.ledger.denials
            )
        self.workers = []
        self._tmp.cleanup()
        iam.raise_if_denied(self.emu.ledger.denials)
        for err in errors:
            if isinstance(err, iam.IamDenied):
                raise err
        if errors:
            raise errors[0]
        return self.tap.fresh()

    def __exit__(self, *exc: object) -> None:
        if self.workers:
            self.closed_alerts = self.close()
        else:
            self._tmp.cleanup()


def watch(
    source: str,
    *,
    stop: threading.Event,
    detectors: list[str] | None = None,
    thresholds: dict[str, dict[str, Any]] | None = None,
    config: Any | None = None,
    poll_seconds: float = 1.0,
) -> Iterator[dict[str, Any]]:
    """Follow ``source`` through the emulated monolith; yield each alert it publishes (the
    bodies read from its EventBridge bus, as a rule would route them) until the stream ends or
    ``stop`` is set. Then the tasks are stopped as ECS stops them, and the alerts of the
    defects they end are yielded too. ``detectors`` makes one shard of them."""
    if detectors:
        config = {**config_context(config), "shards": [list(detectors)]}
    with LiveMonolith(source, config=config, thresholds=thresholds) as live:
        while not stop.is_set():
            yield from live.tap.fresh(wait=poll_seconds)
            if live.denied() or live.finished():
                break
        yield from live.tap.fresh()
        final = live.close()
    yield from final
