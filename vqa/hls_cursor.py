"""A live HLS stream read one media segment per call, its position kept as plain data.

This is the one HLS reader of the project: the distributed converter calls :func:`advance` once
per state-machine step, and :func:`vqa.live.follow` (``vqa watch``, the monolith's worker) calls
:func:`read` in a loop over playlists it reloads itself, so both paths fetch, decode, skip and
time segments, and declare input loss, by the same code.

The distributed converter is a Lambda function: nothing survives between two of its invocations
but what the state machine carries. :func:`advance` reloads the playlist and :func:`read` reads
exactly the media segment with the cursor's media sequence number (never re-reading or seeking
into earlier ones), decodes it through :func:`vqa.live.decode_chunk` onto the stream timeline,
and returns the new cursor with it.
A segment not yet published is a :data:`WAITING` step: the caller waits (the state machine's
Wait state) and asks again. No media for ``loss_after`` seconds (default three target durations,
as :mod:`vqa.live`) is input loss: a :data:`FLUSH` step carrying the ``input_loss`` started event
(the detectors' open defects end where media stopped); when media flows again its segment carries
the ended event, and stream time follows the wall clock across the gap, as in process.

Wall-clock times in the cursor are epoch seconds (``time.time()``) where successive steps run in
different processes, possibly on different hosts; an in-process follower may use any one clock
(``time.monotonic``), since only differences of its readings count.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

from vqa.defects import INPUT_LOSS, Defect
from vqa.errors import BadSourceError
from vqa.events import DefectEvent
from vqa.live import (
    CONNECT_TIMEOUT,
    LOSS_TARGET_DURATIONS,
    Playlist,
    Timeline,
    _get,
    _load,
    _why,
    decode_chunk,
)
from vqa.segment import Segment

log = logging.getLogger(__name__)

#: A media segment was read: ``segments`` hold its media (possibly none for an empty segment).
SEGMENT: Final = "segment"
#: The next media segment is not published yet: ask again after :attr:`Cursor.wait_seconds`.
WAITING: Final = "waiting"
#: No media, but what the detectors saw so far ends here (input loss, a hole in the media).
FLUSH: Final = "flush"
#: The playlist ended (``EXT-X-ENDLIST``) and every segment before the tag was read.
ENDED: Final = "ended"

StepKind = Literal["segment", "waiting", "flush", "ended"]
#: :attr:`Cursor.seq` of a follower whose playlist listed no segment yet (see :func:`place`).
UNPLACED: Final = -1


@dataclass
class Cursor:
    """Where a live HLS stream is being read: JSON-able, carried between invocations."""

    playlist: str  # the media playlist (a master playlist's first variant)
    target: float  # EXT-X-TARGETDURATION, seconds
    seq: int  # media sequence number of the next segment to read (UNPLACED: not chosen yet)
    last_media: float  # epoch seconds when media last arrived
    on_clock: float  # epoch seconds corresponding to the timeline's end
    loss_after: float  # seconds without media that are input loss
    timeline: dict[str, Any] = field(default_factory=dict)
    lost: dict[str, float] | None = None  # {"start": stream s, "since": epoch s} during a loss
    polled: float | None = None  # epoch seconds of the last call that found nothing new
    listed: float | None = None  # epoch seconds when segment `seq` was first seen listed

    @property
    def wait_seconds(self) -> int:
        """How long to wait for an unpublished segment: half a target duration, as a player
        reloads a live playlist (RFC 8216 §6.3.4); whole seconds, as a Wait state takes them."""
        return max(1, math.ceil(self.target / 2))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cursor:
        return cls(**data)


@dataclass
class Step:
    """What one call found: its kind, the segments of the media read, and input-loss events."""

    kind: StepKind
    cursor: Cursor
    segments: list[Segment] = field(default_factory=list)
    events: list[DefectEvent] = field(default_factory=list)
    seen: float = 0.0  # stream time where the media read so far ends
    #: ``[start, end)`` of stream time skipped for media that will never arrive (a failed
    #: segment, a slide past the window), shorter than an input loss; None if nothing was.
    gap: tuple[float, float] | None = None

    @property
    def sequence(self) -> int:
        return self.cursor.seq


def _published(cur: Cursor, now: float) -> float:
    """When segment ``cur.seq`` was published (epoch s), as closely as the calls tell: when a
    call first saw it listed, else between the last call that did not find it and ``now`` (a
    Wait state waits whole seconds; the in-process follower polls every half target)."""
    if cur.listed is not None:
        return min(cur.listed, now)
    if cur.polled is not None:
        return (cur.polled + now) / 2
    return now


def _save_timeline(t: Timeline) -> dict[str, Any]:
    return {
        "end": t.end,
        "index": t.index,
        "track_end": dict(t._track_end),
        "anchor": None if t._anchor is None else list(t._anchor),
        "last": t._last,
    }


def _load_timeline(state: dict[str, Any]) -> Timeline:
    t = Timeline()
    if state:
        t.end, t.index = float(state["end"]), int(state["index"])
        t._track_end = {k: float(v) for k, v in state["track_end"].items()}
        anchor = state["anchor"]
        t._anchor = None if anchor is None else (float(anchor[0]), float(anchor[1]))
        t._last = state["last"]
    return t


def is_live_hls(source: str) -> bool:
    """True for an ``http(s)`` URL of a live HLS playlist (no end tag)."""
    if not source.startswith(("http://", "https://")):
        return False
    from vqa.live import _sniff  # one sniffing rule for watch and the stacks

    if _sniff(source) != "hls":
        return False
    try:
        pl = media_playlist(source)[1]
    except (OSError, ValueError) as exc:
        raise BadSourceError(source, _why(exc)) from None
    return not pl.ended


def media_playlist(source: str) -> tuple[str, Playlist]:
    """The media playlist's URL and contents (a master playlist's first variant)."""
    pl = _load(source, 0.0, source)
    if pl.variants:
        return pl.variants[0], _load(pl.variants[0], 0.0, source)
    return source, pl


def reload(cursor: Cursor, source: str) -> Playlist | None:
    """The cursor's playlist as the origin lists it now; None if that failed (a stall, as far as
    input loss is concerned: the caller asks again)."""
    try:
        return _load(cursor.playlist, cursor.target, source)
    except (OSError, ValueError, BadSourceError) as exc:
        log.info("%s: playlist reload failed: %s", source, _why(exc))
        return None


def place(cursor: Cursor, pl: Playlist, *, now: float) -> Cursor:
    """The cursor at its first segment, once ``pl`` lists one: the live edge (the last listed),
    or the start of an ended (VOD) playlist."""
    cur = Cursor.from_json(cursor.to_json())
    first = pl.entries[0] if pl.ended else pl.entries[-1]
    cur.seq = first.seq
    cur.listed = now
    return cur


class NotPublished(Exception):
    """The live playlist lists no segment yet: nothing to start from (ask again later)."""


def open_cursor(source: str, *, now: float, loss_after: float | None = None) -> Cursor:
    """A cursor at the live edge of ``source`` (its last listed segment), as ``vqa watch``.

    Raises :class:`NotPublished` while the playlist lists no segment.
    """
    try:
        url, pl = media_playlist(source)
    except (OSError, ValueError) as exc:
        raise BadSourceError(source, _why(exc)) from None
    if pl.target <= 0:
        raise BadSourceError(source, "playlist has no segments and no target duration")
    if not pl.entries:
        raise NotPublished(f"{source}: no segment published yet")
    edge = pl.entries[-1]
    threshold = loss_after if loss_after is not None else LOSS_TARGET_DURATIONS * pl.target
    return Cursor(
        playlist=url,
        target=pl.target,
        seq=edge.seq,
        last_media=now,
        on_clock=now,
        loss_after=threshold,
        listed=now,
    )


def edge_segment_url(cursor: Cursor, source: str) -> str:
    """The URL of the segment the cursor reads next (what the stream's tracks are probed from)."""
    pl = _load(cursor.playlist, cursor.target, source)
    entry = next((e for e in pl.entries if e.seq == cursor.seq), pl.entries[-1])
    return entry.uri


def stop(cursor: Cursor, *, now: float) -> Step:
    """Monitoring stops here: an input loss under way ends now (stream time on the wall clock)."""
    timeline = _load_timeline(cursor.timeline)
    events = []
    seen = timeline.end
    if cursor.lost is not None:
        start = cursor.lost["start"]
        end = start + now - cursor.lost["since"]
        events.append(DefectEvent.ended(Defect(start=start, end=end, kind=INPUT_LOSS)))
        seen = max(seen, end)
    return Step(ENDED, cursor, events=events, seen=round(seen, 6))


def advance(
    cursor: Cursor,
    source: str,
    *,
    now: float,
    segment_seconds: float,
    tracks: Collection[str] = ("video", "audio"),
) -> Step:
    """Reload the playlist and :func:`read` the media segment ``cursor.seq`` if the origin has
    published it (see module doc). ``now`` is the current epoch time."""
    return read(
        cursor,
        reload(cursor, source),
        source,
        now=now,
        segment_seconds=segment_seconds,
        tracks=tracks,
    )


def read(
    cursor: Cursor,
    pl: Playlist | None,
    source: str,
    *,
    now: float,
    segment_seconds: float,
    tracks: Collection[str] = ("video", "audio"),
) -> Step:
    """Read the media segment ``cursor.seq`` if ``pl`` (the playlist as last loaded; None if that
    failed) lists it; else wait, or declare input loss once no media came for
    ``cursor.loss_after``. ``now`` is the clock reading the cursor's times are on.

    The returned step's cursor is a new position; the given one is not changed, so a retried call
    with the same cursor reads the same segment again.
    """
    cur = Cursor.from_json(cursor.to_json())
    timeline = _load_timeline(cur.timeline)

    def step(kind: StepKind, **kw: Any) -> Step:
        cur.timeline = _save_timeline(timeline)
        return Step(kind, cur, seen=round(timeline.end, 6), **kw)

    def hole(seconds: float, events: list[DefectEvent] | None = None) -> Step:
        """Media that will never arrive: later media keeps its place on the stream clock."""
        if cur.lost is not None:  # during a loss the wall-clock gap counts it
            return step(WAITING)
        start = timeline.end
        timeline.brk(seconds)
        cur.on_clock += seconds
        return step(FLUSH, events=events or [], gap=(start, timeline.end))

    if pl is not None and pl.entries:
        if cur.seq == UNPLACED:
            cur = place(cur, pl, now=now)
        if cur.seq < pl.entries[0].seq:
            # What we had not read yet slid out of the window: resume at the live edge. The
            # media sequence numbers say how many segments were skipped; those no longer
            # listed count a target duration each.
            listed = {e.seq: e.duration for e in pl.entries}
            edge = pl.entries[-1].seq
            missed = sum(listed.get(q, cur.target) for q in range(cur.seq, edge))
            log.warning("%s: fell behind the live window, jumping to the live edge", source)
            cur.seq, cur.listed = edge, now
            return hole(missed)
        entry = next((e for e in pl.entries if e.seq == cur.seq), None)
        if entry is not None:
            published = _published(cur, now)
            cur.seq += 1
            # A reader behind the live edge sees its next segment listed already: it was
            # published no later than now (what the wall-clock times below are anchored to).
            cur.listed = now if any(e.seq == cur.seq for e in pl.entries) else None
            cur.polled = None
            try:
                data = _get(entry.uri, timeout=max(CONNECT_TIMEOUT, 2 * cur.target), source=source)
            except (OSError, ValueError) as exc:
                log.warning("%s: segment %d: %s", source, entry.seq, _why(exc))
                return hole(entry.duration)
            events: list[DefectEvent] = []
            # After a signalled discontinuity or an outage the bytes do not continue the
            # previous segment's: the transport analysis takes its counters afresh (an ad
            # splice restarting continuity counters is not a TR 101 290 error).
            follows = cur.lost is None and not entry.discontinuity
            if cur.lost is not None:
                # The new segment aired before it was published: it sits its own duration
                # before its publication on the stream clock.
                timeline.brk(published - cur.on_clock - entry.duration)
                start = cur.lost["start"]
                loss = Defect(start=start, end=max(timeline.end, start), kind=INPUT_LOSS)
                events.append(DefectEvent.ended(loss))
                cur.lost = None
                cur.on_clock = published - entry.duration  # where the timeline's end now is
            elif entry.discontinuity:
                timeline.brk()
            try:
                segs = decode_chunk(
                    data,
                    source=source,
                    follows=follows,
                    timeline=timeline,
                    segment_seconds=segment_seconds,
                    expect=entry.duration,
                    tracks=tracks,
                )
            except BadSourceError as exc:
                log.warning("%s: segment %d: %s", source, entry.seq, exc.reason)
                # Media did arrive, undecodable: a loss is over all the same, and the
                # segment's time is skipped so that later media keeps its place.
                return hole(entry.duration, events)
            # The stream timeline's end corresponds to this segment's publication.
            cur.last_media = cur.on_clock = published
            return step(SEGMENT, segments=segs, events=events)
    if pl is not None and pl.ended:
        return step(ENDED)  # the end tag, and everything before it read
    if cur.lost is None and now - cur.last_media > cur.loss_after:
        cur.lost = {"start": timeline.end, "since": cur.last_media}
        cur.polled = now
        return step(FLUSH, events=[DefectEvent.started(INPUT_LOSS, timeline.end)])
    cur.polled = now
    return step(WAITING)
