"""False alarms per hour of real footage and recall on the corpus, at the defaults, beside FFmpeg.

    python -m benchmarks.bench_quality

Real footage: the regression set of ``tests/realworld.py`` (fetched once per machine) plus the
project's broadcast test signals (``vqa.signals``). Every alarm there is false, except the
known-clipped soundtrack of ``box.mp4`` (listed, not counted). Recall: the corpus defects at or
above the default minimum durations (``vqa.detectors`` configs), found when a defect of the same
kind overlaps them. FFmpeg (when Debian's ``ffmpeg`` is installed): ``blackdetect`` (d=2),
``freezedetect`` (its defaults, d=3 to match ours) and ``silencedetect`` (d=2) on the same files.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tests.conftest import ensure_corpus
from tests.realworld import CLIPS, Unavailable, ensure_realworld
from vqa.analyze import analyze
from vqa.corpus import CORPUS_THRESHOLDS
from vqa.detectors import DETECTORS
from vqa.signals import write_signals

FFMPEG_KINDS = ("black", "freeze", "silence")


def minimum(kind: str) -> float:
    return float(getattr(DETECTORS[kind].Config(), "min_duration", 0.0))


def ffmpeg_alarms(path: Path) -> list[tuple[str, float, float]]:
    args = [
        "-vf",
        f"blackdetect=d={minimum('black')}:pix_th=0.10:pic_th=0.98,"
        f"freezedetect=d={minimum('freeze')}",
        "-af",
        f"silencedetect=n=-60dB:d={minimum('silence')}",
    ]
    log = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), *args, "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=600,
    ).stderr
    out = [
        ("black", float(a), float(b))
        for a, b in re.findall(r"black_start:([\d.]+) black_end:([\d.]+)", log)
    ]
    fs = [float(x) for x in re.findall(r"freeze_start: ([\d.]+)", log)]
    fe = [float(x) for x in re.findall(r"freeze_end: ([\d.]+)", log)] + [float("inf")] * len(fs)
    out += [("freeze", a, b) for a, b in zip(fs, fe, strict=False)]
    ss = [float(x) for x in re.findall(r"silence_start: (-?[\d.]+)", log)]
    se = [float(x) for x in re.findall(r"silence_end: ([\d.]+)", log)] + [float("inf")] * len(ss)
    out += [("silence", a, b) for a, b in zip(ss, se, strict=False)]
    return out


def false_alarms(
    files: list[tuple[Path, frozenset[str]]], thresholds: dict[str, dict[str, Any]] | None
) -> tuple[float, list[tuple[str, float, list[str]]]]:
    """Hours of material and, per file, the alarms raised that are not its known defects."""
    hours, rows = 0.0, []
    for path, allowed in files:
        res = analyze(str(path), thresholds=thresholds)
        hours += res.duration / 3600
        rows.append(
            (path.name, res.duration, [d.kind for d in res.defects if d.kind not in allowed])
        )
    return hours, rows


def damaged_frame_recall(corpus: Path, truth: dict[str, Any]) -> float:
    """Share of the corpus's damaged frames inside a reported corruption interval."""
    covered = total = 0
    for clip in truth["clips"]:
        frames = clip.get("damaged_frames") or []
        if not frames:
            continue
        spans = [d for d in analyze(str(corpus / clip["file"])).defects if d.kind == "corruption"]
        half = 0.5 / clip["fps"]
        total += len(frames)
        covered += sum(any(d.start - half <= t < d.end for d in spans) for t in frames)
    return covered / max(1, total)


def main() -> None:
    have_ffmpeg = shutil.which("ffmpeg") is not None
    files: list[tuple[Path, frozenset[str]]] = []
    try:
        real = ensure_realworld()
        files += [(real / name, allowed) for name, (_, allowed) in CLIPS.items()]
    except Unavailable as exc:
        print(f"real-footage set unavailable: {exc}")
    tmp = Path(tempfile.mkdtemp(prefix="vqa-signals-"))
    try:
        files += [(p, frozenset()) for p in write_signals(tmp).values()]
        hours, ours = false_alarms(files, None)
        _, short = false_alarms(files, CORPUS_THRESHOLDS)
        ff = {p.name: ffmpeg_alarms(p) for p, _ in files} if have_ffmpeg else {}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for (name, seconds, got), (_, _, got_short) in zip(ours, short, strict=True):
        kinds = [k for k, _, _ in ff[name]] if have_ffmpeg else "-"
        print(f"  {name:<22} {seconds:6.1f} s  vqa {got}  vqa-short {got_short}  ffmpeg {kinds}")

    corpus = ensure_corpus()
    truth = json.loads((corpus / "truth.json").read_text())
    eligible = found = ff_eligible = ff_found = 0
    for clip in truth["clips"]:
        want = [d for d in clip["defects"] if d["end"] - d["start"] >= minimum(d["kind"]) - 1e-6]
        if not want:
            continue
        # Every detector, those run only when named (loudness) too: recall of all the truth.
        res = analyze(str(corpus / clip["file"]), detectors=list(DETECTORS))
        theirs = ffmpeg_alarms(corpus / clip["file"]) if have_ffmpeg else []
        for d in want:
            eligible += 1
            found += any(
                g.kind == d["kind"] and g.start < d["end"] and g.end > d["start"]
                for g in res.defects
            )
            if d["kind"] in FFMPEG_KINDS:
                ff_eligible += 1
                ff_found += any(
                    k == d["kind"] and a < d["end"] and b > d["start"] for k, a, b in theirs
                )
    n_ours = sum(len(g) for _, _, g in ours)
    n_short = sum(len(g) for _, _, g in short)
    minutes = hours * 60
    print(
        f"\n| detectors | false alarms / hour ({minutes:.1f} min of real footage + test "
        "signals) | recall on the corpus at the defaults |"
    )
    print("|---|---|---|")
    print(
        f"| vqa, defaults | {n_ours / hours:.1f} ({n_ours} alarms) | defects at or above the "
        f"minimum durations {found}/{eligible} = {found / max(1, eligible):.2f}; damaged frames "
        f"{damaged_frame_recall(corpus, truth):.2f} |"
    )
    print(
        f"| vqa, old minimum durations (black/silence 0.5 s, freeze 1 s) | "
        f"{n_short / hours:.1f} ({n_short} alarms) | - |"
    )
    if have_ffmpeg:
        n_ff = sum(len(v) for v in ff.values())
        print(
            f"| FFmpeg blackdetect/freezedetect/silencedetect (d=2/3/2) | {n_ff / hours:.1f} "
            f"({n_ff} alarms) | its kinds: {ff_found}/{ff_eligible} = "
            f"{ff_found / max(1, ff_eligible):.2f} |"
        )
    else:
        print("| FFmpeg | - (no ffmpeg binary: apt-get install ffmpeg) | - |")


if __name__ == "__main__":
    main()
