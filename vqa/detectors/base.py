"""The streaming detector protocol.

A detector sees one :class:`~vqa.segment.Segment` at a time, in order, carries state across
segments, returns the defects it has *finished* (an open defect is reported once it ends or at
:meth:`Detector.flush`), and can save and restore its state as plain JSON-able data so that the
distributed architecture can keep it in S3 between Lambda invocations.

For live monitoring, :meth:`Detector.open_start` tells where a defect still under way began once
it has lasted its minimum duration; :meth:`Detector.process_events` and
:meth:`Detector.flush_events` turn that and the finished defects into ``started`` / ``ended``
events (:mod:`vqa.events`). The events' bookkeeping is :attr:`Detector.events`, whose state is
saved beside the detector's (``events.get_state()``).
"""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
from dataclasses import asdict, fields, replace
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
from numpy.typing import NDArray

from vqa.defects import Defect
from vqa.errors import ConfigError
from vqa.events import DefectEvent, EventTracker
from vqa.segment import Segment

C = TypeVar("C")


class Detector(ABC, Generic[C]):
    """Base class: subclasses set ``name``, ``needs`` and ``Config`` and implement the hooks."""

    #: Registry name, also the defect kind it reports.
    name: ClassVar[str]
    #: ``"video"`` or ``"audio"``, or ``"both"`` (av_sync), or ``"transport"`` (the MPEG-TS
    #: packets themselves: :attr:`vqa.segment.Segment.transport`).
    needs: ClassVar[str]
    #: A frozen dataclass of thresholds with documented defaults.
    Config: ClassVar[type]
    #: Run when no detectors are named (``vqa analyze`` without ``--detectors``). False for a
    #: compliance check whose target is a policy choice (loudness): named to run.
    default: ClassVar[bool] = True

    def __init__(self, config: C | None = None, **overrides: Any) -> None:
        base = config if config is not None else self.Config()
        try:
            self.config: C = replace(base, **overrides) if overrides else base  # type: ignore[type-var]
        except TypeError as exc:
            raise ConfigError(f"{self.name}: {exc}") from None
        self.events = EventTracker(self.name)
        self.reset()

    @abstractmethod
    def reset(self) -> None:
        """Initialise the per-stream state."""

    @abstractmethod
    def process(self, segment: Segment) -> list[Defect]:
        """Consume one segment; return the defects that ended within it."""

    @abstractmethod
    def flush(self) -> list[Defect]:
        """End of stream: close and return any open defect."""

    @abstractmethod
    def get_state(self) -> dict[str, Any]:
        """The per-stream state as JSON-able data (no numpy, no bytes)."""

    @abstractmethod
    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`get_state` returned."""

    def open_start(self) -> float | None:
        """Start of the defect under way if it already qualifies as one (lasted its minimum
        duration), else None. The start is final: the defect, once finished, starts there.

        The default (None) reports every defect only once it has ended.
        """
        return None

    def process_events(self, segment: Segment) -> list[DefectEvent]:
        """:meth:`process` as events: ``started`` while a defect is on air, ``ended`` when over."""
        finished = self.process(segment)
        return self.events.update(finished, self.open_start(), seen=segment.end)

    def flush_events(self, *, seen: float) -> list[DefectEvent]:
        """:meth:`flush` as events: every open defect ends (``seen``: the end of the media)."""
        return self.events.update(self.flush(), None, seen=seen)

    def applies(self, *, has_video: bool, has_audio: bool, has_transport: bool = False) -> bool:
        if self.needs == "transport":
            return has_transport
        if self.needs == "video":
            return has_video
        if self.needs == "audio":
            return has_audio
        return has_video and has_audio

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)  # type: ignore[call-overload, no-any-return]

    @classmethod
    def config_fields(cls) -> list[str]:
        return [f.name for f in fields(cls.Config)]


class RunDetector(Detector[C]):
    """A detector whose defect is a run of flagged time (black frames, silent samples).

    Subclasses open a run by setting ``_start``, extend ``_end``, and call :meth:`_close` when the
    run ends; runs shorter than ``config.min_duration`` are not defects.
    """

    def reset(self) -> None:
        self._start: float | None = None  # start of the open run
        self._end = 0.0  # end of what has been seen (closes a run still open at the end)

    def _close(self, end: float) -> list[Defect]:
        start, self._start = self._start, None
        min_duration = self.config.min_duration  # type: ignore[attr-defined]
        if start is not None and end - start >= min_duration - 1e-9:
            return [Defect(start=start, end=end, kind=self.name)]
        return []

    def flush(self) -> list[Defect]:
        return self._close(self._end)

    def open_start(self) -> float | None:
        min_duration = self.config.min_duration  # type: ignore[attr-defined]
        if self._start is not None and self._end - self._start >= min_duration - 1e-9:
            return self._start
        return None

    def get_state(self) -> dict[str, Any]:
        return {"start": self._start, "end": self._end}

    def set_state(self, state: dict[str, Any]) -> None:
        self._start, self._end = state["start"], state["end"]


def encode_array(a: NDArray[Any] | None) -> dict[str, Any] | None:
    """A numpy array as JSON-able data (base64 of the raw bytes plus dtype and shape)."""
    if a is None:
        return None
    a = np.ascontiguousarray(a)
    return {
        "dtype": a.dtype.str,
        "shape": list(a.shape),
        "b64": base64.b64encode(a.tobytes()).decode(),
    }


def decode_array(d: dict[str, Any] | None) -> NDArray[Any] | None:
    if d is None:
        return None
    raw = base64.b64decode(d["b64"])
    return np.frombuffer(raw, dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()
