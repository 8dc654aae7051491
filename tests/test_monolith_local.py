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
    create_emulation,
    invoke_orchestrator,
    load_config,
    run_local,
)
from vqa.meter import Meter
from vqa.results import STATUS_KEY, status_item

ROOT = Path(__file__).resolve().parents[1]
#: Corpus clips (vqa.corpus) that exercise every detector, both shards, damaged and partial
#: sources, and single-track sources; ``ts_*`` from the TR 101 290 corpus.
PARITY_CLIPS = (
    "multi.mp4",
    "multi_25.ts",
    "damage_ts.ts",
    "truncated.ts",
    "audio_only.m4a",
    "video_only.mp4",
)
#: The smallest clips on which the detectors deployed beyond the six anchors report: two
#: over-peak bursts in 8 s of audio, and video packets dropped from a 10 s TS.
NEW_DETECTOR_CLIPS = {"over_peak.m4a": "loudness", "ts_drop.ts": "transport"}


def _analyze_json(path: Path) -> dict[str, Any]:
    from vqa.analyze import analyze

    # The detectors the stack deploys (cdk.json), whatever the package runs by default.
    return analyze(str(path), detectors=list(load_config().detectors)).to_json()


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
    # A started and an ended alert per defect, to the topic and the bus; no intermediate media
    # objects: S3 PUTs are checkpoints only (one per shard per 10 segments).
    assert req["sns"]["Publish"] == 2 * len(sample_run["defects"])
    assert req["events"]["PutEvents"] == 2 * len(sample_run["defects"])
    assert req["s3"].get("PutObject", 0) <= 2 * (int(sample_run["duration"]) // 10 + 1)
    counters = usage["counters"]
    assert counters["worker_cpu_seconds"] > 0.05
    assert counters["lambda_invocations"] == 1
    assert counters["lambda_gb_seconds"] > 0
    assert counters["log_bytes"] > 0
    cfg = usage["config"]
    assert cfg["shards"] == [list(s) for s in load_config().shards]
    assert cfg["instance_type"]


def sample_run_source_size(run: dict[str, Any]) -> int:
    return Path(run["source"]).stat().st_size


@pytest.mark.slow
@pytest.mark.parametrize("clip", [*PARITY_CLIPS, *NEW_DETECTOR_CLIPS])
def test_corpus_parity(corpus: Any, ts_corpus: tuple[Path, dict[str, Any]], clip: str) -> None:
    path = ts_corpus[0] / clip if clip.startswith("ts_") else corpus.path(clip)
    got = run_local(str(path))
    want = _analyze_json(path)
    if clip in NEW_DETECTOR_CLIPS:  # deployed (cdk.json), and reporting on this clip
        assert NEW_DETECTOR_CLIPS[clip] in {d["kind"] for d in want["defects"]}
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


def test_cli_run_monolith_set_overrides_reach_the_workers(corpus: Any) -> None:
    """multi.mp4's black lasts 1.5 s: under the default 2 s minimum, found with --set 0.5 (the
    override travels through the synthesized task definitions' VQA_THRESHOLDS)."""
    clip = corpus.path("multi.mp4")
    (truth,) = [d for d in corpus.clip("multi.mp4")["defects"] if d["kind"] == "black"]
    assert not [d for d in _analyze_json(clip)["defects"] if d["kind"] == "black"]
    argv = [sys.executable, "-m", "vqa", "run", str(clip), "--arch", "monolith", "--json"]
    proc = subprocess.run(
        [*argv, "--set", "black.min_duration=0.5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    black = [d for d in json.loads(proc.stdout)["defects"] if d["kind"] == "black"]
    assert [(d["start"], d["end"]) for d in black] == [
        pytest.approx((truth["start"], truth["end"]), abs=0.05)
    ]
    bad = subprocess.run(
        [*argv, "--set", "black.no_such_field=1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "black.no_such_field" in bad.stderr
    assert "Traceback" not in bad.stderr


# ---- the orchestrator handler, invoked as Lambda would -------------------------------------------


@pytest.fixture
def emulation() -> Any:
    return create_emulation()


def test_orchestrator_records_the_stream_and_fans_out_one_job_per_shard(emulation: Any) -> None:
    from vqa.results import get_status

    s3 = emulation.client("s3")
    s3.put_object(Bucket=emulation.source_bucket, Key="a.mp4", Body=b"x")
    source = f"s3://{emulation.source_bucket}/a.mp4"
    meter = Meter()
    out = invoke_orchestrator(emulation, {"stream": "cam-1", "source": source}, meter)
    assert out["state"] == "running" and set(out["jobs"]) == {"shard0", "shard1"}
    status = get_status(
        dynamodb=emulation.client("dynamodb"), table=emulation.table, stream="cam-1"
    )
    assert status is not None
    assert status["state"] == "running" and json.loads(status["shards"]) == ["shard0", "shard1"]
    # One status schema: the orchestrator (boto3 only) writes vqa.results' item exactly.
    raw = emulation.client("dynamodb").get_item(
        TableName=emulation.table, Key={"stream": {"S": "cam-1"}, "defect": {"S": STATUS_KEY}}
    )["Item"]
    assert raw == status_item(
        "cam-1",
        "running",
        source=source,
        architecture="monolith",
        shards=["shard0", "shard1"],
        requested_at=raw["requested_at"]["S"],
    )
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


def test_a_request_runs_only_its_detectors_at_its_thresholds(emulation: Any, corpus: Any) -> None:
    """The front door's request (vqa.api: ``{"detectors", "thresholds"}``) reaches the workers:
    only the shards holding a requested detector get a job, and the worker runs just those
    detectors with the request's thresholds over the deployed ones."""
    from vqa.analyze import analyze
    from vqa.worker import Clients, Worker, WorkerSettings

    clip = corpus.path("multi.mp4")
    emulation.client("s3").put_object(
        Bucket=emulation.source_bucket, Key="m.mp4", Body=clip.read_bytes()
    )
    source = f"s3://{emulation.source_bucket}/m.mp4"
    request = {"detectors": ["black"], "thresholds": {"black": {"min_duration": 0.5}}}
    event = {"stream": "req-1", "source": source, "request": request}
    out = invoke_orchestrator(emulation, event, Meter())
    (shard,) = [s for s in emulation.shards if "black" in s.detectors]
    assert set(out["jobs"]) == {shard.name}  # the other shard is not asked (nor waited for)
    worker = Worker(
        WorkerSettings.from_env(emulation.worker_env(shard)),
        Clients(
            sqs=emulation.client("sqs"),
            dynamodb=emulation.client("dynamodb"),
            s3=emulation.client("s3"),
            sns=emulation.client("sns"),
            events=emulation.client("events"),
        ),
    )
    worker.run(drain=True)
    from vqa.results import get_status, read_defects

    ddb = emulation.client("dynamodb")
    status = get_status(dynamodb=ddb, table=emulation.table, stream="req-1") or {}
    assert status["state"] == "done"
    expected = analyze(str(clip), detectors=["black"], thresholds=request["thresholds"])
    got = read_defects(dynamodb=ddb, table=emulation.table, stream="req-1")
    assert [d.to_json() for d in got] == [d.to_json() for d in expected.defects]
    # At the deployed 2 s minimum, multi.mp4's 1.5 s black would not be reported at all.
    assert [d.kind for d in got] == ["black"]
    assert not analyze(str(clip), detectors=["black"]).defects


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
        invoke_orchestrator(emulation, event, Meter())
    sqs = emulation.client("sqs")
    for shard in emulation.shards:
        assert "Messages" not in sqs.receive_message(QueueUrl=shard.queue_url)
