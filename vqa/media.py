"""Media conversion: decode a source once into segments for the detectors.

Sources: a local path, an ``s3://bucket/key`` object (streamed with ranged GETs through boto3, never
downloaded whole), or an ``http(s)://`` URL (HLS playlist, MPEG-TS, MP4 — whatever FFmpeg opens).

Timestamps are the container's presentation times relative to the source start (the earliest
``start_time`` of the analysed streams), so an MPEG-TS starting at 1.4 s and an audio stream that
starts after the video keep their real skew. Segment ``k`` covers ``[k*L, (k+1)*L)``; a frame
belongs
to the segment holding its PTS, audio samples are split at the exact boundary sample.

Memory is bounded: a segment is handed out as soon as every analysed stream has passed its end, and
the decoder's frames are released when the segment is dropped. Video planes are zero-copy views of
the decoder's frames (``np.frombuffer`` on the plane, cropped to the picture width).

Decoder signals feed the ``corruption`` detector deterministically (the same for a continuous pass
and for a segment decoded after a seek): frames the decoder marks corrupt (error concealment),
packets the decoder rejects (marked on the next frame output), timestamps that run backwards, and
the picture types from which the detector works out gaps and how damage spreads. Container quirks
are not passed on as damage: decode-order times (AVI, an MP4 without composition offsets) are put
back in display order over a small window, and an AVI null frame is shown as the repeat it is.

An MPEG-TS file or S3 object is read through :class:`vqa.tsanalysis.TsTee`: PyAV demuxes the
bytes the tee keeps, and each segment carries the packets timed inside it (``transport``, by the
programme's PCR on the same time base as the frames) for the transport detector, so the packets
are read once. A segment decoded after a seek carries the same packets as in a continuous pass.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
from collections import deque
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import av
import numpy as np
from numpy.typing import NDArray

from vqa import urlguard
from vqa.errors import BadSourceError
from vqa.segment import AudioTrack, Segment, VideoTrack, cadence
from vqa.tsanalysis import TsTee, looks_like_ts

log = logging.getLogger(__name__)

#: Seconds decoded before a seeked segment so that gap tracking and the audio decoder's overlap
#: state match a continuous pass exactly.
SEEK_PREROLL = 1.0
#: Audio decoded before each segment by its own decoder (see :class:`_AudioSegmenter`).
AUDIO_PREROLL = 0.25
#: A stream this far ahead of another no longer holds a segment back (bounded memory on bad muxing).
MAX_STREAM_SKEW = 2.0
#: The video decoder's threading (frame and slice threads, as many as there are cores).
VIDEO_THREADS = "AUTO"
#: S3 ranged reads: block size and blocks kept (sequential demuxing touches one or two at a time).
S3_BLOCK = 8 * 1024 * 1024
S3_BLOCKS_CACHED = 4

# libav's own log output stays off (PyAV's default): forwarding it into Python from the decoder's
# worker threads can deadlock with frame threading, and every signal used here is deterministic.


@dataclass(frozen=True)
class SourceInfo:
    source: str
    duration: float
    has_video: bool
    has_audio: bool
    video_codec: str | None = None
    audio_codec: str | None = None
    width: int = 0
    height: int = 0
    fps: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)
    #: MPEG-TS read through :class:`~vqa.tsanalysis.TsTee` (a file or S3 object): segments will
    #: carry their packets for the transport detector.
    transport: bool = False


# --------------------------------------------------------------------------- opening


class S3RangeReader(io.RawIOBase):
    """A seekable read-only file over an S3 object, read in cached blocks with ranged GETs."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        super().__init__()
        self._client, self._bucket, self._key = client, bucket, key
        head = client.head_object(Bucket=bucket, Key=key)
        self._size = int(head["ContentLength"])
        self._pos = 0
        self._blocks: dict[int, bytes] = {}
        self._order: deque[int] = deque()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def _block(self, n: int) -> bytes:
        if n not in self._blocks:
            start = n * S3_BLOCK
            end = min(self._size, start + S3_BLOCK) - 1
            resp = self._client.get_object(
                Bucket=self._bucket, Key=self._key, Range=f"bytes={start}-{end}"
            )
            self._blocks[n] = resp["Body"].read()
            self._order.append(n)
            while len(self._order) > S3_BLOCKS_CACHED:
                self._blocks.pop(self._order.popleft(), None)
        return self._blocks[n]

    def readinto(self, b: Any) -> int:
        if self._pos >= self._size:
            return 0
        n, off = divmod(self._pos, S3_BLOCK)
        data = self._block(n)[off : off + len(b)]
        b[: len(data)] = data
        self._pos += len(data)
        return len(data)


