"""Broadcast test signals made by the project (``vqa.signals``) raise nothing at the defaults.

Colour bars and a test card put sharp edges on the 8-px coding grid on every frame and never
move; the sync signal is silent between 40 ms beeps. None of it is a defect.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vqa.analyze import analyze
from vqa.corpus import VideoSpec, cfr_times, encode
from vqa.signals import FPS, HEIGHT, WIDTH, card_render, tone, write_signals


@pytest.fixture(scope="module")
def signals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_signals(tmp_path_factory.mktemp("signals"), seconds=6.0)


@pytest.mark.parametrize("name", ["bars.mp4", "testcard.mp4", "sync.mp4"])
def test_test_signal_raises_nothing(signals: dict[str, Path], name: str) -> None:
    res = analyze(str(signals[name]))
    assert res.defects == []
    assert res.measurements["corruption"]["alarms"] == []


def test_sync_signal_is_measured_in_sync(signals: dict[str, Path]) -> None:
    """The flash and the beep start together: the marks are paired, the offset is near 0
    (within one 25 fps frame: the flash is timed by its frame, the beep to the sample)."""
    measured = analyze(str(signals["sync.mp4"])).measurements["av_sync"]
    assert measured["marks"] >= 4
    assert abs(measured["offset_ms"]) <= 40.0


def test_short_gaps_of_the_sync_signal_are_silence_when_asked(signals: dict[str, Path]) -> None:
    """The ~0.96 s gaps between beeps are really silent: a lower threshold finds them."""
    res = analyze(str(signals["sync.mp4"]), thresholds={"silence": {"min_duration": 0.5}})
    assert len([d for d in res.defects if d.kind == "silence"]) >= 4


def test_still_test_card_is_not_a_freeze(tmp_path: Path) -> None:
    """A test card without a running clock repeats exactly: a signal sent on purpose."""
    card = card_render()(0, 0.0)
    spec = VideoSpec(WIDTH, HEIGHT, FPS, cfr_times(5.0, FPS), lambda i, t: card)
    encode(tmp_path / "still.mp4", fmt="mp4", video=spec, audio=tone(5.0))
    assert analyze(str(tmp_path / "still.mp4")).defects == []
