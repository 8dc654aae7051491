"""Media conversion: segments, timestamps, zero-copy planes, sources."""

from __future__ import annotations

import functools
import http.server
import itertools
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import Corpus
from vqa.analyze import analyze
from vqa.corpus import CORPUS_THRESHOLDS
from vqa.errors import BadSourceError
from vqa.media import S3RangeReader, decode_segment, iter_segments, probe


def test_segments_tile_the_source(corpus: Corpus) -> None:
    clip = corpus.clip("multi.mp4")
    info: dict[str, object] = {}
    segs = list(iter_segments(str(corpus.path("multi.mp4")), info=info))
    assert [s.index for s in segs] == list(range(len(segs)))
    assert segs[-1].last and not any(s.last for s in segs[:-1])
    frames = sum(len(s.video) for s in segs if s.video is not None)
    assert frames == round(clip["duration"] * clip["fps"])
    for s in segs:
        assert s.video is not None and s.audio is not None
        assert np.all((s.video.times >= s.start - 1e-9) & (s.video.times < s.end))
        if s.audio.n:
            assert s.audio.start >= s.start - 1e-9
            assert s.audio.end <= s.end + 1e-9
    assert info["duration"] == pytest.approx(clip["duration"], abs=0.03)


def test_audio_is_continuous_float32(corpus: Corpus) -> None:
    segs = list(iter_segments(str(corpus.path("silence.mp4"))))
    for a, b in itertools.pairwise(segs):
        assert a.audio is not None and b.audio is not None
        assert a.audio.samples.dtype == np.float32
        assert a.audio.samples.shape[0] == 2
        assert a.audio.end == pytest.approx(b.audio.start, abs=1e-9)


def test_planes_are_zero_copy_views(corpus: Corpus) -> None:
    seg = next(iter(iter_segments(str(corpus.path("black.mp4")))))
    assert seg.video is not None
    plane = seg.video.planes[0]
    assert plane.shape == (180, 320)
    assert not plane.flags.owndata  # a view of the decoder's frame, not a copy
    assert plane.base is not None


def test_ts_start_offset_is_removed(corpus: Corpus) -> None:
    segs = list(iter_segments(str(corpus.path("multi_25.ts"))))
    first = segs[0]
    assert first.video is not None and first.audio is not None
    # MPEG-TS timestamps start near 1.4 s; times here are relative to the source start, and the
    # A/V start skew of the container is kept.
    assert min(first.video.times[0], first.audio.start) == pytest.approx(0.0, abs=1e-6)
    assert first.video.times[0] < 0.1


def test_variable_frame_rate_times_follow_pts(corpus: Corpus) -> None:
    clip = corpus.clip("vfr.mp4")
    times = np.concatenate(
        [s.video.times for s in iter_segments(str(corpus.path("vfr.mp4"))) if s.video is not None]
    )
    assert len(times) == clip["frames"]
    deltas = np.diff(times)
    assert deltas.min() == pytest.approx(1 / 30, abs=2e-3)
    assert deltas.max() == pytest.approx(1 / 15, abs=2e-3)


def test_decode_segment_matches_continuous_decode(corpus: Corpus) -> None:
    path = str(corpus.path("multi.mp4"))
    segs = list(iter_segments(path))
    for i in (0, 3, len(segs) - 1):
        one = decode_segment(path, i)
        assert one.index == i and one.last == segs[i].last
        assert one.video is not None and segs[i].video is not None
        assert np.array_equal(one.video.times, segs[i].video.times)
        assert np.array_equal(one.video.thumbs, segs[i].video.thumbs)
        assert one.audio is not None and segs[i].audio is not None
        assert np.array_equal(one.audio.samples, segs[i].audio.samples)
    past = decode_segment(path, len(segs) + 5)
    assert past.last and (past.video is None or len(past.video) == 0)


def test_probe(corpus: Corpus) -> None:
    info = probe(str(corpus.path("multi.mp4")))
    assert (info.width, info.height, info.has_video, info.has_audio) == (640, 360, True, True)
    assert info.video_codec == "h264" and info.audio_codec == "aac"


def test_s3_source_streams_with_ranged_reads(corpus: Corpus) -> None:
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    path = corpus.path("multi.mp4")
    with moto.mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="src")
        s3.upload_file(str(path), "src", "clips/multi.mp4")
        calls: list[str] = []
        s3.meta.events.register(
            "provide-client-params.s3.GetObject",
            lambda params, **_: calls.append(params.get("Range", "")),
        )
        local = list(iter_segments(str(path)))
        remote = list(iter_segments("s3://src/clips/multi.mp4", s3_client=s3))
        assert len(local) == len(remote)
        for a, b in zip(local, remote, strict=True):
            assert a.video is not None and b.video is not None
            assert np.array_equal(a.video.thumbs, b.video.thumbs)
        assert calls and all(r.startswith("bytes=") for r in calls)
        with pytest.raises(BadSourceError, match=r"s3://src/missing\.mp4"):
            list(iter_segments("s3://src/missing.mp4", s3_client=s3))


def test_s3_reader_seeks_and_reads_blocks() -> None:
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    data = bytes(range(256)) * 1000
    with moto.mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bkt")
        s3.put_object(Bucket="bkt", Key="k", Body=data)
        r = S3RangeReader(s3, "bkt", "k")
        r.seek(1000)
        assert r.read(10) == data[1000:1010]
        r.seek(-5, 2)
        assert r.read() == data[-5:]


