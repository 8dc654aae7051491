"""Block corruption: bitstream damage and the pictures it spoils.

FFmpeg's ``blockdetect`` filter measures blockiness from pixels alone; on flipped bytes, dropped
packets and damaged MPEG-TS packets it flagged nothing in our trials, while the decoder knew. This
detector therefore starts from the decoder's own signals, which media conversion records per frame:

- ``corrupt``: the decoder concealed errors in the frame (``AV_FRAME_FLAG_CORRUPT``), or rejected the
  packet before it (the frame out next references damaged data), or a timestamp ran backwards;
- ``gap_before``: time missing before the frame beyond one frame duration (a dropped packet, which
  leaves no other trace when the lost frame was not a reference).

A damaged picture stays damaged until the next keyframe that decodes clean (prediction carries the
damage forward), so the reported interval runs from the first damaged frame, or from where the
missing frames would have been shown, to that keyframe. A gap whose next frame decodes clean spoils
only the missing frames. Intervals closer than ``merge_window`` are reported as one.

An image measure checks the decoder's word where it has none to give: ``blockiness`` is the ratio of
luma steps across the 8-pixel coding-block grid to steps inside blocks (about 1 on clean pictures,
well above on block garbage). A run of at least ``image_min_frames`` frames above ``image_threshold``
is reported even without a decoder signal (e.g. damage baked in upstream before encoding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vqa.defects import Defect
from vqa.detectors.base import Detector
from vqa.segment import Segment


@dataclass(frozen=True)
class CorruptionConfig:
    gap_frames: float = 0.5  # a gap beyond this many frame durations is missing pictures
    merge_window: float = 0.5  # seconds: closer intervals are one defect
    image_threshold: float = 2.5  # blockiness ratio for image-only evidence
    image_min_frames: int = 3
    row_step: int = 4  # rows sampled for the blockiness measure


def blockiness(planes: list[NDArray[np.uint8]], row_step: int) -> NDArray[np.float64]:
    """``(n,)`` mean |horizontal step| on the 8-px grid / mean step elsewhere, per frame.

    Sampled on every ``row_step``-th row of the full-resolution luma (the grid is lost on the
    thumbnail). Flat pictures (no steps at all) give 1.0.
    """
    out = np.ones(len(planes))
    for i, plane in enumerate(planes):
        w = plane.shape[1] - plane.shape[1] % 8
        if w < 16:
            continue
        rows = plane[::row_step, :w].astype(np.int16)
        steps = np.abs(rows[:, 1:] - rows[:, :-1])
        # steps[:, 8k+7] is the step from column 8k+7 to 8k+8: across a block edge.
        edge = steps[:, 7::8]
        edge_sum, edge_n = float(edge.sum()), edge.size
        inner = (float(steps.sum()) - edge_sum) / max(1, steps.size - edge_n)
        out[i] = (edge_sum / max(1, edge_n) + 0.5) / (inner + 0.5)
    return out


class CorruptionDetector(Detector[CorruptionConfig]):
    name = "corruption"
    needs = "video"
    Config = CorruptionConfig

    def reset(self) -> None:
        self._open: float | None = None  # start of the open damaged interval (until a keyframe)
        self._pending: list[float] | None = None  # a closed interval held for merging
        self._frames = 0  # damaged frames seen in the current/pending interval
        self._evidence: dict[str, int] = {}
        self._image_run: list[float] = []  # start times of the current high-blockiness run
        self._cause: str | None = None  # what opened the interval: "signal" or "image"
        self._concealed = False  # a decoder-flagged frame since the interval opened
        self._last_end = 0.0

    # An interval closes into "pending" and is reported once nothing follows within merge_window.
    def _begin(self, start: float, out: list[Defect]) -> None:
        if self._pending is not None:
            if start - self._pending[1] <= self.config.merge_window:
                self._open = min(self._pending[0], start)
                self._pending = None
                return
            out += self._emit()
        if self._open is None:
            self._open = start

    def _emit(self) -> list[Defect]:
        if self._pending is None:
            return []
        start, end = self._pending
        self._pending = None
        detail = {"evidence": dict(sorted(self._evidence.items())), "frames": self._frames}
        self._evidence, self._frames = {}, 0
        if end <= start:
            return []
        return [Defect(start=start, end=end, kind=self.name, detail=detail)]

    def _note(self, what: str) -> None:
        self._evidence[what] = self._evidence.get(what, 0) + 1

    def process(self, segment: Segment) -> list[Defect]:
        v = segment.video
        if v is None or len(v) == 0:
            return []
        cfg = self.config
        out: list[Defect] = []
        image_bad = blockiness(v.planes, cfg.row_step) >= cfg.image_threshold
        for i in range(len(v)):
            t = float(v.times[i])
            if self._pending is not None and t - self._pending[1] > cfg.merge_window:
                out += self._emit()
            gap = float(v.gap_before[i])
            if gap > cfg.gap_frames * v.frame_duration:
                # The missing pictures would have been shown from t - gap.
                self._begin(t - gap, out)
                self._note("timestamp_gap")
                self._cause = "signal"
            if v.corrupt[i]:
                self._begin(t, out)
                self._note("decoder")
                self._cause = "signal"
                self._concealed = True
                self._frames += 1
            elif self._open is not None and self._cause == "signal":
                if v.key[i] or not self._concealed:
                    # A clean keyframe makes the picture whole; a clean frame right after a gap
                    # means the lost frame was not a reference: only the missing time was spoiled.
                    self._end(t)
                else:
                    self._frames += 1
            # Image-only evidence: a sustained run of block-grid pictures.
            if image_bad[i]:
                self._image_run.append(t)
                if len(self._image_run) >= cfg.image_min_frames and self._open is None:
                    self._begin(self._image_run[0], out)
                    self._note("blockiness")
                    self._cause = "image"
                if self._open is not None and self._cause == "image":
                    self._frames += 1
            else:
                self._image_run = []
                if self._open is not None and self._cause == "image":
                    self._end(t)
            self._last_end = v.end_time(i)
        return out

    def _end(self, end: float) -> None:
        if self._open is None:
            return
        self._pending = [self._open, max(end, self._open)]
        self._open = None
        self._concealed = False
        self._cause = None

    def flush(self) -> list[Defect]:
        self._end(self._last_end)
        return self._emit()

    def get_state(self) -> dict[str, Any]:
        return {
            "open": self._open,
            "pending": self._pending,
            "frames": self._frames,
            "evidence": self._evidence,
            "image_run": self._image_run,
            "cause": self._cause,
            "concealed": self._concealed,
            "last_end": self._last_end,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._open = state["open"]
        self._pending = state["pending"]
        self._frames = state["frames"]
        self._evidence = dict(state["evidence"])
        self._image_run = list(state["image_run"])
        self._cause = state["cause"]
        self._concealed = state["concealed"]
        self._last_end = state["last_end"]
