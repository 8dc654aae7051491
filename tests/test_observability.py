"""Powertools logs and EMF metrics: their shape, and what the emulated architectures emit.

The expected figures come from the clip (its duration and its defects, by ``vqa analyze``) and
from the synthesized templates, never from the code that emits them.
"""

from __future__ import annotations

import json
import logging
import math
import re
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Corpus
from vqa import metrics as names
from vqa.analyze import analyze
from vqa.events import DefectEvent
from vqa.meter import Meter
from vqa.observability import (
    FileSegments,
    LiveSegments,
    Observer,
    _tracing_disabled,
    emf_documents,
    metric_values,
)

CLIP = "black.mp4"  # 8 s, one black defect: the smallest clip that starts a defect


def _check_emf(doc: dict[str, Any], architecture: str) -> list[str]:
    """Validate one EMF document (CloudWatch's specification); the metric names it declares."""
    meta = doc["_aws"]
    assert isinstance(meta["Timestamp"], int) and meta["Timestamp"] > 1_600_000_000_000
    (directive,) = meta["CloudWatchMetrics"]
    assert directive["Namespace"] == names.NAMESPACE
    (dimensions,) = directive["Dimensions"]
    assert names.ARCHITECTURE in dimensions and "service" in dimensions
    assert doc[names.ARCHITECTURE] == architecture and doc["service"] == names.SERVICE
    declared = [m["Name"] for m in directive["Metrics"]]
    assert set(declared) <= set(names.ALL), declared
    if names.KIND in dimensions:
        assert declared == [names.DEFECTS_STARTED] and isinstance(doc[names.KIND], str)
    else:
        assert names.DEFECTS_STARTED not in declared  # only ever per kind
    for name in declared:
        values = doc[name] if isinstance(doc[name], list) else [doc[name]]
        assert values and all(isinstance(v, float | int) and math.isfinite(v) for v in values)
    return declared


