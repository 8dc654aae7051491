"""Every detector against the corpus, with stated tolerances.

Most corpus defects are shorter than the monitoring defaults, so clips are analysed with
``vqa.corpus.CORPUS_THRESHOLDS``; ``monitor.mp4`` (defects of exactly the default minimum
durations) is analysed at the defaults.

Tolerances: a video boundary within one frame (1/fps); an audio boundary within one audio window,
25 ms (about one AAC frame of 1024 samples at 48 kHz, the granularity at which a lossy codec smears
an edge); a measured A/V offset within 5 ms of the injected one.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Corpus
from vqa.analyze import AnalysisResult, analyze
from vqa.corpus import CORPUS_THRESHOLDS, expected_defects
from vqa.defects import DEFECT_KINDS
from vqa.detectors import parse_names

AUDIO_WINDOW = 0.025
OFFSET_TOLERANCE_MS = 5.0
VIDEO_KINDS = {"black", "freeze", "corruption"}
AUDIO_KINDS = {"silence", "clipping"}

#: Clips whose truth holds at the detectors' defaults.
AT_DEFAULTS = {"monitor.mp4"}

_cache: dict[tuple[str, bool], AnalysisResult] = {}


def result(corpus: Corpus, name: str, *, defaults: bool | None = None) -> AnalysisResult:
    """Analyse each clip once per session (several tests look at the same result); at the
    defaults for :data:`AT_DEFAULTS`, else with the corpus thresholds."""
    at_defaults = name in AT_DEFAULTS if defaults is None else defaults
    key = (name, at_defaults)
    if key not in _cache:
        thresholds = None if at_defaults else CORPUS_THRESHOLDS
        _cache[key] = analyze(str(corpus.path(name)), thresholds=thresholds)
    return _cache[key]


def tolerance(kind: str, clip: dict[str, Any]) -> float:
    if kind in VIDEO_KINDS:
        return 1.0 / clip["fps"] + 1e-3
    if kind in AUDIO_KINDS:
        return AUDIO_WINDOW
    return 1.0 / clip["fps"] + 1e-3  # av_sync spans start on a flash frame


def boundary_clips(corpus: Corpus) -> list[str]:
    """Clips whose truth is a list of defects with exact boundaries (not damage, not traps)."""
    return [
        c["file"]
        for c in corpus.clips()
        if not c.get("damaged_frames") and not c.get("traps") and c["defects"]
    ]


def test_corpus_covers_every_kind(corpus: Corpus) -> None:
    kinds = {d["kind"] for c in corpus.clips() for d in c["defects"]}
    assert kinds == set(DEFECT_KINDS)


@pytest.mark.parametrize(
    "name",
    [
        "monitor.mp4",
        "black.mp4",
        "freeze.mp4",
        "silence.mp4",
        "clipping.mp4",
        "multi.mp4",
        "multi_25.ts",
        "vfr.mp4",
        "sync_p200.mp4",
        "sync_m100.ts",
        "audio_only.m4a",
        "video_only.mp4",
    ],
)
def test_injected_defects_found_with_exact_boundaries(corpus: Corpus, name: str) -> None:
    clip = corpus.clip(name)
    found = result(corpus, name).defects
    # The truth of the detectors analyze runs by default (loudness runs when named).
    truth = expected_defects(clip, parse_names(None))
    expected = sorted(truth, key=lambda d: (d["start"], d["kind"]))
    assert [d.kind for d in found] == [d["kind"] for d in expected], found
    for got, want in zip(found, expected, strict=True):
        tol = tolerance(want["kind"], clip)
        end_tol = tol
        if want["kind"] == "av_sync":
            # The span ends with the source; the decoded duration may run past the nominal one
            # by the audio codec's padding.
            end_tol = max(tol, AUDIO_WINDOW)
        assert got.start == pytest.approx(want["start"], abs=tol), (got, want)
        assert got.end == pytest.approx(want["end"], abs=end_tol), (got, want)


@pytest.mark.parametrize(
    "name", ["trap_dark.mp4", "trap_pan.mp4", "trap_quiet.mp4", "trap_grain.mp4", "trap_loud.mp4"]
)
def test_no_false_alarm_on_traps(corpus: Corpus, name: str) -> None:
    assert corpus.clip(name)["traps"], "a trap clip names its trap"
    assert result(corpus, name).defects == []


@pytest.mark.parametrize("name", ["black.mp4", "freeze.mp4", "silence.mp4", "multi_25.ts"])
def test_defaults_hold_short_conditions_back(corpus: Corpus, name: str) -> None:
    """At the defaults a monitor raises nothing for conditions shorter than the minimum
    durations (the corpus's 1.5-2 s defects) and still reports the rest (clipping)."""
    minimum = {"black": 2.0, "silence": 2.0, "freeze": 3.0}
    short = [
        d for d in corpus.clip(name)["defects"] if d["end"] - d["start"] < minimum.get(d["kind"], 0)
    ]
    assert short, "the clip has defects shorter than the defaults"
    found = result(corpus, name, defaults=True).defects
    kept = [d for d in expected_defects(corpus.clip(name), parse_names(None)) if d not in short]
    assert [d.kind for d in found] == [d["kind"] for d in kept], found


def test_freeze_spans_reencoded_keyframes_as_one_defect(corpus: Corpus) -> None:
    clip = corpus.clip("freeze.mp4")
    (want,) = clip["defects"]
    freezes = [d for d in result(corpus, "freeze.mp4").defects if d.kind == "freeze"]
    assert len(freezes) == 1, "a keyframe inside the hold must not split the freeze"
    assert freezes[0].duration == pytest.approx(want["end"] - want["start"], abs=2 / clip["fps"])


@pytest.mark.parametrize(
    "name", ["sync_0.mp4", "sync_p80.mp4", "sync_m30.mp4", "sync_p200.mp4", "sync_m100.ts"]
)
def test_av_sync_offset_measured(corpus: Corpus, name: str) -> None:
    clip = corpus.clip(name)
    res = result(corpus, name)
    measured = res.measurements["av_sync"]
    assert measured["marks"] >= 4
    assert measured["offset_ms"] == pytest.approx(clip["sync_offset_ms"], abs=OFFSET_TOLERANCE_MS)
    sync = [d for d in res.defects if d.kind == "av_sync"]
    offset = clip["sync_offset_ms"]
    outside = offset > 125 or offset < -45  # BT.1359 detectability thresholds
    assert bool(sync) == outside
    for d in sync:
        assert d.detail["offset_ms"] == pytest.approx(offset, abs=OFFSET_TOLERANCE_MS)


def test_sync_marks_inside_programme_sound(corpus: Corpus) -> None:
    """The sample clip mixes its beeps into music: the tone band still finds them."""
    clip = corpus.clip("multi.mp4")
    measured = result(corpus, "multi.mp4").measurements["av_sync"]
    assert measured["marks"] >= 3
    assert measured["offset_ms"] == pytest.approx(clip["sync_offset_ms"], abs=OFFSET_TOLERANCE_MS)


@pytest.mark.parametrize("name", ["damage_flip.mp4", "damage_drop.mp4", "damage_ts.ts"])
def test_corruption_recall_over_damaged_frames(corpus: Corpus, name: str) -> None:
    clip = corpus.clip(name)
    damaged = clip["damaged_frames"]
    assert damaged, "the damaged clip really differs from its clean encode"
    spans = [d for d in result(corpus, name).defects if d.kind == "corruption"]
    half = 0.5 / clip["fps"]
    covered = [t for t in damaged if any(d.start - half <= t < d.end for d in spans)]
    assert len(covered) / len(damaged) >= 0.9, (spans, damaged)
    # Each injected damage interval is reported from its first damaged (or missing) frame.
    for want in clip["defects"]:
        starts = [d.start for d in spans if d.start <= want["end"] and d.end >= want["start"]]
        assert starts, f"damage at {want} not reported"
        assert min(starts) == pytest.approx(want["start"], abs=1.0 / clip["fps"] + 1e-3)
    # Only the damage is reported.
    assert {d.kind for d in result(corpus, name).defects} == {"corruption"}


def test_truncated_ts_is_analysed_as_far_as_it_goes(corpus: Corpus) -> None:
    clip = corpus.clip("truncated.ts")
    res = result(corpus, "truncated.ts")
    assert res.duration == pytest.approx(clip["duration"], abs=2.0 / clip["fps"])
    assert {d.kind for d in res.defects} <= {"corruption"}
    for want in clip["defects"]:
        assert any(
            d.start <= want["start"] + 1 / clip["fps"] and d.end >= want["end"] - 1e-3
            for d in res.defects
        )


def test_audio_only_skips_video_detectors(corpus: Corpus) -> None:
    res = result(corpus, "audio_only.m4a")
    # (and transport: an MP4/M4A carries no MPEG-TS packets)
    assert set(res.skipped) == {"black", "freeze", "corruption", "av_sync", "transport"}
    assert "video" in res.skipped["black"]


def test_video_only_skips_audio_detectors(corpus: Corpus) -> None:
    res = result(corpus, "video_only.mp4")
    assert set(res.skipped) == {"silence", "clipping", "av_sync", "transport"}
    assert "audio" in res.skipped["silence"]


def test_defects_stay_inside_the_source(corpus: Corpus) -> None:
    for clip in corpus.clips():
        res = result(corpus, clip["file"])
        for d in res.defects:
            assert 0.0 <= d.start < d.end <= res.duration + 1e-6, (clip["file"], d)


@pytest.mark.parametrize("threads", ["SLICE", "FRAME"])
def test_a_cut_inside_a_video_packet_marks_its_picture_whatever_the_threads(
    corpus: Corpus, monkeypatch: pytest.MonkeyPatch, threads: str
) -> None:
    """The decoder's own flag on the cut picture depends on its threading (one thread never
    sets it, frame threads mostly do): the cut itself, found in the bytes, decides."""
    from vqa import media

    monkeypatch.setattr(media, "VIDEO_THREADS", threads)
    clip = corpus.clip("truncated.ts")
    defects = analyze(str(corpus.path("truncated.ts")), thresholds=CORPUS_THRESHOLDS).defects
    (want,) = clip["defects"]
    assert [(d.kind, d.start, d.end) for d in defects] == [
        ("corruption", pytest.approx(want["start"], abs=1e-3), pytest.approx(want["end"], abs=1e-3))
    ]


def test_the_tee_names_the_pid_a_cut_falls_in(corpus: Corpus) -> None:
    """A source that ends inside a packet names that packet's PID; one that ends on a packet
    boundary names none."""
    import io

    from vqa.tsanalysis import TsTee

    data = (corpus.dir / "reference" / "clean.ts").read_bytes()
    assert len(data) % 188 == 0
    for cut, pid in ((len(data) - 100, data_pid(data, len(data) - 188)), (len(data), None)):
        tee = TsTee(io.BytesIO(data[:cut]))
        tee.start(0.0, offset=0)
        while tee.read(65536):
            pass
        assert tee.cut_pid() == pid, cut


def data_pid(data: bytes, at: int) -> int:
    return ((data[at + 1] & 0x1F) << 8) | data[at + 2]
