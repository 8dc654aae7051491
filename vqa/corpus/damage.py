"""Bitstream damage: clips altered at the packet or MPEG-TS byte level from a clean encode, with
their truth measured by decoding both and comparing luma.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from vqa.corpus.synth import Scene, Timeline, VideoSpec, Yuv, _fmt, cfr_times, encode, music
from vqa.corpus.truth import _defect, _entry

#: A decoded frame counts as damaged when its luma differs from the clean decode's by more than
#: this mean absolute difference (8-bit levels); decoding is deterministic, so intact frames
#: compare equal and any concealed or mispredicted frame exceeds this by far.
DAMAGE_MAD = 0.05
#: Damaged runs separated by at most this many intact frames are one corruption interval (a
#: B-frame predicted only from intact pictures does not make the picture "whole again").
DAMAGE_MERGE_FRAMES = 2


# ---- bitstream damage ------------------------------------------------------------------------


def luma_of(frame: av.VideoFrame) -> Yuv:
    """The decoded Y plane as a ``(height, width)`` uint8 copy (video range, no conversion)."""
    plane = frame.planes[0]
    rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(frame.height, plane.line_size)
    out: Yuv = rows[:, : frame.width].copy()
    return out


def decode_luma(path: Path) -> tuple[dict[int, Yuv], Fraction, int | None]:
    """Decode every video frame that decodes: ``{pts: luma (h, w)}``, time base, first pts.

    Packets are decoded one by one so that a decoder error skips that packet instead of ending
    the decode (as a broadcast monitor would).
    """
    frames: dict[int, Yuv] = {}
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        tb = vs.time_base
        assert tb is not None
        for pkt in c.demux(vs):
            try:
                decoded = pkt.decode()
            except av.error.FFmpegError:
                continue
            for fr in decoded:
                if fr.pts is not None:
                    frames[int(fr.pts)] = luma_of(fr)
    first = min(frames) if frames else None
    return frames, Fraction(tb), first


def compare_decodes(clean: Path, damaged: Path, *, fps: int, duration: float) -> dict[str, Any]:
    """Truth for a damaged clip: damaged and missing frame times and corruption intervals.

    Walks the clean decode in presentation order. A frame is damaged when it decodes but its
    luma differs from the clean one (mean absolute difference above ``DAMAGE_MAD``), missing
    when it does not decode at all (dropped, undecodable or cut off; for a truncated file only
    frames before the last decoded one count). An interval runs from the first damaged or
    missing frame to the next intact frame (end exclusive), or to the end of what decodes.
    """
    ref, tb, origin = decode_luma(clean)
    bad, tb2, _ = decode_luma(damaged)
    assert origin is not None and tb == tb2
    last_decoded = max(bad) if bad else origin

    def sec(pts: int) -> float:
        return round(float((pts - origin) * tb), 6)

    damaged_frames: list[float] = []
    missing: list[float] = []
    runs: list[list[int]] = []  # [first bad index, first intact index after it] in `order`
    order = [pts for pts in sorted(ref) if pts <= last_decoded]
    for i, pts in enumerate(order):
        if pts not in bad:
            missing.append(sec(pts))
        elif float(np.abs(bad[pts].astype(np.int16) - ref[pts]).mean()) > DAMAGE_MAD:
            damaged_frames.append(sec(pts))
        else:
            continue
        if runs and i - runs[-1][1] <= DAMAGE_MERGE_FRAMES:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    end_decoded = round(sec(last_decoded) + 1.0 / fps, 6)
    intervals = [
        [sec(order[a]), sec(order[b]) if b < len(order) else min(end_decoded, duration)]
        for a, b in runs
    ]
    return {
        "damaged_frames": damaged_frames,
        "missing_frames": missing,
        "intervals": intervals,
        "decoded_end": end_decoded,
        "frames": len(bad),
    }


def _remux(src: Path, dst: Path, alter: Callable[[int, av.Packet], av.Packet | None]) -> None:
    """Copy ``src`` to ``dst`` packet by packet; ``alter(video_index, pkt)`` may change or drop
    a video packet (``None`` drops it)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=_fmt(dst)) as out:
        mapping = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        vidx = inp.streams.video[0].index
        k = 0
        for pkt in inp.demux():
            if pkt.dts is None and pkt.size == 0:
                continue  # demuxer flush packet
            new: av.Packet | None = pkt
            if pkt.stream.index == vidx:
                new = alter(k, pkt)
                k += 1
            if new is None:
                continue
            new.stream = mapping[pkt.stream.index]
            out.mux(new)


def _copy_packet(pkt: av.Packet, data: bytes) -> av.Packet:
    new = av.Packet(data)
    new.pts, new.dts, new.time_base = pkt.pts, pkt.dts, pkt.time_base
    new.duration = pkt.duration
    new.is_keyframe = pkt.is_keyframe
    return new


