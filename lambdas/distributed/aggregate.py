"""Aggregate step: store one segment's defects idempotently, alert, and say what comes next.

Event: the loop state plus ``first`` (the index this execution started at), ``segment``
(convert's output) and ``detected`` (the detectors' outputs). Defects go through
:func:`vqa.results.put_defects` (a retried segment rewrites the same keys); the detectors'
``defect.started`` / ``defect.ended`` events and the converter's input-loss events are published,
in stream-time order, through :func:`vqa.alerts.publish` to the alerts topic and the event bus,
each at most once (a retried segment meets its claim in the results table). A failed publish is
a :class:`TransientError`: the state machine retries the segment and the unsent alerts go out
then. At the last segment the stream status becomes ``done`` (``stopped`` when the converter
ended the stream at a stop request).

Returns the loop state with ``index`` advanced, ``last``, and ``rollover``, which asks the state
machine to hand over to a fresh execution once this one has handled ``SEGMENTS_PER_EXECUTION``
segments.
"""

from __future__ import annotations

import time
from typing import Any

from lambdas.distributed.common import (
    ARCHITECTURE,
    CLIENTS,
    OBS,
    Timer,
    TransientError,
    env,
    event_from_json,
    execution_over_time,
    logger,
    metrics,
    tracer,
    transient_errors,
)
from vqa import alerts, results
from vqa.defects import Defect, sort_defects
from vqa.events import DefectEvent, sort_events

#: Every this many segments a running stream's status records how far it has got (one
#: DynamoDB write per ten segments, as the monolith's workers do at their checkpoints).
PROGRESS_EVERY = 10


def _segment_metrics(segment: dict[str, Any], events: list[DefectEvent], sent: int) -> None:
    """The operational metrics of one segment (:mod:`vqa.metrics`), once it is stored and
    alerted: the step that completes a segment is the one that knows it was processed."""
    now = time.time()
    start, end = float(segment["start"]), float(segment["end"])
    if "parts" in segment:  # live: one analysis segment per part read
        count, seconds = len(segment["parts"]), end - start
    else:  # a file: the last segment ends where the media does
        if "duration" in segment:
            end = min(end, float(segment["duration"]))
        seconds = max(0.0, end - start)
        count = 1 if seconds > 0 else 0
    if count:
        OBS.segments(
            count,
            stream_seconds=seconds,
            processing_seconds=now - float(segment.get("started_at", now)),
        )
    if "published" in segment:
        OBS.live_edge_lag(now - float(segment["published"]))
    OBS.defects_started(events)
    OBS.alerts_published(sent)


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)  # the response holds the source URL
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    timer = Timer()
    stream = str(event["stream"])
    segment = event["segment"]
    index, first = int(event["index"]), int(event["first"])
    OBS.bind(stream_id=stream, segment=index)
    table = env("TABLE_NAME")
    found = sort_defects([Defect.from_json(d) for out in event["detected"] for d in out["defects"]])
    events = sort_events(
        [event_from_json(e) for out in event["detected"] for e in out.get("events", [])]
        + [event_from_json(e) for e in segment.get("events", [])]
    )
    with transient_errors():
        new = results.put_defects(
            dynamodb=CLIENTS.dynamodb, table=table, stream=stream, defects=found
        )
        try:
            sent = alerts.publish(
                events,
                stream_id=stream,
                architecture=ARCHITECTURE,
                source=str(event["source"]),
                table=table,
                topic_arn=env("TOPIC_ARN"),
                bus_name=env("BUS_NAME"),
                sns=CLIENTS.sns,
                events_client=CLIENTS.get("events"),
                dynamodb=CLIENTS.dynamodb,
            )
        except alerts.PublishError as exc:
            raise TransientError(str(exc)) from exc
        if segment["last"]:
            results.put_status(
                dynamodb=CLIENTS.dynamodb,
                table=table,
                stream=stream,
                state="stopped" if segment.get("stopped") else "done",
                source=event["source"],
                segments=index + 1,
                end=segment["end"],
                duration=segment.get("duration", event["info"].get("duration", 0.0)),
                skipped=event["info"].get("skipped", {}),
            )
        elif (index + 1) % PROGRESS_EVERY == 0:
            # Progress for the front door's GET (monitored time so far); the final figure
            # comes with the last segment.
            results.update_status(
                dynamodb=CLIENTS.dynamodb, table=table, stream=stream, duration=segment["end"]
            )
    nxt = index + 1
    _segment_metrics(segment, events, sent)
    logger.info(
        "aggregate",
        extra={
            "defects": len(found),
            "new": new,
            "alerts": sent,
            "last": segment["last"],
            "ms": timer.ms,
        },
    )
    return {
        "stream": stream,
        "source": event["source"],
        "info": event["info"],
        "cursor": event["cursor"],
        "polls": event["polls"],
        "index": nxt,
        "last": bool(segment["last"]),
        "rollover": nxt - first >= int(env("SEGMENTS_PER_EXECUTION")) or execution_over_time(event),
    }
