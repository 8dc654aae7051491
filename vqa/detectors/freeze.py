"""Frozen video: the same picture repeated.

FFmpeg's ``freezedetect`` compares each frame with the previous one (mean absolute difference below
-60 dB) and so splits a freeze in two wherever the encoder re-encodes the frozen picture at a
keyframe, and calls a slow pan frozen when consecutive frames differ by less than the noise floor.
This detector instead compares every frame with the *first* frame of the candidate freeze, on
8x8-pixel block means of the analysis thumbnail:

- ``block_tolerance`` (luma levels) on the largest block-mean change absorbs coding noise, which is
  spatially zero-mean and averages out within a block, but not motion, which moves block means, nor
  a slow pan, whose drift accumulates against the fixed reference;
- a frozen picture repeats *exactly* between most consecutive frames (skipped macroblocks), while a
  real held shot carries sensor or film grain: the median consecutive-frame mean absolute difference
  over the run must be at most ``noise_tolerance``;
- flat frames (black, a solid slate) are left to the black detector, and graphics (colour bars,
  test cards: at least ``graphic_share`` of the pixels on 16 luma levels) are a test signal
  being sent on purpose, not a stuck programme;
- ``min_duration`` 3.0 s (FFmpeg: 2.0 s): held shots in animation repeat the exact picture for
  1.3-1.7 s (measured on a 10-minute animated film, issue 11) and longer than 0.2 s nowhere in the
  real-footage set, while hardware monitors hold freeze for several seconds; 3 s leaves a margin of
  almost 2x. Shorter freezes stay findable with ``--set freeze.min_duration=1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vqa.defects import Defect
from vqa.detectors.base import Detector, decode_array, encode_array
from vqa.segment import Segment

_LEVELS = np.arange(256, dtype=np.float64)


@dataclass(frozen=True)
class FreezeConfig:
    block: int = 8  # block size in thumbnail pixels
    block_tolerance: float = 3.0  # luma levels, largest block-mean change vs the reference
    noise_tolerance: float = 0.5  # luma levels, median consecutive-frame MAD within the run
    flat_std: float = 2.0  # frames with less spatial detail than this are not judged
    graphic_share: float = 0.85  # frames with this share of pixels on 16 levels are not judged
    min_duration: float = 3.0  # seconds


def block_means(thumbs: NDArray[np.uint8], block: int) -> NDArray[np.float32]:
    """``(n, H//block, W//block)`` block means of ``(n, H, W)`` thumbnails."""
    n, h, w = thumbs.shape
    hb, wb = h // block, w // block
    if hb == 0 or wb == 0:
        return thumbs.reshape(n, 1, -1).mean(axis=2, keepdims=True, dtype=np.float32)
    crop = thumbs[:, : hb * block, : wb * block]
    return crop.reshape(n, hb, block, wb, block).mean(axis=(2, 4), dtype=np.float32)


def frame_std(hist: NDArray[np.int64]) -> NDArray[np.float64]:
    total = np.maximum(hist.sum(axis=1), 1).astype(np.float64)
    mean = hist @ _LEVELS / total
    return np.sqrt(np.maximum(hist @ (_LEVELS**2) / total - mean**2, 0.0))


def graphic_share(hist: NDArray[np.int64]) -> NDArray[np.float64]:
    """``(n,)`` share of pixels on each frame's 16 most common luma levels.

    Colour bars, slates and test cards are drawn from a handful of levels (after H.264: bars 1.0,
    the project's test card with a grey ramp 0.90); camera pictures, with grain and shading, and
    rendered animation spread over many more (real-footage set: at most 0.63, the Megamind
    trailer; Big Buck Bunny 0.16; street and sport scenes 0.19-0.45).
    """
    total = np.maximum(hist.sum(axis=1), 1).astype(np.float64)
    top = np.sort(hist, axis=1)[:, -16:].sum(axis=1)
    return top / total


class FreezeDetector(Detector[FreezeConfig]):
    name = "freeze"
    needs = "video"
    Config = FreezeConfig

    def reset(self) -> None:
        self._ref: NDArray[np.float32] | None = None  # block means of the run's first frame
        self._start: float | None = None
        self._end = 0.0
        # Consecutive-frame MADs in the run: how many, and how many within the noise tolerance
        # (the median is within it exactly when at least half are).
        self._n = 0
        self._quiet = 0
        self._prev: NDArray[np.uint8] | None = None  # last frame's MAD sample

    def process(self, segment: Segment) -> list[Defect]:
        v = segment.video
        if v is None or len(v) == 0:
            return []
        cfg = self.config
        thumbs = v.thumbs
        means = block_means(thumbs, cfg.block)
        flat = (frame_std(v.hist) < cfg.flat_std) | (graphic_share(v.hist) >= cfg.graphic_share)
        sample = thumbs[:, ::2, ::2]
        # Consecutive-frame mean absolute difference, vectorised over the segment.
        prev = np.concatenate([self._prev[None], sample[:-1]]) if self._prev is not None else None
        mads = np.full(len(v), np.nan)
        if prev is not None:
            mads[:] = np.abs(sample.astype(np.int16) - prev).mean(axis=(1, 2))
        elif len(v) > 1:
            mads[1:] = np.abs(sample[1:].astype(np.int16) - sample[:-1]).mean(axis=(1, 2))
        self._prev = sample[-1].copy()

        out: list[Defect] = []
        for i in range(len(v)):
            t = float(v.times[i])
            if flat[i]:
                out += self._close(t)
                self._ref = None
                continue
            if (
                self._ref is not None
                and float(np.abs(means[i] - self._ref).max()) <= cfg.block_tolerance
            ):
                self._end = v.end_time(i)
                if not np.isnan(mads[i]):
                    self._n += 1
                    self._quiet += int(mads[i] <= cfg.noise_tolerance)
                continue
            out += self._close(t)
            self._ref = means[i].copy()
            self._start = t
            self._end = v.end_time(i)
            self._n = self._quiet = 0
        return out

    def _close(self, end: float) -> list[Defect]:
        start, n, quiet = self._start, self._n, self._quiet
        self._start, self._n, self._quiet = None, 0, 0
        if start is None or end - start < self.config.min_duration - 1e-9 or n == 0:
            return []
        if 2 * quiet < n:
            return []  # a held shot with grain, not a repeated picture
        return [Defect(start=start, end=end, kind=self.name)]

    def flush(self) -> list[Defect]:
        out = self._close(self._end)
        self._ref = None
        return out

    def open_start(self) -> float | None:
        # The same tests as _close: long enough, and the picture repeating exactly so far.
        start, n = self._start, self._n
        if start is None or n == 0 or 2 * self._quiet < n:
            return None
        return start if self._end - start >= self.config.min_duration - 1e-9 else None

    def get_state(self) -> dict[str, Any]:
        return {
            "ref": encode_array(self._ref),
            "start": self._start,
            "end": self._end,
            "n": self._n,
            "quiet": self._quiet,
            "prev": encode_array(self._prev),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._ref = decode_array(state["ref"])
        self._start = state["start"]
        self._end = state["end"]
        self._n = state["n"]
        self._quiet = state["quiet"]
        self._prev = decode_array(state["prev"])
