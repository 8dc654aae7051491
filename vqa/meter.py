"""Metering of billable AWS operations, shared by both architectures and the cost model.

A :class:`Meter` hooks botocore's event system on the clients the handlers and workers use, so the
same counter works against moto and against real AWS. Other usage (state transitions, Lambda
GB-seconds, worker CPU-seconds) is added by the runners with :meth:`Meter.add`.

Usage schema (``Meter.snapshot()``; the cost model prices exactly these keys)::

    {
      "requests": {"s3": {"PutObject": 12, "GetObject": 40}, "dynamodb": {...}, "sns": {...},
                   "sqs": {...}, "stepfunctions": {...}, "lambda": {...}},
      "bytes": {"s3_put": int, "s3_get": int},
      "counters": {"state_transitions": int, "express_requests": int,
                   "express_gb_seconds": float, "lambda_invocations": int,
                   "lambda_gb_seconds": float, "worker_cpu_seconds": float, ...}
    }
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any


class Meter:
    """Thread-safe counter of AWS API calls, bytes moved and other billable quantities."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._bytes: dict[str, int] = defaultdict(int)
        self._counters: dict[str, float] = defaultdict(float)

    def attach(self, client: Any) -> Any:
        """Count every call ``client`` makes, failed ones included (AWS bills those too)."""
        events = client.meta.events
        events.register("before-send.s3.PutObject", self._on_put)
        events.register("before-send.s3.UploadPart", self._on_put)
        events.register("after-call", self._on_after_call)
        return client

    def _on_put(self, request: Any, **_: Any) -> None:
        # Checksummed uploads are aws-chunked: the payload size is in X-Amz-Decoded-Content-Length.
        headers = request.headers
        size = int(
            headers.get("X-Amz-Decoded-Content-Length") or headers.get("Content-Length") or 0
        )
        if not size and isinstance(request.body, bytes | bytearray):
            size = len(request.body)
        with self._lock:
            self._bytes["s3_put"] += size

    def _on_after_call(self, http_response: Any, parsed: Any, model: Any, **_: Any) -> None:
        # Emitted once per API call after its retries, whatever the status (the client raises
        # afterwards for an error).
        service = model.service_model.service_name
        with self._lock:
            self._requests[service][model.name] += 1
            if service == "s3" and model.name == "GetObject":
                self._bytes["s3_get"] += int(parsed.get("ContentLength") or 0)

    def add(self, counter: str, amount: float = 1) -> None:
        with self._lock:
            self._counters[counter] += amount

    def count_request(self, service: str, operation: str, n: int = 1) -> None:
        """Record requests made outside a metered client (e.g. Lambda invokes by the emulator)."""
        with self._lock:
            self._requests[service][operation] += n

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": {s: dict(ops) for s, ops in sorted(self._requests.items())},
                "bytes": dict(self._bytes),
                "counters": dict(self._counters),
            }

    def merge(self, other: dict[str, Any]) -> None:
        """Add a snapshot taken elsewhere (another process, another Lambda)."""
        with self._lock:
            for service, ops in other.get("requests", {}).items():
                for op, n in ops.items():
                    self._requests[service][op] += n
            for k, v in other.get("bytes", {}).items():
                self._bytes[k] += v
            for k, v in other.get("counters", {}).items():
                self._counters[k] += v
