"""Open-defect events: started while on air, ended with the finished defect's start and end."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from tests.conftest import Corpus
from vqa.corpus import CORPUS_THRESHOLDS
from vqa.defects import Defect, sort_defects
from vqa.detectors import DetectorSet, create
from vqa.events import DefectEvent
from vqa.media import iter_segments
from vqa.segment import AudioTrack, Segment, VideoTrack

RATE = 48_000


def finished(segments: list[Segment]) -> list[dict[str, Any]]:
    ds = DetectorSet(**CORPUS_THRESHOLDS)
    out: list[Defect] = []
    for seg in segments:
        out += ds.process(seg)
    return [d.to_json() for d in sort_defects(out + ds.flush())]


def events(segments: list[Segment], *, round_trip: bool = False) -> list[DefectEvent]:
    # The corpus's short defects need its thresholds (the monitoring defaults are longer).
    ds = DetectorSet(**CORPUS_THRESHOLDS)
    out: list[DefectEvent] = []
    for seg in segments:
        if round_trip:
            state = json.loads(json.dumps(ds.get_state()))
            ds = DetectorSet(**CORPUS_THRESHOLDS)
            ds.set_state(state)
        out += ds.process_events(seg)
    return out + ds.flush_events()


def pairs(evs: list[DefectEvent]) -> list[dict[str, Any]]:
    """The ended defects, checking each was started once, before, at the same start."""
    open_: dict[str, DefectEvent] = {}
    done: list[dict[str, Any]] = []
    for e in evs:
        if e.phase == "started":
            assert e.end is None
            assert e.id not in open_, f"started twice: {e}"
            open_[e.id] = e
        else:
            s = open_.pop(e.id)  # KeyError: ended without started
            assert s.start == e.start, (s, e)
            assert not e.detail.get("retracted"), e
            done.append(Defect(start=e.start, end=e.end or 0.0, kind=e.kind).to_json())
    assert not open_, f"never ended: {list(open_)}"
    return [{k: d[k] for k in ("kind", "start", "end")} for d in done]


def test_events_pair_up_to_the_finished_defects_on_the_corpus(corpus: Corpus) -> None:
    early = 0
    for clip in corpus.clips():
        segs = list(iter_segments(str(corpus.dir / clip["file"])))
        want = [{k: d[k] for k in ("kind", "start", "end")} for d in finished(segs)]
        evs = events(segs)
        got = pairs(evs)
        assert sorted(got, key=lambda d: (d["start"], d["kind"])) == want, clip["file"]
        # Announced while on air: the started event came in a step before the ended one.
        ended_at = {e.id: i for i, e in enumerate(evs) if e.phase == "ended"}
        early += sum(
            1 for i, e in enumerate(evs) if e.phase == "started" and ended_at[e.id] > i + 1
        )
    assert early > 0


@pytest.mark.parametrize("name", ["multi.mp4", "damage_drop.mp4", "sync_p200.mp4"])
def test_state_round_trip_keeps_the_event_sequence(corpus: Corpus, name: str) -> None:
    segs = list(iter_segments(str(corpus.path(name))))
    straight = [e.to_json() for e in events(segs)]
    assert straight
    assert [e.to_json() for e in events(segs, round_trip=True)] == straight


def video_segments(black: list[bool], fps: int = 25, seconds: float = 1.0) -> list[Segment]:
    """Textured frames, or flat black where ``black[i]``; ``seconds`` per segment."""
    rng = np.random.default_rng(1)
    texture = rng.integers(40, 200, size=(72, 128), dtype=np.uint8)
    flat = np.full((72, 128), 16, dtype=np.uint8)
    per = round(fps * seconds)
    segs = []
    for k, i in enumerate(range(0, len(black), per)):
        idx = range(i, min(i + per, len(black)))
        segs.append(
            Segment(
                index=k,
                start=k * seconds,
                end=(k + 1) * seconds,
                video=VideoTrack(
                    times=np.array([j / fps for j in idx]),
                    planes=[flat if black[j] else np.roll(texture, j, axis=1) for j in idx],
                    key=np.zeros(len(idx), dtype=np.bool_),
                    corrupt=np.zeros(len(idx), dtype=np.bool_),
                    frame_duration=1 / fps,
                    width=128,
                    height=72,
                ),
            )
        )
    return segs


def test_black_starts_in_the_segment_where_it_reaches_its_minimum_duration() -> None:
    # Black from 1.2 s to 4.4 s at 25 fps; min_duration 0.5 s is reached at 1.7 s (segment 1).
    fps = 25
    flags = [30 <= i < 110 for i in range(6 * fps)]
    det = create("black", min_duration=0.5)
    per_segment = [det.process_events(s) for s in video_segments(flags, fps)]
    per_segment.append(det.flush_events(seen=6.0))
    phases = [[(e.phase, e.start, e.end) for e in evs] for evs in per_segment]
    assert phases[0] == []
    assert phases[1] == [("started", 1.2, None)]
    assert phases[2] == phases[3] == []
    assert phases[4] == [("ended", 1.2, 4.4)]
    assert per_segment[1][0].id == per_segment[4][0].id == "black#1.200000"


def test_short_black_is_never_started_and_open_defect_ends_at_flush() -> None:
    fps = 25
    # 0.4 s of black (under 0.5 s), then black from 3.0 s to the end.
    flags = [(25 <= i < 35) or i >= 75 for i in range(4 * fps)]
    det = create("black", min_duration=0.5)
    evs = [e for s in video_segments(flags, fps) for e in det.process_events(s)]
    assert [(e.phase, e.start) for e in evs] == [("started", 3.0)]
    (end,) = det.flush_events(seen=4.0)
    assert (end.phase, end.start, end.end) == ("ended", 3.0, 4.0)


def test_silence_started_across_segments_and_json_shape() -> None:
    pcm = np.full((1, 4 * RATE), 0.2, dtype=np.float32)
    pcm[:, RATE // 2 : 3 * RATE] = 0.0  # silent 0.5 s .. 3.0 s
    det = create("silence", min_duration=0.5)
    evs = []
    for k in range(4):
        seg = Segment(
            index=k,
            start=float(k),
            end=float(k + 1),
            audio=AudioTrack(start=float(k), rate=RATE, samples=pcm[:, k * RATE : (k + 1) * RATE]),
        )
        evs.append(det.process_events(seg))
    # 0.5 s of silence is reached at the end of segment 0 (it is silent from 0.5 s to 1.0 s).
    assert [e.to_json() for e in evs[0]] == [
        {
            "event": "defect.started",
            "kind": "silence",
            "start": 0.5,
            "end": None,
            "id": "silence#0.500000",
        }
    ]
    assert evs[1] == evs[2] == []
    assert [(e.phase, e.start, e.end) for e in evs[3]] == [("ended", 0.5, 3.0)]


def test_a_withdrawn_defect_still_ends_marked_retracted() -> None:
    from vqa.events import EventTracker

    tracker = EventTracker("freeze")
    (started,) = tracker.update([], 2.0, seen=3.5)
    assert (started.phase, started.start) == ("started", 2.0)
    assert tracker.update([], 2.0, seen=4.0) == []  # still open: nothing new
    # The detector gave it up (a grainy held shot after all): it ends where media was seen.
    (ended,) = tracker.update([], None, seen=4.5)
    assert (ended.phase, ended.start, ended.end, ended.id) == ("ended", 2.0, 4.5, started.id)
    assert ended.detail["retracted"] is True
    # A finished defect nobody announced gets both events at once.
    evs = tracker.update([Defect(start=5.0, end=6.0, kind="freeze")], None, seen=6.5)
    assert [(e.phase, e.start, e.end) for e in evs] == [("started", 5.0, None), ("ended", 5.0, 6.0)]
