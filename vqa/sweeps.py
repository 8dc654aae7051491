"""Sensitivity sweeps and break-even, computed from the cost model on the measured usage.

Nothing here is re-measured: each sweep re-prices the metered run under one changed assumption
and says which parts of the bill scale how (the number of detectors and the segment length
re-price a usage modelled from the measured per-detector and per-segment counts).
:func:`duty_cycle` answers the question no published comparison shows: a stream checked a few
minutes an hour (on-demand file checks) pays Lambda and Step Functions only while it runs, while
the monolith's instances stay up between jobs until ECS scales them in.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vqa.cost import CostResult, ModelParams, lambda_functions
from vqa.deployment import Capacity
from vqa.pricing import PriceTable

#: Active minutes per hour of each stream (60: a 24/7 live channel).
DUTY_MINUTES: tuple[float, ...] = (1, 2, 5, 10, 15, 30, 45, 60)
#: Fleet sizes the duty-cycle sweep shows (streams that are each active some minutes an hour).
DUTY_FLEETS: tuple[int, ...] = (1, 100)
#: ECS managed scaling scales an idle instance in after about 15 minutes of low capacity-provider
#: reservation, and a new instance takes a few minutes to boot and register: an instance whose
#: jobs leave it idle bills its active minutes plus this much, up to the whole hour.
SCALE_IN_MINUTES = 15.0
BOOT_MINUTES = 3.0


def duty_cycle(
    distributed: CostResult,
    monolith: CostResult,
    prices: PriceTable,
    params: ModelParams,
    *,
    minutes: Sequence[float] = DUTY_MINUTES,
    fleets: Sequence[int] = DUTY_FLEETS,
) -> dict[str, Any]:
    """USD per hour of ``fleet`` streams each active ``m`` minutes an hour, both architectures.

    Distributed: every metered cost is per stream-second, so it is the per-stream-hour figure x
    fleet x m / 60. Monolith: its non-instance costs likewise; its instances are placed for the
    concurrent streams (fleet x m / 60, jobs spread over the hour, at least one) and each bills
    ``min(60, m + scale-in + boot)`` minutes.
    """
    assert monolith.capacity is not None and monolith.instance_type is not None
    it = prices.instance(monolith.instance_type)
    ebs = prices.unit_usd("ebs", "gp3_storage") * params.ebs_gb_per_instance
    instance_hour = it.usd_per_hour + ebs / params.hours_per_month
    capacity = monolith.capacity

    def costs(fleet: int, m: float) -> tuple[float, float, int]:
        active = fleet * m / 60
        d_usd = distributed.usd_per_stream_hour * active
        instances = capacity.instances(max(1, math.ceil(active - 1e-9)))
        billed_h = min(60.0, m + SCALE_IN_MINUTES + BOOT_MINUTES) / 60
        m_usd = monolith.fixed_per_hour() * active + instances * billed_h * instance_hour
        return d_usd, m_usd, instances

    rows: list[dict[str, Any]] = []
    break_even: dict[str, float | None] = {}
    for fleet in fleets:
        # The longest active time (0.1 min steps) up to which the distributed design is cheaper.
        cheaper = [
            k / 10 for k in range(1, 601) if costs(fleet, k / 10)[0] < costs(fleet, k / 10)[1]
        ]
        break_even[str(fleet)] = max(cheaper) if cheaper else None
        for m in minutes:
            d_usd, m_usd, instances = costs(fleet, m)
            rows.append(
                {
                    "streams": fleet,
                    "minutes_per_hour": m,
                    "distributed_usd_per_hour": d_usd,
                    "monolith_usd_per_hour": m_usd,
                    "monolith_instances": instances,
                    "winner": "distributed" if d_usd < m_usd else "monolith",
                }
            )
    return {
        "rows": rows,
        "break_even_minutes": break_even,
        "scale_in_minutes": SCALE_IN_MINUTES,
        "boot_minutes": BOOT_MINUTES,
        "sentence": _duty_sentence(break_even),
    }


def _duty_sentence(break_even: Mapping[str, float | None]) -> str:
    parts: list[str] = []
    for fleet, minutes in break_even.items():
        label = f"{fleet} stream{'s' if fleet != '1' else ''}"
        if minutes is None:
            parts.append(f"with {label} the monolith is cheaper from 0.1 active minutes an hour")
        elif minutes >= 60:
            parts.append(f"with {label} the distributed design is cheaper even 24/7")
        else:
            parts.append(
                f"with {label} the distributed design wins only below {minutes:g} active minutes"
                " an hour per stream"
            )
    return "Duty cycle: " + "; ".join(parts) + "."


def cpu_architectures(
    usages: Mapping[str, Mapping[str, Any]],
    price: Callable[[str, Mapping[str, Any], Capacity | None], CostResult],
    graviton: Capacity | None,
) -> dict[str, Any]:
    """x86_64 (as run) vs arm64: Lambda at the arm64 price and the monolith on the Graviton
    instance type, assuming the measured CPU time carries over (not measured on arm64)."""
    rows: list[dict[str, Any]] = []
    for arch in ("x86_64", "arm64"):
        row: dict[str, Any] = {"cpu_architecture": arch}
        for x in ("distributed", "monolith"):
            if arch == "arm64" and x == "monolith" and graviton is None:
                continue
            usage = copy.deepcopy(dict(usages[x]))
            cfg = usage.setdefault("config", {})
            if arch == "arm64":
                cfg["lambda_architecture"] = "arm64"
                if x == "monolith" and graviton is not None:
                    cfg["instance_type"] = graviton.instance_type
            r = price(x, usage, graviton if (arch == "arm64" and x == "monolith") else None)
            row[x] = r.usd_per_stream_hour
            if r.instance_type:
                row["instance_type"] = r.instance_type
        rows.append(row)
    x86, arm = rows
    if "monolith" not in arm:
        sentence = "x86 vs arm64: no arm64 instance type in the price table for the monolith"
    else:
        winners = [min(("distributed", "monolith"), key=lambda x: r[x]) for r in rows]
        sentence = (
            f"x86 vs arm64: arm64 takes the distributed design from ${x86['distributed']:.4f} to"
            f" ${arm['distributed']:.4f} per stream-hour and the monolith from"
            f" ${x86['monolith']:.4f} to ${arm['monolith']:.4f} ({arm.get('instance_type')}):"
            f" the cheaper design is the {winners[0]} on x86 and the {winners[1]} on arm64"
        )
    return {"rows": rows, "sentence": sentence + "."}


def variants_sentence(variants: Sequence[Mapping[str, Any]], monolith_usd: float) -> str:
    """Standard vs Express and per-frame vs per-segment (the variant runs), against the
    monolith."""
    dist = [v for v in variants if v["architecture"] == "distributed"]
    if len(dist) < 2:
        return "Standard vs Express, per-frame vs per-segment: not run (--no-variants)."
    best = min(dist, key=lambda v: v["usd_per_stream_hour"])
    usd = best["usd_per_stream_hour"]
    where = (
        "and beats the monolith"
        if usd < monolith_usd
        else f"still {usd / monolith_usd:.1f}x the monolith's ${monolith_usd:.4f}"
    )
    return (
        f"Standard vs Express, per-frame vs per-segment: the cheapest distributed variant is"
        f" {best['name']} at ${usd:.4f} per stream-hour, {where}."
    )


def profiles_sentence(per_source: Sequence[Mapping[str, Any]]) -> str:
    """Resolution and frame rate: the per-profile figures."""
    if len(per_source) < 2:
        return "Resolution and frame rate: one profile run; run several sources to compare."
    parts = [
        f"{ps['profile']} distributed ${ps['distributed']:.4f} vs monolith ${ps['monolith']:.4f}"
        for ps in per_source
    ]
    dist_wins = [ps["profile"] for ps in per_source if ps["distributed"] < ps["monolith"]]
    verdict = (
        f"the distributed design wins at {', '.join(dist_wins)}"
        if dist_wins
        else "the monolith wins at every profile run"
    )
    return (
        "Resolution and frame rate (per stream-hour; per-frame objects scale with fps, worker"
        f" CPU with pixels x fps): {'; '.join(parts)}: {verdict}."
    )


# --- modelled from the measured per-detector and per-segment usage ----------------------------

DETECT_HANDLER = "lambdas.distributed.detect.handler"
#: Segment lengths the segment sweep shows, seconds.
SEGMENT_SECONDS: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0)


def _detect_calls(counters: Mapping[str, Any]) -> tuple[float, float]:
    """The distributed detector functions' (invocations, metered seconds)."""
    calls = seconds = 0.0
    for (handler, _), (s, n) in lambda_functions(counters).items():
        if handler == DETECT_HANDLER:
            calls, seconds = calls + n, seconds + s
    return calls, seconds