def _reason(exc: BaseException) -> str:
    """A short human reason from an FFmpeg error (its last log line says the most)."""
    text = str(exc)
    m = re.search(r"last error log: \[[^\]]*\] (.*)$", text)
    detail = m.group(1).strip().rstrip(".") if m else ""
    if isinstance(exc, av.error.FFmpegError):
        base = exc.strerror or type(exc).__name__
    else:
        base = type(exc).__name__ + (f": {exc}" if str(exc) else "")
    if "moov atom not found" in detail:
        return "MP4 index (moov atom) not found: the file is truncated or was never finalised"
    if isinstance(exc, av.error.InvalidDataError) and not detail:
        return "not a media file FFmpeg can read (invalid data)"
    return f"{base}: {detail}" if detail else base


#: Bytes read to tell an MPEG-TS source (5 packets from any of the first 188 offsets).
TS_SNIFF = 6 * 188


def _tee_if_ts(raw: Any) -> TsTee | None:
    """A tee over ``raw`` (a seekable binary file at offset 0) if it holds MPEG-TS, so that the
    transport analysis reads the bytes PyAV demuxes instead of reading the source again."""
    head = raw.read(TS_SNIFF)
    raw.seek(0)
    return TsTee(raw) if looks_like_ts(head) else None


def _open_container(source: str, s3_client: Any | None, tee: list[TsTee] | None = None) -> Any:
    """Open ``source`` with PyAV; for an MPEG-TS file or S3 object, when ``tee`` is a list, read
    it through a :class:`~vqa.tsanalysis.TsTee` and append that to ``tee``."""
    parsed = urlparse(source)
    try:
        if parsed.scheme == "s3":
            if s3_client is None:
                import boto3

                s3_client = boto3.client("s3")
            try:
                reader = S3RangeReader(s3_client, parsed.netloc, parsed.path.lstrip("/"))
            except Exception as exc:
                raise BadSourceError(source, f"cannot read S3 object: {exc}") from None
            if reader._size == 0:
                raise BadSourceError(source, "empty object")
            if tee is not None and (t := _tee_if_ts(reader)) is not None:
                tee.append(t)
                return av.open(t, mode="r")  # the tee keeps blocks: no second buffer
            return av.open(io.BufferedReader(reader, buffer_size=1 << 20), mode="r")
        if parsed.scheme in ("http", "https"):
            guard = urlguard.guard_from_env()
            if guard is not None:
                # FFmpeg's HTTP and HLS clients follow redirects and playlist entries unchecked:
                # with the SSRF guard on, every byte comes through vqa.urlguard instead.
                raw = urlguard.open_media(source, guard=guard, source=source)
                return av.open(io.BufferedReader(raw, buffer_size=1 << 20), mode="r")
            return av.open(source, mode="r", timeout=(10.0, 30.0))
        path = parsed.path if parsed.scheme == "file" else source
        if not os.path.exists(path):
            raise BadSourceError(source, "no such file")
        if os.path.isdir(path):
            raise BadSourceError(source, "is a directory, not a media file")
        if os.path.getsize(path) == 0:
            raise BadSourceError(source, "empty file")
        try:
            if tee is not None:
                raw = open(path, "rb", buffering=0)  # noqa: SIM115 - closed with the container
                t = _tee_if_ts(raw)
                if t is not None:
                    try:
                        container = av.open(t, mode="r")
                    except BaseException:
                        raw.close()
                        raise
                    tee.append(t)
                    return container
                raw.close()
            return av.open(path, mode="r")
        except av.error.InvalidDataError:
            with open(path, "rb") as f:
                head = f.read(12)
            if head[4:8] == b"ftyp":
                raise BadSourceError(
                    source,
                    "MP4 index (moov atom) not found: the file is truncated or was never finalised",
                ) from None
            raise
    except BadSourceError:
        raise
    except (av.error.FFmpegError, OSError) as exc:
        raise BadSourceError(source, _reason(exc)) from None


