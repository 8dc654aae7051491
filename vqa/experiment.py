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
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vqa import deployment, sweeps
from vqa.cost import (
    SERVICES,
    CostResult,
    ModelParams,
    cheapest_instance_type,
    lambda_functions,
    merge_usage,
    per_shard,
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

#: The default sources: stream profiles a user recognises, (width, height, fps), each a
#: generated clip with black, freeze, silence, clipping and sync marks.
PROFILES: dict[str, tuple[int, int, int]] = {"720p25": (1280, 720, 25), "1080p30": (1920, 1080, 30)}
PROFILE_SECONDS = 60.0
#: Right-sizing: reserve measured CPU / CPU_HEADROOM and peak memory / MEMORY_HEADROOM, so a
#: stream with busier content than the measured one still has room (an operator's margin; the
#: memory reservation is a soft limit, the stack sets no hard `memory`).
CPU_HEADROOM = 0.8
MEMORY_HEADROOM = 0.8
ROOT = Path(__file__).resolve().parent.parent


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


def profile_sources(out_dir: Path, *, seconds: float = PROFILE_SECONDS) -> list[str]:
    """The default sources: one clip per :data:`PROFILES` entry, ``seconds`` long, with
    injected defects (made once into ``out_dir``, reused while present)."""
    from vqa.corpus import write_sample_clip

    out: list[str] = []
    for name, (width, height, fps) in PROFILES.items():
        clip = out_dir / f"profile-{name}-{seconds:g}s.mp4"
        truth = truth_path(clip)
        if not clip.exists() or clip.stat().st_size == 0 or not truth.exists():
            out_dir.mkdir(parents=True, exist_ok=True)
            partial = clip.with_name(f".{clip.stem}.partial{clip.suffix}")
            entry = write_sample_clip(partial, seconds=seconds, width=width, height=height, fps=fps)
            truth.write_text(json.dumps({**entry, "file": clip.name}, indent=2) + "\n")
            os.replace(partial, clip)
        out.append(str(clip))
    return out


def truth_path(source: Path) -> Path:
    """Where a source's own truth lies: ``NAME.truth.json`` beside it (one corpus entry)."""
    return source.with_name(f"{source.stem}.truth.json")


def truth_of(source: str) -> dict[str, Any] | None:
    """The truth entry of a local source: its ``NAME.truth.json``, or its entry in a corpus
    ``truth.json`` beside it; None when nobody wrote one (a user's stream)."""
    path = Path(source)
    own = truth_path(path)
    try:
        if own.is_file():
            entry: dict[str, Any] = json.loads(own.read_text())
            return entry
        corpus = path.with_name("truth.json")
        if corpus.is_file():
            for entry in json.loads(corpus.read_text()).get("clips", []):
                if entry.get("file") == path.name:
                    return dict(entry)
    except (OSError, ValueError):
        return None
    return None


def deployed_detectors(output: Mapping[str, Any]) -> list[str]:
    """The detectors a run's architecture deployed (its metered config)."""
    cfg = (output.get("usage") or {}).get("config") or {}
    if cfg.get("detectors"):
        return list(cfg["detectors"])
    return [d for shard in cfg.get("shards") or [] for d in shard]


def min_durations(detectors: Sequence[str]) -> dict[str, float]:
    """Each detector's ``min_duration`` as the stacks deploy it (its default, or cdk.json's
    ``vqa.thresholds``): shorter true defects are not for it to report."""
    from vqa.detectors import create
    from vqa.local.monolith import load_config

    thresholds = load_config().thresholds
    out = {}
    for name in detectors:
        config = create(name, **thresholds.get(name, {})).config
        if hasattr(config, "min_duration"):
            out[name] = float(config.min_duration)
    return out


def accuracy(source: str, output: Mapping[str, Any]) -> dict[str, int] | None:
    """Missed and false-alarm counts of one run against the source's truth
    (:func:`vqa.corpus.score`: the truth of the detectors the run deployed, at their minimum
    durations); None without a truth."""
    from vqa.corpus import score

    entry = truth_of(source)
    detectors = deployed_detectors(output)
    if entry is None or not detectors:  # no truth, or a run that did not say what it ran
        return None
    got = score(output.get("defects", []), entry, detectors, min_durations=min_durations(detectors))
    return {k: len(v) for k, v in got.items()}


def profile_of(source: str) -> str:
    """``1080p30``-style label of a source, from its first video stream (``?`` if none)."""
    import av

    try:
        with av.open(source) as container:
            v = container.streams.video[0]
            fps = float(v.average_rate or 0)
            return f"{v.height}p{fps:g}"
    except (av.FFmpegError, IndexError, OSError):
        return "?"


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
    profile_seconds: float = PROFILE_SECONDS,
) -> dict[str, Any]:
    """Run the A/B over ``sources`` (the :data:`PROFILES` clips if empty); write the report into
    ``out_dir``; print the headline (stdout when ``progress``, else stderr, keeping stdout for
    ``--json``); return the report dict."""
    out = Path(out_dir)
    if cost_explorer is not None and not aws:
        raise ConfigError("--cost-explorer needs --aws")
    prices = prices or load_prices(region)
    params = params or ModelParams()
    srcs = list(sources) or profile_sources(out, seconds=profile_seconds)

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

    facts = stack_facts(usages)
    results, sizing = price_all(usages, prices, params, names, facts)
    report = build_report(
        srcs, outputs, usages, results, names, prices, params, mode="aws" if aws else "local"
    )
    report["right_sizing"] = sizing
    report["per_source"] = price_sources(srcs, outputs, prices, params, facts)
    report["sweeps"] = run_sweeps(report, results, usages, prices, params, facts, sizing)
    report.update(extra)
    if aws:
        _price_measured_capacity(report, results, prices)
    paths = write_report(report, out)
    report["files"] = {k: p.name for k, p in paths.items()}
    stream = sys.stdout if progress else sys.stderr
    print(f"vqa experiment: {headline(report)}", file=stream)
    print(f"report: {paths['md']}", file=stream)
    return report


