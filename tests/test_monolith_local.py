"""The monolith run locally (moto + the real orchestrator handler + real worker processes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vqa.errors import BadSourceError
from vqa.local.monolith import (
    MonolithSettings,
    create_emulation,
    invoke_orchestrator,
    run_local,
)
from vqa.meter import Meter

ROOT = Path(__file__).resolve().parents[1]
#: Corpus clips (vqa/corpus.py) that exercise every detector, both shards, damaged and partial
#: sources, and single-track sources.
PARITY_CLIPS = (
    "multi.mp4",
    "multi_25.ts",
    "damage_ts.ts",
    "truncated.ts",
    "audio_only.m4a",
    "video_only.mp4",
)


def _analyze_json(path: Path) -> dict[str, Any]:
    from vqa.analyze import analyze

    return analyze(str(path)).to_json()


# ---- parity with `vqa analyze` -------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vqa.corpus import write_sample_clip

    path = tmp_path_factory.mktemp("monolith") / "sample.mp4"
    write_sample_clip(path, seconds=10.0, width=320, height=180)
    return path


@pytest.fixture(scope="module")
def sample_run(sample: Path) -> dict[str, Any]:
    return run_local(str(sample))


def test_run_local_gives_exactly_the_defects_of_analyze(
    sample: Path, sample_run: dict[str, Any]
) -> None:
    want = _analyze_json(sample)
    assert want["defects"], "the sample clip has defects"
    assert sample_run["defects"] == want["defects"]
    assert sample_run["source"] == str(sample)
    assert sample_run["duration"] == pytest.approx(want["duration"], abs=1e-6)
    assert sample_run["skipped"] == want.get("skipped", {})


def test_usage_meters_the_same_operations_plus_worker_cpu(sample_run: dict[str, Any]) -> None:
    usage = sample_run["usage"]
    assert usage["architecture"] == "monolith"
    assert usage["stream_seconds"] == pytest.approx(sample_run["duration"])
    assert usage["wall_seconds"] > 0
    req = usage["requests"]
    # The orchestrator: one status item and one job per shard.
    assert req["lambda"]["Invoke"] == 1
    assert req["sqs"]["SendMessage"] == 2
    # Each shard reads the source from the bucket and deletes its job once done.
    assert req["sqs"]["DeleteMessage"] == 2
    assert req["s3"]["GetObject"] >= 2
    assert usage["bytes"]["s3_get"] >= 2 * sample_run_source_size(sample_run)
    # One alert per defect, no intermediate media objects: S3 PUTs are checkpoints only
    # (one per shard per 10 segments).
    assert req["sns"]["Publish"] == len(sample_run["defects"])
    assert req["s3"].get("PutObject", 0) <= 2 * (int(sample_run["duration"]) // 10 + 1)
    counters = usage["counters"]
    assert counters["worker_cpu_seconds"] > 0.05
    assert counters["lambda_invocations"] == 1
    assert counters["lambda_gb_seconds"] > 0
    assert counters["log_bytes"] > 0
    cfg = usage["config"]
    assert cfg["shards"] == [list(s) for s in MonolithSettings.from_config(None).shards]
    assert cfg["instance_type"]


def sample_run_source_size(run: dict[str, Any]) -> int:
    return Path(run["source"]).stat().st_size


@pytest.mark.slow
@pytest.mark.parametrize("clip", PARITY_CLIPS)
def test_corpus_parity(corpus: Any, clip: str) -> None:
    path = corpus.path(clip)
    got = run_local(str(path))
    want = _analyze_json(path)
    assert got["defects"] == want["defects"]
    assert got["duration"] == pytest.approx(want["duration"], abs=1e-6)
    assert got["skipped"] == want.get("skipped", {})


def test_single_track_source_says_which_detectors_it_skipped(corpus: Any) -> None:
    got = run_local(str(corpus.path("audio_only.m4a")))
    assert {"black", "freeze", "corruption", "av_sync"} <= set(got["skipped"])
    assert got["skipped"] == _analyze_json(corpus.path("audio_only.m4a")).get("skipped", {})


# ---- bad input -----------------------------------------------------------------------------------


def test_bad_source_raises_bad_source_error_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_text("definitely not a video\n" * 50)
    with pytest.raises(BadSourceError) as err:
        run_local(str(bad))
    assert err.value.source == str(bad)
    assert "\n" not in str(err.value)


def test_cli_run_monolith_json_and_bad_input_exit_status(sample: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vqa", "run", str(sample), "--arch", "monolith", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) >= {"source", "duration", "defects", "usage"}
    assert out["defects"] == _analyze_json(sample)["defects"]

    missing = tmp_path / "missing.mp4"
    proc = subprocess.run(
        [sys.executable, "-m", "vqa", "run", str(missing), "--arch", "monolith", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and str(missing) in proc.stderr
    assert "Traceback" not in proc.stderr


# ---- the orchestrator handler, invoked as Lambda would -------------------------------------------


@pytest.fixture
def emulation() -> Any:
    return create_emulation(MonolithSettings())


def test_orchestrator_records_the_stream_and_fans_out_one_job_per_shard(emulation: Any) -> None:
    from vqa.results import get_status

    s3 = emulation.client("s3")
    s3.put_object(Bucket=emulation.source_bucket, Key="a.mp4", Body=b"x")
    source = f"s3://{emulation.source_bucket}/a.mp4"
    meter = Meter()
    out = invoke_orchestrator(
        emulation, MonolithSettings(), {"stream": "cam-1", "source": source}, meter
    )
    assert out["state"] == "running" and set(out["jobs"]) == {"shard0", "shard1"}
    status = get_status(
        dynamodb=emulation.client("dynamodb"), table=emulation.table, stream="cam-1"
    )
    assert status is not None
    assert status["state"] == "running" and json.loads(status["shards"]) == ["shard0", "shard1"]
    sqs = emulation.client("sqs")
    for shard in emulation.shards:
        msgs = sqs.receive_message(QueueUrl=shard.queue_url, MaxNumberOfMessages=10)["Messages"]
        assert len(msgs) == 1
        body = json.loads(msgs[0]["Body"])
        assert body["stream"] == "cam-1" and body["source"] == source
        assert body["shard"] == shard.name and body["detectors"] == list(shard.detectors)
    snap = meter.snapshot()
    assert snap["requests"]["sqs"]["SendMessage"] == 2
    assert snap["requests"]["dynamodb"]["PutItem"] == 1
    assert snap["counters"]["lambda_invocations"] == 1


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"stream": "cam 1", "source": "https://x/a.m3u8"}, "stream"),
        ({"stream": "cam-1"}, "source"),
        ({"stream": "cam-1", "source": "/local/file.mp4"}, "s3:// or http"),
        ({"stream": "cam-1", "source": "s3://someone-elses-bucket/a.mp4"}, "workers read only"),
        ({"stream": "cam-1", "source": "SOURCE_BUCKET/missing.mp4"}, "not readable"),
    ],
)
def test_orchestrator_rejects_bad_requests_with_a_reason(
    emulation: Any, event: dict[str, str], message: str
) -> None:
    if "source" in event:
        event = {
            **event,
            "source": event["source"].replace("SOURCE_BUCKET", f"s3://{emulation.source_bucket}"),
        }
    with pytest.raises(ValueError, match=message):
        invoke_orchestrator(emulation, MonolithSettings(), event, Meter())
    sqs = emulation.client("sqs")
    for shard in emulation.shards:
        assert "Messages" not in sqs.receive_message(QueueUrl=shard.queue_url)