def _decodable(stream: Any) -> str | None:
    """``None`` if FFmpeg can decode the stream, else the reason."""
    try:
        ctx = stream.codec_context
    except Exception as exc:  # pragma: no cover - depends on FFmpeg build
        return f"codec unavailable ({exc})"
    if ctx is None:
        return f"FFmpeg has no decoder for this {stream.type} codec"
    try:
        codec = ctx.codec
        if codec is None or not codec.is_decoder:
            return f"no decoder for codec {ctx.name!r}"
    except Exception:
        return f"no decoder for codec {getattr(ctx, 'name', '?')!r}"
    return None


# --------------------------------------------------------------------------- assembly


class _Builder:
    """Collects one segment's frames and samples."""

    __slots__ = (
        "a_chunks",
        "a_cursor",
        "a_first",
        "bframes",
        "corrupt",
        "keys",
        "planes",
        "times",
    )

    def __init__(self) -> None:
        self.times: list[float] = []
        self.planes: list[NDArray[np.uint8]] = []
        self.keys: list[bool] = []
        self.corrupt: list[bool] = []
        self.bframes: list[bool] = []
        self.a_chunks: list[NDArray[np.float32]] = []
        self.a_first: int | None = None
        self.a_cursor = 0

    def add_audio(self, first: int, pcm: NDArray[np.float32]) -> None:
        """Place ``pcm`` (channels, n) at absolute sample index ``first`` (gaps -> zeros)."""
        if self.a_first is None:
            self.a_first = first
            self.a_cursor = first
        if first > self.a_cursor:
            self.a_chunks.append(np.zeros((pcm.shape[0], first - self.a_cursor), np.float32))
            self.a_cursor = first
        elif first < self.a_cursor:
            pcm = pcm[:, self.a_cursor - first :]
        if pcm.shape[1]:
            self.a_chunks.append(pcm)
            self.a_cursor += pcm.shape[1]


def _luma_view(frame: Any) -> NDArray[np.uint8]:
    """Zero-copy ``(height, width)`` view of a frame's luma plane (row stride = line_size)."""
    plane = frame.planes[0]
    buf = np.frombuffer(plane, dtype=np.uint8)
    return buf.reshape(plane.height, plane.line_size)[:, : plane.width]


#: Pixel formats whose first plane is 8-bit luma, viewed as is; anything else (10-bit, packed
#: YUYV, RGB) is converted to gray first.
_DIRECT_LUMA = frozenset(
    {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "gray", "nv12", "nv21"}
)


#: Frames over which container times are put back in display order (see :class:`_VideoState`):
#: more than the reorder depth of any B-picture stream seen (4 for packed B-frames in AVI).
REORDER_WINDOW = 8
#: AVPictureType: AV_PICTURE_TYPE_B.
_PICT_B = 3


