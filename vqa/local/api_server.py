"""``vqa serve``: the front door of a locally emulated stack, on 127.0.0.1.

The deployed front door is ``lambdas/api/handler.py`` behind a Lambda function URL
(docs/api.md). Here the same handler gets the same events (function URL payload format 2.0) from
a standard-library HTTP server bound to 127.0.0.1 only, in front of a stack emulated as
``vqa run`` and ``vqa watch --arch`` emulate it (provisioned from the synthesized template), which
keeps running until the server is closed:

- **distributed** (:class:`DistributedStack`): moto in this process; the API's
  ``StartExecution`` runs the template's state machine in moto's interpreter, its Lambda tasks
  run the real handlers here; a live stream runs until it ends or is stopped.
- **monolith** (:class:`MonolithStack`): moto's server, one worker process per shard started from
  the task definitions (:class:`vqa.local.monolith.LiveMonolith`); the API's ``lambda:Invoke`` of
  the orchestrator runs the real orchestrator handler (:func:`~vqa.local.monolith.
  invoke_orchestrator`), which queues the jobs the workers run.

Every AWS call the API handler makes is checked against the API function's role
(:mod:`vqa.local.iam`); the functions and tasks behind it against theirs. The server takes no
SigV4 (nothing but this machine can reach it); sources on 127.0.0.1 are allowed (the provisioner
appends loopback to every template allow-list, as a private origin on ``allowed_origins`` would be
in a deployment), so that a live origin on this machine can be monitored. Closing (SIGINT in
``vqa serve``) stops what is still running the way a user would, through a stop request per
stream, then tears the emulation down: no execution, worker or server is left.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any, Protocol

from vqa.errors import ConfigError
from vqa.local import aws, iam
from vqa.local.provision import REGION, Deployment, Function, platform_environment
from vqa.meter import Meter

log = logging.getLogger("vqa.local.api_server")

#: How long closing waits for the streams it asked to stop before it cuts them off.
CLOSE_WAIT_SECONDS = 30.0
#: What the platform gives a function: credentials (moto accepts any) and the region.
_PLATFORM_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
}


class LocalStack(Protocol):
    """An emulated stack behind the server: its front door and its teardown."""

    arch: str
    #: The results table (stream status, defects, alert records) and a client of it.
    table: str
    dynamodb: Any

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """The front door's answer to one function URL event."""
        ...

    def close(self, streams: list[str]) -> None:
        """Stop ``streams`` (those the server started) and tear the emulation down."""
        ...


def stack_config(
    detectors: list[str] | None = None, thresholds: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Any] | None:
    """The configuration ``vqa serve --detectors ... --set ...`` asks for: those detectors
    (distributed: their functions; monolith: one shard of them, as ``vqa watch --arch`` does)
    and the thresholds over ``cdk.json``'s; None: ``cdk.json`` as it is."""
    aws.ensure_repo_on_path()  # stacks/ (cdk.json's defaults) sits beside vqa/
    from vqa.local.monolith import with_thresholds

    config: dict[str, Any] = {}
    if detectors:
        config = {"detectors": list(detectors), "shards": [list(detectors)]}
    out = with_thresholds(config or None, {d: dict(f) for d, f in (thresholds or {}).items()})
    return dict(out) if out else None


def _front_door_function(dep: Deployment) -> Function:
    from stacks.constructs.front_door import HANDLER

    return dep.function_by_handler(HANDLER)


def _function_environment(dep: Deployment, fn: Function) -> dict[str, str]:
    """The function's environment resolved now: the provisioner resolved it before the state
    machine existed (its ARN then a placeholder)."""
    props = dep.template["Resources"][fn.logical_id]["Properties"]
    variables = dep.resolver.resolve(props.get("Environment", {}).get("Variables", {}))
    return platform_environment(variables)


@contextlib.contextmanager
def _front_door(environment: Mapping[str, str]) -> Iterator[ModuleType]:
    """The handler module with its app built from ``environment``, once, as a Lambda execution
    environment builds it at its first request (clients and configuration are then reused).
    One local front door per process: the module keeps one app."""
    from lambdas.api import handler as front_door

    front_door.app.cache_clear()
    with aws.environ(environment):
        front_door.app()
    try:
        yield front_door
    finally:
        front_door.app.cache_clear()


def _invoke(
    module: ModuleType, fn: Function, principal: iam.Principal, event: dict[str, Any]
) -> dict[str, Any]:
    """The handler's answer to ``event``, as Lambda invokes it: its context, its role."""
    from vqa.local.moto_lambda import LambdaContext

    with iam.acting_as(principal):
        out: dict[str, Any] = module.handler(
            event, LambdaContext(fn.name, fn.memory_mb, fn.timeout_s, fn.arn)
        )
    return out


