"""Distributed benchmark: local run time, and the two cost drivers per stream-second.

Targets (issue 3):

- a local run (moto, in-process) of a 60 s 720p clip finishes in <= 2 minutes;
- printed for both granularities (``frame``: one object per frame, as Prime Video did;
  ``segment``: one object per segment): Step Functions state transitions per stream-second and
  S3 requests (PUT/GET) per stream-second, the two cost drivers Prime Video named;
- the app synthesizes in <= 15 s.

    python benchmarks/bench_distributed.py [--seconds 60] [--width 1280 --height 720] [--keep DIR]

Every figure comes from the run's metered ``usage`` (no figure is typed in). ``wall`` is the
run itself; the one-off synth of the app is timed on its own line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_RUN_SECONDS = 120.0
TARGET_SYNTH_SECONDS = 15.0


def make_clip(directory: Path, *, seconds: float, width: int, height: int) -> Path:
    from vqa.corpus import write_sample_clip

    path = directory / f"sample-{width}x{height}-{seconds:.0f}s.mp4"
    if not path.exists():
        t0 = time.perf_counter()
        write_sample_clip(path, seconds=seconds, width=width, height=height)
        print(f"  wrote {path.name} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return path


def time_synth(granularity: str) -> float:
    from vqa.local.template import synth_template

    t0 = time.perf_counter()
    synth_template(vqa_context={"granularity": granularity})
    return time.perf_counter() - t0


def per_second(usage: dict[str, Any]) -> dict[str, float]:
    seconds = usage["stream_seconds"] or 1.0
    s3 = usage["requests"].get("s3", {})
    counters = usage["counters"]
    return {
        "transitions": counters.get("state_transitions", 0) / seconds,
        "s3_requests": sum(s3.values()) / seconds,
        "s3_put": s3.get("PutObject", 0) / seconds,
        "s3_get": s3.get("GetObject", 0) / seconds,
        "s3_mb": sum(usage["bytes"].values()) / 1e6 / seconds,
        "lambda_invocations": counters.get("lambda_invocations", 0) / seconds,
        "lambda_gb_seconds": counters.get("lambda_gb_seconds", 0.0) / seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--granularity", choices=("frame", "segment"), action="append")
    parser.add_argument("--keep", type=Path, default=None, help="cache the clip in this directory")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from vqa.local.distributed import run_local

    granularities = args.granularity or ["frame", "segment"]
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.keep or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        clip = make_clip(directory, seconds=args.seconds, width=args.width, height=args.height)
        results: dict[str, Any] = {}
        for granularity in granularities:
            synth = time_synth(granularity)
            t0 = time.perf_counter()
            out = run_local(str(clip), granularity=granularity)
            wall = time.perf_counter() - t0
            rates = per_second(out["usage"])
            results[granularity] = {
                "synth_seconds": synth,
                "run_seconds": wall,
                **rates,
                "defects": len(out["defects"]),
                "workflow": out["workflow"],
            }
            ok = "ok" if wall <= TARGET_RUN_SECONDS else "OVER TARGET"
            print(
                f"distributed {granularity:>7}: {out['duration']:.1f} s {args.width}x{args.height}"
                f" stream in {wall:.1f} s wall (target <= {TARGET_RUN_SECONDS:.0f} s: {ok});"
                f" synth {synth:.1f} s (target <= {TARGET_SYNTH_SECONDS:.0f} s)"
            )
            print(
                f"distributed {granularity:>7}: {rates['transitions']:.1f} state transitions"
                f"/stream-s, {rates['s3_requests']:.1f} S3 requests/stream-s"
                f" (PUT {rates['s3_put']:.1f}, GET {rates['s3_get']:.1f};"
                f" {rates['s3_mb']:.0f} MB moved),"
                f" {rates['lambda_invocations']:.1f} Lambda invocations/stream-s,"
                f" {rates['lambda_gb_seconds']:.2f} Lambda GB-s/stream-s,"
                f" {len(out['defects'])} defects"
            )
            sys.stdout.flush()
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