def _scale_handler(counters: dict[str, Any], handler: str, calls: float, seconds: float) -> None:
    """Multiply one handler's metered invocations by ``calls`` and seconds by ``seconds``, and
    the totals with them."""
    for key in list(counters):
        name, _, rest = key.partition("@")
        if rest.rpartition("@")[0] != handler:
            continue
        factor = calls if name == "lambda_invocations" else seconds
        delta = counters[key] * (factor - 1)
        counters[key] += delta
        if name in counters:
            counters[name] = counters[name] + delta


def distributed_with_detectors(usage: Mapping[str, Any], k: int, configured: int) -> dict[str, Any]:
    """The distributed usage with ``k`` of the ``configured`` detectors: each detector's part
    (its Lambda invocations and seconds, the state each invocation enters, the state object it
    writes and the objects it reads back) scaled by ``k / configured``, each detector taken as
    the measured mean; the converter's and aggregator's parts unchanged."""
    u = copy.deepcopy(dict(usage))
    c = u.setdefault("counters", {})
    s3 = u.setdefault("requests", {}).setdefault("s3", {})
    f = k / configured
    calls, _ = _detect_calls(c)
    total_calls = float(c.get("lambda_invocations") or 0.0)
    _scale_handler(c, DETECT_HANDLER, f, f)
    c["state_transitions"] = float(c.get("state_transitions") or 0.0) - calls * (1 - f)
    # One state object written per detector invocation; reads: everything but the converter's
    # (one HEAD and about one GET of the source per segment).
    s3["PutObject"] = max(0.0, s3.get("PutObject", 0) - calls * (1 - f))
    detector_gets = max(0.0, s3.get("GetObject", 0) - s3.get("HeadObject", 0))
    gets = s3.get("GetObject", 0)
    s3["GetObject"] = gets - detector_gets * (1 - f)
    if gets:
        u.setdefault("bytes", {})["s3_get"] = u.get("bytes", {}).get("s3_get", 0) * (
            s3["GetObject"] / gets
        )
    if total_calls:
        c["log_bytes"] = c.get("log_bytes", 0) * (total_calls - calls * (1 - f)) / total_calls
    return u