def _wait_final(state: Callable[[str], str], streams: list[str], timeout: float) -> list[str]:
    """Wait until every stream's state is final; those still running after ``timeout``."""
    from vqa.results import FINAL_STATES

    deadline = time.monotonic() + timeout
    pending = list(streams)
    while pending and time.monotonic() < deadline:
        pending = [s for s in pending if state(s) not in FINAL_STATES]
        if pending:
            time.sleep(0.25)
    return pending


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class DistributedStack:
    """The distributed stack in moto, in this process, for as long as it is open."""

    arch = "distributed"

    def __init__(self, *, config: Any | None = None, template: dict[str, Any] | None = None):
        aws.ensure_repo_on_path()
        from moto import mock_aws

        from vqa.local import moto_lambda
        from vqa.local.distributed import _create_state_machine, _handler_io, _quiet_interpreter
        from vqa.local.provision import provision
        from vqa.local.template import DISTRIBUTED_STACK, config_context, synth_template

        if template is None:
            template = synth_template(DISTRIBUTED_STACK, vqa_context=config_context(config))
        self.meter = Meter()
        self.ledger = iam.Ledger()
        self._exit = contextlib.ExitStack()
        try:
            self._exit.enter_context(_quiet_interpreter())
            self._exit.enter_context(
                mock_aws(config={"stepfunctions": {"execute_state_machine": True}})  # type: ignore[arg-type]
            )
            suffix = uuid.uuid4().hex[:8]
            dep = provision(template, stack=DISTRIBUTED_STACK, client=aws.client, suffix=suffix)
            self.state_machine_arn, machine_role = _create_state_machine(dep, suffix=suffix)
            self.table = dep.outputs()["ResultsTable"]
            #: Where ``s3://`` sources are read from (the front door takes no other bucket).
            self.source_bucket = dep.outputs()["SourceBucket"]
            principals = {
                fn.name: dep.principal(fn.role, ledger=self.ledger) for fn in dep.functions.values()
            }
            self._exit.enter_context(_handler_io(self.meter))
            self._exit.enter_context(
                moto_lambda.dispatch_in_process(meter=self.meter, principals=principals)
            )
            self._exit.enter_context(
                iam.state_machine_acting_as(dep.principal(machine_role, ledger=self.ledger))
            )
            api = _front_door_function(dep)
            self.function = api
            self.principal = dep.principal(api.role, ledger=self.ledger)
            env = {**_PLATFORM_ENV, **_function_environment(dep, api)}
            self.module = self._exit.enter_context(_front_door(env))
            self.sfn, self.dynamodb = aws.client("stepfunctions"), aws.client("dynamodb")
        except BaseException:
            self._exit.close()
            raise

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        return _invoke(self.module, self.function, self.principal, event)

    def running(self) -> list[dict[str, Any]]:
        """The state machine's executions still running."""
        page = self.sfn.list_executions(
            stateMachineArn=self.state_machine_arn, statusFilter="RUNNING"
        )
        return list(page["executions"])

    def state(self, stream: str) -> str:
        return _status_state(self.dynamodb, self.table, stream)

    def close(self, streams: list[str]) -> None:
        from vqa.results import request_stop

        try:
            # Asked as DELETE asks it: the converters end each stream at its next segment.
            for ex in self.running():
                stream = ex["name"].rpartition("-")[0]
                request_stop(dynamodb=self.dynamodb, table=self.table, stream=stream, at=_now())
            deadline = time.monotonic() + CLOSE_WAIT_SECONDS
            while self.running() and time.monotonic() < deadline:
                time.sleep(0.25)
            for ex in self.running():  # a stream that would not stop: cut it off
                self.sfn.stop_execution(executionArn=ex["executionArn"], cause="server closed")
        finally:
            self._exit.close()
        iam.raise_if_denied(self.ledger.denials)


class MonolithStack:
    """The monolith stack on moto's server with one worker process per shard, while open."""

    arch = "monolith"

    def __init__(self, *, config: Any | None = None, template: dict[str, Any] | None = None):
        from vqa.local.monolith import _PLATFORM_ENV as TASK_PLATFORM_ENV
        from vqa.local.monolith import LiveMonolith

        if template is None:
            from vqa.local.template import MONOLITH_STACK, config_context, synth_template

            template = synth_template(MONOLITH_STACK, vqa_context=config_context(config))
        self.live = LiveMonolith("", template=template, submit=False)
        self.emu = self.live.emu
        self.table, self.dynamodb = self.emu.table, self.emu.client("dynamodb")
        self.live.__enter__()  # the shard tasks start and poll their queues
        try:
            dep = self.emu.deployment
            api = _front_door_function(dep)
            self.function = api
            self.principal = dep.principal(api.role, ledger=self.emu.ledger)
            env = {
                **TASK_PLATFORM_ENV,
                **_function_environment(dep, api),
                "AWS_ENDPOINT_URL": self.emu.endpoint,
            }
            self._front_door = _front_door(env)
            self.module = self._front_door.__enter__()
            starter = self.module.app().start
            # The API invokes the orchestrator with lambda:Invoke (checked against the API's
            # role); moto's Lambda would need Docker, so the call is answered here by the real
            # orchestrator handler, run as Lambda runs it (its own role, environment, metering).
            starter.lambda_client.meta.events.register(
                "before-call.lambda.Invoke", self._invoke_orchestrator
            )
        except BaseException:
            self.live.__exit__(None, None, None)
            raise

    def _invoke_orchestrator(self, params: dict[str, Any], **_: Any) -> tuple[Any, Any]:
        from botocore.awsrequest import AWSResponse, HTTPHeaders

        from vqa.local.monolith import invoke_orchestrator

        parsed: dict[str, Any] = {"StatusCode": 200}
        try:
            out = invoke_orchestrator(self.emu, json.loads(params["body"] or b"{}"), Meter())
        except Exception as exc:  # returned as Lambda returns a function error
            parsed["FunctionError"] = "Unhandled"
            out = {"errorMessage": str(exc), "errorType": type(exc).__name__}
        parsed["Payload"] = io.BytesIO(json.dumps(out).encode())
        return AWSResponse(str(params.get("url", "")), 200, HTTPHeaders(), None), parsed

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        return _invoke(self.module, self.function, self.principal, event)

    def state(self, stream: str) -> str:
        return _status_state(self.dynamodb, self.table, stream)

    def close(self, streams: list[str]) -> None:
        from vqa.results import FINAL_STATES, request_stop

        try:
            live = [s for s in streams if self.state(s) not in FINAL_STATES]
            for stream in live:
                request_stop(dynamodb=self.dynamodb, table=self.table, stream=stream, at=_now())
            _wait_final(self.state, live, CLOSE_WAIT_SECONDS)
        finally:
            try:
                self._front_door.__exit__(None, None, None)
            finally:
                self.live.__exit__(None, None, None)  # SIGTERM to every task, as ECS stops them


