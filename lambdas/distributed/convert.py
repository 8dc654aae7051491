"""Media conversion: decode one segment of the source and write it to the intermediate bucket.

Event: the loop state ``{"stream", "source", "index", "info", "cursor", "polls"}``; returns it
with ``segment`` (what every detector reads back), ``waiting`` and ``wait`` (seconds), ``polls``
and ``rollover`` set.

A file (``cursor`` empty) is read by index: segment ``index`` of ``SEGMENT_SECONDS``, which
:func:`vqa.media.iter_segments` decodes from the nearest keyframe before it (one ranged read of
that stretch of the object, not the whole source). A live HLS stream (``cursor`` set) is read by
media sequence (:mod:`vqa.hls_cursor`): exactly the next media segment of the playlist, fetched
once, cut into ``SEGMENT_SECONDS`` parts; one not yet published answers ``waiting`` and the state
machine's Wait state asks again after ``wait`` seconds; after ``POLLS_PER_EXECUTION`` waits
``rollover`` hands the stream to a fresh execution (history limit).

Stop: the stream status is read before every segment, live or file; a stop request (the front
door's DELETE, ``vqa watch`` interrupted) makes this the last segment, without media: the
detectors end what is open at the last media seen, and ``stopped`` tells the aggregate step to
record the final state ``stopped``. A stop thus takes effect at the next segment (or the next
poll of a live playlist waiting for one).

Granularity (environment ``GRANULARITY``): ``frame`` writes one object per frame plus the audio
buffer and a small meta object, as Prime Video's converter did; ``segment`` writes one object per
segment. ``segment`` is ``{"index", "start", "end", "last", "prefix", "objects", "parts",
"flush", "events", "stopped"?}``: ``parts`` are the (prefix, objects) of each part, ``flush``
asks the detectors to end what is open (no media: input loss, a hole), ``events`` are
input-loss events.
"""

from __future__ import annotations

import time
from typing import Any

from lambdas.distributed.common import (
    CLIENTS,
    OBS,
    Timer,
    env,
    execution_over_time,
    logger,
    metrics,
    segment_prefix,
    tracer,
    transient_errors,
)
from vqa import hls_cursor, media, results
from vqa.segment import Segment


def _write(stream: str, index: int, part: int | None, segment: Segment) -> dict[str, Any]:
    """Write one segment's objects; its part of the reference."""
    objects = segment.to_objects(env("GRANULARITY", "segment"))
    prefix = segment_prefix(stream, index) + ("" if part is None else f"p{part}/")
    bucket = env("INTERMEDIATE_BUCKET")
    with transient_errors():
        for name, body in objects.items():
            CLIENTS.s3.put_object(Bucket=bucket, Key=prefix + name, Body=body)
    return {"prefix": prefix, "objects": sorted(objects), "bytes": sum(map(len, objects.values()))}


def _file_segment(stream: str, source: str, index: int, seconds: float) -> dict[str, Any]:
    decoded: dict[str, Any] = {}
    with transient_errors():
        # media.decode_segment, plus the decoder's facts: at the last segment the decoded
        # duration of the whole source, which is what `vqa analyze` reports.
        segment = next(
            media.iter_segments(
                source,
                segment_seconds=seconds,
                start_index=index,
                stop_index=index + 1,
                s3_client=CLIENTS.s3,
                info=decoded,
            ),
            None,
        ) or Segment(index=index, start=index * seconds, end=(index + 1) * seconds, last=True)
    part = _write(stream, index, None, segment)
    out = {
        "index": segment.index,
        "start": segment.start,
        "end": segment.end,
        "last": segment.last,
        **part,
    }
    if segment.last and "duration" in decoded:
        out["duration"] = float(decoded["duration"])
    return out


def _stop_requested(stream: str) -> bool:
    with transient_errors():
        status = results.read_status(
            dynamodb=CLIENTS.dynamodb, table=env("TABLE_NAME"), stream=stream
        )
    return status is not None and status.stop_requested


def _stopped_segment(stream: str, index: int, seconds: float) -> dict[str, Any]:
    """A file stream stopped before segment ``index``: no media, the last segment; the
    detectors end what is open where the previous segment ended (the last media seen)."""
    seen = index * seconds
    return {
        "index": index,
        "start": seen,
        "end": seen,
        "last": True,
        "stopped": True,
        "prefix": segment_prefix(stream, index),
        "objects": [],
        "parts": [],
        "duration": seen,
    }


def _live_segment(
    stream: str, source: str, index: int, cursor: hls_cursor.Cursor, seconds: float
) -> tuple[hls_cursor.Step, dict[str, Any]]:
    now = time.time()
    stopped = _stop_requested(stream)
    if stopped:
        step = hls_cursor.stop(cursor, now=now)
    else:
        with transient_errors():
            step = hls_cursor.advance(cursor, source, now=now, segment_seconds=seconds)
    parts = [_write(stream, index, i, s) for i, s in enumerate(step.segments)]
    start = step.segments[0].start if step.segments else step.seen
    end = max((s.end for s in step.segments), default=step.seen)
    last = step.kind == hls_cursor.ENDED
    ref: dict[str, Any] = {
        "index": index,
        "start": start,
        "end": end,
        "last": last,
        "prefix": segment_prefix(stream, index),
        "objects": [],
        "parts": parts,
        "flush": step.kind in (hls_cursor.FLUSH, hls_cursor.ENDED),
        "events": [e.to_json() for e in step.events],
        "sequence": cursor.seq,
    }
    if stopped:
        ref["stopped"] = True  # the aggregate step records the final state "stopped"
    if last:
        ref["duration"] = step.seen
    if step.kind == hls_cursor.SEGMENT:
        # When this media segment was published (its end reached the live edge): the
        # aggregate step measures the lag behind the live edge from it.
        ref["published"] = step.cursor.on_clock
    return step, ref


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)  # the response holds the source URL
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    timer = Timer()
    started_at = time.time()
    stream, source, index = str(event["stream"]), str(event["source"]), int(event["index"])
    OBS.bind(stream_id=stream, segment=index)
    seconds = float(env("SEGMENT_SECONDS", "1.0"))
    state = {k: event[k] for k in ("stream", "source", "index", "info", "cursor")}
    polls = int(event.get("polls", 0))
    if not event["cursor"]:
        if _stop_requested(stream):
            ref, written = _stopped_segment(stream, index, seconds), 0
        else:
            ref = _file_segment(stream, source, index, seconds)
            written = ref.pop("bytes")
        out = {**state, "polls": polls, "segment": ref, "waiting": False, "wait": 0}
    else:
        cursor = hls_cursor.Cursor.from_json(event["cursor"])
        step, ref = _live_segment(stream, source, index, cursor, seconds)
        waiting = step.kind == hls_cursor.WAITING
        polls += waiting
        written = sum(p.pop("bytes") for p in ref["parts"])
        out = {
            **state,
            "cursor": step.cursor.to_json(),
            "polls": polls,
            "segment": ref,
            "waiting": waiting,
            "wait": step.cursor.wait_seconds,
            "rollover": waiting
            and (polls >= int(env("POLLS_PER_EXECUTION")) or execution_over_time(event)),
        }
    # The aggregate step measures the segment's processing time (convert, detectors,
    # aggregate and the transitions between them) from here.
    ref["started_at"] = started_at
    logger.info(
        "convert",
        extra={
            "waiting": out["waiting"],
            "last": ref["last"],
            "objects": len(ref["objects"]) + sum(len(p["objects"]) for p in ref.get("parts", [])),
            "bytes": written,
            "ms": timer.ms,
        },
    )
    return out
