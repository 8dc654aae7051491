"""The worker's self-test: encode a small clip in memory, decode it, run the detector group.

It proves the image holds a working PyAV/FFmpeg (the H.264 and AAC decoders streams use), numpy
and every detector module, with no AWS involved and **without writing a byte**: the ECS task runs
on a read-only root filesystem, so the clip is encoded into an ``io.BytesIO`` and read back
through the same ranged-read path the worker uses for ``s3://`` sources, served from memory.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from vqa.defects import Defect
from vqa.worker.jobs import Job, run_detectors

FPS = 30
SAMPLE_RATE = 48_000
#: The defects the clip carries, each longer than its detector's default minimum duration.
KINDS = ("black", "silence")


def layout() -> tuple[float, dict[str, tuple[float, float]]]:
    """The clip's length and its defects (``kind: (start, end)`` in seconds), long enough for the
    detectors' current defaults, so that a threshold change cannot fail the image's self-test."""
    from vqa.detectors import create

    hold = max(float(getattr(create(k).config, "min_duration", 0.0)) for k in KINDS) + 0.5
    seconds = float(math.ceil(hold + 2.0))  # at least 1 s of programme either side
    return seconds, {kind: (1.0, 1.0 + hold) for kind in KINDS}


def synthetic_clip(*, width: int = 160, height: int = 96) -> bytes:
    """H.264 + AAC in MP4, built in memory: a moving luma ramp, black over the layout's ``black``
    span, and a 440 Hz tone, silent over its ``silence`` span."""
    import av

    seconds, spans = layout()
    n_frames = round(seconds * FPS)
    n_samples = round(seconds * SAMPLE_RATE)
    ramp = np.arange(width, dtype=np.int32)[None, :] + np.arange(height, dtype=np.int32)[:, None]
    chroma = np.full((height // 2, width), 128, np.uint8)
    t = np.arange(n_samples) / SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    s0, s1 = (round(v * SAMPLE_RATE) for v in spans["silence"])
    tone[s0:s1] = 0.0
    pcm = np.stack([tone, tone])
    b0, b1 = spans["black"]
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=FPS, options={"preset": "ultrafast"})
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        aus = out.add_stream("aac", rate=SAMPLE_RATE, layout="stereo")
        for i in range(n_frames):
            if b0 <= i / FPS < b1:
                luma = np.full((height, width), 16, np.uint8)
            else:
                luma = (30 + (ramp + 4 * i) % 200).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.vstack([luma, chroma]), format="yuv420p")
            frame.pts = i
            for pkt in vs.encode(frame):
                out.mux(pkt)
        for pos in range(0, n_samples, 1024):
            chunk = np.ascontiguousarray(pcm[:, pos : pos + 1024])
            af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            af.sample_rate = SAMPLE_RATE
            af.pts = pos
            af.time_base = Fraction(1, SAMPLE_RATE)
            for pkt in aus.encode(af):
                out.mux(pkt)
        for stream in (vs, aus):
            for pkt in stream.encode():
                out.mux(pkt)
    return buf.getvalue()


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, amt: int | None = None) -> bytes:
        return self._data


class MemoryObjectClient:
    """Serves one in-memory object through the two S3 calls a ``s3://`` source makes
    (``head_object``, ranged ``get_object``), so the self-test decodes with no file at all."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def head_object(self, **_kwargs: Any) -> dict[str, Any]:
        return {"ContentLength": len(self.data)}

    def get_object(self, *, Range: str | None = None, **_kwargs: Any) -> dict[str, Any]:
        data = self.data
        if Range:
            first, _, last = Range.removeprefix("bytes=").partition("-")
            data = data[int(first) : int(last) + 1 if last else None]
        return {"Body": _Body(data), "ContentLength": len(data)}


def self_test(detectors: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the detector group over :func:`synthetic_clip`: ``ok`` when every segment decoded and
    each of the clip's defects whose detector is in the group was found where it was put."""
    import av

    import vqa
    from vqa.detectors import DETECTORS

    names = list(detectors or DETECTORS)
    seconds, spans = layout()
    found: list[Defect] = []
    result = run_detectors(
        Job(stream="self-test", source="s3://self-test/clip.mp4", shard="self-test"),
        detectors=names,
        s3_client=MemoryObjectClient(synthetic_clip()),
        emit=found.extend,
    )
    missing = [
        kind
        for kind, (start, end) in spans.items()
        if kind in names
        and not any(d.kind == kind and d.start < end and start < d.end for d in found)
    ]
    return {
        "ok": result.segments == round(seconds) and not missing,
        "av": av.__version__,
        "ffmpeg": av.ffmpeg_version_info,
        "numpy": np.__version__,
        "detectors": names,
        "segments": result.segments,
        "defects": len(found),
        "kinds": sorted({d.kind for d in found}),
        "missing": missing,
        "package": str(Path(vqa.__file__).resolve().parent),
    }
