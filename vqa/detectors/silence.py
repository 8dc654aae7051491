"""Silent audio: every channel below the noise floor for at least ``min_duration``.

FFmpeg's ``silencedetect`` (libavfilter/af_silencedetect.c) defaults: a sample is silent when its
amplitude is at most -60 dBFS (0.001), and silence must last 2 s. Boundaries here are sample-exact
(the first and last silent sample). ``min_duration`` is FFmpeg's 2 s, the hold a monitor uses:
pauses in a film soundtrack lasted 0.6-2 s (issue 11's 10-minute animated film), the gaps of a
sync test signal (a 40 ms beep a second) almost 1 s; 0 alarms on the real-footage set. A
half-second dropout stays findable with ``--set silence.min_duration=0.5``. Quiet programme audio
(room tone at -45 dBFS) keeps crossing the floor many times a second and is never silent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vqa.defects import Defect
from vqa.detectors.base import RunDetector
from vqa.segment import Segment


@dataclass(frozen=True)
class SilenceConfig:
    threshold_db: float = -60.0  # dBFS, silencedetect noise=-60dB
    min_duration: float = 2.0  # seconds (silencedetect d)


class SilenceDetector(RunDetector[SilenceConfig]):
    name = "silence"
    needs = "audio"
    Config = SilenceConfig

    def process(self, segment: Segment) -> list[Defect]:
        a = segment.audio
        if a is None or a.n == 0:
            return []
        level = 10.0 ** (self.config.threshold_db / 20.0)
        loud = np.flatnonzero(np.abs(a.samples).max(axis=0) > level)
        rate, t0 = a.rate, a.start
        out: list[Defect] = []
        if self._start is not None and t0 - self._end > 1.0 / rate + 1e-9:
            # Audio resumed after a hole in the timeline: the run ends where samples stopped.
            out += self._close(self._end)
        if loud.size == 0:
            if self._start is None:
                self._start = t0
        else:
            if self._start is not None:
                out += self._close(t0 + loud[0] / rate)
            elif loud[0] > 0:
                self._start = t0
                out += self._close(t0 + loud[0] / rate)
            # Silent stretches between loud samples inside this segment.
            gaps = np.flatnonzero(np.diff(loud) > 1)
            min_n = self.config.min_duration * rate
            for g in gaps:
                n = loud[g + 1] - loud[g] - 1
                if n >= min_n - 1e-6:
                    out.append(
                        Defect(
                            start=t0 + (loud[g] + 1) / rate,
                            end=t0 + loud[g + 1] / rate,
                            kind=self.name,
                        )
                    )
            if loud[-1] < a.n - 1:
                self._start = t0 + (loud[-1] + 1) / rate
        self._end = t0 + a.n / rate
        return out
