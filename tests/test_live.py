"""Live monitoring in process: `vqa watch` against a live origin aired in real time on 127.0.0.1.

The origin (vqa.live_origin) airs corpus clip ``multi.mp4`` (10 s: black, clipping, freeze,
silence) in 1 s segments; a defect at programme time T of the clip's truth aired at
``origin.aired(T)``. Stream time reported by `watch` maps to programme time through the first
media sequence read (``stream.started``).
"""

from __future__ import annotations

import functools
import http.server
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import REPO, Corpus
from vqa.corpus import CORPUS_THRESHOLDS, expected_defects
from vqa.detectors import create, parse_names
from vqa.live import PTS_WRAP, Timeline, parse_playlist
from vqa.live_origin import LiveOrigin, OriginSegment, package
from vqa.watch import watch

SEGMENT = 1.0
CLIP = "multi.mp4"


@pytest.fixture(scope="module")
def segments(corpus: Corpus) -> list[OriginSegment]:
    return package(corpus.path(CLIP), segment_seconds=SEGMENT)


class Recorder:
    """Collects emitted events with the wall time they were emitted at."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, obj: dict[str, Any]) -> None:
        with self.lock:
            self.events.append({**obj, "_wall": time.time()})

    def of(self, event: str, kind: str | None = None) -> list[dict[str, Any]]:
        return [
            e for e in self.events if e["event"] == event and (kind is None or e["kind"] == kind)
        ]


def run_watch(url: str, rec: Recorder, stop: threading.Event, **kw: Any) -> threading.Thread:
    t = threading.Thread(
        target=watch,
        args=(url,),
        kwargs={"emit": rec, "thresholds": CORPUS_THRESHOLDS, "stop": stop, **kw},
        daemon=True,
    )
    t.start()
    return t


def check_pairs(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every started defect ends once, after it started, at the same start; no duplicates."""
    open_: dict[str, dict[str, Any]] = {}
    ended: list[dict[str, Any]] = []
    for e in events:
        if e["event"] == "defect.started":
            assert e["end"] is None and e["id"] not in open_, e
            open_[e["id"]] = e
        elif e["event"] == "defect.ended":
            s = open_.pop(e["id"])
            assert s["start"] == e["start"] and e["end"] > e["start"], (s, e)
            ended.append({**e, "started_wall": s["_wall"]})
    assert not open_
    ids = [e["id"] for e in ended]
    assert len(ids) == len(set(ids))
    return ended


def min_duration(kind: str) -> float:
    over = CORPUS_THRESHOLDS.get(kind, {})
    # Loudness has holds per reason, and none for true peaks (the truth's loudness defects).
    return float(over.get("min_duration", getattr(create(kind).config, "min_duration", 0.0)))


def test_live_hls_and_ts_in_process(corpus: Corpus, segments: list[OriginSegment]) -> None:
    truth = expected_defects(corpus.clip(CLIP), parse_names(None))  # watch's default detectors
    hls, ts, stop = Recorder(), Recorder(), threading.Event()
    with LiveOrigin(segments, window=4) as origin:
        threads = [run_watch(origin.url, hls, stop), run_watch(origin.ts_url, ts, stop)]
        threads[0].join(timeout=origin.program + 10)
        assert not threads[0].is_alive(), "watch did not end with the playlist's end tag"
        # MPEG-TS over HTTP has no end: stop it once it has had the same time.
        time.sleep(1.5)
        stop.set()
        threads[1].join(timeout=10)
    assert not threads[1].is_alive()

    # HLS: the contract's fields, in order, each defect at its true times with bounded latency.
    assert hls.events[0]["event"] == "stream.started" and hls.events[0]["type"] == "hls"
    assert hls.events[-1]["event"] == "stream.ended" and hls.events[-1]["reason"] == "ended"
    for e in hls.events:
        assert e["source"] == origin.url and e["at"].endswith("Z")
    first = origin.program_start(hls.events[0]["media_sequence"])
    ended = check_pairs(hls.events)
    assert sorted(e["kind"] for e in ended) == sorted(d["kind"] for d in truth)
    for d in truth:
        (e,) = [e for e in ended if e["kind"] == d["kind"]]
        assert e["start"] + first == pytest.approx(d["start"], abs=0.05), e
        assert e["end"] + first == pytest.approx(d["end"], abs=0.05), e
        started_latency = e["started_wall"] - origin.aired(d["start"])
        ended_latency = e["_wall"] - origin.aired(d["end"])
        assert started_latency <= SEGMENT + min_duration(d["kind"]) + 2.0, (d, started_latency)
        assert 0 < ended_latency <= SEGMENT + 2.0, (d, ended_latency)

    # MPEG-TS over HTTP: the same defects (its stream time starts wherever it joined).
    assert ts.events[0]["event"] == "stream.started" and ts.events[0]["type"] == "ts"
    assert ts.events[-1]["reason"] == "interrupted"
    ts_ended = [e for e in check_pairs(ts.events) if e["kind"] != "input_loss"]
    assert sorted(e["kind"] for e in ts_ended) == sorted(d["kind"] for d in truth)
    for d in truth:
        (e,) = [e for e in ts_ended if e["kind"] == d["kind"]]
        assert e["end"] - e["start"] == pytest.approx(d["end"] - d["start"], abs=0.05)


