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
COLORS = {"distributed": "#d62728", "monolith": "#1f77b4"}
SERVICE_COLORS = {
    "stepfunctions": "#e377c2",
    "lambda": "#ff7f0e",
    "s3": "#2ca02c",
    "sqs": "#9467bd",
    "sns": "#8c564b",
    "dynamodb": "#17becf",
    "logs": "#bcbd22",
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
    w("| source | seconds | defects (" + " / ".join(archs) + ") | architectures agree |")
    w("|---|---:|---:|---|")
    for s in result.get("sources", []):
        counts = " / ".join(str(s["defects"].get(x, "-")) for x in archs)
        w(
            f"| `{s['source']}` | {qty(s['duration'])} | {counts} | "
            f"{'yes' if s.get('agree') else 'NO'} |"
        )
    w("")

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
        if a[x].get("instances_per_stream"):
            w(
                f"\nInstances per stream at the target utilisation: "
                f"{qty(a[x]['instances_per_stream'])} x {a[x]['instance_type']}."
            )
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
