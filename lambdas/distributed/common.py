"""What the distributed handlers share: configuration, AWS clients, observability, transient errors.

Clients are created once per process (on first use) and are swappable: the local emulation
installs clients that talk to moto and carry a :class:`vqa.meter.Meter`, and the same meter
hook works on the real clients in AWS.

Configuration comes from the function's environment. In Lambda that is ``os.environ``; the local
emulation runs every function in one process (detector branches concurrently), so it supplies
each invocation's environment through a context variable instead of mutating ``os.environ``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ReadTimeoutError

from vqa.events import DefectEvent, Phase
from vqa.observability import Observer, default_sink

# One context variable for the invoked function's environment: vqa.urlguard reads it too.
from vqa.urlguard import FUNCTION_ENVIRONMENT


def env(name: str, default: str | None = None) -> str:
    """A configuration value of this function (``KeyError`` names it when missing)."""
    local = FUNCTION_ENVIRONMENT.get()
    source = local if local is not None else os.environ
    value = source.get(name, default)
    if value is None:
        raise KeyError(f"environment variable {name} is not set")
    return value


class Clients:
    """The boto3 clients the handlers use, created once and replaceable as a whole."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}

    def get(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = boto3.client(service)  # type: ignore[call-overload]
            return self._clients[service]

    def install(self, **clients: Any) -> None:
        """Use these clients (e.g. ``s3=..., dynamodb=..., sns=...``) from now on."""
        with self._lock:
            self._clients = dict(clients)

    @property
    def s3(self) -> Any:
        return self.get("s3")

    @property
    def dynamodb(self) -> Any:
        return self.get("dynamodb")

    @property
    def sns(self) -> Any:
        return self.get("sns")


CLIENTS = Clients()


#: The architecture these handlers make up: the ``Architecture`` dimension of their metrics.
ARCHITECTURE = "distributed"

#: Where log lines and EMF documents go: stdout in Lambda (its log stream, from which
#: CloudWatch extracts the metrics); the emulator swaps in a sink that meters and keeps them.
LOG_SINK: Callable[[str], None] = default_sink

#: The handlers' Powertools Logger, Metrics and Tracer. The sink is looked up per line, so a
#: swapped :data:`LOG_SINK` takes effect at once.
OBS = Observer("distributed", architecture=ARCHITECTURE, sink=lambda line: LOG_SINK(line))
logger = OBS.logger
metrics = OBS.metrics
tracer = OBS.tracer


class TransientError(Exception):
    """A failure worth retrying: throttling, a 5xx or a dropped connection on an AWS call.

    Lambda reports it as ``errorType: TransientError``; the state machine retries exactly that
    name (plus Lambda's own transient errors) with backoff.
    """


_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalError",
    "ServiceUnavailable",
    "ProvisionedThroughputExceededException",
    "RequestTimeout",
    "InternalServerError",
    "InternalFailure",
    "TooManyRequestsException",
}


@contextmanager
def transient_errors() -> Iterator[None]:
    """Re-raise throttling and connection failures of AWS calls as :class:`TransientError`."""
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in _TRANSIENT_CODES or status >= 500:
            raise TransientError(f"{code or status}: {exc}") from exc
        raise
    except (ConnectionError, ReadTimeoutError) as exc:
        raise TransientError(str(exc)) from exc
    except BotoCoreError:
        raise


class Timer:
    """Time since construction, for the handlers' log lines and metrics."""

    def __init__(self) -> None:
        self._t0 = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self._t0

    @property
    def ms(self) -> float:
        return round(self.seconds * 1000.0, 1)


def event_from_json(obj: dict[str, Any]) -> DefectEvent:
    """The :class:`~vqa.events.DefectEvent` whose ``to_json()`` a handler returned."""
    detail = {k: v for k, v in obj.items() if k not in ("event", "kind", "start", "end")}
    phase: Phase = "started" if obj["event"] == "defect.started" else "ended"
    end = None if obj["end"] is None else float(obj["end"])
    return DefectEvent(phase, str(obj["kind"]), float(obj["start"]), end, detail)


def execution_over_time(event: Mapping[str, Any]) -> bool:
    """True once the execution has run ``MAX_EXECUTION_SECONDS`` (set for Express: a live
    stream's chunk must hand over before the 5-minute limit); ``execution_start`` is
    ``$$.Execution.StartTime``."""
    limit = float(env("MAX_EXECUTION_SECONDS", "0"))
    if not limit or "execution_start" not in event:
        return False
    start = datetime.fromisoformat(str(event["execution_start"]).replace("Z", "+00:00"))
    return (datetime.now(UTC) - start).total_seconds() >= limit


def segment_prefix(stream: str, index: int) -> str:
    return f"segments/{stream}/{index:08d}/"


def state_key(stream: str, detector: str, index: int) -> str:
    """Detector state *after* segment ``index``: one key per stream, detector and segment, so a
    retried segment re-reads the state before it instead of a state it already advanced."""
    return f"state/{stream}/{detector}/{index:08d}.json"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key