def test_hls_url_over_http(corpus: Corpus, tmp_path: Path) -> None:
    """An HLS playlist served over HTTP (loopback) analyses like the file it was cut from."""
    import av

    src = corpus.path("black.mp4")
    out = tmp_path / "hls"
    out.mkdir()
    with (
        av.open(str(src)) as ic,
        av.open(
            str(out / "index.m3u8"),
            "w",
            format="hls",
            options={"hls_time": "2", "hls_list_size": "0"},
        ) as oc,
    ):
        streams = {s.index: oc.add_stream_from_template(s) for s in ic.streams}
        for packet in ic.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            oc.mux(packet)
    assert len(list(out.glob("*.ts"))) >= 3

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/index.m3u8"
        remote = analyze(url, thresholds=CORPUS_THRESHOLDS)
    finally:
        server.shutdown()
    local = analyze(str(src), thresholds=CORPUS_THRESHOLDS)
    assert [d.kind for d in remote.defects] == [d.kind for d in local.defects] == ["black"]
    assert remote.defects[0].start == pytest.approx(local.defects[0].start, abs=1 / 30 + 1e-3)
    assert remote.defects[0].end == pytest.approx(local.defects[0].end, abs=1 / 30 + 1e-3)


# ---- container and encoder quirks are not damage (issue 11) ---------------------------------
# Small clips made with PyAV: what other encoders and containers do by design. Each must decode
# to regular display-order times and raise no corruption; real loss stays covered by the corpus.


def _textured(i: int, w: int = 160, h: int = 96) -> np.ndarray:
    """A moving textured picture (so nothing is a freeze), as yuv420p rows."""
    rng = np.random.default_rng(7)
    base = rng.integers(30, 220, (h, w), dtype=np.uint8)
    y = np.roll(base, 2 * i, axis=1)
    chroma = np.full((h // 2, w), 128, np.uint8)
    return np.concatenate([y, chroma])


def _encode(
    path: Path, codec: str, fmt: str, pts: list[int], *, rate: int = 25, bf: int = 0
) -> None:
    from fractions import Fraction

    import av

    with av.open(str(path), "w", format=fmt) as out:
        s = out.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = 160, 96, "yuv420p"
        s.codec_context.time_base = Fraction(1, rate)
        s.codec_context.max_b_frames = bf
        s.codec_context.bit_rate = 150_000
        for i in pts:
            f = av.VideoFrame.from_ndarray(_textured(i), format="yuv420p")
            f.pts, f.time_base = i, Fraction(1, rate)
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)


def _times(path: Path) -> np.ndarray:
    return np.concatenate(
        [s.video.times for s in iter_segments(str(path)) if s.video is not None and len(s.video)]
    )


def test_mp4_without_composition_offsets_is_not_damage(tmp_path: Path) -> None:
    """B-pictures muxed with pts = dts (no ``ctts``), as some encoders write MP4: the times
    come out permuted within each reorder group; they are put back in display order."""
    import av

    src, dst = tmp_path / "b.mp4", tmp_path / "noctts.mp4"
    _encode(src, "libx264", "mp4", list(range(75)), bf=3)
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        vs = out.add_stream_from_template(inp.streams.video[0])
        for p in inp.demux(video=0):
            if p.dts is None:
                continue
            p.pts = p.dts
            p.stream = vs
            out.mux(p)
    with av.open(str(dst)) as c:
        order = [f.pts for f in c.decode(video=0)]
    assert order != sorted(order), "the remux really permutes the decoded times"
    times = _times(dst)
    assert np.allclose(np.diff(times), 1 / 25, atol=1e-3)
    assert analyze(str(dst), detectors="corruption").defects == []


def test_avi_null_frames_are_repeats_not_loss(tmp_path: Path) -> None:
    """An old codec at a low rate skips frames in AVI (empty index entries, dropped by the
    demuxer): a player repeats the last picture, and so does media conversion."""
    path = tmp_path / "null.avi"
    kept = [i for i in range(100) if i % 5 != 3]
    _encode(path, "msmpeg4", "avi", kept)
    times = _times(path)
    assert len(times) == 100
    assert np.allclose(np.diff(times), 1 / 25, atol=1e-6)
    assert analyze(str(path), detectors="corruption").defects == []


def test_irregular_frame_intervals_are_not_loss(tmp_path: Path) -> None:
    """Frames spaced 2, 3, 5, 2, 4... ticks apart (an old capture's timing): no hole of whole
    frames in a regular cadence, so no gap."""
    path = tmp_path / "irregular.mp4"
    steps = itertools.cycle([2, 3, 5, 2, 4, 3, 6, 2])
    pts = list(itertools.accumulate(itertools.islice(steps, 60), initial=0))
    _encode(path, "libx264", "mp4", pts, rate=30)
    assert analyze(str(path), detectors="corruption").defects == []


def test_truncated_last_audio_frame_raises_nothing(tmp_path: Path) -> None:
    import av

    src, dst = tmp_path / "a.ts", tmp_path / "cut.ts"
    from vqa.corpus import VideoSpec, cfr_times, encode, music

    spec = VideoSpec(160, 96, 25, cfr_times(2.0, 25), lambda i, t: _textured(i))
    encode(src, fmt="mpegts", video=spec, audio=music(2.0, seed=3))
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mpegts") as out:
        m = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        pkts = [p for p in inp.demux() if p.dts is not None]
        last = max(i for i, p in enumerate(pkts) if p.stream.type == "audio")
        for i, p in enumerate(pkts):
            if i == last:
                q = av.Packet(bytes(p)[: p.size // 3])
                q.pts, q.dts, q.time_base = p.pts, p.dts, p.time_base
                p = q
            p.stream = m[pkts[i].stream.index]
            out.mux(p)
    res = analyze(str(dst))
    assert res.defects == [] and res.skipped == {}
