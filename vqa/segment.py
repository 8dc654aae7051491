"""Segments: the unit that media conversion hands to detectors.

A segment covers ``[start, end)`` seconds of the source. Its video part holds the decoded luma
planes as zero-copy numpy views of the decoder's frames (the frames stay alive as long as the
views do) plus per-frame decoder signals; its audio part holds float32 PCM.

The same object is serialised to the distributed architecture's intermediate bucket, either as
one object per segment or one object per frame plus one audio buffer (as Prime Video did).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: Width of the analysis thumbnails the video detectors share (see :func:`analysis_stride`).
THUMB_TARGET_WIDTH = 160


def cadence(deltas: Sequence[float], fallback: float) -> float:
    """The frame duration: the median of recent frame intervals, ``fallback`` until there are 3.

    A plain sort: for the 15 intervals kept it is much cheaper per frame than ``np.median``.
    """
    if len(deltas) < 3:
        return fallback
    d = sorted(deltas)
    mid = len(d) // 2
    return d[mid] if len(d) % 2 else 0.5 * (d[mid - 1] + d[mid])


def analysis_stride(width: int) -> int:
    """Decimation step for the shared analysis thumbnail: 1080p -> 12 (160x90), 720p -> 8."""
    return max(1, width // THUMB_TARGET_WIDTH)


@dataclass
class VideoTrack:
    """The video frames of one segment.

    Shapes: ``n`` frames; each plane ``(height, width)`` uint8 luma (a view, rows may be strided).
    ``times`` are presentation times in seconds from the source start.
    """

    times: NDArray[np.float64]
    planes: list[NDArray[np.uint8]]
    key: NDArray[np.bool_]
    corrupt: NDArray[np.bool_]
    frame_duration: float
    width: int
    height: int
    #: B-pictures (no later anchor picture references them); from the decoder's picture type.
    bframe: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=np.bool_))
    _thumbs: NDArray[np.uint8] | None = field(default=None, repr=False)
    _hist: NDArray[np.int64] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.planes)

    @property
    def thumbs(self) -> NDArray[np.uint8]:
        """``(n, h, w)`` decimated luma shared by every video detector, computed once."""
        if self._thumbs is None:
            step = analysis_stride(self.width)
            h = (self.height + step - 1) // step
            w = (self.width + step - 1) // step
            out = np.empty((len(self.planes), h, w), dtype=np.uint8)
            for i, plane in enumerate(self.planes):
                np.copyto(out[i], plane[::step, ::step])
            self._thumbs = out
        return self._thumbs

    @property
    def hist(self) -> NDArray[np.int64]:
        """``(n, 256)`` luma histograms of the thumbnails (pixel counts), computed once."""
        if self._hist is None:
            thumbs = self.thumbs
            n = thumbs.shape[0]
            if n == 0:
                self._hist = np.zeros((0, 256), dtype=np.int64)
            else:
                flat = thumbs.reshape(n, -1).astype(np.int32)
                flat += (np.arange(n, dtype=np.int32) * 256)[:, None]
                self._hist = np.bincount(flat.ravel(), minlength=n * 256).reshape(n, 256)
        return self._hist

    def end_time(self, i: int) -> float:
        """Exclusive end of frame ``i``: the next frame's time, or one nominal duration."""
        if i + 1 < len(self.times):
            return float(self.times[i + 1])
        return float(self.times[i]) + self.frame_duration


@dataclass
class AudioTrack:
    """PCM of one segment: ``samples`` is ``(channels, n)`` float32 in [-1, 1] (may exceed)."""

    start: float
    rate: int
    samples: NDArray[np.float32]

    @property
    def n(self) -> int:
        return int(self.samples.shape[1])

    @property
    def end(self) -> float:
        return self.start + self.n / self.rate


@dataclass
class TransportChunk:
    """The MPEG-TS bytes of one segment (:mod:`vqa.tsanalysis`): the packets timed in the
    segment, as read (a packet may straddle two chunks where sync was lost), from byte
    ``offset`` of the source. Byte offset -> stream time is linear between the anchors
    (``anchor_offsets`` increasing, ``anchor_times`` in seconds), clamped outside them.
    ``follows``: the bytes continue the previous chunk's (False after a live reconnection).
    ``hls``: from an HLS media segment (PAT and PMT come once per segment there).
    """

    data: bytes
    offset: int
    anchor_offsets: list[int]
    anchor_times: list[float]
    follows: bool = True
    hls: bool = False

    def shifted(self, seconds: float) -> TransportChunk:
        """The same bytes ``seconds`` later (live monitoring puts each piece on stream time)."""
        return TransportChunk(
            self.data,
            self.offset,
            self.anchor_offsets,
            [t + seconds for t in self.anchor_times],
            self.follows,
            self.hls,
        )

    def meta(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "anchor_offsets": self.anchor_offsets,
            "anchor_times": self.anchor_times,
            "follows": self.follows,
            "hls": self.hls,
        }

    @classmethod
    def from_meta(cls, meta: dict[str, Any], data: bytes) -> TransportChunk:
        return cls(
            data=data,
            offset=int(meta["offset"]),
            anchor_offsets=[int(o) for o in meta["anchor_offsets"]],
            anchor_times=[float(t) for t in meta["anchor_times"]],
            follows=bool(meta.get("follows", True)),
            hls=bool(meta.get("hls", False)),
        )