class _VideoState:
    """Per-stream state that turns decoded frames into timed luma + signals."""

    def __init__(self, stream: Any, t0: float, *, container_format: str = "") -> None:
        self.stream = stream
        self.tb = float(stream.time_base)
        # MPEG-TS and MPEG-PS carry a real presentation time in every PES header, so a time that
        # runs backwards there is damage. Containers that may store times by decode order (AVI
        # has no presentation times; an MP4 without a composition-offset box) hand a B-picture
        # stream "pts" that are permuted within each reorder group by design, while the decoder
        # outputs pictures in display order. There each frame out takes the smallest time among
        # the next REORDER_WINDOW frames: the times put back in display order (a property of the
        # file, not damage); correctly timed streams come out unchanged, REORDER_WINDOW frames
        # later.
        self.timed_by_pes = container_format.split(",")[0] in {"mpegts", "mpeg", "hls"}
        self.index_timed = container_format.split(",")[0] == "avi"
        self.last_luma: NDArray[np.uint8] | None = None
        self.window: list[tuple[Any, int, bool]] = []  # (frame, pts, corrupt) waiting, FIFO
        self.t0 = t0
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.nominal = 1.0 / float(rate) if rate else 1.0 / 30.0
        self.deltas: deque[float] = deque(maxlen=15)
        self.prev: float | None = None
        self.pending_error = False
        self.ran_backwards = False
        self.width = int(stream.codec_context.width or 0)
        self.height = int(stream.codec_context.height or 0)

    def frame_duration(self) -> float:
        return cadence(self.deltas, self.nominal)

    def convert(self, frame: Any) -> list[tuple[float, NDArray[np.uint8], bool, bool, bool]]:
        """The frames ready after ``frame`` (none, one, or one late from the reorder window)."""
        if frame.pts is None:
            return []
        key = bool(frame.key_frame)
        # A rejected packet taints the next frame out unless that frame starts a new picture.
        corrupt = bool(frame.is_corrupt) or (self.pending_error and not key)
        self.pending_error = False
        if self.timed_by_pes:
            return self._finish(frame, int(frame.pts), corrupt)
        self.window.append((frame, int(frame.pts), corrupt))
        if len(self.window) <= REORDER_WINDOW:
            return []
        return self._pop()

    def drain(self) -> list[tuple[float, NDArray[np.uint8], bool, bool, bool]]:
        """End of stream: the frames still waiting in the reorder window."""
        out = []
        while self.window:
            out += self._pop()
        return out

    def _pop(self) -> list[tuple[float, NDArray[np.uint8], bool, bool, bool]]:
        low = min(range(len(self.window)), key=lambda i: self.window[i][1])
        frame, pts, corrupt = self.window.pop(0)
        if low > 0:
            # The head takes the smallest waiting time; the frame that carried it takes the head's.
            low -= 1
            other, low_pts, c = self.window[low]
            self.window[low] = (other, pts, c)
            pts = low_pts
        return self._finish(frame, pts, corrupt)

    def _finish(
        self, frame: Any, pts: int, corrupt: bool
    ) -> list[tuple[float, NDArray[np.uint8], bool, bool, bool]]:
        """The frame with its time and signals, after the repeats an index-timed gap stands for."""
        prev, last = self.prev, self.last_luma
        out = self._one(frame, pts, corrupt)
        if out is None:
            return []
        repeats: list[tuple[float, NDArray[np.uint8], bool, bool, bool]] = []
        if self.index_timed and prev is not None and last is not None:
            # AVI has no timestamps: index entry k is shown at k frame periods of the declared
            # rate, and an empty entry is the encoder's null frame ("show the last picture
            # again"), which FFmpeg's demuxer drops. Put the repeats back, as a player shows
            # them: a hole in an index-timed stream is not lost data.
            periods = (out[0] - prev) / self.nominal
            n = round(periods)
            if n >= 2 and abs(periods - n) <= 0.25:
                repeats = [
                    (prev + k * self.nominal, last, False, False, False) for k in range(1, n)
                ]
        self.last_luma = out[1]
        return [*repeats, out]

    def _one(
        self, frame: Any, pts: int, corrupt: bool
    ) -> tuple[float, NDArray[np.uint8], bool, bool, bool] | None:
        key = bool(frame.key_frame)
        bframe = int(frame.pict_type) == _PICT_B
        t = pts * self.tb - self.t0
        if self.prev is not None and t <= self.prev:
            # A timestamp that runs backwards is damage (a broken PES header, a spliced packet):
            # drop the frame to keep time monotonic and mark the next one.
            self.ran_backwards = True
            return None
        if self.prev is not None:
            delta = t - self.prev
            if self.index_timed:
                # Null frames are put back (see _finish): the cadence is the declared rate's.
                delta = min(delta, self.nominal)
            # Only plausible cadence changes update the estimate; a gap must not teach itself.
            if delta < 1.5 * self.frame_duration() or len(self.deltas) < 3:
                self.deltas.append(delta)
        self.prev = t
        if frame.format.name not in _DIRECT_LUMA:
            frame = frame.reformat(format="gray")
        luma = _luma_view(frame)
        self.width, self.height = luma.shape[1], luma.shape[0]
        return t, luma, key, corrupt or self.backwards(), bframe

    def backwards(self) -> bool:
        """A time that ran backwards marks the next frame kept (read once)."""
        was, self.ran_backwards = self.ran_backwards, False
        return was


