"""Live sources: follow a live HLS playlist or MPEG-TS over HTTP from the live edge, never seeking.

FFmpeg's HLS demuxer reloads a live playlist by itself but never says that the origin died, so a
monitor could not tell input loss from a quiet channel. This module fetches the playlist itself
(urllib) and hands each media segment's bytes to PyAV, which also bounds latency: a segment is
analysed as soon as it is published, not when the next one arrives.

:func:`follow` yields, in order:

- :class:`~vqa.segment.Segment` objects (cut by :mod:`vqa.media` from each HLS segment, or from the
  continuous MPEG-TS), times in seconds of *stream time* from where monitoring began;
- :class:`InputLost` once no media has arrived for ``loss_after`` seconds (default three target
  durations): the playlist was not updated, segments answered errors, or the connection is gone;
- :class:`InputBack` when media flows again. Monitoring resumes at the new live edge; the gap is
  counted in wall-clock time, so stream time stays consistent with the programme across it;
- :class:`Gap` for a shorter hole (a segment that failed, a reconnection): stream time skips it.

HLS is read by :mod:`vqa.hls_cursor`, the distributed converter's reader too (one reader for both
live paths; this module only reloads the playlist and turns its steps into the items above).
HLS specifics: a master playlist is followed through its first variant; the first segment read is
the last one listed (the live edge; a VOD playlist is read from its start); a segment that drops out
of the window before it was read makes the follower jump to the live edge; ``EXT-X-DISCONTINUITY``,
a 404 segment and an unannounced timestamp jump restart the timeline (a missing segment's duration
is skipped, so later times stay right); MPEG-TS segments only (no fMP4, no encryption). The playlist
is reloaded every half target duration: RFC 8216 §6.3.4 asks for that only after an unchanged
reload, and a monitor trades a few more small GETs for alert latency.

MPEG-TS over HTTP is followed by :mod:`vqa.live_ts` (a connection read into a bounded queue).

Memory is bounded for a 24/7 channel: one media segment (or a bounded queue of TS bytes) at a time,
the last media sequence number, and 33-bit MPEG-TS timestamps unwrapped against the previous
segment only.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import urllib.error
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlparse

import av

from vqa import urlguard
from vqa.errors import BadSourceError
from vqa.media import _segments, iter_segments  # one decoder path for files and live segments
from vqa.segment import Segment
from vqa.tsanalysis import TsTee

log = logging.getLogger(__name__)

#: Input loss after this many target durations without media (HLS); MPEG-TS uses segment lengths.
LOSS_TARGET_DURATIONS = 3.0
#: MPEG-TS timestamps are 33-bit, 90 kHz: they wrap every 26.5 hours.
PTS_WRAP = 2**33 / 90_000
#: HTTP timeout (s) of a connection attempt or a playlist fetch (segments: two target durations).
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class InputLost:
    """No media for longer than the threshold; ``start`` is where media stopped (stream time).

    ``since`` is the clock reading when the last media arrived (what the wall-clock gap counts
    from).
    """

    start: float
    since: float


@dataclass(frozen=True)
class InputBack:
    """Media flows again: it was lost over ``[start, end)`` of stream time."""

    start: float
    end: float


@dataclass(frozen=True)
class Gap:
    """Media that never arrived over ``[start, end)`` of stream time (a segment that failed, a
    reconnection), shorter than the loss threshold: unmonitored time, not a defect."""

    start: float
    end: float


@dataclass(frozen=True)
class StreamInfo:
    """What :func:`follow` found: ``kind`` is ``"hls"``, ``"ts"`` or ``"file"``."""

    kind: str
    url: str
    target_duration: float | None = None
    first_sequence: int | None = None


LiveItem = Segment | InputLost | InputBack | Gap


# --------------------------------------------------------------------------- HTTP and playlists


def _get(url: str, timeout: float, source: str | None = None) -> bytes:
    # Through the SSRF guard where it is on (vqa.urlguard): every hop and address checked.
    with urlguard.urlopen(url, timeout=timeout, source=source) as resp:
        data: bytes = resp.read()
        return data


def _why(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot connect ({exc.reason})"
    return f"{type(exc).__name__}: {exc}"


@dataclass
class Entry:
    seq: int
    uri: str
    duration: float
    discontinuity: bool = False


@dataclass
class Playlist:
    target: float
    entries: list[Entry] = field(default_factory=list)
    ended: bool = False
    variants: list[str] = field(default_factory=list)


def parse_playlist(text: str, base: str, source: str) -> Playlist:
    """An HLS playlist (RFC 8216): the tags a monitor needs. Raises BadSourceError if unusable."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise BadSourceError(source, "not an HLS playlist (no #EXTM3U header)")
    pl = Playlist(target=0.0)
    seq = 0
    duration: float | None = None
    disc = False
    variant = False
    for ln in lines[1:]:
        if ln.startswith("#EXT-X-TARGETDURATION:"):
            pl.target = float(ln.split(":", 1)[1])
        elif ln.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            seq = int(ln.split(":", 1)[1])
        elif ln.startswith("#EXTINF:"):
            duration = float(ln.split(":", 1)[1].split(",", 1)[0])
        elif ln == "#EXT-X-DISCONTINUITY":
            disc = True
        elif ln == "#EXT-X-ENDLIST":
            pl.ended = True
        elif ln.startswith("#EXT-X-STREAM-INF"):
            variant = True
        elif ln.startswith("#EXT-X-MAP"):
            raise BadSourceError(source, "fMP4 HLS segments are not supported (MPEG-TS only)")
        elif ln.startswith("#EXT-X-KEY") and "METHOD=NONE" not in ln:
            raise BadSourceError(source, "encrypted HLS is not supported")
        elif not ln.startswith("#"):
            uri = urljoin(base, ln)
            # Every entry vetted before anything fetches it: a remote playlist must not point
            # us at local files or (guard on) at the VPC's private side.
            urlguard.check_entry(uri, playlist=base, source=source)
            if variant:
                pl.variants.append(uri)
                variant = False
            else:
                pl.entries.append(Entry(seq, uri, duration or pl.target, disc))
                seq += 1
                duration, disc = None, False
    if pl.target <= 0 and pl.entries:
        pl.target = max(e.duration for e in pl.entries)
    return pl


# --------------------------------------------------------------------------- timeline


class Timeline:
    """Maps each piece of media (an HLS segment, a TS connection) onto stream time.

    Within a continuous run, times follow the media's timestamps (unwrapped); a break (a
    discontinuity, a skipped segment, input loss) starts a new run where the previous media ended,
    plus any gap, so stream time never runs backwards or jumps with the source's clock. A new run
    continues the *video* exactly where it ended: a hole there would look like a dropped frame to
    the corruption detector and an overlap like time running backwards. Audio and video rarely end
    (or start) together, so the audio may then overlap or miss a few milliseconds at the join.
    """

    def __init__(self) -> None:
        self.end = 0.0  # stream time where the media so far ends
        self.index = 0  # next segment index
        self._track_end: dict[str, float] = {}  # "video"/"audio" -> stream time of its end
        self._anchor: tuple[float, float] | None = None  # (media time, stream time)
        self._last: float | None = None  # last media time placed (wrap reference)

    def brk(self, gap: float = 0.0) -> None:
        """The next media does not continue the timestamps; ``gap`` seconds pass before it."""
        gap = max(0.0, gap)
        self.end += gap
        self._track_end = {k: v + gap for k, v in self._track_end.items()}
        self._anchor = None

    def place(self, starts: dict[str, float], expect: float) -> float:
        """Stream time of a container whose tracks start at ``starts`` (its own clock, keys
        ``"video"``/``"audio"``; the earliest is where vqa.media's times start), ``expect``
        seconds long."""
        media_t0 = min(starts.values(), default=0.0)
        lead = {k: t - media_t0 for k, t in starts.items()}  # each track after the earliest
        if self._last is not None:
            media_t0 += round((self._last - media_t0) / PTS_WRAP) * PTS_WRAP
        self._last = media_t0
        if self._anchor is not None:
            off = self._anchor[1] + media_t0 - self._anchor[0]
            if abs(off - self.end) <= max(2.0 * expect, 2.0):
                return off
            # The source's clock jumped without saying so: continue where the media ended.
            log.info("timestamp jump of %.3f s: new timeline", off - self.end)
        # Continue the video where it ended (else the audio): see the class docstring.
        track = next((k for k in ("video", "audio") if k in lead and k in self._track_end), None)
        off = self.end if track is None else self._track_end[track] - lead[track]
        self._anchor = (media_t0, off)
        return off

    def shift(self, seg: Segment, off: float) -> Segment:
        """Move a segment timed from its container's start onto stream time (in place), ``off``
        being where :meth:`place` put that start."""
        v, a = seg.video, seg.audio
        if v is not None:
            v.times = v.times + off
            if len(v):
                end = float(v.times[-1]) + v.frame_duration
                self._track_end["video"] = max(self._track_end.get("video", end), end)
        if a is not None:
            a.start += off
            if a.n:
                self._track_end["audio"] = max(self._track_end.get("audio", a.end), a.end)
        if seg.transport is not None:
            seg.transport = seg.transport.shifted(off)
        seg.start += off
        seg.end += off
        seg.index = self.index
        seg.last = False
        self.index += 1
        self.end = max(self.end, *self._track_end.values())
        return seg


def _track_starts(container: Any) -> dict[str, float]:
    """Start of the first video and audio stream (s, the container's clock), as vqa.media reads
    them (the earliest is the source start)."""
    out = {}
    for kind, streams in (("video", container.streams.video), ("audio", container.streams.audio)):
        s = next(iter(streams), None)
        if s is not None and s.start_time is not None:
            out[kind] = s.start_time * float(s.time_base)
    return out


def decode_chunk(
    data: bytes,
    *,
    source: str,
    timeline: Timeline,
    segment_seconds: float,
    expect: float,
    tracks: Collection[str] = ("video", "audio"),
    follows: bool = True,
) -> list[Segment]:
    """Decode one self-contained MPEG-TS piece (an HLS segment) into segments on stream time;
    ``follows=False``: its bytes do not continue the previous piece's (a discontinuity)."""
    try:
        # Through a tee, so the transport analysis gets these same bytes (read once).
        tee = TsTee(io.BytesIO(data), hls=True, follows=follows)
        container = av.open(tee, format="mpegts")
    except av.error.FFmpegError as exc:
        raise BadSourceError(source, f"segment is not MPEG-TS: {exc}") from None
    info: dict[str, Any] = {}
    with container:
        off = timeline.place(_track_starts(container), expect)
        segs = list(
            _segments(
                container,
                source,
                seg_len=segment_seconds,
                start_index=0,
                stop_index=None,
                info=info,
                tracks=tracks,
                tee=tee,
            )
        )
    out = [timeline.shift(s, off) for s in segs]
    timeline.end = max(timeline.end, off + float(info.get("duration", 0.0)))
    # (segments shifted above advanced the track ends; the duration also counts a trailing
    # packet that decoded to nothing)
    return out


# --------------------------------------------------------------------------- followers


def follow(
    source: str,
    *,
    segment_seconds: float = 1.0,
    loss_after: float | None = None,
    tracks: Collection[str] = ("video", "audio"),
    info: dict[str, Any] | None = None,
    clock: Callable[[], float] = time.monotonic,
    stop: threading.Event | None = None,
    resume: dict[str, Any] | None = None,
) -> Iterator[LiveItem]:
    """Follow ``source`` until it ends (or ``stop`` is set): segments and input-loss markers.

    A live HLS playlist or an MPEG-TS over HTTP is followed live; anything else (a file, a VOD
    URL) is decoded as :func:`vqa.media.iter_segments` does. ``info`` receives a
    :class:`StreamInfo` under ``"stream"`` once the source is recognised, and for HLS
    ``"position"``: where the follower stands (JSON), present while it stands between two media
    segments (set before the last item of a media segment is yielded, None before its first),
    and ``"sequence_end"``: where the media segment being yielded ends (stream time).

    ``resume`` (HLS): a ``"position"`` of an earlier follower of the same source, on the same
    ``clock`` (epoch seconds, ``time.time``, across processes): go on exactly from there, on the
    same stream timeline (a monitor handing a stream over to its continuation: the next media
    segment if the window still holds it, else a :class:`Gap` to the live edge; nothing seeked).
    """
    info = {} if info is None else info
    stop = stop or threading.Event()
    parsed = urlparse(source)
    if parsed.scheme not in ("http", "https"):
        info["stream"] = StreamInfo("file", source)
        yield from iter_segments(source, segment_seconds=segment_seconds, tracks=tracks)
        return
    kind = _sniff(source)
    if kind == "hls":
        yield from _follow_hls(
            source, segment_seconds, loss_after, tracks, info, clock, stop, resume
        )
    elif kind == "ts":
        from vqa.live_ts import follow_ts  # builds on this module's items and timeline

        yield from follow_ts(source, segment_seconds, loss_after, tracks, info, clock, stop)
    else:
        info["stream"] = StreamInfo("file", source)
        yield from iter_segments(source, segment_seconds=segment_seconds, tracks=tracks)


def _sniff(url: str) -> str:
    path = urlparse(url).path.lower()
    if path.endswith((".m3u8", ".m3u")):
        return "hls"
    if path.endswith(".ts"):
        return "ts"
    try:
        with urlguard.urlopen(url, timeout=CONNECT_TIMEOUT) as resp:
            head: bytes = resp.read(7)
    except (OSError, ValueError) as exc:
        raise BadSourceError(url, _why(exc)) from None
    if head.startswith(b"#EXTM3U"):
        return "hls"
    if head[:1] == b"\x47":
        return "ts"
    return "file"


def _load(url: str, target: float, source: str) -> Playlist:
    text = _get(url, timeout=max(CONNECT_TIMEOUT, target), source=source).decode("utf-8", "replace")
    return parse_playlist(text, url, source)


def _follow_hls(
    source: str,
    seg_len: float,
    loss_after: float | None,
    tracks: Collection[str],
    info: dict[str, Any],
    clock: Callable[[], float],
    stop: threading.Event,
    resume: dict[str, Any] | None = None,
) -> Iterator[LiveItem]:
    """A loop over :mod:`vqa.hls_cursor`'s reader, the distributed converter's too: this loop
    only reloads the playlist (every half target duration) and turns each step into items."""
    # hls_cursor builds on this module's playlists and timeline, so it is imported here.
    from vqa import hls_cursor

    fresh: Playlist | None
    if resume is not None:
        cursor = hls_cursor.Cursor.from_json(resume)
        fresh = hls_cursor.reload(cursor, source)  # None: a stall, as far as input loss goes
        info["stream"] = StreamInfo("hls", cursor.playlist, cursor.target, cursor.seq)
        if cursor.lost is not None:  # the loss goes on under its first start
            yield InputLost(cursor.lost["start"], cursor.lost["since"])
    else:
        try:
            url, fresh = hls_cursor.media_playlist(source)
        except (OSError, ValueError) as exc:
            raise BadSourceError(source, _why(exc)) from None
        if fresh.target <= 0:
            raise BadSourceError(source, "playlist has no segments and no target duration")
        cursor = hls_cursor.Cursor(
            playlist=url,
            target=fresh.target,
            seq=hls_cursor.UNPLACED,
            last_media=clock(),
            on_clock=clock(),
            loss_after=LOSS_TARGET_DURATIONS * fresh.target if loss_after is None else loss_after,
        )
    loaded = clock()
    while not stop.is_set():
        if cursor.seq == hls_cursor.UNPLACED and fresh is not None and fresh.entries:
            cursor = hls_cursor.place(cursor, fresh, now=clock())
            info["stream"] = StreamInfo("hls", cursor.playlist, cursor.target, cursor.seq)
        step = hls_cursor.read(
            cursor, fresh, source, now=clock(), segment_seconds=seg_len, tracks=tracks
        )
        cursor = step.cursor
        items: list[LiveItem] = []
        for event in step.events:
            if event.end is None:
                assert cursor.lost is not None
                items.append(InputLost(event.start, cursor.lost["since"]))
            else:
                items.append(InputBack(event.start, event.end))
        if step.gap is not None:
            items.append(Gap(*step.gap))
        if step.kind == hls_cursor.SEGMENT:
            info["sequence_end"] = step.seen  # where this media segment's media ends
            items += step.segments
        position = cursor.to_json()
        info["position"] = None if items else position  # mid-step until its last item
        for i, item in enumerate(items):
            if i == len(items) - 1:
                info["position"] = position
            yield item
        if step.kind == hls_cursor.ENDED:
            return  # the end tag, and everything before it read
        if fresh is not None and any(e.seq == cursor.seq for e in fresh.entries):
            continue  # listed already: read it now
        stop.wait(max(0.0, loaded + cursor.target / 2 - clock()))
        if stop.is_set():
            return
        loaded = clock()
        fresh = hls_cursor.reload(cursor, source)