def _video_packet_times(path: Path) -> list[tuple[float, bool]]:
    """``(dts seconds, is_keyframe)`` of each video packet in decode order."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        out = []
        for pkt in c.demux(vs):
            if pkt.dts is None:
                continue
            out.append((float(pkt.dts * pkt.time_base), bool(pkt.is_keyframe)))
    return out


DAMAGE_SECONDS, DAMAGE_FPS = 8.0, 30


def _damage_clean(outdir: Path, name: str, *, seed: int) -> Path:
    """The clean encode damaged clips are derived from (kept under ``reference/``)."""
    seconds, fps, w, h = DAMAGE_SECONDS, DAMAGE_FPS, 320, 180
    ref = outdir / "reference" / name
    ref.parent.mkdir(parents=True, exist_ok=True)
    scene = Scene(w, h, seed=seed, seconds=seconds)
    spec = VideoSpec(w, h, fps, cfr_times(seconds, fps), Timeline(scene, w, h))
    encode(ref, fmt=_fmt(ref), video=spec, audio=music(seconds, seed=seed))
    return ref


def _damage_entry(
    name: str, ref: Path, outdir: Path, *, purpose: str, **extra: Any
) -> dict[str, Any]:
    seconds, fps = DAMAGE_SECONDS, DAMAGE_FPS
    cmp = compare_decodes(ref, outdir / name, fps=fps, duration=seconds)
    truncated = bool(extra.pop("truncated", False))
    duration = cmp["decoded_end"] if truncated else seconds
    defects = [
        _defect("corruption", a, b, frames=sum(1 for t in cmp["damaged_frames"] if a <= t < b))
        for a, b in cmp["intervals"]
    ]
    entry = _entry(
        name,
        duration=duration,
        fps=fps,
        width=320,
        height=180,
        has_video=True,
        has_audio=True,
        defects=defects,
        purpose=purpose,
        reference=str(ref.relative_to(outdir)),
        frames=cmp["frames"],
        missing_frames=cmp["missing_frames"],
        **extra,
    )
    entry["damaged_frames"] = cmp["damaged_frames"]
    if truncated:
        entry["truncated"] = True
    return entry


def _pick_packets(path: Path, at: list[float]) -> list[int]:
    """Indices (decode order) of the first non-key video packet at or after each time."""
    times = _video_packet_times(path)
    picks = []
    for t in at:
        for i, (dts, key) in enumerate(times):
            if dts >= t and not key:
                picks.append(i)
                break
    return picks


def _flip_clip(outdir: Path, name: str, ref: Path, *, seed: int) -> dict[str, Any]:
    targets = set(_pick_packets(ref, [2.3, 5.4]))
    rng = np.random.default_rng(seed)

    def alter(k: int, pkt: av.Packet) -> av.Packet | None:
        if k not in targets:
            return pkt
        data = bytearray(bytes(pkt))
        # Keep the NAL length prefix and slice header start; scramble 2% of the slice data.
        lo = min(len(data) - 1, 12)
        count = max(6, len(data) // 50)
        pos = rng.integers(lo, len(data), count)
        for p in pos:
            data[int(p)] ^= int(rng.integers(1, 256))
        return _copy_packet(pkt, bytes(data))

    _remux(ref, outdir / name, alter)
    return _damage_entry(
        name, ref, outdir,
        purpose="bytes flipped inside two video packets (MP4 remux): corruption until the next "
        "keyframe",
    )  # fmt: skip


def _drop_clip(outdir: Path, name: str, ref: Path) -> dict[str, Any]:
    first = _pick_packets(ref, [3.3, 6.1])
    targets = {first[0], first[0] + 1, first[0] + 2, first[1]}

    def alter(k: int, pkt: av.Packet) -> av.Packet | None:
        return None if k in targets else pkt

    _remux(ref, outdir / name, alter)
    return _damage_entry(
        name, ref, outdir,
        purpose="video packets dropped (3 at ~3.3 s, 1 at ~6.1 s): visible only as timestamp gaps "
        "and the damage that follows",
    )  # fmt: skip


def _ts_packets(data: bytes | bytearray, pid: int) -> list[int]:
    """Byte offsets of the 188-byte TS packets of ``pid`` that do not start a PES."""
    out = []
    for off in range(0, len(data) - 187, 188):
        if data[off] != 0x47:
            continue
        p = ((data[off + 1] & 0x1F) << 8) | data[off + 2]
        pusi = data[off + 1] & 0x40
        if p == pid and not pusi:
            out.append(off)
    return out


def _ts_payload_start(data: bytes | bytearray, off: int) -> int:
    afc = (data[off + 3] >> 4) & 0x3
    start = off + 4
    if afc in (2, 3):
        start += 1 + data[off + 4]
    return min(start, off + 188)


def _video_pid(path: Path) -> int:
    with av.open(str(path)) as c:
        return int(c.streams.video[0].id)


def _ts_damage_clip(outdir: Path, name: str, ref: Path, *, seed: int) -> dict[str, Any]:
    data = bytearray(ref.read_bytes())
    offs = _ts_packets(data, _video_pid(ref))
    rng = np.random.default_rng(seed)
    hits = [offs[int(len(offs) * 0.3)], *offs[int(len(offs) * 0.68) : int(len(offs) * 0.68) + 3]]
    for off in hits:
        start = _ts_payload_start(data, off)
        data[start : off + 188] = rng.integers(0, 256, off + 188 - start, dtype=np.uint8).tobytes()
    (outdir / name).write_bytes(bytes(data))
    return _damage_entry(
        name, ref, outdir,
        purpose="payload of 4 MPEG-TS packets of the video PID overwritten (sync bytes and "
        "headers kept)",
        damaged_ts_packets=[off // 188 for off in hits],
    )  # fmt: skip


def _truncated_clip(outdir: Path, name: str, ref: Path) -> dict[str, Any]:
    data = ref.read_bytes()
    offs = _ts_packets(data, _video_pid(ref))
    # Cut in the middle of a TS packet inside a video PES about 60% into the file.
    cut = offs[int(len(offs) * 0.6)] + 100
    (outdir / name).write_bytes(data[:cut])
    return _damage_entry(
        name, ref, outdir,
        purpose="MPEG-TS cut mid-packet at ~60%: analysed as far as it goes; the picture cut in "
        "half is corruption",
        truncated=True,
        cut_bytes=cut,
    )  # fmt: skip