class _AudioSegmenter:
    """Decodes each segment's audio with a fresh decoder fed from ``AUDIO_PREROLL`` before it.

    Lossy audio decoders carry state that never re-converges after a seek (FFmpeg's AAC decoder
    draws perceptual-noise-substitution bands from a random generator seeded once per decoder), so
    a segment decoded after a seek would differ from the same segment in a continuous pass. Giving
    every segment its own decoder, started a fixed preroll before it, makes a segment's samples a
    function of the segment alone: the same in ``vqa analyze``, in a monolith shard and in the
    distributed converter that seeks to it. The cost is decoding the preroll twice (audio only).
    """

    def __init__(self, stream: Any, t0: float, rate: int, seg_samples: int) -> None:
        cc = stream.codec_context
        self.name, self.extradata, self.layout = cc.name, cc.extradata, cc.layout
        self.t0, self.rate, self.seg_samples = t0, rate, seg_samples
        self.preroll = round(AUDIO_PREROLL * rate)
        self.packets: deque[tuple[int, int, Any]] = deque()
        self.end = -math.inf  # seconds: end of the last packet demuxed

    def add(self, packet: Any) -> None:
        if packet.pts is None or not packet.size:
            return
        tb = float(packet.time_base)
        first = round((packet.pts * tb - self.t0) * self.rate)
        n = round((packet.duration or 0) * tb * self.rate) or 1024
        self.packets.append((first, first + n, packet))
        self.end = max(self.end, (first + n) / self.rate)

    def _decoder(self) -> Any:
        ctx = av.CodecContext.create(self.name, "r")
        if self.extradata:
            ctx.extradata = self.extradata
        ctx.sample_rate = self.rate
        ctx.layout = self.layout
        return ctx

    def decode(self, k: int, b: _Builder) -> bool:
        """Put segment ``k``'s samples into ``b``; True if any decoded."""
        lo, hi = k * self.seg_samples, (k + 1) * self.seg_samples
        feed = [p for s0, e0, p in self.packets if e0 > lo - self.preroll and s0 < hi]
        # Packets no later segment needs (its preroll starts at hi - preroll).
        while self.packets and self.packets[0][1] <= hi - self.preroll:
            self.packets.popleft()
        if not feed:
            return False
        ctx = self._decoder()
        got = False
        for packet in [*feed, None]:
            try:
                frames = ctx.decode(packet)
            except av.error.FFmpegError:
                continue  # a damaged audio packet: its samples stay a hole (zeros)
            for frame in frames:
                if frame.pts is None:
                    continue
                pcm = frame.to_ndarray()
                if pcm.dtype != np.float32:
                    pcm = _to_float(pcm)
                if not frame.format.is_planar:
                    pcm = pcm.reshape(-1, len(frame.layout.channels)).T
                first = round((frame.pts * float(frame.time_base) - self.t0) * self.rate)
                a, z = max(first, lo, 0), min(first + pcm.shape[1], hi)
                if z > a:
                    b.add_audio(a, np.array(pcm[:, a - first : z - first], dtype=np.float32))
                    got = True
        return got


def iter_segments(
    source: str,
    *,
    segment_seconds: float = 1.0,
    start_index: int = 0,
    stop_index: int | None = None,
    s3_client: Any | None = None,
    info: dict[str, Any] | None = None,
    tracks: Collection[str] = ("video", "audio"),
) -> Iterator[Segment]:
    """Decode ``source`` into consecutive segments, from ``start_index`` (seeking) on.

    ``tracks`` limits decoding to ``"video"`` and/or ``"audio"`` (a monolith shard running only
    audio detectors never decodes the picture); a track not decoded is ``None`` in every segment.
    Times stay relative to the start of *all* streams, so they match a full decode.

    ``info``, if given, is filled with ``has_video``, ``has_audio``, ``skipped`` (stream -> reason)
    and, once the iterator is exhausted, ``duration``.
    Raises :class:`BadSourceError` when nothing in the source can be analysed.
    """
    if not segment_seconds > 0:
        raise ValueError("segment_seconds must be positive")
    info = {} if info is None else info
    tees: list[TsTee] = []
    container = _open_container(source, s3_client, tees)
    try:
        with container:
            yield from _segments(
                container,
                source,
                segment_seconds,
                start_index,
                stop_index,
                info,
                tracks,
                tee=tees[0] if tees else None,
            )
    finally:
        for t in tees:
            t.close_source()


