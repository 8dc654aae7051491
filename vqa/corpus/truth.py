"""Truth entries and how a run is compared with them: the entry format, the source timeline,
what the loudness detector must find in clips made for the others, and :func:`score`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import av

from vqa.corpus.synth import BEEP_SECONDS

TRUTH_VERSION = 1


def _defect(kind: str, start: float, end: float, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "start": round(start, 6), "end": round(end, 6), **extra}


# ---- what the loudness detector must find in clips made for the others ---------------------
#
# With loudness deployed by the stacks, every clip is also judged against EBU R 128, so the truth
# states what the injected audio does to it, by construction: a clipped interval is driven to full
# scale (true peak >= 0 dBTP, over R 128's -1 dBTP ceiling: a true defect wherever clipping is)
# and to about 0 LUFS, so every 3 s short-term window it overlaps (by more than ~50 ms) is over
# R 128's -18 LUFS. Where the recipe does not control a level (music near full scale, sync beeps
# sharing a window with other loud audio) the entry lists the kind under ``unjudged`` with the
# reason: a run neither expects nor forbids those defects there.

#: EBU R 128 s1: the maximum short-term loudness (target -23 LUFS + 5 LU) and the true-peak
#: ceiling; BS.1770's short-term window.
R128_MAX_SHORT_TERM_LUFS = -18.0
SHORT_TERM_SECONDS = 3.0
#: A level run this close to the detector's hold might go either way: not judged.
HOLD_MARGIN_SECONDS = 0.5


def _loud_hold() -> float:
    """Seconds too loud before a monitor alarms: the detector's default (a policy, the one
    place it is set), not a measurement the truth would take from the code it checks."""
    from vqa.detectors.loudness import LoudnessConfig

    return LoudnessConfig().loud_hold


#: Full-scale audio a 3 s window must hold to be over -18 LUFS: about 50 ms (-18 dB of 3 s);
#: taken with margin.
LOUD_OVERLAP_SECONDS = 0.1


def _too_loud_run(start: float, end: float, duration: float) -> tuple[float, float]:
    """The span a short-term meter stamps too loud around ``[start, end)`` of full-scale audio:
    windows centred up to half a window either side; the first value (centre 1.5 s) also stands
    for the start of the media and the last for its end, when they overlap it."""
    half = SHORT_TERM_SECONDS / 2
    a, b = start - half, end + half
    lo = 0.0 if a < half - LOUD_OVERLAP_SECONDS else a
    hi = duration if b > duration - half + LOUD_OVERLAP_SECONDS else b
    return lo, hi


def clipping_loudness(
    clips: Sequence[tuple[float, float]], duration: float, *, beeps_share_window: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(defects, unjudged)`` the loudness detector must find because of the clipped intervals
    ``clips`` of a clip ``duration`` long (see the comment above)."""
    defects = [_defect("loudness", a, b, reason="true_peak") for a, b in clips]
    unjudged: list[dict[str, Any]] = []
    hold = _loud_hold()
    for a, b in clips:
        lo, hi = _too_loud_run(a, b, duration)
        if beeps_share_window or abs((hi - lo) - hold) < HOLD_MARGIN_SECONDS:
            why = (
                "sync beeps share a short-term window with other loud audio"
                if beeps_share_window
                else f"the clipped interval's too-loud run lasts about the {hold:g} s hold"
            )
            unjudged.append({"kind": "loudness", "reason": "too_loud", "why": why})
        elif hi - lo > hold:
            defects.append(_defect("loudness", lo, hi, reason="too_loud"))
    return defects, unjudged[:1]


def beeps_too_loud(amplitude: float, per_second: float) -> bool:
    """Whether tone bursts alone (``amplitude`` peak, :data:`BEEP_SECONDS` long, on both
    channels, ``per_second`` of them) put every short-term window over R 128's maximum:
    BS.1770 loudness = -0.691 + 10 log10(sum of the channels' mean squares); a 1 kHz tone's
    K-weighting gain is about 0 dB."""
    mean_square = 2 * amplitude**2 / 2 * BEEP_SECONDS * per_second
    return -0.691 + 10 * math.log10(mean_square) > R128_MAX_SHORT_TERM_LUFS + 1.0


def expected_defects(entry: dict[str, Any], detectors: Sequence[str]) -> list[dict[str, Any]]:
    """The truth of a clip for a run of ``detectors``: the defects of the kinds they report."""
    return [d for d in entry["defects"] if d["kind"] in detectors]


