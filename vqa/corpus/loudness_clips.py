"""The loudness clips (in the detector corpus): music at levels outside EBU R 128's limits and
over-peak bursts, with their truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vqa.corpus.synth import Scene, Timeline, VideoSpec, _fmt, _s, cfr_times, encode, music
from vqa.corpus.truth import _defect, _entry

#: Loudness clips: RMS level per channel (dBFS) of programme, a too-loud part and a too-quiet
#: feed. This stereo music measures about RMS + 1 to 2 LU (two channels: +3 dB, BS.1770's -0.691,
#: little energy where K-weighting lifts), so about -24.5, -14.5 and -48.5 LUFS: 3.5 LU above
#: R128's -18 LUFS short-term maximum and 5.5 LU below the -43 LUFS too-quiet limit
#: (``vqa.detectors.loudness``); ``tests/test_loudness.py`` measures them with pyloudnorm. Louder
#: than -16 dBFS RMS, the music's own crests (13 dB above RMS) would pass -1 dBTP too.
PROGRAMME_RMS_DBFS = -26.0
LOUD_RMS_DBFS = -16.0
QUIET_RMS_DBFS = -50.0
#: Over-peak transients: 5 ms of a full-scale tone at a quarter of the sample rate sampled 45
#: degrees off its crests, so every sample is at +-0.707 (-3 dBFS: no sample near clipping) while
#: the waveform between them reaches 0 dBTP, 1 dB over R128's -1 dBTP: the inter-sample peak that
#: true-peak metering exists for. Short enough to lift a 3 s short-term window only ~2.5 LU; the
#: programme's own true peaks stay near -10 dBTP.
PEAK_BURST_SECONDS = 0.005


def _loudness_clip(
    outdir: Path,
    name: str,
    *,
    parts: Sequence[tuple[float, float]],
    seed: int,
    purpose: str,
    peaks: Sequence[float] = (),
    video: bool = False,
) -> dict[str, Any]:
    """Music whose level changes by parts (``(seconds, RMS dBFS)``, 10 ms gain ramps between
    them), with full-scale bursts at ``peaks``; the truth is the parts outside the R128 limits
    (``too_loud`` / ``too_quiet``) and each burst (``true_peak``)."""
    seconds = sum(d for d, _ in parts)
    pcm = music(seconds, seed=seed)
    gain = np.empty(pcm.shape[1])
    t, defects = 0.0, []
    for dur, dbfs in parts:
        a, b = _s(t), _s(t + dur)
        rms = float(np.sqrt(np.mean(np.square(pcm[:, a:b], dtype=np.float64))))
        gain[a:b] = 10 ** (dbfs / 20) / rms
        reason = {LOUD_RMS_DBFS: "too_loud", QUIET_RMS_DBFS: "too_quiet"}.get(dbfs)
        if reason:
            defects.append(_defect("loudness", t, t + dur, reason=reason))
        t += dur
    ramp = _s(0.01)
    kernel = np.ones(ramp) / ramp
    gain = np.convolve(
        np.pad(gain, (ramp // 2, ramp - 1 - ramp // 2), mode="edge"), kernel, "valid"
    )
    pcm = (pcm * gain).astype(np.float32)
    n = _s(PEAK_BURST_SECONDS)
    for at in peaks:
        s0 = _s(at)
        pcm[:, s0 : s0 + n] = np.sin(np.pi / 2 * np.arange(n) + np.pi / 4).astype(np.float32)
        defects.append(_defect("loudness", at, at + PEAK_BURST_SECONDS, reason="true_peak"))
    spec = None
    fps, w, h = 25, 320, 180
    if video:
        scene = Scene(w, h, seed=seed, seconds=seconds)
        spec = VideoSpec(w, h, fps, cfr_times(seconds, fps), Timeline(scene, w, h))
    path = outdir / name
    encode(path, fmt=_fmt(path), video=spec, audio=pcm)
    return _entry(
        name,
        duration=seconds,
        fps=fps if video else None,
        width=w if video else None,
        height=h if video else None,
        has_video=video,
        has_audio=True,
        defects=defects,
        purpose=purpose,
        frames=len(spec.times) if spec else None,
    )
