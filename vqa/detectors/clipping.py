"""Clipped audio: the signal driven into the converter's ceiling.

In PCM a clipped waveform sits on +/-1.0 for runs of samples. After AAC (or any lossy) coding the
plateaus come back as ripples whose peaks lie between about 0.98 and 1.07, so exact-plateau tests
fail; what survives is *density at the ceiling*: many samples at or beyond ``level`` (0.98 of full
scale, -0.18 dBFS) close together. Over-level samples no more than ``bridge`` apart form a cluster
(the waveform leaves the ceiling between plateaus); a cluster is clipping when it holds at least
``min_samples`` such samples. Loud, mastered-but-unclipped programme peaks well below 0.98 and
never forms clusters. Boundaries are the first and last over-level sample (sample-exact).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vqa.defects import Defect
from vqa.detectors.base import Detector
from vqa.segment import Segment


@dataclass(frozen=True)
class ClippingConfig:
    level: float = 0.98  # fraction of full scale
    bridge: float = 0.15  # seconds between over-level samples that still join one cluster
    min_samples: int = 24  # over-level samples in a cluster (0.5 ms at 48 kHz)
    min_duration: float = 0.0  # seconds


class ClippingDetector(Detector[ClippingConfig]):
    name = "clipping"
    needs = "audio"
    Config = ClippingConfig

    def reset(self) -> None:
        self._first: float | None = None  # first over-level sample time of the open cluster
        self._last = 0.0  # end of the last over-level sample of the open cluster
        self._count = 0
        self._peak = 0.0

    def process(self, segment: Segment) -> list[Defect]:
        a = segment.audio
        if a is None or a.n == 0:
            return []
        cfg = self.config
        mag = np.abs(a.samples).max(axis=0)
        over = np.flatnonzero(mag >= cfg.level)
        out: list[Defect] = []
        if over.size == 0:
            if self._first is not None and a.end - self._last > cfg.bridge:
                out += self._close()
            return out
        rate, t0 = a.rate, a.start
        times = t0 + over / rate
        # Split where consecutive over-level samples are more than `bridge` apart.
        breaks = np.flatnonzero(np.diff(times) > cfg.bridge) + 1
        starts = np.concatenate([[0], breaks])
        ends = np.concatenate([breaks, [over.size]])
        for s, e in zip(starts, ends, strict=True):
            first, last = float(times[s]), float(times[e - 1]) + 1.0 / rate
            peak = float(mag[over[s:e]].max())
            if self._first is not None and first - self._last <= cfg.bridge:
                self._last = last
                self._count += int(e - s)
                self._peak = max(self._peak, peak)
                continue
            out += self._close()
            self._first, self._last, self._count, self._peak = first, last, int(e - s), peak
        if self._first is not None and a.end - self._last > cfg.bridge:
            out += self._close()
        return out

    def _close(self) -> list[Defect]:
        first, last, count, peak = self._first, self._last, self._count, self._peak
        self._first, self._count, self._peak = None, 0, 0.0
        if first is None or count < self.config.min_samples:
            return []
        if last - first < self.config.min_duration:
            return []
        detail = {"peak": round(peak, 4), "samples": count}
        return [Defect(start=first, end=last, kind=self.name, detail=detail)]

    def flush(self) -> list[Defect]:
        return self._close()

    def open_start(self) -> float | None:
        first = self._first
        if first is None or self._count < self.config.min_samples:
            return None
        return first if self._last - first >= self.config.min_duration else None

    def get_state(self) -> dict[str, Any]:
        return {"first": self._first, "last": self._last, "count": self._count, "peak": self._peak}

    def set_state(self, state: dict[str, Any]) -> None:
        self._first, self._last = state["first"], state["last"]
        self._count, self._peak = state["count"], state["peak"]
