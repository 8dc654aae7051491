"""The price table: complete, every figure sourced and dated, lookups and validation."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import pytest

from vqa.pricing import (
    REQUIRED_PRICES,
    REQUIRED_QUOTAS,
    PricingError,
    default_path,
    load_prices,
    parse_prices,
)


def _raw() -> dict[str, Any]:
    return json.loads(default_path().read_text())


def test_default_region_is_us_east_1_and_complete() -> None:
    table = load_prices()
    assert table.region == "us-east-1"
    for service, name in REQUIRED_PRICES:
        assert table.price(service, name).unit_usd >= 0
    for name in REQUIRED_QUOTAS:
        assert table.quota(name).name == name
    dt.date.fromisoformat(table.as_of)


def test_every_figure_has_an_aws_source_and_a_read_date() -> None:
    def walk(node: Any, path: str) -> int:
        n = 0
        if isinstance(node, dict):
            if "usd" in node or "value" in node:
                assert str(node.get("source", "")).startswith("https://"), path
                assert "aws.amazon.com" in node["source"], path
                dt.date.fromisoformat(node["as_of"])
                return 1
            for k, v in node.items():
                n += walk(v, f"{path}.{k}")
        return n

    counted = walk(_raw()["regions"], "regions")
    assert counted >= len(REQUIRED_PRICES) + len(REQUIRED_QUOTAS) + 1


def test_unit_prices_read_as_the_pages_state_them() -> None:
    t = load_prices()
    sfn = t.price("stepfunctions", "standard_transitions")
    assert (sfn.usd, sfn.per, sfn.unit) == (0.025, 1000, "state transitions")
    assert sfn.unit_usd == pytest.approx(0.025 / 1000)
    assert t.unit_usd("lambda", "requests") == pytest.approx(0.2 / 1e6)
    assert t.unit_usd("lambda", "duration_arm64") < t.unit_usd("lambda", "duration_x86_64")
    assert t.unit_usd("s3", "put_class") > t.unit_usd("s3", "get_class")
    express = t.price("stepfunctions", "express_duration")
    assert express.extra["billing_increment_mb"] == 64
    assert express.extra["billing_increment_ms"] == 100


def test_instance_types_cover_the_configured_one() -> None:
    from stacks import load_context

    t = load_prices()
    configured = load_context()["vqa"]["instance_type"]
    it = t.instance(configured)
    assert it.vcpus >= 1 and it.usd_per_hour > 0
    for name in ("c7i.large", "c7g.large", "c6i.large", "m7i.large"):
        assert t.instance(name).vcpus == 2
    with pytest.raises(PricingError, match=r"no EC2 price for 'x9.huge'"):
        t.instance("x9.huge")


def test_sqs_quota_is_stated_as_unlimited() -> None:
    q = load_prices().quota("sqs_standard_requests_per_second")
    assert q.value is None
    assert "unlimited" in q.note


def test_other_regions_can_be_added() -> None:
    raw = _raw()
    other = copy.deepcopy(raw["regions"]["us-east-1"])
    other["prices"]["lambda"]["requests"]["usd"] = 0.25
    raw["regions"]["eu-west-1"] = other
    t = parse_prices(raw, region="eu-west-1")
    assert t.region == "eu-west-1"
    assert t.unit_usd("lambda", "requests") == pytest.approx(0.25 / 1e6)
    with pytest.raises(PricingError, match="no prices for region 'ap-south-2'"):
        parse_prices(raw, region="ap-south-2")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r["prices"]["s3"].pop("put_class"), "missing price s3.put_class"),
        (lambda r: r["prices"]["s3"]["get_class"].pop("source"), "'source'"),
        (lambda r: r["prices"]["s3"]["get_class"].update(as_of="last week"), "'as_of'"),
        (lambda r: r["prices"]["sqs"]["requests"].update(usd=-1), "'usd'"),
        (lambda r: r["prices"]["sns"]["requests"].update(per=0), "'per'"),
        (lambda r: r["quotas"].pop("lambda_concurrent_executions"), "missing quota"),
        (lambda r: r["prices"]["ec2"]["instances"]["c7i.large"].update(vcpus=0), "vcpus"),
        # The instance table sizes the stack's capacity check too: no silent defaults.
        (lambda r: r["prices"]["ec2"]["instances"]["c7i.large"].pop("memory_gib"), "memory_gib"),
        (
            lambda r: r["prices"]["ec2"]["instances"]["c7g.large"].update(architecture="arm"),
            "architecture",
        ),
    ],
)
def test_malformed_tables_are_rejected(mutate: Any, message: str) -> None:
    raw = _raw()
    mutate(raw["regions"]["us-east-1"])
    with pytest.raises(PricingError, match=message):
        parse_prices(raw)


def test_unreadable_file_is_a_pricing_error(tmp_path: Any) -> None:
    bad = tmp_path / "prices.json"
    bad.write_text("{not json")
    with pytest.raises(PricingError, match="cannot read the price table"):
        load_prices(path=bad)
