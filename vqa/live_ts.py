"""Live MPEG-TS over HTTP, for :func:`vqa.live.follow`: one long connection, never seeked.

A thread reads the connection into a bounded queue, which the decoder reads as a pipe; no byte for
``loss_after`` (default three times the segment length, at least 3 s) is input loss, and a closed
connection is reopened every half second (a new timeline each time). Memory is bounded: the queue
holds at most ``TS_QUEUE`` chunks of ``TS_CHUNK`` bytes.
"""

from __future__ import annotations

import io
import logging
import math
import queue
import threading
from collections.abc import Callable, Collection, Iterator
from typing import Any

import av

from vqa import urlguard
from vqa.errors import BadSourceError
from vqa.live import (
    CONNECT_TIMEOUT,
    LOSS_TARGET_DURATIONS,
    Gap,
    InputBack,
    InputLost,
    LiveItem,
    StreamInfo,
    Timeline,
    _track_starts,
    _why,
)
from vqa.media import _segments
from vqa.tsanalysis import TsTee

log = logging.getLogger(__name__)

#: Bytes read at a time from a continuous MPEG-TS, and chunks buffered ahead of the decoder.
TS_CHUNK = 64 * 1024
TS_QUEUE = 64


def _skip(timeline: Timeline, seconds: float) -> Gap:
    start = timeline.end
    timeline.brk(seconds)
    return Gap(start, timeline.end)


class _Pipe(io.RawIOBase):
    """The decoder's view of a TS connection: blocks for bytes, EOF when the feed breaks or stalls.

    ``stalled`` is set when no byte came for ``idle`` seconds, ``broken`` when the connection ended.
    """

    def __init__(self, q: queue.Queue[bytes | None], idle: float, first: bytes) -> None:
        super().__init__()
        self._q, self._idle = q, idle
        self._buf = first
        self.stalled = self.broken = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if not self._buf:
            if self.stalled or self.broken:
                return 0
            try:
                item = self._q.get(timeout=self._idle)
            except queue.Empty:
                self.stalled = True
                return 0
            if item is None:
                self.broken = True
                return 0
            self._buf = item
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def _reader(url: str, q: queue.Queue[bytes | None], stop: threading.Event, idle: float) -> None:
    """Thread: read the TS connection into ``q``; None marks a broken connection, then reconnect."""
    while not stop.is_set():
        try:
            with urlguard.urlopen(url, timeout=min(CONNECT_TIMEOUT, idle)) as resp:
                while not stop.is_set():
                    try:
                        chunk = resp.read1(TS_CHUNK)
                    except TimeoutError:
                        continue  # quiet, not broken: the decoder's idle timer decides
                    if not chunk:
                        break
                    _put(q, chunk, stop)
        except (OSError, ValueError, BadSourceError) as exc:  # a refused hop: never fetched
            log.info("%s: %s", url, _why(exc))
        _put(q, None, stop)
        stop.wait(0.5)


def _put(q: queue.Queue[bytes | None], item: bytes | None, stop: threading.Event) -> None:
    """Put, waiting while the decoder is behind (a full queue), unless asked to stop."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.5)
            return
        except queue.Full:
            continue


def follow_ts(
    source: str,
    seg_len: float,
    loss_after: float | None,
    tracks: Collection[str],
    info: dict[str, Any],
    clock: Callable[[], float],
    stop: threading.Event,
) -> Iterator[LiveItem]:
    threshold = loss_after if loss_after is not None else LOSS_TARGET_DURATIONS * max(seg_len, 1.0)
    try:
        urlguard.urlopen(source, timeout=CONNECT_TIMEOUT).close()
    except (OSError, ValueError) as exc:
        raise BadSourceError(source, _why(exc)) from None
    info["stream"] = StreamInfo("ts", source)
    q: queue.Queue[bytes | None] = queue.Queue(maxsize=TS_QUEUE)
    halt = threading.Event()  # ends the reader thread with this generator
    reader = threading.Thread(target=_reader, args=(source, q, halt, threshold), daemon=True)
    reader.start()
    timeline = Timeline()
    lost: InputLost | None = None
    last_media = clock()
    broken_at: float | None = None  # when the last connection broke
    try:
        while not stop.is_set():
            try:
                first = q.get(timeout=min(threshold, 0.5))
            except queue.Empty:
                first = None
            if not first:
                if lost is None and clock() - last_media > threshold:
                    lost = InputLost(timeline.end, last_media)
                    yield lost
                continue
            if lost is not None:
                timeline.brk(clock() - last_media)
                yield InputBack(lost.start, timeline.end)
                lost = None
            elif broken_at is not None:
                yield _skip(timeline, clock() - broken_at)  # the programme went on meanwhile
            broken_at = None
            pipe = _Pipe(q, threshold, first)
            # A new connection's bytes do not continue the last one's (see TsTee).
            tee = TsTee(pipe, follows=timeline.index == 0)
            try:
                container = av.open(
                    tee,
                    format="mpegts",
                    options={"analyzeduration": "1000000", "probesize": "1000000"},
                )
            except av.error.FFmpegError as exc:
                log.warning("%s: %s", source, exc)
                continue
            with container:
                off = timeline.place(_track_starts(container), math.inf)
                seg_info: dict[str, Any] = {}
                try:
                    for seg in _segments(
                        container,
                        source,
                        seg_len=seg_len,
                        start_index=0,
                        stop_index=None,
                        info=seg_info,
                        tracks=tracks,
                        tee=tee,
                    ):
                        yield timeline.shift(seg, off)
                        if stop.is_set():
                            return
                except BadSourceError as exc:
                    log.warning("%s: %s", source, exc.reason)
                timeline.end = max(timeline.end, off + float(seg_info.get("duration", 0.0)))
            timeline.brk()
            # Bytes stopped coming `threshold` ago (a stall), or just now (a broken connection:
            # the reader reconnects, and a loss is declared if that takes longer than threshold).
            last_media = clock() - threshold if pipe.stalled else clock()
            broken_at = None if pipe.stalled else last_media
            if pipe.stalled:
                lost = InputLost(timeline.end, last_media)
                yield lost
    finally:
        halt.set()
