"""The defect record shared by detectors, both architectures and the JSON contract."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The contract's defect kinds (DESIGN.md). More may be added, never renamed.
DEFECT_KINDS: tuple[str, ...] = (
    "black",
    "freeze",
    "corruption",
    "silence",
    "clipping",
    "av_sync",
    "loudness",
)

#: The source stopped delivering media (live monitoring, :mod:`vqa.watch`): a kind about the input
#: rather than its content, so no detector and no corpus clip has it.
INPUT_LOSS = "input_loss"
SOURCE_KINDS: tuple[str, ...] = (INPUT_LOSS,)

#: Time values are rounded to microseconds so that JSON round trips and both architectures agree.
_TIME_DECIMALS = 6


@dataclass(frozen=True, order=True)
class Defect:
    """One defect: ``kind`` over ``[start, end)`` in seconds from the start of the source.

    ``detail`` carries kind-specific fields (``offset_ms`` for ``av_sync``, evidence for
    ``corruption``...). It is flattened into the JSON object beside kind/start/end.
    """

    start: float
    end: float
    kind: str
    detail: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", round(float(self.start), _TIME_DECIMALS))
        object.__setattr__(self, "end", round(float(self.end), _TIME_DECIMALS))

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def key(self) -> str:
        """A stable identity: a retried segment re-reporting this defect maps to the same key."""
        return f"{self.kind}#{self.start:.6f}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "start": self.start, "end": self.end, **self.detail}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Defect:
        detail = {k: v for k, v in data.items() if k not in ("kind", "start", "end")}
        return cls(start=data["start"], end=data["end"], kind=data["kind"], detail=detail)


def sort_defects(defects: list[Defect]) -> list[Defect]:
    """Canonical order: by start, then kind, then end."""
    return sorted(defects, key=lambda d: (d.start, d.kind, d.end))
