"""The report: report.md shows exactly report.json's numbers; the charts are valid PNGs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.test_cost import capacity, distributed_usage, monolith_usage
from vqa.cost import SERVICES, ModelParams, price_usage
from vqa.experiment import build_report
from vqa.pricing import load_prices
from vqa.report import headline, qty, usd, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _output(usage: dict[str, Any], defects: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "source": "clip.mp4",
        "duration": usage["stream_seconds"],
        "defects": defects,
        "usage": usage,
    }


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    prices = load_prices()
    defects = [{"kind": "black", "start": 1.0, "end": 2.5}]
    outputs = {
        "distributed": [_output(distributed_usage(), defects)],
        "monolith": [_output(monolith_usage(), defects)],
        "distributed:express-frame": [_output(distributed_usage(workflow="EXPRESS"), defects)],
        "distributed:standard-segment": [_output(distributed_usage(granularity="segment"), [])],
    }
    results = {
        k: price_usage(v[0]["usage"], prices, capacity=capacity() if k == "monolith" else None)
        for k, v in outputs.items()
    }
    names = {
        "distributed": "distributed (baseline)",
        "monolith": "monolith",
        "distributed:express-frame": "distributed, Express",
        "distributed:standard-segment": "distributed, per-segment",
    }
    usages = {k: v[0]["usage"] for k, v in outputs.items()}
    report = build_report(
        ["clip.mp4"], outputs, usages, results, names, prices, ModelParams(), mode="local"
    )
    out = tmp_path_factory.mktemp("report")
    write_report(report, out)
    return report, out


def _table(md: str, heading: str) -> list[list[str]]:
    """The rows of the first table after ``heading``."""
    section = md.split(heading, 1)[1]
    rows = [ln for ln in section.splitlines() if ln.startswith("|")]
    out: list[list[str]] = []
    started = False
    for ln in section.splitlines():
        if ln.startswith("|"):
            started = True
            out.append([c.strip() for c in ln.strip("|").split("|")])
        elif started:
            break
    assert rows
    return out[2:]


def _money(cell: str) -> float:
    return float(cell.strip("*").replace("$", "").replace(",", ""))


def test_files_written(report_dir: tuple[dict[str, Any], Path]) -> None:
    _, out = report_dir
    for name in ("report.md", "report.json", "cost_by_service.png", "cost_vs_streams.png"):
        assert (out / name).stat().st_size > 0, name


def test_charts_are_valid_pngs(report_dir: tuple[dict[str, Any], Path]) -> None:
    import matplotlib.image as mpimg

    _, out = report_dir
    for name in ("cost_by_service.png", "cost_vs_streams.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE
        img = mpimg.imread(out / name)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400
        # Something was drawn: not a single flat colour.
        assert img.std() > 0.05


def test_json_is_the_returned_report(report_dir: tuple[dict[str, Any], Path]) -> None:
    report, out = report_dir
    on_disk = json.loads((out / "report.json").read_text())
    for key in (
        "architectures",
        "reduction",
        "variants",
        "projection",
        "quotas",
        "sources",
        "prices",
    ):
        assert on_disk[key] == json.loads(json.dumps(report[key])), key
    assert on_disk["files"]["md"] == "report.md"


def test_markdown_numbers_equal_json(report_dir: tuple[dict[str, Any], Path]) -> None:
    _, out = report_dir
    md = (out / "report.md").read_text()
    js = json.loads((out / "report.json").read_text())
    arch = js["architectures"]
    rows = _table(md, "## Cost per stream-hour by service")
    by_label = {r[0]: r[1:] for r in rows}
    for key, label in SERVICES.items():
        for i, x in enumerate(("distributed", "monolith")):
            cell = by_label[label][i]
            assert cell == usd(arch[x]["breakdown"][key]), (label, x)
            assert _money(cell) == pytest.approx(arch[x]["breakdown"][key], rel=1e-3, abs=1e-4)
    for i, x in enumerate(("distributed", "monolith")):
        assert _money(by_label["**total**"][i]) == pytest.approx(
            arch[x]["usd_per_stream_hour"], rel=1e-3
        )
    assert f"{100 * js['reduction']:.1f}%" in md.split("\n## ", 1)[0]
    assert js["headline"] in md

    vrows = _table(md, "## Variants")
    assert len(vrows) == len(js["variants"])
    for row, v in zip(vrows, js["variants"], strict=True):
        assert row[0] == v["name"]
        assert row[2] == usd(v["usd_per_stream_hour"])

    prow = _table(md, "## Cost against concurrent streams")
    proj = js["projection"]
    assert [int(r[0].replace(",", "")) for r in prow] == proj["streams"]
    for r, dist, mono, inst in zip(
        prow,
        proj["architectures"]["distributed"]["usd_per_hour"],
        proj["architectures"]["monolith"]["usd_per_hour"],
        proj["architectures"]["monolith"]["instances"],
        strict=True,
    ):
        assert r[1] == usd(dist)
        assert r[3] == usd(mono)
        assert int(r[5].replace(",", "")) == inst

    qrows = _table(md, "## Default service quotas")
    marks = [(x, mk) for x, ms in js["quotas"].items() for mk in ms]
    assert len(qrows) == len(marks)
    for r, (x, mk) in zip(qrows, marks, strict=True):
        assert r[0] == x
        assert r[4] == qty(mk["streams_at_limit"])


def test_markdown_states_free_tiers_and_sources(report_dir: tuple[dict[str, Any], Path]) -> None:
    report, out = report_dir
    md = (out / "report.md").read_text()
    assert "Free tiers are ignored" in md
    assert "https://aws.amazon.com/step-functions/pricing/" in md
    assert report["prices"]["as_of"] in md
    assert re.search(r"\| distributed \| state transitions/s", md)


def test_headline_names_the_drivers(report_dir: tuple[dict[str, Any], Path]) -> None:
    report, _ = report_dir
    line = headline(report)
    assert "Step Functions" in line and "S3" in line
    assert usd(report["architectures"]["monolith"]["usd_per_stream_hour"]) in line


def test_formatting() -> None:
    assert usd(0.27) == "$0.2700"
    assert usd(0) == "$0"
    assert usd(1234.5) == "$1,234.50"
    assert usd(1.5e-6) == "$1.500e-06"
    assert qty(10000) == "10,000"
    assert qty(None) == "n/a"
    assert qty(24580.4) == "24,580"
    assert qty(158.73) == "158.7"
    assert qty(0.0005) == "5.000e-04"


def test_every_priced_service_has_a_chart_colour() -> None:
    from vqa.cost import SERVICES
    from vqa.report import SERVICE_COLORS

    assert set(SERVICES) <= set(SERVICE_COLORS)
