"""Aggregate step: store one segment's defects idempotently, alert, and say what comes next.

Event: ``{"stream", "source", "index", "first", "info", "segment", "detected"}`` where
``detected`` is the list of the detectors' outputs and ``first`` the index this execution
started at. Defects go through :func:`vqa.results.put_defects` (a retried segment rewrites the
same keys and does not re-alert). At the last segment the stream status becomes ``done``.

Returns the state of the loop: ``{"stream", "source", "info", "index": next, "last",
"rollover"}``; ``rollover`` asks the state machine to hand over to a fresh execution once this
one has handled ``SEGMENTS_PER_EXECUTION`` segments.
"""

from __future__ import annotations

from typing import Any

from lambdas.distributed.common import CLIENTS, Timer, env, log, transient_errors
from vqa import results
from vqa.defects import Defect, sort_defects


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    timer = Timer()
    stream = str(event["stream"])
    segment = event["segment"]
    index, first = int(event["index"]), int(event["first"])
    table = env("TABLE_NAME")
    found = sort_defects([Defect.from_json(d) for out in event["detected"] for d in out["defects"]])
    with transient_errors():
        new = results.put_defects(
            dynamodb=CLIENTS.dynamodb,
            table=table,
            stream=stream,
            defects=found,
            sns=CLIENTS.sns,
            topic_arn=env("TOPIC_ARN"),
        )
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
        last=segment["last"],
        ms=timer.ms,
    )
    return {
        "stream": stream,
        "source": event["source"],
        "info": event["info"],
        "index": nxt,
        "last": bool(segment["last"]),
        "rollover": nxt - first >= int(env("SEGMENTS_PER_EXECUTION")),
    }
