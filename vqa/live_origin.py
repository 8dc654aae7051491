"""A live HLS origin on 127.0.0.1, for tests and benchmarks: a clip aired in real time.

The clip is cut (stream copy, so it needs keyframes at the segment cadence, as the corpus clips
have; or ``transcode=True``) into MPEG-TS segments by FFmpeg's HLS muxer through PyAV. The origin
then *airs* it: program time ``T`` of the clip airs at wall time ``started + T``, and a segment is
published in the sliding-window playlist once it has fully aired, as a live packager does. So a
defect at ``T`` in the clip's truth aired at ``started + T`` (``aired(T)``) and latencies can be
measured against that.

Faults to monitor: :meth:`LiveOrigin.stall` stops publishing (the playlist stays as it is, no end
tag) and :meth:`LiveOrigin.resume` starts again at the live edge, the segments aired meanwhile
never published (a discontinuity tag marks the hole); :meth:`LiveOrigin.drop` makes segments
answer 404; :meth:`LiveOrigin.kill` closes the server without an end tag. The same segments are
served as one continuous MPEG-TS over HTTP at ``ts_url``. Everything is bounded: ``loops`` airings
of the clip, then an end tag (or nothing more, with ``end_tag=False``).
"""

from __future__ import annotations

import io
import math
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av

__all__ = ["LiveOrigin", "OriginSegment", "package"]


@dataclass(frozen=True)
class OriginSegment:
    """One packaged segment: program ``start`` (s, the clip's time), ``duration`` (s), TS bytes;
    ``video``: its first frame's start and last frame's end (program time), if it has video."""

    start: float
    duration: float
    data: bytes
    video: tuple[float, float] | None = None


def _media_start(container: Any) -> float:
    starts = [
        s.start_time * float(s.time_base)
        for s in (*container.streams.video[:1], *container.streams.audio[:1])
        if s.start_time is not None
    ]
    return min(starts) if starts else 0.0


def _video_start(container: Any) -> float | None:
    v = container.streams.video[:1]
    return v[0].start_time * float(v[0].time_base) if v and v[0].start_time is not None else None


def package(
    clip: str | Path, *, segment_seconds: float = 1.0, transcode: bool = False
) -> list[OriginSegment]:
    """Cut ``clip`` into MPEG-TS segments of about ``segment_seconds`` (at its keyframes).

    Program times are the clip's own media times (as :mod:`vqa.media` reports them for the clip),
    so the clip's ``truth.json`` applies to the aired stream unchanged.
    """
    with tempfile.TemporaryDirectory(prefix="vqa-origin-") as tmp:
        d = Path(tmp)
        options = {
            "hls_time": f"{segment_seconds:g}",
            "hls_list_size": "0",
            "hls_segment_filename": str(d / "s%06d.ts"),
            "hls_playlist_type": "vod",
            # PAT and PMT every 0.1 s, as a broadcast mux sends them (ETSI TR 101 290 1.3 / 1.5
            # want them at least every 0.5 s): the segments joined at ts_url are then a
            # compliant continuous TS, not one with tables once per segment.
            "hls_segment_options": "pat_period=0.1",
        }
        with (
            av.open(str(clip)) as src,
            av.open(str(d / "p.m3u8"), "w", "hls", options=options) as out,
        ):
            clip_t0 = _media_start(src)
            clip_v = _video_start(src)
            _cut(src, out, segment_seconds, transcode)
        names = re.findall(r"^(s\d+\.ts)$", (d / "p.m3u8").read_text(), flags=re.M)
        durations = [
            float(x)
            for x in re.findall(r"^#EXTINF:([\d.]+)", (d / "p.m3u8").read_text(), flags=re.M)
        ]
        blobs = [(d / n).read_bytes() for n in names]
    starts: list[float] = []
    videos: list[tuple[float, float] | None] = []
    shift = 0.0
    for i, data in enumerate(blobs):
        with av.open(io.BytesIO(data), format="mpegts") as c:
            if i == 0:
                # The TS may shift the clip's times (B-frame delay, muxer offset): map its video
                # start back onto the clip's.
                v = _video_start(c)
                if v is not None and clip_v is not None:
                    shift = v - (clip_v - clip_t0)
            starts.append(_media_start(c) - shift)
            span = _video_span(c)
            videos.append(None if span is None else (span[0] - shift, span[1] - shift))
    return [
        OriginSegment(start=s, duration=dur, data=b, video=v)
        for s, dur, b, v in zip(starts, durations, blobs, videos, strict=True)
    ]