def _segments(
    container: Any,
    source: str,
    seg_len: float,
    start_index: int,
    stop_index: int | None,
    info: dict[str, Any],
    tracks: Collection[str] = ("video", "audio"),
    *,
    tee: TsTee | None = None,
) -> Iterator[Segment]:
    """The segments of an open container (see :func:`iter_segments`). ``tee``: the MPEG-TS
    reader the container reads through; each segment then carries its packets (``transport``).
    """
    skipped: dict[str, str] = {}
    video = next(iter(container.streams.video), None)
    audio = next(iter(container.streams.audio), None)
    if video is not None and (why := _decodable(video)):
        skipped["video"] = why
        video = None
    if audio is not None and (why := _decodable(audio)):
        skipped["audio"] = why
        audio = None
    if video is None and audio is None:
        reason = "; ".join(f"{k}: {v}" for k, v in skipped.items()) or "no audio or video stream"
        raise BadSourceError(source, reason)
    info.update(has_video=video is not None, has_audio=audio is not None, skipped=skipped)

    starts = [
        s.start_time * float(s.time_base)
        for s in (video, audio)
        if s is not None and s.start_time is not None
    ]
    t0 = min(starts) if starts else 0.0
    if "video" not in tracks:
        video = None
    if "audio" not in tracks:
        audio = None
    if video is None and audio is None and tee is not None:
        # Only the packets are wanted (a transport-only shard): cut them by time, no decoding.
        _seek(container, source, t0, start_index * seg_len, start_index)
        yield from _transport_only(tee, t0, seg_len, start_index, stop_index, info)
        return
    if video is None and audio is None:
        # Nothing asked for is here: one empty segment lets detectors say they were skipped.
        info["duration"] = float(container.duration / av.time_base) if container.duration else 0.0
        yield Segment(
            index=start_index,
            start=start_index * seg_len,
            end=(start_index + 1) * seg_len,
            last=True,
        )
        return
    vstate = (
        _VideoState(video, t0, container_format=container.format.name)
        if video is not None
        else None
    )
    if video is not None:
        video.thread_type = VIDEO_THREADS
    rate = int(audio.codec_context.sample_rate or audio.rate or 48000) if audio is not None else 0
    seg_samples = round(seg_len * rate) if rate else 0
    asegs = _AudioSegmenter(audio, t0, rate, seg_samples) if audio is not None else None

    first_t = start_index * seg_len
    _seek(container, source, t0, first_t, start_index)
    if tee is not None:
        # The packets before the first segment (the seek's preroll) are not this pass's.
        tee.start(t0, offset=0 if start_index == 0 else None)
        if start_index > 0:
            tee.take(first_t)

    builders: dict[int, _Builder] = {}
    next_emit = start_index
    watermark = {
        "v": -math.inf if video is not None else math.inf,
        "a": -math.inf if audio is not None else math.inf,
    }
    last_v_end = 0.0
    last_a_end = 0.0
    last_vpts: int | None = None  # of the last video packet demuxed
    decoded_any = False
    demux_streams = [s for s in (video, audio) if s is not None]

    def builder(k: int) -> _Builder:
        b = builders.get(k)
        if b is None:
            b = builders[k] = _Builder()
        return b

    def make(k: int, last: bool) -> Segment:
        nonlocal decoded_any
        b = builders.pop(k, None) or _Builder()
        if asegs is not None and asegs.decode(k, b):
            decoded_any = True
        vt = None
        if vstate is not None:
            vt = VideoTrack(
                times=np.asarray(b.times, dtype=np.float64),
                planes=b.planes,
                key=np.asarray(b.keys, dtype=np.bool_),
                corrupt=np.asarray(b.corrupt, dtype=np.bool_),
                bframe=np.asarray(b.bframes, dtype=np.bool_),
                frame_duration=vstate.frame_duration(),
                width=vstate.width,
                height=vstate.height,
            )
        at = None
        if audio is not None:
            chans = len(audio.codec_context.layout.channels) or 1
            pcm = (
                np.concatenate(b.a_chunks, axis=1)
                if b.a_chunks
                else np.zeros((chans, 0), np.float32)
            )
            first = b.a_first if b.a_first is not None else k * seg_samples
            at = AudioTrack(start=first / rate, rate=rate, samples=pcm)
        return Segment(
            index=k,
            start=k * seg_len,
            end=(k + 1) * seg_len,
            video=vt,
            audio=at,
            last=last,
            transport=None if tee is None else tee.take(None if last else (k + 1) * seg_len),
        )

    def ready() -> Iterator[Segment]:
        nonlocal next_emit
        low = min(watermark.values())
        finite = [v for v in watermark.values() if v != math.inf]
        high = max(finite) if finite else low
        while True:
            end = (next_emit + 1) * seg_len
            if not (low >= end - 1e-9 or (high - end) > MAX_STREAM_SKEW):
                return
            if stop_index is not None and next_emit >= stop_index:
                return
            yield make(next_emit, last=False)
            next_emit += 1

    def on_video(frame: Any) -> None:
        assert vstate is not None
        for conv in vstate.convert(frame):
            place(conv)

    def place(conv: tuple[float, NDArray[np.uint8], bool, bool, bool]) -> None:
        nonlocal last_v_end, decoded_any
        assert vstate is not None
        t, luma, key, corrupt, bframe = conv
        decoded_any = True
        last_v_end = t + vstate.frame_duration()
        watermark["v"] = t
        if t < first_t - 1e-9:
            return
        k = math.floor(t / seg_len + 1e-9)
        if k < next_emit:
            return  # a late frame for a segment already handed out: its time was passed
        b = builder(k)
        b.times.append(t)
        b.planes.append(luma)
        b.keys.append(key)
        b.corrupt.append(corrupt)
        b.bframes.append(bframe)

    try:
        for packet in container.demux(*demux_streams):
            if asegs is not None and packet.stream is audio:
                asegs.add(packet)
                watermark["a"] = asegs.end
                last_a_end = max(last_a_end, asegs.end)
            else:
                if packet.pts is not None:
                    last_vpts = packet.pts
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as exc:
                    # The decoder rejected this packet: the frame it carried is lost (a timestamp
                    # gap) and the next frame out references damaged data.
                    assert vstate is not None
                    vstate.pending_error = True
                    log.debug("%s: packet rejected: %s", source, exc)
                    continue
                for frame in frames:
                    on_video(frame)
            yield from ready()
            if stop_index is not None and next_emit >= stop_index:
                info["duration"] = max(last_v_end, last_a_end)
                return
    except av.error.FFmpegError as exc:
        # Demuxing failed part-way (e.g. truncated file): analyse what decoded.
        log.warning("%s: stopped reading: %s", source, _reason(exc))
    if video is not None:
        # Drain the decoder. With frame threading an error from a damaged tail can surface here;
        # it marks the next frame out, and draining goes on so no decodable frame is lost.
        assert vstate is not None
        for _ in range(256):
            try:
                frames = video.decode(None)
            except av.error.EOFError:
                break
            except av.error.FFmpegError:
                vstate.pending_error = True
                continue
            for frame in frames:
                on_video(frame)
            if not frames:
                break
        for conv in vstate.drain():
            place(conv)
        if tee is not None and tee.cut_pid() == video.id:
            # The source ends inside a video packet: the last picture's data never arrived
            # whole. The decoder conceals what is missing and says so or not, depending on its
            # threads (FFmpeg 8's H.264: frame threads mostly do, a single thread never does);
            # the cut itself is certain, so the picture is marked from it.
            _mark_cut(builders, vstate, last_vpts)
        if vstate.pending_error:
            # The error surfaced after the last frame came out (frame threads report late): it
            # belongs to the tail, so the last frame still waiting in a segment carries it.
            tail = [b for _, b in sorted(builders.items()) if b.corrupt]
            if tail:
                tail[-1].corrupt[-1] = True
            vstate.pending_error = False
    if not decoded_any and start_index == 0 and (asegs is None or asegs.end == -math.inf):
        raise BadSourceError(source, "no frame could be decoded")
    duration = max(last_v_end, last_a_end)
    info["duration"] = duration
    final = max(next_emit, math.ceil(duration / seg_len - 1e-9) - 1, *builders.keys(), 0)
    while next_emit <= final:
        if stop_index is not None and next_emit >= stop_index:
            return
        yield make(next_emit, last=next_emit == final)
        next_emit += 1


