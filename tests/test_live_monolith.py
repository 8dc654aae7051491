"""Live monitoring through the emulated monolith: alerts read from its SNS topic and its bus.

The origin (vqa.live_origin) airs corpus clip ``multi.mp4`` (10 s: black, clipping, freeze,
silence) in 1 s segments on 127.0.0.1; the emulated shard workers follow it from the live edge
and publish each event through vqa.alerts; an AlertTap subscribes a queue to the topic and a
rule on the bus, as a user would. Every call a worker makes is checked against its task role
from the synthesized template (LiveMonolith.close raises on any denied call).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import REPO, Corpus
from vqa.corpus import CORPUS_THRESHOLDS, expected_defects, unjudged
from vqa.detectors import create
from vqa.live_origin import LiveOrigin, OriginSegment, package
from vqa.local.monolith import LiveMonolith, load_config
from vqa.local.template import MONOLITH_STACK, synth_template

SEGMENT = 1.0
CLIP = "multi.mp4"
#: One shard per group keeps the emulation to two worker processes, as cdk.json deploys it.
BODY_FIELDS = {"event", "kind", "start", "end", "source", "at", "id", "architecture", "stream_id"}


@pytest.fixture(scope="module")
def segments(corpus: Corpus) -> list[OriginSegment]:
    return package(corpus.path(CLIP), segment_seconds=SEGMENT)


def min_duration(kind: str) -> float:
    over = CORPUS_THRESHOLDS.get(kind, {})
    # Loudness has holds per reason, and none for true peaks (the truth's loudness defects).
    return float(over.get("min_duration", getattr(create(kind).config, "min_duration", 0.0)))


def wait_for(
    live: LiveMonolith, until: Callable[[list[dict[str, Any]]], bool], timeout: float
) -> list[dict[str, Any]]:
    """Alerts from the bus (first arrival of each, with its wall time) until ``until`` holds."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not until(got):
        got += [{**b, "_wall": time.time()} for b in live.tap.fresh(wait=1)]
        assert not live.denied(), "a worker call was denied by its task role"
    return got


