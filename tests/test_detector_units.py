"""Detectors on synthetic reference signals with stated tolerances (no codec in the way)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from vqa.detectors import DetectorSet, create, parse_names
from vqa.detectors.black import BlackConfig, black_frames
from vqa.detectors.corruption import blockiness
from vqa.errors import ConfigError
from vqa.segment import AudioTrack, Segment, VideoTrack

RATE = 48_000


def audio_segments(pcm: np.ndarray, seconds: float = 1.0) -> list[Segment]:
    n = round(seconds * RATE)
    segs = []
    for k, i in enumerate(range(0, pcm.shape[1], n)):
        chunk = pcm[:, i : i + n].astype(np.float32)
        segs.append(
            Segment(
                index=k,
                start=k * seconds,
                end=(k + 1) * seconds,
                audio=AudioTrack(start=i / RATE, rate=RATE, samples=chunk),
            )
        )
    segs[-1].last = True
    return segs


def run(name: str, segs: list[Segment], **overrides: Any) -> list:
    det = create(name, **overrides)
    out = []
    for s in segs:
        out += det.process(s)
    return out + det.flush()


def test_silence_is_sample_exact() -> None:
    t = np.arange(5 * RATE) / RATE
    pcm = 0.3 * np.sin(2 * np.pi * 440 * t)[None].repeat(2, axis=0)
    pcm[:, round(1.25 * RATE) : round(2.75 * RATE)] = 0.0  # spans a segment boundary
    (d,) = run("silence", audio_segments(pcm), min_duration=0.5)
    # Within two samples: the sine itself crosses zero on the boundary sample.
    assert d.start == pytest.approx(1.25, abs=2 / RATE)
    assert d.end == pytest.approx(2.75, abs=2 / RATE)


def test_short_dropout_is_not_silence() -> None:
    t = np.arange(3 * RATE) / RATE
    pcm = 0.3 * np.sin(2 * np.pi * 440 * t)[None]
    pcm[:, RATE : RATE + RATE // 5] = 0.0  # 200 ms < min_duration 0.5 s
    assert run("silence", audio_segments(pcm), min_duration=0.5) == []


def test_clipping_on_pcm_plateaus_and_not_on_loud_sine() -> None:
    t = np.arange(4 * RATE) / RATE
    x = 0.9 * np.sin(2 * np.pi * 220 * t)
    x[RATE * 2 : RATE * 3] = np.clip(3 * x[RATE * 2 : RATE * 3], -1, 1)
    (d,) = run("clipping", audio_segments(x[None]))
    assert d.start == pytest.approx(2.0, abs=0.005)
    assert d.end == pytest.approx(3.0, abs=0.005)
    assert run("clipping", audio_segments((0.95 * np.sin(2 * np.pi * 220 * t))[None])) == []


def test_black_needs_flat_dark_pixels() -> None:
    cfg = BlackConfig()
    flat_black = np.zeros((1, 256), np.int64)
    flat_black[0, 16] = 1000
    dark_live = np.zeros((1, 256), np.int64)
    dark_live[0, 18:38] = 50  # all under the pixel threshold but with detail
    assert black_frames(flat_black, cfg).tolist() == [True]
    assert black_frames(dark_live, cfg).tolist() == [False]


def video_segment(frames: list[np.ndarray], fps: float = 25.0, index: int = 0) -> Segment:
    n = len(frames)
    t0 = index * n / fps
    return Segment(
        index=index,
        start=t0,
        end=t0 + n / fps,
        video=VideoTrack(
            times=t0 + np.arange(n) / fps,
            planes=frames,
            key=np.zeros(n, bool),
            corrupt=np.zeros(n, bool),
            frame_duration=1 / fps,
            width=frames[0].shape[1],
            height=frames[0].shape[0],
            bframe=np.zeros(n, bool),
        ),
    )


def test_freeze_against_reference_not_previous_frame() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(40, 200, (90, 160), dtype=np.uint8)
    # A slow pan: 1 px every 2 frames; consecutive frames differ little, the drift accumulates.
    pan = [np.roll(base, i // 2, axis=1) for i in range(75)]
    assert (
        run("freeze", [video_segment(pan[i : i + 25], index=i // 25) for i in range(0, 75, 25)])
        == []
    )
    frozen = [base.copy() for _ in range(75)]
    (d,) = run(
        "freeze", [video_segment(frozen[i : i + 25], index=i // 25) for i in range(0, 75, 25)]
    )
    assert (d.start, d.end) == (0.0, 3.0)


def test_blockiness_separates_block_grid_from_natural_picture() -> None:
    rng = np.random.default_rng(1)
    smooth = np.cumsum(rng.normal(0, 2, (64, 128)), axis=1).clip(-100, 100).astype(np.int16) + 128
    blocks = np.kron(rng.integers(0, 255, (8, 16)), np.ones((8, 8))).astype(np.uint8)
    scores = blockiness([smooth.astype(np.uint8), blocks], rows=32)
    assert scores[0] < 1.5 < 2.5 < scores[1]


def _smooth_picture(seed: int, shift: int = 0) -> np.ndarray:
    """A camera-like picture: a random walk along rows (1/f-ish), 96x160, drifting by ``shift``."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(0, 2, (96, 240)), axis=1).clip(-90, 90) + 128
    return np.ascontiguousarray(walk[:, shift : shift + 160].astype(np.uint8))