def test_input_loss_and_recovery_at_the_new_live_edge(
    corpus: Corpus, segments: list[OriginSegment]
) -> None:
    truth = {d["kind"]: d for d in corpus.clip(CLIP)["defects"]}
    rec, stop = Recorder(), threading.Event()
    with LiveOrigin(segments, window=4) as origin:
        origin.drop(len(segments) - 1)  # the last segment answers 404
        t = run_watch(origin.url, rec, stop, loss_after=2.0)
        time.sleep(max(0.0, origin.aired(3.2) - time.time()))
        origin.stall()
        stalled_at = origin.published()
        time.sleep(max(0.0, origin.aired(6.6) - time.time()))
        origin.resume()
        t.join(timeout=origin.program + 10)
    assert not t.is_alive()
    first = origin.program_start(rec.events[0]["media_sequence"])
    ended = check_pairs(rec.events)
    (loss,) = [e for e in ended if e["kind"] == "input_loss"]
    # Lost where the last published segment ended (its video runs up to two frames past the
    # audio that sets its start and duration); back where the first new one starts, on the wall
    # clock (the origin resumes at its live edge: what aired meanwhile is never published).
    last = segments[stalled_at - 1]
    assert loss["start"] + first == pytest.approx(last.start + last.duration, abs=0.1)
    ((hole_start, resumed),) = origin.holes
    assert hole_start == stalled_at
    assert loss["end"] + first == pytest.approx(origin.program_start(resumed), abs=0.6)
    # Started once it had lasted the threshold (2 s), found within a playlist reload or so.
    assert 1.8 <= loss["started_wall"] - origin.aired(loss["start"] + first) <= 4.0
    # Monitoring went on after the loss, on a consistent clock: silence at its programme time.
    (silence,) = [e for e in ended if e["kind"] == "silence"]
    assert silence["start"] + first == pytest.approx(truth["silence"]["start"], abs=0.6)
    assert silence["end"] - silence["start"] == pytest.approx(
        truth["silence"]["end"] - truth["silence"]["start"], abs=0.05
    )
    # The 404 segment is a gap in the stream (unmonitored), not a defect, and the stream ends.
    (gap,) = rec.of("stream.gap")
    assert gap["end"] - gap["start"] == pytest.approx(segments[-1].duration, abs=1e-6)
    assert rec.events[-1]["event"] == "stream.ended"


def _lines(proc: subprocess.Popen[str]) -> Iterator[dict[str, Any]]:
    assert proc.stdout is not None
    for line in proc.stdout:
        yield json.loads(line)


def test_sigint_ends_open_defects_and_exits_0(segments: list[OriginSegment]) -> None:
    with LiveOrigin(segments, window=4, end_tag=False) as origin:
        cmd = [sys.executable, "-m", "vqa", "watch", origin.url, "--json"]
        for kind, values in CORPUS_THRESHOLDS.items():
            cmd += [f"--set={kind}.{k}={v}" for k, v in values.items()]
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            events = []
            for obj in _lines(proc):
                events.append(obj)
                if obj["event"] == "defect.started" and obj["kind"] == "black":
                    # The black defect is on air (1.0 s to 2.5 s): interrupt now.
                    os.kill(proc.pid, signal.SIGINT)
                    break
            events += list(_lines(proc))
            assert proc.wait(timeout=10) == 0, proc.stderr.read() if proc.stderr else ""
        finally:
            if proc.poll() is None:
                proc.kill()
    (black,) = [e for e in events if e["event"] == "defect.ended" and e["kind"] == "black"]
    last = events[-1]
    assert last["event"] == "stream.ended" and last["reason"] == "interrupted"
    # Ended at the last media seen: within what the watcher had read, not the black's true end.
    assert black["start"] < black["end"] <= last["end"]
    assert all(e["event"] != "defect.started" for e in events[events.index(black) :])