def pairs(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every started alert ends once, later, with the same start; no id twice."""
    open_: dict[str, dict[str, Any]] = {}
    ended = []
    for a in alerts:
        assert set(a) >= BODY_FIELDS, a
        assert a["architecture"] == "monolith" and a["at"].endswith("Z")
        if a["event"] == "defect.started":
            assert a["end"] is None and a["id"] not in open_, a
            open_[a["id"]] = a
        else:
            s = open_.pop(a["id"])
            assert s["start"] == a["start"] < a["end"], (s, a)
            ended.append({**a, "started_wall": s["_wall"]})
    assert not open_, open_
    return ended


def test_live_hls_alerts_from_topic_and_bus(corpus: Corpus, segments: list[OriginSegment]) -> None:
    clip = corpus.clip(CLIP)
    truth = expected_defects(clip, load_config().detectors)  # what the stack deploys
    with LiveMonolith("", thresholds=CORPUS_THRESHOLDS, submit=False) as live:
        with LiveOrigin(segments, window=4) as origin:
            live.submit(origin.url)
            alerts = wait_for(
                live,
                lambda got: (
                    sum(a["event"] == "defect.ended" and not unjudged(clip, a) for a in got)
                    >= len(truth)
                ),
                timeout=origin.program + 20,
            )
            # The playlist's end tag ends the job: every shard reports done.
            deadline = time.monotonic() + 10
            while live.status().state != "done" and time.monotonic() < deadline:
                time.sleep(0.2)
            assert live.status().state == "done"
        alerts += [{**b, "_wall": time.time()} for b in live.tap.fresh(wait=1)]
    alerts += [{**b, "_wall": time.time()} for b in live.closed_alerts]

    ended = [a for a in pairs(alerts) if not unjudged(clip, a)]
    assert sorted(a["kind"] for a in ended) == sorted(d["kind"] for d in truth)
    assert {a["stream_id"] for a in alerts} == {live.stream}
    assert {a["source"] for a in alerts} == {origin.url}
    # Stream time starts where monitoring began; durations and spacing are the programme's.
    by_kind = {a["kind"]: a for a in ended}
    base = by_kind["black"]["start"] - truth[0]["start"]
    for d in truth:
        a = by_kind[d["kind"]]
        assert a["start"] - base == pytest.approx(d["start"], abs=0.05), a
        assert a["end"] - base == pytest.approx(d["end"], abs=0.05), a
        started_latency = a["started_wall"] - origin.aired(d["start"])
        ended_latency = a["_wall"] - origin.aired(d["end"])
        # The target: segment + minimum duration + 2 s.
        assert started_latency <= SEGMENT + min_duration(d["kind"]) + 2.0, (d, started_latency)
        assert 0 < ended_latency <= SEGMENT + 2.0, (d, ended_latency)
    # The same alerts, once each, on both channels; the bus's envelope as DESIGN.md fixes it.
    topic = live.tap.read("topic")
    bus = live.tap.received["bus"]
    key = lambda a: (a["id"], a["event"])  # noqa: E731
    assert sorted(map(key, topic)) == sorted(map(key, bus)) == sorted(map(key, alerts))
    assert {e["source"] for e in live.tap.envelopes} == {"vqa"}
    assert {e["detail-type"] for e in live.tap.envelopes} == {"Defect Started", "Defect Ended"}


def test_thresholds_reach_the_task_definitions() -> None:
    from vqa.local.monolith import with_thresholds

    config = with_thresholds(None, {"black": {"min_duration": 0.5}})
    template = synth_template(MONOLITH_STACK, vqa_context=config)
    envs = [
        {e["Name"]: e["Value"] for e in r["Properties"]["ContainerDefinitions"][0]["Environment"]}
        for r in template["Resources"].values()
        if r["Type"] == "AWS::ECS::TaskDefinition"
    ]
    black = [env for env in envs if "black" in env["VQA_DETECTORS"].split(",")]
    assert black and all(
        env["VQA_THRESHOLDS"] == '{"black": {"min_duration": 0.5}}' for env in black
    )
    others = [env for env in envs if env not in black]
    assert all(env["VQA_THRESHOLDS"] == "{}" for env in others)


def test_killed_worker_is_replaced_and_the_gap_is_unmonitored(
    corpus: Corpus, segments: list[OriginSegment]
) -> None:
    """SIGKILL the video shard's task while black is on air; a new task resumes the job at the
    live edge: the black alert ends (interrupted) where the dead task last saw media, the time
    nobody watched is in the stream status, and the second airing is monitored again."""
    clip = corpus.clip(CLIP)
    truth = expected_defects(clip, load_config().detectors)  # what the stack deploys
    # A dead task's job reappears after the visibility timeout (the stack's: 2 minutes).
    with LiveMonolith("", template=tuned_template(visibility=3), submit=False) as live:
        video = next(s for s in live.emu.shards if "black" in s.detectors)
        with LiveOrigin(segments, window=4, loops=2) as origin:
            live.submit(origin.url)
            alerts = wait_for(
                live,
                lambda got: any(
                    a["event"] == "defect.started" and a["kind"] == "black" for a in got
                ),
                timeout=15,
            )
            live.kill(video)
            time.sleep(1.0)
            live.start(video)
            alerts += wait_for(live, lambda got: live.finished(), timeout=2 * origin.program + 20)
            assert live.status().state == "done"
            resumed = next(
                w
                for w in live.workers
                if w.shard is video and any("resumed at" in ln for ln in w.lines)
            )
            assert resumed is not None
        status = live.status()
    alerts += [{**b, "_wall": time.time()} for b in live.closed_alerts]

    ended = pairs(alerts)
    black = [a for a in ended if a["kind"] == "black"]
    interrupted = [a for a in black if a.get("interrupted")]
    assert len(interrupted) == 1, black
    # The replacement found the black of the second airing, with its true duration.
    assert any(
        not a.get("interrupted") and a["end"] - a["start"] == pytest.approx(1.5, abs=0.05)
        for a in black
    ), black
    # The gap: at least the time the shard had no task, and it begins where the black ended.
    assert status.unmonitored, status.raw
    gap_start, gap_end = status.unmonitored[0]
    assert gap_start == pytest.approx(interrupted[0]["end"], abs=1e-6)
    assert gap_end - gap_start >= 1.0  # the shard had no task for at least the 1 s pause
    assert status.unmonitored_seconds < 20
    kinds_second_airing = {a["kind"] for a in ended if a["start"] > gap_end}
    assert {d["kind"] for d in truth} <= kinds_second_airing


def tuned_template(*, visibility: int, ceiling: int = 43200) -> dict[str, Any]:
    """The synthesized monolith with the jobs' visibility timeout (how soon a dead task's job
    reappears) and SQS's 12-hour ceiling made ``visibility`` and ``ceiling`` seconds."""
    from vqa.local.monolith import with_thresholds

    template = synth_template(MONOLITH_STACK, vqa_context=with_thresholds(None, CORPUS_THRESHOLDS))
    for res in template["Resources"].values():
        if res["Type"] == "AWS::ECS::TaskDefinition":
            for var in res["Properties"]["ContainerDefinitions"][0]["Environment"]:
                if var["Name"] == "VQA_VISIBILITY_CEILING_SECONDS":
                    assert var["Value"] == "43200"  # the stack's default: SQS's real ceiling
                    var["Value"] = str(ceiling)
                if var["Name"] == "VQA_VISIBILITY_SECONDS":
                    var["Value"] = str(visibility)
    return template


