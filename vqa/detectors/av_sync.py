"""Audio/video sync from flash-and-beep sync marks.

Content requirement: the stream must carry sync marks, a short bright flash in the picture (one to a
few frames, like a clapperboard or a broadcast sync test) with a tone burst starting at the same
instant in the sound. Without marks this detector measures nothing and reports nothing.

- A flash is a frame whose mean luma rises by at least ``flash_jump`` over the previous frame and
  falls back by as much within ``flash_max_frames`` (a scene cut to a bright shot does not).
- A beep is a burst of sound: 1 ms energy windows rising ``beep_rise_db`` above the running
  background, lasting between ``beep_min`` and ``beep_max``; its onset is its first loud window.
- Each flash pairs with the nearest beep within ``max_offset``; the offset is ``beep - flash`` in
  milliseconds (positive: audio late).

ITU-R BT.1359-1 puts the detectability thresholds at sound 45 ms *before* picture and 125 ms *after*
it, the defaults for ``early_ms`` and ``late_ms``. Consecutive out-of-tolerance marks (at least
``min_marks``) make one defect from the first such mark to the next in-tolerance mark (or the end),
carrying the median ``offset_ms``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vqa.defects import Defect
from vqa.detectors.base import Detector
from vqa.segment import Segment

_LEVELS = np.arange(256, dtype=np.float64)


@dataclass(frozen=True)
class AvSyncConfig:
    early_ms: float = 45.0  # BT.1359: sound before picture, detectability threshold
    late_ms: float = 125.0  # BT.1359: sound after picture, detectability threshold
    flash_jump: float = 60.0  # luma levels
    flash_max_frames: int = 4
    beep_rise_db: float = 20.0
    beep_floor_db: float = -45.0  # a beep is at least this loud (dBFS)
    beep_min: float = 0.030  # seconds
    beep_max: float = 0.400  # seconds
    max_offset: float = 0.5  # seconds
    min_marks: int = 2
    window: float = 0.001  # seconds, energy window


class AvSyncDetector(Detector[AvSyncConfig]):
    name = "av_sync"
    needs = "both"
    Config = AvSyncConfig

    def reset(self) -> None:
        # Video: previous frame mean; a candidate flash waiting to fall back.
        self._prev_mean: float | None = None
        self._cand: list[float] | None = None  # [time, mean, frames since]
        self._flashes: list[float] = []
        # Audio: background energy (dB), burst tracking.
        self._bg: float | None = None
        self._burst: list[float] | None = None  # [onset, last loud window end]
        self._beeps: list[float] = []
        self._audio_end = 0.0
        self._carry: list[float] = []  # samples of an incomplete energy window
        # Marks and the open defect.
        self._marks: list[list[float]] = []  # [flash time, offset ms] of all paired marks
        self._run: list[list[float]] = []  # out-of-tolerance marks of the open run
        self._end = 0.0

    # ---- video
    def _video(self, segment: Segment) -> None:
        v = segment.video
        if v is None or len(v) == 0:
            return
        hist = v.hist
        means = hist @ _LEVELS / np.maximum(hist.sum(axis=1), 1)
        cfg = self.config
        for i in range(len(v)):
            m, t = float(means[i]), float(v.times[i])
            if self._cand is not None:
                self._cand[2] += 1
                if m <= self._cand[1] - cfg.flash_jump:
                    self._flashes.append(self._cand[0])
                    self._cand = None
                elif self._cand[2] > cfg.flash_max_frames:
                    self._cand = None
            if self._prev_mean is not None and m - self._prev_mean >= cfg.flash_jump:
                self._cand = [t, m, 0]
            self._prev_mean = m
            self._end = max(self._end, v.end_time(i))

    # ---- audio
    def _audio(self, segment: Segment) -> None:
        a = segment.audio
        if a is None or a.n == 0:
            return
        cfg = self.config
        win = max(1, round(cfg.window * a.rate))
        mono = np.abs(a.samples).max(axis=0)
        carry = np.asarray(self._carry, dtype=np.float32)
        start = a.start - carry.size / a.rate
        x = np.concatenate([carry, mono]) if carry.size else mono
        n = x.size // win
        self._carry = x[n * win :].tolist()
        if n == 0:
            return
        frames = x[: n * win].reshape(n, win).astype(np.float64)
        energy = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
        for j in range(n):
            e = float(energy[j])
            t = start + j * win / a.rate
            if self._bg is None:
                self._bg = e
            loud = e >= self._bg + cfg.beep_rise_db and e >= cfg.beep_floor_db
            if self._burst is None:
                if loud:
                    self._burst = [t, t + win / a.rate]
                else:
                    # Track the background slowly while no burst is under way (0.5 s constant).
                    self._bg += (e - self._bg) * min(1.0, cfg.window / 0.5)
            elif e >= self._bg + cfg.beep_rise_db - 6.0:
                self._burst[1] = t + win / a.rate
                if self._burst[1] - self._burst[0] > cfg.beep_max:
                    self._burst = None  # too long: programme sound, not a beep
                    self._bg = e
            else:
                length = self._burst[1] - self._burst[0]
                if length >= cfg.beep_min:
                    self._beeps.append(self._burst[0])
                self._burst = None
        self._audio_end = start + n * win / a.rate
        self._end = max(self._end, a.end)

    # ---- pairing
    def _pair(self, final: bool) -> list[Defect]:
        cfg = self.config
        out: list[Defect] = []
        # A flash is resolved once the audio has been seen far enough past it.
        while self._flashes and (final or self._flashes[0] + cfg.max_offset <= self._audio_end):
            f = self._flashes.pop(0)
            near = [b for b in self._beeps if abs(b - f) <= cfg.max_offset]
            if near:
                b = min(near, key=lambda b: (abs(b - f), b))
                self._beeps.remove(b)
                out += self._mark(f, (b - f) * 1000.0)
        horizon = (self._flashes[0] if self._flashes else self._audio_end) - cfg.max_offset
        self._beeps = [b for b in self._beeps if b >= horizon - cfg.max_offset]
        return out

    def _mark(self, flash: float, offset_ms: float) -> list[Defect]:
        self._marks.append([flash, round(offset_ms, 3)])
        cfg = self.config
        if offset_ms > cfg.late_ms or offset_ms < -cfg.early_ms:
            self._run.append([flash, offset_ms])
            return []
        return self._close(flash)

    def _close(self, end: float) -> list[Defect]:
        run, self._run = self._run, []
        if len(run) < self.config.min_marks:
            return []
        offsets = [o for _, o in run]
        detail = {"offset_ms": round(float(np.median(offsets)), 1), "marks": len(run)}
        return [Defect(start=run[0][0], end=end, kind=self.name, detail=detail)]

    def process(self, segment: Segment) -> list[Defect]:
        self._video(segment)
        self._audio(segment)
        return self._pair(final=False)

    def flush(self) -> list[Defect]:
        out = self._pair(final=True)
        return out + self._close(self._end)

    def measurements(self) -> dict[str, Any]:
        """What was measured, in or out of tolerance: marks paired and their median offset."""
        offsets = [o for _, o in self._marks]
        return {
            "marks": len(offsets),
            "offset_ms": round(float(np.median(offsets)), 1) if offsets else None,
        }

    def get_state(self) -> dict[str, Any]:
        return {
            "prev_mean": self._prev_mean,
            "cand": self._cand,
            "flashes": self._flashes,
            "bg": self._bg,
            "burst": self._burst,
            "beeps": self._beeps,
            "audio_end": self._audio_end,
            "carry": self._carry,
            "marks": self._marks,
            "run": self._run,
            "end": self._end,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._prev_mean = state["prev_mean"]
        self._cand = state["cand"]
        self._flashes = list(state["flashes"])
        self._bg = state["bg"]
        self._burst = state["burst"]
        self._beeps = list(state["beeps"])
        self._audio_end = state["audio_end"]
        self._carry = list(state["carry"])
        self._marks = [list(m) for m in state["marks"]]
        self._run = [list(r) for r in state["run"]]
        self._end = state["end"]
