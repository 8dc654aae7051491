"""MPEG-TS packet analysis: the stream clock (PCR), a tee reader, ETSI TR 101 290 priority 1.

Three pieces, all over raw 188-byte packets (ISO/IEC 13818-1 transport packets) viewed as an
``(n, 188)`` uint8 array, with vector operations on the header columns (no Python loop per
packet; only PSI sections, a few per second, are parsed one by one):

- :class:`PcrClock` maps byte offsets to stream time. Time is the programme clock reference of the
  first PID seen carrying one (the PCR PID of a single-programme stream), interpolated linearly
  between consecutive PCRs by byte offset (ISO/IEC 13818-1 2.4.2.2: the bytes between two PCRs
  arrive at a constant rate), in seconds relative to ``t0``, the start time :mod:`vqa.media`
  uses (the earliest stream's first PTS; PCR and PTS count the same 90 kHz system clock, so the
  MPEG-TS offset is removed the same way and a packet's time is comparable with frame times).
  Bytes before the first PCR and after the last one (at the end of the source) are timed at the
  first / last interval's byte rate.
- :class:`TsTee` is the read-once reader: PyAV demuxes through it while it keeps the bytes
  (bounded) and cuts them into per-segment :class:`~vqa.segment.TransportChunk` objects by
  packet time, so segment ``k`` carries exactly the packets timed in ``[k*L, (k+1)*L)``: the same
  bytes whether the source is decoded in one pass or segment ``k`` is decoded after a seek.
- :class:`Tr101290` is the priority 1 analyser with JSON state; :mod:`vqa.detectors.transport`
  merges its errors into defects.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vqa.segment import TransportChunk

PACKET = 188
SYNC = 0x47
NULL_PID = 0x1FFF
#: TR 101 290 1.1: sync is acquired after this many consecutive correct sync bytes ...
SYNC_ACQUIRE = 5
#: ... and lost after this many consecutive corrupted ones.
SYNC_LOSE = 2
#: PCR and PTS are 33-bit counts of a 90 kHz clock: they wrap every 2**33 / 90 kHz (~26.5 h).
PCR_WRAP = float(2**33) / 90000.0

# Indicator names (TR 101 290 table 5.0a, priority 1), as defects carry them.
SYNC_LOSS = "1.1 TS_sync_loss"
SYNC_BYTE = "1.2 Sync_byte_error"
PAT_ERROR = "1.3 PAT_error"
CC_ERROR = "1.4 Continuity_count_error"
PMT_ERROR = "1.5 PMT_error"
PID_ERROR = "1.6 PID_error"
INDICATORS = (SYNC_LOSS, SYNC_BYTE, PAT_ERROR, CC_ERROR, PMT_ERROR, PID_ERROR)


def looks_like_ts(head: bytes) -> bool:
    """True if ``head`` (the first few KB of a source) is packetised MPEG-TS: sync bytes at a
    188-byte stride from one of the first 188 offsets, for :data:`SYNC_ACQUIRE` packets."""
    arr = np.frombuffer(head, dtype=np.uint8)
    return find_sync(arr, 0) is not None


def find_sync(arr: NDArray[np.uint8], start: int) -> int | None:
    """First offset ``>= start`` where :data:`SYNC_ACQUIRE` sync bytes follow at a 188 stride."""
    span = (SYNC_ACQUIRE - 1) * PACKET
    last = len(arr) - span - 1  # last offset whose run fits in ``arr``
    if last < start:
        return None
    ok = arr[start : last + 1] == SYNC
    for j in range(1, SYNC_ACQUIRE):
        ok &= arr[start + j * PACKET : last + 1 + j * PACKET] == SYNC
    hits = np.flatnonzero(ok)
    return int(start + hits[0]) if len(hits) else None


def _fields(pk: NDArray[np.uint8]) -> dict[str, NDArray[Any]]:
    """Header fields of an ``(n, 188)`` packet array (ISO/IEC 13818-1 table 2-2)."""
    b1, b3 = pk[:, 1], pk[:, 3]
    afc = (b3 >> 4) & 3
    has_af = (afc & 2) > 0
    afl = np.where(has_af, pk[:, 4], 0).astype(np.int64)
    flags = np.where(has_af & (afl > 0), pk[:, 5], 0)
    return {
        "tei": (b1 & 0x80) > 0,
        "pusi": (b1 & 0x40) > 0,
        "pid": ((b1.astype(np.int64) & 0x1F) << 8) | pk[:, 2],
        "tsc": b3 >> 6,
        "payload": (afc & 1) > 0,
        "afc": afc,
        "cc": b3 & 0x0F,
        "afl": afl,
        "disc": (flags & 0x80) > 0,
        "pcr": has_af & (afl >= 7) & ((flags & 0x10) > 0),
    }


def _pcr_seconds(pk: NDArray[np.uint8]) -> NDArray[np.float64]:
    """PCR (base / 90 kHz + extension / 27 MHz) of packets known to carry one, in seconds."""
    b = pk[:, 6:12].astype(np.int64)
    base = (b[:, 0] << 25) | (b[:, 1] << 17) | (b[:, 2] << 9) | (b[:, 3] << 1) | (b[:, 4] >> 7)
    ext = ((b[:, 4] & 1) << 8) | b[:, 5]
    out: NDArray[np.float64] = base / 90000.0 + ext / 27e6
    return out


# --------------------------------------------------------------------------- clock


class PcrClock:
    """Byte offset -> stream time from the PCRs of a contiguous run of bytes fed in order."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.pid: int | None = None  # the PCR PID followed
        self.offsets: list[int] = []  # anchor byte offsets (packet starts), increasing
        self.times: list[float] = []  # their times (s from t0), strictly increasing
        self.phase: int | None = None  # packet alignment: offset % 188 while in sync
        self._carry = b""
        self._carry_off = 0

    def feed(self, data: bytes, offset: int) -> None:
        """Bytes ``[offset, offset + len(data))``, following the bytes fed before."""
        buf = self._carry + data
        base = offset - len(self._carry)
        arr = np.frombuffer(buf, dtype=np.uint8)
        pos = 0
        if self.phase is not None:
            pos = (self.phase - base) % PACKET
        while True:
            if self.phase is None:
                found = find_sync(arr, pos)
                if found is None:
                    keep = max(pos, len(arr) - SYNC_ACQUIRE * PACKET)
                    self._carry, self._carry_off = buf[keep:], base + keep
                    self.phase = None
                    return
                pos = found
                self.phase = (base + pos) % PACKET
            n = (len(arr) - pos) // PACKET
            pk = arr[pos : pos + n * PACKET].reshape(n, PACKET)
            bad = pk[:, 0] != SYNC
            lost = np.flatnonzero(bad[:-1] & bad[1:])
            m = int(lost[0]) if len(lost) else n
            self._anchors(pk[:m][~bad[:m]], base + pos + PACKET * np.flatnonzero(~bad[:m]))
            if m < n:  # sync lost: look for it again after the damage
                pos += (m + SYNC_LOSE) * PACKET
                self.phase = None
                continue
            rest = pos + n * PACKET
            self._carry, self._carry_off = buf[rest:], base + rest
            return

    def partial_pid(self) -> int | None:
        """The PID of the packet the bytes fed so far end inside (in sync, its header read);
        None if they end on a packet boundary."""
        tail = self._carry
        if self.phase is None or not 3 <= len(tail) < PACKET or tail[0] != SYNC:
            return None
        return ((tail[1] & 0x1F) << 8) | tail[2]

    def _anchors(self, pk: NDArray[np.uint8], offs: NDArray[np.int64]) -> None:
        if not len(pk):
            return
        f = _fields(pk)
        has = f["pcr"] & ~f["tei"]
        if self.pid is None:
            idx = np.flatnonzero(has)
            if not len(idx):
                return
            self.pid = int(f["pid"][idx[0]])
        has &= f["pid"] == self.pid
        if not has.any():
            return
        secs = _pcr_seconds(pk[has]) - self.t0
        prev = self.times[-1] if self.times else 0.0
        for off, t in zip(offs[has].tolist(), secs.tolist(), strict=True):
            # Unwrap the 33-bit clock around the previous PCR (or t0 for the first one).
            t += round((prev - t) / PCR_WRAP) * PCR_WRAP
            if self.times and t <= self.times[-1]:
                continue  # a PCR discontinuity or a repeated PCR: keep time increasing
            self.offsets.append(int(off))
            self.times.append(t)
            prev = t

    def drop_before(self, offset: int) -> None:
        """Forget anchors no longer needed: keep the last one at or before ``offset``."""
        i = int(np.searchsorted(np.asarray(self.offsets), offset, side="right")) - 1
        if i > 0:
            del self.offsets[:i], self.times[:i]

    def time_of(self, offset: float) -> float:
        return float(np.interp(offset, self.offsets, self.times)) if self.times else 0.0

    def offset_at(self, t: float) -> float | None:
        """The byte offset where time reaches ``t``, if a PCR at or after ``t`` has been seen."""
        if not self.times or self.times[-1] < t:
            return None
        return float(np.interp(t, self.times, self.offsets))

    def anchors(self, lo: int, hi: int, *, extrapolate: bool) -> tuple[list[int], list[float]]:
        """The anchors that time bytes ``[lo, hi)``: those inside plus one either side.

        ``extrapolate``: the source ended, so bytes after the last PCR continue at the last
        interval's rate (one synthetic anchor at ``hi``).
        """
        offs, times = self.offsets, self.times
        if not offs:
            return [lo], [0.0]
        a = max(0, int(np.searchsorted(offs, lo, side="right")) - 1)
        b = min(len(offs), int(np.searchsorted(offs, hi, side="left")) + 1)
        o, t = offs[a:b], times[a:b]
        if lo < offs[0] and len(offs) >= 2:
            # Before the first PCR: at the first interval's rate (distinct times, not clamped).
            rate = (times[1] - times[0]) / (offs[1] - offs[0])
            o, t = [lo, *o], [times[0] - (offs[0] - lo) * rate, *t]
        if extrapolate and hi > offs[-1] and len(offs) >= 2:
            rate = (times[-1] - times[-2]) / (offs[-1] - offs[-2])
            o, t = [*o, hi], [*t, times[-1] + (hi - offs[-1]) * rate]
        return list(o), list(t)


