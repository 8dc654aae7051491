"""The detector corpus (``vqa corpus OUTDIR``): a clip per defect kind, trap and container case,
the damaged clips and the loudness clips, written in parallel with ``truth.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from vqa.corpus.damage import (
    _damage_clean,
    _drop_clip,
    _flip_clip,
    _truncated_clip,
    _ts_damage_clip,
)
from vqa.corpus.loudness_clips import (
    LOUD_RMS_DBFS,
    PROGRAMME_RMS_DBFS,
    QUIET_RMS_DBFS,
    _loudness_clip,
)
from vqa.corpus.synth import (
    BEEP_AMPLITUDE,
    SYNC_EARLY_MS,
    SYNC_LATE_MS,
    RenderFn,
    Scene,
    Timeline,
    VideoSpec,
    _fmt,
    _snap,
    cfr_times,
    encode,
    inject_beeps,
    inject_clipping,
    inject_silence,
    music,
    room_tone,
    slow_pan,
)
from vqa.corpus.truth import (
    SHORT_TERM_SECONDS,
    TRUTH_VERSION,
    _defect,
    _entry,
    _rebase,
    beeps_too_loud,
    clipping_loudness,
)

#: Thresholds for checking the corpus truth. Most clips keep their defects short (1.5-2 s, so the
#: clips stay small and quick to analyse), below the monitoring defaults (black and silence 2 s,
#: freeze 3 s); the truth of those clips holds at these minimum durations. ``monitor.mp4`` carries
#: defects at exactly the defaults and is checked without overrides.
CORPUS_THRESHOLDS: dict[str, dict[str, Any]] = {
    "black": {"min_duration": 0.5},
    "freeze": {"min_duration": 1.0},
    "silence": {"min_duration": 0.5},
}


def write_sample_clip(
    path: Path | str,
    *,
    seconds: float = 10.0,
    width: int = 640,
    height: int = 360,
    fps: int = 30,
) -> dict[str, Any]:
    """One clip with black, freeze, silence and clipping defects and sync marks (offset 0), at
    ``fps`` frames per second.

    The layout is defined for 10 s and scaled to ``seconds`` (at least 4), snapped to frames.
    Returns the clip's truth entry (``file`` is the file name).
    """
    path = Path(path)
    return _rebase(_sample_clip(path, seconds=seconds, width=width, height=height, fps=fps), path)


def _sample_clip(
    path: Path, *, seconds: float, width: int, height: int, fps: int = 30
) -> dict[str, Any]:
    if seconds < 4.0:
        raise ValueError("a sample clip needs at least 4 seconds")
    path = Path(path)
    k = seconds / 10.0

    def at(t: float) -> float:
        return _snap(t * k, fps)

    black = (at(1.0), at(2.5))
    clip = (at(3.0), at(4.0))
    # Starts off the GOP grid so that the keyframes at 5 s and 6 s re-encode the held picture.
    freeze = (at(4.4), at(6.4))
    silence = (at(6.7), at(8.2))
    # Marks (flash + beep, in sync) avoid the video and audio defects.
    marks = [at(x) for x in (0.5, 2.7, 8.7, 9.5)]
    seed = 11
    scene = Scene(width, height, seed=seed, seconds=seconds)
    timeline = Timeline(scene, width, height, black=[black], freeze=[freeze], flashes=marks)
    pcm = music(seconds, seed=seed, peak=0.35)
    inject_beeps(pcm, marks)
    inject_clipping(pcm, *clip)
    inject_silence(pcm, *silence)
    spec = VideoSpec(width, height, fps, cfr_times(seconds, fps), timeline)
    encode(path, fmt=_fmt(path), video=spec, audio=pcm)
    loud, unjudged = clipping_loudness(
        [clip],
        seconds,
        beeps_share_window=any(b - a < SHORT_TERM_SECONDS for a, b in pairwise(marks)),
    )
    entry = _entry(
        path.name,
        duration=seconds,
        fps=fps,
        width=width,
        height=height,
        has_video=True,
        has_audio=True,
        defects=[
            _defect("black", *black),
            _defect("clipping", *clip),
            _defect("freeze", *freeze),
            _defect("silence", *silence),
            *loud,
        ],
        unjudged=unjudged or None,
        sync_offset_ms=0.0,
        sync_marks=marks,
        frames=len(spec.times),
        purpose="all four basic defects in one 640x360 clip with in-sync marks (the sample clip)",
    )
    return entry


def _basic_clip(
    outdir: Path,
    name: str,
    *,
    seconds: float = 8.0,
    fps: int = 30,
    width: int = 320,
    height: int = 180,
    seed: int,
    black: Sequence[tuple[float, float]] = (),
    freeze: Sequence[tuple[float, float]] = (),
    silence: Sequence[tuple[float, float]] = (),
    clipping: Sequence[tuple[float, float]] = (),
    purpose: str,
    video: bool = True,
    audio: bool = True,
) -> dict[str, Any]:
    path = outdir / name
    for a, b in (*black, *freeze):
        if abs(a * fps - round(a * fps)) > 1e-6 or abs(b * fps - round(b * fps)) > 1e-6:
            raise ValueError(f"{name}: video defect {a}-{b} s is not on the {fps} fps frame grid")
    spec = None
    if video:
        scene = Scene(width, height, seed=seed, seconds=seconds)
        timeline = Timeline(scene, width, height, black=list(black), freeze=list(freeze))
        spec = VideoSpec(width, height, fps, cfr_times(seconds, fps), timeline)
    pcm = None
    if audio:
        pcm = music(seconds, seed=seed)
        for a, b in silence:
            inject_silence(pcm, a, b)
        for a, b in clipping:
            inject_clipping(pcm, a, b)
    encode(path, fmt=_fmt(path), video=spec, audio=pcm)
    defects = [_defect("black", a, b) for a, b in black]
    defects += [_defect("freeze", a, b) for a, b in freeze]
    defects += [_defect("silence", a, b) for a, b in silence]
    defects += [_defect("clipping", a, b) for a, b in clipping]
    loud, unjudged = clipping_loudness(clipping, seconds)
    return _entry(
        name,
        duration=seconds,
        fps=fps if video else None,
        width=width if video else None,
        height=height if video else None,
        has_video=video,
        has_audio=audio,
        defects=defects + loud,
        unjudged=unjudged or None,
        purpose=purpose,
        frames=len(spec.times) if spec else None,
    )


def _sync_clip(outdir: Path, name: str, offset_ms: int, *, seed: int) -> dict[str, Any]:
    """Flash + 1 kHz beep once per second on a dark live background with room tone."""
    seconds, fps, w, h = 6.0, 30, 320, 180
    marks = [0.5 + k for k in range(int(seconds - 0.5))]
    scene = Scene(w, h, seed=seed, seconds=seconds, luma=(22.0, 80.0), noise=1.2)
    timeline = Timeline(scene, w, h, flashes=marks)
    pcm = room_tone(seconds, seed=seed, dbfs=-50.0)
    inject_beeps(pcm, [m + offset_ms / 1000.0 for m in marks])
    spec = VideoSpec(w, h, fps, cfr_times(seconds, fps), timeline)
    path = outdir / name
    encode(path, fmt=_fmt(path), video=spec, audio=pcm)
    defects = []
    if offset_ms > SYNC_LATE_MS or -offset_ms > SYNC_EARLY_MS:
        defects.append(_defect("av_sync", marks[0], seconds, offset_ms=float(offset_ms)))
    if beeps_too_loud(BEEP_AMPLITUDE, per_second=1.0):
        # A sync test signal's beeps, each second over room tone: every window is too loud.
        defects.append(_defect("loudness", 0.0, seconds, reason="too_loud"))
    side = "late" if offset_ms > 0 else "early" if offset_ms < 0 else "in sync"
    verdict = "outside" if defects else "inside"
    return _entry(
        name,
        duration=seconds,
        fps=fps,
        width=w,
        height=h,
        has_video=True,
        has_audio=True,
        defects=defects,
        sync_offset_ms=float(offset_ms),
        sync_marks=marks,
        frames=len(spec.times),
        purpose=f"sync marks, audio {abs(offset_ms)} ms {side} ({verdict} BT.1359 tolerance)",
    )


def _trap_clip(outdir: Path, name: str, trap: str, *, seed: int, purpose: str) -> dict[str, Any]:
    seconds, fps, w, h = 6.0, 30, 320, 180
    crf = 23
    timeline: RenderFn
    pcm = music(seconds, seed=seed)
    if trap == "dark_scene":
        scene = Scene(w, h, seed=seed, seconds=seconds, luma=(18.0, 45.0), noise=1.0)
        timeline = Timeline(scene, w, h)
    elif trap == "slow_pan":
        motion = slow_pan(w, seconds, fps)
        scene = Scene(w, h, seed=seed, seconds=seconds, motion=motion, shapes=0, noise=0.8)
        timeline = Timeline(scene, w, h)
    elif trap == "quiet_audio":
        scene = Scene(w, h, seed=seed, seconds=seconds)
        timeline = Timeline(scene, w, h)
        pcm = room_tone(seconds, seed=seed, dbfs=-45.0)
    elif trap == "grain_hold":
        # A held shot: the picture does not move, but film grain changes every frame. Encoded at
        # higher quality so the grain survives as it would in a mastered film.
        scene = Scene(w, h, seed=seed, seconds=seconds, shapes=2)
        timeline = Timeline(scene, w, h, grain_hold=(0.0, seconds + 1.0, 3.0))
        crf = 16
    elif trap == "loud_music":
        scene = Scene(w, h, seed=seed, seconds=seconds)
        timeline = Timeline(scene, w, h)
        pcm = music(seconds, seed=seed, peak=1.0)
        pcm = np.tanh(2.0 * pcm) / np.tanh(2.0)  # dense, compressed master
        pcm = (pcm * (0.9 / float(np.abs(pcm).max()))).astype(np.float32)
    else:
        raise ValueError(trap)
    spec = VideoSpec(w, h, fps, cfr_times(seconds, fps), timeline, crf=crf)
    path = outdir / name
    encode(path, fmt=_fmt(path), video=spec, audio=pcm)
    return _entry(
        name,
        duration=seconds,
        fps=fps,
        width=w,
        height=h,
        has_video=True,
        has_audio=True,
        defects=[],
        traps=[trap],
        # Music mastered near full scale is loud and peaks over -1 dBTP by R 128, where the
        # music puts it: the trap is for clipping, whose plateaus it lacks.
        unjudged=(
            [{"kind": "loudness", "why": "dense music peaking at 0.9 FS: levels are the music's"}]
            if trap == "loud_music"
            else None
        ),
        frames=len(spec.times),
        purpose=purpose,
    )


def _vfr_clip(outdir: Path, name: str, *, seed: int) -> dict[str, Any]:
    """Variable frame rate: 30 fps, a low-light drop to 15 fps, 20 fps, back to 30 fps."""
    w, h, seconds = 320, 180, 8.0
    times: list[float] = []
    t = 0.0
    for end, rate in ((3.0, 30), (6.0, 15), (7.0, 20), (seconds, 30)):
        while t < end - 1e-9:
            times.append(round(t, 9))
            t += 1.0 / rate
        t = end
    black = (3.4, 4.6)  # on the 15 fps grid
    scene = Scene(w, h, seed=seed, seconds=seconds)
    timeline = Timeline(scene, w, h, black=[black])
    spec = VideoSpec(w, h, 30, times, timeline, vfr=True)
    pcm = music(seconds, seed=seed)
    path = outdir / name
    encode(path, fmt=_fmt(path), video=spec, audio=pcm)
    return _entry(
        name,
        duration=seconds,
        fps=30,
        width=w,
        height=h,
        has_video=True,
        has_audio=True,
        defects=[_defect("black", *black)],
        vfr=True,
        frames=len(times),
        frame_rates=[[0.0, 30], [3.0, 15], [6.0, 20], [7.0, 30]],
        purpose="variable frame rate (30/15/20/30 fps): black timed by PTS; rate changes are "
        "not dropped frames",
    )


# --------------------------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------------------------


Recipe = Callable[[Path], list[dict[str, Any]]]


def _one(fn: Callable[[Path], dict[str, Any]]) -> Recipe:
    return lambda d: [fn(d)]


def _damaged_mp4(d: Path) -> list[dict[str, Any]]:
    ref = _damage_clean(d, "clean.mp4", seed=31)
    return [_flip_clip(d, "damage_flip.mp4", ref, seed=31), _drop_clip(d, "damage_drop.mp4", ref)]


def _damaged_ts(d: Path) -> list[dict[str, Any]]:
    ref = _damage_clean(d, "clean.ts", seed=33)
    return [
        _ts_damage_clip(d, "damage_ts.ts", ref, seed=33),
        _truncated_clip(d, "truncated.ts", ref),
    ]


def _recipes() -> Iterator[tuple[tuple[str, ...], Recipe]]:
    """``(files, recipe)``: each recipe writes those files into a directory and returns their
    truth entries. Recipes are independent of each other (they run in parallel)."""
    yield ("black.mp4",), _one(lambda d: _basic_clip(
        d, "black.mp4", seed=1, black=[(2.0, 3.5)],
        purpose="black video 2.0-3.5 s (luma 16) in live content",
    ))  # fmt: skip
    yield ("freeze.mp4",), _one(lambda d: _basic_clip(
        d, "freeze.mp4", seed=2, freeze=[(3.2, 5.2)],
        purpose="picture held 3.2-5.2 s; the keyframes at 4 s and 5 s re-encode the frozen "
        "picture (FFmpeg's freezedetect splits it)",
    ))  # fmt: skip
    yield ("silence.mp4",), _one(lambda d: _basic_clip(
        d, "silence.mp4", seed=3, silence=[(2.0, 3.5)],
        purpose="digital silence 2.0-3.5 s in music",
    ))  # fmt: skip
    yield ("clipping.mp4",), _one(lambda d: _basic_clip(
        d, "clipping.mp4", seed=4, clipping=[(4.0, 5.0)],
        purpose="music driven into hard clipping at +-1.0 over 4.0-5.0 s, then AAC-encoded",
    ))  # fmt: skip
    yield ("monitor.mp4",), _one(lambda d: _basic_clip(
        d, "monitor.mp4", seed=7, seconds=12.0, black=[(1.0, 3.0)], freeze=[(4.2, 7.2)],
        silence=[(5.0, 7.1)],
        purpose="defects at the monitoring minimum durations, found at the defaults: black 2 s, "
        "freeze 3 s (keyframes at 5, 6 and 7 s inside), silence 2.1 s (AAC pre-echo leaks ~3 ms "
        "into each edge, so exactly 2 s of zeros decodes ~1.997 s silent)",
    ))  # fmt: skip
    yield (
        ("multi.mp4",),
        _one(lambda d: _sample_clip(d / "multi.mp4", seconds=10.0, width=640, height=360)),
    )
    yield ("multi_25.ts",), _one(lambda d: _basic_clip(
        d, "multi_25.ts", seed=5, fps=25, black=[(1.0, 2.6)], clipping=[(2.5, 3.5)],
        freeze=[(3.2, 5.2)], silence=[(5.5, 7.0)],
        purpose="25 fps MPEG-TS with black, clipping, freeze (keyframes at 4 s, 5 s inside) and "
        "silence; TS start offset and AAC priming skew",
    ))  # fmt: skip
    yield ("vfr.mp4",), _one(lambda d: _vfr_clip(d, "vfr.mp4", seed=6))
    for i, off in enumerate((0, 80, -30, 200, -100)):
        tag = f"p{off}" if off > 0 else f"m{-off}" if off < 0 else "0"
        ext = "ts" if off == -100 else "mp4"
        fname = f"sync_{tag}.{ext}"
        yield (fname,), _one(partial(_sync_clip, name=fname, offset_ms=off, seed=20 + i))
    yield ("damage_flip.mp4", "damage_drop.mp4"), _damaged_mp4
    yield ("damage_ts.ts", "truncated.ts"), _damaged_ts
    traps = (
        ("trap_dark.mp4", "dark_scene", "dark but live scene (luma mostly 18-45, moving detail)"),
        ("trap_pan.mp4", "slow_pan", "slow pan, 0.2 to 1 px/frame, no other motion"),
        ("trap_quiet.mp4", "quiet_audio", "quiet but not silent audio: room tone at -45 dBFS"),
        ("trap_grain.mp4", "grain_hold", "held shot with film grain (static picture, live grain)"),
        ("trap_loud.mp4", "loud_music", "loud, dense but unclipped music (peaks 0.9)"),
    )
    for i, (fname, trap, purpose) in enumerate(traps):
        yield (
            (fname,),
            _one(partial(_trap_clip, name=fname, trap=trap, seed=40 + i, purpose=purpose)),
        )
    yield ("audio_only.m4a",), _one(lambda d: _basic_clip(
        d, "audio_only.m4a", seed=50, video=False, silence=[(3.0, 4.5)],
        purpose="AAC only (no video track): silence 3.0-4.5 s; video detectors are skipped",
    ))  # fmt: skip
    yield ("video_only.mp4",), _one(lambda d: _basic_clip(
        d, "video_only.mp4", seed=51, seconds=6.0, audio=False, black=[(2.0, 3.5)],
        purpose="H.264 only (no audio track): black 2.0-3.5 s; audio detectors are skipped",
    ))  # fmt: skip
    yield ("loud.m4a",), _one(lambda d: _loudness_clip(
        d, "loud.m4a", seed=60, parts=[(8.0, LOUD_RMS_DBFS)],
        purpose="music at about -14.5 LUFS throughout: too loud for R128 (max short-term -18)",
    ))  # fmt: skip
    yield ("quiet.m4a",), _one(lambda d: _loudness_clip(
        d, "quiet.m4a", seed=61, parts=[(13.0, QUIET_RMS_DBFS)],
        purpose="music at about -48.5 LUFS for 13 s: a feed 25 LU under target, not silence",
    ))  # fmt: skip
    yield ("loud_break.mp4",), _one(lambda d: _loudness_clip(
        d, "loud_break.mp4", seed=62, video=True,
        parts=[(5.0, PROGRAMME_RMS_DBFS), (7.0, LOUD_RMS_DBFS), (5.0, PROGRAMME_RMS_DBFS)],
        purpose="programme at about -24.5 LUFS, a 7 s break 10 LU louder, programme again",
    ))  # fmt: skip
    yield ("over_peak.m4a",), _one(lambda d: _loudness_clip(
        d, "over_peak.m4a", seed=63, parts=[(8.0, PROGRAMME_RMS_DBFS)], peaks=[2.5, 6.0],
        purpose="programme at about -24.5 LUFS with two 5 ms bursts whose samples stay at -3 "
        "dBFS and whose true peak is 0 dBTP, over R128's -1 dBTP",
    ))  # fmt: skip


#: Every clip file of the corpus, in truth.json order.
CLIP_NAMES: tuple[str, ...] = tuple(f for files, _ in _recipes() for f in files)


def _run_recipe(args: tuple[int, str]) -> list[dict[str, Any]]:
    index, outdir = args
    recipe = list(_recipes())[index][1]
    return [_rebase(e, Path(outdir) / e["file"]) for e in recipe(Path(outdir))]


def write_corpus(outdir: Path | str, *, workers: int | None = None) -> dict[str, Any]:
    """Write every corpus clip and ``truth.json`` into ``outdir``; return the truth dict.

    Recipes are independent, so they run in ``workers`` processes (default: the CPU count).
    """
    out = Path(outdir)
    (out / "reference").mkdir(parents=True, exist_ok=True)
    recipes = list(_recipes())
    # Slowest first (multi-clip recipes and the 640x360 clip) keeps the workers evenly loaded.
    order = sorted(
        range(len(recipes)), key=lambda i: -(len(recipes[i][0]) + ("multi.mp4" in recipes[i][0]))
    )
    jobs = [(i, str(out)) for i in order]
    n = workers if workers is not None else max(1, min(4, os.cpu_count() or 1))
    if n <= 1:
        results = [_run_recipe(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=n) as pool:
            results = list(pool.map(_run_recipe, jobs))
    rank = {name: i for i, name in enumerate(CLIP_NAMES)}
    clips = sorted((c for r in results for c in r), key=lambda c: rank[c["file"]])
    truth = {"version": TRUTH_VERSION, "clips": clips}
    (out / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return truth
