"""The distributed architecture run locally: moto, the synthesized state machine, real handlers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stacks.constructs.workflow import events_per_segment_bound
from vqa.analyze import analyze
from vqa.detectors import NEEDS_REASON
from vqa.errors import BadSourceError
from vqa.local import moto_lambda
from vqa.local.distributed import run_local


def _analyze(path: Path) -> dict[str, Any]:
    # The detectors the stack deploys (cdk.json), whatever the package runs by default.
    from vqa.local.monolith import load_config

    return analyze(str(path), detectors=list(load_config().detectors)).to_json()


def _check_usage(out: dict[str, Any], *, granularity: str) -> None:
    usage = out["usage"]
    segments = out["workflow"]["segments"]
    counters = usage["counters"]
    assert usage["architecture"] == "distributed"
    assert usage["stream_seconds"] == out["duration"]
    assert usage["config"]["granularity"] == granularity
    detectors = len(usage["config"]["detectors"])
    # Start once, per segment convert, every detector and aggregate, and one hand-over per
    # further execution (no retries here).
    handovers = out["workflow"]["executions"] - 1
    assert counters["lambda_invocations"] == 1 + segments * (detectors + 2) + handovers
    assert counters["lambda_gb_seconds"] > 0
    # Per segment at least: Convert, Parallel, the detector tasks, Aggregate, Choice.
    assert counters["state_transitions"] >= segments * (detectors + 4)
    assert counters["sfn_executions"] == out["workflow"]["executions"]
    assert counters["log_bytes"] > 0
    s3 = usage["requests"]["s3"]
    assert s3["PutObject"] >= segments  # intermediates (+ detector state)
    assert s3["GetObject"] >= segments * detectors
    assert usage["requests"]["dynamodb"]["PutItem"] >= 1  # status items and defects


def test_moto_patch_point_is_where_we_patch() -> None:
    # Fails loudly when moto moves or reshapes LambdaFunction._invoke_lambda.
    moto_lambda.check_patch_point()


def test_moto_patch_point_check_detects_a_moved_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.awslambda.models import LambdaFunction

    monkeypatch.delattr(LambdaFunction, "_invoke_lambda")
    with pytest.raises(moto_lambda.PatchPointMoved, match="_invoke_lambda"):
        moto_lambda.check_patch_point()


#: The detectors the stacks deploy beyond the six anchors, each with the smallest clip that makes
#: it report: two over-peak bursts in 8 s of audio, and video packets dropped from a 10 s TS
#: (continuity-count errors, and the decoder's damage).
NEW_DETECTOR_CLIPS = {"over_peak.m4a": "loudness", "ts_drop.ts": "transport"}


def clip_path(corpus: Any, ts_corpus: tuple[Path, dict[str, Any]], clip: str) -> Path:
    """A clip of the defect corpus, or of the TR 101 290 corpus (``ts_*.ts``)."""
    return ts_corpus[0] / clip if clip.startswith("ts_") else Path(corpus.path(clip))


@pytest.mark.parametrize(
    "clip",
    ["multi_25.ts", "damage_flip.mp4", "truncated.ts", "audio_only.m4a", *NEW_DETECTOR_CLIPS],
)
def test_parity_with_analyze(
    corpus: Any, ts_corpus: tuple[Path, dict[str, Any]], clip: str
) -> None:
    path = clip_path(corpus, ts_corpus, clip)
    expected = _analyze(path)
    if clip in NEW_DETECTOR_CLIPS:  # deployed (cdk.json), and reporting on this clip
        assert NEW_DETECTOR_CLIPS[clip] in {d["kind"] for d in expected["defects"]}
    out = run_local(str(path))
    assert out["defects"] == expected["defects"]
    assert out["duration"] == expected["duration"]
    assert out["skipped"] == expected["skipped"]
    assert out["source"] == str(path)
    _check_usage(out, granularity="frame")
    assert out["workflow"]["executions"] == 1
    segments, detectors = out["workflow"]["segments"], len(out["usage"]["config"]["detectors"])
    # Started?, Start, Next segment?, Done, and per segment Convert, Parallel, each detector,
    # Aggregate, Next segment?.
    assert out["usage"]["counters"]["state_transitions"] == 4 + segments * (detectors + 4)
    # The bound the chunk size is derived from holds (it allows one retry of every task).
    (events,) = out["workflow"]["history_events"]
    assert events <= segments * events_per_segment_bound(detectors, live=False) // 2 + 20


def test_segment_granularity_express_and_chunked_executions(corpus: Any) -> None:
    path = corpus.path("sync_p200.mp4")
    expected = _analyze(path)
    out = run_local(
        str(path),
        granularity="segment",
        workflow_type="EXPRESS",
        config={"segments_per_execution": 3},
    )
    assert out["defects"] == expected["defects"]
    assert any(d["kind"] == "av_sync" for d in out["defects"])
    _check_usage(out, granularity="segment")
    segments = out["workflow"]["segments"]
    # A fresh execution every 3 segments, each carrying the detectors' state over.
    assert out["workflow"]["executions"] == -(-segments // 3)
    assert out["usage"]["counters"]["sfn_express_duration_seconds"] > 0
    assert (
        out["usage"]["requests"]["stepfunctions"]["StartExecution"]
        == (out["workflow"]["executions"])
    )
    # One object per segment: a PUT per segment and one GET per detector and segment.
    s3 = out["usage"]["requests"]["s3"]
    detectors = len(out["usage"]["config"]["detectors"])
    # Every detector that applies writes its state; a skipped one (transport on an MP4) has none.
    assert out["skipped"] == {"transport": NEEDS_REASON["transport"]}
    state_puts = (segments - 1) * (detectors - len(out["skipped"]))
    assert s3["PutObject"] == segments + state_puts
    # The history of each execution stays within the bound the chunk size is derived from.
    for events in out["workflow"]["history_events"]:
        assert events <= 3 * events_per_segment_bound(detectors, live=False) + 50


def test_transient_detector_fault_is_retried_and_loses_nothing(
    corpus: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    from lambdas.distributed import detect
    from lambdas.distributed.common import env

    path = corpus.path("multi_25.ts")
    expected = _analyze(path)
    original = detect.load_segment
    faults: list[int] = []

    def flaky(bucket: str, ref: dict[str, Any], det: Any) -> Any:
        # S3 throttles the freeze detector's read of segment 2, once.
        if env("DETECTOR") == "freeze" and ref["index"] == 2 and not faults:
            faults.append(ref["index"])
            response: Any = {
                "Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
                "ResponseMetadata": {"HTTPStatusCode": 503},
            }
            raise ClientError(response, "GetObject")
        return original(bucket, ref, det)

    monkeypatch.setattr(detect, "load_segment", flaky)
    out = run_local(str(path))
    assert faults == [2]
    assert out["defects"] == expected["defects"]
    assert out["workflow"]["retries"] == 1
    segments = out["workflow"]["segments"]
    detectors = len(out["usage"]["config"]["detectors"])
    # The retried attempt is one more invocation and is billed as one more state transition.
    assert out["usage"]["counters"]["lambda_invocations"] == 2 + segments * (detectors + 2)
    assert out["usage"]["counters"]["state_transitions"] == 4 + segments * (detectors + 4) + 1


def test_not_media_ends_the_run_with_the_failure_recorded(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("This is not a video. It is a shopping list: eggs, milk, bread.\n")
    with pytest.raises(BadSourceError) as info:
        run_local(str(text))
    err = info.value
    assert err.source == str(text)
    assert "\n" not in str(err) and str(err).startswith(f"{text}: ")
    # What the state machine wrote to the stream status item before failing the execution.
    recorded = err.recorded  # type: ignore[attr-defined]
    assert recorded["state"] == "failed"
    assert recorded["error"] == "BadSourceError"
    assert recorded["segment"] == "0"
    assert json.loads(recorded["cause"])["errorType"] == "BadSourceError"


def test_vqa_run_exits_2_with_one_line_on_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vqa.cli import main

    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    assert main(["run", str(text), "--arch", "distributed", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and str(text) in lines[0], captured.err
    assert "Traceback" not in captured.err


def test_missing_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadSourceError, match="no such file"):
        run_local(str(tmp_path / "absent.mp4"))


def test_handlers_need_only_the_layer_and_the_runtime() -> None:
    # The dependencies layer ships av and numpy; the Lambda runtime ships boto3 and its deps.
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import lambdas.distributed.start, lambdas.distributed.convert, "
        "lambdas.distributed.detect, lambdas.distributed.aggregate, lambdas.distributed.handover\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, check=True, capture_output=True, text=True
    ).stdout.split()
    import re
    from importlib.metadata import packages_distributions

    from stacks.constructs.packaging import locked_versions

    def canonical(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    # The layer installs the whole lock: the modules the locked distributions provide.
    locked = {canonical(d) for d in locked_versions()}
    layer = {
        module
        for module, dists in packages_distributions().items()
        if any(canonical(d) in locked for d in dists)
    }
    # certifi: an optional import of botocore; cython_runtime: created by PyAV's extensions.
    runtime = {
        "boto3",
        "botocore",
        "jmespath",
        "dateutil",
        "urllib3",
        "s3transfer",
        "six",
        "certifi",
        "cython_runtime",
    }
    ours = {"vqa", "lambdas"}
    third_party = {m for m in out if m not in sys.stdlib_module_names and not m.startswith("_")}
    assert third_party <= layer | runtime | ours, third_party - layer - runtime - ours


def test_a_request_runs_only_its_detectors_at_its_thresholds(corpus: Any) -> None:
    """The front door's request in the execution input (vqa.api's StepFunctionsStarter) reaches
    the detector functions: the others return at once, the requested one runs at the request's
    thresholds over the deployed ones."""
    from vqa.local.monolith import load_config

    clip = corpus.path("multi.mp4")
    request = {"detectors": ["black"], "thresholds": {"black": {"min_duration": 0.5}}}
    got = run_local(str(clip), granularity="segment", request=request)
    expected = analyze(str(clip), detectors=["black"], thresholds=request["thresholds"])
    assert got["defects"] == [d.to_json() for d in expected.defects]
    assert [d["kind"] for d in got["defects"]] == ["black"]
    assert not analyze(str(clip), detectors=["black"]).defects  # not at the deployed 2 s
    # Every other deployed detector is skipped: for its own reason (transport: not MPEG-TS)
    # where it has one, else as not requested.
    others = {d for d in load_config().detectors if d != "black"}
    own = analyze(str(clip), detectors=sorted(others)).skipped
    assert got["skipped"] == {d: own.get(d, "not requested") for d in others}