@dataclass
class Segment:
    """``[start, end)`` seconds of a source; either track may be absent.

    ``transport``: for an MPEG-TS source, the packets of the segment (``None`` otherwise).
    """

    index: int
    start: float
    end: float
    video: VideoTrack | None = None
    audio: AudioTrack | None = None
    #: True for the last segment of the source.
    last: bool = False
    transport: TransportChunk | None = None

    # ---- serialisation for the distributed architecture's intermediate bucket ----

    def meta(self) -> dict[str, Any]:
        v = self.video
        return {
            "index": self.index,
            "start": self.start,
            "end": self.end,
            "last": self.last,
            "video": None
            if v is None
            else {
                "n": len(v),
                "width": v.width,
                "height": v.height,
                "frame_duration": v.frame_duration,
                "times": v.times.tolist(),
                "key": v.key.tolist(),
                "corrupt": v.corrupt.tolist(),
                "bframe": v.bframe.tolist(),
            },
            "audio": None
            if self.audio is None
            else {
                "start": self.audio.start,
                "rate": self.audio.rate,
                "channels": int(self.audio.samples.shape[0]),
            },
            "transport": None if self.transport is None else self.transport.meta(),
        }

    def to_objects(self, granularity: str = "segment") -> dict[str, bytes]:
        """Serialise to named objects.

        ``{"segment": ...}``, or ``{"meta", "frame-00000", ..., "audio"}`` per frame; an MPEG-TS
        source's packets are one more object, ``"transport"``, at both granularities (the
        transport detector reads only it and ``meta``/``segment``).
        """
        if granularity == "segment":
            objects = {"segment": _pack(self.meta(), self._arrays())}
            if self.transport is not None:
                objects["transport"] = self._transport_object()
            return objects
        if granularity != "frame":
            raise ValueError(f"granularity must be 'segment' or 'frame', not {granularity!r}")
        objects = {"meta": json.dumps(self.meta()).encode()}
        if self.video is not None:
            for i, plane in enumerate(self.video.planes):
                objects[f"frame-{i:05d}"] = _pack({"i": i}, {"luma": np.ascontiguousarray(plane)})
        if self.audio is not None:
            objects["audio"] = _pack({}, {"pcm": self.audio.samples})
        if self.transport is not None:
            objects["transport"] = self._transport_object()
        return objects

    def _transport_object(self) -> bytes:
        """The packets with the segment's meta: enough on its own for the transport detector."""
        assert self.transport is not None
        meta = {**self.meta(), "video": None, "audio": None}
        return _pack(meta, {"ts": np.frombuffer(self.transport.data, dtype=np.uint8)})

    @classmethod
    def from_objects(cls, objects: dict[str, bytes]) -> Segment:
        """Inverse of :meth:`to_objects` for either granularity."""
        ts: bytes | None = None
        if "transport" in objects:
            tmeta, tarrays = _unpack(objects["transport"])
            ts = tarrays["ts"].tobytes()
        if "segment" in objects:
            meta, arrays = _unpack(objects["segment"])
            planes = list(arrays["luma"]) if "luma" in arrays else []
            pcm = arrays.get("pcm")
        elif "meta" not in objects and ts is not None:  # the transport object alone
            meta, planes, pcm = tmeta, [], None
        else:
            meta = json.loads(objects["meta"])
            frames = sorted(k for k in objects if k.startswith("frame-"))
            planes = [_unpack(objects[k])[1]["luma"] for k in frames]
            pcm = _unpack(objects["audio"])[1]["pcm"] if "audio" in objects else None
        segment = cls._from_meta(meta, planes, pcm)
        if meta.get("transport") is not None and ts is not None:
            segment.transport = TransportChunk.from_meta(meta["transport"], ts)
        return segment

    def _arrays(self) -> dict[str, NDArray[Any]]:
        arrays: dict[str, NDArray[Any]] = {}
        if self.video is not None and len(self.video):
            arrays["luma"] = np.stack([np.ascontiguousarray(p) for p in self.video.planes])
        if self.audio is not None:
            arrays["pcm"] = self.audio.samples
        return arrays

    @classmethod
    def _from_meta(
        cls,
        meta: dict[str, Any],
        planes: list[NDArray[np.uint8]],
        pcm: NDArray[np.float32] | None,
    ) -> Segment:
        video = None
        if meta["video"] is not None:
            v = meta["video"]
            video = VideoTrack(
                times=np.asarray(v["times"], dtype=np.float64),
                planes=planes,
                key=np.asarray(v["key"], dtype=np.bool_),
                corrupt=np.asarray(v["corrupt"], dtype=np.bool_),
                bframe=np.asarray(v["bframe"], dtype=np.bool_),
                frame_duration=float(v["frame_duration"]),
                width=int(v["width"]),
                height=int(v["height"]),
            )
        audio = None
        if meta["audio"] is not None:
            a = meta["audio"]
            samples = pcm if pcm is not None else np.zeros((a["channels"], 0), np.float32)
            audio = AudioTrack(start=float(a["start"]), rate=int(a["rate"]), samples=samples)
        return cls(
            index=int(meta["index"]),
            start=float(meta["start"]),
            end=float(meta["end"]),
            video=video,
            audio=audio,
            last=bool(meta.get("last", False)),
        )


def _pack(meta: dict[str, Any], arrays: dict[str, NDArray[Any]]) -> bytes:
    buf = io.BytesIO()
    arrays = {"__meta__": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays}
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def _unpack(data: bytes) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays.pop("__meta__").tobytes())
    return meta, arrays