# --------------------------------------------------------------------------- tee reader

#: Bytes read ahead of the demuxer to find the PCR that closes a segment (a PCR follows PTS by
#: the mux delay, ~0.7 s in FFmpeg's muxer), and the most kept for the demuxer to read.
TEE_BLOCK = 256 * 1024
TEE_MAX_AHEAD = 64 * 1024 * 1024
#: More than the demuxer buffers of what it read (PyAV's AVIO buffer: 32 KiB by default).
DEMUXER_BUFFER = 1024 * 1024


class TsTee(io.RawIOBase):
    """A reader PyAV demuxes through that keeps the bytes for the packet analysis.

    Every byte comes from ``inner`` once: what the analysis reads ahead of the demuxer is kept for
    the demuxer, what the demuxer reads is kept until the analysis has cut it into a segment.
    Seeks (the demuxer probing the end of a file, the converter seeking to a segment) are passed
    on; the analysis starts where :meth:`start` says and then follows the bytes in order.
    """

    def __init__(
        self,
        inner: Any,
        *,
        follows: bool = True,
        hls: bool = False,
        max_ahead: int = TEE_MAX_AHEAD,
    ) -> None:
        """``follows=False``: these bytes do not continue the stream analysed before them (a
        live reconnection); the first chunk says so. ``hls``: an HLS media segment (its chunks
        say so: tables come once per segment there)."""
        self._hls = hls
        super().__init__()
        self._inner = inner
        self._seekable = bool(inner.seekable())
        self._ipos = inner.tell() if self._seekable else 0  # where ``inner`` stands
        self._win = bytearray()  # kept bytes [woff, woff + len(win))
        self._woff = self._ipos
        self._pos = self._ipos  # the demuxer's position
        self._eof: int | None = None  # size, once known
        self._max = max_ahead
        self.last_seek = self._ipos
        self.clock: PcrClock | None = None
        self._acur = 0  # analysis: next byte to hand out
        self._fed = 0  # analysis: bytes fed to the clock so far
        self._follows = follows

    # ---- file protocol (PyAV) ----

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._seekable

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if not self._seekable:
            raise io.UnsupportedOperation("seek")
        if whence == io.SEEK_END:
            self._ipos = self._inner.seek(offset, io.SEEK_END)
            self._eof = self._inner.seek(0, io.SEEK_END)
            self._inner.seek(self._ipos)
            self._pos = self._ipos
        else:
            self._pos = max(0, (self._pos if whence == io.SEEK_CUR else 0) + offset)
        self.last_seek = self._pos
        return self._pos

    def readinto(self, b: Any) -> int:
        data = self._get(self._pos, len(b))
        b[: len(data)] = data
        self._pos += len(data)
        self._trim()
        return len(data)

    def _get(self, off: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``off``: from the kept window, extended from ``inner``."""
        wend = self._woff + len(self._win)
        if self._woff <= off < wend:
            return bytes(self._win[off - self._woff : off - self._woff + n])
        if off != wend:  # outside what is kept: start a new window there
            self._win, self._woff = bytearray(), off
        if self._ipos != off:
            self._inner.seek(off)
            self._ipos = off
        data = self._inner.read(max(n, 65536))
        if data is None:
            data = b""
        self._ipos += len(data)
        if not data:
            self._eof = off
        self._win += data
        return bytes(data[:n])

    def _trim(self) -> None:
        keep_from = self._pos if self.clock is None else min(self._pos, self._acur)
        cut = min(keep_from, self._woff + len(self._win)) - self._woff
        if len(self._win) - cut > self._max:  # the analysis fell too far behind: let it go
            cut = len(self._win) - self._max
        if cut > 1 << 20:
            del self._win[:cut]
            self._woff += cut

    def close_source(self) -> None:
        """Close the file this tee reads (the container does not own it)."""
        self._inner.close()

    # ---- analysis ----

    @property
    def exhausted(self) -> bool:
        """The analysis has taken every byte of the source."""
        return self._eof is not None and self._acur >= self._eof

    @property
    def time_reached(self) -> float:
        """Stream time of the next byte the analysis would take."""
        return 0.0 if self.clock is None else self.clock.time_of(self._acur)

    def start(self, t0: float, offset: int | None = None) -> None:
        """Start the analysis at ``offset`` (default: where the demuxer reads after a seek), with
        times relative to ``t0``.

        After a seek the demuxer may have found its target inside its own buffer, without a
        seek here; starting before both the last seek and what it may hold buffered is safe
        (the caller discards the packets timed before its first segment)."""
        self.clock = PcrClock(t0)
        if offset is None:
            offset = max(0, min(self.last_seek, self._pos - DEMUXER_BUFFER))
        self._acur = self._fed = offset

    def cut_pid(self) -> int | None:
        """Once the source has ended: the PID of the packet it ends inside (a file cut short, a
        connection dropped mid-packet), whose PES therefore never arrived whole; None if it
        ends on a packet boundary, or the analysis has not started."""
        if self.clock is None or self._eof is None:
            return None
        self._feed_until(None)
        return self.clock.partial_pid() if self._fed >= self._eof else None

    def _feed_until(self, t: float | None) -> bool:
        """Feed the clock until a PCR at or after ``t`` is seen; False if the source ended (or
        the read-ahead limit was hit) first."""
        assert self.clock is not None
        while t is None or self.clock.offset_at(t) is None:
            if self._fed - self._acur > self._max:
                return False
            data = self._get(self._fed, TEE_BLOCK)
            if not data:
                return False
            self.clock.feed(data, self._fed)
            self._fed += len(data)
        return True

    def take(self, until: float | None) -> TransportChunk:
        """The bytes from the last cut to the first packet timed at or after ``until`` (None:
        to the end of the source), with the anchors that time them."""
        assert self.clock is not None
        clock = self.clock
        bounded = self._feed_until(until)
        cut = self._fed
        if bounded and until is not None:
            at = clock.offset_at(until)
            assert at is not None
            phase = clock.phase if clock.phase is not None else 0
            cut = min(self._fed, int(phase + PACKET * np.ceil((at - phase - 1e-6) / PACKET)))
        cut = max(cut, self._acur)
        lo = self._acur
        data = self._get_range(lo, cut)
        offs, times = clock.anchors(lo, cut, extrapolate=not bounded)
        self._acur = cut
        clock.drop_before(cut)
        self._trim()
        follows, self._follows = self._follows, True
        return TransportChunk(
            data=data,
            offset=lo,
            anchor_offsets=offs,
            anchor_times=times,
            follows=follows,
            hls=self._hls,
        )

    def _get_range(self, lo: int, hi: int) -> bytes:
        parts, off = [], lo
        while off < hi:
            part = self._get(off, hi - off)
            if not part:
                break
            parts.append(part)
            off += len(part)
        return b"".join(parts)


# --------------------------------------------------------------------------- TR 101 290


@dataclass(frozen=True)
class Limits:
    """Timing limits (seconds): TR 101 290 5.2.1 gives 0.5 s for PAT and PMT; PID_error's period
    is the user's, and the standard suggests it not exceed 5 s for video or audio PIDs."""

    pat: float = 0.5
    pmt: float = 0.5
    pid: float = 5.0


#: One error: (indicator, pid or -1, start s, end s).
Error = tuple[str, int, float, float]


class Tr101290:
    """ETSI TR 101 290 priority 1 over a byte stream fed chunk by chunk, state as plain JSON.

    - 1.1 TS_sync_loss: from the first of :data:`SYNC_LOSE` consecutive corrupted sync bytes
      until sync is acquired again (the first of :data:`SYNC_ACQUIRE` correct ones).
    - 1.2 Sync_byte_error: each packet slot whose sync byte is not 0x47 while in sync. Such a
      packet's header is not trusted: it is excluded from the checks below.
    - 1.3 PAT_error: no PAT section (table_id 0x00 starting on PID 0) for more than ``pat``
      seconds (the interval between the last and next one), a section on PID 0 with another
      table_id, or PID 0 scrambled.
    - 1.4 Continuity_count_error: per PID, a payload packet whose continuity_counter is not the
      previous one plus 1 modulo 16 (wrong order, lost packets), except one duplicate (the same
      counter once more) and packets with discontinuity_indicator set. Adaptation-field-only
      packets do not advance the counter and are not checked; the null PID is not checked;
      packets with transport_error_indicator set (priority 2's business) are left out.
    - 1.5 PMT_error: as 1.3 for every PMT PID the PAT lists (table_id 0x02).
    - 1.6 PID_error: a PID the PMT refers to (elementary streams) absent for more than ``pid``
      seconds.

    An error's interval is one packet for packet errors, and the whole absence for a missing
    table or PID (from its last occurrence to its next, or to the end of the stream).
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.reset()

    def reset(self) -> None:
        self.carry = b""
        self.synced = False
        self.bad_run = 0  # consecutive corrupted sync bytes so far (in sync)
        self.bad_start = 0.0  # time of the first of them
        self.loss_start: float | None = None  # open sync loss
        self.cc: dict[int, tuple[int, bool]] = {}  # pid -> (last counter, last was a repeat)
        self.pat_seen: float | None = None  # last PAT section (or where watching began)
        self.pmt_seen: dict[int, float] = {}  # PMT PID -> last section
        self.es_seen: dict[int, float] = {}  # referred PID -> last packet
        self.pmt_es: dict[int, list[int]] = {}  # PMT PID -> the PIDs it refers to
        self.packets = 0
        self.now = 0.0  # end of the last packet analysed
        self.hls = False  # the last chunk was an HLS media segment

    # ---- state ----

    def get_state(self) -> dict[str, Any]:
        return {
            "carry": base64.b64encode(self.carry).decode(),
            "synced": self.synced,
            "bad_run": self.bad_run,
            "bad_start": self.bad_start,
            "loss_start": self.loss_start,
            "cc": {str(k): list(v) for k, v in self.cc.items()},
            "pat_seen": self.pat_seen,
            "pmt_seen": {str(k): v for k, v in self.pmt_seen.items()},
            "es_seen": {str(k): v for k, v in self.es_seen.items()},
            "pmt_es": {str(k): v for k, v in self.pmt_es.items()},
            "packets": self.packets,
            "now": self.now,
            "hls": self.hls,
        }

    def set_state(self, s: dict[str, Any]) -> None:
        self.carry = base64.b64decode(s["carry"])
        self.synced, self.bad_run = bool(s["synced"]), int(s["bad_run"])
        self.bad_start, self.loss_start = float(s["bad_start"]), s["loss_start"]
        self.cc = {int(k): (int(v[0]), bool(v[1])) for k, v in s["cc"].items()}
        self.pat_seen = s["pat_seen"]
        self.pmt_seen = {int(k): float(v) for k, v in s["pmt_seen"].items()}
        self.es_seen = {int(k): float(v) for k, v in s["es_seen"].items()}
        self.pmt_es = {int(k): [int(p) for p in v] for k, v in s["pmt_es"].items()}
        self.packets, self.now = int(s["packets"]), float(s["now"])
        self.hls = bool(s.get("hls", False))

    # ---- analysis ----

    def feed(self, chunk: TransportChunk) -> list[Error]:
        """Analyse one chunk (following the previous one); the errors found, in time order."""
        if not chunk.follows:
            self._restart()
        self.hls = chunk.hls
        buf = self.carry + chunk.data
        base = chunk.offset - len(self.carry)
        arr = np.frombuffer(buf, dtype=np.uint8)
        ao = np.asarray(chunk.anchor_offsets, dtype=np.float64)
        at = np.asarray(chunk.anchor_times, dtype=np.float64)

        def when(offs: NDArray[Any]) -> NDArray[np.float64]:
            out: NDArray[np.float64] = np.interp(offs, ao, at)
            return out

        errors: list[Error] = []
        pos = 0
        while True:
            if not self.synced:
                found = find_sync(arr, pos)
                if found is None:
                    self.carry = buf[max(pos, len(arr) - SYNC_ACQUIRE * PACKET + 1) :]
                    break
                pos, self.synced, self.bad_run = found, True, 0
                if self.loss_start is not None:
                    t = float(when(np.array([base + pos]))[0])
                    errors.append((SYNC_LOSS, -1, self.loss_start, max(t, self.loss_start)))
                    self.loss_start = None
            n = (len(arr) - pos) // PACKET
            pk = arr[pos : pos + n * PACKET].reshape(n, PACKET)
            offs = base + pos + PACKET * np.arange(n + 1, dtype=np.int64)
            times = when(offs)
            bad = pk[:, 0] != SYNC
            # Sync is lost at the second of two corrupted sync bytes in a row (the first may
            # have ended the previous chunk).
            second = np.zeros(n, dtype=np.bool_)
            second[1:] = bad[1:] & bad[:-1]
            if n and self.bad_run:
                second[0] = bad[0]
            hits = np.flatnonzero(second)
            m = int(hits[0]) if len(hits) else n
            self._packets(pk[:m], times[: m + 1], bad[:m], errors)
            if m < n:
                lost_at = float(times[m - 1]) if m else self.bad_start
                errors.append((SYNC_BYTE, -1, float(times[m]), float(times[m + 1])))
                self.loss_start, self.synced, self.bad_run = lost_at, False, 0
                pos += (m + 1) * PACKET
                continue
            if n:
                self.bad_run = int(bad[-1])
                self.bad_start = float(times[n - 1])
            self.carry = buf[pos + n * PACKET :]
            break
        errors.sort(key=lambda e: (e[2], e[0], e[1]))
        return errors

    def _restart(self) -> None:
        """New bytes that do not continue the old (a live reconnection, whose outage is
        ``input_loss``): acquire sync and counters afresh, time absences from here."""
        packets, now = self.packets, self.now
        self.reset()
        self.packets, self.now = packets, now

    def _packets(
        self,
        pk: NDArray[np.uint8],
        times: NDArray[np.float64],
        bad: NDArray[np.bool_],
        errors: list[Error],
    ) -> None:
        """Checks 1.2-1.6 over in-sync packets; ``times`` has one more entry (the end)."""
        n = len(pk)
        if not n:
            return
        start, end = times[:-1], times[1:]
        self.packets += n
        if self.pat_seen is None:
            self.pat_seen = float(start[0])
        for i in np.flatnonzero(bad).tolist():
            errors.append((SYNC_BYTE, -1, float(start[i]), float(end[i])))
        good = np.flatnonzero(~bad)
        pk, start, end = pk[good], start[good], end[good]
        f = _fields(pk)
        self._continuity(f, start, end, errors)
        self._tables(pk, f, start, end, errors)
        self._presence(f["pid"], start, errors)
        self.now = float(times[-1])

    def _continuity(
        self,
        f: dict[str, NDArray[Any]],
        start: NDArray[np.float64],
        end: NDArray[np.float64],
        errors: list[Error],
    ) -> None:
        sel = np.flatnonzero(f["payload"] & ~f["tei"] & (f["pid"] != NULL_PID))
        if not len(sel):
            return
        pid = f["pid"][sel]
        order = np.argsort(pid, kind="stable")
        idx = sel[order]
        pid = pid[order]
        ccv = f["cc"][idx].astype(np.int64)
        disc = f["disc"][idx]
        head = np.ones(len(idx), dtype=np.bool_)
        head[1:] = pid[1:] != pid[:-1]
        prev = np.empty(len(idx), dtype=np.int64)
        prev[1:] = ccv[:-1]
        prev_rep = np.zeros(len(idx), dtype=np.bool_)
        heads = np.flatnonzero(head)
        for h in heads.tolist():  # one per PID in the chunk: the counter saved from before
            p = int(pid[h])
            last = self.cc.get(p)
            prev[h] = -1 if last is None else last[0]
            prev_rep[h] = False if last is None else last[1]
        repeat = (ccv == prev) & (prev >= 0)
        # A repeat after a repeat (the third packet with one counter) is not the allowed one.
        rep_before = np.empty(len(idx), dtype=np.bool_)
        rep_before[1:] = repeat[:-1]
        rep_before[head] = prev_rep[head]
        ok = (prev < 0) | disc | (ccv == (prev + 1) % 16) | (repeat & ~rep_before)
        for i in np.flatnonzero(~ok).tolist():
            j = int(idx[i])
            errors.append((CC_ERROR, int(pid[i]), float(start[j]), float(end[j])))
        tails = np.append(heads[1:], len(idx)) - 1
        for t in tails.tolist():
            self.cc[int(pid[t])] = (int(ccv[t]), bool(repeat[t] & ok[t]))

    def _tables(
        self,
        pk: NDArray[np.uint8],
        f: dict[str, NDArray[Any]],
        start: NDArray[np.float64],
        end: NDArray[np.float64],
        errors: list[Error],
    ) -> None:
        """PAT and PMT sections: parsed one by one (a few per second). The PAT's packets go
        first, so a PMT PID it lists is watched from the PAT that listed it on."""
        pid = f["pid"]
        listed: dict[int, float] = {}  # PMT PID first listed in this chunk -> when
        for phase in (0, 1):
            watched = pid == 0 if phase == 0 else np.isin(pid, list(self.pmt_seen))
            for i in np.flatnonzero(watched).tolist():
                p, t = int(pid[i]), float(start[i])
                if phase == 1 and (p not in self.pmt_seen or t < listed.get(p, -np.inf)):
                    continue
                indicator = PAT_ERROR if p == 0 else PMT_ERROR
                if f["tsc"][i]:
                    errors.append((indicator, p, t, float(end[i])))
                    continue
                if not (f["pusi"][i] and f["payload"][i]):
                    continue
                payload = pk[i, 4 + (1 + int(f["afl"][i]) if f["afc"][i] & 2 else 0) :]
                if len(payload) < 2 or int(payload[0]) + 1 >= len(payload):
                    continue
                section = payload[1 + int(payload[0]) :]
                table_id = int(section[0])
                if table_id == 0xFF:  # stuffing
                    continue
                if table_id != (0x00 if p == 0 else 0x02):
                    errors.append((indicator, p, t, float(end[i])))
                    continue
                if p == 0:
                    self._gap(PAT_ERROR, 0, self.pat_seen, t, self.limits.pat, errors)
                    self.pat_seen = t
                    for q in self._read_pat(section, t):
                        listed.setdefault(q, t)
                else:
                    self._gap(PMT_ERROR, p, self.pmt_seen[p], t, self.limits.pmt, errors)
                    self.pmt_seen[p] = t
                    self._read_pmt(p, section, t)

    def _read_pat(self, section: NDArray[np.uint8], t: float) -> set[int]:
        """Follow the PMT PIDs the PAT lists; returns those it adds."""
        length = ((int(section[1]) & 0x0F) << 8) | int(section[2])
        body = section[8 : min(len(section), 3 + length) - 4]  # after the header, before CRC
        progs = body[: len(body) // 4 * 4].reshape(-1, 4).astype(np.int64)
        pmts = {
            int(p)
            for p in ((progs[:, 2] & 0x1F) << 8 | progs[:, 3])[(progs[:, 0] << 8 | progs[:, 1]) > 0]
        }
        added = pmts - set(self.pmt_seen)
        for p in added:
            self.pmt_seen[p] = t  # watched from the PAT that lists it
        for p in set(self.pmt_seen) - pmts:
            del self.pmt_seen[p]
            for es in self.pmt_es.pop(p, []):
                self.es_seen.pop(es, None)
        return added

    def _read_pmt(self, pmt: int, section: NDArray[np.uint8], t: float) -> None:
        length = ((int(section[1]) & 0x0F) << 8) | int(section[2])
        stop = min(len(section), 3 + length) - 4
        info = ((int(section[10]) & 0x0F) << 8) | int(section[11])
        i, pids = 12 + info, []
        while i + 5 <= stop:
            pids.append(((int(section[i + 1]) & 0x1F) << 8) | int(section[i + 2]))
            i += 5 + (((int(section[i + 3]) & 0x0F) << 8) | int(section[i + 4]))
        for p in set(self.pmt_es.get(pmt, [])) - set(pids):
            self.es_seen.pop(p, None)
        for p in pids:
            self.es_seen.setdefault(p, t)
        self.pmt_es[pmt] = pids

    def _presence(
        self, pid: NDArray[np.int64], start: NDArray[np.float64], errors: list[Error]
    ) -> None:
        for p in list(self.es_seen):
            seen = start[pid == p]
            if not len(seen):
                continue
            last = self.es_seen[p]
            gaps = np.diff(np.concatenate([[last], seen]))
            for g in np.flatnonzero(gaps > self.limits.pid).tolist():
                a = last if g == 0 else float(seen[g - 1])
                errors.append((PID_ERROR, p, a, float(seen[g])))
            self.es_seen[p] = float(seen[-1])

    def _gap(
        self,
        indicator: str,
        pid: int,
        last: float | None,
        t: float,
        limit: float,
        errors: list[Error],
    ) -> None:
        # HLS media segments carry PAT and PMT once, at their start (RFC 8216 3.4, Apple's HLS
        # authoring spec): the 0.5 s repetition is a rule for a continuous broadcast stream.
        if self.hls and indicator in (PAT_ERROR, PMT_ERROR):
            return
        if last is not None and t - last > limit:
            errors.append((indicator, pid, last, t))

    def ongoing(self) -> float | None:
        """Start of the earliest error still under way (a sync loss not yet recovered, a table
        or PID absent longer than its limit), if any: live monitoring announces it."""
        starts = [] if self.loss_start is None else [self.loss_start]
        errors: list[Error] = []
        self._gap(PAT_ERROR, 0, self.pat_seen, self.now, self.limits.pat, errors)
        for p, last in self.pmt_seen.items():
            self._gap(PMT_ERROR, p, last, self.now, self.limits.pmt, errors)
        for p, last in self.es_seen.items():
            self._gap(PID_ERROR, p, last, self.now, self.limits.pid, errors)
        starts += [e[2] for e in errors]
        return min(starts) if starts else None

    def flush(self) -> list[Error]:
        """End of stream: absences still under way and an open sync loss end at the last packet."""
        errors: list[Error] = []
        now = self.now
        if self.loss_start is not None:
            errors.append((SYNC_LOSS, -1, self.loss_start, max(now, self.loss_start)))
            self.loss_start = None
        self._gap(PAT_ERROR, 0, self.pat_seen, now, self.limits.pat, errors)
        for p, last in self.pmt_seen.items():
            self._gap(PMT_ERROR, p, last, now, self.limits.pmt, errors)
        for p, last in self.es_seen.items():
            self._gap(PID_ERROR, p, last, now, self.limits.pid, errors)
        errors.sort(key=lambda e: (e[2], e[0], e[1]))
        return errors
