"""Cost benchmark: the A/B's headline figures per stream profile, and whether they hold with
stream duration.

Prints (issue 10's targets):

- for 1080p30 and 720p25 (the experiment's default profiles, ``--seconds`` long, 60 by default):
  USD per stream-hour of both architectures, the reduction and the top two cost drivers of each,
  the monolith placed by ECS with its tasks sized from that profile's measurements;
- what each deployed detector's own Lambda function costs per stream-second in the distributed
  baseline (its metered CPU, invocations and USD: :func:`vqa.sweeps.per_detector`);
- the monolith's CPU utilisation at 100 concurrent 1080p30 streams: measured worker CPU over the
  CPU the tasks reserve, and over the vCPUs of the instances ECS places them on (target >= 60%);
- per-hour figures from a 60 s run and a 10-minute run of the same 360p content (the monolith
  emulation: a 10-minute distributed emulation is too slow for this machine) and their
  difference (target <= 5%).

    python -m benchmarks.bench_cost [--seconds 60] [--long-seconds 600] [--keep DIR]
        [--skip-profiles | --skip-duration]

Clips are generated once into ``DIR`` (default ``out/bench-cost``) and reused.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def headline_profiles(out: Path, seconds: float) -> dict[str, Any]:
    from vqa.experiment import run_experiment

    t0 = time.perf_counter()
    report = run_experiment(
        [], out_dir=out / "experiment", progress=False, variants=False, profile_seconds=seconds
    )
    print(
        f"  experiment on the default profiles: {time.perf_counter() - t0:.0f} s", file=sys.stderr
    )
    return report


def duration_check(out: Path, short: float, long: float) -> list[dict[str, Any]]:
    """The monolith on the same 360p content, ``short`` and ``long`` seconds, each priced on its
    own (tasks sized from its own run)."""
    from vqa.corpus import write_sample_clip
    from vqa.cost import ModelParams
    from vqa.experiment import price_all, stack_facts
    from vqa.local.monolith import run_local
    from vqa.pricing import load_prices

    prices, params = load_prices(), ModelParams()
    rows: list[dict[str, Any]] = []
    for seconds in (short, long):
        clip = out / f"duration-360p30-{seconds:g}s.mp4"
        if not clip.exists():
            write_sample_clip(clip, seconds=seconds, width=640, height=360, fps=30)
        t0 = time.perf_counter()
        usage = run_local(str(clip), progress=False)["usage"]
        wall = time.perf_counter() - t0
        results, sizing = price_all(
            {"monolith": usage}, prices, params, {}, stack_facts({"monolith": usage})
        )
        m = results["monolith"]
        rows.append(
            {
                "seconds": seconds,
                "usd_per_stream_hour": m.usd_per_stream_hour,
                "non_instance_per_hour": m.fixed_per_hour(),
                "cpu_per_stream_second": usage["counters"]["worker_cpu_seconds"] / seconds,
                "shard_sizes": sizing.get("shard_sizes"),
                "sizing_error": sizing.get("error"),
                "wall": wall,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the profile clips")
    ap.add_argument("--short-seconds", type=float, default=60.0)
    ap.add_argument("--long-seconds", type=float, default=600.0)
    ap.add_argument("--keep", type=Path, default=ROOT / "out" / "bench-cost")
    ap.add_argument("--skip-profiles", action="store_true", help="only the duration check")
    ap.add_argument("--skip-duration", action="store_true", help="only the profiles")
    args = ap.parse_args(argv)
    args.keep.mkdir(parents=True, exist_ok=True)
    if not args.skip_profiles:
        print_profiles(args.keep, args.seconds)
    if not args.skip_duration:
        print_duration_check(args.keep, args.short_seconds, args.long_seconds)
    return 0


def print_profiles(keep: Path, seconds: float) -> None:
    report = headline_profiles(keep, seconds)
    print(f"profiles ({seconds:g} s each, local emulation, {report['prices']['region']}):")
    for ps in report["per_source"]:
        print(
            f"  {ps['profile']:>8}: distributed ${ps['distributed']:.4f}/stream-hour"
            f" (top: {', '.join(ps['drivers']['distributed'])}), monolith"
            f" ${ps['monolith']:.4f}/stream-hour (top: {', '.join(ps['drivers']['monolith'])}),"
            f" reduction {100 * ps['reduction']:.1f}%"
        )
        print(
            f"            monolith tasks {ps['shard_sizes']}: CPU utilisation at 100 concurrent"
            f" streams {100 * ps['reserved_cpu_utilisation']:.1f}% of reserved,"
            f" {100 * ps['instance_cpu_utilisation']:.1f}% of instance vCPUs"
        )
    print(f"headline over both profiles: {report['headline']}")
    print("each detector's own function (distributed baseline, both profiles):")
    for r in report.get("per_detector") or []:
        print(
            f"  {r['detector']:>10}: {r['cpu_ms_per_stream_second']:7.1f} ms CPU per"
            f" stream-second on a full core ({r['billed_ms_per_stream_second']:.1f} ms billed at"
            f" {r['memory_mb']} MB), {r['invocations_per_stream_second']:.2f} invocations per"
            f" stream-second, ${r['usd_per_stream_hour']:.5f}/stream-hour"
        )
    for key in ("duty_cycle", "cpu_architecture", "detectors", "segment_seconds", "variants"):
        sweep = report["sweeps"].get(key)
        if sweep:
            print(f"  {sweep['sentence']}")
    print("default quotas (concurrent streams at the limit; * = below 10,000):")
    for arch, markers in report["quotas"].items():
        for mk in markers:
            at = mk["streams_at_limit"]
            print(
                f"  {arch:>11}: {mk['quota']}: "
                f"{'no limit' if at is None else f'{at:,.0f}'}{' *' if mk['hit'] else ''}"
            )
    hd = [ps for ps in report["per_source"] if ps["profile"] == "1080p30"]
    if hd:
        util = hd[0]["instance_cpu_utilisation"]
        print(
            f"target: 1080p30 monolith CPU utilisation at 100 streams >= 60%:"
            f" {100 * util:.1f}% of instance vCPUs -> {'met' if util >= 0.6 else 'NOT met'}"
        )


def print_duration_check(keep: Path, short: float, long: float) -> None:
    rows = duration_check(keep, short, long)
    from vqa.cost import ModelParams

    lifetime = ModelParams().stream_lifetime_hours
    print(
        "duration (monolith emulation, 360p30, each run sized and priced on its own; per-stream"
        f" work spread over a {lifetime:g} h stream lifetime):"
    )
    for r in rows:
        print(
            f"  {r['seconds']:>5g} s: ${r['usd_per_stream_hour']:.5f}/stream-hour"
            f" (non-instance ${r['non_instance_per_hour']:.5f}), worker CPU"
            f" {r['cpu_per_stream_second']:.4f} s per stream-second, tasks {r['shard_sizes']},"
            f" run {r['wall']:.0f} s"
        )
        if r["sizing_error"]:
            print(
                "         (priced with cdk.json's sizes; the stack refused the measured ones:"
                f" {r['sizing_error']})"
            )
    a, b = rows[0]["usd_per_stream_hour"], rows[1]["usd_per_stream_hour"]
    diff = abs(a - b) / b
    print(
        f"target: per-hour figures of {rows[0]['seconds']:g} s and {rows[1]['seconds']:g} s runs"
        f" within 5%: {100 * diff:.2f}% -> {'met' if diff <= 0.05 else 'NOT met'}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
