"""State parity: the distributed architecture's way of running detectors gives exactly the
defects of one continuous pass.

- every detector's state is round-tripped through JSON between segments, into a fresh object;
- segments are decoded one by one after a seek (as the convert Lambda does), not continuously;
- segments go through the intermediate-bucket serialisation at both granularities.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Corpus
from vqa.corpus import CORPUS_THRESHOLDS
from vqa.defects import Defect, sort_defects
from vqa.detectors import DetectorSet
from vqa.media import decode_segment, iter_segments
from vqa.segment import Segment

PARITY_CLIPS = [
    "multi.mp4",
    "multi_25.ts",
    "damage_flip.mp4",
    "damage_drop.mp4",
    "sync_m100.ts",
    "vfr.mp4",
    "audio_only.m4a",
]


def one_pass(path: str, seconds: float = 1.0) -> list[dict[str, Any]]:
    ds = DetectorSet(**CORPUS_THRESHOLDS)
    out: list[Defect] = []
    for seg in iter_segments(path, segment_seconds=seconds):
        out += ds.process(seg)
    out += ds.flush()
    return [d.to_json() for d in sort_defects(out)]


def round_tripped(segments: list[Segment]) -> list[dict[str, Any]]:
    state: dict[str, Any] | None = None
    out: list[Defect] = []
    for seg in segments:
        ds = DetectorSet(**CORPUS_THRESHOLDS)
        if state is not None:
            ds.set_state(json.loads(json.dumps(state)))
        out += ds.process(seg)
        if seg.last:
            out += ds.flush()
        state = ds.get_state()
    return [d.to_json() for d in sort_defects(out)]


@pytest.mark.parametrize("name", PARITY_CLIPS)
def test_state_round_trip_gives_one_pass_defects(corpus: Corpus, name: str) -> None:
    path = str(corpus.path(name))
    expected = one_pass(path)
    assert round_tripped(list(iter_segments(path))) == expected


@pytest.mark.parametrize("name", ["multi.mp4", "damage_flip.mp4", "multi_25.ts"])
def test_seeked_segments_give_one_pass_defects(corpus: Corpus, name: str) -> None:
    path = str(corpus.path(name))
    segments = []
    for i in range(1000):
        seg = decode_segment(path, i)
        segments.append(seg)
        if seg.last:
            break
    assert segments[-1].last and len(segments) < 1000
    assert round_tripped(segments) == one_pass(path)


@pytest.mark.parametrize("granularity", ["segment", "frame"])
def test_serialised_segments_give_one_pass_defects(corpus: Corpus, granularity: str) -> None:
    path = str(corpus.path("multi.mp4"))
    segments = [Segment.from_objects(seg.to_objects(granularity)) for seg in iter_segments(path)]
    assert round_tripped(segments) == one_pass(path)


def test_segment_length_does_not_change_defects(corpus: Corpus) -> None:
    """Segment length is a deployment choice, not a detection parameter: the same defects with
    the same boundaries (audio segments are decoded each from its own preroll, so sample counts
    inside a defect may differ by the codec's noise)."""
    path = str(corpus.path("multi.mp4"))
    runs = [one_pass(path, s) for s in (0.5, 1.0, 2.0)]
    shapes = [[(d["kind"], d["start"], d["end"]) for d in run] for run in runs]
    for other in shapes[1:]:
        assert len(other) == len(shapes[0])
        for (k1, s1, e1), (k2, s2, e2) in zip(shapes[0], other, strict=True):
            assert k1 == k2
            assert abs(s1 - s2) <= 0.001 and abs(e1 - e2) <= 0.001


def test_state_is_plain_json(corpus: Corpus) -> None:
    ds = DetectorSet(**CORPUS_THRESHOLDS)
    for seg in iter_segments(str(corpus.path("multi.mp4"))):
        ds.process(seg)
        state = ds.get_state()
        assert json.loads(json.dumps(state)) == state
