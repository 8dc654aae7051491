"""Scale benchmark: N concurrent streams through the monolith emulation on this machine.

For each N, one emulated deployment (moto, the synthesized VqaMonolith template) runs N streams
at once, as ECS would: N tasks of every shard (each worker runs one job at a time), the
orchestrator invoked once per stream. Prints, per N:

- each stream's real-time factor (stream seconds / wall seconds from its request until its last
  shard finished): >= 1 means this machine keeps up with N live streams of this profile;
- the workers' CPU per stream-second (metered by each worker, as the cost model uses it), the
  share of the machine's cores the workers used, and the share the emulated AWS (moto's server
  and the orchestrator, in this process) used: on a shared machine the load average says how
  much else ran.

The source is a file, so workers decode as fast as they can: the factor is the headroom a live
stream of the same profile would have. Uses the emulation's public functions
(:func:`vqa.local.monolith.create_emulation`, ``start_worker``, ``invoke_orchestrator``,
``stop_worker``, ``finish_worker``).

    python -m benchmarks.bench_scale [--streams 1,2,4,6] [--seconds 30] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_streams(clip: Path, n: int) -> dict[str, Any]:
    """``n`` concurrent streams of ``clip`` through one emulated monolith deployment."""
    from vqa.local.monolith import (
        WorkerProcess,
        create_emulation,
        finish_worker,
        invoke_orchestrator,
        start_worker,
        stop_worker,
    )
    from vqa.meter import Meter
    from vqa.results import read_status

    emu = create_emulation()
    key = f"sources/{uuid.uuid4().hex[:8]}/{clip.name}"
    emu.client("s3").put_object(Bucket=emu.source_bucket, Key=key, Body=clip.read_bytes())
    streams = [f"scale-{n}-{i}-{uuid.uuid4().hex[:6]}" for i in range(n)]
    started: dict[str, float] = {}
    done: dict[str, dict[str, float]] = {s: {} for s in streams}
    lock = threading.Lock()

    def on_line(wp: WorkerProcess, line: str) -> None:
        try:
            doc = json.loads(line)
        except ValueError:
            return
        if doc.get("message") == "job done" and doc.get("stream_id") in done:
            with lock:
                done[doc["stream_id"]][wp.shard.name] = time.monotonic()

    meter = Meter()
    cpu_by_worker: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="vqa-scale-") as tmp:
        # N tasks of every shard, already running (imports done) before the requests arrive,
        # as a service scaled out for N streams would be.
        workers = [
            start_worker(emu, shard, Path(tmp), on_line=on_line)
            for shard in emu.shards
            for _ in range(n)
        ]
        time.sleep(2.0)
        t0 = time.monotonic()
        # This process runs the emulated AWS (moto's server) and the orchestrator.
        emulator_cpu0 = time.process_time()
        try:
            for stream in streams:
                started[stream] = time.monotonic()
                invoke_orchestrator(
                    emu, {"stream": stream, "source": f"s3://{emu.source_bucket}/{key}"}, meter
                )
            deadline = time.monotonic() + 3600
            dynamodb = emu.client("dynamodb")
            while time.monotonic() < deadline:
                states = [
                    getattr(read_status(dynamodb=dynamodb, table=emu.table, stream=s), "state", "")
                    for s in streams
                ]
                if all(st in ("done", "failed") for st in states):
                    break
                if all(wp.proc.poll() is not None for wp in workers):
                    break
                time.sleep(0.5)
            wall = time.monotonic() - t0
            emulator_cpu = time.process_time() - emulator_cpu0
        finally:
            for wp in workers:
                stop_worker(wp)
            for wp in workers:
                if wp.usage_file.exists():
                    counters = json.loads(wp.usage_file.read_text()).get("counters", {})
                    cpu_by_worker.append(
                        (wp.shard.name, float(counters.get("worker_cpu_seconds", 0.0)))
                    )
                finish_worker(wp, meter)
    failed = [s for s in streams if len(done[s]) < len(emu.shards)]
    if failed:
        raise SystemExit(f"bench_scale: {len(failed)} of {n} streams did not finish")
    status = read_status(dynamodb=emu.client("dynamodb"), table=emu.table, stream=streams[0])
    if status is None:
        raise SystemExit("bench_scale: no status recorded for the first stream")
    duration = float(status.duration)
    rtf = [duration / (max(done[s].values()) - started[s]) for s in streams]
    cpu = sum(c for _, c in cpu_by_worker)
    return {
        "streams": n,
        "duration": duration,
        "rtf": rtf,
        "wall": wall,
        "cpu_per_stream_second": cpu / (n * duration),
        "cpu_by_shard": {
            sh.name: sum(c for name, c in cpu_by_worker if name == sh.name) / (n * duration)
            for sh in emu.shards
        },
        "machine_cpu": cpu / wall / (os.cpu_count() or 1),
        "emulator_cpu": emulator_cpu / wall / (os.cpu_count() or 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", default="1,2,4,6", help="comma-separated stream counts")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the 360p30 clip")
    ap.add_argument("--keep", type=Path, default=ROOT / "out" / "bench-scale")
    args = ap.parse_args(argv)
    from vqa.corpus import write_sample_clip

    args.keep.mkdir(parents=True, exist_ok=True)
    clip = args.keep / f"scale-360p30-{args.seconds:g}s.mp4"
    if not clip.exists():
        write_sample_clip(clip, seconds=args.seconds, width=640, height=360, fps=30)
    cores = os.cpu_count() or 1
    print(
        f"monolith emulation, {clip.name}, {cores} cores (load average before: "
        f"{os.getloadavg()[0]:.1f}):"
    )
    keeps_up = 0
    for n in (int(x) for x in args.streams.split(",")):
        r = run_streams(clip, n)
        rtf = r["rtf"]
        shards = ", ".join(f"{k} {v:.3f}" for k, v in r["cpu_by_shard"].items())
        print(
            f"  {n:>3} streams: real-time factor per stream min {min(rtf):.2f} median"
            f" {statistics.median(rtf):.2f} max {max(rtf):.2f}; worker CPU"
            f" {r['cpu_per_stream_second']:.3f} s per stream-second ({shards}); workers use"
            f" {100 * r['machine_cpu']:.0f}% and the emulated AWS {100 * r['emulator_cpu']:.0f}%"
            f" of {cores} cores; load average {os.getloadavg()[0]:.1f}; wall {r['wall']:.1f} s",
            flush=True,
        )
        if min(rtf) >= 1.0:
            keeps_up = n
    print(f"most concurrent 360p30 streams kept in real time here: {keeps_up}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
