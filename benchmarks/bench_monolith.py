"""Monolith benchmark: worker CPU vs ``vqa analyze``, 1080p30 streams per vCPU, local wall time.

Targets (issue 4):

- worker CPU per stream-second (all shards together) <= 1.1 x ``vqa analyze``'s on the same clip;
- a local monolith run of a 60 s clip takes <= 1.5 x the wall time of ``vqa analyze`` on it.

It also prints how many 1080p30 streams one vCPU analyses in real time with the default shards.

    python benchmarks/bench_monolith.py [--seconds 60] [--hd-seconds 20] [--keep DIR]

Clips are generated with ``vqa.corpus.write_sample_clip`` (cached in ``DIR`` with ``--keep``).
CPU is process CPU (``time.process_time``: every thread, FFmpeg's decoder threads included);
the workers measure their own (moto, which stands in for AWS, is not counted).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_clip(directory: Path, name: str, *, seconds: float, width: int, height: int) -> Path:
    from vqa.corpus import write_sample_clip

    path = directory / name
    if not path.exists():
        t0 = time.perf_counter()
        write_sample_clip(path, seconds=seconds, width=width, height=height)
        print(
            f"  wrote {path.name} ({width}x{height}, {seconds:.0f} s) in "
            f"{time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
    return path


def analyze_in_process(path: Path) -> dict[str, float]:
    from vqa.analyze import analyze

    cpu0, t0 = time.process_time(), time.perf_counter()
    result = analyze(str(path))
    return {
        "cpu": time.process_time() - cpu0,
        "wall": time.perf_counter() - t0,
        "duration": result.duration,
        "defects": len(result.defects),
    }


def monolith_in_process(path: Path) -> dict[str, Any]:
    from vqa.local.monolith import run_local

    t0 = time.perf_counter()
    out = run_local(str(path))
    return {
        "cpu": out["usage"]["counters"]["worker_cpu_seconds"],
        "wall": time.perf_counter() - t0,
        "duration": out["duration"],
        "defects": len(out["defects"]),
        "usage": out["usage"],
    }


def shard_cpu(path: Path) -> list[tuple[str, float]]:
    """CPU of each shard's worker alone (one emulated run per shard)."""
    from vqa.local.monolith import MonolithSettings, run_local

    default = MonolithSettings.from_config(None)
    out = []
    for group in default.shards:
        run = run_local(str(path), config={"shards": [list(group)]})
        out.append((",".join(group), run["usage"]["counters"]["worker_cpu_seconds"]))
    return out


def cli_wall(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "vqa", *args, "--json"],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="length of the 360p clip")
    p.add_argument("--hd-seconds", type=float, default=20.0, help="length of the 1080p30 clip")
    p.add_argument("--keep", type=Path, default=None, help="directory to cache the clips in")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        directory = args.keep or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        clip = make_clip(
            directory,
            f"bench-360p-{args.seconds:.0f}s.mp4",
            seconds=args.seconds,
            width=640,
            height=360,
        )
        hd = make_clip(
            directory,
            f"bench-1080p-{args.hd_seconds:.0f}s.mp4",
            seconds=args.hd_seconds,
            width=1920,
            height=1080,
        )

        # Warm caches (imports, the moto server, page cache) once.
        analyze_in_process(clip)
        monolith_in_process(clip)

        results: dict[str, Any] = {}
        for label, path in (("360p", clip), ("1080p30", hd)):
            a = analyze_in_process(path)
            m = monolith_in_process(path)
            assert a["defects"] == m["defects"], "parity broken: different defect counts"
            ratio = (m["cpu"] / m["duration"]) / (a["cpu"] / a["duration"])
            results[label] = {"analyze": a, "monolith": m, "cpu_ratio": ratio}
            print(
                f"{label}: analyze CPU {a['cpu'] / a['duration'] * 1000:.1f} ms per stream-s, "
                f"monolith workers {m['cpu'] / m['duration'] * 1000:.1f} ms per stream-s "
                f"-> {ratio:.2f}x (target <= 1.1x) "
                f"[{'PASS' if ratio <= 1.1 else 'MISS'}]"
            )

        hd_cpu = results["1080p30"]["monolith"]["cpu"] / results["1080p30"]["monolith"]["duration"]
        print(
            f"1080p30: {1 / hd_cpu:.1f} streams per vCPU in real time "
            f"(all shards; worker CPU {hd_cpu:.3f} s per stream-second)"
        )
        for group, cpu in shard_cpu(hd):
            per = cpu / results["1080p30"]["monolith"]["duration"]
            print(f"  shard {group}: {per:.3f} CPU-s per stream-s -> {1 / per:.1f} streams/vCPU")

        a_wall = results["360p"]["analyze"]["wall"]
        m_wall = results["360p"]["monolith"]["wall"]
        ratio = m_wall / a_wall
        print(
            f"{args.seconds:.0f} s clip wall time (in process): analyze {a_wall:.2f} s, "
            f"local monolith run {m_wall:.2f} s -> {ratio:.2f}x (target <= 1.5x) "
            f"[{'PASS' if ratio <= 1.5 else 'MISS'}]"
        )
        a_cli = cli_wall(["analyze", str(clip)])
        m_cli = cli_wall(["run", str(clip), "--arch", "monolith"])
        print(
            f"{args.seconds:.0f} s clip wall time (CLI): vqa analyze {a_cli:.2f} s, "
            f"vqa run --arch monolith {m_cli:.2f} s -> {m_cli / a_cli:.2f}x"
        )
        usage = results["360p"]["monolith"]["usage"]
        print(
            "usage of the 360p run:",
            json.dumps(
                {
                    "requests": usage["requests"],
                    "bytes": usage["bytes"],
                    "counters": usage["counters"],
                },
                sort_keys=True,
            ),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
