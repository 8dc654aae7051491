"""The worker's logs: one JSON object per line on stderr, bytes metered for CloudWatch."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from typing import Any

from vqa.meter import Meter


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and any ``extra`` fields."""

    _STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class CountingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that also counts the bytes it emits (CloudWatch Logs ingestion)."""

    def __init__(self, stream: Any, meter: Meter | None) -> None:
        super().__init__(stream)
        self.meter = meter

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        if self.meter is not None:
            with contextlib.suppress(Exception):
                self.meter.add("log_bytes", len(self.format(record).encode()) + 1)


def configure_logging(meter: Meter | None, level: int = logging.INFO) -> None:
    handler = CountingHandler(sys.stderr, meter)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("vqa")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