def run_sweeps(
    report: Mapping[str, Any],
    results: Mapping[str, CostResult],
    usages: Mapping[str, dict[str, Any]],
    prices: PriceTable,
    params: ModelParams,
    facts: Mapping[str, Any],
    sizing: Mapping[str, Any],
) -> dict[str, Any]:
    """The sensitivity sweeps (:mod:`vqa.sweeps`) on this experiment's measured usage."""
    d, m = results["distributed"], results["monolith"]
    out: dict[str, Any] = {"duty_cycle": sweeps.duty_cycle(d, m, prices, params)}
    graviton = None
    if m.capacity is not None:
        x86 = prices.instance(m.capacity.instance_type)
        arm = sorted(
            (
                i
                for i in prices.instances.values()
                if i.architecture == "arm64"
                and i.vcpus == x86.vcpus
                and i.memory_gib == x86.memory_gib
            ),
            key=lambda i: i.usd_per_hour,
        )
        if arm:
            # The sized stack's shard sizes on the Graviton type (the sized context may name an
            # x86 type of its own, which must not win).
            context = {**dict(sizing.get("context") or {}), "instance_type": arm[0].name}
            graviton = deployment.capacity_from_template(
                deployment.synth(deployment.MONOLITH_STACK, context), prices.instances
            )

    def price(x: str, usage: Mapping[str, Any], capacity: Any) -> CostResult:
        if x == "distributed":
            return price_usage(
                usage,
                prices,
                params,
                lambda_init_seconds=facts["lambda_init_seconds"],
                tracing=facts["tracing"],
            )
        cap = capacity or m.capacity
        assert cap is not None  # the monolith was placed
        # Priced on the placed stack's instance type (the sized stack's may differ from the run's).
        config = {**(usage.get("config") or {}), "instance_type": cap.instance_type}
        return price_usage(
            {**usage, "config": config},
            prices,
            params,
            capacity=cap,
            lambda_init_seconds=facts["lambda_init_seconds"],
        )

    out["cpu_architecture"] = sweeps.cpu_architectures(usages, price, graviton)
    out["variants"] = {
        "sentence": sweeps.variants_sentence(report["variants"], m.usd_per_stream_hour)
    }
    out["profiles"] = {"sentence": sweeps.profiles_sentence(report.get("per_source") or [])}
    out["detectors"] = sweeps.detector_count(usages, price)
    out["segment_seconds"] = sweeps.segment_length(usages, price)
    return out


