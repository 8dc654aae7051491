"""Defect alerts: each ``defect.started`` / ``defect.ended`` event published once, never lost.

Both architectures publish through :func:`publish`; the body of every alert is the object of
DESIGN.md's live-monitoring contract (:func:`alert_body`)::

    {"event": "defect.started" | "defect.ended", "kind", "start", "end" | null, "source", "at",
     "id", "architecture", "stream_id", ...kind-specific fields}

It goes to the SNS alerts topic (for people: ``Subject`` and ``MessageAttributes`` ``event``,
``kind``, ``stream_id``, ``architecture`` for subscription filter policies) and to an EventBridge
bus (for machines: source ``vqa``, detail-type ``Defect Started`` / ``Defect Ended``).

Exactly once where it can be, at least once where it cannot: before publishing, a conditional
put of an alert record (``stream = <stream_id>``, ``defect = "alert#<event id>#<phase>"``) in the
results table claims the alert with ``state = "pending"``; after both publishes succeed the record
becomes ``"published"``. A retried segment or a resumed worker that meets ``published`` skips the
alert; one that meets ``pending`` (the earlier attempt died or failed between claim and mark)
publishes it again, with the body stored in the claim (same ``at``). A crash after the publish
and before the mark therefore sends that one alert twice: unavoidable without a transaction
spanning SNS, EventBridge and DynamoDB, so consumers dedupe on ``id`` + ``event`` (both are in
every body). A publish that fails raises, leaving the claim ``pending``, so the caller's retry
(the segment's, the job's) sends it: an alert is never lost.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from vqa.events import DefectEvent
from vqa.results import ALERT_PREFIX

#: EventBridge ``Source`` of every alert (rules match on it).
EVENT_SOURCE = "vqa"
#: EventBridge ``DetailType`` per phase.
DETAIL_TYPES = {"started": "Defect Started", "ended": "Defect Ended"}

PENDING = "pending"
PUBLISHED = "published"


class PublishError(RuntimeError):
    """An alert could not be delivered; its record stays ``pending`` so a retry sends it."""


def iso_utc(at: datetime | None = None) -> str:
    """``2026-11-30T22:04:05.123Z``: UTC, milliseconds (the contract's ``at``)."""
    at = at or datetime.now(UTC)
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert_body(
    event: DefectEvent,
    *,
    source: str,
    architecture: str,
    stream_id: str,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The contract's alert object for ``event`` (``at`` defaults to now)."""
    body = event.to_json()  # event, kind, start, end, id and the kind's detail
    body["id"] = event.id
    body.update(
        source=source,
        at=iso_utc(at),
        architecture=architecture,
        stream_id=stream_id,
    )
    return body


def alert_key(event: DefectEvent) -> str:
    """The alert record's sort key: one per event id and phase."""
    return f"{ALERT_PREFIX}{event.id}#{event.phase}"


def publish(
    events: Iterable[DefectEvent],
    *,
    stream_id: str,
    architecture: str,
    source: str,
    table: str,
    topic_arn: str | None,
    bus_name: str | None,
    sns: Any | None,
    events_client: Any | None,
    dynamodb: Any,
) -> int:
    """Publish each of ``events`` in order unless already published; the number sent now.

    Raises :class:`PublishError` (or the client's error) if a publish fails: the events before it
    are published and marked, it and the ones after it are retried by the next call.
    """
    sent = 0
    for event in events:
        key = alert_key(event)
        body = _claim(dynamodb, table, stream_id, key, event, source, architecture)
        if body is None:
            continue  # published before: a retried segment or a resumed worker
        _send(body, event, topic_arn=topic_arn, bus_name=bus_name, sns=sns, events=events_client)
        dynamodb.update_item(
            TableName=table,
            Key={"stream": {"S": stream_id}, "defect": {"S": key}},
            UpdateExpression="SET #st = :p",
            ExpressionAttributeNames={"#st": "state"},
            ExpressionAttributeValues={":p": {"S": PUBLISHED}},
        )
        sent += 1
    return sent


def _claim(
    dynamodb: Any,
    table: str,
    stream_id: str,
    key: str,
    event: DefectEvent,
    source: str,
    architecture: str,
) -> dict[str, Any] | None:
    """Claim the alert; the body to publish, or None when it was published already."""
    body = alert_body(event, source=source, architecture=architecture, stream_id=stream_id)
    try:
        dynamodb.put_item(
            TableName=table,
            Item={
                "stream": {"S": stream_id},
                "defect": {"S": key},
                "state": {"S": PENDING},
                "body": {"S": json.dumps(body, sort_keys=True)},
            },
            ConditionExpression="attribute_not_exists(#d)",
            ExpressionAttributeNames={"#d": "defect"},
        )
        return body
    except dynamodb.exceptions.ConditionalCheckFailedException:
        pass
    item = dynamodb.get_item(
        TableName=table,
        Key={"stream": {"S": stream_id}, "defect": {"S": key}},
        ConsistentRead=True,
    ).get("Item", {})
    if item.get("state", {}).get("S") == PUBLISHED:
        return None
    stored = item.get("body", {}).get("S")
    return json.loads(stored) if stored else body


def _send(
    body: dict[str, Any],
    event: DefectEvent,
    *,
    topic_arn: str | None,
    bus_name: str | None,
    sns: Any | None,
    events: Any | None,
) -> None:
    message = json.dumps(body, sort_keys=True)
    if sns is not None and topic_arn:
        attrs = {
            name: {"DataType": "String", "StringValue": str(body[name])}
            for name in ("event", "kind", "stream_id", "architecture")
        }
        sns.publish(
            TopicArn=topic_arn,
            # Subjects are ASCII, at most 100 characters; stream ids are the caller's.
            Subject=f"VQA {event.kind} {event.phase}: {body['stream_id']}"[:100],
            Message=message,
            MessageAttributes=attrs,
        )
    if events is not None and bus_name:
        resp = events.put_events(
            Entries=[
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": DETAIL_TYPES[event.phase],
                    "Detail": message,
                    "EventBusName": bus_name,
                }
            ]
        )
        # PutEvents reports a refused entry in the response, not as an exception.
        if resp.get("FailedEntryCount", 0):
            entry = resp.get("Entries", [{}])[0]
            raise PublishError(
                f"EventBridge refused alert {body['id']} ({event.phase}): "
                f"{entry.get('ErrorCode', '?')} {entry.get('ErrorMessage', '')}".rstrip()
            )


def is_alert_key(sort_key: str) -> bool:
    """True for an alert record's sort key (readers of defects skip these)."""
    return sort_key.startswith(ALERT_PREFIX)