def _seek(container: Any, source: str, t0: float, first_t: float, start_index: int) -> None:
    """Seek to ``SEEK_PREROLL`` before segment ``start_index`` (at ``first_t`` s)."""
    if start_index > 0:
        target = t0 + max(0.0, first_t - SEEK_PREROLL)
        try:
            container.seek(int(target * av.time_base), backward=True, any_frame=False)
        except av.error.FFmpegError as exc:
            raise BadSourceError(
                source, f"cannot seek to segment {start_index}: {_reason(exc)}"
            ) from None


def _mark_cut(builders: dict[int, _Builder], vstate: _VideoState, pts: int | None) -> None:
    """Mark the frame with ``pts`` corrupt, if it waits in a segment not yet handed out."""
    if pts is None:
        return
    t = pts * vstate.tb - vstate.t0
    for b in builders.values():
        for i, bt in enumerate(b.times):
            if abs(bt - t) < 1e-6:
                b.corrupt[i] = True


def _transport_only(
    tee: TsTee,
    t0: float,
    seg_len: float,
    start_index: int,
    stop_index: int | None,
    info: dict[str, Any],
) -> Iterator[Segment]:
    """Segments carrying only their MPEG-TS packets, cut by packet time until the source ends."""
    tee.start(t0, offset=0 if start_index == 0 else None)
    if start_index > 0:
        tee.take(start_index * seg_len)
    k = start_index
    while stop_index is None or k < stop_index:
        chunk = tee.take((k + 1) * seg_len)
        last = tee.exhausted
        info["duration"] = max(info.get("duration", 0.0), tee.time_reached)
        yield Segment(index=k, start=k * seg_len, end=(k + 1) * seg_len, last=last, transport=chunk)
        if last:
            return
        k += 1