def test_playlist_parsing_and_timestamp_wrap() -> None:
    text = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:41\n"
        "#EXTINF:2.0,\na.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:1.5,\nsub/b.ts\n"
    )
    pl = parse_playlist(text, "http://h/live/index.m3u8", "src")
    assert pl.target == 2.0 and not pl.ended
    assert [(e.seq, e.uri, e.duration, e.discontinuity) for e in pl.entries] == [
        (41, "http://h/live/a.ts", 2.0, False),
        (42, "http://h/live/sub/b.ts", 1.5, True),
    ]
    # 33-bit MPEG-TS timestamps wrap after 26.5 h: stream time keeps counting.
    tl = Timeline()
    assert tl.place({"video": PTS_WRAP - 1.0}, 2.0) == 0.0
    tl.end = 2.0
    assert tl.place({"video": 1.0}, 2.0) == pytest.approx(2.0)
    # An unannounced jump of the source's clock continues where the media ended.
    tl.end = 4.0
    assert tl.place({"video": 500.0}, 2.0) == 4.0


def test_watch_a_file_reports_what_analyze_reports(
    corpus: Corpus, capsys: pytest.CaptureFixture[str]
) -> None:
    from vqa.analyze import analyze
    from vqa.cli import main

    path = str(corpus.path("multi_25.ts"))
    sets = [f"--set=black.min_duration={CORPUS_THRESHOLDS['black']['min_duration']}"]
    assert main(["watch", path, "--json", *sets]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["event"] == "stream.started" and lines[-1]["event"] == "stream.ended"
    for e in lines:
        assert set(e) >= {"event", "source", "at"}
    ended = [
        {"kind": e["kind"], "start": e["start"], "end": e["end"]}
        for e in lines
        if e["event"] == "defect.ended"
    ]
    want = analyze(path, thresholds={"black": CORPUS_THRESHOLDS["black"]}).defects
    assert sorted(ended, key=lambda d: (d["start"], d["kind"])) == [
        {"kind": d.kind, "start": d.start, "end": d.end} for d in want
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["watch", "http://127.0.0.1:9/live.m3u8"],
        ["watch", "http://127.0.0.1:9/live.ts"],
        ["watch", "SRC", "--arch", "monolith", "--loss-after", "5"],  # the stack's threshold
        ["watch", "SRC", "--set", "black.no_such_field=1"],
    ],
)
def test_watch_bad_input_is_one_line_and_exit_2(
    corpus: Corpus, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    from vqa.cli import main

    argv = [str(corpus.path("black.mp4")) if a == "SRC" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("vqa: error:"), err


@pytest.mark.parametrize("announced", [True, False])
def test_a_clock_restart_keeps_stream_time_running(
    segments: list[OriginSegment], announced: bool
) -> None:
    """The clip's first three segments twice: its timestamps restart, stream time must not."""
    from vqa.live import decode_chunk

    tl = Timeline()
    times: list[float] = []
    ends = []
    for i, seg in enumerate(segments[:3] + segments[:3]):
        if i == 3:
            ends.append(tl.end)
            if announced:  # EXT-X-DISCONTINUITY; else the jump back is noticed by itself
                tl.brk()
        for s in decode_chunk(
            seg.data, source="x", timeline=tl, segment_seconds=SEGMENT, expect=seg.duration
        ):
            assert s.video is not None
            times += s.video.times.tolist()
    steps = [b - a for a, b in itertools.pairwise(times)]
    # The video goes on at its own cadence across the join: no hole (a dropped frame to the
    # corruption detector), no overlap (time running backwards).
    join = len(times) // 2
    assert steps[join - 1] == pytest.approx(sorted(steps)[len(steps) // 2], abs=1e-3)
    assert min(steps) > 0
    assert times[join] == pytest.approx(ends[0], abs=0.05)
    assert tl.end == pytest.approx(2 * ends[0], abs=0.1)


def test_falling_out_of_the_window_skips_to_the_edge_on_the_programme_clock(
    segments: list[OriginSegment],
) -> None:
    """A reader that stops reading while the window slides past its next segment jumps to the
    live edge, and the skipped segments count in stream time: what follows keeps true times."""
    from vqa.live import Gap, follow
    from vqa.segment import Segment

    stop = threading.Event()
    with LiveOrigin(segments, window=2, end_tag=False) as origin:
        # A long loss threshold: the reader itself pauses here, which is not input loss.
        items = follow(
            origin.url, segment_seconds=SEGMENT, tracks=("video",), stop=stop, loss_after=60.0
        )
        first = next(i for i in items if isinstance(i, Segment))
        first_seq = origin.published() - 1  # started at the live edge
        # Stall the reader until the window (2 entries) has slid well past its next segment.
        time.sleep(max(0.0, origin.aired(origin.program_start(first_seq + 5)) - time.time()))
        gap = next(i for i in items if not isinstance(i, Segment) or i.index > first.index + 1)
        after = next(i for i in items if isinstance(i, Segment))
        edge = origin.published() - 1
        stop.set()
    assert isinstance(gap, Gap)
    want = origin.program_start(edge) - origin.program_start(first_seq)
    assert after.start - first.start == pytest.approx(want, abs=SEGMENT + 0.1)


def test_media_back_but_undecodable_ends_the_loss_and_keeps_later_times_right(
    segments: list[OriginSegment], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one HLS reader (vqa.hls_cursor, behind `vqa watch` and the distributed converter),
    driven step by step on a clock of our own: a loss that ends with a segment that does not
    decode ends the loss where that segment aired, and skips its duration, so the next
    segment sits at its programme time (the readers once disagreed here)."""
    from vqa import hls_cursor
    from vqa.live import Entry, Playlist

    data = {f"http://origin/{i}.ts": seg.data for i, seg in enumerate(segments[:3])}
    data["http://origin/1.ts"] = b"\x47 not MPEG-TS at all" * 50
    monkeypatch.setattr(hls_cursor, "_get", lambda uri, **_: data[uri])

    def listing(*seqs: int) -> Playlist:
        return Playlist(SEGMENT, [Entry(q, f"http://origin/{q}.ts", SEGMENT) for q in seqs])

    def read(cur: hls_cursor.Cursor, pl: Playlist, now: float) -> hls_cursor.Step:
        return hls_cursor.read(cur, pl, "origin", now=now, segment_seconds=SEGMENT)

    cur = hls_cursor.Cursor("http://origin/x.m3u8", SEGMENT, 0, 0.0, 0.0, 3.0, listed=0.0)
    first = read(cur, listing(0), now=0.2)
    assert first.kind == hls_cursor.SEGMENT and first.seen == pytest.approx(SEGMENT, abs=0.05)
    lost = read(first.cursor, listing(0), now=5.0)  # nothing for 5 s > 3 s: input loss
    assert lost.kind == hls_cursor.FLUSH
    assert [(e.phase, e.kind, e.start) for e in lost.events] == [
        ("started", "input_loss", first.seen)
    ]
    back = read(lost.cursor, listing(1, 2), now=9.0)
    # Segment 1 was published between the poll at 5 s and now (9 s): at 7 s, so it began to
    # air the second before, 6 s after the first segment's publication (0 s), which is where
    # the first segment's media ended on the stream clock.
    aired = (5.0 + 9.0) / 2 - SEGMENT
    assert back.kind == hls_cursor.FLUSH and not back.segments
    (ended,) = back.events
    assert ended.phase == "ended" and ended.end == pytest.approx(first.seen + aired)
    assert back.gap == pytest.approx((ended.end, ended.end + SEGMENT))
    after = read(back.cursor, listing(1, 2), now=9.0)
    assert after.kind == hls_cursor.SEGMENT and after.segments
    # Its video starts where its programme time puts it: two segments of media after the
    # first's start, plus the 6 s nobody published anything.
    v0, v2 = first.segments[0].video, after.segments[0].video
    assert v0 is not None and v2 is not None
    assert v2.times[0] - v0.times[0] == pytest.approx(aired + 2 * SEGMENT, abs=0.01)


@pytest.mark.parametrize("announced", [True, False], ids=["discontinuity", "unannounced"])
def test_a_signalled_discontinuity_restarts_the_continuity_counters(
    segments: list[OriginSegment], announced: bool
) -> None:
    """HLS segments joined where the packager restarted (a loop, an ad splice): with
    EXT-X-DISCONTINUITY the continuity counters start afresh, as the tag says; without it the
    same join is a TR 101 290 1.4 Continuity_count_error."""
    from vqa.detectors import create
    from vqa.live import decode_chunk

    tl, det = Timeline(), create("transport")
    found = []
    for i, seg in enumerate(segments[:3] + segments[:3]):
        follows = not (announced and i == 3)
        if not follows:
            tl.brk()
        for s in decode_chunk(
            seg.data,
            source="x",
            timeline=tl,
            segment_seconds=SEGMENT,
            expect=seg.duration,
            follows=follows,
        ):
            found += det.process(s)
    found += det.flush()
    indicators = {d.detail["indicator"] for d in found}
    if announced:
        assert found == []
    else:
        assert "1.4 Continuity_count_error" in indicators, found


@pytest.fixture
def vod_playlist(segments: list[OriginSegment], tmp_path: Any) -> Iterator[str]:
    """The origin's segments as an ended (VOD) HLS playlist on 127.0.0.1: read from its start,
    as fast as it decodes."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1", "#EXT-X-MEDIA-SEQUENCE:0"]
    for i, seg in enumerate(segments):
        (tmp_path / f"{i}.ts").write_bytes(seg.data)
        lines += [f"#EXTINF:{seg.duration:.6f},", f"{i}.ts"]
    (tmp_path / "index.m3u8").write_text("\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))

    class Quiet(handler.func):  # type: ignore[misc,name-defined]
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.m3u8"
    finally:
        server.shutdown()
        server.server_close()


def _defect_events(rec: Recorder) -> list[tuple[Any, ...]]:
    return [
        (e["event"], e["kind"], e["id"], e["start"], e["end"])
        for e in rec.events
        if e["event"].startswith("defect.")
    ]


def test_a_hand_over_at_every_media_segment_changes_nothing(
    corpus: Corpus, segments: list[OriginSegment], vod_playlist: str
) -> None:
    """A watch handed over after every media segment, each continuation going on from the last
    one's carry (round-tripped through JSON, as a checkpoint stores it), reports exactly what one
    uninterrupted watch reports: the same events with the same ids, starts and ends, although
    hand-overs fall inside every defect, some before its minimum duration had passed (the case a
    continuation that carried only announced defects got wrong)."""
    whole = Recorder()
    assert watch(vod_playlist, emit=whole, thresholds=CORPUS_THRESHOLDS) == "ended"

    pieces, carry, runs = Recorder(), None, 0
    boundaries: list[float] = []
    while True:
        hand_over, stop, info = threading.Event(), threading.Event(), {}

        def at_boundary(seg: Any, info: dict[str, Any] = info, stop: Any = stop) -> None:
            if info.get("position") is not None:
                boundaries.append(float(seg.end))
                stop.set()

        hand_over.set()
        reason = watch(
            vod_playlist,
            emit=pieces,
            thresholds=CORPUS_THRESHOLDS,
            stop=stop,
            hand_over=hand_over,
            resume=carry,
            info=info,
            on_segment=at_boundary,
            clock=time.time,
        )
        runs += 1
        if reason == "ended":
            break
        assert reason == "handed_over", reason
        carry = json.loads(json.dumps(info["carry"]))
    assert runs >= len(segments) - 1  # one media segment per run (the last run sees the end)
    assert _defect_events(pieces) == _defect_events(whole)
    # The hand-overs really fell inside defects before they were announced.
    ended = [e for e in whole.events if e["event"] == "defect.ended"]
    early = [
        e
        for e in ended
        if any(e["start"] < b < e["start"] + min_duration(e["kind"]) for b in boundaries)
    ]
    assert len(early) >= 2, (ended, boundaries)
    truth = expected_defects(corpus.clip(CLIP), parse_names(None))
    assert sorted(e["kind"] for e in ended) == sorted(d["kind"] for d in truth)


def test_a_continuation_too_late_for_the_window_skips_to_the_edge(
    segments: list[OriginSegment],
) -> None:
    """A follower resumed from a position the window has slid past (a continuation that came
    late) does not fail or seek: it says what it skipped (a Gap, from where the first follower's
    media ended) and goes on at the live edge on the same programme clock."""
    from vqa.live import Gap, follow
    from vqa.segment import Segment

    with LiveOrigin(segments, window=2, end_tag=False) as origin:
        info: dict[str, Any] = {}
        first = follow(origin.url, segment_seconds=SEGMENT, tracks=("video",), info=info)
        seg = next(i for i in first if isinstance(i, Segment))
        first_seq = origin.published() - 1  # started at the live edge
        while info.get("position") is None:  # the rest of that media segment
            seg = next(i for i in first if isinstance(i, Segment))
        position = json.loads(json.dumps(info["position"]))
        first.close()
        time.sleep(max(0.0, origin.aired(origin.program_start(first_seq + 5)) - time.time()))
        stop = threading.Event()
        later = follow(
            origin.url, segment_seconds=SEGMENT, tracks=("video",), stop=stop, resume=position
        )
        gap = next(later)
        after = next(i for i in later if isinstance(i, Segment))
        edge = origin.published() - 1
        stop.set()
    media_end = position["timeline"]["end"]  # the first follower's last media (last segment's)
    assert seg.start < media_end <= seg.end
    assert isinstance(gap, Gap) and gap.start == pytest.approx(media_end, abs=1e-6), gap
    want = origin.program_start(edge) - origin.program_start(first_seq + 1)
    assert after.start - media_end == pytest.approx(want, abs=SEGMENT + 0.1)
    assert after.index > seg.index  # the same timeline, not a new one
