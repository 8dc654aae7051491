"""The front door's contract, defined once for both stacks (docs/api.md).

``POST /streams``, ``GET /streams/{id}``, ``DELETE /streams/{id}``: :func:`handle` routes a
request to :func:`create_stream`, :func:`get_stream` or :func:`stop_stream` and returns
``(HTTP status, JSON body)``. The Lambda behind each stack's function URL
(``lambdas/api/handler.py``) and any local server are thin adapters over it; what differs per
architecture is only how a stream starts, a :class:`Starter` (:class:`StepFunctionsStarter`,
:class:`OrchestratorStarter`). Results come from the one status schema of :mod:`vqa.results`.

Errors are :class:`ApiError`: a 4xx status and a one-line message naming the field. Source URLs
are checked by :mod:`vqa.urlguard`'s syntax and scheme rules here (the services check DNS answers
and every hop when they fetch); a source with credentials in it (``user:pass@``) is refused, and
sources are redacted (no query string) in every response and log line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from vqa import results
from vqa.errors import BadSourceError, ConfigError
from vqa.urlguard import UrlGuard, redact

#: Client tokens name the stream and the execution: Step Functions execution names allow
#: ``[A-Za-z0-9_-]`` (up to 80 characters; the chunk suffix needs a few).
CLIENT_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_SOURCE = 2048
REQUEST_FIELDS = frozenset({"source", "detectors", "thresholds", "client_token"})
#: States after which there is nothing left to stop.
FINAL_STATES = results.FINAL_STATES


class ApiError(Exception):
    """A request the API refuses: ``status`` (4xx) and a one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = " ".join(message.split())
        super().__init__(f"{status}: {self.message}")

    def to_json(self) -> dict[str, Any]:
        return {"error": self.message, "status": self.status}


@dataclass(frozen=True)
class StreamRequest:
    """A validated ``POST /streams`` body."""

    source: str
    detectors: tuple[str, ...]
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)
    client_token: str | None = None

    def fingerprint(self) -> str:
        """What makes two requests the same request (a retry), whatever their token."""
        doc = {"source": self.source, "detectors": self.detectors, "thresholds": self.thresholds}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "detectors": list(self.detectors),
            "thresholds": self.thresholds,
        }


def validate_source(source: Any, *, guard: UrlGuard, source_bucket: str | None = None) -> str:
    """``source``, checked: an http(s) URL the guard's syntax rules accept, or (where the stack
    reads one, ``source_bucket``) an object of that bucket."""
    if not isinstance(source, str) or not source.strip():
        raise ApiError(400, "source: expected an http(s):// URL")
    source = source.strip()
    if len(source) > MAX_SOURCE:
        raise ApiError(400, f"source: longer than {MAX_SOURCE} characters")
    try:
        parts = urlsplit(source)
    except ValueError as exc:
        raise ApiError(400, f"source: malformed URL ({exc})") from None
    if parts.username is not None or parts.password is not None:
        # They would sit in the status item, logs and alerts: refused rather than stored.
        raise ApiError(
            400, f"source {redact(source)}: credentials in the URL (user:password@) are refused"
        )
    if parts.scheme.lower() == "s3":
        if not source_bucket:
            raise ApiError(400, f"source {redact(source)}: this stack reads no s3:// sources")
        if parts.netloc != source_bucket:
            raise ApiError(
                400, f"source {redact(source)}: only s3://{source_bucket}/ objects are read"
            )
        return source
    try:
        guard.check_url(source)
    except BadSourceError as exc:
        raise ApiError(400, f"source {exc.reason}") from None
    return source


