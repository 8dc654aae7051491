"""Live monitoring benchmark (in process): alert latency and lag behind the live edge.

A 360p25 H.264 + AAC clip with defects at the monitoring defaults' minimum durations (black 2 s,
clipping 1 s, freeze 3 s, silence 2 s, repeated every 15 s) is aired in real time by
``vqa.live_origin`` as live HLS with 2 s segments, and ``vqa.watch`` follows it in this process.

Printed:

- alert latency: from the moment the defect's start (end) aired to its ``defect.started``
  (``defect.ended``) event, max and median over the defects; the target (issue 8) for started is
  segment duration + minimum duration + 2 s;
- lag behind the live edge: wall time when a segment's detectors finished minus when its media's
  end aired (publishing takes up to one segment, finding it up to half a target duration), first
  and last third of the run (flat, not growing, means the monitor keeps up);
- missed defects and false alarms against the clip's truth;
- CPU seconds per stream second (process CPU, FFmpeg's threads included).

    python benchmarks/bench_live.py [--seconds 60] [--segment 2] [--loops 1] [--keep DIR]
        [--arch monolith | --arch distributed [--granularity frame|segment]]

With ``--arch monolith`` the same stream goes through the emulated monolith (one worker process
per shard, ``vqa.local.monolith.LiveMonolith``): latencies are those of the alerts read from its
EventBridge bus; lag is sampled at the workers' checkpoints (every 10 segments); CPU is the
workers' own (moto excluded).

With ``--arch distributed`` the same stream goes through the emulated distributed stack
(``vqa.local.distributed.watch``): latencies are those of the alerts read from its SNS topic;
lag is measured when each segment's Aggregate step finished (from the execution history); CPU
includes the emulation itself (moto, the interpreter), so it is not a Lambda figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FPS = 25
CYCLE = 15.0
#: Per cycle: (kind, start, end) in seconds from the cycle's start, at the default minimums.
#: Silence runs 2.5 s: AAC smears its edges by a few ms, and at exactly 2 s it would sit on the
#: threshold.
LAYOUT = [
    ("black", 2.0, 4.0),
    ("clipping", 5.0, 6.0),
    ("freeze", 7.2, 10.2),
    ("silence", 11.0, 13.5),
]


def make_clip(path: Path, *, seconds: float, width: int, height: int, gop: float) -> list[Any]:
    """Write the clip (cached by name) and return its truth: ``[(kind, start, end)]``."""
    from vqa import corpus as C

    truth = [
        (kind, c + a, c + b)
        for c in [k * CYCLE for k in range(int(seconds // CYCLE))]
        for kind, a, b in LAYOUT
    ]
    if not path.exists():
        scene = C.Scene(width, height, seed=5, seconds=seconds)
        video = [(a, b) for k, a, b in truth if k == "black"]
        frozen = [(a, b) for k, a, b in truth if k == "freeze"]
        timeline = C.Timeline(scene, width, height, black=video, freeze=frozen)
        spec = C.VideoSpec(width, height, FPS, C.cfr_times(seconds, FPS), timeline, gop_seconds=gop)
        pcm = C.music(seconds, seed=5)
        for k, a, b in truth:
            if k == "silence":
                C.inject_silence(pcm, a, b)
            elif k == "clipping":
                C.inject_clipping(pcm, a, b)
        C.encode(path, fmt="mp4", video=spec, audio=pcm)
    return truth


def _run_distributed(
    origin: Any, args: argparse.Namespace, events: list[Any], lags: list[float], first: list[float]
) -> None:
    """Follow ``origin`` through the emulated distributed stack (see the module docstring)."""
    import json

    from vqa.local.distributed import watch

    executions: list[dict[str, Any]] = []
    started = origin.started

    def ready() -> None:
        # Air from now: provisioning the emulated stack must not eat the programme.
        origin.started = time.time() - (time.time() - started) % args.segment

    for body in watch(
        origin.url,
        config={"granularity": args.granularity, "segment_seconds": args.segment},
        executions=executions,
        on_ready=ready,
    ):
        events.append({**body, "_wall": time.time()})
    pending: dict[str, Any] | None = None
    for e in (e for ex in executions for e in ex["history"]):
        if e["type"] == "LambdaFunctionSucceeded":
            out = json.loads(e["lambdaFunctionSucceededEventDetails"]["output"])
            if "cursor" in out and "segment" not in out and not first:  # Start: the edge
                first.append(origin.program_start(int(out["cursor"]["seq"])))
            if out.get("segment", {}).get("parts") and not out.get("waiting"):
                pending = out["segment"]
        elif (
            e["type"] == "TaskStateExited"
            and pending is not None
            and e["stateExitedEventDetails"]["name"] == "Aggregate"
        ):
            seq = int(pending["sequence"])
            end = origin.program_start(seq) + origin.segment(seq).duration
            lags.append(e["timestamp"].timestamp() - origin.aired(end))
            pending = None


def _run_monolith(
    origin: Any, args: argparse.Namespace, events: list[Any], lags: list[float], first: list[float]
) -> float:
    """Follow ``origin`` through the emulated monolith (one task per shard, as deployed); the
    alerts are read from its bus. Lag: each checkpoint log line (every 10 segments) of every
    shard, its stream time against when that media aired. Returns the workers' CPU seconds."""
    import json

    from vqa.local.monolith import LiveMonolith

    with LiveMonolith("", config={"segment_seconds": args.segment}, submit=False) as live:
        # Air from now: provisioning the emulated stack must not eat the programme.
        origin.started = time.time() - (time.time() - origin.started) % args.segment
        live.submit(origin.url)
        while not live.finished():
            events += [{**b, "_wall": time.time()} for b in live.tap.fresh(wait=1)]
        events += [{**b, "_wall": time.time()} for b in live.tap.fresh()]
        lines = [json.loads(ln) for w in live.workers for ln in w.lines if ln.startswith("{")]
    events += [{**b, "_wall": time.time()} for b in live.closed_alerts]
    joined = [d for d in lines if d["msg"] == "live stream joined"]
    first.append(origin.program_start(int(joined[0]["media_sequence"])))
    points = [(d["ts"], d["seen"]) for d in lines if d["msg"] == "checkpoint" and "seen" in d]
    lags += [ts - origin.aired(first[0] + seen) for ts, seen in sorted(points)]
    return float(live.meter.snapshot()["counters"].get("worker_cpu_seconds", 0.0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--segment", type=float, default=2.0, help="HLS segment duration (s)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--keep", type=Path, default=None, help="cache the clip in this directory")
    ap.add_argument(
        "--loops", type=int, default=1, help="air the clip this many times (a discontinuity each)"
    )
    ap.add_argument("--arch", choices=("distributed", "monolith"), default=None)
    ap.add_argument("--granularity", choices=("frame", "segment"), default="segment")
    args = ap.parse_args()

    from vqa.detectors import create
    from vqa.live_origin import LiveOrigin, package
    from vqa.segment import Segment
    from vqa.watch import watch

    tmp = tempfile.TemporaryDirectory()
    directory = args.keep or Path(tmp.name)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"live_{args.height}p{FPS}_{args.seconds:g}s_gop{args.segment:g}.mp4"
    t = time.time()
    truth = make_clip(
        directory / name,
        seconds=args.seconds,
        width=args.width,
        height=args.height,
        gop=args.segment,
    )
    segments = package(directory / name, segment_seconds=args.segment)
    print(f"clip {name}: {len(truth)} defects, {len(segments)} segments ({time.time() - t:.1f} s)")
    program = segments[-1].start + segments[-1].duration - segments[0].start
    truth = [(k, a + n * program, b + n * program) for n in range(args.loops) for k, a, b in truth]

    events: list[dict[str, Any]] = []
    lags: list[float] = []
    first: list[float] = []
    with LiveOrigin(segments, window=6, loops=args.loops) as origin:

        def emit(obj: dict[str, Any]) -> None:
            events.append({**obj, "_wall": time.time()})
            if obj["event"] == "stream.started":
                first.append(origin.program_start(obj["media_sequence"]))

        def on_segment(seg: Segment) -> None:
            # The media's real end (a segment's nominal end may lie past a short tail).
            v = seg.video
            if first and v is not None and len(v):
                end = float(v.times[-1]) + v.frame_duration
                lags.append(time.time() - origin.aired(end + first[0]))

        cpu0 = time.process_time()
        worker_cpu = 0.0
        if args.arch == "distributed":
            _run_distributed(origin, args, events, lags, first)
        elif args.arch == "monolith":
            worker_cpu = _run_monolith(origin, args, events, lags, first)
        thread = threading.Thread(
            target=watch,
            args=(origin.url,),
            # One analysis segment per HLS segment: each is analysed as soon as it is published.
            kwargs={"emit": emit, "on_segment": on_segment, "segment_seconds": args.segment},
        )
        if args.arch is None:
            thread.start()
            thread.join()
        cpu = time.process_time() - cpu0 + worker_cpu
    offset = first[0]
    started = {e["id"]: e for e in events if e["event"] == "defect.started"}
    found = [
        (e["kind"], e["start"] + offset, e["end"] + offset, started[e["id"]]["_wall"], e["_wall"])
        for e in events
        if e["event"] == "defect.ended"
    ]
    lat_start: dict[str, list[float]] = {}
    lat_end: dict[str, list[float]] = {}
    missed = []
    used = set()
    for kind, a, b in truth:
        match = [
            i
            for i, f in enumerate(found)
            if f[0] == kind and abs(f[1] - a) < 0.2 and abs(f[2] - b) < 0.2 and i not in used
        ]
        if not match:
            missed.append((kind, a, b))
            continue
        used.add(match[0])
        f = found[match[0]]
        lat_start.setdefault(kind, []).append(f[3] - origin.aired(a))
        lat_end.setdefault(kind, []).append(f[4] - origin.aired(b))
    false = [f[:3] for i, f in enumerate(found) if i not in used]

    where = args.arch or "in-process"
    if args.arch == "distributed":
        where += f" ({args.granularity})"
    print(
        f"{where}, {args.height}p{FPS} live HLS, {args.segment:g} s segments, "
        f"{args.loops * program:.0f} s aired:"
    )
    for kind in [k for k, _, _ in LAYOUT]:
        s, e = lat_start.get(kind, []), lat_end.get(kind, [])
        if not s:
            continue
        # Issue 8's targets: the distributed emulation's is 10 s whatever the kind.
        # (the monolith's is the in-process one: segment + minimum duration + 2 s).
        target = (
            10.0
            if args.arch == "distributed"
            else args.segment + create(kind).config.min_duration + 2.0
        )
        print(
            f"  {kind:<9} started latency max {max(s):5.2f} s median {statistics.median(s):5.2f} s"
            f" (target <= {target:.1f} s) | ended max {max(e):5.2f} s median "
            f"{statistics.median(e):5.2f} s  [{len(s)} defects]"
        )
    third = max(1, len(lags) // 3)
    print(
        f"  lag behind live edge: first third median {statistics.median(lags[:third]):.2f} s, "
        f"last third median {statistics.median(lags[-third:]):.2f} s, max {max(lags):.2f} s"
    )
    stream_seconds = args.loops * sum(s.duration for s in segments)
    print(f"  CPU per stream-second: {cpu / stream_seconds:.3f} s")
    print(f"  missed {len(missed)} {missed}  false alarms {len(false)} {false}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
