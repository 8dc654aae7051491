"""The corpus is sane: its truth matches what PyAV decodes from the clips.

These tests check the corpus itself (not the detectors): every clip opens, its streams, size,
rate and duration match the truth, defects lie inside the clip and are really there in the
decoded media, traps are clean, damaged clips really differ from their clean encode, and
truth.json round-trips.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from numpy.typing import NDArray

from tests.conftest import Corpus
from vqa import corpus as C
from vqa.defects import DEFECT_KINDS

VIDEO_KINDS = {"black", "freeze", "corruption"}
AUDIO_KINDS = {"silence", "clipping", "loudness"}
AAC_FRAME = 1024 / C.SAMPLE_RATE


@dataclass
class Decoded:
    """A clip decoded with PyAV; times are seconds from the earliest decoded frame of either
    stream (the source start)."""

    times: NDArray[np.float64]  # video presentation times, sorted
    luma: list[NDArray[np.uint8]]
    key: NDArray[np.bool_]
    audio_start: float
    pcm: NDArray[np.float32]  # (channels, n)
    avg_rate: float | None

    def at(self, t: float) -> int:
        """Index of the frame shown at time ``t``."""
        return int(np.searchsorted(self.times, t + 1e-6, side="right") - 1)

    def mad(self, i: int) -> float:
        """Mean absolute luma difference between frame ``i`` and ``i - 1``."""
        return float(np.abs(self.luma[i].astype(np.int16) - self.luma[i - 1]).mean())

    def audio(self, start: float, end: float) -> NDArray[np.float32]:
        s0 = max(0, round((start - self.audio_start) * C.SAMPLE_RATE))
        s1 = max(s0, round((end - self.audio_start) * C.SAMPLE_RATE))
        return self.pcm[:, s0:s1]


@lru_cache(maxsize=3)
def decode(path: Path) -> Decoded:
    vt: list[float] = []
    luma: list[NDArray[np.uint8]] = []
    key: list[bool] = []
    at: list[float] = []
    pcm: list[NDArray[np.float32]] = []
    avg_rate = None
    with av.open(str(path)) as container:
        streams = [s for s in container.streams if s.type in ("video", "audio")]
        if container.streams.video:
            rate = container.streams.video[0].average_rate
            avg_rate = float(rate) if rate else None
        for packet in container.demux(*streams):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                continue  # damaged packets: keep what decodes
            for frame in frames:
                if isinstance(frame, av.VideoFrame):
                    assert frame.pts is not None and frame.time_base is not None
                    vt.append(float(frame.pts * frame.time_base))
                    luma.append(C.luma_of(frame))
                    key.append(bool(frame.key_frame))
                elif isinstance(frame, av.AudioFrame):
                    assert frame.pts is not None and frame.time_base is not None
                    at.append(float(frame.pts * frame.time_base))
                    pcm.append(frame.to_ndarray().astype(np.float32))
    origin = min(vt[:1] + at[:1] + [min(vt, default=math.inf), min(at, default=math.inf)])
    order = np.argsort(vt)
    return Decoded(
        times=np.asarray(vt)[order] - origin,
        luma=[luma[i] for i in order],
        key=np.asarray(key, dtype=np.bool_)[order],
        audio_start=(min(at) - origin) if at else 0.0,
        pcm=np.concatenate(pcm, axis=1) if pcm else np.zeros((2, 0), np.float32),
        avg_rate=avg_rate,
    )


def clip_names() -> list[str]:
    return list(C.CLIP_NAMES)


def dbfs(x: NDArray[np.float32]) -> float:
    return 20 * math.log10(float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-12)


# ---- truth.json ---------------------------------------------------------------------------


def test_truth_json_round_trips(corpus: Corpus) -> None:
    on_disk = json.loads((corpus.dir / "truth.json").read_text())
    assert on_disk == corpus.truth
    assert json.loads(json.dumps(on_disk)) == on_disk
    assert on_disk["version"] == 1
    names = [c["file"] for c in on_disk["clips"]]
    assert names == list(C.CLIP_NAMES)
    assert len(set(names)) == len(names)


def test_every_kind_and_trap_is_covered(corpus: Corpus) -> None:
    kinds = {d["kind"] for c in corpus.clips() for d in c["defects"]}
    assert kinds == set(DEFECT_KINDS)
    traps = {t for c in corpus.clips() for t in c["traps"]}
    assert {"dark_scene", "slow_pan", "quiet_audio", "grain_hold", "loud_music"} <= traps
    offsets = sorted(c["sync_offset_ms"] for c in corpus.clips() if c["file"].startswith("sync_"))
    assert offsets == [-100.0, -30.0, 0.0, 80.0, 200.0]
    containers = {c["container"] for c in corpus.clips()}
    assert containers == {"mp4", "mpegts"}
    assert {c["fps"] for c in corpus.clips() if c["has_video"]} == {25, 30}
    assert any(c.get("vfr") for c in corpus.clips())
    assert any(c["width"] == 640 for c in corpus.clips())


@pytest.mark.parametrize("name", clip_names())
def test_truth_entry_is_well_formed(corpus: Corpus, name: str) -> None:
    c = corpus.clip(name)
    required = {
        "file": str, "container": str, "duration": float, "has_video": bool, "has_audio": bool,
        "defects": list, "damaged_frames": list, "traps": list, "purpose": str,
    }  # fmt: skip
    for field, typ in required.items():
        assert isinstance(c[field], typ), field
    assert (corpus.dir / c["file"]).is_file()
    assert c["container"] == ("mpegts" if name.endswith(".ts") else "mp4")
    if c["has_video"]:
        assert isinstance(c["fps"], int) and isinstance(c["width"], int)
    else:
        assert c["fps"] is None and c["width"] is None and c["height"] is None
    assert c["sync_offset_ms"] is None or isinstance(c["sync_offset_ms"], float)
    if c["traps"]:
        assert c["defects"] == [], "a trap clip must expect no defect"
    for d in c["defects"]:
        assert d["kind"] in DEFECT_KINDS
        assert 0.0 <= d["start"] < d["end"] <= c["duration"] + 1e-9, d
        if d["kind"] in VIDEO_KINDS:
            assert c["has_video"]
        if d["kind"] in AUDIO_KINDS:
            assert c["has_audio"]
        if d["kind"] in ("black", "freeze") and not c.get("vfr"):
            # injected on frame boundaries
            for t in (d["start"], d["end"]):
                n = (t - c["video_start"]) * c["fps"]
                assert abs(n - round(n)) < 1e-4, (d, t)
        if d["kind"] in ("silence", "clipping"):
            for t in (d["start"], d["end"]):
                # (times are rounded to microseconds, 0.048 samples)
                assert abs(t * C.SAMPLE_RATE - round(t * C.SAMPLE_RATE)) < 0.05
    starts = [(d["start"], d["kind"], d["end"]) for d in c["defects"]]
    assert starts == sorted(starts)


# ---- streams, size, rate, duration ---------------------------------------------------------


@pytest.mark.parametrize("name", clip_names())
def test_clip_opens_and_matches_truth(corpus: Corpus, name: str) -> None:
    c = corpus.clip(name)
    path = corpus.dir / name
    with av.open(str(path)) as container:
        assert bool(container.streams.video) == c["has_video"]
        assert bool(container.streams.audio) == c["has_audio"]
        if c["has_video"]:
            vs = container.streams.video[0]
            assert vs.codec_context.name == "h264"
            assert (vs.codec_context.width, vs.codec_context.height) == (c["width"], c["height"])
        if c["has_audio"]:
            aus = container.streams.audio[0]
            assert aus.codec_context.name == "aac"
            assert aus.codec_context.sample_rate == C.SAMPLE_RATE
            assert aus.codec_context.channels == 2
    dec = decode(path)
    if c["has_video"]:
        assert len(dec.times) == c["frames"]
        end = dec.times[-1] + 1.0 / c["fps"]
        assert end == pytest.approx(c["duration"], abs=1.0 / c["fps"] + 1e-6)
        if not c.get("vfr") and not c.get("truncated"):
            steps = np.diff(dec.times)
            if c.get("missing_frames"):
                # dropped frames show only as timestamp gaps
                assert np.sum(np.rint(steps * c["fps"]) - 1) == len(c["missing_frames"])
            else:
                assert np.allclose(steps, 1.0 / c["fps"], atol=1e-3)
        if c.get("vfr"):
            rates = {round(1 / s) for s in np.diff(dec.times)}
            assert rates == {r for _, r in c["frame_rates"]}
    if c["has_video"]:
        assert dec.times[0] == pytest.approx(c["video_start"], abs=1e-6)
        if c["container"] == "mpegts" and c["has_audio"]:
            assert c["video_start"] == pytest.approx(C.AAC_PRIMING / C.SAMPLE_RATE, abs=1e-4)
        else:
            assert c["video_start"] == 0.0
    if c["has_audio"]:
        assert dec.audio_start == pytest.approx(c["audio_start"], abs=1e-6) == 0.0
        audio_end = dec.audio_start + dec.pcm.shape[1] / C.SAMPLE_RATE
        if c.get("truncated"):
            assert audio_end <= c["duration"] + 0.5
        else:
            # AAC pads the last frame: at most one frame longer than the truth.
            assert c["duration"] - 1e-3 <= audio_end <= c["duration"] + AAC_FRAME + 1e-3


def test_gop_is_one_second(corpus: Corpus) -> None:
    for name in ("black.mp4", "multi_25.ts"):
        c = corpus.clip(name)
        dec = decode(corpus.dir / name)
        key_times = dec.times[dec.key] - c["video_start"]
        assert np.allclose(key_times, np.arange(len(key_times)), atol=1e-3), (name, key_times)
        assert len(key_times) == round(c["duration"])


def test_content_is_live_not_a_test_pattern(corpus: Corpus) -> None:
    dec = decode(corpus.dir / "black.mp4")
    live = [i for i in range(1, len(dec.luma)) if not 1.9 < dec.times[i] < 3.6]
    mads = [dec.mad(i) for i in live]
    assert min(mads) > 0.5, "every live frame moves"
    stds = [float(dec.luma[i].std()) for i in live]
    assert min(stds) > 15, "textured, not flat"
    pcm = dec.pcm
    # Music: never silent, a varying envelope (100 ms RMS spans more than 6 dB).
    win = pcm[0, : pcm.shape[1] // 4800 * 4800].reshape(-1, 4800)
    rms = 20 * np.log10(np.sqrt(np.mean(win.astype(np.float64) ** 2, axis=1)) + 1e-12)
    assert rms.min() > -40
    assert rms.max() - rms.min() > 6


# ---- the injected defects are really there --------------------------------------------------


def _video_defects(c: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [d for d in c["defects"] if d["kind"] == kind]


@pytest.mark.parametrize(
    "name", ["black.mp4", "multi.mp4", "multi_25.ts", "vfr.mp4", "video_only.mp4"]
)
def test_black_frames_are_black(corpus: Corpus, name: str) -> None:
    c = corpus.clip(name)
    dec = decode(corpus.dir / name)
    for d in _video_defects(c, "black"):
        inside = [i for i, t in enumerate(dec.times) if d["start"] - 1e-6 <= t < d["end"] - 1e-6]
        assert inside, d
        for i in inside:
            assert abs(float(dec.luma[i].mean()) - C.BLACK_Y) < 1.0
            assert int(dec.luma[i].max()) <= C.BLACK_Y + 8
        before, after = inside[0] - 1, inside[-1] + 1
        assert dec.luma[before].mean() > 40 and dec.luma[after].mean() > 40
        assert dec.times[inside[0]] == pytest.approx(d["start"], abs=1e-6)
        assert dec.times[after] == pytest.approx(d["end"], abs=1e-6)


@pytest.mark.parametrize("name", ["freeze.mp4", "multi.mp4", "multi_25.ts"])
def test_freeze_holds_and_is_reencoded_at_a_keyframe(corpus: Corpus, name: str) -> None:
    c = corpus.clip(name)
    dec = decode(corpus.dir / name)
    for d in _video_defects(c, "freeze"):
        first, end = dec.at(d["start"]), dec.at(d["end"])
        assert dec.times[first] == pytest.approx(d["start"], abs=1e-6)
        assert dec.mad(first) > 3, "the freeze starts on a changed picture"
        assert dec.mad(end) > 3, "the picture moves again at the end"
        inside = range(first + 1, end)
        keys = [i for i in inside if dec.key[i]]
        assert keys, "a keyframe inside the hold"
        # The re-encoded keyframe differs visibly from the P-frame copy before it ...
        assert max(dec.mad(i) for i in keys) > 1.0
        # ... while the hold otherwise shows the same picture (encoder refinement only, far
        # below the live content's frame differences).
        others = [dec.mad(i) for i in inside if not dec.key[i]]
        assert max(others) < 1.0
        # Live content around the hold moves.
        assert dec.mad(first - 1) > 1 and dec.mad(end + 1) > 1


@pytest.mark.parametrize("name", ["silence.mp4", "multi.mp4", "multi_25.ts", "audio_only.m4a"])
def test_silence_is_digital_silence(corpus: Corpus, name: str) -> None:
    c = corpus.clip(name)
    dec = decode(corpus.dir / name)
    for d in [x for x in c["defects"] if x["kind"] == "silence"]:
        # AAC spreads the edges by at most one frame.
        inner = dec.audio(d["start"] + AAC_FRAME, d["end"] - AAC_FRAME)
        assert float(np.abs(inner).max()) < 1e-3
        assert dbfs(dec.audio(d["start"] - 0.5, d["start"] - AAC_FRAME)) > -40
        assert dbfs(dec.audio(d["end"] + AAC_FRAME, d["end"] + 0.5)) > -40


@pytest.mark.parametrize("name", ["clipping.mp4", "multi.mp4", "multi_25.ts"])
def test_clipping_survives_aac_as_plateau_peaks(corpus: Corpus, name: str) -> None:
    c = corpus.clip(name)
    dec = decode(corpus.dir / name)
    for d in [x for x in c["defects"] if x["kind"] == "clipping"]:
        seg = np.abs(dec.audio(d["start"], d["end"])).max(axis=0)
        # Plateau ripple: the typical 10 ms peak sits near full scale ...
        w10 = seg[: seg.size // 480 * 480].reshape(-1, 480).max(axis=1)
        assert 0.98 <= float(np.median(w10)) <= 1.07, np.quantile(w10, [0.1, 0.5, 0.9])
        assert np.mean(w10 >= 0.98) >= 0.75, np.quantile(w10, [0.1, 0.5, 0.9])
        # ... every 20 ms window reaches 0.98, right up to both edges.
        w20 = seg[: seg.size // 960 * 960].reshape(-1, 960).max(axis=1)
        assert np.mean(w20 >= 0.98) >= 0.95, w20
        assert seg[:960].max() >= 0.98 and seg[-960:].max() >= 0.98
        outside = np.abs(dec.audio(d["start"] - 1.0, d["start"] - AAC_FRAME)).max()
        assert outside < 0.9


@pytest.mark.parametrize("name", ["clipping.mp4", "multi.mp4", "multi_25.ts"])
def test_clipped_audio_is_over_the_true_peak_ceiling(corpus: Corpus, name: str) -> None:
    """Each clipped interval is also a loudness ``true_peak`` defect in the truth, and really
    over R 128's -1 dBTP: 4x oversampled by scipy's polyphase resampler (not the detector's FIR),
    the decoded audio there peaks above it, and well below it a second before."""
    from scipy.signal import resample_poly

    c = corpus.clip(name)
    dec = decode(corpus.dir / name)
    clips = [d for d in c["defects"] if d["kind"] == "clipping"]
    peaks = [d for d in c["defects"] if d["kind"] == "loudness" and d["reason"] == "true_peak"]
    assert [(d["start"], d["end"]) for d in peaks] == [(d["start"], d["end"]) for d in clips]

    def dbtp(a: float, b: float) -> float:
        x = resample_poly(dec.audio(a, b).astype(np.float64), 4, 1, axis=1)
        return 20 * math.log10(float(np.abs(x).max()))

    for d in peaks:
        assert dbtp(d["start"], d["end"]) > -1.0
        assert dbtp(d["start"] - 1.0, d["start"] - AAC_FRAME) < -1.0


def test_loudness_truth_by_construction() -> None:
    """The too-loud run a clipped interval causes (windows 1.5 s either side, the first and last
    values standing for the media's ends) counts only when clearly past the 5 s hold."""
    defects, unjudged = C.clipping_loudness([(18.0, 24.0)], 60.0)
    assert [(d["reason"], d["start"], d["end"]) for d in defects] == [
        ("true_peak", 18.0, 24.0),
        ("too_loud", 16.5, 25.5),
    ] and unjudged == []
    defects, unjudged = C.clipping_loudness([(4.0, 5.0)], 8.0)  # a 4 s run: under the hold
    assert [d["reason"] for d in defects] == ["true_peak"] and unjudged == []
    defects, unjudged = C.clipping_loudness([(2.5, 3.5)], 8.0)  # 0 to 5 s: on the hold
    assert [d["reason"] for d in defects] == ["true_peak"]
    assert [u["reason"] for u in unjudged] == ["too_loud"]
    # The sync clips' beeps: 1 kHz at 0.5 FS, 0.1 s each second = -16.7 LUFS short-term.
    assert C.beeps_too_loud(C.BEEP_AMPLITUDE, per_second=1.0)
    assert not C.beeps_too_loud(C.BEEP_AMPLITUDE, per_second=1 / 3)


def test_score_pairs_found_with_truth_per_detector_set() -> None:
    entry = {
        "defects": [
            {"kind": "black", "start": 1.0, "end": 2.0},
            {"kind": "loudness", "start": 3.0, "end": 4.0, "reason": "true_peak"},
        ],
        "unjudged": [{"kind": "loudness", "reason": "too_loud", "why": "test"}],
    }
    found = [
        {"kind": "black", "start": 1.03, "end": 2.0},
        {"kind": "loudness", "start": 0.0, "end": 6.0, "reason": "too_loud", "level": -9.0},
        {"kind": "freeze", "start": 5.0, "end": 8.0},
    ]
    # Without loudness: its truth is not expected, and the freeze is a false alarm.
    got = C.score(found, entry, ["black", "freeze"])
    assert got == {"missed": [], "false_alarms": [found[2]]}
    # With it: the true peak was missed; the too-loud run is unjudged, not a false alarm.
    got = C.score(found, entry, ["black", "loudness"])
    assert got == {"missed": [entry["defects"][1]], "false_alarms": []}
    # A peak found at another time is both a miss and a false alarm.
    far = {"kind": "loudness", "start": 7.0, "end": 7.1, "reason": "true_peak"}
    got = C.score([found[0], far], entry, ["black", "loudness"])
    assert got == {"missed": [entry["defects"][1]], "false_alarms": [far]}


@pytest.mark.parametrize("name", [n for n in C.CLIP_NAMES if n.startswith("sync_")] + ["multi.mp4"])
def test_sync_marks_flash_and_beep_at_the_true_offset(corpus: Corpus, name: str) -> None:
    c = corpus.clip(name)
    dec = decode(corpus.dir / name)
    flashes = [float(t) for t, y in zip(dec.times, dec.luma, strict=True) if y.mean() > 200]
    assert flashes == pytest.approx(c["sync_marks"], abs=1e-6)
    # Beep onsets from a 1 kHz quadrature demodulation (10 ms moving average).
    x = dec.pcm[0].astype(np.float64)
    t = dec.audio_start + np.arange(x.size) / C.SAMPLE_RATE
    z = np.cumsum(x * np.exp(-2j * np.pi * C.BEEP_HZ * t))
    k = 480
    env = np.abs(z[k:] - z[:-k]) / k * 2  # amplitude of the 1 kHz component, window ending at i+k
    offsets = []
    for f in flashes:
        lo = round((f - 0.3 - dec.audio_start) * C.SAMPLE_RATE)
        seg = env[max(lo, 0) : lo + round(0.6 * C.SAMPLE_RATE)]
        crossing = int(np.argmax(seg > C.BEEP_AMPLITUDE / 2))
        # The windowed amplitude crosses half way when half the window holds the tone.
        onset = (max(lo, 0) + crossing + k / 2) / C.SAMPLE_RATE + dec.audio_start
        offsets.append((onset - f) * 1000)
    assert offsets == pytest.approx([c["sync_offset_ms"]] * len(flashes), abs=2.0)
    expected = [d for d in c["defects"] if d["kind"] == "av_sync"]
    off = c["sync_offset_ms"]
    outside = off > C.SYNC_LATE_MS or -off > C.SYNC_EARLY_MS
    assert bool(expected) == outside
    for d in expected:
        assert d["offset_ms"] == off
        assert d["start"] == c["sync_marks"][0] and d["end"] == c["duration"]


# ---- traps ---------------------------------------------------------------------------------


def test_trap_dark_scene_is_dark_but_live(corpus: Corpus) -> None:
    dec = decode(corpus.dir / "trap_dark.mp4")
    means = np.array([y.mean() for y in dec.luma])
    assert means.min() >= 18 and means.max() <= 45
    mostly = np.mean([np.mean((y >= 18) & (y <= 45)) for y in dec.luma])
    assert mostly > 0.85
    assert min(dec.mad(i) for i in range(1, len(dec.luma))) > 0.05
    assert np.mean([dec.mad(i) for i in range(1, len(dec.luma))]) > 0.5
    assert min(float(y.std()) for y in dec.luma) > 2.0


def test_trap_slow_pan_moves_slowly(corpus: Corpus) -> None:
    dec = decode(corpus.dir / "trap_pan.mp4")
    # Estimate the horizontal shift between consecutive frames by matching column profiles.
    shifts = []
    for i in range(10, len(dec.luma), 10):
        a = dec.luma[i - 1][20:-20].mean(axis=0)
        b = dec.luma[i][20:-20].mean(axis=0)
        cands = np.arange(-3.0, 3.01, 0.05)
        xs = np.arange(20, a.size - 20)
        errs = [
            float(np.mean((np.interp(xs + s, np.arange(a.size), a) - b[xs]) ** 2)) for s in cands
        ]
        shifts.append(abs(cands[int(np.argmin(errs))]))
    assert min(shifts) >= 0.1 and max(shifts) <= 1.2, shifts
    assert max(shifts) - min(shifts) > 0.4, "the pan accelerates"


def test_trap_grain_hold_is_static_but_not_frozen(corpus: Corpus) -> None:
    dec = decode(corpus.dir / "trap_grain.mp4")
    mads = [dec.mad(i) for i in range(1, len(dec.luma))]
    assert min(mads) > 0.3, "grain changes every frame"

    # Blurred (grain averaged away) the picture does not move.
    def blur(y: NDArray[np.uint8]) -> NDArray[np.float64]:
        h, w = y.shape
        return y[: h // 8 * 8, : w // 8 * 8].reshape(h // 8, 8, w // 8, 8).mean(axis=(1, 3))

    first = blur(dec.luma[0])
    assert max(float(np.abs(blur(y) - first).mean()) for y in dec.luma) < 1.0


def test_trap_quiet_audio_is_quiet_not_silent(corpus: Corpus) -> None:
    dec = decode(corpus.dir / "trap_quiet.mp4")
    assert dbfs(dec.pcm) == pytest.approx(-45, abs=2)
    win = dec.pcm[0, : dec.pcm.shape[1] // 4800 * 4800].reshape(-1, 4800)
    assert min(dbfs(w) for w in win) > -55


def test_trap_loud_music_is_loud_but_unclipped(corpus: Corpus) -> None:
    dec = decode(corpus.dir / "trap_loud.mp4")
    peak = float(np.abs(dec.pcm).max())
    assert 0.85 <= peak < 0.97
    assert dbfs(dec.pcm) > -14


# ---- bitstream damage -----------------------------------------------------------------------


DAMAGED = ["damage_flip.mp4", "damage_drop.mp4", "damage_ts.ts", "truncated.ts"]


@pytest.mark.parametrize("name", DAMAGED)
def test_damaged_clip_really_differs_from_its_clean_encode(corpus: Corpus, name: str) -> None:
    c = corpus.clip(name)
    ref_path = corpus.dir / c["reference"]
    assert ref_path.read_bytes() != (corpus.dir / name).read_bytes()
    clean, bad = decode(ref_path), decode(corpus.dir / name)
    assert c["damaged_frames"] or c["missing_frames"]
    corruption = [d for d in c["defects"] if d["kind"] == "corruption"]
    assert corruption

    def covered(t: float) -> bool:
        return any(d["start"] - 1e-6 <= t < d["end"] - 1e-6 for d in corruption)

    damaged = {round(x, 4) for x in c["damaged_frames"]}
    missing = {round(x, 4) for x in c["missing_frames"]}
    bad_at = {round(float(t), 4): y for t, y in zip(bad.times, bad.luma, strict=True)}
    for t, y in zip(clean.times, clean.luma, strict=True):
        key = round(float(t), 4)
        if t >= c["duration"] - 1e-6:
            assert c.get("truncated"), "only a truncated clip loses its tail"
        elif key in damaged:
            assert float(np.abs(bad_at[key].astype(np.int16) - y).mean()) > C.DAMAGE_MAD
            assert covered(t), f"damaged frame at {t} outside every corruption interval"
        elif key in missing:
            assert key not in bad_at
            assert covered(t), f"missing frame at {t} outside every corruption interval"
        else:
            assert np.array_equal(bad_at[key], y), f"frame at {t} should be intact"
    assert len(c["damaged_frames"]) == sum(d["frames"] for d in corruption)
    for d in corruption:
        # Each interval starts on a damaged or missing frame and ends on an intact one.
        assert round(d["start"], 4) in damaged | missing
        end = round(d["end"], 4)
        if end < round(c["duration"], 4):
            assert end not in damaged | missing
            assert np.array_equal(bad_at[end], clean.luma[clean.at(d["end"])])


def test_damage_shapes(corpus: Corpus) -> None:
    drop = corpus.clip("damage_drop.mp4")
    assert len(drop["missing_frames"]) >= 4 and drop["frames"] == 240 - len(drop["missing_frames"])
    flip = corpus.clip("damage_flip.mp4")
    assert flip["missing_frames"] == [] and len(flip["damaged_frames"]) >= 5
    ts = corpus.clip("damage_ts.ts")
    assert len(ts["damaged_frames"]) >= 5
    data = (corpus.dir / "damage_ts.ts").read_bytes()
    assert len(data) % 188 == 0 and all(data[i] == 0x47 for i in range(0, len(data), 188))
    trunc = corpus.clip("truncated.ts")
    assert trunc["truncated"] and trunc["duration"] < 8.0 * 0.8
    assert (corpus.dir / "truncated.ts").stat().st_size % 188 != 0, "cut mid-packet"


# ---- helpers used elsewhere ------------------------------------------------------------------


def test_bad_inputs_are_bad_in_the_intended_way(bad_inputs: dict[str, Path | str]) -> None:
    assert Path(bad_inputs["empty"]).stat().st_size == 0
    with pytest.raises(av.error.FFmpegError):
        av.open(str(bad_inputs["text"])).close()
    with pytest.raises(av.error.FFmpegError):
        av.open(str(bad_inputs["no_moov"])).close()
    data = Path(bad_inputs["no_moov"]).read_bytes()
    assert b"mdat" in data[:64] and b"moov" not in data
    with av.open(str(bad_inputs["undecodable"])) as container:
        stream = container.streams.video[0]
        assert stream.type == "video"
        with pytest.raises(av.error.FFmpegError):
            for _ in container.decode(stream):
                pass
    assert str(bad_inputs["unreachable"]).startswith("http://127.0.0.1:9/")


def test_write_sample_clip(tmp_path: Path) -> None:
    entry = C.write_sample_clip(tmp_path / "sample.mp4", seconds=5.0, width=320, height=180)
    assert entry["file"] == "sample.mp4" and entry["duration"] == 5.0
    kinds = {d["kind"] for d in entry["defects"]}
    assert kinds == {"black", "freeze", "silence", "clipping", "loudness"}
    # The clipped interval is over the true-peak ceiling; at 5 s the sync beeps share short-term
    # windows with it, so its too-loud run is left to the detector.
    (clip,) = [d for d in entry["defects"] if d["kind"] == "clipping"]
    assert [d for d in entry["defects"] if d["kind"] == "loudness"] == [
        {**clip, "kind": "loudness", "reason": "true_peak"}
    ]
    assert [u["reason"] for u in entry["unjudged"]] == ["too_loud"]
    dec = decode(tmp_path / "sample.mp4")
    assert len(dec.times) == 150
    for d in entry["defects"]:
        assert 0 <= d["start"] < d["end"] <= 5.0
        if d["kind"] == "black":
            assert dec.luma[dec.at(d["start"])].mean() == pytest.approx(16, abs=1)
