"""``vqa watch``: follow a source in this process and publish each event as it happens.

Events are the JSON objects of the live-monitoring contract (DESIGN.md)::

    {"event": "defect.started" | "defect.ended", "kind", "start", "end" | null, "source", "at"}

plus ``id`` (shared by a defect's two events), kind-specific fields, ``stream.started`` /
``stream.ended`` around them and ``stream.gap`` for a short hole in the media (unmonitored time).
``start``/``end`` are seconds of stream time from where monitoring began; ``at`` is the UTC
wall time the event was published. Input loss (:mod:`vqa.live`) is the defect kind
``input_loss``; when it starts, the detectors' open defects end where media stopped and the
detectors start afresh when media returns (what they saw before the gap says nothing about what
comes after it).

``vqa watch --arch`` runs the locally emulated architecture instead and emits the alerts it
publishes (:mod:`vqa.local.watch`): that lives with the emulation, so the worker image, which runs
:func:`watch`, never imports the CDK.

Stopping (SIGINT, or ``stop`` set by the caller) ends cleanly: open defects end at the last media
seen, and ``stream.ended`` says ``"reason": "interrupted"``.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from vqa.defects import INPUT_LOSS, Defect
from vqa.detectors import DetectorSet
from vqa.events import DefectEvent
from vqa.live import Gap, InputBack, InputLost, StreamInfo, follow
from vqa.overrides import validate_thresholds
from vqa.segment import Segment

Emit = Callable[[dict[str, Any]], None]


def utc_now() -> str:
    """``2026-11-30T22:04:05.123Z``: UTC, milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@contextmanager
def sigint_sets(stop: threading.Event) -> Iterator[None]:
    """While watching, SIGINT asks the loop to stop between segments instead of raising."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def watch(
    source: str,
    *,
    emit: Emit,
    detectors: Sequence[str] | str | None = None,
    thresholds: Mapping[str, Mapping[str, Any]] | None = None,
    segment_seconds: float = 1.0,
    loss_after: float | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    on_segment: Callable[[Segment], None] | None = None,
    info: dict[str, Any] | None = None,
    hand_over: threading.Event | None = None,
    resume: dict[str, Any] | None = None,
) -> str:
    """Follow ``source`` until it ends or ``stop`` is set; ``emit`` each event. Returns why it
    stopped: ``"ended"``, ``"interrupted"`` or ``"handed_over"``.

    ``on_segment`` is called after each segment's detectors ran (benchmarks measure lag there).
    ``info`` goes to :func:`vqa.live.follow` (what the follower knows of the stream).

    A hand-over (a 24/7 job's continuation, :mod:`vqa.worker.live`): if ``hand_over`` is set
    when ``stop`` ends the run between two media segments of a live HLS stream, nothing on air
    is ended; ``info["carry"]`` receives the detectors' state and the follower's position, and a
    later ``watch`` given that as ``resume`` (on the same ``clock``, ``time.time`` across
    processes) goes on from the next media segment as if it had never stopped: a defect on air,
    announced or not yet, stays one defect with its true start.
    Raises :class:`~vqa.errors.BadSourceError` if the source cannot be followed at all, and
    :class:`~vqa.errors.ConfigError` for bad detector names or thresholds (before any I/O).
    """
    config = validate_thresholds(thresholds or {})
    dset = DetectorSet(detectors, **config)  # bad names fail here, before the source is opened
    if resume is not None:
        dset.set_state(resume["detectors"])
    stop = stop or threading.Event()

    def publish(obj: dict[str, Any]) -> None:
        emit({**obj, "source": source, "at": utc_now()})

    def publish_events(events: list[DefectEvent]) -> None:
        for e in events:
            publish(e.to_json())

    info = {} if info is None else info
    seen = 0.0  # end of the last media seen (stream time)
    lost: InputLost | None = None
    started = False
    with sigint_sets(stop):
        for item in follow(
            source,
            segment_seconds=segment_seconds,
            loss_after=loss_after,
            info=info,
            clock=clock,
            stop=stop,
            resume=None if resume is None else resume["follower"],
        ):
            if not started:
                publish(_stream_started(info.get("stream")))
                started = True
            if isinstance(item, Segment):
                publish_events(dset.process_events(item))
                seen = max(seen, item.end)
                if on_segment is not None:
                    on_segment(item)
            elif isinstance(item, InputLost):
                publish_events(dset.flush_events())
                dset = DetectorSet(detectors, **config)
                lost = item
                publish(DefectEvent.started(INPUT_LOSS, item.start).to_json())
            elif isinstance(item, Gap):
                # Media missing for a moment: what the detectors saw before says nothing about
                # what comes after, and the hole itself is not a defect of the programme.
                publish_events(dset.flush_events())
                dset = DetectorSet(detectors, **config)
                publish({"event": "stream.gap", "start": item.start, "end": round(item.end, 6)})
            elif isinstance(item, InputBack):
                loss = Defect(start=item.start, end=item.end, kind=INPUT_LOSS)
                publish(DefectEvent.ended(loss).to_json())
                lost = None
            if stop.is_set():
                break
        reason = "interrupted" if stop.is_set() else "ended"
        if reason == "interrupted" and hand_over is not None and hand_over.is_set():
            position = info.get("position")
            if position is not None:
                info["carry"] = {"detectors": dset.get_state(), "follower": position}
                return "handed_over"
        if not started:
            publish(_stream_started(info.get("stream")))
        publish_events(dset.flush_events())
        if lost is not None:
            # Still no media when monitoring stopped: the loss lasted until now.
            loss = Defect(start=lost.start, end=lost.start + clock() - lost.since, kind=INPUT_LOSS)
            publish(DefectEvent.ended(loss).to_json())
            seen = loss.end
        publish({"event": "stream.ended", "reason": reason, "end": round(seen, 6)})
    return reason


def _stream_started(stream: StreamInfo | None) -> dict[str, Any]:
    out: dict[str, Any] = {"event": "stream.started"}
    if stream is not None:
        out["type"] = stream.kind
        if stream.target_duration is not None:
            out["target_duration"] = stream.target_duration
        if stream.first_sequence is not None:
            out["media_sequence"] = stream.first_sequence
    return out


def format_event(obj: dict[str, Any]) -> str:
    """One human-readable line for a terminal."""
    event = obj["event"]
    if event.startswith("defect."):
        end = "-" if obj.get("end") is None else f"{obj['end']:.3f}"
        extra = {
            k: v
            for k, v in obj.items()
            if k not in ("event", "kind", "start", "end", "source", "at", "id")
        }
        detail = " ".join(f"{k}={v}" for k, v in extra.items())
        phase = event.split(".", 1)[1]
        line = f"{obj['at']}  {obj['kind']:<11} {phase:<7} {obj['start']:>10.3f} {end:>10}"
        return f"{line}  {detail}".rstrip()
    detail = " ".join(f"{k}={v}" for k, v in obj.items() if k not in ("event", "source", "at"))
    return f"{obj['at']}  {event}  {obj['source']}  {detail}".rstrip()
