"""Logs, metrics and traces of one component, built once through Powertools for AWS Lambda.

Every handler and the worker build one :class:`Observer` at import and use its three parts:

- ``logger``: Powertools' :class:`~aws_lambda_powertools.Logger` (service
  :data:`vqa.metrics.SERVICE`): one JSON object per line with ``stream_id`` and ``segment``
  appended where known (:meth:`Observer.bind`) and sources redacted (:meth:`Observer.safe`);
- ``metrics``: Powertools' :class:`~aws_lambda_powertools.Metrics` in CloudWatch embedded metric
  format (namespace :data:`vqa.metrics.NAMESPACE`, dimension ``Architecture``), with the
  helpers below so that both architectures emit the same metrics with the same meaning;
- ``tracer``: Powertools' :class:`~aws_lambda_powertools.Tracer` (X-Ray): active in Lambda, in
  the worker only when an X-Ray daemon is configured (``AWS_XRAY_DAEMON_ADDRESS``), never when
  ``POWERTOOLS_TRACE_DISABLED`` is set or in the local emulation (nothing to send to).

Log lines and EMF documents go through one *sink* per component (stdout in Lambda; the host
program's debug logging when a handler runs in process elsewhere; stderr in the worker, whose
stdout belongs to ``--self-test``), which may also meter their bytes as ``log_bytes``
(CloudWatch Logs ingestion, :mod:`vqa.cost`). The in-process emulation of the distributed
handlers swaps the sink to meter and collect what a run logged.

EMF reaches CloudWatch from both architectures without an agent: Lambda extracts it from the
function's log stream, and the ECS ``awslogs`` driver writes each line as one log event with
``PutLogEvents``, from which CloudWatch Logs extracts EMF documents; AWS documents the
``x-amzn-logs-format: json/emf`` header as optional ("Using the PutLogEvents API to send
manually-created embedded metric format logs", CloudWatch User Guide). Each document is one
line, so the driver never splits one.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
    AmazonCloudWatchEMFProvider,
)
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.constants import MAX_METRICS

from vqa import metrics as names
from vqa.events import DefectEvent
from vqa.meter import Meter
from vqa.urlguard import redact

#: Where one line of output goes.
Sink = Callable[[str], None]

#: Set to a truthy value to turn tracing off whatever the environment (tests, emulation).
TRACE_DISABLED_ENV = "POWERTOOLS_TRACE_DISABLED"
#: The X-Ray daemon the worker would send segments to (ECS: a daemon sidecar's address).
XRAY_DAEMON_ENV = "AWS_XRAY_DAEMON_ADDRESS"
#: Log keys that hold a source URL: redacted before they are written.
_SOURCE_KEYS = ("source",)


#: Where a handler's lines go when it runs in process outside Lambda.
_HOSTED = logging.getLogger("vqa.handlers")


def stdout_sink(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def stderr_sink(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def default_sink(line: str) -> None:
    """stdout in Lambda (the function's log stream). Anywhere else a handler runs inside
    another program (the local emulations, tests): its lines go to that program's logging at
    debug level, so they neither mix with its ``--json`` output nor its one-line errors."""
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        stdout_sink(line)
    else:
        _HOSTED.debug("%s", line)


class _SinkHandler(logging.Handler):
    """Powertools' formatted records, written through the component's current sink."""

    def __init__(self, write: Callable[[str], None]) -> None:
        super().__init__()
        self._write = write

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._write(self.format(record))
        except Exception:
            self.handleError(record)


class _Logger(Logger):
    """Powertools' Logger on a Python logger named for the component, not for the service.

    Powertools names its logger after the service and filters that name out of the root
    logger's handlers; in one process with the CLI (the local emulation) that would take over
    the package's ``vqa`` loggers. The worker, a process of its own, passes ``"vqa"`` and so
    formats every package logger's lines too.
    """

    def __init__(self, *, logger_name: str, **kwargs: Any) -> None:
        self._logger_name = logger_name
        super().__init__(**kwargs)

    def _get_logger(self) -> logging.Logger:
        return logging.getLogger(self._logger_name)

    def _init_logger(self, *args: Any, **kwargs: Any) -> None:
        # No de-duplication filter on the root logger's handlers: this logger does not
        # propagate, and the CLI's own handlers must keep the package's lines.
        self._is_deduplication_disabled = True
        super()._init_logger(*args, **kwargs)
        self._logger.propagate = False


class _EmfProvider(AmazonCloudWatchEMFProvider):
    """Powertools' EMF provider, writing its documents through the sink instead of ``print``.

    One provider per :class:`Observer` (Powertools' ``Metrics`` shares its metric set between
    instances through class attributes; the emulation runs several handlers in one process),
    and a lock because the detector branches of the distributed emulation run in threads.
    """

    def __init__(self, write: Callable[[str], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._write = write
        self._lock = threading.RLock()

    def add_metric(self, name: str, unit: Any, value: float, resolution: Any = 60) -> None:
        with self._lock:
            values = self.metric_set.get(name, {}).get("Value", [])
            if len(self.metric_set) >= MAX_METRICS or len(values) >= MAX_METRICS - 1:
                # EMF holds at most 100 metrics and 100 values each: flush before the provider
                # would print the overflow itself (to stdout, bypassing the sink).
                self.flush_metrics()
            super().add_metric(name=name, unit=unit, value=value, resolution=resolution)

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        with self._lock:
            if not self.metric_set:
                if raise_on_empty_metrics:
                    super().flush_metrics(raise_on_empty_metrics=True)
                return  # nothing measured (a handler that only logs): no document, no warning
            doc = self.serialize_metric_set()
            self.clear_metrics()
        if not is_metrics_disabled():
            self._write(json.dumps(doc, separators=(",", ":")))


def _tracing_disabled(component_in_lambda: bool) -> bool:
    flag = os.environ.get(TRACE_DISABLED_ENV, "").strip().lower()
    if flag in ("1", "true", "yes", "on"):
        return True
    if component_in_lambda:
        # Lambda's own daemon listens when the function has active tracing; anywhere else
        # (tests, the in-process emulation) there is nothing to send segments to.
        return not os.environ.get("LAMBDA_TASK_ROOT")
    return not os.environ.get(XRAY_DAEMON_ENV)


class Observer:
    """One component's Logger, Metrics and Tracer, and the metrics both architectures emit.

    ``architecture`` (``distributed`` or ``monolith``) is the ``Architecture`` dimension of every
    metric and a key of every log line. ``sink`` receives each log line and EMF document;
    ``meter`` (optional) counts their bytes as ``log_bytes``.
    """

    def __init__(
        self,
        component: str,
        *,
        architecture: str,
        sink: Sink = default_sink,
        meter: Meter | None = None,
        in_lambda: bool = True,
        logger_name: str | None = None,
        level: str | int | None = None,
    ) -> None:
        self.component = component
        self.architecture = architecture
        self.sink = sink
        self.meter = meter
        name = logger_name or f"{names.SERVICE}.observability.{component}"
        # Built before in this process (a handler module loaded again by the emulation):
        # Powertools keeps the logger as configured then, so reuse its handler, pointed here.
        handler = getattr(logging.getLogger(name), "powertools_handler", None)
        if isinstance(handler, _SinkHandler):
            handler._write = self.write
        else:
            handler = _SinkHandler(self.write)
        self.logger: Logger = _Logger(
            logger_name=name,
            service=names.SERVICE,
            logger_handler=handler,
            level=level if level is not None else os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO"),
            use_rfc3339=True,
            utc=True,
            log_record_order=["timestamp", "level", "message"],
            json_default=str,
        )
        self.logger.append_keys(architecture=architecture, component=component)
        self._provider = _EmfProvider(
            self.write,
            namespace=names.NAMESPACE,
            service=names.SERVICE,
            default_dimensions={names.ARCHITECTURE: architecture},
        )
        self.metrics = Metrics(provider=self._provider)
        self.tracer = Tracer(service=names.SERVICE, disabled=_tracing_disabled(in_lambda))

    # -- output ------------------------------------------------------------------------------

    def write(self, line: str) -> None:
        """Write one line through the sink, metering its bytes (CloudWatch Logs ingestion)."""
        self.sink(line)
        if self.meter is not None:
            self.meter.add("log_bytes", len(line.encode()) + 1)

    def flush(self) -> None:
        """Write the metrics gathered so far as one EMF document (outside Lambda: per segment
        batch and at exit; in Lambda ``@metrics.log_metrics`` does it per invocation)."""
        self.metrics.flush_metrics()

    # -- log keys ----------------------------------------------------------------------------

    def bind(self, *, stream_id: str | None = None, segment: int | None = None) -> None:
        """Carry ``stream_id`` and ``segment`` on every following log line; one left None is
        dropped (a warm Lambda or the next job must not log the previous one's)."""
        keys = {"stream_id": stream_id, "segment": segment}
        self.logger.remove_keys([k for k, v in keys.items() if v is None])
        self.logger.append_keys(**{k: v for k, v in keys.items() if v is not None})

    def unbind(self) -> None:
        """Forget the stream and segment."""
        self.bind()

    @staticmethod
    def safe(**fields: Any) -> dict[str, Any]:
        """``fields`` with every source URL redacted (query strings may carry tokens)."""
        return {k: redact(str(v)) if k in _SOURCE_KEYS else v for k, v in fields.items()}

    # -- the metrics of vqa.metrics -----------------------------------------------------------

    def segments(self, count: int, *, stream_seconds: float, processing_seconds: float) -> None:
        """``count`` segments holding ``stream_seconds`` of media, analysed in
        ``processing_seconds`` of wall-clock time."""
        m = self.metrics
        m.add_metric(name=names.SEGMENTS_PROCESSED, unit=MetricUnit.Count, value=count)
        m.add_metric(name=names.MONITORED_SECONDS, unit=MetricUnit.Seconds, value=stream_seconds)
        if stream_seconds > 0:
            m.add_metric(
                name=names.PROCESSING_PER_STREAM_SECOND,
                unit=MetricUnit.NoUnit,
                value=processing_seconds / stream_seconds,
            )

    def live_edge_lag(self, seconds: float) -> None:
        """How far behind the live edge analysis runs, for one live segment."""
        self.metrics.add_metric(
            name=names.LIVE_EDGE_LAG, unit=MetricUnit.Seconds, value=max(0.0, seconds)
        )

    def alerts_published(self, count: int) -> None:
        if count:
            self.metrics.add_metric(name=names.ALERTS_PUBLISHED, unit=MetricUnit.Count, value=count)

    def stream_failed(self) -> None:
        self.metrics.add_metric(name=names.STREAMS_FAILED, unit=MetricUnit.Count, value=1)

    def defects_started(self, events: Iterable[DefectEvent]) -> None:
        """``DefectsStarted`` per ``Kind`` (one EMF document per kind, as Powertools'
        ``single_metric`` writes it, since a dimension value holds for a whole document) and
        ``InputLoss`` for the input-loss starts; written at once."""
        kinds = Counter(e.kind for e in events if e.phase == "started")
        for kind, count in sorted(kinds.items()):
            single = _EmfProvider(
                self.write,
                namespace=names.NAMESPACE,
                service=names.SERVICE,
                default_dimensions={names.ARCHITECTURE: self.architecture, names.KIND: kind},
            )
            single.add_metric(name=names.DEFECTS_STARTED, unit=MetricUnit.Count, value=count)
            single.flush_metrics()
        if kinds.get("input_loss"):
            self.metrics.add_metric(
                name=names.INPUT_LOSS, unit=MetricUnit.Count, value=kinds["input_loss"]
            )


class FileSegments:
    """The segment metrics of a file job in the worker, whose segments are analysed back to back.

    Each segment's processing time is the wall-clock time since the previous one ended (decode
    and detectors). Its length is ``segment_seconds`` except at the end of the media, known only
    when the job ends: the decoder may yield one more segment past it (a last, empty one after
    a short one), so the last two segments are metered by :meth:`finish`, the others as later
    ones arrive.
    """

    #: Segments held back until the media's end is known.
    HELD = 2

    def __init__(
        self,
        observer: Observer,
        segment_seconds: float,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.observer = observer
        self.segment_seconds = segment_seconds
        self.clock = clock
        self._last = clock()
        self._pending: list[tuple[int, float]] = []

    def segment(self, index: int) -> None:
        """Segment ``index`` has been analysed."""
        now = self.clock()
        self._pending.append((index, now - self._last))
        self._last = now
        while len(self._pending) > self.HELD:
            self._emit(*self._pending.pop(0), None)

    def finish(self, media_end: float | None) -> None:
        """The job ended; its media ended at ``media_end`` seconds (None: unknown, nominal)."""
        while self._pending:
            self._emit(*self._pending.pop(0), media_end)

    def _emit(self, index: int, elapsed: float, media_end: float | None) -> None:
        seconds = self.segment_seconds
        if media_end is not None:
            seconds = min(seconds, max(0.0, media_end - index * self.segment_seconds))
        if seconds > 0:  # not a decoder's tail past the end of the media (as the distributed)
            self.observer.segments(1, stream_seconds=seconds, processing_seconds=elapsed)


class LiveSegments:
    """The segment metrics of a live job in the worker.

    Lag behind the live edge: each media segment read says where the edge was at least, at the
    time its analysis ended (its end had been published), and from then on the edge advances
    with the wall clock (input loss moves the stream timeline on with it). The edge at any time
    is the greatest of these bounds, and the lag after a segment is that edge less the end of
    the media analysed: a lower bound of the true lag (0 at the most punctual segment seen, the
    time from publication to analysis not being known in process), flat while analysis keeps
    up, growing when it falls behind. Processing time is CPU time (this process, decoder
    threads included) per segment: between segments the worker waits for media.
    """

    def __init__(
        self,
        observer: Observer,
        *,
        wall: Callable[[], float] = time.time,
        cpu: Callable[[], float] = time.process_time,
    ) -> None:
        self.observer = observer
        self.wall = wall
        self.cpu = cpu
        #: The greatest (edge - wall time) seen: the edge at time t is at least t + this.
        self._ahead: float | None = None
        self._cpu = cpu()

    def joined(self) -> None:
        """The follower (re)joined the stream at its live edge: a new timeline."""
        self._ahead = None

    def segment(self, start: float, end: float, edge: float | None) -> None:
        """A segment of media ``start``..``end`` has been analysed; ``edge``: where the media
        segment it belongs to ends (None: where it does); run-relative stream seconds."""
        now, cpu = self.wall(), self.cpu()
        bound = (edge if edge is not None else end) - now
        self._ahead = bound if self._ahead is None else max(self._ahead, bound)
        seconds = max(0.0, end - start)
        self.observer.segments(1, stream_seconds=seconds, processing_seconds=cpu - self._cpu)
        self._cpu = cpu
        self.observer.live_edge_lag(now + self._ahead - end)


def emf_documents(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The EMF documents among log lines (anything else is skipped): what CloudWatch would
    extract metrics from. Tests and the emulation's readers use it."""
    docs = []
    for line in lines:
        text = line.strip()
        if not text.startswith("{"):
            continue
        try:
            doc = json.loads(text)
        except ValueError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("_aws"), dict):
            docs.append(doc)
    return docs


def metric_values(docs: Iterable[dict[str, Any]], name: str, **dimensions: str) -> list[float]:
    """Every value of metric ``name`` in ``docs`` whose dimensions include ``dimensions``."""
    out: list[float] = []
    for doc in docs:
        for directive in doc["_aws"].get("CloudWatchMetrics", []):
            declared = {m["Name"] for m in directive.get("Metrics", [])}
            if name not in declared:
                continue
            if any(doc.get(k) != v for k, v in dimensions.items()):
                continue
            value = doc[name]
            out.extend(float(v) for v in (value if isinstance(value, list) else [value]))
    return out
