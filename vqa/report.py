"""The experiment's report: ``report.json`` (the result itself), ``report.md`` rendered from the
same dict, and two PNG charts (matplotlib's Agg canvas, no display needed).

``report.md`` never computes a figure of its own: every number in it is a value of
``report.json`` formatted by :func:`usd` or :func:`qty`, so the two always agree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vqa.cost import SERVICES

CHART_BY_SERVICE = "cost_by_service.png"
CHART_VS_STREAMS = "cost_vs_streams.png"
CHART_SWEEPS = "sweeps.png"
COLORS = {"distributed": "#d62728", "monolith": "#1f77b4"}
SERVICE_COLORS = {
    "stepfunctions": "#e377c2",
    "lambda": "#ff7f0e",
    "s3": "#2ca02c",
    "sqs": "#9467bd",
    "sns": "#8c564b",
    "events": "#c49c94",
    "dynamodb": "#17becf",
    "logs": "#bcbd22",
    "xray": "#aec7e8",
    "ec2": "#1f77b4",
    "ebs": "#7f7f7f",
}


def usd(x: float | None) -> str:
    """USD with four significant digits (``$0.2700``, ``$1.234e-06`` for the tiny ones)."""
    if x is None:
        return "n/a"
    if x == 0:
        return "$0"
    if abs(x) >= 1e-4:
        return f"${x:,.4f}" if abs(x) < 1000 else f"${x:,.2f}"
    return f"${x:.3e}"


def qty(x: float | None) -> str:
    """A count or rate with four significant digits."""
    if x is None:
        return "n/a"
    if x == int(x) and abs(x) < 1e15:
        return f"{int(x):,}"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.4g}" if abs(x) >= 1e-3 else f"{x:.3e}"


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def write_report(result: dict[str, Any], out_dir: Path | str) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and the charts; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "report.json",
        "md": out / "report.md",
        "chart_by_service": out / CHART_BY_SERVICE,
        "chart_vs_streams": out / CHART_VS_STREAMS,
    }
    chart_cost_by_service(result, paths["chart_by_service"])
    chart_cost_vs_streams(result, paths["chart_vs_streams"])
    if result.get("sweeps"):
        paths["chart_sweeps"] = out / CHART_SWEEPS
        chart_sweeps(result, paths["chart_sweeps"])
    result = {**result, "files": {k: p.name for k, p in paths.items()}}
    paths["json"].write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    paths["md"].write_text(render_markdown(result))
    return paths


def headline(result: dict[str, Any]) -> str:
    """One line: both costs per stream-hour and the reduction, and the top cost drivers."""
    a = result["architectures"]
    d, m = a["distributed"], a["monolith"]
    drivers = ", ".join(SERVICES[s] for s in top_services(d["breakdown"], 2))
    return (
        f"monolith {usd(m['usd_per_stream_hour'])} vs distributed "
        f"{usd(d['usd_per_stream_hour'])} per stream-hour: {pct(result['reduction'])} lower"
        f" (distributed's largest costs: {drivers})"
    )


def top_services(breakdown: dict[str, float], n: int) -> list[str]:
    ranked = sorted(breakdown.items(), key=lambda kv: kv[1], reverse=True)
    return [s for s, v in ranked[:n] if v > 0]


def render_markdown(result: dict[str, Any]) -> str:
    a = result["architectures"]
    archs = list(a)
    lines: list[str] = []
    w = lines.append
    w("# VQA A/B cost experiment\n")
    w(f"**{headline(result)}**\n")
    w(
        f"- Reduction (1 - monolith / distributed): **{pct(result['reduction'])}** "
        f"(`reduction` = {result['reduction']:.4f})"
    )
    w(
        f"- Mode: {result.get('mode', 'local')}; prices: {result['prices']['region']}, read "
        f"{result['prices']['as_of']} (sources below); free tiers ignored."
    )
    total = sum(s.get("duration", 0.0) for s in result.get("sources", []))
    w(f"- Sources: {len(result.get('sources', []))}, {qty(total)} s of stream in total.\n")

    w("## Sources\n")
    w(
        "| source | seconds | defects (" + " / ".join(archs) + ") | architectures agree |"
        " missed (" + " / ".join(archs) + ") | false alarms (" + " / ".join(archs) + ") |"
    )
    w("|---|---:|---:|---|---:|---:|")
    for s in result.get("sources", []):
        counts = " / ".join(str(s["defects"].get(x, "-")) for x in archs)
        acc = s.get("accuracy") or {}
        missed, false = (
            " / ".join(str((acc.get(x) or {}).get(k, "-")) for x in archs)
            for k in ("missed", "false_alarms")
        )
        w(
            f"| `{s['source']}` | {qty(s['duration'])} | {counts} | "
            f"{'yes' if s.get('agree') else 'NO'} | {missed} | {false} |"
        )
    from vqa.corpus import DEFAULT_MATCH_SLACK, MATCH_SLACK

    w(
        "\nMissed and false alarms: against the source's truth (the generated clips' own, or a"
        " `NAME.truth.json` beside a source; `-` without one), for the detectors each"
        " architecture deployed; a found defect matches a true one of the same kind (and"
        f" loudness reason) overlapping it within {DEFAULT_MATCH_SLACK:g} s (loudness:"
        f" {MATCH_SLACK['loudness']:g} s, half the short-term window). Defects the truth leaves"
        " unjudged (levels the clip's recipe does not control) count as neither.\n"
    )

    per_source = result.get("per_source") or []
    if per_source:
        w("## Per stream profile\n")
        w(
            "Each source priced on its own (the monolith's tasks sized from that source's own"
            " measurements):\n"
        )
        w(
            "| source | profile | seconds | distributed USD/stream-hour | monolith USD/stream-hour"
            " | reduction | distributed's top costs | monolith's top costs |"
        )
        w("|---|---|---:|---:|---:|---:|---|---|")
        for ps in per_source:
            w(
                f"| `{Path(ps['source']).name}` | {ps['profile']} | {qty(ps['stream_seconds'])} |"
                f" {usd(ps['distributed'])} | {usd(ps['monolith'])} | {pct(ps['reduction'])} |"
                f" {', '.join(ps['drivers']['distributed'])} |"
                f" {', '.join(ps['drivers']['monolith'])} |"
            )
        w("")
    w("## How the figures scale with stream duration\n")
    lifetime = (result.get("model") or {}).get("stream_lifetime_hours")
    spread = (
        f"priced per stream and spread over a {lifetime:g} h stream lifetime"
        if lifetime
        else "priced per stream, each stream lasting as long as it ran"
    )
    w(
        "USD per stream-hour = the run's metered cost x 3600 / stream seconds, except the work"
        f" done once per stream, {spread} (see Assumptions): so a 60 s run and a 10-minute run"
        " give the same per-hour figures. Per frame or per segment (linear in duration): state"
        " transitions, Lambda invocations and GB-seconds of the per-segment functions, S3"
        " requests and bytes, worker CPU, log bytes. Once per stream: the orchestrator's or"
        " start function's invoke, each shard's job message, the source HEADs, status and alert"
        " items. Per concurrent stream: the monolith's instances (placement, below). A live"
        " stream of hours starts one Standard execution per `segments_per_execution`"
        " segments.\n"
    )

    w("## Cost per stream-hour by service\n")
    w(f"![cost by service]({CHART_BY_SERVICE})\n")
    w("| service | " + " | ".join(archs) + " |")
    w("|---|" + "---:|" * len(archs))
    for key, label in SERVICES.items():
        w(f"| {label} | " + " | ".join(usd(a[x]["breakdown"].get(key, 0.0)) for x in archs) + " |")
    w(
        "| **total** | "
        + " | ".join(f"**{usd(a[x]['usd_per_stream_hour'])}**" for x in archs)
        + " |\n"
    )

    for x in archs:
        w(f"### {x}: what was metered, per stream-hour\n")
        cfg = a[x].get("usage", {}).get("config", {})
        if cfg:
            w(
                "Configuration: "
                + ", ".join(
                    f"`{k}={v}`" for k, v in sorted(cfg.items()) if not isinstance(v, list | dict)
                )
                + "\n"
            )
        w("| item | quantity per stream-hour | unit | unit price | USD per stream-hour |")
        w("|---|---:|---|---:|---:|")
        for li in a[x].get("line_items", []):
            per_hour = li["quantity"] * 3600 / a[x]["stream_seconds"]
            w(
                f"| {li['item']} | {qty(per_hour)} | {li['unit']} | {usd(li['unit_usd'])} | "
                f"{usd(li['usd_per_stream_hour'])} |"
            )
        placement = a[x].get("placement")
        if placement:
            _placement_lines(w, placement, a[x])
        if a[x].get("lambda_functions"):
            _lambda_lines(w, a[x]["lambda_functions"])
        unpriced = a[x].get("unpriced") or {}
        if unpriced:
            w(
                "\nMetered but not billed per request: "
                + "; ".join(
                    f"{svc}: " + ", ".join(f"{op} {n}" for op, n in sorted(ops.items()))
                    for svc, ops in sorted(unpriced.items())
                )
                + "."
            )
        w("")

    if result.get("per_detector"):
        _per_detector_lines(w, result["per_detector"])

    sizing = result.get("right_sizing")
    if sizing and sizing.get("error"):
        w("## Right-sizing the monolith's tasks\n")
        w(
            f"The stack did not synthesize with the measured sizes {sizing['shard_sizes']}"
            f" ({sizing['error']}); the monolith is priced with the sizes cdk.json deploys.\n"
        )
    elif sizing:
        w("## Right-sizing the monolith's tasks\n")
        w(
            f"Each shard's reservation is its measured CPU / {sizing['cpu_headroom']:g} and its"
            f" peak memory / {sizing['memory_headroom']:g}; the headline monolith is placed with"
            " these sizes (and the instance type that packs them cheapest), read back from the"
            " template synthesized with them. Deploy it with:\n"
        )
        w(f"```\n{sizing['deploy']}\n```\n")
        w("| shard | CPU-s per stream-second | peak RSS MiB | reserves CPU units | MiB |")
        w("|---|---:|---:|---:|---:|")
        for i, (sh, c) in enumerate(sorted(sizing["cpu_seconds_per_stream_second"].items())):
            size = sizing["shard_sizes"][i]
            w(
                f"| {sh} | {qty(c)} | {qty(sizing['peak_rss_mb'].get(sh))} | "
                f"{size['cpu']:,} | {size['memory_mb']:,} |"
            )
        w("")

    variants = result.get("variants") or []
    if variants:
        w("## Variants\n")
        w(
            "| variant | architecture | USD per stream-hour | vs baseline distributed | "
            "largest costs |"
        )
        w("|---|---|---:|---:|---|")
        base = a["distributed"]["usd_per_stream_hour"]
        for v in variants:
            ratio = v["usd_per_stream_hour"] / base if base else 0.0
            top = ", ".join(
                f"{SERVICES[s]} {usd(v['breakdown'][s])}" for s in top_services(v["breakdown"], 2)
            )
            w(
                f"| {v['name']} | {v['architecture']} | {usd(v['usd_per_stream_hour'])} | "
                f"{pct(ratio)} | {top} |"
            )
        w("")

    sw = result.get("sweeps")
    if sw:
        _sweep_lines(w, sw)

    proj = result.get("projection")
    if proj:
        w("## Cost against concurrent streams\n")
        w(f"![cost vs streams]({CHART_VS_STREAMS})\n")
        w(
            "Distributed cost grows linearly; the monolith adds whole instances "
            "(the steps), so a single stream pays for a whole instance.\n"
        )
        pa = proj["architectures"]
        head = ["streams"]
        for x in pa:
            head.append(f"{x} USD/hour")
            head.append(f"{x} USD per stream-hour")
            if "instances" in pa[x]:
                head.append(f"{x} instances")
        w("| " + " | ".join(head) + " |")
        w("|" + "---:|" * len(head))
        for i, n in enumerate(proj["streams"]):
            row = [f"{n:,}"]
            for x in pa:
                row.append(usd(pa[x]["usd_per_hour"][i]))
                row.append(usd(pa[x]["usd_per_stream_hour"][i]))
                if "instances" in pa[x]:
                    row.append(f"{pa[x]['instances'][i]:,}")
            w("| " + " | ".join(row) + " |")
        w("")

    quotas = result.get("quotas") or {}
    if quotas:
        w("## Default service quotas\n")
        w(
            "Where each architecture reaches a default quota, in concurrent streams like the "
            "metered ones (quota / per-stream rate).\n"
        )
        w(
            "| architecture | quota | per stream | default limit | streams at limit | "
            "within 10,000? | source (read) |"
        )
        w("|---|---|---:|---:|---:|---|---|")
        for x, markers in quotas.items():
            for mk in markers:
                w(
                    f"| {x} | {mk['what']} (`{mk['quota']}`) | {qty(mk['per_stream'])} | "
                    f"{qty(mk['limit'])} | {qty(mk['streams_at_limit'])} | "
                    f"{'**hit**' if mk['hit'] else 'no'} | [{_host(mk['source'])}]"
                    f"({mk['source']}) ({mk['as_of']}) |"
                )
        w("")
        for x, markers in quotas.items():
            for mk in markers:
                if mk.get("note"):
                    w(f"- {x}, `{mk['quota']}`: {mk['note']}")
        w("")

    aws = result.get("aws")
    if aws:
        w("## Deployed run (--aws)\n")
        win = aws.get("window", {})
        w(
            f"- Region {aws.get('region')}, run `{aws.get('run_id')}`, metered from "
            f"{win.get('start')} to {win.get('end')}."
        )
        model = aws.get("model_usd_run", {})
        for x in archs:
            if x in model:
                w(f"- {x}: the model prices the metered run at {usd(model[x])}.")
        if "asg_usd" in aws:
            w(
                f"- Auto Scaling group: {qty(aws['asg_instance_hours'])} instance-hours of "
                f"{aws['asg_instance_type']} in the window = {usd(aws['asg_usd'])} "
                "(idle capacity included; the model above charges measured worker CPU only)."
            )
        w("")
    ce = result.get("cost_explorer")
    if ce:
        w(f"## Actual cost (Cost Explorer, {ce['from']} to {ce['to']}, by `{ce['tag']}`)\n")
        w("| architecture | service | USD |")
        w("|---|---|---:|")
        for x, services in sorted(ce["by_architecture"].items()):
            for svc, amount in sorted(services.items(), key=lambda kv: -kv[1]):
                w(f"| {x} | {svc} | {usd(amount)} |")
            w(f"| **{x}** | **total** | **{usd(ce['totals'][x])}** |")
        w(f"\n{ce['note']}\n")

    w("## Assumptions and what is not priced\n")
    for note in result.get("assumptions", []):
        w(f"- {note}")
    w("")

    table = result.get("price_table")
    if table:
        w("## Prices used\n")
        w("| service | price | per | unit | source (read) |")
        w("|---|---:|---:|---|---|")
        for svc, entries in table["prices"].items():
            for name, p in entries.items():
                w(
                    f"| {svc}.{name} | {usd(p['usd'])} | {qty(p['per'])} | {p['unit']} | "
                    f"[{_host(p['source'])}]({p['source']}) ({p['as_of']}) |"
                )
        for name, i in table["instances"].items():
            w(
                f"| ec2.{name} ({i['vcpus']} vCPU) | {usd(i['usd_per_hour'])} | 1 | "
                f"instance-hours | [{_host(i['source'])}]({i['source']}) ({i['as_of']}) |"
            )
        w("")
    return "\n".join(lines)


def _placement_lines(w: Any, placement: dict[str, Any], arch: dict[str, Any]) -> None:
    w(
        f"\nECS placement on {placement['instance_type']} (registers "
        f"{placement['registered_per_instance']['cpu_units']:,} CPU units and "
        f"{placement['registered_per_instance']['memory_mb']:,} MiB; capacity provider target "
        f"{placement['target_capacity_percent']}%):\n"
    )
    w("| shard | detectors | CPU units | memory MiB | streams per task |")
    w("|---|---|---:|---:|---:|")
    for t in placement["tasks"]:
        w(
            f"| {t.get('name', '')} | {', '.join(t['shard'])} | {t['cpu_units']:,} | "
            f"{t['memory_mb']:,} | {t['streams_per_task']} |"
        )
    counts = ", ".join(f"{n} streams: {k:,}" for n, k in placement["instances"].items())
    w(f"\nInstances for concurrent streams: {counts}.")
    util = arch.get("reserved_cpu_utilisation")
    inst = arch.get("instance_cpu_utilisation")
    if util is not None and inst is not None:
        w(
            f"Measured worker CPU uses {pct(util)} of the CPU the tasks reserve"
            f" (`reserved_cpu_utilisation` = {util:.4f}) and {pct(inst)} of the instances'"
            f" vCPUs at the headline's fleet size (`instance_cpu_utilisation` = {inst:.4f})."
        )


def _lambda_lines(w: Any, functions: list[dict[str, Any]]) -> None:
    w(
        "\n| function (handler) | memory MB | invocations | metered s (full core) | CPU share |"
        " billed s | concurrency per stream | INIT s (billed) | cold starts |"
    )
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for f in functions:
        w(
            f"| `{f['handler']}` | {f['memory_mb']:,} | {qty(f['invocations'])} | "
            f"{qty(f['metered_seconds'])} | {qty(f['cpu_share'])} | {qty(f['billed_seconds'])} |"
            f" {qty(f['concurrency_per_stream'])} | {qty(f['init_seconds_billed'])} |"
            f" {qty(f['cold_starts'])} |"
        )


def _per_detector_lines(w: Any, rows: list[dict[str, Any]]) -> None:
    """What each detector's own function costs in the distributed baseline
    (:func:`vqa.sweeps.per_detector`)."""
    w("## What each detector costs (distributed baseline)\n")
    w(
        "Each detector is its own Lambda function, invoked once per segment: its requests, its"
        " GB-seconds (at its memory's CPU share) and, on Standard, the state transition each"
        " invocation enters. The objects it reads and the state it writes are in the S3 lines"
        " above; in the monolith every detector of a shard shares one decode, and what they"
        " add to it is in the shard's measured CPU.\n"
    )
    w(
        "| detector | memory MB | invocations per stream-second | CPU ms per stream-second"
        " (full core) | billed ms per stream-second | USD per stream-hour |"
    )
    w("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        w(
            f"| `{r['detector']}` | {r['memory_mb']:,} | {qty(r['invocations_per_stream_second'])}"
            f" | {qty(r['cpu_ms_per_stream_second'])} | {qty(r['billed_ms_per_stream_second'])}"
            f" | {usd(r['usd_per_stream_hour'])} |"
        )
    w("")


def _sweep_lines(w: Any, sw: dict[str, Any]) -> None:
    w("## Sensitivity and break-even\n")
    w(f"![sweeps]({CHART_SWEEPS})\n")
    duty = sw["duty_cycle"]
    w("### Duty cycle: 24/7 channels vs on-demand checks\n")
    w(
        "Each stream active some minutes an hour (jobs spread over the hour). Distributed: every"
        " cost is per stream-second. Monolith: non-instance costs per stream-second; instances"
        " placed for the concurrent streams, each billing its active minutes plus"
        f" {duty['scale_in_minutes']:g} min before ECS scales it in and {duty['boot_minutes']:g}"
        " min to boot, up to the hour.\n"
    )
    w(
        "| streams | active min/hour | distributed USD/hour | monolith USD/hour | instances |"
        " cheaper |"
    )
    w("|---:|---:|---:|---:|---:|---|")
    for r in duty["rows"]:
        w(
            f"| {r['streams']:,} | {qty(r['minutes_per_hour'])} |"
            f" {usd(r['distributed_usd_per_hour'])} | {usd(r['monolith_usd_per_hour'])} |"
            f" {r['monolith_instances']:,} | {r['winner']} |"
        )
    w(f"\n**{duty['sentence']}**\n")
    arch = sw.get("cpu_architecture")
    if arch:
        w("### x86_64 vs arm64 (Graviton)\n")
        w(
            "The measured CPU time is assumed to carry over to arm64 (not measured on arm64 here);"
            " Lambda at the arm64 price, the monolith on the Graviton type of the same size.\n"
        )
        w(
            "| CPU architecture | distributed USD/stream-hour | monolith USD/stream-hour |"
            " instance |"
        )
        w("|---|---:|---:|---|")
        for r in arch["rows"]:
            w(
                f"| {r['cpu_architecture']} | {usd(r.get('distributed'))} |"
                f" {usd(r.get('monolith'))} | {r.get('instance_type', '')} |"
            )
        w(f"\n**{arch['sentence']}**\n")
    for key, title, column, unit in (
        ("detectors", "Number of detectors", "detectors", ""),
        ("segment_seconds", "Segment length", "segment_seconds", " s"),
    ):
        sweep = sw.get(key)
        if not sweep:
            continue
        w(f"### {title} (modelled)\n")
        w(f"{sweep['modelled']}\n")
        w(f"| {title.lower()} | distributed USD/stream-hour | monolith USD/stream-hour | cheaper |")
        w("|---:|---:|---:|---|")
        for r in sweep["rows"]:
            w(
                f"| {qty(r[column])}{unit} | {usd(r['distributed'])} | {usd(r['monolith'])} |"
                f" {r['winner']} |"
            )
        w(f"\n**{sweep['sentence']}**\n")
    for key in ("variants", "profiles"):
        if sw.get(key):
            w(f"**{sw[key]['sentence']}**\n")


def _host(url: str) -> str:
    return url.split("//", 1)[-1].rstrip("/")


# --- charts --------------------------------------------------------------------------------------


def _bars(result: dict[str, Any]) -> list[tuple[str, dict[str, float]]]:
    """Bars of the stacked chart: every variant if any (the baseline among them), else the two
    architectures."""
    variants = result.get("variants") or []
    if variants:
        return [(v["name"], v["breakdown"]) for v in variants]
    return [(x, r["breakdown"]) for x, r in result["architectures"].items()]


def chart_cost_by_service(result: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    bars = _bars(result)
    fig = Figure(figsize=(max(6.0, 1.6 * len(bars) + 2), 4.8), layout="constrained")
    ax = fig.add_subplot()
    xs = range(len(bars))
    bottoms = [0.0] * len(bars)
    for key, label in SERVICES.items():
        heights = [b.get(key, 0.0) for _, b in bars]
        if not any(heights):
            continue
        ax.bar(xs, heights, bottom=bottoms, label=label, color=SERVICE_COLORS[key], width=0.6)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    for x, total in zip(xs, bottoms, strict=True):
        ax.annotate(usd(total), (x, total), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), [name.replace(", ", "\n") for name, _ in bars], fontsize=8)
    ax.set_ylim(0, max([*bottoms, 1e-9]) * 1.12)
    ax.set_ylabel("USD per stream-hour")
    ax.set_title("Cost per stream-hour by service")
    ax.legend(fontsize=8)
    fig.savefig(path, format="png", dpi=110)


def chart_sweeps(result: dict[str, Any], path: Path) -> None:
    """Duty cycle (USD/hour against active minutes, one line per fleet and architecture),
    x86 vs arm64 (bars), and the number of detectors and segment length (lines)."""
    from matplotlib.figure import Figure

    sw = result["sweeps"]
    fig = Figure(figsize=(11, 9.2), layout="constrained")
    (ax_duty, ax_arch), (ax_det, ax_seg) = fig.subplots(2, 2)
    for ax, key, column, label in (
        (ax_det, "detectors", "detectors", "detectors (modelled)"),
        (ax_seg, "segment_seconds", "segment_seconds", "segment length, s (modelled)"),
    ):
        rows_k = (sw.get(key) or {}).get("rows") or []
        for x in ("distributed", "monolith"):
            ax.plot(
                [r[column] for r in rows_k],
                [r[x] for r in rows_k],
                marker="o",
                ms=3,
                color=COLORS[x],
                label=x,
            )
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("USD per stream-hour")
        ax.set_title(label.split(" (")[0].capitalize())
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    ax_seg.set_xscale("log")
    rows = sw["duty_cycle"]["rows"]
    for fleet, style in zip(sorted({r["streams"] for r in rows}), ("-", "--", ":"), strict=False):
        mine = [r for r in rows if r["streams"] == fleet]
        xs = [r["minutes_per_hour"] for r in mine]
        for x in ("distributed", "monolith"):
            ax_duty.plot(
                xs,
                [r[f"{x}_usd_per_hour"] for r in mine],
                style,
                marker="o",
                ms=3,
                color=COLORS[x],
                label=f"{x}, {fleet} stream{'s' if fleet > 1 else ''}",
            )
    ax_duty.set_yscale("log")
    ax_duty.set_xlabel("active minutes per hour, per stream")
    ax_duty.set_ylabel("USD per hour")
    ax_duty.set_title("Duty cycle")
    ax_duty.grid(True, which="both", alpha=0.3)
    ax_duty.legend(fontsize=7)
    arch_rows = (sw.get("cpu_architecture") or {}).get("rows") or []
    for i, r in enumerate(arch_rows):
        for j, x in enumerate(("distributed", "monolith")):
            if r.get(x) is not None:
                ax_arch.bar(
                    i + (j - 0.5) * 0.38,
                    r[x],
                    width=0.38,
                    color=COLORS[x],
                    label=x if i == 0 else None,
                )
    ax_arch.set_xticks(range(len(arch_rows)), [r["cpu_architecture"] for r in arch_rows])
    ax_arch.set_yscale("log")
    ax_arch.set_ylabel("USD per stream-hour")
    ax_arch.set_title("x86_64 vs arm64")
    ax_arch.legend(fontsize=8)
    fig.savefig(path, format="png", dpi=110)


def chart_cost_vs_streams(result: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    proj = result["projection"]
    streams = proj["streams"]
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    ax_total, ax_per = fig.subplots(1, 2)
    for x, p in proj["architectures"].items():
        color = COLORS.get(x)
        ax_total.plot(streams, p["usd_per_hour"], marker="o", ms=3, label=x, color=color)
        ax_per.step(streams, p["usd_per_stream_hour"], where="post", label=x, color=color)
        for mk in (result.get("quotas") or {}).get(x, []):
            if mk["hit"]:
                for ax in (ax_total, ax_per):
                    ax.axvline(mk["streams_at_limit"], color=color, ls=":", lw=1)
                ax_total.text(
                    mk["streams_at_limit"],
                    0.02,
                    f"{x}: {mk['what']}",
                    rotation=90,
                    fontsize=6,
                    color=color,
                    va="bottom",
                    ha="right",
                    transform=ax_total.get_xaxis_transform(),
                )
    for ax in (ax_total, ax_per):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("concurrent streams")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    ax_total.set_ylabel("USD per hour")
    ax_total.set_title("Total cost (dotted: default quota reached)")
    ax_per.set_ylabel("USD per stream-hour")
    ax_per.set_title("Cost per stream-hour")
    fig.savefig(path, format="png", dpi=110)
