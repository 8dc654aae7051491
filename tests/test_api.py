"""The front door's contract (vqa.api), held to the same tests for both architectures.

Distributed: the request starts a Step Functions execution (moto). Monolith: it invokes the real
orchestrator handler (lambdas/orchestrator/handler.py, imported under moto with the stack's
environment), which records the stream and queues one job per shard. What a running stream then
writes (status, defects, alert records) is written with the package's own functions.
"""

from __future__ import annotations

import importlib
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from vqa import alerts, api, results
from vqa.defects import Defect
from vqa.events import DefectEvent
from vqa.urlguard import UrlGuard

REGION = "us-east-1"
TABLE = "results"
SHARDS = {"video": ["black", "freeze"], "audio": ["silence"]}
DEPLOYED = ["black", "freeze", "silence"]
SOURCE = "https://cdn.example.com/live/index.m3u8"


@dataclass
class Deployment:
    arch: str
    api: api.Api
    ddb: Any
    started: Any  # () -> list of the start requests the architecture received

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        raw = body if isinstance(body, str | bytes) or body is None else json.dumps(body)
        return self.api.handle(method, path, raw)


def _table(ddb: Any) -> None:
    ddb.create_table(
        TableName=TABLE,
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


class _LambdaClient:
    """``lambda:Invoke`` of the orchestrator, run in process (moto's needs Docker)."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler

    def invoke(self, *, FunctionName: str, Payload: bytes) -> dict[str, Any]:
        try:
            from vqa.local.moto_lambda import LambdaContext

            out = self.handler(json.loads(Payload), LambdaContext(FunctionName, 256, 30.0))
        except Exception as exc:
            err = {"errorMessage": str(exc), "errorType": type(exc).__name__}
            return {"FunctionError": "Unhandled", "Payload": io.BytesIO(json.dumps(err).encode())}
        return {"Payload": io.BytesIO(json.dumps(out).encode())}


@pytest.fixture(params=["distributed", "monolith"])
def deployment(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Deployment]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        _table(ddb)
        guard = UrlGuard.from_origins(["10.20.0.0/16"])
        if request.param == "distributed":
            sfn = boto3.client("stepfunctions", region_name=REGION)
            iam = boto3.client("iam", region_name=REGION)
            role = iam.create_role(RoleName="sfn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
            arn = sfn.create_state_machine(
                name="vqa",
                definition=json.dumps({"StartAt": "S", "States": {"S": {"Type": "Succeed"}}}),
                roleArn=role,
            )["stateMachineArn"]

            def started() -> list[dict[str, Any]]:
                execs = sfn.list_executions(stateMachineArn=arn)["executions"]
                return [
                    {
                        "name": e["name"],
                        **json.loads(
                            sfn.describe_execution(executionArn=e["executionArn"])["input"]
                        ),
                    }
                    for e in execs
                ]

            starter: api.Starter = api.StepFunctionsStarter(sfn, arn)
        else:
            sqs = boto3.client("sqs", region_name=REGION)
            queues = {s: sqs.create_queue(QueueName=f"q-{s}")["QueueUrl"] for s in SHARDS}
            monkeypatch.setenv("VQA_TABLE", TABLE)
            monkeypatch.setenv("VQA_SHARD_QUEUES", json.dumps(queues))
            monkeypatch.setenv("VQA_SHARD_DETECTORS", json.dumps(SHARDS))
            sys.modules.pop("lambdas.orchestrator.handler", None)
            orchestrator = importlib.import_module("lambdas.orchestrator.handler")

            def started() -> list[dict[str, Any]]:
                out = []
                for url in queues.values():
                    msgs = sqs.receive_message(
                        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0
                    ).get("Messages", [])
                    out += [json.loads(m["Body"]) for m in msgs]
                return out

            starter = api.OrchestratorStarter(_LambdaClient(orchestrator.handler), "orchestrator")
        yield Deployment(
            request.param,
            api.Api(dynamodb=ddb, table=TABLE, start=starter, guard=guard, deployed=DEPLOYED),
            ddb,
            started,
        )
    sys.modules.pop("lambdas.orchestrator.handler", None)


def test_post_starts_one_stream_and_get_shows_it(deployment: Deployment) -> None:
    code, body = deployment.call("POST", "/streams", {"source": SOURCE, "client_token": "ch-1"})
    assert code == 201, body
    assert body["id"] == "ch-1" and body["source"] == SOURCE
    assert body["detectors"] == DEPLOYED
    assert body["defects"] == [] and body["open_defects"] == []
    started = deployment.started()
    if deployment.arch == "distributed":
        assert [s["name"] for s in started] == ["ch-1-0"]
        assert started[0]["stream"] == "ch-1" and started[0]["source"] == SOURCE
        assert body["state"] == "submitted"  # until the start step records it
    else:
        assert sorted(s["shard"] for s in started) == sorted(SHARDS)
        assert {s["stream"] for s in started} == {"ch-1"}
        assert body["state"] == "running"  # the orchestrator recorded it
    code, again = deployment.call("GET", "/streams/ch-1")
    assert code == 200 and again == body


def test_the_client_token_makes_post_idempotent(deployment: Deployment) -> None:
    req = {"source": SOURCE, "detectors": "black", "client_token": "ch-2"}
    first = deployment.call("POST", "/streams", req)
    n = len(deployment.started())
    retry = deployment.call("POST", "/streams", dict(req))
    assert first[0] == 201 and retry[0] == 200 and retry[1]["id"] == first[1]["id"]
    if deployment.arch == "distributed":
        assert len(deployment.started()) == n == 1  # the same execution, by name
    code, body = deployment.call("POST", "/streams", {**req, "detectors": "freeze"})
    assert code == 409 and "client_token 'ch-2'" in body["error"]
    # Without a token, each POST is a new stream.
    a = deployment.call("POST", "/streams", {"source": SOURCE})[1]["id"]
    b = deployment.call("POST", "/streams", {"source": SOURCE})[1]["id"]
    assert a != b


BAD_REQUESTS: list[tuple[Any, int, str]] = [
    ("not json", 400, "body: not JSON"),
    ([SOURCE], 400, "expected a JSON object"),
    ({}, 400, "source: expected"),
    ({"source": SOURCE, "priority": 1}, 400, "unknown field(s) priority"),
    ({"source": "ftp://cdn.example.com/x.ts"}, 400, "scheme 'ftp'"),
    ({"source": "file:///etc/passwd"}, 400, "scheme 'file'"),
    ({"source": "http://169.254.169.254/latest/"}, 400, "EC2 instance metadata"),
    ({"source": "http://10.0.0.7/live.m3u8"}, 400, "10.0.0.7 is private"),
    ({"source": "http://[::1]/x.ts"}, 400, "loopback"),
    ({"source": "s3://bucket/clip.mp4"}, 400, "reads no s3:// sources"),
    ({"source": "https://me:hunter2@cdn.example.com/x"}, 400, "credentials in the URL"),
    ({"source": SOURCE, "detectors": "black,nope"}, 400, "unknown detector(s) nope"),
    ({"source": SOURCE, "detectors": "clipping"}, 400, "clipping not deployed"),
    ({"source": SOURCE, "thresholds": {"black": {"nope": 1}}}, 400, "unknown field black.nope"),
    (
        {"source": SOURCE, "detectors": "black", "thresholds": {"freeze": {"min_duration": 1}}},
        400,
        "freeze not among the requested detectors",
    ),
    ({"source": SOURCE, "client_token": "a b"}, 400, "client_token: expected"),
]


def test_bad_requests_get_a_clear_4xx(deployment: Deployment) -> None:
    for body, status, message in BAD_REQUESTS:
        code, out = deployment.call("POST", "/streams", body)
        assert code == status and message in out["error"], (body, out)
        assert "\n" not in out["error"] and "hunter2" not in out["error"]
    assert deployment.started() == []


def test_allow_listed_private_origin_and_unknown_routes(deployment: Deployment) -> None:
    code, body = deployment.call("POST", "/streams", {"source": "http://10.20.1.5/live.ts"})
    assert code == 201, body
    assert deployment.call("GET", "/streams/nope")[0] == 404
    assert deployment.call("DELETE", "/streams/nope")[0] == 404
    assert deployment.call("GET", "/streams/../../etc")[0] == 404
    assert deployment.call("PUT", f"/streams/{body['id']}")[0] == 405
    assert deployment.call("GET", "/streams")[0] == 405
    assert deployment.call("GET", "/other")[0] == 404


def test_get_reports_defects_open_defects_and_monitored_time(deployment: Deployment) -> None:
    sid = deployment.call("POST", "/streams", {"source": SOURCE + "?token=s3cr3t"})[1]["id"]
    ddb = deployment.ddb
    # What a running stream writes: its status, its defects, its alerts.
    results.update_status(
        dynamodb=ddb,
        table=TABLE,
        stream=sid,
        state="running",
        source=SOURCE + "?token=s3cr3t",
        duration=60.0,
        unmonitored=[[10.0, 14.5], [30.0, 31.0]],
    )
    black = Defect(start=2.0, end=5.0, kind="black")
    results.put_defects(dynamodb=ddb, table=TABLE, stream=sid, defects=[black])
    events = [
        DefectEvent.started("black", 2.0),
        DefectEvent.ended(black),
        DefectEvent.started("silence", 40.0),
    ]
    alerts.publish(
        events,
        stream_id=sid,
        architecture=deployment.arch,
        source=SOURCE,
        table=TABLE,
        topic_arn=None,
        bus_name=None,
        sns=None,
        events_client=None,
        dynamodb=ddb,
    )
    code, body = deployment.call("GET", f"/streams/{sid}")
    assert code == 200
    assert body["state"] == "running"
    assert body["defects"] == [{"kind": "black", "start": 2.0, "end": 5.0}]
    assert [(d["kind"], d["start"]) for d in body["open_defects"]] == [("silence", 40.0)]
    assert body["unmonitored_seconds"] == pytest.approx(5.5)
    assert body["monitored_seconds"] == pytest.approx(60.0 - 5.5)
    assert body["unmonitored"] == [[10.0, 14.5], [30.0, 31.0]]
    assert "s3cr3t" not in json.dumps(body)  # redacted in every response


def test_delete_requests_a_stop_once_and_is_idempotent(deployment: Deployment) -> None:
    sid = deployment.call("POST", "/streams", {"source": SOURCE, "client_token": "ch-3"})[1]["id"]
    code, body = deployment.call("DELETE", f"/streams/{sid}")
    assert code == 202 and body["stop_requested"] is True
    status = results.read_status(dynamodb=deployment.ddb, table=TABLE, stream=sid)
    assert status is not None and status.stop_requested
    at = status.raw["stop_requested_at"]
    code, body = deployment.call("DELETE", f"/streams/{sid}")
    assert code == 202
    again = results.read_status(dynamodb=deployment.ddb, table=TABLE, stream=sid)
    assert again is not None and again.raw["stop_requested_at"] == at
    results.update_status(dynamodb=deployment.ddb, table=TABLE, stream=sid, state="done")
    assert deployment.call("DELETE", f"/streams/{sid}")[0] == 200  # nothing left to stop


def test_a_failed_start_forgets_the_request_so_a_retry_starts_it(deployment: Deployment) -> None:
    real = deployment.api.start

    def broken(stream_id: str, request: api.StreamRequest) -> None:
        raise RuntimeError("throttled")

    deployment.api.start = broken
    with pytest.raises(RuntimeError):
        deployment.call("POST", "/streams", {"source": SOURCE, "client_token": "ch-4"})
    deployment.api.start = real
    code, body = deployment.call("POST", "/streams", {"source": SOURCE, "client_token": "ch-4"})
    assert code == 201 and body["id"] == "ch-4"


def test_stream_status_reads_stop_requested() -> None:
    item = {"state": "running", "stop_requested": "true"}
    assert results.StreamStatus.from_item(item).stop_requested
    assert not results.StreamStatus.from_item({"state": "running"}).stop_requested


# --------------------------------------------------------------------------- handler and CLI


class _FunctionUrl:
    """lambdas/api/handler.py behind a local HTTP server, as a function URL invokes it: the
    request becomes a payload-2.0 event; unsigned requests get 403, as AWS_IAM auth does."""

    def __init__(self, handler: Any) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from vqa.local.moto_lambda import LambdaContext

        self.auth: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                auth = self.headers.get("Authorization", "")
                outer.auth.append(auth)
                if not auth.startswith("AWS4-HMAC-SHA256 Credential=") or not self.headers.get(
                    "X-Amz-Date"
                ):
                    self.send_response(403)
                    self.end_headers()
                    return
                n = int(self.headers.get("Content-Length") or 0)
                event = {
                    "rawPath": self.path.split("?", 1)[0],
                    "requestContext": {"http": {"method": self.command}},
                    "body": self.rfile.read(n).decode() if n else None,
                    "isBase64Encoded": False,
                }
                # Lambda always passes a context (Powertools' Logger reads it).
                out = handler(event, LambdaContext("api", 256, 30.0))
                body = out["body"].encode()
                self.send_response(out["statusCode"])
                self.send_header("Content-Type", out["headers"]["content-type"])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        import threading

        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_cli_drives_a_stack_found_by_its_outputs_with_sigv4(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lambdas.api import handler as front_door
    from vqa.cli import main

    for k, v in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "VQA_ARCHITECTURE": "distributed",
        "VQA_TABLE": TABLE,
        "VQA_DETECTORS": ",".join(DEPLOYED),
        "VQA_ALLOWED_ORIGINS": "",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        _table(ddb)
        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(RoleName="sfn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = sfn.create_state_machine(
            name="vqa",
            definition=json.dumps({"StartAt": "S", "States": {"S": {"Type": "Succeed"}}}),
            roleArn=role,
        )["stateMachineArn"]
        monkeypatch.setenv("VQA_STATE_MACHINE_ARN", arn)
        front_door.app.cache_clear()
        server = _FunctionUrl(front_door.handler)
        try:
            boto3.client("cloudformation", region_name=REGION).create_stack(
                StackName="VqaDistributed",
                TemplateBody=json.dumps(
                    {
                        "Resources": {"T": {"Type": "AWS::SNS::Topic"}},
                        "Outputs": {"ApiUrl": {"Value": server.url}},
                    }
                ),
            )
            stack = ["--stack", "VqaDistributed"]
            assert main(["submit", SOURCE, *stack, "--client-token", "cli-1"]) == 0
            assert capsys.readouterr().out.strip() == "cli-1"
            assert "/us-east-1/lambda/aws4_request" in server.auth[-1]
            assert [e["name"] for e in sfn.list_executions(stateMachineArn=arn)["executions"]] == [
                "cli-1-0"
            ]
            results.put_defects(
                dynamodb=ddb,
                table=TABLE,
                stream="cli-1",
                defects=[Defect(start=1.0, end=3.5, kind="black")],
            )
            assert main(["defects", "cli-1", *stack, "--json"]) == 0
            out = json.loads(capsys.readouterr().out)
            assert out["defects"] == [{"kind": "black", "start": 1.0, "end": 3.5}]
            assert main(["stop", "cli-1", *stack]) == 0
            assert "(stop requested)" in capsys.readouterr().out
            assert main(["status", "cli-1", *stack, "--json"]) == 0
            assert json.loads(capsys.readouterr().out)["stop_requested"] is True
            # The server, like AWS_IAM auth, refuses what is not signed.
            import urllib.error
            import urllib.request

            with pytest.raises(urllib.error.HTTPError) as unsigned:
                urllib.request.urlopen(server.url + "streams/cli-1", timeout=5)
            assert unsigned.value.code == 403
            # Refusals: one line, exit 2.
            assert main(["submit", "http://169.254.169.254/", *stack]) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and "HTTP 400" in err and "metadata" in err, err
            assert main(["status", "nope", *stack]) == 2
            assert "HTTP 404" in capsys.readouterr().err
            assert main(["status", "cli-1", "--stack", "NoSuchStack"]) == 2
            assert "stack NoSuchStack" in capsys.readouterr().err
        finally:
            server.close()
            front_door.app.cache_clear()
