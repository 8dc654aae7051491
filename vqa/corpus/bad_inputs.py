"""Sources that cannot be analysed at all, for the bad-input tests (not part of any corpus)."""

from __future__ import annotations

from pathlib import Path

from vqa.corpus.synth import Scene, Timeline, VideoSpec, cfr_times, encode, music

# ---- the bad-input helpers used by tests (not part of the corpus) ------------------------------


def write_undecodable(path: Path | str) -> None:
    """A valid MP4 whose only stream declares EVC (``evc1``), which FFmpeg cannot decode.

    The sample entry of an H.264 encode is relabelled: the container opens, the stream is video,
    and opening a decoder fails (FFmpeg has no native MPEG-5 EVC decoder).
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".h264.mp4")
    spec = VideoSpec(
        160, 96, 30, cfr_times(1.0, 30), Timeline(Scene(160, 96, seed=5, seconds=1), 160, 96)
    )
    encode(tmp, fmt="mp4", video=spec, audio=None)
    data = tmp.read_bytes()
    tmp.unlink()
    i = data.index(b"stsd")
    path.write_bytes(data[:i] + data[i:].replace(b"avc1", b"evc1", 1))


def write_no_moov(path: Path | str) -> None:
    """An MP4 written without faststart (index at the end), cut just before its ``moov`` box."""
    path = Path(path)
    tmp = path.with_name(path.name + ".full.mp4")
    spec = VideoSpec(
        160, 96, 30, cfr_times(1.0, 30), Timeline(Scene(160, 96, seed=6, seconds=1), 160, 96)
    )
    encode(tmp, fmt="mp4", video=spec, audio=music(1.0, seed=6))
    data = tmp.read_bytes()
    tmp.unlink()
    off = 0
    while off + 8 <= len(data):
        size = int.from_bytes(data[off : off + 4], "big")
        kind = data[off + 4 : off + 8]
        if kind == b"moov":
            break
        if size == 1:
            size = int.from_bytes(data[off + 8 : off + 16], "big")
        off += max(size, 8)
    else:
        raise RuntimeError("no moov box found")
    path.write_bytes(data[:off])
