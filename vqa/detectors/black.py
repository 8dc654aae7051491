"""Black video: frames that are (almost) entirely uniform black.

Follows FFmpeg's ``blackdetect`` (libavfilter/vf_blackdetect.c): a pixel is black when its luma
is at most ``pixel_threshold`` of the video-range span above black (16 + 0.10 x 219 = 37.9), and a
frame is black when at least ``picture_ratio`` (0.98) of its pixels are. Two changes, both for
live content:

- a dark but live scene also has 98% of its pixels below 38; black video is *flat*, so the black
  pixels' standard deviation must also be at most ``flat_std`` luma levels (encoded black and
  analogue black with noise stay well under 3; a night scene with any detail does not);
- ``min_duration`` is FFmpeg's 2.0 s, the hold a monitor uses: shorter black is a fade between
  scenes or the opening of a programme (about 1 s in ordinary films); 0 alarms on the real-footage
  set (``tests/test_realworld.py``, README). A short drop to black stays findable with
  ``--set black.min_duration=0.5``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from vqa.defects import Defect
from vqa.detectors.base import RunDetector
from vqa.segment import Segment

_LEVELS = np.arange(256, dtype=np.float64)


@dataclass(frozen=True)
class BlackConfig:
    pixel_threshold: float = 0.10  # fraction of the 16..235 span (blackdetect pix_th)
    picture_ratio: float = 0.98  # blackdetect picture_black_ratio_th
    flat_std: float = 3.0  # luma levels
    min_duration: float = 2.0  # seconds (blackdetect black_min_duration)


def black_frames(hist: NDArray[np.int64], cfg: BlackConfig) -> NDArray[np.bool_]:
    """``(n,)`` black-frame flags from ``(n, 256)`` luma histograms."""
    if hist.shape[0] == 0:
        return np.zeros(0, dtype=np.bool_)
    th = int(16 + cfg.pixel_threshold * (235 - 16))
    dark = hist[:, : th + 1].astype(np.float64)
    total = hist.sum(axis=1).astype(np.float64)
    n_dark = dark.sum(axis=1)
    ratio = n_dark / np.maximum(total, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (dark @ _LEVELS[: th + 1]) / n_dark
        var = (dark @ (_LEVELS[: th + 1] ** 2)) / n_dark - mean**2
    std = np.sqrt(np.maximum(np.nan_to_num(var, nan=np.inf), 0))
    return (ratio >= cfg.picture_ratio) & (std <= cfg.flat_std)


class BlackDetector(RunDetector[BlackConfig]):
    name = "black"
    needs = "video"
    Config = BlackConfig

    def process(self, segment: Segment) -> list[Defect]:
        v = segment.video
        if v is None or len(v) == 0:
            return []
        out: list[Defect] = []
        flags = black_frames(v.hist, self.config)
        for i, is_black in enumerate(flags):
            t = float(v.times[i])
            if is_black:
                if self._start is None:
                    self._start = t
                self._end = v.end_time(i)
            elif self._start is not None:
                out += self._close(t)
        return out