def validate_request(
    body: Any,
    *,
    guard: UrlGuard,
    deployed: Sequence[str] | None = None,
    source_bucket: str | None = None,
) -> StreamRequest:
    """A ``POST /streams`` body, checked; ApiError(400) naming the field otherwise.

    ``deployed``: the detectors the stack runs; a request may ask for a subset (default: all).
    """
    from vqa.detectors import parse_names
    from vqa.overrides import validate_thresholds

    if not isinstance(body, Mapping):
        raise ApiError(400, "body: expected a JSON object with 'source'")
    unknown = sorted(set(body) - REQUEST_FIELDS)
    if unknown:
        raise ApiError(
            400,
            f"unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(REQUEST_FIELDS))}",
        )
    source = validate_source(body.get("source"), guard=guard, source_bucket=source_bucket)
    raw = body.get("detectors")
    try:
        names = parse_names(raw) if raw is not None else list(deployed or parse_names(None))
    except ConfigError as exc:
        raise ApiError(400, f"detectors: {exc}") from None
    if deployed is not None:
        missing = [n for n in names if n not in deployed]
        if missing:
            raise ApiError(
                400,
                f"detectors: {', '.join(missing)} not deployed in this stack; "
                f"it runs {', '.join(deployed)}",
            )
    thresholds_raw = body.get("thresholds") or {}
    try:
        thresholds = validate_thresholds(thresholds_raw)
    except ConfigError as exc:
        raise ApiError(400, f"thresholds: {exc}") from None
    stray = sorted(set(thresholds) - set(names))
    if stray:
        raise ApiError(400, f"thresholds: {', '.join(stray)} not among the requested detectors")
    token = body.get("client_token")
    if token is not None and (not isinstance(token, str) or not CLIENT_TOKEN.match(token)):
        raise ApiError(400, "client_token: expected 1-64 characters [A-Za-z0-9_-]")
    return StreamRequest(source, tuple(names), thresholds, token)


# --------------------------------------------------------------------------- starting a stream


class Starter(Protocol):
    """How one architecture starts monitoring a stream (raises on failure)."""

    def __call__(self, stream_id: str, request: StreamRequest) -> None: ...


@dataclass
class StepFunctionsStarter:
    """Distributed: ``StartExecution``, named after the stream, so a retried start of the same
    stream is the same execution (Standard workflows dedupe on name and input)."""

    sfn: Any
    state_machine_arn: str

    def __call__(self, stream_id: str, request: StreamRequest) -> None:
        payload = {"stream": stream_id, "source": request.source, "index": 0}
        # ExecutionAlreadyExists: an earlier attempt of this very request started it.
        with contextlib.suppress(self.sfn.exceptions.ExecutionAlreadyExists):
            self.sfn.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=f"{stream_id}-0",  # chunk 0; later chunks are "-1", "-2"...
                input=json.dumps({**payload, "request": request.to_json()}),
            )


@dataclass
class OrchestratorStarter:
    """Monolith: invoke the orchestrator function, which records the stream and fans it out."""

    lambda_client: Any
    function_name: str

    def __call__(self, stream_id: str, request: StreamRequest) -> None:
        payload = {"stream": stream_id, "source": request.source, "request": request.to_json()}
        resp = self.lambda_client.invoke(
            FunctionName=self.function_name, Payload=json.dumps(payload).encode()
        )
        if resp.get("FunctionError"):
            detail = resp["Payload"].read().decode(errors="replace")
            with contextlib.suppress(ValueError, AttributeError):
                detail = json.loads(detail).get("errorMessage", detail)
            raise ApiError(400, f"the orchestrator refused the stream: {detail[:300]}")


# --------------------------------------------------------------------------- the operations


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _request_item(dynamodb: Any, table: str, stream_id: str) -> dict[str, Any] | None:
    item = dynamodb.get_item(
        TableName=table,
        Key={"stream": {"S": stream_id}, "defect": {"S": results.REQUEST_KEY}},
        ConsistentRead=True,
    ).get("Item")
    return dict(item) if item else None


