"""Open-defect events: a defect reported as *started* while it is still on air, then *ended*.

A detector's :meth:`~vqa.detectors.base.Detector.process` returns the defects it has finished, as
``vqa analyze`` reports them. For live monitoring the same detector also says, through
:meth:`~vqa.detectors.base.Detector.open_start`, whether a defect is under way that has already
lasted its minimum duration, and where it began. :class:`EventTracker` turns those two answers,
segment by segment, into a sequence of :class:`DefectEvent`:

- ``started`` once the open defect qualifies, with its true start and ``end=None``;
- ``ended`` when the detector finishes it, with the same final ``start``/``end`` as the finished
  defect (a defect found only once it was over gets its ``started`` and ``ended`` together).

Each event carries ``id`` (kind and the start announced), so a consumer can rebuild the open set
from the events alone and an alert publisher can de-duplicate retries. A detector may, rarely,
withdraw a defect it announced (a frozen-looking run that turns out to be a grainy held shot): the
tracker then ends it where media was last seen, with ``detail["retracted"] = True``, so a started
defect always ends. The tracker's state is plain JSON, saved and restored with the detector's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from vqa.defects import Defect

Phase = Literal["started", "ended"]

#: Two times closer than this (seconds) are the same instant (times are rounded to microseconds).
_SAME = 1e-6


@dataclass(frozen=True)
class DefectEvent:
    """A defect's state change; ``end`` is None on ``started``. Times in stream seconds."""

    phase: Phase
    kind: str
    start: float
    end: float | None
    detail: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def id(self) -> str:
        """Stable identity shared by a defect's ``started`` and ``ended`` events."""
        return str(self.detail.get("id", f"{self.kind}#{self.start:.6f}"))

    @property
    def time(self) -> float:
        """Stream time at which the event happened: the start, or the end."""
        return self.start if self.end is None else self.end

    def to_json(self) -> dict[str, Any]:
        """``{"event": "defect.started"|"defect.ended", "kind", "start", "end", ...detail}``."""
        return {
            "event": f"defect.{self.phase}",
            "kind": self.kind,
            "start": self.start,
            "end": self.end,
            **self.detail,
        }

    @classmethod
    def started(cls, kind: str, start: float, **detail: Any) -> DefectEvent:
        start = round(float(start), 6)
        return cls("started", kind, start, None, {"id": f"{kind}#{start:.6f}", **detail})

    @classmethod
    def ended(cls, defect: Defect, *, id: str | None = None, **extra: Any) -> DefectEvent:
        detail = {"id": id or defect.key, **defect.detail, **extra}
        return cls("ended", defect.kind, defect.start, defect.end, detail)


def sort_events(events: list[DefectEvent]) -> list[DefectEvent]:
    """Stream-time order; at one instant an end comes before a start (``end`` is exclusive)."""
    return sorted(events, key=lambda e: (e.time, e.phase == "started"))


class EventTracker:
    """The announced (started, not yet ended) defect of one detector, and the events it yields.

    A detector has at most one defect under way at a time, so one announced start is enough.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.announced: float | None = None  # start of the defect announced as started

    def update(
        self, finished: list[Defect], open_start: float | None, *, seen: float
    ) -> list[DefectEvent]:
        """Events for one step: the defects just finished and the detector's open defect.

        ``seen`` is the end of the media the detector has seen (where a retracted defect ends).
        """
        out: list[DefectEvent] = []
        for d in finished:
            a = self.announced
            # The announced defect is the finished one that covers its start (a detector may
            # still have moved the start earlier, e.g. corruption spreading back to an anchor).
            if a is not None and d.start <= a + _SAME and a < d.end - _SAME:
                out.append(DefectEvent.ended(d, id=f"{self.kind}#{a:.6f}"))
                self.announced = None
            else:
                out.append(DefectEvent.started(d.kind, d.start))
                out.append(DefectEvent.ended(d))
        if self.announced is not None and (
            open_start is None or abs(open_start - self.announced) > _SAME
        ):
            a, self.announced = self.announced, None
            gone = Defect(start=a, end=max(seen, a), kind=self.kind)
            out.append(DefectEvent.ended(gone, retracted=True))
        if open_start is not None and self.announced is None:
            out.append(DefectEvent.started(self.kind, open_start))
            self.announced = round(float(open_start), 6)
        return out

    def get_state(self) -> dict[str, Any]:
        return {"announced": self.announced}

    def set_state(self, state: dict[str, Any]) -> None:
        self.announced = state.get("announced")
