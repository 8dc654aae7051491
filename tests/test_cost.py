"""The cost model on hand-computed cases: metered counts drive the costs exactly.

Expected dollars are written out as arithmetic on the stated inputs and the price table's
published figures, never computed with the model's own helpers.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from vqa.cost import (
    ModelParams,
    hourly_cost,
    merge_usage,
    price_usage,
    project,
    quota_markers,
    stream_points,
)
from vqa.deployment import Capacity, TaskSize
from vqa.errors import ConfigError
from vqa.pricing import PriceTable, load_prices


@pytest.fixture(scope="module")
def prices() -> PriceTable:
    return load_prices()


def distributed_usage(
    seconds: float = 10.0, fps: int = 25, workflow: str = "STANDARD", granularity: str = "frame"
) -> dict[str, Any]:
    """A realistic distributed run: per segment one convert, six detectors, one aggregate."""
    segs = int(seconds)
    frames = int(seconds * fps) if granularity == "frame" else segs
    return {
        "architecture": "distributed",
        "stream_seconds": seconds,
        "wall_seconds": 4.0,
        "requests": {
            "s3": {
                "PutObject": frames + segs + 6 * segs,
                "GetObject": 1 + 3 * frames + 3 * segs + 6 * segs,
                "HeadObject": segs,
                "DeleteObject": 3,
            },
            "dynamodb": {"PutItem": 4, "Query": 1, "DescribeTable": 1},
            "sns": {"Publish": 3},
            "stepfunctions": {"StartExecution": 1, "DescribeExecution": 5},
        },
        "bytes": {"s3_put": frames * 230_400, "s3_get": 3 * frames * 230_400},
        "counters": {
            "state_transitions": 14 * segs + 4,
            "sfn_executions": 1,
            "sfn_express_duration_seconds": 3.35,
            "lambda_invocations": 8 * segs,
            "lambda_gb_seconds": segs * (2.0 * 0.35 + 6 * 1.0 * 0.08 + 0.25 * 0.05),
            "log_bytes": 8 * segs * 600,
        },
        "config": {
            "workflow_type": workflow,
            "granularity": granularity,
            "lambda_architecture": "x86_64",
            "convert_memory_mb": 2048,
            "detector_memory_mb": 1024,
            "aggregate_memory_mb": 256,
            "intermediate_expiry_days": 1,
        },
    }


def capacity(
    sizes: tuple[tuple[int, int], ...] = ((1024, 1536), (1024, 1536)), target: int = 100
) -> Capacity:
    """c7i.large (2 vCPUs, 4 GiB) with one task per shard of the given (CPU units, MiB)."""
    return Capacity(
        instance_type="c7i.large",
        instance_vcpus=2,
        instance_memory_mib=4096,
        target_capacity_percent=target,
        tasks=tuple(
            TaskSize(f"shard{i}", ("black",) if i == 0 else ("silence",), cpu, mem)
            for i, (cpu, mem) in enumerate(sizes)
        ),
    )


def monolith_usage(seconds: float = 10.0) -> dict[str, Any]:
    return {
        "architecture": "monolith",
        "stream_seconds": seconds,
        "wall_seconds": 3.0,
        "requests": {
            "s3": {"GetObject": 2},
            "sqs": {"SendMessage": 2, "ReceiveMessage": 3, "DeleteMessage": 2},
            "dynamodb": {"PutItem": 5, "Query": 1},
            "sns": {"Publish": 3},
        },
        "bytes": {"s3_put": 0, "s3_get": 2_000_000},
        "counters": {
            "worker_cpu_seconds": 0.21 * seconds,
            "lambda_invocations": 1,
            "lambda_gb_seconds": 0.03,
            "log_bytes": 4_000,
        },
        "config": {
            "instance_type": "c7i.large",
            "shards": [["black"], ["silence"]],
            "orchestrator_memory_mb": 256,
        },
    }


def test_blog_case_three_transitions_per_stream_second(prices: PriceTable) -> None:
    usage = {
        "architecture": "distributed",
        "stream_seconds": 60.0,
        "counters": {"state_transitions": 180},
        "config": {"workflow_type": "STANDARD"},
    }
    r = price_usage(usage, prices)
    # 3 transitions/s x 3600 s x $0.025 / 1000 transitions = $0.27 per stream-hour.
    assert r.usd_per_stream_hour == pytest.approx(3 * 3600 * 0.025 / 1000)
    assert r.usd_per_stream_hour == pytest.approx(0.27)
    assert r.breakdown["stepfunctions"] == pytest.approx(0.27)
    assert sum(r.breakdown.values()) == pytest.approx(0.27)


def test_each_metered_count_drives_its_line_exactly(prices: PriceTable) -> None:
    u = distributed_usage()
    # Each stream lasting as long as it ran: per-stream work is charged to the run in full.
    params = ModelParams(lambda_platform_log_bytes=350, stream_lifetime_hours=None)
    r = price_usage(u, prices, params)
    lines = {li.item: li for li in r.line_items}
    c, s3 = u["counters"], u["requests"]["s3"]
    assert lines["state transitions"].quantity == c["state_transitions"]
    assert lines["state transitions"].usd == pytest.approx(c["state_transitions"] * 0.025 / 1000)
    assert lines["Lambda requests"].quantity == c["lambda_invocations"]
    assert lines["Lambda requests"].usd == pytest.approx(c["lambda_invocations"] * 0.2 / 1e6)
    assert lines["Lambda GB-seconds (x86_64)"].usd == pytest.approx(
        c["lambda_gb_seconds"] * 0.0000166667
    )
    # PutObject -> PUT class; GetObject + HeadObject -> GET class; DeleteObject is free.
    assert lines["S3 PUT/COPY/POST/LIST requests"].quantity == s3["PutObject"]
    assert lines["S3 GET and other requests"].quantity == s3["GetObject"] + s3["HeadObject"]
    assert lines["S3 PUT/COPY/POST/LIST requests"].usd == pytest.approx(
        s3["PutObject"] * 0.005 / 1000
    )
    assert lines["DynamoDB write request units"].quantity == 4
    assert lines["DynamoDB read request units"].quantity == 1
    assert lines["SNS requests"].quantity == 3
    gib = u["bytes"]["s3_put"] / 1024**3
    assert lines["S3 storage (1 day lifetime)"].quantity == pytest.approx(gib * 24 / 730)
    # The handlers' own lines plus 350 bytes of START/END/REPORT per invocation.
    assert lines["CloudWatch Logs ingestion (GB)"].quantity == pytest.approx(
        (c["log_bytes"] + 350 * c["lambda_invocations"]) / 1024**3
    )
    # Standard workflows are billed by transition only: StartExecution is not a line.
    assert r.unpriced["stepfunctions"] == {"StartExecution": 1, "DescribeExecution": 5}
    assert r.unpriced["dynamodb"] == {"DescribeTable": 1}
    assert r.usd_run == pytest.approx(sum(li.usd for li in r.line_items))
    assert r.usd_per_stream_hour == pytest.approx(r.usd_run * 3600 / 10.0)


def test_eventbridge_alerts_are_priced_per_custom_event(prices: PriceTable) -> None:
    u = distributed_usage()
    u["requests"]["events"] = {"PutEvents": 6}  # 3 defects: a started and an ended alert each
    params = ModelParams(stream_lifetime_hours=None)
    r = price_usage(u, prices, params)
    lines = {li.item: li for li in r.line_items}
    # $1.00 per million custom events, one event per PutEvents call.
    assert lines["EventBridge custom events"].quantity == 6
    assert lines["EventBridge custom events"].usd == pytest.approx(6 * 1.0 / 1e6)
    assert "events" not in r.unpriced
    assert r.breakdown["events"] == pytest.approx(6 * 1.0 / 1e6 * 3600 / 10.0)


def test_doubling_a_count_doubles_its_cost(prices: PriceTable) -> None:
    u = distributed_usage()
    r1 = price_usage(u, prices)
    u["requests"]["s3"]["PutObject"] *= 2
    r2 = price_usage(u, prices)
    put = 0.005 / 1000
    assert r2.usd_run - r1.usd_run == pytest.approx(
        distributed_usage()["requests"]["s3"]["PutObject"] * put
    )


def test_express_bills_requests_and_rounded_duration(prices: PriceTable) -> None:
    u = distributed_usage(workflow="EXPRESS")
    u["counters"]["sfn_executions"] = 2
    u["counters"]["sfn_express_duration_seconds"] = 3.33
    r = price_usage(u, prices)
    lines = {li.item: li for li in r.line_items}
    assert "state transitions" not in lines
    assert lines["Express requests"].usd == pytest.approx(2 * 1.0 / 1e6)
    # 3.33 s over 2 executions: 1.665 s each, billed 1.7 s, at 64 MB.
    assert lines["Express duration"].quantity == pytest.approx(2 * 1.7 * 64 / 1024)
    assert lines["Express duration"].usd == pytest.approx(2 * 1.7 * 0.0625 * 0.00001667)
    std = price_usage(distributed_usage(), prices)
    assert r.breakdown["stepfunctions"] < std.breakdown["stepfunctions"]


def test_arm64_lambda_uses_the_arm_price(prices: PriceTable) -> None:
    u = distributed_usage()
    u["config"]["lambda_architecture"] = "arm64"
    lines = {li.item: li for li in price_usage(u, prices).line_items}
    assert lines["Lambda GB-seconds (arm64)"].unit_usd == pytest.approx(0.0000133334)


def test_monolith_instances_from_ecs_placement(prices: PriceTable) -> None:
    u = monolith_usage()
    params = ModelParams(fleet_streams=100, stream_lifetime_hours=None)
    r = price_usage(u, prices, params, capacity=capacity())
    # Each stream runs two tasks of 1,024 units: a c7i.large registers 2 x 1,024 units and
    # 4,096 x 7,985 / 8,192 MiB, so one stream's two tasks (3,072 MiB) fill one instance by CPU.
    assert r.instances(1) == 1 and r.instances(100) == 100
    assert r.instances_per_stream == pytest.approx(100 / 100)
    assert r.breakdown["ec2"] == pytest.approx(1 * 0.08925)
    assert r.breakdown["ebs"] == pytest.approx(1 * 30 * 0.08 / 730)
    # 0.21 CPU-s per stream-second measured against 2 reserved vCPUs per stream.
    assert r.reserved_cpu_utilisation == pytest.approx(0.21 / 2)
    lines = {li.item: li for li in r.line_items}
    assert lines["SQS requests"].quantity == 7
    assert r.breakdown["stepfunctions"] == 0
    placement = r.to_json()["placement"]
    assert placement["instances"] == {"1": 1, "100": 100, "1000": 1000}
    assert [(t["cpu_units"], t["memory_mb"]) for t in placement["tasks"]] == [(1024, 1536)] * 2


def test_per_stream_work_is_spread_over_the_stream_lifetime(prices: PriceTable) -> None:
    """The orchestrator's invoke, the job messages, the source HEADs, status and alert items are
    made once per stream: priced per stream over its lifetime, not per stream-second."""
    u = monolith_usage(60.0)
    u["counters"].update(
        {
            "lambda_seconds@lambdas.orchestrator.handler.handler@256": 0.2,
            "lambda_invocations@lambdas.orchestrator.handler.handler@256": 1,
        }
    )
    u["requests"]["s3"]["HeadObject"] = 2
    day = price_usage(u, prices, ModelParams(stream_lifetime_hours=24.0), capacity=capacity())
    run = price_usage(u, prices, ModelParams(stream_lifetime_hours=None), capacity=capacity())
    lines_day = {li.item: li for li in day.line_items}
    lines_run = {li.item: li for li in run.line_items}
    f = 60 / 86400  # this 60 s run's part of a 24 h stream
    # SQS: SendMessage 2 and DeleteMessage 2 per stream, ReceiveMessage 3 as metered.
    assert lines_run["SQS requests"].quantity == 7
    assert lines_day["SQS requests"].quantity == pytest.approx(3 + 4 * f)
    # S3: GetObject 2 as metered (source blocks, by bytes); HeadObject 2 per stream.
    assert lines_day["S3 GET and other requests"].quantity == pytest.approx(2 + 2 * f)
    # DynamoDB: 5 PutItem (status and alert items) per stream; Query 1 per stream.
    assert lines_day["DynamoDB write request units"].quantity == pytest.approx(5 * f)
    assert lines_day["SNS requests"].quantity == pytest.approx(3 * f)
    # The orchestrator: one request and 0.2 s at 256 MB (256/1769 of a vCPU) per stream.
    assert lines_day["Lambda requests"].quantity == pytest.approx(f)
    gb_s = 0.2 / (256 / 1769) * 0.25
    assert lines_run["Lambda GB-seconds (x86_64)"].quantity == pytest.approx(gb_s)
    assert lines_day["Lambda GB-seconds (x86_64)"].quantity == pytest.approx(gb_s * f)
    # Instances are per stream-second either way.
    assert day.breakdown["ec2"] == pytest.approx(run.breakdown["ec2"])
    # A 48 h run of a 24 h stream is charged the per-stream work once (the run is the stream).
    long = {**u, "stream_seconds": 48 * 3600.0}
    lines_long = {li.item: li for li in price_usage(long, prices, capacity=capacity()).line_items}
    assert lines_long["SQS requests"].quantity == pytest.approx(3 + 4)
    with pytest.raises(ConfigError, match="stream_lifetime_hours"):
        ModelParams(stream_lifetime_hours=0)


def test_right_sized_tasks_pack_first_fit_decreasing(prices: PriceTable) -> None:
    cap = capacity(((512, 640), (256, 384)))
    # 100 streams: 100 shard0 tasks, 4 to an instance (2,048 / 512 units; 3,992 / 640 = 6 by
    # memory) = 25 instances; 100 shard1 tasks, 8 to an instance (2,048 / 256; 3,992 / 384 = 10)
    # = 13 instances, the last holding 4.
    assert cap.instances(100) == 25 + 13
    # 1 stream: both tasks (768 units, 1,024 MiB) share one instance.
    assert cap.instances(1) == 1
    # 3 streams: 3 x 512 + 2 x 256 = 2,048 units on the first, one shard1 task on a second.
    assert cap.instances(3) == 2
    # Whole streams per instance (768 units, 1,024 MiB each: 2 by CPU) would need 50 for 100
    # streams; first-fit decreasing's 38 is the better packing.
    # Target capacity 80%: managed scaling keeps 100 / 80 as many instances.
    assert capacity(((512, 640), (256, 384)), target=80).instances(100) == math.ceil(38 / 0.8)
    r = price_usage(monolith_usage(), prices, ModelParams(fleet_streams=100), capacity=cap)
    assert r.breakdown["ec2"] == pytest.approx(38 / 100 * 0.08925)
    assert r.reserved_cpu_utilisation == pytest.approx(0.21 / ((512 + 256) / 1024))
    # 100 streams' 21 CPU-s per second on 38 instances of 2 vCPUs.
    assert r.instance_cpu_utilisation == pytest.approx(100 * 0.21 / (38 * 2))
    # Memory can bind before CPU: 2,000 MiB tasks fit one to an instance (3,992 MiB).
    assert capacity(((256, 2000),)).instances(10) == 10


def test_a_task_larger_than_the_instance_is_rejected() -> None:
    with pytest.raises(ConfigError, match="registers"):
        capacity(((4096, 1024),))
    with pytest.raises(ConfigError, match="registers"):
        capacity(((1024, 4000),))


def test_lambda_is_billed_at_its_memory_cpu_share(prices: PriceTable) -> None:
    u = distributed_usage()
    u["counters"].update(
        {
            "lambda_seconds@lambdas.distributed.convert.handler@2048": 10.0,
            "lambda_invocations@lambdas.distributed.convert.handler@2048": 10,
            "lambda_seconds@lambdas.distributed.detect.handler@1024": 6.0,
            "lambda_invocations@lambdas.distributed.detect.handler@1024": 60,
            "lambda_seconds@lambdas.distributed.aggregate.handler@256": 1.0,
            "lambda_invocations@lambdas.distributed.aggregate.handler@256": 10,
        }
    )
    params = ModelParams(lambda_environment_lifetime_hours=2.0)
    init = {"lambdas.distributed.convert.handler": 1.5}
    r = price_usage(u, prices, params, lambda_init_seconds=init)
    lines = {li.item: li for li in r.line_items}
    # 2,048 MB has a whole vCPU (no slow-down); 1,024 MB 1024/1769 of one; 256 MB 256/1769.
    convert_s, detect_s, aggregate_s = 10.0, 6.0 * 1769 / 1024, 1.0 * 1769 / 256
    gb_s = convert_s * 2.0 + detect_s * 1.0 + aggregate_s * 0.25
    assert lines["Lambda GB-seconds (x86_64)"].quantity == pytest.approx(gb_s)
    assert lines["Lambda GB-seconds (x86_64)"].usd == pytest.approx(gb_s * 0.0000166667)
    # INIT: concurrency 10 s / 10 s = 1 environment, re-created every 7,200 s: 10 / 7,200 cold
    # starts in the run, each 1.5 s at 2 GB.
    assert lines["Lambda INIT GB-seconds (x86_64)"].quantity == pytest.approx(10 / 7200 * 1.5 * 2)
    rows = {f["handler"]: f for f in r.lambda_functions}
    assert rows["lambdas.distributed.detect.handler"]["billed_seconds"] == pytest.approx(detect_s)
    assert rows["lambdas.distributed.detect.handler"]["invocations"] == 60
    # Concurrency for the quota marker: billed seconds per stream-second.
    assert r.rates["lambda_concurrency"] == pytest.approx(
        (convert_s + detect_s + aggregate_s) / 10.0
    )


def test_xray_traces_per_traced_execution(prices: PriceTable) -> None:
    u = distributed_usage()
    u["counters"]["sfn_executions"] = 3
    tracing = {"state_machine": True, "lambda_handlers": ["lambdas.distributed.detect.handler"]}
    lines = {li.item: li for li in price_usage(u, prices, tracing=tracing).line_items}
    assert lines["X-Ray traces recorded"].quantity == 3
    assert lines["X-Ray traces recorded"].usd == pytest.approx(3 * 5.0 / 1e6)
    untraced = {li.item for li in price_usage(u, prices).line_items}
    assert "X-Ray traces recorded" not in untraced


def test_bad_usage_is_rejected(prices: PriceTable) -> None:
    with pytest.raises(ConfigError, match="stream_seconds"):
        price_usage({"architecture": "monolith", "stream_seconds": 0}, prices)
    with pytest.raises(ConfigError, match="task sizes"):
        price_usage(monolith_usage(), prices)
    u = monolith_usage()
    u["config"]["instance_type"] = "m7i.large"
    with pytest.raises(ConfigError, match=r"template deploys c7i\.large"):
        price_usage(u, prices, capacity=capacity())
    with pytest.raises(ConfigError):
        ModelParams(fleet_streams=0)


def test_merge_adds_sources(prices: PriceTable) -> None:
    a, b = distributed_usage(10.0), distributed_usage(5.0)
    merged = merge_usage([a, b])
    assert merged["stream_seconds"] == 15.0
    assert merged["requests"]["s3"]["PutObject"] == (
        a["requests"]["s3"]["PutObject"] + b["requests"]["s3"]["PutObject"]
    )
    assert merged["counters"]["state_transitions"] == (
        a["counters"]["state_transitions"] + b["counters"]["state_transitions"]
    )
    total = price_usage(a, prices).usd_run + price_usage(b, prices).usd_run
    assert price_usage(merged, prices).usd_run == pytest.approx(total)


def test_stream_points_are_log_spaced_1_to_10000() -> None:
    pts = stream_points()
    assert pts[0] == 1 and pts[-1] == 10_000
    assert pts == sorted(set(pts))
    assert [p for p in pts if p in (1, 10, 100, 1000, 10_000)] == [1, 10, 100, 1000, 10_000]


def test_projection_places_whole_instances(prices: PriceTable) -> None:
    cap = capacity(((512, 640), (256, 384)))
    m = price_usage(monolith_usage(), prices, capacity=cap)
    d = price_usage(distributed_usage(), prices)
    proj = project({"distributed": d, "monolith": m}, prices)
    pd, pm = proj["architectures"]["distributed"], proj["architectures"]["monolith"]
    assert proj["free_tiers"] == "ignored"
    for n, usd in zip(proj["streams"], pd["usd_per_hour"], strict=True):
        assert usd == pytest.approx(n * d.usd_per_stream_hour)
    # shard0: 4 tasks to an instance, shard1: 8 (see the packing test); shard1 tasks first fill
    # the spare units of the last, partly filled shard0 instance.
    for n, k in zip(proj["streams"], pm["instances"], strict=True):
        partial = n % 4
        spare = (2048 - 512 * partial) // 256 if partial else 0
        assert k == math.ceil(n / 4) + math.ceil(max(0, n - spare) / 8), n
    # One stream pays a whole instance.
    assert pm["usd_per_stream_hour"][0] == pytest.approx(
        m.fixed_per_hour() + 0.08925 + 30 * 0.08 / 730
    )
    usd, k = hourly_cost(m, 7, prices)
    # 7 streams: 1 instance of 4 shard0 + 1 of 3 shard0 and 2 shard1 (3x512 + 2x256) + 5 shard1.
    assert k == 3
    assert usd == pytest.approx(7 * m.fixed_per_hour() + 3 * (0.08925 + 30 * 0.08 / 730))


def test_quota_markers(prices: PriceTable) -> None:
    d = price_usage(distributed_usage(), prices)
    marks = {mk["quota"]: mk for mk in quota_markers(d, prices)}
    st = marks["stepfunctions_state_transitions_per_second"]
    rate = distributed_usage()["counters"]["state_transitions"] / 10.0
    assert st["per_stream"] == pytest.approx(rate)
    assert st["streams_at_limit"] == pytest.approx(5000 / rate)
    assert st["hit"] is True
    put = marks["s3_put_per_second_per_prefix"]
    assert put["streams_at_limit"] == pytest.approx(
        3500 / (distributed_usage()["requests"]["s3"]["PutObject"] / 10.0)
    )
    assert "lambda_concurrent_executions" in marks
    m = price_usage(monolith_usage(), prices, capacity=capacity())
    mm = {mk["quota"]: mk for mk in quota_markers(m, prices)}
    # 5 default vCPUs hold two 2-vCPU instances, one stream each at 2 x 1,024 units.
    assert mm["ec2_on_demand_standard_vcpus"]["streams_at_limit"] == 2
    small = price_usage(monolith_usage(), prices, capacity=capacity(((512, 640), (256, 384))))
    small_marks = {mk["quota"]: mk for mk in quota_markers(small, prices)}
    # Two instances: 5 streams fit (4 shard0; 1 shard0 + 5 shard1 in 512 + 5 x 256 units),
    # 6 do not (4; 2 shard0 + 4 shard1; 2 shard1 left over).
    assert small_marks["ec2_on_demand_standard_vcpus"]["streams_at_limit"] == 5
    assert mm["sqs_standard_requests_per_second"]["streams_at_limit"] is None
    assert mm["sqs_standard_requests_per_second"]["hit"] is False
    assert "stepfunctions_state_transitions_per_second" not in mm


def test_placement_reads_the_task_sizes_the_stack_synthesizes(prices: PriceTable) -> None:
    """The stack and the model agree: per-shard sizes in the context reach the template, and
    the placement uses exactly the template's sizes, instance type and target capacity."""
    from vqa import deployment

    sizes = [{"cpu": 384, "memory_mb": 448}, {"cpu": 128, "memory_mb": 320}]
    template = deployment.synth(deployment.MONOLITH_STACK, {"shard_sizes": sizes})
    found: dict[str, tuple[int, int]] = {}
    for r in template["Resources"].values():
        if r["Type"] != "AWS::ECS::TaskDefinition":
            continue
        (c,) = r["Properties"]["ContainerDefinitions"]
        env = {e["Name"]: e["Value"] for e in c["Environment"]}
        found[env["VQA_SHARD"]] = (c["Cpu"], c["MemoryReservation"])
    assert found == {"shard0": (384, 448), "shard1": (128, 320)}
    (lt,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::EC2::LaunchTemplate"]
    instance_type = lt["Properties"]["LaunchTemplateData"]["InstanceType"]

    cap = deployment.capacity_from_template(template, prices.instances)
    assert {t.shard: (t.cpu_units, t.memory_mb) for t in cap.tasks} == found
    assert cap.instance_type == instance_type
    assert cap.target_capacity_percent == 100
    placement = cap.placement()
    assert [(t["cpu_units"], t["memory_mb"]) for t in placement["tasks"]] == [
        (384, 448),
        (128, 320),
    ]
    # 2,048 units / (384 + 128) per stream = 4 whole streams an instance by CPU; memory
    # (4 x 768 MiB) fits: 100 streams on 25 instances. (First-fit decreasing would put 5 shard0
    # tasks and 1 shard1 on each of 20 instances and need 7 more for 80 shard1 tasks, 12 to an
    # instance by memory: 27.)
    assert placement["instances"]["100"] == 25


def test_shard_sizes_are_validated() -> None:
    from stacks.config import VqaConfig

    with pytest.raises(ValueError, match="2 shards"):
        VqaConfig.from_context({"shard_sizes": [{"cpu": 256, "memory_mb": 512}]})
    with pytest.raises(ValueError, match="cpu 1 units"):
        VqaConfig.from_context(
            {"shard_sizes": [{"cpu": 1, "memory_mb": 512}, {"cpu": 256, "memory_mb": 512}]}
        )
    with pytest.raises(ValueError, match="integer"):
        VqaConfig.from_context(
            {"shard_sizes": [{"cpu": 0.5, "memory_mb": 512}, {"cpu": 256, "memory_mb": 512}]}
        )
    with pytest.raises(ValueError, match="memory"):
        VqaConfig.from_context(
            {"shard_sizes": [{"cpu": 256, "memory_mb": 4}, {"cpu": 256, "memory_mb": 512}]}
        )
    cfg = VqaConfig.from_context(
        {"shard_sizes": [{"cpu": 256, "memory_mb": 512}, {"cpu": 128, "memory_mb": 384}]}
    )
    assert cfg.task_size(1) == (128, 384)
    assert VqaConfig().task_size(0) == (VqaConfig().worker_cpu, VqaConfig().worker_memory_mb)


def test_duty_cycle_sweep_and_break_even(prices: PriceTable) -> None:
    from vqa.sweeps import duty_cycle

    d = price_usage(distributed_usage(), prices)
    m = price_usage(monolith_usage(), prices, capacity=capacity())
    sweep = duty_cycle(d, m, prices, ModelParams(), minutes=(10, 60), fleets=(1, 100))
    rows = {(r["streams"], r["minutes_per_hour"]): r for r in sweep["rows"]}
    instance_hour = 0.08925 + 30 * 0.08 / 730
    # One stream, 10 active minutes: distributed pays 10/60 of a stream-hour; the monolith its
    # non-instance costs for 10/60 and one instance for 10 + 15 (scale-in) + 3 (boot) minutes.
    one = rows[(1, 10)]
    assert one["distributed_usd_per_hour"] == pytest.approx(d.usd_per_stream_hour * 10 / 60)
    assert one["monolith_usd_per_hour"] == pytest.approx(
        m.fixed_per_hour() * 10 / 60 + 1 * (28 / 60) * instance_hour
    )
    # 100 streams 24/7: 100 instances (one stream's two 1,024-unit tasks fill one) all hour.
    full = rows[(100, 60)]
    assert full["monolith_instances"] == 100
    assert full["monolith_usd_per_hour"] == pytest.approx(
        m.fixed_per_hour() * 100 + 100 * instance_hour
    )
    # Break-even for one stream: d x t < f x t + (t + 18) x I (t in hours of activity, I the
    # instance-hour) -> t < 18 I / (d - f - I) minutes, on the sweep's 0.1-minute grid.
    f = m.fixed_per_hour()
    assert d.usd_per_stream_hour > f + instance_hour  # the stated inputs put it below an hour
    limit = 18 * instance_hour / (d.usd_per_stream_hour - f - instance_hour)
    assert sweep["break_even_minutes"]["1"] == pytest.approx(math.floor(limit * 10) / 10)


def test_cheapest_instance_type_matches_the_tasks_cpu_to_memory(prices: PriceTable) -> None:
    from vqa.cost import cheapest_instance_type

    # Per stream 256 units and 704 MiB, 100 streams. m7i.large (2,048 units, 8,192 - 207 MiB):
    # 8 streams an instance by CPU -> 13 x $0.1008. c7i.xlarge (4,096 units, 7,985 MiB): 15
    # shard0 tasks and 1 shard1 an instance, then 20 shard1 (by memory) -> 7 + 2 = 9 x $0.1785.
    # c7i.large (3,889 MiB): 7 shard0 + 1 shard1, then 20 shard1 -> 15 + 4 = 19 x $0.08925.
    # (m6i.large, another generation, is not a candidate.)
    cap = capacity(((224, 512), (32, 192)))
    ebs = 30 * 0.08 / 730
    assert 13 * (0.1008 + ebs) < 9 * (0.1785 + ebs) < 19 * (0.08925 + ebs)
    # m7g.large ($0.0816) would be cheaper still, but it is arm64: the measured x86 CPU time
    # does not carry over.
    assert cheapest_instance_type(cap, prices) == "m7i.large"


def test_small_right_sized_tasks_still_synthesize() -> None:
    """Tiny tasks let many streams onto the instances; the backlog scaling stays within
    Application Auto Scaling's 40 steps and still reaches the most tasks that fit."""
    from vqa import deployment

    sizes = [{"cpu": 32, "memory_mb": 64}, {"cpu": 32, "memory_mb": 64}]
    template = deployment.synth(deployment.MONOLITH_STACK, {"shard_sizes": sizes})
    policies = [
        r["Properties"]["StepScalingPolicyConfiguration"]["StepAdjustments"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::ApplicationAutoScaling::ScalingPolicy"
        and "StepScalingPolicyConfiguration" in r["Properties"]
    ]
    targets = [
        r["Properties"]["MaxCapacity"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget"
    ]
    assert policies and all(len(steps) <= 40 for steps in policies)
    assert max(targets) > 39  # the case that needs spaced steps
    # The top step scales to the most tasks that fit (CDK splits up and down steps into two
    # policies).
    assert max(s["ScalingAdjustment"] for steps in policies for s in steps) == max(targets)


def test_detector_and_segment_sweeps_scale_the_measured_parts() -> None:
    """Modelled sweeps: each detector's invocations, states and state objects scale with the
    number of detectors; per-segment counts with segments per second; media work stays."""
    from vqa.sweeps import distributed_with_detectors, with_segment_seconds

    u = distributed_usage(10.0, fps=25)
    u["counters"].update(
        {
            "lambda_invocations@lambdas.distributed.detect.handler@1024": 60,
            "lambda_seconds@lambdas.distributed.detect.handler@1024": 4.8,
            "lambda_invocations@lambdas.distributed.convert.handler@2048": 10,
            "lambda_seconds@lambdas.distributed.convert.handler@2048": 3.5,
        }
    )
    two = distributed_with_detectors(u, 2, 6)
    c = two["counters"]
    # 60 detector calls over 10 segments, 6 detectors: 2 of 6 keep 20 calls and 1.6 s.
    assert c["lambda_invocations@lambdas.distributed.detect.handler@1024"] == pytest.approx(20)
    assert c["lambda_seconds@lambdas.distributed.detect.handler@1024"] == pytest.approx(1.6)
    assert c["lambda_invocations@lambdas.distributed.convert.handler@2048"] == 10
    assert c["lambda_invocations"] == pytest.approx(80 - 40)
    # One state entered and one state object written per detector call.
    assert c["state_transitions"] == pytest.approx(14 * 10 + 4 - 40)
    assert two["requests"]["s3"]["PutObject"] == pytest.approx(250 + 10 + 60 - 40)
    # Reads: all but the converter's (one HEAD per segment) are the detectors'.
    gets = 1 + 3 * 250 + 3 * 10 + 60
    assert two["requests"]["s3"]["GetObject"] == pytest.approx(gets - (gets - 10) * 4 / 6)
    assert distributed_with_detectors(u, 6, 6)["counters"] == u["counters"]

    seg = with_segment_seconds(u, 2.0)
    c = seg["counters"]
    assert seg["config"]["segment_seconds"] == 2.0
    # Half the segments: half the per-segment calls and states, the same media seconds.
    assert c["lambda_invocations@lambdas.distributed.detect.handler@1024"] == pytest.approx(30)
    assert c["lambda_seconds@lambdas.distributed.detect.handler@1024"] == pytest.approx(4.8)
    assert c["lambda_invocations@lambdas.distributed.convert.handler@2048"] == pytest.approx(5)
    assert c["state_transitions"] == pytest.approx((14 * 10 + 4) / 2)
    # Per-frame objects stay (250), the 60 state objects halve, HEADs halve.
    assert seg["requests"]["s3"]["PutObject"] == pytest.approx(250 + 10 + 60 - 30)
    assert seg["requests"]["s3"]["HeadObject"] == pytest.approx(5)
    mono = with_segment_seconds(monolith_usage(), 2.0)
    # The monolith: half the checkpoints, the same worker CPU.
    assert mono["counters"]["worker_cpu_seconds"] == pytest.approx(0.21 * 10)


def test_standard_start_rate_is_one_execution_per_chunk_over_the_lifetime(
    prices: PriceTable,
) -> None:
    """A 60 s clip starts one execution; a day-long stream one per 200 one-second segments."""
    u = distributed_usage(60.0)
    u["config"].update({"segments_per_execution": 200, "segment_seconds": 1.0})
    day = price_usage(u, prices, ModelParams(stream_lifetime_hours=24.0))
    assert day.rates["standard_start_execution"] == pytest.approx(432 / 86400)  # 86,400 / 200
    run = price_usage(u, prices, ModelParams(stream_lifetime_hours=None))
    assert run.rates["standard_start_execution"] == pytest.approx(1 / 60)
    # 300 starts/s (us-east-1's refill) / (1 / 200 s) = 60,000 streams: no marker below 10,000.
    markers = {m["quota"]: m for m in quota_markers(day, prices)}
    start = markers["stepfunctions_standard_start_execution_per_second"]
    assert start["streams_at_limit"] == pytest.approx(300 / (432 / 86400))
    assert not start["hit"]
