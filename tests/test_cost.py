"""The cost model on hand-computed cases: metered counts drive the costs exactly."""

from __future__ import annotations

import math
from typing import Any

import pytest

from vqa.cost import (
    ModelParams,
    hourly_cost,
    instances_for,
    merge_usage,
    price_usage,
    project,
    quota_markers,
    stream_points,
)
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
    r = price_usage(u, prices)
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
    assert lines["CloudWatch Logs ingestion (GB)"].quantity == pytest.approx(
        c["log_bytes"] / 1024**3
    )
    # Standard workflows are billed by transition only: StartExecution is not a line.
    assert r.unpriced["stepfunctions"] == {"StartExecution": 1, "DescribeExecution": 5}
    assert r.unpriced["dynamodb"] == {"DescribeTable": 1}
    assert r.usd_run == pytest.approx(sum(li.usd for li in r.line_items))
    assert r.usd_per_stream_hour == pytest.approx(r.usd_run * 3600 / 10.0)


def test_doubling_a_count_doubles_its_cost(prices: PriceTable) -> None:
    u = distributed_usage()
    r1 = price_usage(u, prices)
    u["requests"]["s3"]["PutObject"] *= 2
    r2 = price_usage(u, prices)
    put = 0.005 / 1000
    assert r2.usd_run - r1.usd_run == pytest.approx(
        distributed_usage()["requests"]["s3"]["PutObject"] * put
    )


def test_distributed_drivers_are_transitions_and_s3(prices: PriceTable) -> None:
    r = price_usage(distributed_usage(), prices)
    top = sorted(r.breakdown, key=r.breakdown.__getitem__, reverse=True)[:2]
    assert set(top) == {"stepfunctions", "s3"}


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


def test_monolith_instances_from_cpu_seconds(prices: PriceTable) -> None:
    u = monolith_usage()
    r = price_usage(u, prices, ModelParams(target_utilization=0.7))
    # 0.21 CPU-s per stream-second on 2 vCPUs at 70%: 0.15 instances per stream.
    assert r.instances_per_stream == pytest.approx(0.21 / (2 * 0.7))
    assert r.breakdown["ec2"] == pytest.approx(0.15 * 0.08925)
    assert r.breakdown["ebs"] == pytest.approx(0.15 * 30 * 0.08 / 730)
    lines = {li.item: li for li in r.line_items}
    assert lines["SQS requests"].quantity == 7
    assert r.breakdown["stepfunctions"] == 0
    # Half the utilisation -> twice the instances.
    r2 = price_usage(u, prices, ModelParams(target_utilization=0.35))
    assert r2.breakdown["ec2"] == pytest.approx(2 * r.breakdown["ec2"])


def test_monolith_is_far_cheaper_on_realistic_usage(prices: PriceTable) -> None:
    d = price_usage(distributed_usage(), prices)
    m = price_usage(monolith_usage(), prices)
    assert m.usd_per_stream_hour <= 0.10 * d.usd_per_stream_hour


def test_bad_usage_is_rejected(prices: PriceTable) -> None:
    with pytest.raises(ConfigError, match="stream_seconds"):
        price_usage({"architecture": "monolith", "stream_seconds": 0}, prices)
    u = monolith_usage()
    del u["config"]["instance_type"]
    with pytest.raises(ConfigError, match="instance_type"):
        price_usage(u, prices)
    with pytest.raises(ConfigError):
        ModelParams(target_utilization=1.5)


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


def test_projection_steps_whole_instances(prices: PriceTable) -> None:
    m = price_usage(monolith_usage(), prices)
    d = price_usage(distributed_usage(), prices)
    proj = project({"distributed": d, "monolith": m}, prices)
    pd, pm = proj["architectures"]["distributed"], proj["architectures"]["monolith"]
    assert proj["free_tiers"] == "ignored"
    for n, usd in zip(proj["streams"], pd["usd_per_hour"], strict=True):
        assert usd == pytest.approx(n * d.usd_per_stream_hour)
    ips = m.instances_per_stream
    for n, k in zip(proj["streams"], pm["instances"], strict=True):
        assert k == max(1, math.ceil(n * ips - 1e-9))
    # One stream pays a whole instance; at scale it approaches the shared-instance figure.
    assert pm["usd_per_stream_hour"][0] > m.usd_per_stream_hour
    assert pm["usd_per_stream_hour"][-1] == pytest.approx(m.usd_per_stream_hour, rel=0.01)
    usd, k = hourly_cost(m, 7, prices)
    assert k == instances_for(7, ips) == 2
    assert usd == pytest.approx(7 * m.fixed_per_hour() + 2 * (0.08925 + 30 * 0.08 / 730))


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
    m = price_usage(monolith_usage(), prices)
    mm = {mk["quota"]: mk for mk in quota_markers(m, prices)}
    # 5 default vCPUs hold two 2-vCPU instances: 2 / 0.15 streams.
    assert mm["ec2_on_demand_standard_vcpus"]["streams_at_limit"] == pytest.approx(2 / 0.15)
    assert mm["sqs_standard_requests_per_second"]["streams_at_limit"] is None
    assert mm["sqs_standard_requests_per_second"]["hit"] is False
    assert "stepfunctions_state_transitions_per_second" not in mm
