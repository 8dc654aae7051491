"""The TR 101 290 priority 1 corpus (``write_transport_corpus``): one clean MPEG-TS damaged at
the packet level, with truth from where the bytes were damaged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vqa.corpus.synth import Scene, Timeline, VideoSpec, cfr_times, encode, music
from vqa.corpus.truth import TRUTH_VERSION, stream_starts

# --------------------------------------------------------------------------------------------
# MPEG-TS transport damage (ETSI TR 101 290 priority 1), for the ``transport`` detector
# --------------------------------------------------------------------------------------------

#: The clean TS the transport clips are damaged from: long enough for a referred PID to stay
#: away longer than PID_error's 5 s period.
TRANSPORT_SECONDS, TRANSPORT_FPS = 10.0, 15
TS_PACKET = 188
#: PIDs FFmpeg's muxer gives the first programme: PMT, video (also the PCR PID), audio.
TS_PMT_PID, TS_VIDEO_PID, TS_AUDIO_PID, TS_NULL_PID = 0x1000, 0x100, 0x101, 0x1FFF
TRANSPORT_CLIPS = ("ts_drop.ts", "ts_sync.ts", "ts_psi.ts", "ts_pid.ts")


class _Packets:
    """The packets of a TS file, read one by one in plain Python (an implementation separate
    from :mod:`vqa.tsanalysis`, so the truth does not come from the code it checks)."""

    def __init__(self, data: bytes) -> None:
        if len(data) % TS_PACKET:
            raise ValueError("not a whole number of 188-byte packets")
        self.pk = [bytearray(data[i : i + TS_PACKET]) for i in range(0, len(data), TS_PACKET)]

    @staticmethod
    def pid(p: bytes | bytearray) -> int:
        return ((p[1] & 0x1F) << 8) | p[2]

    @staticmethod
    def pcr(p: bytes | bytearray) -> float | None:
        if p[3] & 0x20 and p[4] >= 7 and p[5] & 0x10:
            base = (p[6] << 25) | (p[7] << 17) | (p[8] << 9) | (p[9] << 1) | (p[10] >> 7)
            return base / 90000.0 + (((p[10] & 1) << 8) | p[11]) / 27e6
        return None

    def times(self, t0: float) -> list[float]:
        """Each packet's time (s from ``t0``): PCR interpolated by packet index (ISO/IEC
        13818-1 2.4.2.2), at the first / last interval's rate before / after the PCRs."""
        marks = [(i, t - t0) for i, p in enumerate(self.pk) if (t := self.pcr(p)) is not None]
        idx = [i for i, _ in marks]
        val = [t for _, t in marks]
        first = (val[1] - val[0]) / (idx[1] - idx[0])
        last = (val[-1] - val[-2]) / (idx[-1] - idx[-2])
        out = []
        for i in range(len(self.pk)):
            if i < idx[0]:
                out.append(val[0] - (idx[0] - i) * first)
            elif i > idx[-1]:
                out.append(val[-1] + (i - idx[-1]) * last)
            else:
                out.append(float(np.interp(i, idx, val)))
        return out

    def null_out(self, i: int) -> None:
        """Replace packet ``i`` by a null packet (a mux that stops sending that PID)."""
        self.pk[i] = bytearray([0x47, 0x1F, 0xFF, 0x10]) + bytearray([0xFF] * 184)

    def renumber(self, pid: int) -> None:
        """Make ``pid``'s continuity counters continuous again (after some were nulled)."""
        cc = None
        for p in self.pk:
            if self.pid(p) == pid and p[3] & 0x10:
                cc = p[3] & 0x0F if cc is None else (cc + 1) % 16
                p[3] = (p[3] & 0xF0) | cc

    def data(self) -> bytes:
        return b"".join(bytes(p) for p in self.pk)


def _ts_truth(
    indicator: str, pid: int | None, start: float, end: float, **extra: Any
) -> dict[str, Any]:
    return {
        "indicator": indicator,
        "pid": pid,
        "start": round(start, 6),
        "end": round(end, 6),
        **extra,
    }


