"""Cost of the transport analyser (and loudness, when registered) per stream-second, next to a
1080p30 decode.

Uses the 1080p30 H.264 + AAC clip of :mod:`benchmarks.bench_analyze` (encoded once, cached),
remuxed to MPEG-TS without re-encoding. CPU seconds per stream second, best of ``--repeat``:

- ``decode``: ``vqa.media.iter_segments`` decoding video and audio (the TS read through the tee,
  as ``vqa analyze`` reads it);
- ``transport cut``: the tee, PCR clock and per-segment cut alone (``tracks=()``: no decoding);
- ``transport detector``: :class:`~vqa.detectors.transport.TransportDetector` over those chunks;
- ``loudness detector``: the loudness detector over the decoded audio, if the package has one.

Issue 12's target: loudness + transport together at most 10 % of the decode.

    python -m benchmarks.bench_transport [--seconds 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.bench_analyze import line, make_clip

TARGET_PCT = 10.0


def make_ts(clip: Path) -> Path:
    """``clip`` remuxed to MPEG-TS (stream copy), once."""
    import av

    path = clip.with_suffix(".ts")
    if path.is_file():
        return path
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.ts")
    try:
        with av.open(str(clip)) as inp, av.open(str(tmp), "w", format="mpegts") as out:
            streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
            for pkt in inp.demux():
                if pkt.dts is None:
                    continue
                pkt.stream = streams[pkt.stream.index]
                out.mux(pkt)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def best_cpu(fn: Callable[[], Any], repeat: int) -> float:
    """Least CPU seconds of ``repeat`` runs of ``fn``."""
    best = float("inf")
    for _ in range(repeat):
        c0 = time.process_time()
        fn()
        best = min(best, time.process_time() - c0)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20.0, help="clip length (default 20)")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)

    from vqa.detectors import DETECTORS, create
    from vqa.media import iter_segments

    ts = str(make_ts(make_clip(args.seconds)))
    size = Path(ts).stat().st_size

    def decode() -> None:
        for _ in iter_segments(ts):
            pass

    chunks: list[Any] = []

    def cut() -> None:
        chunks[:] = list(iter_segments(ts, tracks=()))

    def transport() -> None:
        det = create("transport")
        for seg in chunks:
            det.process(seg)
        det.flush()

    t_decode = best_cpu(decode, args.repeat)
    t_cut = best_cpu(cut, args.repeat)
    t_det = best_cpu(transport, args.repeat)
    stream_s = chunks[-1].end if chunks else args.seconds
    per = 1000.0 / stream_s  # ms of CPU per stream second
    line("source", f"{ts} ({size / stream_s * 8 / 1e6:.1f} Mbit/s, {stream_s:g} s)")
    line("decode 1080p30 (ms CPU / stream s)", t_decode * per)
    line("transport cut: tee + PCR clock (ms CPU / stream s)", t_cut * per)
    line("transport detector: TR 101 290 (ms CPU / stream s)", t_det * per)
    total = t_cut + t_det
    line("transport total (% of decode)", 100.0 * total / t_decode)
    if "loudness" in DETECTORS:
        audio = list(iter_segments(ts, tracks=("audio",)))

        def loudness() -> None:
            det = create("loudness")
            for seg in audio:
                det.process(seg)
            det.flush()

        t_loud = best_cpu(loudness, args.repeat)
        line("loudness detector (ms CPU / stream s)", t_loud * per)
        total += t_loud
        met = total <= t_decode * TARGET_PCT / 100
        line(
            "loudness + transport (% of decode)",
            100.0 * total / t_decode,
            f"target <= {TARGET_PCT:g} %: {'met' if met else 'MISSED'}",
        )
    else:
        line("loudness detector", "not registered in this checkout")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