def _video_span(container: Any) -> tuple[float, float] | None:
    """First frame start and last frame end (s) of the container's video, from its packets."""
    if not container.streams.video:
        return None
    stream = container.streams.video[0]
    tb = float(stream.time_base)
    # A packet without a duration lasts one frame at the stream's rate.
    frame = 1.0 / float(stream.average_rate) if stream.average_rate else 0.0
    times = [
        (p.pts * tb, p.pts * tb + (p.duration * tb if p.duration else frame))
        for p in container.demux(stream)
        if p.pts is not None
    ]
    if not times:
        return None
    return min(t for t, _ in times), max(e for _, e in times)


def _cut(src: Any, out: Any, segment_seconds: float, transcode: bool) -> None:
    iv = next(iter(src.streams.video), None)
    ia = next(iter(src.streams.audio), None)
    if not transcode:
        mapping = {s.index: out.add_stream_from_template(s) for s in (iv, ia) if s is not None}
        for p in src.demux(*[s for s in (iv, ia) if s is not None]):
            if p.dts is None:
                continue
            p.stream = mapping[p.stream.index]
            out.mux(p)
        return
    vs = aus = None
    if iv is not None:
        fps = iv.average_rate or 25
        gop = max(1, round(segment_seconds * float(fps)))
        vs = out.add_stream(
            "libx264",
            rate=fps,
            options={
                "preset": "veryfast",
                "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0",
            },
        )
        vs.width, vs.height, vs.pix_fmt = iv.codec_context.width, iv.codec_context.height, "yuv420p"
    if ia is not None:
        aus = out.add_stream("aac", rate=ia.codec_context.sample_rate, layout="stereo")
    for frame in src.decode(*[s for s in (iv, ia) if s is not None]):
        enc = vs if isinstance(frame, av.VideoFrame) else aus
        assert enc is not None
        if isinstance(frame, av.VideoFrame):
            frame.pict_type = av.video.frame.PictureType.NONE
        for p in enc.encode(frame):
            out.mux(p)
    for enc in (vs, aus):
        if enc is not None:
            for p in enc.encode(None):
                out.mux(p)


