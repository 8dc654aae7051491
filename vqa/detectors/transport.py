"""MPEG-TS integrity: ETSI TR 101 290 priority 1 over the segment's packets.

The analysis is :class:`vqa.tsanalysis.Tr101290`; this detector turns its errors into defects.
Errors of one indicator on one PID less than ``merge_gap`` apart are one *run* (a burst of lost
packets is one run, not hundreds); runs that overlap or lie less than ``merge_gap`` apart are one
defect, a damaged interval. A defect names the indicator and PID of its first run
(``"indicator"``, e.g. ``"1.4 Continuity_count_error"``; ``"pid"``, None for the sync
indicators) and lists every run in ``"runs"`` (``indicator``, ``pid``, ``start``, ``end``,
``errors``). One defect at a time keeps every defect's start distinct, as the defect key and the
live events' ids need. Sources that are not MPEG-TS carry no packets and skip the detector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vqa.defects import Defect
from vqa.detectors.base import Detector
from vqa.segment import Segment
from vqa.tsanalysis import INDICATORS, Error, Limits, Tr101290


@dataclass(frozen=True)
class TransportConfig:
    #: Errors of one indicator and PID this close (s) are one damaged interval: a monitor's
    #: alarm hold-off, so a burst is one alarm while errors a few seconds apart stay separate.
    merge_gap: float = 1.0
    #: TR 101 290 1.3 / 1.5: PAT and each PMT at least every 0.5 s.
    pat_interval: float = 0.5
    pmt_interval: float = 0.5
    #: TR 101 290 1.6: the "user specified period" a referred PID may be absent; the standard
    #: suggests at most 5 s for video and audio PIDs, and 5 s keeps a data PID sent every few
    #: seconds (a low-rate subtitle or a sparse SCTE-35 PID) out of alarm.
    pid_timeout: float = 5.0


class TransportDetector(Detector[TransportConfig]):
    name = "transport"
    needs = "transport"
    Config = TransportConfig

    def reset(self) -> None:
        c = self.config
        self._ts = Tr101290(Limits(pat=c.pat_interval, pmt=c.pmt_interval, pid=c.pid_timeout))
        self._runs: list[dict[str, Any]] = []  # the open defect's runs, in start order
        self._counts = {i: 0 for i in INDICATORS}

    def process(self, segment: Segment) -> list[Defect]:
        if segment.transport is None:
            return []
        return self._merge(self._ts.feed(segment.transport), closing=False)

    def flush(self) -> list[Defect]:
        return self._merge(self._ts.flush(), closing=True)

    def _end(self) -> float:
        return max(r["end"] for r in self._runs)

    def _merge(self, errors: list[Error], *, closing: bool) -> list[Defect]:
        out: list[Defect] = []
        gap = self.config.merge_gap
        for indicator, pid, start, end in sorted(errors, key=lambda e: e[2]):
            self._counts[indicator] += 1
            if self._runs and start > self._end() + gap:
                out.append(self._defect())
            run = next(
                (
                    r
                    for r in self._runs
                    if r["indicator"] == indicator and r["pid"] == pid and start <= r["end"] + gap
                ),
                None,
            )
            if run is None:
                self._runs.append(
                    {"indicator": indicator, "pid": pid, "start": start, "end": end, "errors": 1}
                )
                self._runs.sort(key=lambda r: r["start"])
            else:
                run["start"], run["end"] = min(run["start"], start), max(run["end"], end)
                run["errors"] += 1
        # A defect no later error can join is finished. (An absence is reported when it ends,
        # with its start in the past: it may overlap a defect already finished, never share its
        # start, since its start is a packet of its own PID.)
        if self._runs and (closing or self._end() + gap < self._ts.now):
            out.append(self._defect())
        return out

    def _defect(self) -> Defect:
        runs, self._runs = self._runs, []
        first = runs[0]
        return Defect(
            start=first["start"],
            end=max(r["end"] for r in runs),
            kind=self.name,
            detail={
                "indicator": first["indicator"],
                "pid": None if first["pid"] < 0 else first["pid"],
                "runs": [
                    {
                        **r,
                        "pid": None if r["pid"] < 0 else r["pid"],
                        "start": round(r["start"], 6),
                        "end": round(r["end"], 6),
                    }
                    for r in runs
                ],
            },
        )

    def open_start(self) -> float | None:
        """Transport errors have no minimum duration: the open defect, or an error still under
        way (a sync loss, an absence past its limit), is on air as soon as it is seen."""
        starts = [r["start"] for r in self._runs[:1]]
        ongoing = self._ts.ongoing()
        if ongoing is not None:
            starts.append(ongoing)
        return min(starts) if starts else None

    def measurements(self) -> dict[str, Any]:
        """Packets analysed and errors per indicator over the stream."""
        return {"packets": self._ts.packets, "errors": dict(self._counts)}

    def get_state(self) -> dict[str, Any]:
        return {"ts": self._ts.get_state(), "runs": self._runs, "counts": dict(self._counts)}

    def set_state(self, state: dict[str, Any]) -> None:
        self._ts.set_state(state["ts"])
        self._runs = [dict(r) for r in state["runs"]]
        self._counts = {i: int(state["counts"].get(i, 0)) for i in INDICATORS}
