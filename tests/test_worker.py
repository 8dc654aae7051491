"""The shard worker against moto: defects, checkpoints and resume, SIGTERM, heartbeats, the DLQ."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from vqa.defects import Defect
from vqa.local.monolith import (
    Emulation,
    create_emulation,
    finish_worker,
    start_worker,
)
from vqa.meter import Meter
from vqa.results import get_status, read_defects
from vqa.worker import (
    CheckpointStore,
    Clients,
    Heartbeat,
    Job,
    Worker,
    WorkerSettings,
)

ALL = ("black", "freeze", "corruption", "silence", "clipping", "av_sync")
ROOT = Path(__file__).resolve().parents[1]


class Crash(BaseException):
    """Simulates the process dying: escapes the worker's error handling like a SIGKILL would."""


@pytest.fixture(scope="session")
def sample_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vqa.corpus import write_sample_clip

    path = tmp_path_factory.mktemp("worker") / "sample.mp4"
    write_sample_clip(path, seconds=10.0, width=320, height=180)
    return path


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vqa.corpus import write_sample_clip

    path = tmp_path_factory.mktemp("worker") / "long.mp4"
    write_sample_clip(path, seconds=40.0, width=320, height=180)
    return path


@pytest.fixture(scope="session")
def expected(sample_clip: Path) -> list[dict[str, Any]]:
    from vqa.analyze import analyze

    return [d.to_json() for d in analyze(str(sample_clip)).defects]


@pytest.fixture
def emu() -> Emulation:
    return create_emulation({"shards": [list(ALL)]})


def _upload(emu: Emulation, path: Path | bytes, key: str = "clip.mp4") -> str:
    body = path if isinstance(path, bytes) else path.read_bytes()
    emu.client("s3").put_object(Bucket=emu.source_bucket, Key=key, Body=body)
    return f"s3://{emu.source_bucket}/{key}"


def _submit(emu: Emulation, stream: str, source: str) -> None:
    """What the orchestrator does: a status item naming the shards, one job per shard queue."""
    from vqa.results import put_status

    put_status(
        dynamodb=emu.client("dynamodb"),
        table=emu.table,
        stream=stream,
        state="running",
        shards=[s.name for s in emu.shards],
    )
    for shard in emu.shards:
        emu.client("sqs").send_message(
            QueueUrl=shard.queue_url,
            MessageBody=json.dumps({"stream": stream, "source": source, "shard": shard.name}),
        )


def _worker(emu: Emulation, meter: Meter, **overrides: Any) -> Worker:
    shard = emu.shards[0]
    hook = overrides.pop("after_segment", None)
    settings = WorkerSettings.from_env(emu.worker_env(shard), **overrides)
    clients = Clients(
        sqs=emu.client("sqs", meter),
        dynamodb=emu.client("dynamodb", meter),
        s3=emu.client("s3", meter),
        sns=emu.client("sns", meter),
        events=emu.client("events", meter),
    )
    return Worker(settings, clients, meter=meter, cpu_clock=time.thread_time, after_segment=hook)


def _defects(emu: Emulation, stream: str) -> list[dict[str, Any]]:
    return [
        d.to_json()
        for d in read_defects(dynamodb=emu.client("dynamodb"), table=emu.table, stream=stream)
    ]