def unjudged(entry: dict[str, Any], defect: dict[str, Any]) -> bool:
    """Whether the truth leaves ``defect`` (a found one: kind, detail fields) to the run."""
    return any(
        u["kind"] == defect["kind"] and u.get("reason") in (None, defect.get("reason"))
        for u in entry.get("unjudged", [])
    )


#: How far a found defect may lie from its truth and still be the same one (s): a loudness level
#: is stamped at its 3 s window's middle; every other kind is found within a frame or an audio
#: window (tests/test_detectors.py), taken loosely here because this only pairs them up.
MATCH_SLACK = {"loudness": SHORT_TERM_SECONDS / 2}
DEFAULT_MATCH_SLACK = 0.5


def score(
    found: Sequence[dict[str, Any]],
    entry: dict[str, Any],
    detectors: Sequence[str],
    *,
    min_durations: Mapping[str, float] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """``{"missed": [truth...], "false_alarms": [found...]}`` of a run of ``detectors`` over the
    clip of ``entry``: a found and a true defect are the same one when kind and reason agree and
    their intervals overlap within :data:`MATCH_SLACK`; found defects the truth leaves unjudged
    are neither. ``min_durations`` (kind -> seconds, the run's thresholds): true defects shorter
    are not expected (finding them is no false alarm either)."""

    def same(f: dict[str, Any], t: dict[str, Any]) -> bool:
        slack = MATCH_SLACK.get(t["kind"], DEFAULT_MATCH_SLACK)
        return (
            f["kind"] == t["kind"]
            and (t.get("reason") is None or f.get("reason") == t["reason"])
            and f["start"] < t["end"] + slack
            and t["start"] < f["end"] + slack
        )

    truth = expected_defects(entry, detectors)
    minimum = min_durations or {}
    due = [t for t in truth if t["end"] - t["start"] >= minimum.get(t["kind"], 0.0) - 1e-6]
    missed = [t for t in due if not any(same(f, t) for f in found)]
    false_alarms = [
        f
        for f in found
        if f["kind"] in detectors and not any(same(f, t) for t in truth) and not unjudged(entry, f)
    ]
    return {"missed": missed, "false_alarms": false_alarms}


def _entry(
    file: str,
    *,
    duration: float,
    fps: int | None,
    width: int | None,
    height: int | None,
    has_video: bool,
    has_audio: bool,
    defects: list[dict[str, Any]],
    purpose: str,
    sync_offset_ms: float | None = None,
    traps: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    container = "mpegts" if file.endswith(".ts") else "mp4"
    entry: dict[str, Any] = {
        "file": file,
        "container": container,
        "duration": round(duration, 6),
        "fps": fps,
        "width": width,
        "height": height,
        "has_video": has_video,
        "has_audio": has_audio,
        "defects": sorted(defects, key=lambda d: (d["start"], d["kind"], d["end"])),
        "sync_offset_ms": sync_offset_ms,
        "damaged_frames": [],
        "traps": traps or [],
        "purpose": purpose,
    }
    entry.update({k: v for k, v in extra.items() if v is not None})
    return entry


def stream_starts(path: Path) -> dict[str, float]:
    """First presentation time (s) of the video and audio streams, from the container."""
    out = {}
    with av.open(str(path)) as c:
        for kind, streams in (("video", c.streams.video), ("audio", c.streams.audio)):
            if streams and streams[0].start_time is not None and streams[0].time_base:
                out[kind] = float(streams[0].start_time * streams[0].time_base)
    return out


def _rebase(entry: dict[str, Any], path: Path) -> dict[str, Any]:
    """Move an entry's times (built from the first video frame) to the source timeline.

    Source time 0 is the earliest stream start (what ``vqa.media`` reports). In MP4 both streams
    start at 0; in MPEG-TS the AAC priming samples start ~21.3 ms before the first video frame, so
    every time moves by that much. Records ``video_start`` / ``audio_start`` in source time.
    """
    starts = stream_starts(path)
    t0 = min(starts.values())
    anchor = starts.get("video", starts.get("audio", t0))
    shift = anchor - t0

    def mv(t: float) -> float:
        return round(t + shift, 6)

    entry = json.loads(json.dumps(entry))
    entry["duration"] = mv(entry["duration"])
    for d in entry["defects"]:
        d["start"], d["end"] = mv(d["start"]), mv(d["end"])
    for name in ("damaged_frames", "missing_frames", "sync_marks"):
        if name in entry:
            entry[name] = [mv(t) for t in entry[name]]
    if "frame_rates" in entry:
        entry["frame_rates"] = [[mv(t), r] for t, r in entry["frame_rates"]]
    for kind in ("video", "audio"):
        if kind in starts:
            entry[f"{kind}_start"] = round(starts[kind] - t0, 6)
    return entry