def with_segment_seconds(usage: Mapping[str, Any], seconds: float) -> dict[str, Any]:
    """The usage with ``seconds``-long segments instead of the run's: every per-segment count
    scales by run's length / ``seconds`` (distributed: the per-segment invocations and the states
    they enter, the state objects, the converter's source reads, and the media objects when
    they are per segment; monolith: its checkpoints). Work on the media itself (Lambda and
    worker seconds, per-frame objects, bytes) is unchanged: the per-invocation overhead a
    shorter segment adds is not modelled (a lower bound for short segments)."""
    u = copy.deepcopy(dict(usage))
    cfg = u.setdefault("config", {})
    base = float(cfg.get("segment_seconds") or 1.0)
    r = base / seconds
    cfg["segment_seconds"] = seconds
    c = u.setdefault("counters", {})
    s3 = u.setdefault("requests", {}).setdefault("s3", {})
    if u.get("architecture") == "monolith":
        s3["PutObject"] = s3.get("PutObject", 0) * r  # checkpoints every N segments
        return u
    calls, _ = _detect_calls(c)
    for handler in (DETECT_HANDLER, *PER_SEGMENT_HANDLERS):
        _scale_handler(c, handler, r, 1.0)
    c["state_transitions"] = float(c.get("state_transitions") or 0.0) * r
    if cfg.get("granularity") == "segment":
        s3["PutObject"] = s3.get("PutObject", 0) * r
        s3["GetObject"] = s3.get("GetObject", 0) * r
    else:  # per-frame objects stay; the state objects and the detectors' state reads scale
        s3["PutObject"] = s3.get("PutObject", 0) + calls * (r - 1)
        s3["GetObject"] = s3.get("GetObject", 0) + calls * (r - 1)
    s3["HeadObject"] = s3.get("HeadObject", 0) * r
    return u


#: Distributed functions invoked once per segment besides the detectors.
PER_SEGMENT_HANDLERS = (
    "lambdas.distributed.convert.handler",
    "lambdas.distributed.aggregate.handler",
)


def detector_count(
    usages: Mapping[str, Mapping[str, Any]],
    price: Callable[[str, Mapping[str, Any], Capacity | None], CostResult],
) -> dict[str, Any]:
    """USD per stream-hour with 1..K of the K configured detectors (modelled)."""
    dist = usages["distributed"]
    configured = len((dist.get("config") or {}).get("detectors") or []) or 6
    mono = price("monolith", usages["monolith"], None).usd_per_stream_hour
    rows = []
    for k in range(1, configured + 1):
        d = price("distributed", distributed_with_detectors(dist, k, configured), None)
        rows.append(
            {
                "detectors": k,
                "distributed": d.usd_per_stream_hour,
                "monolith": mono,
                "winner": "distributed" if d.usd_per_stream_hour < mono else "monolith",
            }
        )
    wins = [r["detectors"] for r in rows if r["winner"] == "distributed"]
    one = rows[0]
    sentence = (
        f"Number of detectors: the distributed design wins with {', '.join(map(str, wins))}"
        " detectors."
        if wins
        else "Number of detectors: the distributed design wins at no detector count; with one"
        f" detector it costs ${one['distributed']:.4f} per stream-hour against the monolith's"
        f" ${mono:.4f} (its converter's objects and per-segment states remain)."
    )
    return {
        "rows": rows,
        "modelled": (
            "Modelled from the measured run: each detector's Lambda invocations and seconds, the"
            " state it enters, the state object it writes and the objects it reads are the"
            " measured mean per detector; the monolith's reservations are kept (decoding"
            " dominates its CPU and per-detector CPU is not metered: an upper bound for fewer"
            " detectors)."
        ),
        "sentence": sentence,
    }


