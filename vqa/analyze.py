"""``vqa analyze``: run the detectors over one source in this process."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vqa.defects import Defect, sort_defects
from vqa.detectors import DetectorSet
from vqa.media import iter_segments, probe
from vqa.overrides import validate_thresholds


@dataclass
class AnalysisResult:
    source: str
    duration: float
    defects: list[Defect]
    skipped: dict[str, str] = field(default_factory=dict)
    measurements: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "duration": round(self.duration, 6),
            "defects": [d.to_json() for d in self.defects],
            "skipped": self.skipped,
            "measurements": self.measurements,
        }


def analyze(
    source: str,
    *,
    detectors: Sequence[str] | str | None = None,
    segment_seconds: float = 1.0,
    progress: bool = False,
    s3_client: Any | None = None,
    thresholds: Mapping[str, Mapping[str, Any]] | None = None,
) -> AnalysisResult:
    """Decode ``source`` once and run ``detectors`` (default: all) over every segment.

    ``thresholds`` overrides config fields per detector (``{"black": {"min_duration": 0.5}}``),
    validated by :func:`vqa.overrides.validate_thresholds`.
    """
    dset = DetectorSet(detectors, **validate_thresholds(thresholds or {}))
    info: dict[str, Any] = {}
    bar = None
    if progress and sys.stderr.isatty():
        from tqdm import tqdm

        total = probe(source, s3_client=s3_client).duration
        bar = tqdm(
            total=round(total, 1) or None, unit="s", desc="analyze", file=sys.stderr, leave=False
        )
    defects: list[Defect] = []
    try:
        for seg in iter_segments(
            source, segment_seconds=segment_seconds, s3_client=s3_client, info=info
        ):
            defects += dset.process(seg)
            if bar is not None:
                bar.update(round(seg.end - seg.start, 3))
    finally:
        if bar is not None:
            bar.close()
    defects += dset.flush()
    skipped = {f"{k} stream": v for k, v in info.get("skipped", {}).items()}
    skipped.update(dset.skipped)
    return AnalysisResult(
        source=source,
        duration=float(info.get("duration", 0.0)),
        defects=sort_defects(defects),
        skipped=skipped,
        measurements=dset.measurements(),
    )


def _table(
    source: str, duration: float, defects: list[dict[str, Any]], skipped: dict[str, str]
) -> str:
    lines = [f"{source}: {duration:.2f} s, {len(defects)} defect(s)"]
    if defects:
        lines.append(f"  {'kind':<11} {'start':>9} {'end':>9} {'dur':>7}  detail")
        for d in defects:
            extra = {k: v for k, v in d.items() if k not in ("kind", "start", "end")}
            detail = " ".join(f"{k}={v}" for k, v in extra.items())
            lines.append(
                f"  {d['kind']:<11} {d['start']:>9.3f} {d['end']:>9.3f} "
                f"{d['end'] - d['start']:>7.3f}  {detail}"
            )
    for name, why in skipped.items():
        lines.append(f"  skipped {name}: {why}")
    return "\n".join(lines) + "\n"


def format_table(result: AnalysisResult) -> str:
    """A readable table of defects for a terminal."""
    return _table(
        result.source, result.duration, [d.to_json() for d in result.defects], result.skipped
    )


def format_table_json(out: dict[str, Any]) -> str:
    """The same table from a ``run`` JSON object (adds the usage headline)."""
    text = _table(out["source"], out["duration"], out["defects"], out.get("skipped", {}))
    usage = out.get("usage", {})
    if usage:
        reqs = sum(n for ops in usage.get("requests", {}).values() for n in ops.values())
        text += f"  usage: {reqs} AWS requests, counters {usage.get('counters', {})}\n"
    return text
