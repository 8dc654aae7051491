"""Broadcast test signals: what a chain carries when there is no programme, and must not alarm.

- ``bars.mp4``: eight vertical 75 % colour bars 80 px wide (every edge on the 8-px coding grid)
  with a continuous 1 kHz line-up tone at -18 dBFS (EBU R 68 alignment level);
- ``testcard.mp4``: a test card -- a 32-px grid, a checkerboard of 8x8 squares, a grey ramp, a
  slate with blocky text whose clock digits change every second -- over the same tone;
- ``sync.mp4``: a flash-and-beep sync signal: one white frame on a dark grey field and a 40 ms
  1 kHz beep at the same instant, once a second, digital silence in between.

Written with :func:`vqa.corpus.encode` (H.264 + AAC), 640x360 at 25 fps.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from vqa.corpus import SAMPLE_RATE, VideoSpec, cfr_times, encode

WIDTH, HEIGHT, FPS = 640, 360, 25
#: 75 % bars (white, yellow, cyan, green, magenta, red, blue, black) in BT.709 video-range YCbCr.
BARS_YUV = (
    (180, 128, 128),
    (168, 44, 136),
    (145, 147, 44),
    (133, 63, 52),
    (63, 193, 204),
    (51, 109, 212),
    (28, 212, 120),
    (16, 128, 128),
)
TONE_HZ = 1000.0
TONE_DBFS = -18.0
BEEP_SECONDS = 0.040

Render = Callable[[int, float], NDArray[np.uint8]]


def _yuv420(y: NDArray[np.uint8], u: NDArray[np.uint8], v: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Planar yuv420p as one ``(h * 3 / 2, w)`` array, as ``av.VideoFrame.from_ndarray`` wants."""
    h, w = y.shape
    chroma = np.concatenate([u.reshape(-1), v.reshape(-1)]).reshape(h // 2, w)
    return np.concatenate([y, chroma])


def bars_picture() -> NDArray[np.uint8]:
    bar = WIDTH // len(BARS_YUV)
    y = np.zeros((HEIGHT, WIDTH), np.uint8)
    u = np.zeros((HEIGHT // 2, WIDTH // 2), np.uint8)
    v = np.zeros_like(u)
    for i, (yy, cb, cr) in enumerate(BARS_YUV):
        y[:, i * bar : (i + 1) * bar] = yy
        u[:, i * bar // 2 : (i + 1) * bar // 2] = cb
        v[:, i * bar // 2 : (i + 1) * bar // 2] = cr
    return _yuv420(y, u, v)


#: 5x7 glyphs for the slate (digits, a few letters); each glyph pixel is an 8x8 block.
_GLYPHS = {
    "0": "01110100011001110101110011000101110",
    "1": "00100011000010000100001000010001110",
    "2": "01110100010000100010001000100011111",
    "3": "11110000010000101110000010000111110",
    "4": "00010001100101010010111110001000010",
    "5": "11111100001111000001000011000101110",
    "6": "00110010001000011110100011000101110",
    "7": "11111000010001000100010000100001000",
    "8": "01110100011000101110100011000101110",
    "9": "01110100011000101111000010001001100",
    "V": "10001100011000110001100010101000100",
    "Q": "01110100011000110001101011001001101",
    "A": "01110100011000111111100011000110001",
    ":": "00000001000010000000001000010000000",
    " ": "00000000000000000000000000000000000",
}


def _text(y: NDArray[np.uint8], text: str, x0: int, y0: int, level: int, px: int = 8) -> None:
    for k, ch in enumerate(text):
        bits = np.array([int(b) for b in _GLYPHS[ch]], dtype=bool).reshape(7, 5)
        block = np.kron(bits, np.ones((px, px), dtype=bool))
        x = x0 + k * 6 * px
        region = y[y0 : y0 + 7 * px, x : x + 5 * px]
        region[block[: region.shape[0], : region.shape[1]]] = level


def card_render() -> Render:
    y = np.full((HEIGHT, WIDTH), 126, np.uint8)
    y[::32, :] = 200  # grid lines on the 8-px grid
    y[:, ::32] = 200
    checker = (np.add.outer(np.arange(96) // 8, np.arange(128) // 8) % 2).astype(np.uint8)
    y[32:128, 480:608] = 40 + 160 * checker
    y[288:320, 32:608] = np.linspace(16, 235, 576).astype(np.uint8)[None, :]
    u = np.full((HEIGHT // 2, WIDTH // 2), 128, np.uint8)
    v = np.full_like(u, 128)
    u[16:64, 16:64] = 90  # a coloured logo square
    v[16:64, 16:64] = 170
    y[160:256, 32:448] = 16  # the slate

    def render(i: int, t: float) -> NDArray[np.uint8]:
        frame = y.copy()
        s = int(t)
        _text(frame, "VQA", 40, 168, 235)
        _text(frame, f"{s // 60:02d}:{s % 60:02d}", 200, 168, 235)
        return _yuv420(frame, u, v)

    return render


def tone(seconds: float, *, dbfs: float = TONE_DBFS) -> NDArray[np.float32]:
    n = round(seconds * SAMPLE_RATE)
    amp = 10 ** (dbfs / 20)
    s = (amp * np.sin(2 * np.pi * TONE_HZ * np.arange(n) / SAMPLE_RATE)).astype(np.float32)
    return np.stack([s, s])


def sync_audio(seconds: float) -> NDArray[np.float32]:
    pcm = np.zeros((2, round(seconds * SAMPLE_RATE)), np.float32)
    beep = tone(BEEP_SECONDS, dbfs=-6.0)
    edge = round(0.001 * SAMPLE_RATE)  # 1 ms raised-cosine edges: no click
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, edge))
    beep[:, :edge] *= ramp
    beep[:, -edge:] *= ramp[::-1]
    for k in range(int(seconds)):
        a = round((k + 0.5) * SAMPLE_RATE)
        pcm[:, a : a + beep.shape[1]] = beep[:, : pcm.shape[1] - a]
    return pcm


def sync_render() -> Render:
    grey = np.full((HEIGHT, WIDTH), 40, np.uint8)
    white = np.full_like(grey, 232)
    chroma = np.full((HEIGHT // 2, WIDTH // 2), 128, np.uint8)

    def render(i: int, t: float) -> NDArray[np.uint8]:
        flash = i % FPS == FPS // 2  # at k + 0.5 s, with the beep
        return _yuv420(white if flash else grey, chroma, chroma)

    return render


def write_signals(outdir: Path | str, *, seconds: float = 10.0) -> dict[str, Path]:
    """Write the three signals into ``outdir``; ``{name: path}``."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    bars = bars_picture()
    made = {
        "bars.mp4": (lambda i, t: bars, tone(seconds)),
        "testcard.mp4": (card_render(), tone(seconds)),
        "sync.mp4": (sync_render(), sync_audio(seconds)),
    }
    paths: dict[str, Path] = {}
    for name, (render, pcm) in made.items():
        spec = VideoSpec(WIDTH, HEIGHT, FPS, cfr_times(seconds, FPS), render)
        encode(out / name, fmt="mp4", video=spec, audio=pcm)
        paths[name] = out / name
    return paths
