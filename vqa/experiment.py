"""The A/B experiment: the same sources through both architectures, metered, priced, reported.

``run_experiment`` runs each source through the distributed architecture (its configured
baseline plus the variants: Standard vs Express workflows, one intermediate object per frame vs
per segment) and through the monolith, locally emulated by default or against the deployed stacks
with ``aws=True``; prices the metered usage with :mod:`vqa.cost`; and writes the report with
:mod:`vqa.report`. The returned dict is ``report.json`` and ``vqa experiment --json``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vqa.cost import (
    SERVICES,
    CostResult,
    ModelParams,
    merge_usage,
    price_usage,
    project,
    quota_markers,
)
from vqa.errors import ConfigError
from vqa.pricing import PriceTable, load_prices
from vqa.report import headline, top_services, write_report

Runner = Callable[..., dict[str, Any]]

WORKFLOW_NAMES = {"STANDARD": "Standard", "EXPRESS": "Express"}
GRANULARITY_NAMES = {"frame": "per-frame objects", "segment": "per-segment objects"}
#: The distributed grid the variants cover: (workflow_type, granularity).
VARIANT_GRID = (
    ("STANDARD", "frame"),
    ("STANDARD", "segment"),
    ("EXPRESS", "frame"),
    ("EXPRESS", "segment"),
)

SAMPLE_CLIP = "sample.mp4"


@dataclass(frozen=True)
class Run:
    """One configuration to run every source through."""

    key: str
    architecture: str
    kwargs: Mapping[str, Any]


def variant_key(workflow_type: str, granularity: str) -> str:
    return f"distributed:{workflow_type.lower()}-{granularity}"


def variant_name(workflow_type: str, granularity: str) -> str:
    return f"distributed, {WORKFLOW_NAMES[workflow_type]}, {GRANULARITY_NAMES[granularity]}"


def default_runners() -> dict[str, Runner]:
    from vqa.local.distributed import run_local as run_distributed
    from vqa.local.monolith import run_local as run_monolith

    return {"distributed": run_distributed, "monolith": run_monolith}


def sample_sources(out_dir: Path) -> list[str]:
    """The default source: a generated sample clip with injected defects (made once, cached)."""
    from vqa.corpus import write_sample_clip

    clip = out_dir / SAMPLE_CLIP
    if not clip.exists() or clip.stat().st_size == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        partial = clip.with_name(f".{clip.stem}.partial{clip.suffix}")
        write_sample_clip(partial)
        os.replace(partial, clip)
    return [str(clip)]


def run_experiment(
    sources: Sequence[str],
    *,
    out_dir: Path | str,
    aws: bool = False,
    cost_explorer: Sequence[str] | None = None,
    region: str | None = None,
    progress: bool = True,
    variants: bool = True,
    runners: Mapping[str, Runner] | None = None,
    prices: PriceTable | None = None,
    params: ModelParams | None = None,
) -> dict[str, Any]:
    """Run the A/B over ``sources`` (a generated sample clip if empty); write the report into
    ``out_dir``; print the headline (stdout when ``progress``, else stderr, keeping stdout for
    ``--json``); return the report dict."""
    out = Path(out_dir)
    if cost_explorer is not None and not aws:
        raise ConfigError("--cost-explorer needs --aws")
    prices = prices or load_prices(region)
    params = params or ModelParams()
    srcs = list(sources) or sample_sources(out)

    extra: dict[str, Any] = {}
    if aws:
        from vqa.aws_experiment import run_aws

        aws_out = run_aws(srcs, region=region, progress=progress, cost_explorer=cost_explorer)
        outputs: dict[str, list[dict[str, Any]]] = aws_out["runs"]
        usages: dict[str, dict[str, Any]] = aws_out["usage"]
        names = {"distributed": "distributed (deployed)", "monolith": "monolith (deployed)"}
        extra = {k: v for k, v in aws_out.items() if k not in ("runs", "usage")}
    else:
        outputs, names = _run_local(srcs, runners or default_runners(), progress, variants)
        usages = {key: merge_usage([o["usage"] for o in outs]) for key, outs in outputs.items()}

    results = {key: price_usage(u, prices, params) for key, u in usages.items()}
    report = build_report(
        srcs, outputs, usages, results, names, prices, params, mode="aws" if aws else "local"
    )
    report.update(extra)
    if aws:
        _price_measured_capacity(report, results, prices)
    paths = write_report(report, out)
    report["files"] = {k: p.name for k, p in paths.items()}
    stream = sys.stdout if progress else sys.stderr
    print(f"vqa experiment: {headline(report)}", file=stream)
    print(f"report: {paths['md']}", file=stream)
    return report


def _run_local(
    sources: list[str], runners: Mapping[str, Runner], progress: bool, variants: bool
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    """Baseline distributed and monolith first, then the distributed variants of the grid the
    baseline is not (learned from the baseline's metered config)."""
    from tqdm import tqdm

    outputs: dict[str, list[dict[str, Any]]] = {}
    names: dict[str, str] = {"distributed": "distributed (baseline)", "monolith": "monolith"}
    plan = [Run("distributed", "distributed", {}), Run("monolith", "monolith", {})]
    total = len(sources) * (len(plan) + (len(VARIANT_GRID) - 1 if variants else 0))
    with tqdm(
        total=total, desc="experiment", unit="run", file=sys.stderr, disable=not progress
    ) as bar:

        def run_all(run: Run) -> None:
            for src in sources:
                bar.set_postfix_str(f"{run.key} {Path(src).name}")
                outputs.setdefault(run.key, []).append(
                    runners[run.architecture](src, progress=False, **run.kwargs)
                )
                bar.update()

        for run in plan:
            run_all(run)
        if variants:
            cfg = outputs["distributed"][0]["usage"].get("config") or {}
            base = (
                str(cfg.get("workflow_type", "STANDARD")).upper(),
                str(cfg.get("granularity", "frame")),
            )
            names["distributed"] = f"{variant_name(*base)} (baseline)"
            for wf, gran in VARIANT_GRID:
                if (wf, gran) == base:
                    continue
                key = variant_key(wf, gran)
                names[key] = variant_name(wf, gran)
                run_all(Run(key, "distributed", {"workflow_type": wf, "granularity": gran}))
    return outputs, names


def _defects_json(output: Mapping[str, Any]) -> str:
    return json.dumps(output.get("defects", []), sort_keys=True)


def build_report(
    sources: list[str],
    outputs: Mapping[str, list[dict[str, Any]]],
    usages: Mapping[str, dict[str, Any]],
    results: Mapping[str, CostResult],
    names: Mapping[str, str],
    prices: PriceTable,
    params: ModelParams,
    *,
    mode: str,
) -> dict[str, Any]:
    """The report dict (the ``experiment --json`` contract plus the detail the report shows)."""
    for needed in ("distributed", "monolith"):
        if needed not in results:
            raise ConfigError(f"experiment: no {needed} run")
    d, m = results["distributed"], results["monolith"]
    architectures = {
        x: {**results[x].to_json(), "usage": usages[x]} for x in ("distributed", "monolith")
    }
    reduction = 1 - m.usd_per_stream_hour / d.usd_per_stream_hour

    variants: list[dict[str, Any]] = []
    for key, r in results.items():
        cfg = dict(usages[key].get("config") or {})
        variants.append(
            {
                "key": key,
                "name": names.get(key, key),
                "architecture": "monolith" if key == "monolith" else "distributed",
                "baseline": key in ("distributed", "monolith"),
                "workflow_type": cfg.get("workflow_type") if key != "monolith" else None,
                "granularity": cfg.get("granularity") if key != "monolith" else None,
                "usd_per_stream_hour": r.usd_per_stream_hour,
                "breakdown": r.breakdown,
                "usage": usages[key],
            }
        )
    variants.sort(key=lambda v: (v["architecture"] == "monolith", not v["baseline"], v["key"]))

    per_source: list[dict[str, Any]] = []
    for i, src in enumerate(sources):
        ref = _defects_json(outputs["distributed"][i])
        per_source.append(
            {
                "source": src,
                "duration": float(outputs["monolith"][i].get("duration") or 0.0),
                "defects": {k: len(outs[i].get("defects", [])) for k, outs in outputs.items()},
                "agree": all(_defects_json(outs[i]) == ref for outs in outputs.values()),
            }
        )

    projected = {"distributed": d, "monolith": m}
    drivers = top_services(d.breakdown, 2)
    assumptions = [
        "Free tiers are ignored: every request, GB-second and instance-hour is priced.",
        "On-demand list prices of the region; no Savings Plans, Reserved Instances or Spot.",
        f"Monolith instances are packed to {params.target_utilization:.0%} of their vCPUs by"
        " measured worker CPU; the per-stream-hour headline shares instances between streams,"
        " the projection charges whole instances (ceil).",
        f"Each container instance has a {params.ebs_gb_per_instance:g} GB gp3 root volume;"
        f" a month is {params.hours_per_month:g} hours.",
        "Intermediate objects are stored for the bucket's lifecycle expiry (1 day unless the"
        " config says otherwise); S3 DELETE requests are free.",
        "SQS and SNS payloads are below the 64 KB request chunk; SNS deliveries to SQS/Lambda are"
        " free and other delivery types are not modelled.",
        "DynamoDB items are at most 1 KB (writes) and 4 KB (reads): one request unit per call.",
        "Express duration uses the first price tier and 64 MB of billed memory per execution.",
        "Per-stream rates for the quota markers come from the sources run: a short clip starts"
        " one execution per clip, a live stream one per segments_per_execution segments.",
        "Not priced: data transfer within the region (free), ECS on EC2 (no charge), ECR image"
        " storage, KMS requests for AWS-managed keys, CloudWatch metrics and alarms, log storage.",
    ]
    for r in results.values():
        assumptions += [a for a in r.assumptions if a not in assumptions]
    report: dict[str, Any] = {
        "architectures": architectures,
        "reduction": reduction,
        "headline": "",
        "mode": mode,
        "variants": variants,
        "projection": project(projected, prices, params=params),
        "quotas": {x: quota_markers(r, prices) for x, r in projected.items()},
        "sources": per_source,
        "prices": prices.summary(),
        "price_table": prices.to_json(),
        "targets": {
            "monolith_at_most_10_percent": m.usd_per_stream_hour <= 0.10 * d.usd_per_stream_hour,
            "distributed_largest_costs": [SERVICES[s] for s in drivers],
            "transitions_and_s3_lead": set(drivers) == {"stepfunctions", "s3"},
        },
        "model": {
            "target_utilization": params.target_utilization,
            "ebs_gb_per_instance": params.ebs_gb_per_instance,
            "hours_per_month": params.hours_per_month,
        },
        "assumptions": assumptions,
    }
    report["headline"] = headline(report)
    return report


def _price_measured_capacity(
    report: dict[str, Any], results: Mapping[str, CostResult], prices: PriceTable
) -> None:
    """--aws: what the Auto Scaling group's measured instance-hours cost (idle capacity
    included), next to the model's CPU-based figure, and the model's cost of the run itself to
    compare with Cost Explorer."""
    info = report.setdefault("aws", {})
    mono = results["monolith"]
    hours = float(info.get("asg_instance_hours") or 0.0)
    if mono.instance_type:
        info["asg_instance_type"] = mono.instance_type
        info["asg_usd"] = hours * prices.instance(mono.instance_type).usd_per_hour
    info["model_usd_run"] = {x: results[x].usd_run for x in ("distributed", "monolith")}