def _json_lines(lines: list[str]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        text = line.strip()
        if text.startswith("{"):
            out.append(json.loads(text))
    return out


def _log_lines(lines: list[str]) -> list[dict[str, Any]]:
    return [d for d in _json_lines(lines) if "_aws" not in d]


# ---- the observer -----------------------------------------------------------------------------


def test_log_lines_are_json_with_stream_segment_and_no_secrets() -> None:
    lines: list[str] = []
    meter = Meter()
    obs = Observer("t-logs", architecture="monolith", sink=lines.append, meter=meter)
    obs.bind(stream_id="s-1", segment=4)
    obs.logger.info(
        "checkpoint",
        extra=obs.safe(source="https://user:pw@origin.example/live.m3u8?token=SECRET", n=3),
    )
    obs.bind(stream_id="s-2")  # the next stream: no segment yet
    obs.logger.warning("job received")
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "checkpoint" and first["level"] == "INFO"
    assert (first["stream_id"], first["segment"], first["n"]) == ("s-1", 4, 3)
    assert first["service"] == names.SERVICE and first["architecture"] == "monolith"
    assert "SECRET" not in lines[0] and "pw@" not in lines[0]
    assert first["source"].startswith("https://origin.example/live.m3u8")
    assert second["stream_id"] == "s-2" and "segment" not in second
    # Every byte written is metered as CloudWatch Logs ingestion (one newline per line).
    assert meter.snapshot()["counters"]["log_bytes"] == sum(len(x.encode()) + 1 for x in lines)


def test_emf_documents_follow_the_specification_and_the_metric_names() -> None:
    lines: list[str] = []
    obs = Observer("t-emf", architecture="distributed", sink=lines.append)
    obs.segments(2, stream_seconds=4.0, processing_seconds=1.0)
    obs.live_edge_lag(1.25)
    obs.alerts_published(3)
    obs.stream_failed()
    started = [
        DefectEvent("started", "black", 1.0, None, {}),
        DefectEvent("started", "black", 5.0, None, {}),
        DefectEvent("ended", "black", 1.0, 2.0, {}),
        DefectEvent("started", "input_loss", 6.0, None, {}),
    ]
    obs.defects_started(started)
    obs.flush()
    obs.flush()  # nothing new: no empty document
    docs = emf_documents(lines)
    assert len(docs) == len(lines) == 3  # black, input_loss, then the batch
    for doc in docs:
        _check_emf(doc, "distributed")
    assert metric_values(docs, names.DEFECTS_STARTED, Kind="black") == [2.0]
    assert metric_values(docs, names.DEFECTS_STARTED, Kind="input_loss") == [1.0]
    assert metric_values(docs, names.INPUT_LOSS) == [1.0]
    assert metric_values(docs, names.SEGMENTS_PROCESSED) == [2.0]
    assert metric_values(docs, names.MONITORED_SECONDS) == [4.0]
    assert metric_values(docs, names.PROCESSING_PER_STREAM_SECOND) == [0.25]
    assert metric_values(docs, names.LIVE_EDGE_LAG) == [1.25]
    assert metric_values(docs, names.ALERTS_PUBLISHED) == [3.0]
    assert metric_values(docs, names.STREAMS_FAILED) == [1.0]


def test_more_values_than_one_document_holds_go_out_through_the_sink(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines: list[str] = []
    obs = Observer("t-many", architecture="monolith", sink=lines.append)
    for _ in range(250):
        obs.live_edge_lag(0.5)
    obs.flush()
    docs = emf_documents(lines)
    assert all(len(d[names.LIVE_EDGE_LAG]) <= 100 for d in docs)  # EMF's limit per metric
    assert len(metric_values(docs, names.LIVE_EDGE_LAG)) == 250
    assert capsys.readouterr().out == ""  # never printed past the sink


def test_tracing_is_on_in_lambda_and_with_a_daemon_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("POWERTOOLS_TRACE_DISABLED", "AWS_XRAY_DAEMON_ADDRESS", "LAMBDA_TASK_ROOT"):
        monkeypatch.delenv(name, raising=False)
    assert _tracing_disabled(True) and _tracing_disabled(False)  # tests, the emulation
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    assert not _tracing_disabled(True)
    monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", "127.0.0.1:2000")
    assert not _tracing_disabled(False)  # a worker next to an X-Ray daemon
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    assert _tracing_disabled(True) and _tracing_disabled(False)


# ---- the emulated architectures ---------------------------------------------------------------


@pytest.fixture(scope="module")
def clip(corpus: Corpus) -> tuple[Path, dict[str, Any]]:
    from vqa.local.monolith import load_config

    path = corpus.path(CLIP)
    return path, analyze(str(path), detectors=list(load_config().detectors)).to_json()


def _expected_segments(duration: float) -> int:
    from vqa.local.monolith import load_config

    return math.ceil(duration / load_config().segment_seconds - 1e-9)


@pytest.fixture
def distributed_lines() -> Iterator[list[str]]:
    """Every line the in-process distributed handlers wrote (the emulation's log sink)."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("vqa.local.distributed")
    handler, level = Keep(logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_distributed_run_emits_its_segments_defects_and_alerts(
    clip: tuple[Path, dict[str, Any]],
    distributed_lines: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from vqa.local.distributed import run_local

    path, expected = clip
    out = run_local(str(path))
    assert capsys.readouterr().out == ""  # `vqa run --json` keeps stdout for its JSON
    docs = emf_documents(distributed_lines)
    assert docs
    for doc in docs:
        _check_emf(doc, "distributed")
    duration = expected["duration"]
    assert sum(metric_values(docs, names.SEGMENTS_PROCESSED)) == _expected_segments(duration)
    assert sum(metric_values(docs, names.MONITORED_SECONDS)) == pytest.approx(duration, abs=0.05)
    assert all(v > 0 for v in metric_values(docs, names.PROCESSING_PER_STREAM_SECOND))
    kinds = [d["kind"] for d in expected["defects"]]
    for kind in set(kinds):
        assert sum(metric_values(docs, names.DEFECTS_STARTED, Kind=kind)) == kinds.count(kind)
    # One alert when each defect started and one when it ended.
    assert sum(metric_values(docs, names.ALERTS_PUBLISHED)) == 2 * len(kinds)
    assert not metric_values(docs, names.LIVE_EDGE_LAG)  # a file has no live edge
    # Structured logs: every handler line names the stream; segment steps name the segment.
    logs = _log_lines(distributed_lines)
    steps = {d["message"] for d in logs}
    assert {"start", "convert", "detect", "aggregate"} <= steps
    assert len({d["stream_id"] for d in logs}) == 1
    assert all(isinstance(d["segment"], int) for d in logs if d["message"] != "start")
    assert out["defects"] == expected["defects"]


def _filter_pattern(template: dict[str, Any]) -> tuple[str, str]:
    """The field and value the stack's WorkerCheckpoints metric filter matches."""
    (pattern,) = {
        r["Properties"]["FilterPattern"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Logs::MetricFilter"
    }
    match = re.fullmatch(r'\{ \$\.(\w+) = "([^"]+)" \}', pattern)
    assert match, pattern
    return match.group(1), match.group(2)


def test_monolith_workers_emit_their_segments_and_match_the_progress_filter(
    clip: tuple[Path, dict[str, Any]],
) -> None:
    from vqa.local.monolith import create_emulation, finish_worker, start_worker
    from vqa.results import put_status

    path, expected = clip
    emu = create_emulation()
    key, stream = "clip.mp4", "obs-1"
    emu.client("s3").put_object(Bucket=emu.source_bucket, Key=key, Body=path.read_bytes())
    put_status(
        dynamodb=emu.client("dynamodb"),
        table=emu.table,
        stream=stream,
        state="running",
        shards=[s.name for s in emu.shards],
    )
    job = {"stream": stream, "source": f"s3://{emu.source_bucket}/{key}"}
    for shard in emu.shards:
        body = json.dumps({**job, "shard": shard.name})
        emu.client("sqs").send_message(QueueUrl=shard.queue_url, MessageBody=body)
    meter = Meter()
    with tempfile.TemporaryDirectory() as tmp:
        # Checkpoints every 3 segments (the stack's interval is longer than the clip).
        workers = [
            start_worker(emu, shard, Path(tmp), drain=True, extra_args=["--checkpoint-every", "3"])
            for shard in emu.shards
        ]
        for wp in workers:
            finish_worker(wp, meter)
    field, progress = _filter_pattern(emu.deployment.template)
    duration, kinds = expected["duration"], [d["kind"] for d in expected["defects"]]
    all_docs = []
    for wp in workers:
        docs = emf_documents(wp.lines)
        all_docs += docs
        for doc in docs:
            _check_emf(doc, "monolith")
        # Each shard decodes the whole clip: every segment, once.
        assert sum(metric_values(docs, names.SEGMENTS_PROCESSED)) == _expected_segments(duration)
        assert sum(metric_values(docs, names.MONITORED_SECONDS)) == pytest.approx(
            duration, abs=0.05
        )
        logs = _log_lines(wp.lines)
        job_lines = [d for d in logs if d.get("stream_id") == stream]
        assert {"job received", "job done"} <= {d["message"] for d in job_lines}
        # The stack's progress metric filter finds the worker's checkpoint lines, per shard.
        checkpoints = [d for d in logs if d.get(field) == progress]
        assert checkpoints and all(d["shard"] == wp.shard.name for d in checkpoints)
        assert all(isinstance(d["segment"], int) for d in checkpoints)
    for kind in set(kinds):
        assert sum(metric_values(all_docs, names.DEFECTS_STARTED, Kind=kind)) == kinds.count(kind)
    assert sum(metric_values(all_docs, names.ALERTS_PUBLISHED)) == 2 * len(kinds)
    assert not metric_values(all_docs, names.STREAMS_FAILED)
    # The workers meter every line they write (logs and EMF) as CloudWatch Logs bytes.
    written = sum(len(line.encode()) for wp in workers for line in wp.lines if line.startswith("{"))
    assert meter.snapshot()["counters"]["log_bytes"] == written


def test_live_monolith_reports_a_flat_lag_per_live_segment(corpus: Corpus) -> None:
    from vqa.corpus import CORPUS_THRESHOLDS
    from vqa.live_origin import LiveOrigin, package
    from vqa.local.monolith import LiveMonolith

    segments = package(corpus.path("multi.mp4"), segment_seconds=1.0)
    with (
        LiveMonolith("", thresholds=CORPUS_THRESHOLDS, submit=False) as live,
        LiveOrigin(segments, window=4) as origin,
    ):
        live.submit(origin.url)
        deadline = origin.program + 30
        while not live.finished() and deadline > 0:
            live.tap.fresh(wait=1)
            deadline -= 1
        assert live.finished()
        workers = list(live.workers)  # closing the stack joins their output, then forgets them
    for wp in workers:
        docs = emf_documents(wp.lines)
        for doc in docs:
            _check_emf(doc, "monolith")
        lags = metric_values(docs, names.LIVE_EDGE_LAG)
        # One lag per live segment analysed.
        assert len(lags) == sum(metric_values(docs, names.SEGMENTS_PROCESSED)) >= 5
        # Analysis keeps up with a 1 s segment stream: the lag stays within the playlist
        # polling (half a target duration) and a segment's processing, and the second half
        # is no later than the first beyond that jitter (a monitor falling behind would add
        # its deficit at every segment).
        half = len(lags) // 2
        assert max(lags) < 3.0, lags
        assert statistics.median(lags[half:]) < statistics.median(lags[:half]) + 1.0, lags


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_live_lag_is_flat_when_keeping_up_and_grows_when_falling_behind() -> None:
    def lags(processing: float) -> list[float]:
        lines: list[str] = []
        wall = _Clock()
        live = LiveSegments(
            Observer("t-lag", architecture="monolith", sink=lines.append),
            wall=wall,
            cpu=_Clock(),
        )
        live.joined()
        for i in range(6):  # 1 s media segments, published each second from t = 1000
            wall.t = max(wall.t, 1000.0 + i) + processing
            live.segment(float(i), i + 1.0, i + 1.0)
        live.observer.flush()
        return metric_values(emf_documents(lines), names.LIVE_EDGE_LAG)

    assert lags(0.3) == [0.0] * 6  # punctual: analysed a constant 0.3 s after publication
    behind = lags(1.5)  # 1.5 s of work per second of media: 0.5 s later at every segment
    assert behind == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])


def test_file_segments_end_where_the_media_does() -> None:
    lines: list[str] = []
    clock = _Clock()
    segments = FileSegments(
        Observer("t-file", architecture="monolith", sink=lines.append), 2.0, clock=clock
    )
    for index in range(4):  # the media ends in segment 2; the decoder's last one is empty
        clock.t += 0.5
        segments.segment(index)
    segments.finish(5.0)  # 2 + 2 + 1 s of media
    segments.observer.flush()
    docs = emf_documents(lines)
    assert metric_values(docs, names.SEGMENTS_PROCESSED) == [1.0, 1.0, 1.0]
    assert metric_values(docs, names.MONITORED_SECONDS) == [2.0, 2.0, 1.0]
    assert metric_values(docs, names.PROCESSING_PER_STREAM_SECOND) == [0.25, 0.25, 0.5]


def test_distributed_live_segment_lag_counts_from_its_publication(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lambdas.distributed import aggregate, common

    lines: list[str] = []
    monkeypatch.setattr(common, "LOG_SINK", lines.append)
    monkeypatch.setattr(aggregate.time, "time", lambda: 1003.5)
    part = {"prefix": "p", "objects": ["segment"]}
    live = {
        "index": 7,
        "start": 14.0,
        "end": 16.0,  # one 2 s media segment, read in two 1 s parts
        "last": False,
        "parts": [part, part],
        "published": 1002.0,  # when it was published (convert: the cursor's clock)
        "started_at": 1002.5,  # when the converter began reading it
    }
    aggregate._segment_metrics(live, [DefectEvent("started", "freeze", 14.5, None, {})], sent=1)
    common.metrics.flush_metrics()
    docs = emf_documents(lines)
    for doc in docs:
        _check_emf(doc, "distributed")
    assert metric_values(docs, names.LIVE_EDGE_LAG) == [1.5]
    assert metric_values(docs, names.SEGMENTS_PROCESSED) == [2.0]
    assert metric_values(docs, names.MONITORED_SECONDS) == [2.0]
    assert metric_values(docs, names.PROCESSING_PER_STREAM_SECOND) == [0.5]
    assert metric_values(docs, names.DEFECTS_STARTED, Kind="freeze") == [1.0]
    assert metric_values(docs, names.ALERTS_PUBLISHED) == [1.0]
