"""Aggregate step: store one segment's defects idempotently, alert, and say what comes next.

Event: the loop state plus ``first`` (the index this execution started at), ``segment``
(convert's output) and ``detected`` (the detectors' outputs). Defects go through
:func:`vqa.results.put_defects` (a retried segment rewrites the same keys); the detectors'
``defect.started`` / ``defect.ended`` events and the converter's input-loss events are published,
in stream-time order, through :func:`vqa.alerts.publish` to the alerts topic and the event bus,
each at most once (a retried segment meets its claim in the results table). A failed publish is
a :class:`TransientError`: the state machine retries the segment and the unsent alerts go out
then. At the last segment the stream status becomes ``done``.

Returns the loop state with ``index`` advanced, ``last``, and ``rollover``, which asks the state
machine to hand over to a fresh execution once this one has handled ``SEGMENTS_PER_EXECUTION``
segments.
"""

from __future__ import annotations

from typing import Any

from lambdas.distributed.common import (
    CLIENTS,
    Timer,
    TransientError,
    env,
    event_from_json,
    execution_over_time,
    log,
    transient_errors,
)
from vqa import alerts, results
from vqa.defects import Defect, sort_defects
from vqa.events import sort_events

ARCHITECTURE = "distributed"


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    timer = Timer()
    stream = str(event["stream"])
    segment = event["segment"]
    index, first = int(event["index"]), int(event["first"])
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
                state="done",
                source=event["source"],
                segments=index + 1,
                end=segment["end"],
                duration=segment.get("duration", event["info"].get("duration", 0.0)),
                skipped=event["info"].get("skipped", {}),
            )
    nxt = index + 1
    log(
        "aggregate",
        stream=stream,
        index=index,
        defects=len(found),
        new=new,
        alerts=sent,
        last=segment["last"],
        ms=timer.ms,
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
