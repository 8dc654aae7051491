"""The ``vqa`` command line contract (DESIGN.md): JSON on stdout, exit 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CORPUS_CLI_OUTPUT, Corpus

REPO = Path(__file__).resolve().parents[1]


def vqa(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vqa", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )


@pytest.mark.parametrize("kind", ["empty", "text", "no_moov", "undecodable", "unreachable"])
def test_bad_input_exits_2_with_one_line(bad_inputs: dict[str, Path | str], kind: str) -> None:
    source = str(bad_inputs[kind])
    proc = vqa("analyze", source, "--json")
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert source in lines[0]
    assert "Traceback" not in proc.stderr
    expected_reason = {
        "empty": "empty",
        "text": "not a media file",
        "no_moov": "moov",
        "undecodable": "decod",
        "unreachable": "refused",
    }[kind]
    assert expected_reason in lines[0].lower()


def test_missing_file_exits_2() -> None:
    proc = vqa("analyze", "/nonexistent/clip.mp4")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "vqa: error: /nonexistent/clip.mp4: no such file"


def corpus_sets() -> list[str]:
    """``--set`` options for the corpus thresholds (its defects are shorter than the defaults)."""
    from vqa.corpus import CORPUS_THRESHOLDS

    return [
        arg
        for det, fields in CORPUS_THRESHOLDS.items()
        for name, value in fields.items()
        for arg in ("--set", f"{det}.{name}={value}")
    ]


def test_analyze_json_contract(corpus: Corpus) -> None:
    path = str(corpus.path("multi.mp4"))
    proc = vqa("analyze", path, "--json", *corpus_sets())
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)  # stdout holds only the JSON object
    assert out["source"] == path
    assert isinstance(out["duration"], float)
    kinds = [d["kind"] for d in out["defects"]]
    assert kinds == sorted(kinds, key=lambda k: kinds.index(k))
    for d in out["defects"]:
        assert set(d) >= {"kind", "start", "end"}
        assert d["start"] < d["end"]
    assert {d["kind"] for d in out["defects"]} == {"black", "clipping", "freeze", "silence"}


def test_defaults_hold_the_sample_clips_short_defects_back(corpus: Corpus) -> None:
    """The sample clip's black (1.5 s), freeze (2 s) and silence (1.5 s) are shorter than the
    monitoring defaults: without ``--set`` only the clipping is reported."""
    proc = vqa("analyze", str(corpus.path("multi.mp4")), "--json")
    assert proc.returncode == 0, proc.stderr
    assert [d["kind"] for d in json.loads(proc.stdout)["defects"]] == ["clipping"]


@pytest.mark.parametrize(
    ("option", "words"),
    [
        ("sparkle.min_duration=1", ["sparkle", "unknown detector"]),
        ("black.min_length=1", ["black.min_length", "unknown field"]),
        ("black.min_duration=soon", ["black.min_duration", "number"]),
        ("av_sync.min_marks=2.5", ["av_sync.min_marks", "integer"]),
        ("black=1", ["DETECTOR.FIELD=VALUE"]),
    ],
)
def test_bad_set_option_exits_2_with_one_line(
    corpus: Corpus, option: str, words: list[str]
) -> None:
    for command in (["analyze"], ["run", "--arch", "monolith"]):
        proc = vqa(*command, str(corpus.path("black.mp4")), "--set", option)
        assert proc.returncode == 2, (command, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        for word in words:
            assert word in lines[0], (word, lines[0])


def test_analyze_detector_subset_and_table(corpus: Corpus) -> None:
    proc = vqa(
        "analyze", str(corpus.path("multi.mp4")), "--detectors", "black,silence", *corpus_sets()
    )
    assert proc.returncode == 0, proc.stderr
    assert "black" in proc.stdout and "silence" in proc.stdout
    assert "freeze" not in proc.stdout and "clipping" not in proc.stdout


def test_unknown_detector_is_a_usage_error(corpus: Corpus) -> None:
    proc = vqa("analyze", str(corpus.path("multi.mp4")), "--detectors", "black,sparkle")
    assert proc.returncode == 2
    assert "sparkle" in proc.stderr and "Traceback" not in proc.stderr


def test_audio_only_says_what_was_skipped(corpus: Corpus) -> None:
    proc = vqa("analyze", str(corpus.path("audio_only.m4a")))
    assert proc.returncode == 0, proc.stderr
    assert "skipped black" in proc.stdout and "video" in proc.stdout


def test_corpus_command_writes_truth(corpus: Corpus) -> None:
    # The session's corpus is written by `vqa corpus DIR` (tests/conftest.py keeps its output).
    cli = json.loads((corpus.dir / CORPUS_CLI_OUTPUT).read_text())
    truth = json.loads((corpus.dir / "truth.json").read_text())
    assert cli["returncode"] == 0
    # Written into a temporary directory, then renamed into place.
    assert cli["stdout"].startswith(f"wrote {len(truth['clips'])} clips and truth.json to ")
    for clip in truth["clips"]:
        assert (corpus.dir / clip["file"]).stat().st_size > 0
