"""ETSI TR 101 290 priority 1 (the ``transport`` detector) and the read-once packet path.

The clips come from :func:`vqa.corpus.write_transport_corpus`: one clean TS damaged at the
packet level, with truth computed from where the bytes were damaged (PCR times by a separate
implementation). Boundaries must be within one packet interval of the truth.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vqa import media
from vqa.analyze import analyze
from vqa.corpus import VideoSpec, cfr_times, encode, flat_frame
from vqa.detectors import create
from vqa.events import DefectEvent
from vqa.segment import Segment, TransportChunk
from vqa.tsanalysis import CC_ERROR, NULL_PID, Limits, Tr101290, looks_like_ts

FFMPEG = shutil.which("ffmpeg")


def _clip(ts_corpus: tuple[Path, dict[str, Any]], name: str) -> dict[str, Any]:
    return next(c for c in ts_corpus[1]["clips"] if c["file"] == name)


def _run(path: Path, *, seconds: float = 1.0) -> tuple[list[dict[str, Any]], Any]:
    det = create("transport")
    found = []
    for seg in media.iter_segments(str(path), segment_seconds=seconds):
        found += det.process(seg)
    found += det.flush()
    return [d.to_json() for d in found], det


CLIPS = ("ts_clean.ts", "ts_drop.ts", "ts_sync.ts", "ts_psi.ts", "ts_pid.ts")


@pytest.mark.parametrize("name", CLIPS)
def test_every_injected_error_found_within_one_packet(
    ts_corpus: tuple[Path, dict[str, Any]], name: str
) -> None:
    outdir, truth = ts_corpus
    clip = _clip(ts_corpus, name)
    tol = truth["packet_interval"] + 1e-6
    result = analyze(str(outdir / name), detectors=["transport"])
    got = [d.to_json() for d in result.defects]
    runs = [r for d in got for r in d["runs"]]
    for want in clip["defects"]:
        match = [
            r
            for r in runs
            if r["indicator"] == want["indicator"]
            and r["pid"] == want["pid"]
            and abs(r["start"] - want["start"]) <= tol
        ]
        assert match, f"{name}: {want} not found in {runs}"
        if want["indicator"] != "1.2 Sync_byte_error":  # merged bursts end where they end
            assert abs(match[0]["end"] - want["end"]) <= tol, (want, match[0])
    # Nothing outside the damage (a clean clip: nothing at all).
    for r in runs:
        assert any(a - tol <= r["start"] and r["end"] <= b + tol for a, b in clip["damaged"]), r
    # Defects are damaged intervals: each starts with its first run, all starts distinct.
    assert len({d["start"] for d in got}) == len(got)
    for d in got:
        assert (d["indicator"], d["pid"], d["start"]) == (
            d["runs"][0]["indicator"],
            d["runs"][0]["pid"],
            d["runs"][0]["start"],
        )


def test_clean_ts_raises_nothing(ts_corpus: tuple[Path, dict[str, Any]], corpus: Any) -> None:
    """The clean clip, and every TS of the main corpus: payload damage (damage_ts.ts keeps the
    packet headers) and a cut mid-packet (truncated.ts) are not transport errors."""
    found, det = _run(ts_corpus[0] / "ts_clean.ts")
    assert found == []
    m = det.measurements()
    assert m["packets"] == (ts_corpus[0] / "ts_clean.ts").stat().st_size // 188
    assert sum(m["errors"].values()) == 0
    names = [c["file"] for c in corpus.truth["clips"] if c["file"].endswith(".ts")]
    assert {"multi_25.ts", "damage_ts.ts", "truncated.ts"} <= set(names)
    for path in [corpus.path(n) for n in names] + [corpus.dir / "reference" / "clean.ts"]:
        found, det = _run(path)
        assert found == [], path
        assert det.measurements()["packets"] == path.stat().st_size // 188, path


def test_segments_carry_every_byte_once_and_the_same_after_a_seek(
    ts_corpus: tuple[Path, dict[str, Any]],
) -> None:
    path = ts_corpus[0] / "ts_drop.ts"
    segs = list(media.iter_segments(str(path)))
    chunks = [s.transport for s in segs]
    assert all(c is not None for c in chunks)
    assert b"".join(c.data for c in chunks if c) == path.read_bytes()
    for seg in segs:
        assert seg.transport is not None
        # Each chunk holds the packets timed inside its segment.
        t = np.interp(
            seg.transport.offset + 188 * np.arange(len(seg.transport.data) // 188),
            seg.transport.anchor_offsets,
            seg.transport.anchor_times,
        )
        if seg.index > 0 and len(t):
            assert t[0] >= seg.start - 1e-9
        if not seg.last and len(t):
            assert t[-1] < seg.end
    # The distributed converter decodes one segment after a seek: the same packets.
    for k in (2, 5, len(segs) - 1):
        alone, whole = media.decode_segment(str(path), k).transport, chunks[k]
        assert alone is not None and whole is not None
        assert (alone.offset, alone.data) == (whole.offset, whole.data)


def test_state_round_trip_equals_one_pass(ts_corpus: tuple[Path, dict[str, Any]]) -> None:
    for name in ("ts_sync.ts", "ts_psi.ts", "ts_drop.ts"):
        path = ts_corpus[0] / name
        one, _ = _run(path)
        found = []
        state = None
        for seg in media.iter_segments(str(path)):
            det = create("transport")
            if state is not None:
                det.set_state(json.loads(state))
            # The segment as the distributed detector reads it back: the transport object only.
            objs = seg.to_objects("frame")
            back = Segment.from_objects({"transport": objs["transport"]})
            found += det.process(back)
            if back.last:
                found += det.flush()
            state = json.dumps(det.get_state())
        assert [d.to_json() for d in found] == one, name


def test_serialisation_carries_the_packets(ts_corpus: tuple[Path, dict[str, Any]]) -> None:
    seg = next(media.iter_segments(str(ts_corpus[0] / "ts_clean.ts")))
    assert seg.transport is not None
    for granularity in ("segment", "frame"):
        objs = seg.to_objects(granularity)
        assert "transport" in objs
        back = Segment.from_objects(objs)
        assert back.transport == seg.transport
        assert back.video is not None and len(back.video) == len(seg.video or [])
    alone = Segment.from_objects({"transport": seg.to_objects()["transport"]})
    assert alone.transport == seg.transport and alone.video is None and alone.audio is None
    assert (alone.index, alone.start, alone.end) == (seg.index, seg.start, seg.end)


def test_transport_only_shard_cuts_the_same_packets(
    ts_corpus: tuple[Path, dict[str, Any]],
) -> None:
    path = str(ts_corpus[0] / "ts_psi.ts")
    decoded = [s.transport for s in media.iter_segments(path)]
    alone = list(media.iter_segments(path, tracks=()))
    assert all(s.video is None and s.audio is None for s in alone)
    # Decoding may run one segment longer (the last frame's duration, AAC padding): with no
    # packets left to carry.
    assert [s.transport for s in alone] == decoded[: len(alone)]
    assert all(c is not None and not c.data for c in decoded[len(alone) :])
    assert alone[-1].last


def test_non_ts_sources_skip_with_a_reason(tmp_path: Path) -> None:
    clip = tmp_path / "tiny.mp4"
    spec = VideoSpec(64, 64, 10, cfr_times(1.0, 10), lambda i, t: flat_frame(64, 64, 100))
    encode(clip, fmt="mp4", video=spec, audio=None)
    result = analyze(str(clip), detectors=["black", "transport"])
    assert "transport" in result.skipped and "MPEG-TS" in result.skipped["transport"]
    assert media.probe(str(clip)).transport is False
    assert not looks_like_ts(clip.read_bytes()[:2048])


@pytest.mark.skipif(FFMPEG is None, reason="no ffmpeg binary (Debian's ffmpeg) to cross-check")
def test_continuity_errors_agree_with_ffmpeg(ts_corpus: tuple[Path, dict[str, Any]]) -> None:
    """FFmpeg's demuxer logs each continuity failure (at debug level); its probe pass may log
    the first again, so distinct (pid, expected, got) are compared."""
    assert FFMPEG is not None
    for name in ("ts_drop.ts", "ts_sync.ts", "ts_clean.ts"):
        path = ts_corpus[0] / name
        log = subprocess.run(
            [
                FFMPEG,
                "-hide_banner",
                "-nostdin",
                "-v",
                "debug",
                "-i",
                str(path),
                "-map",
                "0",
                "-c",
                "copy",
                "-f",
                "null",
                "-",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stderr
        theirs = set(
            re.findall(r"Continuity check failed for pid (\d+) expected (\d+) got (\d+)", log)
        )
        found, _ = _run(path)
        ours: dict[int, int] = {}
        for r in (r for d in found for r in d["runs"]):
            if r["indicator"] == CC_ERROR:
                ours[r["pid"]] = ours.get(r["pid"], 0) + r["errors"]
        per_pid: dict[int, int] = {}
        for pid, _exp, _got in theirs:
            per_pid[int(pid)] = per_pid.get(int(pid), 0) + 1
        assert ours == per_pid, (name, ours, theirs)


# ---- the analyser on hand-made packets ----------------------------------------------------


def _packet(pid: int, cc: int, *, payload: bool = True, disc: bool = False) -> bytes:
    """One packet; with ``disc`` or without payload it has an adaptation field."""
    afc = (0b10 if disc or not payload else 0) | (0b01 if payload else 0)
    head = bytes([0x47, (pid >> 8) & 0x1F, pid & 0xFF, (afc << 4) | cc])
    if afc == 0b01:
        return head + bytes(184)
    length = 1 if payload else 183  # the adaptation field fills what the payload leaves
    return head + bytes([length, 0x80 if disc else 0x00]) + bytes(183 - 1)


def _feed(packets: list[bytes], *, split: int | None = None) -> list[Any]:
    data = b"".join(packets)
    times = [0.0, len(data) / 188 * 0.001]
    ts = Tr101290(Limits(pat=1e9, pmt=1e9, pid=1e9))
    pieces = [data] if split is None else [data[i : i + split] for i in range(0, len(data), split)]
    errors, off = [], 0
    for piece in pieces:
        errors += ts.feed(TransportChunk(piece, off, [0, len(data)], times))
        off += len(piece)
    return [(e[0], e[1], round(e[2] * 1000)) for e in errors]


def test_continuity_rules() -> None:
    pid = 0x100
    seq = [_packet(pid, c % 16) for c in range(20)]
    assert _feed(seq) == []
    assert _feed(seq[:5] + seq[6:]) == [(CC_ERROR, pid, 5)]  # one lost
    assert _feed([*seq[:5], seq[4], *seq[5:]]) == []  # one duplicate is allowed
    assert _feed([*seq[:5], seq[4], seq[4], *seq[5:]]) == [(CC_ERROR, pid, 6)]  # not two
    assert _feed([*seq[:5], seq[6], seq[5], *seq[7:]]) == [
        (CC_ERROR, pid, 5),
        (CC_ERROR, pid, 6),
        (CC_ERROR, pid, 7),
    ]  # out of order
    # Adaptation-field-only packets keep the counter; a discontinuity indicator resets it.
    assert _feed([*seq[:5], _packet(pid, 9, payload=False), *seq[5:]]) == []
    assert _feed([*seq[:5], _packet(pid, 11, disc=True), _packet(pid, 12)]) == []
    # The null PID is never checked; other PIDs count on their own.
    nulls = [_packet(NULL_PID, 3) for _ in range(4)]
    other = [_packet(0x101, c) for c in (0, 1, 2, 3)]
    mixed = [p for pair in zip(seq[:4], other, nulls, strict=True) for p in pair]
    assert _feed(mixed) == []


def test_packets_straddling_chunks_give_the_same_errors() -> None:
    pid = 0x100
    seq = [_packet(pid, c % 16) for c in range(40)]
    damaged = seq[:7] + seq[9:20] + [b"\x00" + seq[20][1:], b"\x00" + seq[21][1:]] + seq[22:]
    whole = _feed(damaged)
    assert ("1.1 TS_sync_loss", -1, 18) in whole  # packets 18 and 19 (two were dropped)
    for split in (100, 188, 1000, 3 * 188 + 5):
        # (a sync loss is reported when sync is back, which may be a later chunk)
        assert sorted(_feed(damaged, split=split)) == sorted(whole)


def test_live_hls_segments_and_ts_carry_their_packets(
    ts_corpus: tuple[Path, dict[str, Any]],
) -> None:
    """HLS pieces (vqa.live.decode_chunk) and a continuous TS read without seeking (MPEG-TS
    over HTTP) both hand the transport detector the bytes PyAV demuxed; a clean origin raises
    nothing, though HLS sends PAT/PMT once per media segment."""
    import io

    import av

    from vqa.live import Timeline, decode_chunk
    from vqa.live_origin import package
    from vqa.tsanalysis import TsTee

    pieces = package(ts_corpus[0] / "ts_clean.ts", segment_seconds=2.0)
    hls = create("transport")
    timeline = Timeline()
    carried = b""
    for piece in pieces:
        hls_flags = []
        for seg in decode_chunk(
            piece.data, source="hls", timeline=timeline, segment_seconds=1.0, expect=2.0
        ):
            assert seg.transport is not None
            carried += seg.transport.data
            hls_flags.append(seg.transport.hls)
            assert hls.process(seg) == []
        assert all(hls_flags)
    assert hls.flush() == [] and carried == b"".join(p.data for p in pieces)

    class Unseekable(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._f = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b: Any) -> int:
            return self._f.readinto(b)

    stream = b"".join(p.data for p in pieces)
    tee = TsTee(Unseekable(stream))
    ts = create("transport")
    with av.open(tee, format="mpegts") as container:
        segs = list(media._segments(container, "ts", 1.0, 0, None, {}, tee=tee))
    assert b"".join(s.transport.data for s in segs if s.transport) == stream
    found = [d for s in segs for d in ts.process(s)] + ts.flush()
    assert found == []


def test_monolith_parity_with_analyze(ts_corpus: tuple[Path, dict[str, Any]]) -> None:
    from vqa.local.monolith import run_local

    path = str(ts_corpus[0] / "ts_sync.ts")
    names = ["silence", "transport"]
    want = analyze(path, detectors=names).to_json()
    got = run_local(path, config={"detectors": names, "shards": [["silence"], ["transport"]]})
    assert got["defects"] == want["defects"]
    assert any(d["kind"] == "transport" for d in got["defects"])


def test_live_events_announce_an_absence_while_it_lasts(
    ts_corpus: tuple[Path, dict[str, Any]],
) -> None:
    """``vqa watch``: the audio PID's absence is *started* once it passes the 5 s limit, long
    before it ends, with the start the finished defect has."""
    (want,) = _clip(ts_corpus, "ts_pid.ts")["defects"]
    det = create("transport")
    events: list[tuple[float | None, DefectEvent]] = []
    end = 0.0
    for seg in media.iter_segments(str(ts_corpus[0] / "ts_pid.ts")):
        events += [(seg.end, e) for e in det.process_events(seg)]
        end = seg.end
    events += [(None, e) for e in det.flush_events(seen=end)]
    started = [(at, e) for at, e in events if e.phase == "started"]
    ended = [e for _, e in events if e.phase == "ended"]
    assert len(started) == len(ended) == 1
    at, first = started[0]
    assert first.start == pytest.approx(want["start"], abs=1e-6)
    assert at is not None and want["start"] + 5.0 < at < want["end"]
    assert (ended[0].start, ended[0].end) == pytest.approx((want["start"], want["end"]), abs=1e-6)