def _queue_depth(emu: Emulation, url: str) -> int:
    attrs = emu.client("sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


# ---- a job, start to finish ----------------------------------------------------------------------


def test_worker_stores_exactly_the_defects_of_analyze(
    emu: Emulation, sample_clip: Path, expected: list[dict[str, Any]]
) -> None:
    assert expected, "the sample clip has defects"
    _submit(emu, "s1", _upload(emu, sample_clip))
    meter = Meter()
    worker = _worker(emu, meter)
    assert worker.run(drain=True) == 1

    assert _defects(emu, "s1") == expected
    status = get_status(dynamodb=emu.client("dynamodb"), table=emu.table, stream="s1") or {}
    assert status["state"] == "done" and status["shard_shard0"] == "done"
    assert float(status["duration_shard0"]) == pytest.approx(10.0, abs=0.1)
    assert _queue_depth(emu, emu.shards[0].queue_url) == 0
    snap = meter.snapshot()
    # A started and an ended alert per defect, on the topic and the bus; one decode pass; no
    # intermediate objects (only checkpoints).
    assert snap["requests"]["sns"]["Publish"] == 2 * len(expected)
    assert snap["requests"]["events"]["PutEvents"] == 2 * len(expected)
    # S3 writes are checkpoints only: one every 10 segments, none after the last segment.
    segments = math.ceil(float(status["duration_shard0"]) - 1e-9)
    assert snap["requests"]["s3"].get("PutObject", 0) == (segments - 1) // 10
    assert snap["counters"]["worker_cpu_seconds"] > 0
    listing = emu.client("s3").list_objects_v2(Bucket=emu.checkpoint_bucket)
    assert listing.get("KeyCount", 0) == 0, "a finished job deletes its checkpoint"


def test_shard_subsets_together_store_the_defects_of_analyze(sample_clip: Path) -> None:
    from vqa.analyze import analyze
    from vqa.local.monolith import load_config

    # cdk.json's shards together: every detector the stack deploys (loudness included).
    deployed = list(load_config(None).detectors)
    expected = [d.to_json() for d in analyze(str(sample_clip), detectors=deployed).defects]
    emu = create_emulation()
    _submit(emu, "s2", _upload(emu, sample_clip))
    meter = Meter()
    for shard in emu.shards:
        env = emu.worker_env(shard)
        clients = Clients(
            sqs=emu.client("sqs", meter),
            dynamodb=emu.client("dynamodb", meter),
            s3=emu.client("s3", meter),
            sns=emu.client("sns", meter),
            events=emu.client("events", meter),
        )
        status = get_status(dynamodb=emu.client("dynamodb"), table=emu.table, stream="s2") or {}
        assert status["state"] == "running"  # until the last shard finishes
        Worker(WorkerSettings.from_env(env), clients, meter=meter).run(drain=True)
    assert _defects(emu, "s2") == expected
    status = get_status(dynamodb=emu.client("dynamodb"), table=emu.table, stream="s2") or {}
    assert status["state"] == "done"


# ---- stop, crash, resume -------------------------------------------------------------------------


@pytest.mark.parametrize("resume", ["seek", "replay"])
def test_stopped_worker_checkpoints_and_a_second_worker_finishes_without_loss_or_duplicates(
    emu: Emulation, sample_clip: Path, expected: list[dict[str, Any]], resume: str
) -> None:
    source = _upload(emu, sample_clip)
    _submit(emu, "s3", source)
    meter = Meter()

    def stop_at_4(worker: Worker, index: int) -> None:
        if index == 4:
            worker.stop()  # what the SIGTERM handler does

    first = _worker(emu, meter, checkpoint_every=3, after_segment=stop_at_4)
    assert first.run(drain=True) == 0
    job = Job(stream="s3", source=source, shard="shard0")
    cp = CheckpointStore(emu.client("s3"), emu.checkpoint_bucket).load(job, "shard0", ALL)
    assert cp is not None and cp.next_index == 5, "stop checkpoints after the current segment"
    partial = _defects(emu, "s3")
    assert all(d in expected for d in partial), "only true defects were stored so far"

    resumed: list[int] = []
    second = _worker(
        emu, meter, checkpoint_every=3, resume=resume, after_segment=lambda w, i: resumed.append(i)
    )
    assert second.run(drain=True) == 1
    assert resumed[0] == 5, "the replacement resumes at the checkpoint, not at 0"
    assert _defects(emu, "s3") == expected
    assert meter.snapshot()["requests"]["sns"]["Publish"] == 2 * len(expected)  # none twice


def test_a_job_stopped_more_often_than_max_receives_is_not_dead_lettered(
    emu: Emulation, sample_clip: Path, expected: list[dict[str, Any]]
) -> None:
    _submit(emu, "s5", _upload(emu, sample_clip))
    meter = Meter()
    for stop_at in (1, 3, 5, 7):  # four scale-ins in a row; maxReceiveCount is 3

        def hook(worker: Worker, index: int, stop_at: int = stop_at) -> None:
            if index == stop_at:
                worker.stop()

        assert _worker(emu, meter, checkpoint_every=100, after_segment=hook).run(drain=True) == 0
    assert _worker(emu, meter).run(drain=True) == 1
    assert _defects(emu, "s5") == expected
    assert "Messages" not in emu.client("sqs").receive_message(QueueUrl=emu.shards[0].dlq_url)


@pytest.mark.parametrize("resume", ["seek", "replay"])
def test_crashed_worker_is_replaced_from_the_last_periodic_checkpoint(
    emu: Emulation, sample_clip: Path, expected: list[dict[str, Any]], resume: str
) -> None:
    _submit(emu, "s4", _upload(emu, sample_clip))
    meter = Meter()

    def crash_at_7(worker: Worker, index: int) -> None:
        if index == 7:
            raise Crash

    # A short visibility timeout so that the dead worker's job reappears quickly.
    dead = _worker(emu, meter, checkpoint_every=3, visibility_seconds=2, after_segment=crash_at_7)
    with pytest.raises(Crash):
        dead.run(drain=True)
    sqs = emu.client("sqs")
    msg_queue = emu.shards[0].queue_url
    assert sqs.receive_message(QueueUrl=msg_queue).get("Messages") is None  # still in flight
    time.sleep(2.2)

    resumed: list[int] = []
    second = _worker(
        emu, meter, checkpoint_every=3, resume=resume, after_segment=lambda w, i: resumed.append(i)
    )
    assert second.run(drain=True) == 1
    assert resumed[0] == 6  # checkpoints after segments 2 and 5: next index 6
    assert _defects(emu, "s4") == expected
    # Defects between the checkpoint and the crash were reported twice but stored and alerted
    # once (conditional puts).
    assert meter.snapshot()["requests"]["sns"]["Publish"] == 2 * len(expected)  # none twice
    assert sqs.receive_message(QueueUrl=msg_queue).get("Messages") is None


# ---- failures ------------------------------------------------------------------------------------


def test_poison_job_reaches_the_dead_letter_queue_with_its_reason_recorded(emu: Emulation) -> None:
    source = _upload(emu, b"this is not a video file at all" * 100, key="poison.mp4")
    _submit(emu, "bad", source)
    meter = Meter()
    worker = _worker(emu, meter, retry_delay_cap=0)
    assert worker.run(drain=True) == 0
    assert worker.jobs_failed == 3  # maxReceiveCount receives, then SQS dead-letters it

    shard = emu.shards[0]
    assert _queue_depth(emu, shard.queue_url) == 0
    dead = emu.client("sqs").receive_message(QueueUrl=shard.dlq_url).get("Messages", [])
    assert len(dead) == 1 and json.loads(dead[0]["Body"])["stream"] == "bad"
    status = get_status(dynamodb=emu.client("dynamodb"), table=emu.table, stream="bad") or {}
    assert status["state"] == "failed"
    assert status["shard_shard0"] == "failed"
    assert "BadSourceError" in status["error"]
    assert status["reason_shard0"] and "\n" not in status["reason_shard0"]
    assert status["attempts_shard0"] == "3"


def test_malformed_message_is_dead_lettered(emu: Emulation) -> None:
    shard = emu.shards[0]
    emu.client("sqs").send_message(QueueUrl=shard.queue_url, MessageBody="{not json")
    worker = _worker(emu, Meter(), retry_delay_cap=0)
    worker.run(drain=True)
    assert worker.jobs_failed == 3
    assert len(emu.client("sqs").receive_message(QueueUrl=shard.dlq_url)["Messages"]) == 1


# ---- heartbeat, logs, settings -------------------------------------------------------------------


def test_heartbeat_extends_visibility_only_after_a_third_of_it(monkeypatch: Any) -> None:
    calls: list[dict[str, Any]] = []

    class FakeSqs:
        def change_message_visibility(self, **kw: Any) -> None:
            calls.append(kw)

    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    hb = Heartbeat(FakeSqs(), "q", "r", 120)
    for _ in range(39):
        now[0] += 1.0
        hb.beat()
    assert calls == []
    now[0] += 1.0
    hb.beat()
    assert calls == [{"QueueUrl": "q", "ReceiptHandle": "r", "VisibilityTimeout": 120}]


def test_settings_come_from_the_task_environment() -> None:
    s = WorkerSettings.from_env(
        {
            "VQA_QUEUE_URL": "q",
            "VQA_DETECTORS": "black,freeze",
            "VQA_TABLE": "t",
            "VQA_CHECKPOINT_BUCKET": "b",
            "VQA_SHARD": "shard1",
            "VQA_CHECKPOINT_EVERY": "7",
            "VQA_MAX_RECEIVES": "5",
        }
    )
    assert (s.queue_url, s.detectors, s.shard, s.checkpoint_every, s.max_receives) == (
        "q",
        ("black", "freeze"),
        "shard1",
        7,
        5,
    )
    assert s.missing() == []
    assert WorkerSettings.from_env({}).missing() == [
        "VQA_QUEUE_URL",
        "VQA_TABLE",
        "VQA_CHECKPOINT_BUCKET",
        "VQA_DETECTORS",
    ]


def test_cli_help_and_missing_settings() -> None:
    env = {"PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "vqa.worker", "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and "VQA_QUEUE_URL" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "vqa.worker"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "missing settings" in proc.stderr


# ---- a real process, a real SIGTERM --------------------------------------------------------------


def test_sigterm_mid_stream_then_a_second_process_finishes_the_job(long_clip: Path) -> None:
    from vqa.analyze import analyze

    emu = create_emulation({"shards": [list(ALL)]})
    _submit(emu, "live", _upload(emu, long_clip))
    shard = emu.shards[0]
    first_checkpoint = threading.Event()

    def on_line(_wp: Any, line: str) -> None:
        if '"checkpoint"' in line:
            first_checkpoint.set()

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        wp = start_worker(
            emu,
            shard,
            Path(tmp),
            drain=True,
            on_line=on_line,
            extra_args=["--checkpoint-every", "2"],
        )
        assert first_checkpoint.wait(60), "".join(wp.lines)
        wp.proc.send_signal(signal.SIGSTOP)  # freeze it mid-stream, then deliver SIGTERM
        wp.proc.send_signal(signal.SIGTERM)
        wp.proc.send_signal(signal.SIGCONT)
        meter = Meter()
        finish_worker(wp, meter)  # exits 0
        logs = [json.loads(ln) for ln in wp.lines if ln.strip()]
        assert any(d.get("message") == "job handed back after checkpoint" for d in logs), logs[-5:]
        handed_at = max(d["next_index"] for d in logs if d.get("message") == "checkpoint")
        assert 0 < handed_at < 40

        second = start_worker(emu, shard, Path(tmp), drain=True)
        finish_worker(second, meter)
        logs2 = [json.loads(ln) for ln in second.lines if ln.strip()]
        assert any(
            d.get("message") == "resuming from checkpoint" and d["next_index"] == handed_at
            for d in logs2
        )
    want = [d.to_json() for d in analyze(str(long_clip)).defects]
    assert _defects(emu, "live") == want
    assert meter.snapshot()["requests"]["sns"]["Publish"] == 2 * len(want)  # none twice


def test_checkpoint_of_another_source_is_not_resumed(emu: Emulation) -> None:
    from vqa.worker import Checkpoint

    store = CheckpointStore(emu.client("s3"), emu.checkpoint_bucket)
    job = Job(stream="x", source="s3://b/a.mp4", shard="shard0")
    store.save(job, "shard0", ALL, Checkpoint(5, {"k": 1}, 2))
    assert store.load(job, "shard0", ALL) == Checkpoint(5, {"k": 1}, 2)
    assert (
        store.load(Job(stream="x", source="s3://b/other.mp4", shard="shard0"), "shard0", ALL)
        is None
    )
    assert store.load(job, "shard0", ("black",)) is None


def test_defect_keys_are_idempotent_across_workers() -> None:
    # The property the resume tests rely on: the same defect re-reported maps to the same key.
    a = Defect(start=1.0000001, end=2.0, kind="black")
    b = Defect.from_json(json.loads(json.dumps(a.to_json())))
    assert a.key == b.key


def test_task_protection_is_set_for_the_job_and_released_after(
    emu: Emulation, sample_clip: Path, monkeypatch: Any
) -> None:
    """Inside ECS the worker protects its task from scale-in while it works on a job."""
    from http.server import BaseHTTPRequestHandler, HTTPServer

    calls: list[tuple[str, dict[str, Any]]] = []

    class Agent(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append((self.path, body))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Agent)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("ECS_AGENT_URI", f"http://127.0.0.1:{server.server_port}/v1/abc")
        _submit(emu, "protected", _upload(emu, sample_clip))
        assert _worker(emu, Meter()).run(drain=True) == 1
    finally:
        server.shutdown()
    assert [c[0] for c in calls] == ["/v1/abc/task-protection/v1/state"] * 2
    assert calls[0][1] == {"ProtectionEnabled": True, "ExpiresInMinutes": 60}
    assert calls[1][1] == {"ProtectionEnabled": False}


def test_sigterm_while_idle_exits_at_once_not_after_the_long_poll(tmp_path: Path) -> None:
    # ECS stops idle tasks at every scale-in; a worker in a 20 s long poll must not make ECS wait
    # (and SIGKILL it after stopTimeout). No --drain: the task definition's command as it is.
    emu = create_emulation({"shards": [list(ALL)]})
    started = threading.Event()

    def on_line(_wp: Any, line: str) -> None:
        if '"worker started"' in line:
            started.set()

    wp = start_worker(emu, emu.shards[0], tmp_path, on_line=on_line)
    try:
        assert started.wait(60), "".join(wp.lines)
        time.sleep(1.0)  # into the long poll
        t0 = time.monotonic()
        wp.proc.send_signal(signal.SIGTERM)
        rc = wp.proc.wait(timeout=15)
        elapsed = time.monotonic() - t0
    finally:
        if wp.proc.poll() is None:
            wp.proc.kill()
    assert rc == 0, "".join(wp.lines[-5:])
    assert elapsed < 5.0, f"took {elapsed:.1f} s to stop"
    if wp.reader is not None:
        wp.reader.join(5)
    logs = [json.loads(ln) for ln in wp.lines if ln.strip().startswith("{")]
    assert any(d.get("message") == "signal received while idle: exiting" for d in logs), logs[-3:]