def _to_float(pcm: NDArray[Any]) -> NDArray[np.float32]:
    if pcm.dtype == np.int16:
        return (pcm.astype(np.float32) / 32768.0).astype(np.float32)
    if pcm.dtype == np.int32:
        return (pcm.astype(np.float64) / 2147483648.0).astype(np.float32)
    if pcm.dtype == np.uint8:
        return ((pcm.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    return pcm.astype(np.float32)


def decode_segment(
    source: str, index: int, *, segment_seconds: float = 1.0, s3_client: Any | None = None
) -> Segment:
    """Decode only segment ``index`` (seeking to it); ``last`` tells whether it ends the source.

    An index past the end gives an empty segment with ``last=True``.
    """
    it = iter_segments(
        source,
        segment_seconds=segment_seconds,
        start_index=index,
        stop_index=index + 1,
        s3_client=s3_client,
    )
    # A segment handed out before the end of the source has data after it; the one handed out at
    # the end of the source carries last=True itself.
    for seg in it:
        return seg
    return Segment(
        index=index, start=index * segment_seconds, end=(index + 1) * segment_seconds, last=True
    )


def probe(source: str, *, s3_client: Any | None = None) -> SourceInfo:
    """Stream facts from the container header (no full decode)."""
    container = _open_container(source, s3_client)
    with container:
        v = next(iter(container.streams.video), None)
        a = next(iter(container.streams.audio), None)
        skipped: dict[str, str] = {}
        if v is not None and (why := _decodable(v)):
            skipped["video"], v = why, None
        if a is not None and (why := _decodable(a)):
            skipped["audio"], a = why, None
        if v is None and a is None:
            raise BadSourceError(source, "; ".join(skipped.values()) or "no audio or video stream")
        duration = float(container.duration / av.time_base) if container.duration else 0.0
        rate = (v.average_rate or v.guessed_rate) if v is not None else None
        return SourceInfo(
            source=source,
            duration=duration,
            has_video=v is not None,
            has_audio=a is not None,
            video_codec=v.codec_context.name if v is not None else None,
            audio_codec=a.codec_context.name if a is not None else None,
            width=int(v.codec_context.width) if v is not None else 0,
            height=int(v.codec_context.height) if v is not None else 0,
            fps=float(rate) if rate else 0.0,
            skipped=skipped,
            transport=container.format.name.split(",")[0] == "mpegts"
            and urlparse(source).scheme not in ("http", "https"),
        )
