"""The streaming detectors behind one protocol (:class:`~vqa.detectors.base.Detector`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vqa.defects import Defect, sort_defects
from vqa.detectors.av_sync import AvSyncDetector
from vqa.detectors.base import Detector
from vqa.detectors.black import BlackDetector
from vqa.detectors.clipping import ClippingDetector
from vqa.detectors.corruption import CorruptionDetector
from vqa.detectors.freeze import FreezeDetector
from vqa.detectors.loudness import LoudnessDetector
from vqa.detectors.silence import SilenceDetector
from vqa.detectors.transport import TransportDetector
from vqa.errors import ConfigError
from vqa.events import DefectEvent, sort_events
from vqa.segment import Segment

DETECTORS: dict[str, type[Detector[Any]]] = {
    d.name: d
    for d in (
        BlackDetector,
        FreezeDetector,
        CorruptionDetector,
        SilenceDetector,
        ClippingDetector,
        AvSyncDetector,
        LoudnessDetector,
        TransportDetector,
    )
}

__all__ = ["DETECTORS", "NEEDS_REASON", "Detector", "DetectorSet", "create", "parse_names"]


def parse_names(value: str | Sequence[str] | None) -> list[str]:
    """``"black,freeze"`` (or a list) -> validated names in registry order; None -> every
    detector that runs by default (:attr:`Detector.default`)."""
    if value is None:
        return [n for n, d in DETECTORS.items() if d.default]
    names = [n.strip() for n in value.split(",")] if isinstance(value, str) else list(value)
    names = [n for n in names if n]
    unknown = [n for n in names if n not in DETECTORS]
    if unknown:
        raise ConfigError(
            f"unknown detector(s) {', '.join(unknown)}; choose from {', '.join(DETECTORS)}"
        )
    if not names:
        raise ConfigError("no detector named")
    return [n for n in DETECTORS if n in names]


def create(name: str, **overrides: Any) -> Detector[Any]:
    """A fresh detector by name, with optional threshold overrides."""
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise ConfigError(f"unknown detector {name!r}") from None
    return cls(**overrides)


NEEDS_REASON = {
    "video": "no decodable video stream",
    "audio": "no decodable audio stream",
    "both": "needs both audio and video",
    # vqa.media tees MPEG-TS files and S3 objects; FFmpeg reads http(s) URLs itself (vqa watch
    # reads TS and HLS over HTTP itself, so there it applies).
    "transport": "no MPEG-TS packets to analyse (not an MPEG-TS file or S3 object)",
}


class DetectorSet:
    """A group of detectors run together over one stream (a monolith shard, or ``vqa analyze``).

    Which detectors apply is decided on the first segment from the tracks it carries; the others
    are listed in :attr:`skipped` with the reason.
    """

    def __init__(self, names: Sequence[str] | str | None = None, **config: dict[str, Any]) -> None:
        self.names = parse_names(names)
        self.detectors = {n: create(n, **config.get(n, {})) for n in self.names}
        self.skipped: dict[str, str] = {}
        self._active: list[str] | None = None
        self._seen = 0.0  # end of the last segment processed (where a retracted defect ends)

    def _decide(self, segment: Segment) -> list[str]:
        if self._active is None:
            has_video, has_audio = segment.video is not None, segment.audio is not None
            has_transport = segment.transport is not None
            self._active = []
            for n, d in self.detectors.items():
                if d.applies(has_video=has_video, has_audio=has_audio, has_transport=has_transport):
                    self._active.append(n)
                else:
                    self.skipped[n] = NEEDS_REASON[d.needs]
        return self._active

    def process(self, segment: Segment) -> list[Defect]:
        out: list[Defect] = []
        for n in self._decide(segment):
            out += self.detectors[n].process(segment)
        return sort_defects(out)

    def flush(self) -> list[Defect]:
        out: list[Defect] = []
        for n in self._active or []:
            out += self.detectors[n].flush()
        return sort_defects(out)

    def process_events(self, segment: Segment) -> list[DefectEvent]:
        """:meth:`process` as ``started`` / ``ended`` events (:mod:`vqa.events`), in time order."""
        out: list[DefectEvent] = []
        for n in self._decide(segment):
            out += self.detectors[n].process_events(segment)
        self._seen = max(self._seen, segment.end)
        return sort_events(out)

    def flush_events(self) -> list[DefectEvent]:
        """End of stream (or of monitoring): every open defect ends, as events."""
        out: list[DefectEvent] = []
        for n in self._active or []:
            out += self.detectors[n].flush_events(seen=self._seen)
        return sort_events(out)

    def measurements(self) -> dict[str, Any]:
        return {
            n: self.detectors[n].measurements()  # type: ignore[attr-defined]
            for n in self._active or []
            if hasattr(self.detectors[n], "measurements")
        }

    def get_state(self) -> dict[str, Any]:
        return {
            "active": self._active,
            "skipped": dict(self.skipped),
            "detectors": {n: d.get_state() for n, d in self.detectors.items()},
            "events": {n: d.events.get_state() for n, d in self.detectors.items()},
            "seen": self._seen,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._active = None if state["active"] is None else list(state["active"])
        self.skipped = dict(state["skipped"])
        for n, s in state["detectors"].items():
            self.detectors[n].set_state(s)
        # Checkpoints written before live events existed carry no event state.
        for n, s in state.get("events", {}).items():
            self.detectors[n].events.set_state(s)
        self._seen = float(state.get("seen", 0.0))