def _first_at(pk: _Packets, times: list[float], t: float, pid: int, *, payload: bool) -> int:
    """Index of the first packet of ``pid`` at or after ``t`` s (carrying payload without a
    PCR, if ``payload``: dropping it leaves the clock alone)."""
    for i, p in enumerate(pk.pk):
        plain = p[3] & 0x10 and pk.pcr(p) is None
        if times[i] >= t and pk.pid(p) == pid and (plain or not payload):
            return i
    raise ValueError(f"no packet of PID {pid:#x} after {t} s")


def _ts_drop(pk: _Packets, times: list[float]) -> tuple[_Packets, list[dict[str, Any]]]:
    """Video packets lost on the link: 3 in a row at 2.0 s, 1 at 6.0 s."""
    truth, drop = [], []
    for at, n in ((2.0, 3), (6.0, 1)):
        i = _first_at(pk, times, at, TS_VIDEO_PID, payload=True)
        run = [i]
        while len(run) < n:
            run.append(_first_at(pk, times, times[run[-1]] + 1e-9, TS_VIDEO_PID, payload=True))
        drop += run
        # The error shows at the next video packet kept; packets keep their times (the PCRs
        # around are kept), the bytes after the hole move up.
        nxt = next(j for j in range(run[-1] + 1, len(pk.pk)) if pk.pid(pk.pk[j]) == TS_VIDEO_PID)
        truth.append((nxt, run[0], n))
    kept = [i for i in range(len(pk.pk)) if i not in set(drop)]
    out = _Packets(b"".join(bytes(pk.pk[i]) for i in kept))
    new_index = {old: new for new, old in enumerate(kept)}
    return out, [
        {"at_packet": new_index[nxt], "lost_from": lost, "lost": n} for nxt, lost, n in truth
    ]