def test_a_live_job_hands_itself_over_before_the_visibility_ceiling(
    corpus: Corpus, segments: list[OriginSegment]
) -> None:
    """With the ceiling at 8 s (hand-over 4 s after each receipt), a 10 s stream is handed over
    at least twice per shard: each continuation picks the stream up at the next media segment,
    one job at a time, so nothing is lost or doubled — every defect alerted once, with its true
    extent even when it was on air across a hand-over, no unmonitored time, queues empty."""
    clip = corpus.clip(CLIP)
    truth = expected_defects(clip, load_config().detectors)  # what the stack deploys
    template = tuned_template(visibility=4, ceiling=8)
    with LiveMonolith("", template=template, submit=False) as live:
        with LiveOrigin(segments, window=4) as origin:
            live.submit(origin.url)
            alerts = wait_for(live, lambda got: live.finished(), timeout=origin.program + 30)
            assert live.status().state == "done"
        sqs = live.emu.client("sqs")
        for shard in live.emu.shards:
            for url in (shard.queue_url, shard.dlq_url):
                attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
                assert attrs["ApproximateNumberOfMessages"] == "0", (shard.name, url)
                assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0", (shard.name, url)
        handovers = [ln for w in live.workers for ln in w.lines if "live job handed over" in ln]
        status = live.status()
    alerts += [{**b, "_wall": time.time()} for b in live.closed_alerts]
    assert len(handovers) >= 2 * len(live.emu.shards), handovers
    ended = [a for a in pairs(alerts) if not unjudged(clip, a)]
    assert sorted(a["kind"] for a in ended) == sorted(d["kind"] for d in truth)
    by_kind = {a["kind"]: a for a in ended}
    base = by_kind["black"]["start"] - truth[0]["start"]
    for d in truth:
        a = by_kind[d["kind"]]
        assert a["start"] - base == pytest.approx(d["start"], abs=0.05), a
        assert a["end"] - base == pytest.approx(d["end"], abs=0.05), a
    assert status.unmonitored == [], status.raw


def test_cli_watch_arch_monolith_sigint_ends_open_defects(segments: list[OriginSegment]) -> None:
    """`vqa watch URL --arch monolith --json` prints the alerts the emulated stack publishes;
    Ctrl-C while black is on air: the task is stopped, ends the black where it last saw media,
    that alert is printed too, and the command exits 0."""
    # Aired on a loop: whenever the command has deployed and joined, a black comes within 10 s.
    with LiveOrigin(segments, window=4, loops=30) as origin:
        argv = [sys.executable, "-m", "vqa", "watch", origin.url, "--arch", "monolith", "--json"]
        argv += ["--detectors", "black", "--set", "black.min_duration=0.5"]
        proc = subprocess.Popen(
            argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        lines: list[dict[str, Any]] = []
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(json.loads(line))
                if lines[-1]["event"] == "defect.started":
                    proc.send_signal(signal.SIGINT)
                    break
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    lines += [json.loads(ln) for ln in out.splitlines()]
    started, ended = lines[0], lines[-1]
    assert (started["event"], started["kind"]) == ("defect.started", "black")
    assert (ended["event"], ended["id"], ended["start"]) == (
        "defect.ended",
        started["id"],
        started["start"],
    )
    assert ended["end"] > ended["start"] and ended["architecture"] == "monolith"
