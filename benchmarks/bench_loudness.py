"""Loudness benchmark: the detector's cost per stream-second beside a 1080p30 decode.

    python -m benchmarks.bench_loudness [--seconds 20] [--repeat 3]

Uses ``benchmarks.bench_analyze``'s cached 1080p30 H.264 + AAC 48 kHz stereo clip (encoded once
into ``.cache/bench/``). Decodes it once with ``vqa.media.iter_segments`` (both tracks, as a shard
does) and measures that pass's CPU seconds; then runs the loudness detector over the decoded audio
segments, ``--repeat`` times, and reports the best (the machine is shared). Also times its two
halves alone: the K-weighting (two biquads, both channels) and the 4x true-peak interpolation, on
the same audio. CPU time, not wall time: decoding uses threads, the detector one core, and the
budget (issue 12: loudness and transport together <= 10 % of a decode) is about CPU.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from benchmarks.bench_analyze import FPS, HEIGHT, make_clip


def line(name: str, value: Any, note: str = "") -> None:
    text = f"{value:.2f}" if isinstance(value, float) else str(value)
    print(f"{name}: {text}{'  # ' + note if note else ''}", flush=True)


def best_cpu(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        c0 = time.process_time()
        fn()
        times.append(time.process_time() - c0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    from vqa.detectors.loudness import LoudnessDetector, k_filter
    from vqa.media import iter_segments

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="clip length (cached per length)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    clip = make_clip(args.seconds)
    c0, t0 = time.process_time(), time.perf_counter()
    segments = [seg for seg in iter_segments(str(clip)) if seg.audio is not None]
    decode_cpu, decode_wall = time.process_time() - c0, time.perf_counter() - t0
    stream_s = sum(seg.audio.n / seg.audio.rate for seg in segments if seg.audio is not None)
    for seg in segments:
        seg.video = None  # free the planes; the detector reads audio only
    first = segments[0].audio
    assert first is not None
    rate, channels = first.rate, first.samples.shape[0]

    def detector() -> None:
        det = LoudnessDetector()
        for seg in segments:
            det.process(seg)
        det.flush()

    def kweighting() -> None:
        state = np.zeros((2, channels, 2))
        for seg in segments:
            assert seg.audio is not None
            _, state = k_filter(seg.audio.samples.astype(np.float64), state, rate)

    def true_peak() -> None:
        det = LoudnessDetector()
        det._restart(0.0, rate, channels)
        for seg in segments:
            assert seg.audio is not None
            det._true_peak(seg.audio.samples, seg.audio.start)

    loud = best_cpu(detector, args.repeat)
    kw = best_cpu(kweighting, args.repeat)
    tp = best_cpu(true_peak, args.repeat)
    per = 1000.0 / stream_s
    line("clip", f"{clip.name} ({stream_s:.1f} s, audio {rate} Hz x {channels})")
    line(f"decode_{HEIGHT}p{FPS}_cpu_ms_per_stream_s", decode_cpu * per,
         f"wall {decode_wall * per:.1f} ms; video + audio, iter_segments")  # fmt: skip
    line("loudness_cpu_ms_per_stream_s", loud * per, f"best of {args.repeat}")
    line("  k_weighting_cpu_ms_per_stream_s", kw * per)
    line("  true_peak_cpu_ms_per_stream_s", tp * per)
    line("loudness_share_of_decode_pct", 100.0 * loud / decode_cpu, "target with transport: <= 10")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