def write_transport_corpus(outdir: Path | str) -> dict[str, Any]:
    """Write the four TR 101 290 clips and ``transport_truth.json`` into ``outdir``.

    One clean 10 s TS (320x180, 15 fps, H.264 + AAC) is damaged at the packet level:

    - ``ts_drop.ts``: video packets removed (3 at 2.0 s, 1 at 6.0 s): 1.4 Continuity_count_error
      on the video PID at the next video packet.
    - ``ts_sync.ts``: one corrupted sync byte at 2.0 s (1.2 Sync_byte_error) and four in a row at
      5.0 s (1.2 and 1.1 TS_sync_loss until the next correct sync byte, the first of the five
      that re-acquire sync).
    - ``ts_psi.ts``: PAT and PMT replaced by null packets over [3.0, 4.0) s (CCs renumbered so
      only the tables are missing): 1.3 PAT_error and 1.5 PMT_error over the absence.
    - ``ts_pid.ts``: the audio PID replaced by null packets over [2.0, 8.5) s: 1.6 PID_error.

    Truth times are the packets' PCR times (interpolated by an implementation of its own), from
    the earliest stream start as :mod:`vqa.media` counts them. Each clip also lists ``damaged``:
    the intervals the damage touches, outside which nothing may be reported.
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    w, h, fps, seconds = 320, 180, TRANSPORT_FPS, TRANSPORT_SECONDS
    ref = out / "ts_clean.ts"
    scene = Scene(w, h, seed=41, seconds=seconds)
    spec = VideoSpec(w, h, fps, cfr_times(seconds, fps), Timeline(scene, w, h))
    encode(ref, fmt="mpegts", video=spec, audio=music(seconds, seed=41))
    t0 = min(stream_starts(ref).values())
    clean = _Packets(ref.read_bytes())
    times = clean.times(t0)
    clips: list[dict[str, Any]] = [
        {"file": ref.name, "defects": [], "damaged": [], "purpose": "clean: no alarm"}
    ]
    # The tolerance on boundaries: the longest time one packet takes on the link.
    packet_interval = float(np.max(np.diff(times)))

    def pkt(tt: list[float], i: int) -> tuple[float, float]:
        return tt[i], tt[i + 1] if i + 1 < len(tt) else tt[i]

    # Dropped packets.
    dropped, marks = _ts_drop(clean, times)
    dt = dropped.times(t0)
    defects = [
        _ts_truth("1.4 Continuity_count_error", TS_VIDEO_PID, *pkt(dt, m["at_packet"]))
        for m in marks
    ]
    (out / "ts_drop.ts").write_bytes(dropped.data())
    clips.append(
        {
            "file": "ts_drop.ts",
            "defects": defects,
            "damaged": [[d["start"], d["end"]] for d in defects],
            "cc_errors": {str(TS_VIDEO_PID): len(marks)},
            "purpose": "video packets lost: continuity errors on the video PID",
        }
    )

    # Corrupted sync bytes: the slots stay, so times stay.
    sync = _Packets(clean.data())
    # Packets without a PCR: a corrupted packet's PCR is lost too, which would move the clock.
    single = _first_at(sync, times, 2.0, TS_VIDEO_PID, payload=True)
    burst = _first_at(sync, times, 5.0, TS_VIDEO_PID, payload=True)
    for i in (single, *range(burst, burst + 4)):
        sync.pk[i][0] = 0x46
    (out / "ts_sync.ts").write_bytes(sync.data())
    clips.append(
        {
            "file": "ts_sync.ts",
            "defects": [
                _ts_truth("1.2 Sync_byte_error", None, *pkt(times, single)),
                _ts_truth("1.2 Sync_byte_error", None, times[burst], times[burst + 2]),
                _ts_truth("1.1 TS_sync_loss", None, times[burst], times[burst + 4]),
            ],
            # The damaged packets' own PIDs lose them: continuity errors follow within 0.5 s.
            "damaged": [[times[single], times[single] + 0.5], [times[burst], times[burst] + 0.5]],
            "purpose": "corrupted sync bytes: one alone, then four in a row (sync lost)",
        }
    )

    # PAT and PMT missing for a second.
    psi = _Packets(clean.data())
    gone = [
        i for i, p in enumerate(psi.pk) if 3.0 <= times[i] < 4.0 and psi.pid(p) in (0, TS_PMT_PID)
    ]
    for i in gone:
        psi.null_out(i)
    psi.renumber(0)
    psi.renumber(TS_PMT_PID)
    defects = []
    for indicator, pid in (("1.3 PAT_error", 0), ("1.5 PMT_error", TS_PMT_PID)):
        seen = [i for i, p in enumerate(psi.pk) if psi.pid(p) == pid and p[1] & 0x40]
        before = max(i for i in seen if times[i] < 3.0)
        after = min(i for i in seen if times[i] >= 4.0)
        defects.append(_ts_truth(indicator, pid, times[before], times[after]))
    (out / "ts_psi.ts").write_bytes(psi.data())
    clips.append(
        {
            "file": "ts_psi.ts",
            "defects": defects,
            "damaged": [[d["start"], d["end"]] for d in defects],
            "purpose": "PAT and PMT not sent for 1 s (limit 0.5 s)",
        }
    )

    # The audio PID gone for 6.5 s.
    pidc = _Packets(clean.data())
    aud = [i for i, p in enumerate(pidc.pk) if pidc.pid(p) == TS_AUDIO_PID]
    for i in aud:
        if 2.0 <= times[i] < 8.5:
            pidc.null_out(i)
    pidc.renumber(TS_AUDIO_PID)
    before = max(i for i in aud if times[i] < 2.0)
    after = min(i for i in aud if times[i] >= 8.5)
    defect = _ts_truth("1.6 PID_error", TS_AUDIO_PID, times[before], times[after])
    (out / "ts_pid.ts").write_bytes(pidc.data())
    clips.append(
        {
            "file": "ts_pid.ts",
            "defects": [defect],
            "damaged": [[defect["start"], defect["end"]]],
            "purpose": "the audio PID the PMT lists is absent for 6.5 s (limit 5 s)",
        }
    )
    truth = {"version": TRUTH_VERSION, "t0": t0, "packet_interval": packet_interval, "clips": clips}
    (out / "transport_truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return truth