def per_detector(
    usage: Mapping[str, Any], prices: PriceTable, params: ModelParams
) -> list[dict[str, Any]]:
    """What each detector's own Lambda function costs in the distributed run, from the metered
    ``detector_seconds@NAME@MB`` / ``detector_invocations@NAME@MB`` counters: its requests, its
    GB-seconds (timed on a full core, billed at the memory's CPU share as the cost model does)
    and, on Standard workflows, the one state transition each invocation enters. The objects it
    reads and the state object it writes are in the run's shared S3 lines, not here. Empty when
    the run did not meter per detector (a deployed run)."""
    counters: Mapping[str, Any] = usage.get("counters") or {}
    stream_s = float(usage.get("stream_seconds") or 0.0)
    config = usage.get("config") or {}
    if stream_s <= 0:
        return []
    arch = str(config.get("lambda_architecture") or "x86_64")
    standard = str(config.get("workflow_type") or "STANDARD").upper() == "STANDARD"
    request_usd = prices.unit_usd("lambda", "requests")
    gb_s_usd = prices.unit_usd("lambda", f"duration_{arch}")
    transition_usd = prices.unit_usd("stepfunctions", "standard_transitions") if standard else 0.0
    metered: dict[tuple[str, int], list[float]] = {}
    for key, v in counters.items():
        name, _, rest = key.partition("@")
        if name not in ("detector_seconds", "detector_invocations") or not rest:
            continue
        detector, _, mem = rest.rpartition("@")
        row = metered.setdefault((detector, int(mem)), [0.0, 0.0])
        row[name == "detector_invocations"] += float(v)
    order = {d: i for i, d in enumerate(config.get("detectors") or [])}
    out = []
    for (detector, memory_mb), (seconds, calls) in sorted(
        metered.items(), key=lambda kv: (order.get(kv[0][0], len(order)), kv[0][0])
    ):
        billed = seconds / min(1.0, memory_mb / params.lambda_mb_per_vcpu)
        usd = calls * (request_usd + transition_usd) + billed * memory_mb / 1024 * gb_s_usd
        out.append(
            {
                "detector": detector,
                "memory_mb": memory_mb,
                "invocations_per_stream_second": calls / stream_s,
                "cpu_ms_per_stream_second": 1000.0 * seconds / stream_s,
                "billed_ms_per_stream_second": 1000.0 * billed / stream_s,
                "usd_per_stream_hour": usd * 3600.0 / stream_s,
            }
        )
    return out


def segment_length(
    usages: Mapping[str, Mapping[str, Any]],
    price: Callable[[str, Mapping[str, Any], Capacity | None], CostResult],
    seconds: Sequence[float] = SEGMENT_SECONDS,
) -> dict[str, Any]:
    """USD per stream-hour with other segment lengths (modelled)."""
    rows = []
    for s in seconds:
        d = price("distributed", with_segment_seconds(usages["distributed"], s), None)
        m = price("monolith", with_segment_seconds(usages["monolith"], s), None)
        rows.append(
            {
                "segment_seconds": s,
                "distributed": d.usd_per_stream_hour,
                "monolith": m.usd_per_stream_hour,
                "winner": "distributed"
                if d.usd_per_stream_hour < m.usd_per_stream_hour
                else "monolith",
            }
        )
    wins = [r["segment_seconds"] for r in rows if r["winner"] == "distributed"]
    longest = rows[-1]
    sentence = (
        f"Segment length: the distributed design wins at {', '.join(f'{s:g} s' for s in wins)}"
        " segments."
        if wins
        else "Segment length: the distributed design wins at no segment length; at"
        f" {longest['segment_seconds']:g} s segments it costs ${longest['distributed']:.4f}"
        f" per stream-hour against the monolith's ${longest['monolith']:.4f}."
    )
    return {
        "rows": rows,
        "modelled": (
            "Modelled from the measured run: per-segment counts (invocations, the states they"
            " enter, state objects, the converter's source reads, per-segment media objects,"
            " the monolith's checkpoints) scale with segments per second; work on the media"
            " (Lambda and worker seconds, per-frame objects) is unchanged, so the per-invocation"
            " overhead of short segments is not included (a lower bound for them)."
        ),
        "sentence": sentence,
    }