def _status_state(dynamodb: Any, table: str, stream: str) -> str:
    from vqa.results import read_status

    status = read_status(dynamodb=dynamodb, table=table, stream=stream)
    return status.state if status is not None else ""


def open_stack(arch: str, *, config: Any | None = None) -> LocalStack:
    """The emulated stack ``arch`` (``distributed`` or ``monolith``), provisioned and running."""
    if arch == "distributed":
        return DistributedStack(config=config)
    if arch == "monolith":
        return MonolithStack(config=config)
    raise ConfigError(f"unknown architecture {arch!r}: distributed or monolith")


# --------------------------------------------------------------------------------------------
# The HTTP server: requests in, function URL events out
# --------------------------------------------------------------------------------------------


def function_url_event(
    method: str, target: str, headers: Mapping[str, str], body: bytes, source_ip: str
) -> dict[str, Any]:
    """The event a Lambda function URL sends for this request (payload format 2.0)."""
    path, _, query = target.partition("?")
    text: str | None = None
    encoded = False
    if body:
        try:
            text = body.decode()
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode(), True
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {
            "accountId": "anonymous",
            "domainName": "127.0.0.1",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": headers.get("User-Agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now * 1000),
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


#: Largest request body accepted (the API's requests are small JSON objects).
MAX_BODY = 64 * 1024


class FrontDoorServer:
    """``stack``'s front door on ``http://127.0.0.1:<port>/`` (0: any free port).

    ``with FrontDoorServer(stack) as server:`` serves in a thread; leaving the block stops the
    streams this server started, then closes the stack (:meth:`LocalStack.close`).
    """

    def __init__(self, stack: LocalStack, *, port: int = 0) -> None:
        self.stack = stack
        self.streams: list[str] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                if n > MAX_BODY:
                    self._reply(413, {"error": f"body: larger than {MAX_BODY} bytes"})
                    return
                event = function_url_event(
                    self.command,
                    self.path,
                    dict(self.headers.items()),
                    self.rfile.read(n) if n else b"",
                    self.client_address[0],
                )
                out = outer.stack.invoke(event)
                body = out.get("body") or ""
                if out.get("statusCode") == 201:
                    with outer._lock:
                        outer.streams.append(json.loads(body)["id"])
                self._send(int(out.get("statusCode", 200)), body.encode(), out.get("headers"))

            def _reply(self, status: int, doc: dict[str, Any]) -> None:
                self._send(status, json.dumps({**doc, "status": status}).encode(), None)

            def _send(self, status: int, data: bytes, headers: Mapping[str, str] | None) -> None:
                self.send_response(status)
                for k, v in (headers or {"content-type": "application/json"}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s %s", self.address_string(), format % args)

        # 127.0.0.1 only: the server checks no signature, so nothing else may reach it.
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/"

    def __enter__(self) -> FrontDoorServer:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="vqa-front-door", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, then stop the streams started here and close the stack."""
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            streams = list(self.streams)
        self.stack.close(streams)

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(
    arch: str,
    *,
    port: int = 0,
    stop: threading.Event,
    announce: Callable[[str], None],
    config: Any | None = None,
) -> None:
    """Run the front door of the emulated ``arch`` until ``stop`` is set; ``announce`` its URL
    once it serves."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: expected 0 (any free port) to 65535")
    stack = open_stack(arch, config=config)
    try:
        server = FrontDoorServer(stack, port=port)
    except OSError as exc:
        stack.close([])
        raise ConfigError(f"--port {port}: cannot listen on 127.0.0.1 ({exc.strerror})") from None
    except BaseException:
        stack.close([])
        raise
    with server:
        announce(server.url)
        while not stop.wait(0.5):
            pass
