"""The worker's logs, metrics and traces: Powertools (:mod:`vqa.observability`) on stderr.

``python -m vqa.worker`` calls :func:`configure_logging` once at start: one Powertools Logger
on the package's ``vqa`` logger, so every line the worker and the package log (``vqa.worker``,
``vqa.live``, ...) is one JSON object on stderr, and EMF documents on the same stream (the ECS
``awslogs`` driver sends both to the shard's log group); their bytes are metered as
``log_bytes``. The worker's stdout is left to ``--self-test``.

Code running the worker in another process's interpreter (tests) gets an observer of its own
from :func:`observer` that leaves that process's ``vqa`` loggers alone.
"""

from __future__ import annotations

import logging

from vqa.meter import Meter
from vqa.observability import Observer, stderr_sink

#: The ``Architecture`` dimension of the worker's metrics.
ARCHITECTURE = "monolith"

_observer: Observer | None = None


def configure_logging(meter: Meter | None, level: int = logging.INFO) -> Observer:
    """The worker process's observer: the ``vqa`` loggers, stderr, bytes counted in ``meter``."""
    global _observer
    _observer = Observer(
        "worker",
        architecture=ARCHITECTURE,
        sink=stderr_sink,
        meter=meter,
        in_lambda=False,
        logger_name="vqa",
        level=level,
    )
    return _observer


def observer() -> Observer:
    """The observer :func:`configure_logging` made, or (the worker run in process) one on a
    logger of its own."""
    global _observer
    if _observer is None:
        _observer = Observer("worker", architecture=ARCHITECTURE, sink=stderr_sink, in_lambda=False)
    return _observer