class LiveOrigin:
    """Airs ``segments`` in real time over HTTP on 127.0.0.1 (see the module docstring).

    Use as a context manager (``with LiveOrigin(segs) as origin: ...``): the server runs in a
    daemon thread from ``__enter__`` to ``__exit__``.
    """

    def __init__(
        self,
        segments: list[OriginSegment],
        *,
        window: int = 6,
        loops: int = 1,
        end_tag: bool = True,
    ) -> None:
        if not segments:
            raise ValueError("an origin needs at least one segment")
        self.segments = segments
        self.window, self.loops, self.end_tag = window, loops, end_tag
        first, last = segments[0].video, segments[-1].video
        # The loop period: a looped clip's picture repeats after its video's length, which is
        # where a reader's clock carries on across the discontinuity; the playlist's EXTINF sum
        # and the audio's priming differ from it by a few frames a loop.
        self.program = (
            last[1] - first[0]
            if first is not None and last is not None
            else segments[-1].start + segments[-1].duration - segments[0].start
        )
        self.target = math.ceil(max(s.duration for s in segments))
        self.total = len(segments) * loops
        self.started = 0.0
        self._lock = threading.Lock()
        self._frozen: int | None = None  # published count held by a stall
        self._holes: list[tuple[int, int]] = []  # [first, end) never published (stalls)
        self._drop: set[int] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.killed = False
        self._port = 0

    # ---- programme and wall time
    def segment(self, seq: int) -> OriginSegment:
        return self.segments[seq % len(self.segments)]

    def program_start(self, seq: int) -> float:
        """Programme time where segment ``seq`` starts (loops continue the clock)."""
        return self.segment(seq).start + (seq // len(self.segments)) * self.program

    def aired(self, program_time: float) -> float:
        """Wall time (``time.time()``) at which programme time ``program_time`` aired."""
        return self.started + program_time - self.segments[0].start

    def _aired_count(self) -> int:
        """Segments fully aired by now."""
        now = time.time() - self.started + self.segments[0].start
        n = 0
        while n < self.total and self.program_start(n) + self.segment(n).duration <= now:
            n += 1
        return n

    def published(self) -> int:
        with self._lock:
            return self._aired_count() if self._frozen is None else self._frozen

    def available(self, seq: int) -> bool:
        if not 0 <= seq < self.published() or seq in self._drop:
            return False
        return not any(a <= seq < b for a, b in self._holes)

    # ---- faults
    def stall(self) -> None:
        """Stop publishing (the playlist stays as it is, without an end tag)."""
        with self._lock:
            self._frozen = self._aired_count()

    def resume(self) -> None:
        """Publish again from the live edge; what aired during the stall is never published."""
        with self._lock:
            if self._frozen is not None:
                now = self._aired_count()
                # The segment airing now is the first published after the hole.
                if now > self._frozen:
                    self._holes.append((self._frozen, now))
                self._frozen = None

    @property
    def holes(self) -> list[tuple[int, int]]:
        """``[first, end)`` ranges of segments never published (aired during a stall)."""
        return list(self._holes)

    def drop(self, *seqs: int) -> None:
        """Segments ``seqs`` answer 404 (listed in the playlist, never delivered)."""
        self._drop.update(seqs)

    def kill(self) -> None:
        """The origin dies: the server closes, no end tag."""
        self.killed = True
        self._stop()

    # ---- HTTP
    @property
    def url(self) -> str:
        assert self._port, "origin not started"
        return f"http://127.0.0.1:{self._port}/live.m3u8"

    @property
    def ts_url(self) -> str:
        return self.url.replace("/live.m3u8", "/live.ts")

    def playlist(self) -> str:
        n = self.published()
        seqs = [s for s in range(max(0, n - self.window), n) if not self._hole(s)]
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            f"#EXT-X-TARGETDURATION:{self.target}",
            f"#EXT-X-MEDIA-SEQUENCE:{seqs[0] if seqs else n}",
        ]
        for s in seqs:
            after_hole = any(b == s for _, b in self._holes)
            if s > 0 and (after_hole or s % len(self.segments) == 0):
                lines.append("#EXT-X-DISCONTINUITY")
            lines += [f"#EXTINF:{self.segment(s).duration:.6f},", f"seg/{s}.ts"]
        if self.end_tag and n >= self.total and self._frozen is None:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"

    def _hole(self, seq: int) -> bool:
        return any(a <= seq < b for a, b in self._holes)

    def stream_ts(self) -> Iterator[bytes]:
        """The continuous MPEG-TS: segments as they are published, from the live edge on."""
        seq = max(0, self.published() - 1)
        while not self.killed and seq < self.total:
            if seq < self.published():
                if self.available(seq):
                    yield self.segment(seq).data
                seq += 1
            else:
                time.sleep(0.05)

    def __enter__(self) -> LiveOrigin:
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # tests and benchmarks keep stderr for their own output

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/live.m3u8":
                    self._send(200, origin.playlist().encode(), "application/vnd.apple.mpegurl")
                    return
                m = re.fullmatch(r"/seg/(\d+)\.ts", self.path)
                if m and origin.available(int(m.group(1))):
                    self._send(200, origin.segment(int(m.group(1))).data, "video/mp2t")
                    return
                if self.path == "/live.ts" and origin.published() < origin.total:
                    self.send_response(200)
                    self.send_header("Content-Type", "video/mp2t")
                    self.end_headers()
                    try:
                        for chunk in origin.stream_ts():
                            self.wfile.write(chunk)
                            self.wfile.flush()
                    except OSError:
                        pass  # the client went away
                    return
                self._send(404, b"not found\n", "text/plain")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._port = int(self._server.server_address[1])
        self.started = time.time()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def _stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __exit__(self, *exc: object) -> None:
        self.killed = True
        self._stop()
