"""Live monitoring through the emulated distributed stack: the alerts its topic and bus deliver.

The origin (vqa.live_origin) airs corpus clip ``multi.mp4`` (10 s: black, clipping, freeze,
silence) in 1 s segments and starts airing once the stack is provisioned (``on_ready``), so a
defect at programme time T aired at ``origin.aired(T)``. The stack runs with IAM enforced:
``watch`` raises if any handler made a call its role does not allow.

The stack is configured with ``granularity: segment``, the lighter of the two for a test on a
shared 2-core machine; `benchmarks/bench_live.py` measures the default per-frame granularity
(which keeps up at 360p25).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from lambdas.distributed.common import TransientError
from stacks.constructs.workflow import events_per_segment_bound
from tests.conftest import Corpus
from tests.test_live import check_pairs, min_duration
from vqa.corpus import CORPUS_THRESHOLDS, expected_defects, unjudged
from vqa.live_origin import LiveOrigin, OriginSegment, package
from vqa.local.distributed import watch
from vqa.local.monolith import load_config

CLIP = "multi.mp4"
CONFIG = {"granularity": "segment"}
#: Issue 8's target for the distributed emulation: alert latency from airing to alert.
LATENCY_TARGET = 10.0
#: The Wait state's interval with 1 s segments (half a target duration, whole seconds).
POLL = 1.0


@pytest.fixture(scope="module")
def segments(corpus: Corpus) -> list[OriginSegment]:
    return package(corpus.path(CLIP), segment_seconds=1.0)


def _airing(origin: LiveOrigin, segments: list[OriginSegment]) -> Any:
    """``on_ready``: the channel starts airing now, its first segment already published."""

    def ready() -> None:
        origin.started = time.time() - segments[0].duration - 0.05

    return ready


def _outputs(executions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        json.loads(e["lambdaFunctionSucceededEventDetails"]["output"])
        for ex in executions
        for e in ex["history"]
        if e["type"] == "LambdaFunctionSucceeded"
    ]


def _first_program_time(origin: LiveOrigin, executions: list[dict[str, Any]]) -> float:
    """Programme time where stream time 0 is: the segment the Start step put the cursor at."""
    (start,) = [o for o in _outputs(executions) if "cursor" in o and "segment" not in o][:1]
    return origin.program_start(int(start["cursor"]["seq"]))


def test_live_hls_alerts_on_topic_and_bus_once_each(
    corpus: Corpus, segments: list[OriginSegment], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lambdas.distributed import aggregate

    # The aggregate dies once right after publishing a segment's alerts (a timeout after its
    # work): the state machine retries the segment, which must not alert twice.
    died: list[int] = []
    emit = aggregate._segment_metrics  # runs right after the segment's alerts went out

    def dying_emit(segment: dict[str, Any], events: Any, sent: int) -> None:
        emit(segment, events, sent)
        if sent and not died:
            died.append(sent)
            raise TransientError("injected: died after publishing")

    monkeypatch.setattr(aggregate, "_segment_metrics", dying_emit)
    clip = corpus.clip(CLIP)
    truth = expected_defects(clip, load_config().detectors)  # what the stack deploys
    alerts: list[dict[str, Any]] = []
    bus: list[dict[str, Any]] = []
    executions: list[dict[str, Any]] = []
    with LiveOrigin(segments, window=4) as origin:
        for body in watch(
            origin.url,
            thresholds=CORPUS_THRESHOLDS,
            config=CONFIG,
            bus_events=bus,
            executions=executions,
            on_ready=_airing(origin, segments),
        ):
            alerts.append({**body, "_wall": time.time()})

    # The contract's object, from the topic; the same events, in the same order, on the bus.
    for a in alerts:
        assert a["source"] == origin.url and a["at"].endswith("Z")
        assert a["architecture"] == "distributed" and a["stream_id"]
    assert [(b["id"], b["event"]) for b in bus] == [(a["id"], a["event"]) for a in alerts]
    ended = check_pairs(alerts)  # each started once, then ended once: no duplicate
    ended = [e for e in ended if not unjudged(clip, e)]
    assert died, "the injected fault did not happen"
    history = [e for ex in executions for e in ex["history"]]
    assert sum(e["type"] == "LambdaFunctionFailed" for e in history) == 1

    # Every defect at its true times, alerted within the target.
    first = _first_program_time(origin, executions)
    assert sorted(e["kind"] for e in ended) == sorted(d["kind"] for d in truth)
    for d in truth:
        (e,) = [e for e in ended if e["kind"] == d["kind"]]
        assert e["start"] + first == pytest.approx(d["start"], abs=0.05), e
        assert e["end"] + first == pytest.approx(d["end"], abs=0.05), e
        started_latency = e["started_wall"] - origin.aired(d["start"])
        ended_latency = e["_wall"] - origin.aired(d["end"])
        # Started no earlier than its minimum duration allows, ended after it ended.
        assert min_duration(d["kind"]) - 0.1 <= started_latency <= LATENCY_TARGET, (d, e)
        assert 0 < ended_latency <= LATENCY_TARGET, (d, e)

    # Each execution's history stays within the bound its chunk size is derived from.
    names = [e.get("stateEnteredEventDetails", {}).get("name") for e in history]
    detectors = len({n for n in names if n and n.startswith("Detect ")})
    for ex in executions:
        segs = sum(
            e.get("stateEnteredEventDetails", {}).get("name") == "Aggregate" for e in ex["history"]
        )
        assert len(ex["history"]) <= max(segs, 1) * events_per_segment_bound(detectors) + 20
    assert all(ex["status"] == "SUCCEEDED" for ex in executions)


def test_input_loss_recovery_and_stop(corpus: Corpus, segments: list[OriginSegment]) -> None:
    truth = {d["kind"]: d for d in corpus.clip(CLIP)["defects"]}
    alerts: list[dict[str, Any]] = []
    executions: list[dict[str, Any]] = []
    stop = threading.Event()
    timed_out: list[float] = []
    # A window of 8 s: a busy CI machine may let the emulation lag a few seconds behind.
    with LiveOrigin(segments, window=8, end_tag=False) as origin:
        ready = _airing(origin, segments)

        stalled_at: list[int] = []

        def watchdog() -> None:
            # Bounded in time: had silence never been seen, the stream (no end tag) would
            # run on; stop it 30 s after the programme aired and fail below, saying why.
            if not stop.wait(max(0.0, origin.aired(origin.program) + 30.0 - time.time())):
                timed_out.append(time.time())
                stop.set()

        def control() -> None:
            time.sleep(max(0.0, origin.aired(3.2) - time.time()))
            origin.stall()
            stalled_at.append(origin.published())
            time.sleep(max(0.0, origin.aired(7.6) - time.time()))
            origin.resume()

        def on_ready() -> None:
            ready()
            threading.Thread(target=control, daemon=True).start()
            threading.Thread(target=watchdog, daemon=True).start()

        for body in watch(
            origin.url,
            thresholds=CORPUS_THRESHOLDS,
            config=CONFIG,
            stop=stop,
            executions=executions,
            on_ready=on_ready,
        ):
            alerts.append({**body, "_wall": time.time()})
            if body["kind"] == "silence" and body["event"] == "defect.started":
                stop.set()  # SIGINT while silence is on air: it ends at the last media seen

    assert not timed_out, f"no silence alert 30 s after the programme aired: {alerts}"
    first = _first_program_time(origin, executions)
    ended = check_pairs(alerts)  # the stop ended every open defect
    (loss,) = [e for e in ended if e["kind"] == "input_loss"]
    last = segments[stalled_at[0] - 1]
    assert loss["start"] + first == pytest.approx(last.start + last.duration, abs=0.1)
    ((hole_start, resumed),) = origin.holes
    assert hole_start == stalled_at[0]
    # Back where the first new segment starts, on the wall clock: known to within the poll
    # interval (the Wait state's whole second), as HLS carries no publication times.
    assert loss["end"] + first == pytest.approx(origin.program_start(resumed), abs=POLL)
    # Raised once media had been missing 3 target durations, within the latency target.
    assert 3.0 <= loss["started_wall"] - origin.aired(loss["start"] + first) <= LATENCY_TARGET
    assert loss["_wall"] - origin.aired(origin.program_start(resumed)) <= LATENCY_TARGET
    # Monitoring went on after the loss, on a consistent clock, until the stop.
    (silence,) = [e for e in ended if e["kind"] == "silence"]
    assert silence["start"] + first == pytest.approx(truth["silence"]["start"], abs=POLL)
    assert silence["end"] + first < truth["silence"]["end"] + POLL
    assert all(ex["status"] == "SUCCEEDED" for ex in executions)
    # Segments not yet published (the stall) were waited for by the Wait state, then read.
    history = [e for ex in executions for e in ex["history"]]
    names = [e.get("stateEnteredEventDetails", {}).get("name") for e in history]
    assert names.count("Wait for segment") >= 3
    after_wait = names[names.index("Wait for segment") + 1 :]
    assert next(n for n in after_wait if n) == "Convert live"


def test_a_cursor_left_behind_the_window_resumes_at_the_edge_on_the_programme_clock(
    segments: list[OriginSegment],
) -> None:
    """A converter that fell behind (the window slid past its next segment) skips to the live
    edge, and the skipped segments count in stream time, so later defects keep true times."""
    from vqa import hls_cursor

    with LiveOrigin(segments, window=2) as origin:
        origin.started = time.time() - segments[0].duration - 0.05  # segment 0 is out
        cursor = hls_cursor.open_cursor(origin.url, now=time.time())
        assert cursor.seq == 0
        time.sleep(max(0.0, origin.aired(origin.program_start(5)) - time.time()) + 0.1)
        step = hls_cursor.advance(cursor, origin.url, now=time.time(), segment_seconds=1.0)
        assert step.kind == hls_cursor.FLUSH  # what was seen so far ends; nothing to decode
        assert cursor.seq == 0  # the given cursor is left as it was (a retry reads the same)
        edge = step.cursor.seq
        assert edge == origin.published() - 1
        step = hls_cursor.advance(step.cursor, origin.url, now=time.time(), segment_seconds=1.0)
    assert step.kind == hls_cursor.SEGMENT and step.cursor.seq == edge + 1
    want = origin.program_start(edge) - origin.program_start(0)
    assert step.segments[0].start == pytest.approx(want, abs=0.1)


def test_run_set_reaches_the_detector_functions(
    corpus: Corpus, capsys: pytest.CaptureFixture[str]
) -> None:
    from vqa.analyze import analyze
    from vqa.cli import main

    path = str(corpus.path("black.mp4"))  # black for 1.5 s: under the 2 s default
    assert [d.kind for d in analyze(path).defects] == []
    assert (
        main(["run", path, "--arch", "distributed", "--json", "--set=black.min_duration=0.5"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    want = analyze(path, thresholds={"black": {"min_duration": 0.5}}).defects
    assert [d["kind"] for d in out["defects"]] == ["black"]
    assert out["defects"] == [d.to_json() for d in want]
