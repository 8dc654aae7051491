"""The operational metrics both architectures emit, named once.

The handlers and the worker emit them as CloudWatch embedded-metric-format lines through
Powertools for AWS Lambda (:mod:`vqa.observability`); the stacks' dashboards and alarms
(``stacks/constructs/dashboard.py``, ``stacks/constructs/alarms.py``) read the same names from
here, so a renamed metric cannot leave a widget or an alarm watching nothing.

Every metric carries the ``Architecture`` dimension (``distributed`` or ``monolith``) and
nothing per stream: a per-stream dimension would make one billed custom metric per channel
and could not be named in an alarm defined before the stream exists. ``DefectsStarted`` also
carries ``Kind``.
"""

from __future__ import annotations

#: CloudWatch namespace of every VQA metric (also the log-derived ``WorkerCheckpoints``).
NAMESPACE = "VQA"
#: The Powertools service name: the ``service`` key of every log line and a metric dimension.
SERVICE = "vqa"

#: Dimension naming the architecture that emitted a metric.
ARCHITECTURE = "Architecture"
#: Dimension naming a defect kind (``DefectsStarted`` only).
KIND = "Kind"

#: Media segments analysed (Count).
SEGMENTS_PROCESSED = "SegmentsProcessed"
#: Seconds of stream time analysed (Seconds): per minute, / 60 = streams being monitored.
MONITORED_SECONDS = "MonitoredSeconds"
#: Wall-clock processing time per second of stream time, per segment (None: a ratio).
PROCESSING_PER_STREAM_SECOND = "ProcessingTimePerStreamSecond"
#: How far behind the live edge analysis runs, per live segment (Seconds).
LIVE_EDGE_LAG = "LiveEdgeLag"
#: Defects started, dimension ``Kind`` (Count).
DEFECTS_STARTED = "DefectsStarted"
#: Alerts published (SNS + EventBridge, once each) (Count).
ALERTS_PUBLISHED = "AlertsPublished"
#: ``input_loss`` defects started: a monitored channel stopped delivering media (Count).
INPUT_LOSS = "InputLoss"
#: Streams that ended in failure (Count).
STREAMS_FAILED = "StreamsFailed"

ALL = (
    SEGMENTS_PROCESSED,
    MONITORED_SECONDS,
    PROCESSING_PER_STREAM_SECOND,
    LIVE_EDGE_LAG,
    DEFECTS_STARTED,
    ALERTS_PUBLISHED,
    INPUT_LOSS,
    STREAMS_FAILED,
)
