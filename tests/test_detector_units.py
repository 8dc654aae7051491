"""Detectors on synthetic reference signals with stated tolerances (no codec in the way)."""

from __future__ import annotations

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


def run(name: str, segs: list[Segment]) -> list:
    det = create(name)
    out = []
    for s in segs:
        out += det.process(s)
    return out + det.flush()


def test_silence_is_sample_exact() -> None:
    t = np.arange(5 * RATE) / RATE
    pcm = 0.3 * np.sin(2 * np.pi * 440 * t)[None].repeat(2, axis=0)
    pcm[:, round(1.25 * RATE) : round(2.75 * RATE)] = 0.0  # spans a segment boundary
    (d,) = run("silence", audio_segments(pcm))
    # Within two samples: the sine itself crosses zero on the boundary sample.
    assert d.start == pytest.approx(1.25, abs=2 / RATE)
    assert d.end == pytest.approx(2.75, abs=2 / RATE)


def test_short_dropout_is_not_silence() -> None:
    t = np.arange(3 * RATE) / RATE
    pcm = 0.3 * np.sin(2 * np.pi * 440 * t)[None]
    pcm[:, RATE : RATE + RATE // 5] = 0.0  # 200 ms < min_duration 0.5 s
    assert run("silence", audio_segments(pcm)) == []


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


def test_detector_registry_and_config_errors() -> None:
    assert parse_names("freeze, black") == ["black", "freeze"]
    with pytest.raises(ConfigError):
        parse_names("black,nope")
    with pytest.raises(ConfigError):
        create("black", not_a_threshold=1)
    ds = DetectorSet(["black"], black={"min_duration": 2.0})
    assert ds.detectors["black"].config.min_duration == 2.0