def stack_facts(usages: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """What the model needs beyond the usage, measured or read once per experiment: each
    metered Lambda handler's INIT and the distributed template's X-Ray tracing."""
    handlers = {h for u in usages.values() for h, _ in lambda_functions(u.get("counters") or {})}
    return {
        "lambda_init_seconds": measure_lambda_init(sorted(handlers)),
        "tracing": deployment.traced(deployment.synth(deployment.DISTRIBUTED_STACK)),
    }


def price_sources(
    sources: list[str],
    outputs: Mapping[str, list[dict[str, Any]]],
    prices: PriceTable,
    params: ModelParams,
    facts: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """$/stream-hour of each source on its own (its profile), the monolith's tasks sized from
    that source's own measurements."""
    out: list[dict[str, Any]] = []
    for i, src in enumerate(sources):
        if not all("usage" in outputs[x][i] for x in ("distributed", "monolith")):
            return []  # --aws meters the run window, not each source
        usages = {x: outputs[x][i]["usage"] for x in ("distributed", "monolith")}
        results, sizing = price_all(usages, prices, params, {}, facts)
        d, m = results["distributed"], results["monolith"]
        out.append(
            {
                "source": src,
                "profile": profile_of(src),
                "stream_seconds": d.stream_seconds,
                "distributed": d.usd_per_stream_hour,
                "monolith": m.usd_per_stream_hour,
                "reduction": 1 - m.usd_per_stream_hour / d.usd_per_stream_hour,
                "drivers": {
                    x: [SERVICES[k] for k in top_services(r.breakdown, 2)]
                    for x, r in (("distributed", d), ("monolith", m))
                },
                "shard_sizes": sizing.get("shard_sizes"),
                "reserved_cpu_utilisation": m.reserved_cpu_utilisation,
                "instance_cpu_utilisation": m.instance_cpu_utilisation,
            }
        )
    return out


def price_all(
    usages: Mapping[str, dict[str, Any]],
    prices: PriceTable,
    params: ModelParams,
    names: dict[str, str],
    facts: Mapping[str, Any],
) -> tuple[dict[str, CostResult], dict[str, Any]]:
    """Price every run against what the synthesized stacks deploy.

    The distributed runs take X-Ray tracing from the ``VqaDistributed`` template; the monolith
    is placed twice: with the task sizes cdk.json deploys (``monolith:as-configured``) and, when
    the run metered per-shard CPU and memory, with each shard's task sized from them
    (``shard_sizes``): the headline ``monolith``, whose template the model reads back.
    """
    inits, tracing = facts["lambda_init_seconds"], facts["tracing"]
    results: dict[str, CostResult] = {}
    sizing: dict[str, Any] = {}
    for key, u in usages.items():
        if key != "monolith":
            results[key] = price_usage(
                u, prices, params, lambda_init_seconds=inits, tracing=tracing
            )
            continue
        configured = deployment.capacity_from_template(
            deployment.synth(deployment.MONOLITH_STACK), prices.instances
        )
        counters = u.get("counters") or {}
        stream_s = float(u.get("stream_seconds") or 0.0)
        cpu = {k: v / stream_s for k, v in per_shard(counters, "worker_cpu_seconds").items()}
        rss = per_shard(counters, "worker_peak_rss_mb")
        shards = [t.shard for t in configured.tasks]
        capacity = configured
        if stream_s > 0 and all(sh in cpu and sh in rss for sh in shards):
            sizes = deployment.right_size(
                cpu, rss, shards, cpu_headroom=CPU_HEADROOM, memory_headroom=MEMORY_HEADROOM
            )
            sizing = {
                "cpu_seconds_per_stream_second": cpu,
                "peak_rss_mb": rss,
                "cpu_headroom": CPU_HEADROOM,
                "memory_headroom": MEMORY_HEADROOM,
                "shard_sizes": sizes,
            }
            try:
                capacity, context = _sized_capacity(sizes, prices, params)
            except (ConfigError, RuntimeError) as exc:
                # The stack refused these sizes at synth: price what cdk.json deploys instead.
                sizing["error"] = str(exc).splitlines()[0]
            else:
                results["monolith:as-configured"] = price_usage(
                    u, prices, params, capacity=configured, lambda_init_seconds=inits
                )
                names["monolith:as-configured"] = "monolith, task sizes as in cdk.json"
                names["monolith"] = "monolith, tasks sized from the measured run"
                sizing["context"] = context
                sizing["deploy"] = "npx cdk deploy VqaMonolith -c vqa='" + json.dumps(context) + "'"
        if capacity is not configured:
            # The run's instance type is the configured one; the sized stack may use another.
            u = {
                **u,
                "config": {**(u.get("config") or {}), "instance_type": capacity.instance_type},
            }
        results["monolith"] = price_usage(
            u, prices, params, capacity=capacity, lambda_init_seconds=inits
        )
    return results, sizing


def _sized_capacity(
    sizes: list[dict[str, int]],
    prices: PriceTable,
    params: ModelParams,
) -> tuple[deployment.Capacity, dict[str, Any]]:
    """The monolith synthesized with ``sizes`` (and, if it packs them cheaper, another instance
    type of the same generation), read back from its template, and the context that made it."""
    context: dict[str, Any] = {"shard_sizes": sizes}
    capacity = deployment.capacity_from_template(
        deployment.synth(deployment.MONOLITH_STACK, context), prices.instances
    )
    best = cheapest_instance_type(capacity, prices, params)
    if best != capacity.instance_type:
        context["instance_type"] = best
        capacity = deployment.capacity_from_template(
            deployment.synth(deployment.MONOLITH_STACK, context), prices.instances
        )
    return capacity, context


def measure_lambda_init(handlers: Sequence[str]) -> dict[str, float]:
    """Seconds each handler's INIT takes in a fresh interpreter on a full core: importing the
    handler module and creating the S3 and DynamoDB clients every handler uses (the fastest
    of two runs, so the page cache is warm as on a Lambda host)."""
    out: dict[str, float] = {}
    for handler in handlers:
        module = handler.rpartition(".")[0]
        if not module.startswith("lambdas."):
            continue
        code = (
            "import time, importlib; t = time.perf_counter(); import boto3; "
            f"importlib.import_module({module!r}); "
            "boto3.client('s3'); boto3.client('dynamodb'); print(time.perf_counter() - t)"
        )
        env = {
            **os.environ,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "init",
            "AWS_SECRET_ACCESS_KEY": "init",
            "VQA_TABLE": "init",
            "VQA_SHARD_QUEUES": "{}",
        }
        times = []
        for _ in range(2):
            proc = subprocess.run(
                [sys.executable, "-c", code],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                raise ConfigError(f"measuring INIT of {handler}: {tail}")
            times.append(float(proc.stdout.strip().splitlines()[-1]))
        out[handler] = min(times)
    return out


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
        usage = usages.get(key) or usages[key.partition(":")[0]]
        cfg = dict(usage.get("config") or {})
        mono = key.startswith("monolith")
        variants.append(
            {
                "key": key,
                "name": names.get(key, key),
                "architecture": "monolith" if mono else "distributed",
                "baseline": key in ("distributed", "monolith"),
                "workflow_type": None if mono else cfg.get("workflow_type"),
                "granularity": None if mono else cfg.get("granularity"),
                "usd_per_stream_hour": r.usd_per_stream_hour,
                "breakdown": r.breakdown,
                **({"placement": r.capacity.placement()} if r.capacity else {}),
                **(
                    {"reserved_cpu_utilisation": r.reserved_cpu_utilisation}
                    if r.reserved_cpu_utilisation is not None
                    else {}
                ),
                "usage": usage,
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
                "accuracy": {x: accuracy(src, outputs[x][i]) for x in ("distributed", "monolith")},
            }
        )

    lifetime = (
        f"{params.stream_lifetime_hours:g} h (a 24/7 channel's monitoring restarts daily)"
        if params.stream_lifetime_hours is not None
        else "as long as it ran (an on-demand check)"
    )
    projected = {"distributed": d, "monolith": m}
    assumptions = [
        f"A stream lasts {lifetime}: the work done once per stream whatever its length (the"
        " orchestrator's or start function's invoke, each shard's job message, the monolith's"
        " source HEADs, the status and alert items and publishes: the clips carry the same"
        " defects at any length) is priced per stream and spread over that lifetime;"
        " everything else scales with stream-seconds. The workers' job start-up CPU is not"
        " separable from one run and stays in the measured CPU per stream-second (a 60 s run"
        " overstates it slightly: see benchmarks/bench_cost.py).",
        "Free tiers are ignored: every request, GB-second and instance-hour is priced.",
        "On-demand list prices of the region; no Savings Plans, Reserved Instances or Spot.",
        "Monolith instances come from placing each shard's task (its reserved CPU units and"
        " memory, read from the synthesized VqaMonolith template, one stream per task as the"
        " worker runs today) on the instance type's registered capacity (vCPUs x 1,024 units;"
        f" the installed memory x {deployment.EXAMPLE_REPORTED_MIB}/"
        f"{deployment.EXAMPLE_INSTALLED_MIB} the kernel reports in AWS's m4.large example, less"
        " the ECS_RESERVED_MEMORY the launch template's user data sets), the better of"
        " first-fit decreasing and whole streams per instance, scaled by the capacity provider's"
        f" target capacity. The per-stream-hour figure is the instances for {params.fleet_streams}"
        f" concurrent streams / {params.fleet_streams}; the projection places 1 to 10,000.",
        f"Right-sized tasks reserve each shard's measured CPU / {CPU_HEADROOM:g} (rounded up to"
        f" {deployment.CPU_STEP} units) and its worker's peak resident memory (VmHWM) /"
        f" {MEMORY_HEADROOM:g} (rounded up to {deployment.MEMORY_STEP} MiB), measured on the"
        " sources run: a different stream profile needs its own sizes. The sized stack uses the"
        " instance type of the same CPU architecture that places them cheapest (the measured"
        " CPU assumed to carry over between those types).",
        f"Lambda: a function gets min(1, memory / {params.lambda_mb_per_vcpu:g} MB) of a vCPU;"
        " handler durations were timed on a full host core (no cgroup v2 CPU quota here) and"
        " are divided by that share, all of the time taken as CPU-bound (an upper bound: S3 and"
        " DynamoDB round trips ran in process against moto, on CPU).",
        "Lambda INIT (billed since 1 August 2025) is measured in a fresh interpreter (handler"
        " module import + S3 and DynamoDB clients), scaled by the same CPU share, and billed once"
        " per execution environment per"
        f" {params.lambda_environment_lifetime_hours:g} h lifetime; environments = measured"
        " concurrency (billed seconds per stream-second) of each function.",
        f"The Lambda platform logs {params.lambda_platform_log_bytes:g} bytes per invocation"
        " (START, END, REPORT) on top of the handlers' metered log lines.",
        "X-Ray: a traced state machine records one trace per execution (its Lambda segments join"
        " it); trace retrieval and scans are not modelled.",
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
        "per_detector": sweeps.per_detector(usages["distributed"], prices, params),
        "prices": prices.summary(),
        "price_table": prices.to_json(),
        "drivers": {
            x: [SERVICES[s] for s in top_services(r.breakdown, 2)] for x, r in projected.items()
        },
        "model": {
            "fleet_streams": params.fleet_streams,
            "lambda_mb_per_vcpu": params.lambda_mb_per_vcpu,
            "lambda_environment_lifetime_hours": params.lambda_environment_lifetime_hours,
            "lambda_platform_log_bytes": params.lambda_platform_log_bytes,
            "ebs_gb_per_instance": params.ebs_gb_per_instance,
            "hours_per_month": params.hours_per_month,
            "stream_lifetime_hours": params.stream_lifetime_hours,
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