def create_stream(
    request: StreamRequest,
    *,
    dynamodb: Any,
    table: str,
    start: Starter,
    new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
) -> tuple[int, dict[str, Any]]:
    """Start monitoring; 201 and the stream, or 200 and the same stream for a retry with the
    same client token, or 409 when that token was used for a different request."""
    stream_id = request.client_token or new_id()
    fingerprint = request.fingerprint()
    try:
        dynamodb.put_item(
            TableName=table,
            Item={
                "stream": {"S": stream_id},
                "defect": {"S": results.REQUEST_KEY},
                "fingerprint": {"S": fingerprint},
                "request": {"S": json.dumps(request.to_json(), sort_keys=True)},
                "requested_at": {"S": _now()},
            },
            ConditionExpression="attribute_not_exists(#d)",
            ExpressionAttributeNames={"#d": "defect"},
        )
    except dynamodb.exceptions.ConditionalCheckFailedException:
        stored = _request_item(dynamodb, table, stream_id) or {}
        if stored.get("fingerprint", {}).get("S") != fingerprint:
            raise ApiError(
                409, f"client_token {stream_id!r} was used for a different request"
            ) from None
        # A retry. Start again in case the first attempt died between recording the request
        # and starting the stream, but only while nothing recorded the stream: the monolith's
        # orchestrator would queue every shard's job a second time (the distributed start is
        # idempotent by execution name anyway).
        if results.read_status(dynamodb=dynamodb, table=table, stream=stream_id) is None:
            start(stream_id, request)
        return 200, get_stream(stream_id, dynamodb=dynamodb, table=table)[1]
    try:
        start(stream_id, request)
    except BaseException:
        # Nothing started: forget the request, so the client's retry starts it afresh.
        dynamodb.delete_item(
            TableName=table,
            Key={"stream": {"S": stream_id}, "defect": {"S": results.REQUEST_KEY}},
        )
        raise
    return 201, get_stream(stream_id, dynamodb=dynamodb, table=table)[1]


def _open_defects(dynamodb: Any, table: str, stream_id: str) -> list[dict[str, Any]]:
    """Defects whose ``started`` alert went out and whose ``ended`` did not (vqa.alerts)."""
    started: dict[str, dict[str, Any]] = {}
    ended: set[str] = set()
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "#s = :s AND begins_with(#d, :p)",
        "ExpressionAttributeNames": {"#s": "stream", "#d": "defect"},
        "ExpressionAttributeValues": {":s": {"S": stream_id}, ":p": {"S": results.ALERT_PREFIX}},
        "ConsistentRead": True,
    }
    while True:
        page = dynamodb.query(**kwargs)
        for item in page["Items"]:
            body = json.loads(item.get("body", {}).get("S") or "{}")
            if body.get("event") == "defect.started":
                started[str(body.get("id"))] = body
            elif body.get("event") == "defect.ended":
                ended.add(str(body.get("id")))
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return sorted(
        (
            {"id": i, "kind": b.get("kind"), "start": b.get("start"), "since": b.get("at")}
            for i, b in started.items()
            if i not in ended
        ),
        key=lambda d: (float(d["start"] or 0.0), str(d["kind"])),
    )


def stream_view(
    stream_id: str,
    status: results.StreamStatus | None,
    *,
    requested: dict[str, Any] | None,
    defects: list[dict[str, Any]],
    open_defects: list[dict[str, Any]],
) -> dict[str, Any]:
    """The ``GET /streams/{id}`` body (docs/api.md)."""
    request = json.loads(requested["request"]["S"]) if requested else {}
    source = status.source if status and status.source else request.get("source", "")
    duration = status.duration if status else 0.0
    unmonitored = status.unmonitored_seconds if status else 0.0
    return {
        "id": stream_id,
        # A stop requested before the architecture recorded the stream: still "submitted".
        "state": status.state if status and status.state else "submitted",
        "source": redact(source) if source else "",
        "detectors": request.get("detectors"),
        "stop_requested": bool(status and status.stop_requested),
        "duration": duration,
        "monitored_seconds": round(max(duration - unmonitored, 0.0), 6),
        "unmonitored_seconds": unmonitored,
        "unmonitored": [list(iv) for iv in status.unmonitored] if status else [],
        "skipped": status.skipped if status else {},
        "error": (status.error or status.reason) if status else "",
        "defects": defects,
        "open_defects": open_defects,
        "requested_at": requested["requested_at"]["S"] if requested else None,
    }


