"""The test corpus: small H.264 + AAC clips with defects injected at known times, and their truth.

Everything is encoded with PyAV (libx264 + FFmpeg's AAC, bundled in the wheel): no ffmpeg binary.
The pictures look like live video rather than test patterns (a 1/f-textured plane seen through a
drifting camera, moving soft-edged shapes, sensor noise), and the audio is music-like (a chord pad,
a plucked bass and melody, hi-hat noise, a varying envelope and a noise floor), so that detectors
are tested on content that moves and sounds.

Defects are injected on exact frame boundaries (video) and exact sample positions (audio).
Bitstream damage is made by altering the encoded packets or the MPEG-TS bytes of a clean encode,
and its truth (which frames are damaged) is measured by decoding both and comparing luma.

Time origin: every time in ``truth.json`` is in seconds from the source start, the earliest first
presentation time of the audio and video streams (as ``vqa.media`` reports times). In MP4 both
streams start at 0 (the edit list trims the AAC encoder delay). In MPEG-TS the AAC encoder's 1024
priming samples are not trimmed, so the audio starts 21.333 ms before the first video frame: there
``video_start`` is 0.021333 and every injected time is shifted by it.

Truth format, one entry per clip (see docs/corpus.md)::

    {"file": "black.mp4", "container": "mp4", "duration": 8.0, "fps": 30, "width": 320,
     "height": 180, "has_video": true, "has_audio": true,
     "defects": [{"kind": "black", "start": 2.0, "end": 3.5}],
     "sync_offset_ms": null, "damaged_frames": [], "traps": [], "purpose": "..."}

plus informative extras: ``frames`` (video frame count), ``audio_start``, ``sync_marks`` (flash
times), ``vfr``, ``reference`` (the clean encode a damaged clip was made from), ``missing_frames``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

import av
import numpy as np
from numpy.typing import NDArray

TRUTH_VERSION = 1
SAMPLE_RATE = 48_000
#: AAC encoder delay of FFmpeg's native encoder (samples); MPEG-TS keeps it, MP4 trims it.
AAC_PRIMING = 1024
#: ITU-R BT.1359 detectability thresholds (ms): sound late by more than this / early by more.
SYNC_LATE_MS = 125.0
SYNC_EARLY_MS = 45.0

#: Luma of black in video range (BT.601/709 "studio swing").
BLACK_Y = 16
#: Luma of the near-white sync flash.
FLASH_Y = 232
#: Sync beep: frequency (Hz), length (s), amplitude.
BEEP_HZ = 1000.0
BEEP_SECONDS = 0.1
BEEP_AMPLITUDE = 0.5
#: A decoded frame counts as damaged when its luma differs from the clean decode's by more than
#: this mean absolute difference (8-bit levels); decoding is deterministic, so intact frames
#: compare equal and any concealed or mispredicted frame exceeds this by far.
DAMAGE_MAD = 0.05
#: Damaged runs separated by at most this many intact frames are one corruption interval (a
#: B-frame predicted only from intact pictures does not make the picture "whole again").
DAMAGE_MERGE_FRAMES = 2

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

#: Thresholds for checking the corpus truth. Most clips keep their defects short (1.5-2 s, so the
#: clips stay small and quick to analyse), below the monitoring defaults (black and silence 2 s,
#: freeze 3 s); the truth of those clips holds at these minimum durations. ``monitor.mp4`` carries
#: defects at exactly the defaults and is checked without overrides.
CORPUS_THRESHOLDS: dict[str, dict[str, Any]] = {
    "black": {"min_duration": 0.5},
    "freeze": {"min_duration": 1.0},
    "silence": {"min_duration": 0.5},
}

Yuv = NDArray[np.uint8]
Pcm = NDArray[np.float32]
RenderFn = Callable[[int, float], Yuv]


# --------------------------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------------------------


def _texture(h: int, w: int, rng: np.random.Generator) -> NDArray[np.float32]:
    """``(h, w)`` float32 in [0, 1]: 1/f noise (natural-image spectrum) plus hard-edged blocks."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    spec = (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)) / f**1.15
    spec[0, 0] = 0.0
    img = np.fft.irfft2(spec, s=(h, w)).astype(np.float32)
    img /= float(img.std()) + 1e-9
    # Edges: a few flat blocks ("buildings", "windows") give the encoder real structure.
    for _ in range(max(6, (h * w) // 6000)):
        bh = int(rng.integers(h // 20 + 2, h // 5 + 3))
        bw = int(rng.integers(w // 30 + 2, w // 6 + 3))
        y0 = int(rng.integers(0, max(1, h - bh)))
        x0 = int(rng.integers(0, max(1, w - bw)))
        img[y0 : y0 + bh, x0 : x0 + bw] += float(rng.uniform(-1.2, 1.2))
    lo, hi = np.percentile(img, [1.0, 99.0])
    out: NDArray[np.float32] = np.clip((img - lo) / (hi - lo + 1e-9), 0.0, 1.0).astype(np.float32)
    return out


Motion = Callable[[float], tuple[float, float]]


def drifting_camera(width: int, height: int) -> Motion:
    """Camera offset (px) over time: a bounded back-and-forth pan, up to ~1.8 px/frame at 30 fps."""
    ax, ay = 0.2 * width, 0.1 * height

    def motion(t: float) -> tuple[float, float]:
        return (
            ax * (1.0 - math.cos(2 * math.pi * t / 7.3)),
            ay * (1.0 - math.cos(2 * math.pi * t / 5.1)),
        )

    return motion


def slow_pan(width: int, seconds: float, fps: float) -> Motion:
    """A horizontal pan accelerating from 0.2 px/frame to 1 px/frame (scaled to 320 px width)."""
    scale = width / 320.0
    v0, v1 = 0.2 * fps * scale, 1.0 * fps * scale
    acc = (v1 - v0) / seconds

    def motion(t: float) -> tuple[float, float]:
        return (v0 * t + 0.5 * acc * t * t, 0.0)

    return motion


@dataclass
class _Shape:
    radius: float
    delta: float
    cx: float
    cy: float
    ax: float
    ay: float
    wx: float
    wy: float
    px: float
    py: float


class Scene:
    """Renders live-looking YUV 4:2:0 frames at any time ``t``.

    A textured canvas larger than the frame is viewed through a moving camera (bilinear crop, so
    sub-pixel motion is real), soft-edged shapes move over it, and fresh sensor noise is added to
    every frame. ``render(t)`` returns ``(height * 3 // 2, width)`` uint8 (Y plane, then U and V).
    """

    def __init__(
        self,
        width: int,
        height: int,
        *,
        seed: int,
        seconds: float,
        luma: tuple[float, float] = (40.0, 200.0),
        motion: Motion | None = None,
        shapes: int = 3,
        noise: float = 1.5,
    ) -> None:
        if width % 2 or height % 4:
            raise ValueError("width must be even and height a multiple of 4 for yuv420p")
        self.width, self.height = width, height
        self.seed = seed
        self.luma = luma
        self.noise = noise
        self.motion = motion or drifting_camera(width, height)
        rng = np.random.default_rng(seed)
        ts = np.linspace(0.0, seconds, 200)
        offs = np.array([self.motion(float(t)) for t in ts])
        pad_x = math.ceil(float(offs[:, 0].max())) + 2
        pad_y = math.ceil(float(offs[:, 1].max())) + 2
        self.canvas = _texture(height + pad_y, width + pad_x, rng)
        s = width / 320.0
        self.shapes = [
            _Shape(
                radius=float(rng.uniform(0.06, 0.14)) * height,
                delta=float(rng.choice([-1, 1]) * rng.uniform(35, 70)),
                cx=float(rng.uniform(0.25, 0.75)) * width,
                cy=float(rng.uniform(0.3, 0.7)) * height,
                ax=float(rng.uniform(0.15, 0.3)) * width,
                ay=float(rng.uniform(0.1, 0.25)) * height,
                wx=float(rng.uniform(0.5, 1.0)) * 60 * s / (0.22 * width),
                wy=float(rng.uniform(0.5, 1.0)) * 40 * s / (0.18 * height),
                px=float(rng.uniform(0, 2 * math.pi)),
                py=float(rng.uniform(0, 2 * math.pi)),
            )
            for _ in range(shapes)
        ]

    def luma_plane(self, t: float, *, noise: bool = True) -> NDArray[np.float32]:
        h, w = self.height, self.width
        ox, oy = self.motion(t)
        ix, iy = math.floor(ox), math.floor(oy)
        fx, fy = ox - ix, oy - iy
        c = self.canvas
        a = c[iy : iy + h, ix : ix + w]
        b = c[iy : iy + h, ix + 1 : ix + w + 1]
        d = c[iy + 1 : iy + h + 1, ix : ix + w]
        e = c[iy + 1 : iy + h + 1, ix + 1 : ix + w + 1]
        crop = (1 - fy) * ((1 - fx) * a + fx * b) + fy * ((1 - fx) * d + fx * e)
        lo, hi = self.luma
        y = lo + (hi - lo) * crop
        for sh in self.shapes:
            cx = sh.cx + sh.ax * math.sin(sh.wx * t + sh.px)
            cy = sh.cy + sh.ay * math.sin(sh.wy * t + sh.py)
            r = sh.radius
            x0, x1 = max(0, int(cx - r - 1)), min(w, int(cx + r + 2))
            y0, y1 = max(0, int(cy - r - 1)), min(h, int(cy + r + 2))
            if x0 >= x1 or y0 >= y1:
                continue
            yy, xx = np.ogrid[y0:y1, x0:x1]
            dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
            alpha = np.clip(r + 0.5 - dist, 0.0, 1.0)
            y[y0:y1, x0:x1] += (alpha * sh.delta * (hi - lo) / 160.0).astype(np.float32)
        if noise and self.noise > 0:
            rng = np.random.default_rng((self.seed, round(t * 1e6)))
            y += rng.standard_normal((h, w), dtype=np.float32) * self.noise
        result: NDArray[np.float32] = y.astype(np.float32, copy=False)
        return result

    def chroma(self, luma: NDArray[np.float32], t: float) -> tuple[Yuv, Yuv]:
        small = luma[::2, ::2]
        mid = 0.5 * (self.luma[0] + self.luma[1])
        u = 128 + 0.18 * (small - mid) + 10 * math.sin(0.6 * t + self.seed)
        v = 128 - 0.14 * (small - mid) + 8 * math.cos(0.4 * t + 2 * self.seed)
        return _to_u8(u, 16, 240), _to_u8(v, 16, 240)

    def render(self, t: float, *, noise: bool = True) -> Yuv:
        y = self.luma_plane(t, noise=noise)
        u, v = self.chroma(y, t)
        return pack_yuv(_to_u8(y, 16, 235), u, v)


def _to_u8(a: NDArray[Any], lo: int, hi: int) -> Yuv:
    out: Yuv = np.clip(np.rint(a), lo, hi).astype(np.uint8)
    return out


def pack_yuv(y: Yuv, u: Yuv, v: Yuv) -> Yuv:
    """Y, U, V planes to the ``(h * 3 // 2, w)`` array PyAV's ``from_ndarray("yuv420p")`` takes."""
    h, w = y.shape
    out = np.empty((h * 3 // 2, w), dtype=np.uint8)
    out[:h] = y
    out[h : h + h // 4] = u.reshape(h // 4, w)
    out[h + h // 4 :] = v.reshape(h // 4, w)
    return out


def flat_frame(width: int, height: int, y: int) -> Yuv:
    """A flat neutral frame (black when ``y == 16``)."""
    out = np.full((height * 3 // 2, width), 128, dtype=np.uint8)
    out[:height] = y
    return out


def flash_frame(width: int, height: int, seed: int) -> Yuv:
    """A near-white frame with faint texture, like a real camera flash or slate."""
    rng = np.random.default_rng(seed)
    y = FLASH_Y + rng.normal(0, 1.5, (height, width))
    u = np.full((height // 2, width // 2), 128.0)
    return pack_yuv(_to_u8(y, 16, 235), _to_u8(u, 16, 240), _to_u8(u, 16, 240))


# --------------------------------------------------------------------------------------------
# Sound
# --------------------------------------------------------------------------------------------


def _shaped_noise(n: int, rng: np.random.Generator, *, tilt: float) -> NDArray[np.float64]:
    """Noise with power ~ f**-tilt (0: white, 1: pink), unit RMS, length ``n``."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    spec /= f ** (tilt / 2)
    spec[0] = 0.0
    x = np.fft.irfft(spec, n)
    out: NDArray[np.float64] = x / (float(np.sqrt(np.mean(x * x))) + 1e-12)
    return out


def room_tone(seconds: float, *, seed: int, dbfs: float = -45.0) -> Pcm:
    """``(2, n)`` quiet room noise (pink-ish noise and a faint mains hum) at ``dbfs`` RMS."""
    n = round(seconds * SAMPLE_RATE)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SAMPLE_RATE
    hum = 0.15 * np.sin(2 * np.pi * 50 * t)
    chans = [_shaped_noise(n, rng, tilt=1.0) + hum for _ in range(2)]
    x = np.stack(chans)
    x *= 10 ** (dbfs / 20) / float(np.sqrt(np.mean(x * x)))
    return x.astype(np.float32)


_CHORDS = (
    (57, 60, 64),  # A minor
    (53, 57, 60),  # F major
    (48, 52, 55),  # C major
    (55, 59, 62),  # G major
)


def _hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def music(seconds: float, *, seed: int, peak: float = 0.5) -> Pcm:
    """``(2, n)`` float32 music-like audio normalised to ``peak``.

    A chord pad, a plucked bass and melody (partials kept below ~900 Hz so that a 1 kHz sync beep
    stands out), hi-hat noise bursts, a slowly swelling envelope and a -50 dB noise floor.
    """
    n = round(seconds * SAMPLE_RATE)
    rng = np.random.default_rng(seed)
    out = np.zeros((2, n))
    beat = 0.5 + 0.1 * float(rng.uniform(-1, 1))

    def add(f0: float, s0: int, s1: int, env: NDArray[np.float64], pan: float, gain: float) -> None:
        s1 = min(s1, n)
        if s1 <= s0:
            return
        t = np.arange(s1 - s0) / SAMPLE_RATE
        wave = np.zeros(s1 - s0)
        for k, amp in ((1, 1.0), (2, 0.45), (3, 0.2)):
            if f0 * k < 900:
                wave += amp * np.sin(2 * np.pi * f0 * k * t + k * pan)
        sig = gain * wave * env[: s1 - s0]
        out[0, s0:s1] += sig * (1 - pan)
        out[1, s0:s1] += sig * pan

    chord_len = 4 * beat
    n_chords = math.ceil(seconds / chord_len)
    offset = int(rng.integers(0, len(_CHORDS)))
    for c in range(n_chords):
        chord = _CHORDS[(c + offset) % len(_CHORDS)]
        s0 = round(c * chord_len * SAMPLE_RATE)
        length = round(chord_len * SAMPLE_RATE)
        t = np.arange(length) / SAMPLE_RATE
        pad_env = np.minimum(1.0, t / 0.15) * np.minimum(1.0, (chord_len - t) / 0.1 + 0.05)
        for i, note in enumerate(chord):
            add(_hz(note - 12), s0, s0 + length, pad_env, 0.3 + 0.2 * i, 0.16)
        # bass on every beat, melody on most half-beats
        for b in range(4):
            sb = s0 + round(b * beat * SAMPLE_RATE)
            tl = np.arange(round(beat * SAMPLE_RATE)) / SAMPLE_RATE
            pluck = np.minimum(1.0, tl / 0.004) * np.exp(-tl / 0.25)
            add(_hz(chord[0] - 24), sb, sb + tl.size, pluck, 0.5, 0.35)
            for half in range(2):
                if rng.random() < 0.25:
                    continue
                sm = sb + round(half * beat / 2 * SAMPLE_RATE)
                tm = np.arange(round(beat / 2 * SAMPLE_RATE)) / SAMPLE_RATE
                env = np.minimum(1.0, tm / 0.01) * np.exp(-tm / 0.12)
                note = chord[int(rng.integers(0, 3))] + 12 * int(rng.integers(0, 2))
                add(_hz(note), sm, sm + tm.size, env, float(rng.uniform(0.2, 0.8)), 0.22)
    # hi-hat: decaying bursts of 3-9 kHz band noise on every half beat
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    spec[(freqs < 3000) | (freqs > 9000)] = 0.0
    hat = np.fft.irfft(spec, n)
    hat /= float(np.sqrt(np.mean(hat * hat))) + 1e-12
    step = round(beat / 2 * SAMPLE_RATE)
    tt = (np.arange(n) % step) / SAMPLE_RATE
    out += 0.05 * hat * np.exp(-tt / 0.03)
    t_all = np.arange(n) / SAMPLE_RATE
    swell = 0.75 + 0.25 * np.sin(2 * np.pi * t_all / float(rng.uniform(4.0, 7.0)) + seed)
    out *= swell
    out *= peak / (float(np.abs(out).max()) + 1e-12)
    out += np.stack([_shaped_noise(n, rng, tilt=1.0) for _ in range(2)]) * 10 ** (-50 / 20)
    return out.astype(np.float32)


def beep(n: int, *, amplitude: float = BEEP_AMPLITUDE) -> Pcm:
    """``(n,)`` 1 kHz tone burst with 1 ms raised-cosine edges (onset stays sample-exact)."""
    t = np.arange(n) / SAMPLE_RATE
    ramp = round(0.001 * SAMPLE_RATE)
    env = np.ones(n)
    edge = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    env[:ramp] = edge
    env[n - ramp :] = edge[::-1]
    out: Pcm = (amplitude * env * np.sin(2 * np.pi * BEEP_HZ * t)).astype(np.float32)
    return out


def _s(t: float) -> int:
    """Seconds to an exact sample index (all corpus times are whole samples)."""
    return round(t * SAMPLE_RATE)


def inject_silence(pcm: Pcm, start: float, end: float) -> None:
    pcm[:, _s(start) : _s(end)] = 0.0


def inject_clipping(pcm: Pcm, start: float, end: float, *, drive: float = 2.0) -> None:
    """Drive ``[start, end)`` into a hard clip at +-1.0, densely up to both edges.

    The music is first levelled by its local RMS (10 ms window, like a brick-wall "loudness war"
    master), then amplified by ``drive`` and clipped: at 2.0 every 10 ms of the interval clips and
    about half of the samples sit on the rails. AAC brings the plateaus back as ripple: the 10 ms
    peaks have a median of about 1.01-1.03, nearly all of them reach 0.98 (single transients
    overshoot further). A gentler drive leaves decoded plateaus at 0.96-0.97, below what a
    clipping detector can call clipped.
    """
    s0, s1 = _s(start), _s(end)
    seg = pcm[:, s0:s1].astype(np.float64)
    n = seg.shape[1]
    power = np.concatenate([[0.0], np.cumsum(np.mean(seg * seg, axis=0))])
    idx = np.arange(n)
    half = SAMPLE_RATE // 200
    lo, hi = np.clip(idx - half, 0, n), np.clip(idx + half, 0, n)
    rms = np.sqrt((power[hi] - power[lo]) / np.maximum(hi - lo, 1)) + 1e-6
    pcm[:, s0:s1] = np.clip(drive * seg / rms, -1.0, 1.0)


def inject_beeps(pcm: Pcm, times: list[float]) -> None:
    n = _s(BEEP_SECONDS)
    for t in times:
        s0 = _s(t)
        pcm[:, s0 : s0 + n] += beep(min(n, pcm.shape[1] - s0))


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


@dataclass
class VideoSpec:
    width: int
    height: int
    fps: int
    #: Presentation times of the frames (s); CFR when ``i / fps``.
    times: list[float]
    render: RenderFn
    crf: int = 23
    gop_seconds: float = 1.0
    vfr: bool = False


def cfr_times(seconds: float, fps: int) -> list[float]:
    return [i / fps for i in range(round(seconds * fps))]


def encode(path: Path, *, fmt: str, video: VideoSpec | None, audio: Pcm | None) -> None:
    """Encode H.264 (libx264 veryfast, fixed GOP, B-frames) and/or AAC 48 kHz stereo to ``path``.

    Audio and video are interleaved by time so that MPEG-TS gets a sane mux.
    """
    with av.open(str(path), "w", format=fmt) as out:
        vs = None
        tick = Fraction(1, 90_000)
        if video is not None:
            gop = max(1, round(video.gop_seconds * video.fps))
            vs = out.add_stream(
                "libx264",
                rate=video.fps,
                options={
                    "preset": "veryfast",
                    "crf": str(video.crf),
                    "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0",
                },
            )
            vs.width, vs.height, vs.pix_fmt = video.width, video.height, "yuv420p"
            tick = Fraction(1, 90_000) if video.vfr else Fraction(1, video.fps)
            vs.codec_context.time_base = tick
        aus = None
        if audio is not None:
            # The "fast" coder is 3x quicker than the default two-loop search at the same SNR.
            aus = out.add_stream(
                "aac", rate=SAMPLE_RATE, layout="stereo", options={"aac_coder": "fast"}
            )
            aus.codec_context.bit_rate = 160_000
        apos = 0
        n_audio = 0 if audio is None else audio.shape[1]

        def feed_audio(upto: int) -> None:
            nonlocal apos
            assert audio is not None and aus is not None
            while apos < min(upto, n_audio):
                chunk = np.ascontiguousarray(audio[:, apos : apos + 1024])
                af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                af.sample_rate = SAMPLE_RATE
                af.pts = apos
                af.time_base = Fraction(1, SAMPLE_RATE)
                for pkt in aus.encode(af):
                    out.mux(pkt)
                apos += chunk.shape[1]

        if video is not None and vs is not None:
            for i, t in enumerate(video.times):
                frame = av.VideoFrame.from_ndarray(video.render(i, t), format="yuv420p")
                frame.pts = round(t / tick)
                frame.time_base = tick
                for pkt in vs.encode(frame):
                    out.mux(pkt)
                if aus is not None:
                    feed_audio(_s(t) + SAMPLE_RATE // 10)
            for pkt in vs.encode(None):
                out.mux(pkt)
        if aus is not None:
            feed_audio(n_audio)
            for pkt in aus.encode(None):
                out.mux(pkt)


# --------------------------------------------------------------------------------------------
# Clip recipes
# --------------------------------------------------------------------------------------------


@dataclass
class Timeline:
    """Per-frame picture choice: live scene by default, overridden over frame-exact intervals."""

    scene: Scene
    width: int
    height: int
    black: list[tuple[float, float]] = field(default_factory=list)
    freeze: list[tuple[float, float]] = field(default_factory=list)
    flashes: list[float] = field(default_factory=list)
    grain_hold: tuple[float, float, float] | None = None  # start, end, grain sigma
    _held: dict[float, Yuv] = field(default_factory=dict)

    def __call__(self, i: int, t: float) -> Yuv:
        eps = 1e-9
        for a, b in self.black:
            if a - eps <= t < b - eps:
                return flat_frame(self.width, self.height, BLACK_Y)
        for f in self.flashes:
            if abs(t - f) < eps:
                return flash_frame(self.width, self.height, i)
        for a, b in self.freeze:
            if a - eps <= t < b - eps:
                if a not in self._held:
                    self._held[a] = self.scene.render(a)
                return self._held[a]
        if self.grain_hold is not None:
            a, b, sigma = self.grain_hold
            if a - eps <= t < b - eps:
                if a not in self._held:
                    self._held[a] = self.scene.render(a, noise=False)
                held = self._held[a]
                rng = np.random.default_rng((self.scene.seed, i, 7))
                out = held.copy()
                grain = rng.standard_normal((self.height, self.width), dtype=np.float32) * sigma
                out[: self.height] = _to_u8(held[: self.height] + grain, 16, 235)
                return out
        return self.scene.render(t)


def _defect(kind: str, start: float, end: float, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "start": round(start, 6), "end": round(end, 6), **extra}


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


def _snap(t: float, fps: int) -> float:
    return round(t * fps) / fps


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
        ],
        sync_offset_ms=0.0,
        sync_marks=marks,
        frames=len(spec.times),
        purpose="all four basic defects in one 640x360 clip with in-sync marks (the sample clip)",
    )
    return entry


def _fmt(path: Path) -> str:
    return "mpegts" if path.suffix == ".ts" else "mp4"


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
    return _entry(
        name,
        duration=seconds,
        fps=fps if video else None,
        width=width if video else None,
        height=height if video else None,
        has_video=video,
        has_audio=audio,
        defects=defects,
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


# ---- bitstream damage ------------------------------------------------------------------------


def luma_of(frame: av.VideoFrame) -> Yuv:
    """The decoded Y plane as a ``(height, width)`` uint8 copy (video range, no conversion)."""
    plane = frame.planes[0]
    rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(frame.height, plane.line_size)
    out: Yuv = rows[:, : frame.width].copy()
    return out


def decode_luma(path: Path) -> tuple[dict[int, Yuv], Fraction, int | None]:
    """Decode every video frame that decodes: ``{pts: luma (h, w)}``, time base, first pts.

    Packets are decoded one by one so that a decoder error skips that packet instead of ending
    the decode (as a broadcast monitor would).
    """
    frames: dict[int, Yuv] = {}
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        tb = vs.time_base
        assert tb is not None
        for pkt in c.demux(vs):
            try:
                decoded = pkt.decode()
            except av.error.FFmpegError:
                continue
            for fr in decoded:
                if fr.pts is not None:
                    frames[int(fr.pts)] = luma_of(fr)
    first = min(frames) if frames else None
    return frames, Fraction(tb), first


def compare_decodes(clean: Path, damaged: Path, *, fps: int, duration: float) -> dict[str, Any]:
    """Truth for a damaged clip: damaged and missing frame times and corruption intervals.

    Walks the clean decode in presentation order. A frame is damaged when it decodes but its
    luma differs from the clean one (mean absolute difference above ``DAMAGE_MAD``), missing
    when it does not decode at all (dropped, undecodable or cut off; for a truncated file only
    frames before the last decoded one count). An interval runs from the first damaged or
    missing frame to the next intact frame (end exclusive), or to the end of what decodes.
    """
    ref, tb, origin = decode_luma(clean)
    bad, tb2, _ = decode_luma(damaged)
    assert origin is not None and tb == tb2
    last_decoded = max(bad) if bad else origin

    def sec(pts: int) -> float:
        return round(float((pts - origin) * tb), 6)

    damaged_frames: list[float] = []
    missing: list[float] = []
    runs: list[list[int]] = []  # [first bad index, first intact index after it] in `order`
    order = [pts for pts in sorted(ref) if pts <= last_decoded]
    for i, pts in enumerate(order):
        if pts not in bad:
            missing.append(sec(pts))
        elif float(np.abs(bad[pts].astype(np.int16) - ref[pts]).mean()) > DAMAGE_MAD:
            damaged_frames.append(sec(pts))
        else:
            continue
        if runs and i - runs[-1][1] <= DAMAGE_MERGE_FRAMES:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    end_decoded = round(sec(last_decoded) + 1.0 / fps, 6)
    intervals = [
        [sec(order[a]), sec(order[b]) if b < len(order) else min(end_decoded, duration)]
        for a, b in runs
    ]
    return {
        "damaged_frames": damaged_frames,
        "missing_frames": missing,
        "intervals": intervals,
        "decoded_end": end_decoded,
        "frames": len(bad),
    }


def _remux(src: Path, dst: Path, alter: Callable[[int, av.Packet], av.Packet | None]) -> None:
    """Copy ``src`` to ``dst`` packet by packet; ``alter(video_index, pkt)`` may change or drop
    a video packet (``None`` drops it)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=_fmt(dst)) as out:
        mapping = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        vidx = inp.streams.video[0].index
        k = 0
        for pkt in inp.demux():
            if pkt.dts is None and pkt.size == 0:
                continue  # demuxer flush packet
            new: av.Packet | None = pkt
            if pkt.stream.index == vidx:
                new = alter(k, pkt)
                k += 1
            if new is None:
                continue
            new.stream = mapping[pkt.stream.index]
            out.mux(new)


def _copy_packet(pkt: av.Packet, data: bytes) -> av.Packet:
    new = av.Packet(data)
    new.pts, new.dts, new.time_base = pkt.pts, pkt.dts, pkt.time_base
    new.duration = pkt.duration
    new.is_keyframe = pkt.is_keyframe
    return new


def _video_packet_times(path: Path) -> list[tuple[float, bool]]:
    """``(dts seconds, is_keyframe)`` of each video packet in decode order."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        out = []
        for pkt in c.demux(vs):
            if pkt.dts is None:
                continue
            out.append((float(pkt.dts * pkt.time_base), bool(pkt.is_keyframe)))
    return out


DAMAGE_SECONDS, DAMAGE_FPS = 8.0, 30


def _damage_clean(outdir: Path, name: str, *, seed: int) -> Path:
    """The clean encode damaged clips are derived from (kept under ``reference/``)."""
    seconds, fps, w, h = DAMAGE_SECONDS, DAMAGE_FPS, 320, 180
    ref = outdir / "reference" / name
    ref.parent.mkdir(parents=True, exist_ok=True)
    scene = Scene(w, h, seed=seed, seconds=seconds)
    spec = VideoSpec(w, h, fps, cfr_times(seconds, fps), Timeline(scene, w, h))
    encode(ref, fmt=_fmt(ref), video=spec, audio=music(seconds, seed=seed))
    return ref


def _damage_entry(
    name: str, ref: Path, outdir: Path, *, purpose: str, **extra: Any
) -> dict[str, Any]:
    seconds, fps = DAMAGE_SECONDS, DAMAGE_FPS
    cmp = compare_decodes(ref, outdir / name, fps=fps, duration=seconds)
    truncated = bool(extra.pop("truncated", False))
    duration = cmp["decoded_end"] if truncated else seconds
    defects = [
        _defect("corruption", a, b, frames=sum(1 for t in cmp["damaged_frames"] if a <= t < b))
        for a, b in cmp["intervals"]
    ]
    entry = _entry(
        name,
        duration=duration,
        fps=fps,
        width=320,
        height=180,
        has_video=True,
        has_audio=True,
        defects=defects,
        purpose=purpose,
        reference=str(ref.relative_to(outdir)),
        frames=cmp["frames"],
        missing_frames=cmp["missing_frames"],
        **extra,
    )
    entry["damaged_frames"] = cmp["damaged_frames"]
    if truncated:
        entry["truncated"] = True
    return entry


def _pick_packets(path: Path, at: list[float]) -> list[int]:
    """Indices (decode order) of the first non-key video packet at or after each time."""
    times = _video_packet_times(path)
    picks = []
    for t in at:
        for i, (dts, key) in enumerate(times):
            if dts >= t and not key:
                picks.append(i)
                break
    return picks


def _flip_clip(outdir: Path, name: str, ref: Path, *, seed: int) -> dict[str, Any]:
    targets = set(_pick_packets(ref, [2.3, 5.4]))
    rng = np.random.default_rng(seed)

    def alter(k: int, pkt: av.Packet) -> av.Packet | None:
        if k not in targets:
            return pkt
        data = bytearray(bytes(pkt))
        # Keep the NAL length prefix and slice header start; scramble 2% of the slice data.
        lo = min(len(data) - 1, 12)
        count = max(6, len(data) // 50)
        pos = rng.integers(lo, len(data), count)
        for p in pos:
            data[int(p)] ^= int(rng.integers(1, 256))
        return _copy_packet(pkt, bytes(data))

    _remux(ref, outdir / name, alter)
    return _damage_entry(
        name, ref, outdir,
        purpose="bytes flipped inside two video packets (MP4 remux): corruption until the next "
        "keyframe",
    )  # fmt: skip


def _drop_clip(outdir: Path, name: str, ref: Path) -> dict[str, Any]:
    first = _pick_packets(ref, [3.3, 6.1])
    targets = {first[0], first[0] + 1, first[0] + 2, first[1]}

    def alter(k: int, pkt: av.Packet) -> av.Packet | None:
        return None if k in targets else pkt

    _remux(ref, outdir / name, alter)
    return _damage_entry(
        name, ref, outdir,
        purpose="video packets dropped (3 at ~3.3 s, 1 at ~6.1 s): visible only as timestamp gaps "
        "and the damage that follows",
    )  # fmt: skip


def _ts_packets(data: bytes | bytearray, pid: int) -> list[int]:
    """Byte offsets of the 188-byte TS packets of ``pid`` that do not start a PES."""
    out = []
    for off in range(0, len(data) - 187, 188):
        if data[off] != 0x47:
            continue
        p = ((data[off + 1] & 0x1F) << 8) | data[off + 2]
        pusi = data[off + 1] & 0x40
        if p == pid and not pusi:
            out.append(off)
    return out


def _ts_payload_start(data: bytes | bytearray, off: int) -> int:
    afc = (data[off + 3] >> 4) & 0x3
    start = off + 4
    if afc in (2, 3):
        start += 1 + data[off + 4]
    return min(start, off + 188)


def _video_pid(path: Path) -> int:
    with av.open(str(path)) as c:
        return int(c.streams.video[0].id)


def _ts_damage_clip(outdir: Path, name: str, ref: Path, *, seed: int) -> dict[str, Any]:
    data = bytearray(ref.read_bytes())
    offs = _ts_packets(data, _video_pid(ref))
    rng = np.random.default_rng(seed)
    hits = [offs[int(len(offs) * 0.3)], *offs[int(len(offs) * 0.68) : int(len(offs) * 0.68) + 3]]
    for off in hits:
        start = _ts_payload_start(data, off)
        data[start : off + 188] = rng.integers(0, 256, off + 188 - start, dtype=np.uint8).tobytes()
    (outdir / name).write_bytes(bytes(data))
    return _damage_entry(
        name, ref, outdir,
        purpose="payload of 4 MPEG-TS packets of the video PID overwritten (sync bytes and "
        "headers kept)",
        damaged_ts_packets=[off // 188 for off in hits],
    )  # fmt: skip


def _truncated_clip(outdir: Path, name: str, ref: Path) -> dict[str, Any]:
    data = ref.read_bytes()
    offs = _ts_packets(data, _video_pid(ref))
    # Cut in the middle of a TS packet inside a video PES about 60% into the file.
    cut = offs[int(len(offs) * 0.6)] + 100
    (outdir / name).write_bytes(data[:cut])
    return _damage_entry(
        name, ref, outdir,
        purpose="MPEG-TS cut mid-packet at ~60%: analysed as far as it goes; the picture cut in "
        "half is corruption",
        truncated=True,
        cut_bytes=cut,
    )  # fmt: skip


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


# ---- the bad-input helpers used by tests (not part of the corpus) ------------------------------


def write_undecodable(path: Path | str) -> None:
    """A valid MP4 whose only stream declares EVC (``evc1``), which FFmpeg cannot decode.

    The sample entry of an H.264 encode is relabelled: the container opens, the stream is video,
    and opening a decoder fails (FFmpeg has no native MPEG-5 EVC decoder).
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".h264.mp4")
    spec = VideoSpec(
        160, 96, 30, cfr_times(1.0, 30), Timeline(Scene(160, 96, seed=5, seconds=1), 160, 96)
    )
    encode(tmp, fmt="mp4", video=spec, audio=None)
    data = tmp.read_bytes()
    tmp.unlink()
    i = data.index(b"stsd")
    path.write_bytes(data[:i] + data[i:].replace(b"avc1", b"evc1", 1))


def write_no_moov(path: Path | str) -> None:
    """An MP4 written without faststart (index at the end), cut just before its ``moov`` box."""
    path = Path(path)
    tmp = path.with_name(path.name + ".full.mp4")
    spec = VideoSpec(
        160, 96, 30, cfr_times(1.0, 30), Timeline(Scene(160, 96, seed=6, seconds=1), 160, 96)
    )
    encode(tmp, fmt="mp4", video=spec, audio=music(1.0, seed=6))
    data = tmp.read_bytes()
    tmp.unlink()
    off = 0
    while off + 8 <= len(data):
        size = int.from_bytes(data[off : off + 4], "big")
        kind = data[off + 4 : off + 8]
        if kind == b"moov":
            break
        if size == 1:
            size = int.from_bytes(data[off + 8 : off + 16], "big")
        off += max(size, 8)
    else:
        raise RuntimeError("no moov box found")
    path.write_bytes(data[:off])


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


# --------------------------------------------------------------------------------------------
# MPEG-TS transport damage (ETSI TR 101 290 priority 1), for the ``transport`` detector
# --------------------------------------------------------------------------------------------

#: The clean TS the transport clips are damaged from: long enough for a referred PID to stay
#: away longer than PID_error's 5 s period.
TRANSPORT_SECONDS, TRANSPORT_FPS = 10.0, 15
TS_PACKET = 188
#: PIDs FFmpeg's muxer gives the first programme: PMT, video (also the PCR PID), audio.
TS_PMT_PID, TS_VIDEO_PID, TS_AUDIO_PID, TS_NULL_PID = 0x1000, 0x100, 0x101, 0x1FFF
TRANSPORT_CLIPS = ("ts_drop.ts", "ts_sync.ts", "ts_psi.ts", "ts_pid.ts")


class _Packets:
    """The packets of a TS file, read one by one in plain Python (an implementation separate
    from :mod:`vqa.tsanalysis`, so the truth does not come from the code it checks)."""

    def __init__(self, data: bytes) -> None:
        if len(data) % TS_PACKET:
            raise ValueError("not a whole number of 188-byte packets")
        self.pk = [bytearray(data[i : i + TS_PACKET]) for i in range(0, len(data), TS_PACKET)]

    @staticmethod
    def pid(p: bytes | bytearray) -> int:
        return ((p[1] & 0x1F) << 8) | p[2]

    @staticmethod
    def pcr(p: bytes | bytearray) -> float | None:
        if p[3] & 0x20 and p[4] >= 7 and p[5] & 0x10:
            base = (p[6] << 25) | (p[7] << 17) | (p[8] << 9) | (p[9] << 1) | (p[10] >> 7)
            return base / 90000.0 + (((p[10] & 1) << 8) | p[11]) / 27e6
        return None

    def times(self, t0: float) -> list[float]:
        """Each packet's time (s from ``t0``): PCR interpolated by packet index (ISO/IEC
        13818-1 2.4.2.2), at the first / last interval's rate before / after the PCRs."""
        marks = [(i, t - t0) for i, p in enumerate(self.pk) if (t := self.pcr(p)) is not None]
        idx = [i for i, _ in marks]
        val = [t for _, t in marks]
        first = (val[1] - val[0]) / (idx[1] - idx[0])
        last = (val[-1] - val[-2]) / (idx[-1] - idx[-2])
        out = []
        for i in range(len(self.pk)):
            if i < idx[0]:
                out.append(val[0] - (idx[0] - i) * first)
            elif i > idx[-1]:
                out.append(val[-1] + (i - idx[-1]) * last)
            else:
                out.append(float(np.interp(i, idx, val)))
        return out

    def null_out(self, i: int) -> None:
        """Replace packet ``i`` by a null packet (a mux that stops sending that PID)."""
        self.pk[i] = bytearray([0x47, 0x1F, 0xFF, 0x10]) + bytearray([0xFF] * 184)

    def renumber(self, pid: int) -> None:
        """Make ``pid``'s continuity counters continuous again (after some were nulled)."""
        cc = None
        for p in self.pk:
            if self.pid(p) == pid and p[3] & 0x10:
                cc = p[3] & 0x0F if cc is None else (cc + 1) % 16
                p[3] = (p[3] & 0xF0) | cc

    def data(self) -> bytes:
        return b"".join(bytes(p) for p in self.pk)


def _ts_truth(
    indicator: str, pid: int | None, start: float, end: float, **extra: Any
) -> dict[str, Any]:
    return {
        "indicator": indicator,
        "pid": pid,
        "start": round(start, 6),
        "end": round(end, 6),
        **extra,
    }


def _first_at(pk: _Packets, times: list[float], t: float, pid: int, *, payload: bool) -> int:
    """Index of the first packet of ``pid`` at or after ``t`` s (carrying payload without a
    PCR, if ``payload``: dropping it leaves the clock alone)."""
    for i, p in enumerate(pk.pk):
        plain = p[3] & 0x10 and pk.pcr(p) is None
        if times[i] >= t and pk.pid(p) == pid and (plain or not payload):
            return i
    raise ValueError(f"no packet of PID {pid:#x} after {t} s")


def _ts_drop(pk: _Packets, times: list[float]) -> tuple[_Packets, list[dict[str, Any]]]:
    """Video packets lost on the link: 3 in a row at 2.0 s, 1 at 6.0 s."""
    truth, drop = [], []
    for at, n in ((2.0, 3), (6.0, 1)):
        i = _first_at(pk, times, at, TS_VIDEO_PID, payload=True)
        run = [i]
        while len(run) < n:
            run.append(_first_at(pk, times, times[run[-1]] + 1e-9, TS_VIDEO_PID, payload=True))
        drop += run
        # The error shows at the next video packet kept; packets keep their times (the PCRs
        # around are kept), the bytes after the hole move up.
        nxt = next(j for j in range(run[-1] + 1, len(pk.pk)) if pk.pid(pk.pk[j]) == TS_VIDEO_PID)
        truth.append((nxt, run[0], n))
    kept = [i for i in range(len(pk.pk)) if i not in set(drop)]
    out = _Packets(b"".join(bytes(pk.pk[i]) for i in kept))
    new_index = {old: new for new, old in enumerate(kept)}
    return out, [
        {"at_packet": new_index[nxt], "lost_from": lost, "lost": n} for nxt, lost, n in truth
    ]


def write_transport_corpus(outdir: Path | str) -> dict[str, Any]:
    """Write the four TR 101 290 clips and ``transport_truth.json`` into ``outdir``.

    One clean 10 s TS (320x180, 15 fps, H.264 + AAC) is damaged at the packet level:

    - ``ts_drop.ts``: video packets removed (3 at 2.0 s, 1 at 6.0 s): 1.4 Continuity_count_error
      on the video PID at the next video packet.
    - ``ts_sync.ts``: one corrupted sync byte at 2.0 s (1.2 Sync_byte_error) and four in a row at
      5.0 s (1.2 and 1.1 TS_sync_loss until the next correct sync byte, the first of the five
      that re-acquire sync).
    - ``ts_psi.ts``: PAT and PMT replaced by null packets over [3.0, 4.0) s (CCs renumbered so
      only the tables are missing): 1.3 PAT_error and 1.5 PMT_error over the absence.
    - ``ts_pid.ts``: the audio PID replaced by null packets over [2.0, 8.5) s: 1.6 PID_error.

    Truth times are the packets' PCR times (interpolated by an implementation of its own), from
    the earliest stream start as :mod:`vqa.media` counts them. Each clip also lists ``damaged``:
    the intervals the damage touches, outside which nothing may be reported.
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    w, h, fps, seconds = 320, 180, TRANSPORT_FPS, TRANSPORT_SECONDS
    ref = out / "ts_clean.ts"
    scene = Scene(w, h, seed=41, seconds=seconds)
    spec = VideoSpec(w, h, fps, cfr_times(seconds, fps), Timeline(scene, w, h))
    encode(ref, fmt="mpegts", video=spec, audio=music(seconds, seed=41))
    t0 = min(stream_starts(ref).values())
    clean = _Packets(ref.read_bytes())
    times = clean.times(t0)
    clips: list[dict[str, Any]] = [
        {"file": ref.name, "defects": [], "damaged": [], "purpose": "clean: no alarm"}
    ]
    # The tolerance on boundaries: the longest time one packet takes on the link.
    packet_interval = float(np.max(np.diff(times)))

    def pkt(tt: list[float], i: int) -> tuple[float, float]:
        return tt[i], tt[i + 1] if i + 1 < len(tt) else tt[i]

    # Dropped packets.
    dropped, marks = _ts_drop(clean, times)
    dt = dropped.times(t0)
    defects = [
        _ts_truth("1.4 Continuity_count_error", TS_VIDEO_PID, *pkt(dt, m["at_packet"]))
        for m in marks
    ]
    (out / "ts_drop.ts").write_bytes(dropped.data())
    clips.append(
        {
            "file": "ts_drop.ts",
            "defects": defects,
            "damaged": [[d["start"], d["end"]] for d in defects],
            "cc_errors": {str(TS_VIDEO_PID): len(marks)},
            "purpose": "video packets lost: continuity errors on the video PID",
        }
    )

    # Corrupted sync bytes: the slots stay, so times stay.
    sync = _Packets(clean.data())
    # Packets without a PCR: a corrupted packet's PCR is lost too, which would move the clock.
    single = _first_at(sync, times, 2.0, TS_VIDEO_PID, payload=True)
    burst = _first_at(sync, times, 5.0, TS_VIDEO_PID, payload=True)
    for i in (single, *range(burst, burst + 4)):
        sync.pk[i][0] = 0x46
    (out / "ts_sync.ts").write_bytes(sync.data())
    clips.append(
        {
            "file": "ts_sync.ts",
            "defects": [
                _ts_truth("1.2 Sync_byte_error", None, *pkt(times, single)),
                _ts_truth("1.2 Sync_byte_error", None, times[burst], times[burst + 2]),
                _ts_truth("1.1 TS_sync_loss", None, times[burst], times[burst + 4]),
            ],
            # The damaged packets' own PIDs lose them: continuity errors follow within 0.5 s.
            "damaged": [[times[single], times[single] + 0.5], [times[burst], times[burst] + 0.5]],
            "purpose": "corrupted sync bytes: one alone, then four in a row (sync lost)",
        }
    )

    # PAT and PMT missing for a second.
    psi = _Packets(clean.data())
    gone = [
        i for i, p in enumerate(psi.pk) if 3.0 <= times[i] < 4.0 and psi.pid(p) in (0, TS_PMT_PID)
    ]
    for i in gone:
        psi.null_out(i)
    psi.renumber(0)
    psi.renumber(TS_PMT_PID)
    defects = []
    for indicator, pid in (("1.3 PAT_error", 0), ("1.5 PMT_error", TS_PMT_PID)):
        seen = [i for i, p in enumerate(psi.pk) if psi.pid(p) == pid and p[1] & 0x40]
        before = max(i for i in seen if times[i] < 3.0)
        after = min(i for i in seen if times[i] >= 4.0)
        defects.append(_ts_truth(indicator, pid, times[before], times[after]))
    (out / "ts_psi.ts").write_bytes(psi.data())
    clips.append(
        {
            "file": "ts_psi.ts",
            "defects": defects,
            "damaged": [[d["start"], d["end"]] for d in defects],
            "purpose": "PAT and PMT not sent for 1 s (limit 0.5 s)",
        }
    )

    # The audio PID gone for 6.5 s.
    pidc = _Packets(clean.data())
    aud = [i for i, p in enumerate(pidc.pk) if pidc.pid(p) == TS_AUDIO_PID]
    for i in aud:
        if 2.0 <= times[i] < 8.5:
            pidc.null_out(i)
    pidc.renumber(TS_AUDIO_PID)
    before = max(i for i in aud if times[i] < 2.0)
    after = min(i for i in aud if times[i] >= 8.5)
    defect = _ts_truth("1.6 PID_error", TS_AUDIO_PID, times[before], times[after])
    (out / "ts_pid.ts").write_bytes(pidc.data())
    clips.append(
        {
            "file": "ts_pid.ts",
            "defects": [defect],
            "damaged": [[defect["start"], defect["end"]]],
            "purpose": "the audio PID the PMT lists is absent for 6.5 s (limit 5 s)",
        }
    )
    truth = {"version": TRUTH_VERSION, "t0": t0, "packet_interval": packet_interval, "clips": clips}
    (out / "transport_truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return truth