def _blocky(picture: np.ndarray) -> np.ndarray:
    """Coding-artefact blocks: every 8x8 block flattened to its mean (steps on block borders)."""
    h, w = picture.shape
    means = picture.reshape(h // 8, 8, w // 8, 8).mean(axis=(1, 3))
    return np.kron(means, np.ones((8, 8))).astype(np.uint8)


def _bars(width: int = 160, height: int = 96) -> np.ndarray:
    levels = np.array([180, 168, 145, 133, 63, 51, 28, 16], np.uint8)
    return np.repeat(levels, width // 8)[None, :].repeat(height, axis=0)  # 20-px bars


def _corruption(frames: list[np.ndarray]) -> tuple[list[Any], dict[str, Any]]:
    det = create("corruption")
    out: list[Any] = []
    for k in range(0, len(frames), 25):
        out += det.process(video_segment(frames[k : k + 25], index=k // 25))
    out += det.flush()
    return out, det.measurements()  # type: ignore[attr-defined]


def test_blockiness_that_appears_within_a_shot_is_corruption() -> None:
    """Damage baked in upstream: a moving shot turns blocky at frame 30 for 10 frames."""
    frames = [_smooth_picture(3, i) for i in range(75)]
    for i in range(30, 40):
        frames[i] = _blocky(frames[i])
    (d,), measured = _corruption(frames)
    assert d.start == pytest.approx(30 / 25) and d.end == pytest.approx(40 / 25)
    assert measured["alarms"] == [{"start": 1.2, "end": 1.6, "evidence": ["blockiness"]}]


@pytest.mark.parametrize("cut_at", [0, 30])
def test_graphics_on_the_block_grid_are_not_corruption(cut_at: int) -> None:
    """Colour bars (edges on the 8-px grid, flat in between) from the start, or after a cut
    from a camera shot: the blockiness ratio is high but never rises within a shot."""
    frames = [_smooth_picture(3, i) for i in range(cut_at)] + [_bars()] * (75 - cut_at)
    assert blockiness([_bars()], rows=24)[0] > 2.5, "the ratio alone would call bars damage"
    out, measured = _corruption(frames)
    assert out == [] and measured["alarms"] == []


def test_detector_registry_and_config_errors() -> None:
    assert parse_names("freeze, black") == ["black", "freeze"]
    with pytest.raises(ConfigError):
        parse_names("black,nope")
    with pytest.raises(ConfigError):
        create("black", not_a_threshold=1)
    ds = DetectorSet(["black"], black={"min_duration": 2.0})
    assert ds.detectors["black"].config.min_duration == 2.0