def get_stream(stream_id: str, *, dynamodb: Any, table: str) -> tuple[int, dict[str, Any]]:
    """200 and the stream (status, defects so far, open defects, monitored time), or 404."""
    _check_id(stream_id)
    status = results.read_status(dynamodb=dynamodb, table=table, stream=stream_id)
    requested = _request_item(dynamodb, table, stream_id)
    if status is None and requested is None:
        raise ApiError(404, f"no stream {stream_id!r}")
    defects = [
        d.to_json() for d in results.read_defects(dynamodb=dynamodb, table=table, stream=stream_id)
    ]
    return 200, stream_view(
        stream_id,
        status,
        requested=requested,
        defects=defects,
        open_defects=_open_defects(dynamodb, table, stream_id),
    )


def stop_stream(stream_id: str, *, dynamodb: Any, table: str) -> tuple[int, dict[str, Any]]:
    """Ask monitoring to stop: ``stop_requested`` in the status item, which the state machine
    (at its next segment) and the workers (dropping the job) act on. 202 while it stops, 200 if
    the stream had already finished, 404 for an unknown stream. Repeating it changes nothing."""
    _check_id(stream_id)
    status = results.read_status(dynamodb=dynamodb, table=table, stream=stream_id)
    if status is None and _request_item(dynamodb, table, stream_id) is None:
        raise ApiError(404, f"no stream {stream_id!r}")
    if status is not None and status.state in FINAL_STATES:
        return 200, get_stream(stream_id, dynamodb=dynamodb, table=table)[1]
    if status is None or not status.stop_requested:
        results.request_stop(dynamodb=dynamodb, table=table, stream=stream_id, at=_now())
    return 202, get_stream(stream_id, dynamodb=dynamodb, table=table)[1]


def _check_id(stream_id: str) -> None:
    # Generated ids (uuid4 hex) have the client tokens' form too: one rule for both.
    if not CLIENT_TOKEN.match(stream_id):
        raise ApiError(404, f"no stream {stream_id[:80]!r}")


# --------------------------------------------------------------------------- routing


@dataclass
class Api:
    """One deployment's API: its table, how it starts streams, its guard and detectors."""

    dynamodb: Any
    table: str
    start: Starter
    guard: UrlGuard
    deployed: Sequence[str] | None = None
    source_bucket: str | None = None

    def handle(
        self, method: str, path: str, body: bytes | str | None
    ) -> tuple[int, dict[str, Any]]:
        """Route one request; ``(status, JSON body)``, errors included (4xx with ``error``)."""
        try:
            return self._route(method.upper(), path, body)
        except ApiError as exc:
            return exc.status, exc.to_json()

    def _route(
        self, method: str, path: str, body: bytes | str | None
    ) -> tuple[int, dict[str, Any]]:
        parts = [p for p in urlsplit(path).path.split("/") if p]
        if parts == ["streams"]:
            if method != "POST":
                raise ApiError(405, f"{method} /streams: use POST to start a stream")
            try:
                doc = json.loads(body or b"")
            except ValueError as exc:
                raise ApiError(400, f"body: not JSON ({exc})") from None
            request = validate_request(
                doc, guard=self.guard, deployed=self.deployed, source_bucket=self.source_bucket
            )
            return create_stream(
                request, dynamodb=self.dynamodb, table=self.table, start=self.start
            )
        if len(parts) == 2 and parts[0] == "streams":
            if method == "GET":
                return get_stream(parts[1], dynamodb=self.dynamodb, table=self.table)
            if method == "DELETE":
                return stop_stream(parts[1], dynamodb=self.dynamodb, table=self.table)
            raise ApiError(405, f"{method} /streams/{{id}}: use GET or DELETE")
        raise ApiError(404, f"no route {method} {urlsplit(path).path[:200]}")
