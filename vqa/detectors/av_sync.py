"""Audio/video sync from flash-and-beep sync marks.

Content requirement: the stream must carry sync marks, a short bright flash in the picture (one to a
few frames, like a clapperboard or a broadcast sync test) with a tone burst starting at the same
instant in the sound. Without marks this detector measures nothing and reports nothing.

- A flash is a frame whose mean luma rises by at least ``flash_jump`` over the previous frame and
  falls back by as much within ``flash_max_frames`` (a scene cut to a bright shot does not).
- A beep is a burst of sound: a 1 ms energy window at least ``beep_rise_db`` above the loudest of
  the previous ``onset_history``, staying within ``beep_sustain_db`` of that level for between
  ``beep_min`` and ``beep_max``; its onset is its first loud window. Onsets are tracked twice:
  broadband, and in a narrow band around ``beep_hz`` (1 kHz, the usual sync-test tone), which finds
  a beep mixed into programme sound; a flash pairs with a tone-band beep first.
- Each flash pairs with the nearest beep within ``max_offset``; the offset is ``beep - flash`` in
  milliseconds (positive: audio late).

ITU-R BT.1359-1 puts the detectability thresholds at sound 45 ms *before* picture and 125 ms *after*
it, the defaults for ``early_ms`` and ``late_ms``. Consecutive out-of-tolerance marks (at least
``min_marks``) make one defect from the first such mark to the next in-tolerance mark (or the end),
carrying the median ``offset_ms``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vqa.defects import Defect
from vqa.detectors.base import Detector
from vqa.segment import Segment

_LEVELS = np.arange(256, dtype=np.float64)


@functools.lru_cache(maxsize=8)
def _carrier(omega: float, n: int) -> NDArray[np.complex128]:
    carrier: NDArray[np.complex128] = np.exp(-1j * omega * np.arange(n))
    carrier.setflags(write=False)
    return carrier


def _period(omega: float) -> float:
    """Samples per carrier period (phase reduction keeps the rotation angle small)."""
    return 2 * np.pi / omega


@dataclass(frozen=True)
class AvSyncConfig:
    early_ms: float = 45.0  # BT.1359: sound before picture, detectability threshold
    late_ms: float = 125.0  # BT.1359: sound after picture, detectability threshold
    flash_jump: float = 60.0  # luma levels
    flash_max_frames: int = 4
    beep_rise_db: float = 20.0  # onset: this far above the loudest of the last onset_history
    beep_floor_db: float = -45.0  # a beep is at least this loud (dBFS)
    beep_sustain_db: float = 10.0  # a beep stays within this of its onset level
    onset_history: float = 0.030  # seconds
    beep_hz: float = 1000.0  # the usual sync-test tone; its band is tracked besides broadband
    tone_window: float = 0.004  # seconds: tone-band integration (about 250 Hz wide)
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
        # Audio: two onset trackers, broadband and the beep_hz tone band, each with the recent
        # window levels (dB) and the burst under way [onset, end of last loud window, level].
        self._bb: dict[str, Any] = {"recent": [], "burst": None}
        self._tn: dict[str, Any] = {"recent": [], "burst": None}
        self._ztail: list[list[float]] = []  # last tone-window sums (re, im) for the sliding sum
        self._beeps: list[float] = []  # broadband onsets
        self._tones: list[float] = []  # tone-band onsets (preferred when pairing)
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
        mono = a.samples.mean(axis=0, dtype=np.float64)
        carry = np.asarray(self._carry, dtype=np.float64)
        start = a.start - carry.size / a.rate
        x = np.concatenate([carry, mono]) if carry.size else mono
        n = x.size // win
        self._carry = x[n * win :].tolist()
        self._end = max(self._end, a.end)
        if n == 0:
            return
        frames = x[: n * win].reshape(n, win)
        broadband = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
        # Tone band: demodulate at beep_hz (phase from the absolute sample index, so segments
        # join seamlessly) and sum over tone_window: a narrow band-pass on a 1 ms grid.
        first = round(start * a.rate)
        omega = 2 * np.pi * cfg.beep_hz / a.rate
        # e^{-j w (first + k)} = e^{-j w first} * e^{-j w k}: one cached carrier, one rotation.
        carrier = _carrier(omega, n * win) * np.exp(-1j * omega * (first % _period(omega)))
        z = (frames.ravel() * carrier).reshape(n, win).sum(axis=1)
        m = max(1, round(cfg.tone_window / cfg.window))
        tail = np.asarray([complex(r, i) for r, i in self._ztail], dtype=np.complex128)
        zz = np.concatenate([tail, z])
        csum = np.concatenate([[0], np.cumsum(zz)])
        k = np.arange(tail.size, zz.size) + 1
        sums = csum[k] - csum[np.maximum(k - m, 0)]
        tone = 20 * np.log10(2 * np.abs(sums) / (m * win) + 1e-9)
        keep = zz[-(m - 1) :] if m > 1 else zz[:0]
        self._ztail = [[float(c.real), float(c.imag)] for c in keep]
        hop = win / a.rate
        self._track(self._bb, broadband, start, hop, self._beeps, rise=1)
        self._track(self._tn, tone, start, hop, self._tones, rise=m)
        self._audio_end = start + n * hop

    def _track(
        self,
        st: dict[str, Any],
        levels: NDArray[np.float64],
        start: float,
        hop: float,
        found: list[float],
        *,
        rise: int,
    ) -> None:
        """Burst onsets in a 1 ms level series (dB), carrying ``st`` across segments.

        ``rise`` is how many windows an onset takes to build up in this series (the tone band's
        integration); the reference level is the loudest window before that.
        """
        cfg = self.config
        history = round(cfg.onset_history / cfg.window) + rise
        recent = np.concatenate([np.asarray(st["recent"], dtype=np.float64), levels])
        base = len(st["recent"])
        # Loudest of the `history` windows before the build-up, for every window at once.
        # Window j's reference is the loudest of recent[base + j - history : base + j - rise].
        width = history - rise
        padded = np.concatenate([np.full(max(0, history - base), -np.inf), recent])
        off = max(0, history - base)
        windows = np.lib.stride_tricks.sliding_window_view(padded, width)
        starts = np.arange(levels.size) + base + off - history
        prev_max = windows[starts].max(axis=1)
        rising = (levels >= prev_max + cfg.beep_rise_db) & (levels >= cfg.beep_floor_db)
        burst = st["burst"]
        j = 0
        while j < levels.size:
            t = start + j * hop
            if burst is None:
                nxt = np.flatnonzero(rising[j:])
                if nxt.size == 0:
                    break
                j += int(nxt[0])
                # The onset is where the build-up began: the first of the last `rise` windows
                # already well above the reference.
                k = j
                while (
                    k > j - rise
                    and k - 1 + base >= 0
                    and (recent[k - 1 + base] >= prev_max[j] + cfg.beep_rise_db / 3)
                ):
                    k -= 1
                burst = [start + k * hop, start + (j + 1) * hop, float(levels[j])]
            elif levels[j] >= burst[2] - cfg.beep_sustain_db:
                burst[1] = t + hop
                if burst[1] - burst[0] > cfg.beep_max:
                    burst = None  # too long: programme sound, not a beep
            else:
                if burst[1] - burst[0] >= cfg.beep_min:
                    found.append(burst[0])
                burst = None
            j += 1
        st["burst"] = burst
        st["recent"] = recent[-history:].tolist()

    # ---- pairing
    def _pair(self, final: bool) -> list[Defect]:
        cfg = self.config
        out: list[Defect] = []
        # A flash is resolved once the audio has been seen far enough past it.
        while self._flashes and (final or self._flashes[0] + cfg.max_offset <= self._audio_end):
            f = self._flashes.pop(0)
            for pool in (self._tones, self._beeps):
                near = [b for b in pool if abs(b - f) <= cfg.max_offset]
                if near:
                    b = min(near, key=lambda b: (abs(b - f), b))
                    pool.remove(b)
                    out += self._mark(f, (b - f) * 1000.0)
                    break
        horizon = (self._flashes[0] if self._flashes else self._audio_end) - 2 * cfg.max_offset
        self._beeps = [b for b in self._beeps if b >= horizon]
        self._tones = [b for b in self._tones if b >= horizon]
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

    def open_start(self) -> float | None:
        return self._run[0][0] if len(self._run) >= self.config.min_marks else None

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
            "bb": self._bb,
            "tn": self._tn,
            "ztail": self._ztail,
            "tones": self._tones,
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
        self._bb = {"recent": list(state["bb"]["recent"]), "burst": state["bb"]["burst"]}
        self._tn = {"recent": list(state["tn"]["recent"]), "burst": state["tn"]["burst"]}
        self._ztail = [list(c) for c in state["ztail"]]
        self._tones = list(state["tones"])
        self._beeps = list(state["beeps"])
        self._audio_end = state["audio_end"]
        self._carry = list(state["carry"])
        self._marks = [list(m) for m in state["marks"]]
        self._run = [list(r) for r in state["run"]]
        self._end = state["end"]
