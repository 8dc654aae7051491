"""Idempotent defect storage (DynamoDB) and alerts (SNS), used by both architectures.

Item format (table keys ``stream`` and ``defect``):

- a defect: ``defect = "<kind>#<start:.6f>"``, attributes ``kind``, ``start``, ``end`` (strings of
  the JSON numbers, so no float rounding), ``detail`` (JSON);
- an alert record (:mod:`vqa.alerts`): ``defect = "alert#<event id>#<phase>"``, ``state``, ``body``;
- the stream status: ``defect = "#status"``, one item per stream for both architectures
  (:func:`status_item`, read back as a :class:`StreamStatus`): ``state`` (``running``, ``done``,
  ``stopped``, ``failed``), ``source``, ``error``, and either stream-wide
  ``duration``/``skipped``/``segments`` (distributed: one writer at a time) or, per shard of
  the ``shards`` list, ``shard_<name>`` (its state), ``duration_<name>``, ``skipped_<name>``,
  ``reason_<name>``,
  ``unmonitored_<name>`` (monolith: shards write concurrently, each only its own attributes);
  ``unmonitored`` / ``unmonitored_<name>`` list live stream time nobody watched (JSON
  ``[[start, end], ...]``). Values are strings, JSON for the others.
  ``stop_requested`` (``"true"``) and ``stop_requested_at``: monitoring was asked to stop
  (:func:`request_stop`; the front door's DELETE, :mod:`vqa.api`); read it as
  :attr:`StreamStatus.stop_requested` (which also honours the older ``stop`` attribute). A
  stop request survives :func:`put_status` (it may come before the stream is recorded); a
  stream that stopped on request ends in state ``stopped``.
- the front door's idempotency record: ``defect = "#request"`` (:data:`REQUEST_KEY`), the request
  and its fingerprint (:mod:`vqa.api`). Keys starting with ``#`` are metadata, never defects.

A retried segment writes the same keys again: the conditional put makes the first write win, so a
retry never duplicates a defect; alerts are de-duplicated by their own records (vqa.alerts).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from vqa.defects import Defect, sort_defects

STATUS_KEY = "#status"
#: The status attribute of a stop request (:func:`request_stop`); final state ``stopped``.
STOP_REQUESTED = "stop_requested"
#: States after which a stream runs no more.
FINAL_STATES = frozenset({"done", "failed", "stopped"})
#: Sort key of the front door's idempotency record (vqa.api): one per stream.
REQUEST_KEY = "#request"
#: Sort-key prefix of the alert records :mod:`vqa.alerts` keeps (not defects).
ALERT_PREFIX = "alert#"


def put_defects(
    *,
    dynamodb: Any,
    table: str,
    stream: str,
    defects: list[Defect],
    sns: Any | None = None,
    topic_arn: str | None = None,
) -> int:
    """Store ``defects`` for ``stream``; publish an alert for each one not stored before.

    Returns the number of new defects.
    """
    new = 0
    for d in defects:
        item = {
            "stream": {"S": stream},
            "defect": {"S": d.key},
            "kind": {"S": d.kind},
            "start": {"N": repr(d.start)},
            "end": {"N": repr(d.end)},
            "detail": {"S": json.dumps(d.detail, sort_keys=True)},
        }
        try:
            dynamodb.put_item(
                TableName=table,
                Item=item,
                ConditionExpression="attribute_not_exists(#d)",
                ExpressionAttributeNames={"#d": "defect"},
            )
        except dynamodb.exceptions.ConditionalCheckFailedException:
            continue
        new += 1
        if sns is not None and topic_arn:
            sns.publish(
                TopicArn=topic_arn,
                Subject=f"VQA {d.kind} defect",
                Message=json.dumps({"stream": stream, **d.to_json()}),
            )
    return new


def read_defects(*, dynamodb: Any, table: str, stream: str) -> list[Defect]:
    """All defects stored for ``stream``, in canonical order."""
    out: list[Defect] = []
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "#s = :s",
        "ExpressionAttributeNames": {"#s": "stream"},
        "ExpressionAttributeValues": {":s": {"S": stream}},
        "ConsistentRead": True,
    }
    while True:
        page = dynamodb.query(**kwargs)
        for item in page["Items"]:
            key = item["defect"]["S"]
            if key.startswith("#") or key.startswith(ALERT_PREFIX):  # status, request
                continue
            detail = json.loads(item["detail"]["S"])
            out.append(
                Defect(
                    start=float(item["start"]["N"]),
                    end=float(item["end"]["N"]),
                    kind=item["kind"]["S"],
                    detail=detail,
                )
            )
        if "LastEvaluatedKey" not in page:
            return sort_defects(out)
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def encode(value: Any) -> dict[str, str]:
    """A status attribute: strings as they are, anything else as JSON."""
    return {"S": value if isinstance(value, str) else json.dumps(value)}


def status_item(stream: str, state: str, **fields: Any) -> dict[str, Any]:
    """The stream's status item, in DynamoDB's encoding."""
    item: dict[str, Any] = {
        "stream": {"S": stream},
        "defect": {"S": STATUS_KEY},
        "state": {"S": state},
    }
    item.update({k: encode(v) for k, v in fields.items()})
    return item


def put_status(*, dynamodb: Any, table: str, stream: str, state: str, **fields: Any) -> None:
    """Record the stream's state (``running``, ``done``, ``stopped``, ``failed``) and details
    (an error), replacing the item, except a stop request: that survives.

    The front door's DELETE may land before the architecture records the stream (the
    distributed ``Start`` step): its stop request then already sits in the item, and a plain
    put would erase it and the stream would run on. The put is conditional on there being
    none; where there is one, the fields are set around it instead.
    """
    try:
        dynamodb.put_item(
            TableName=table,
            Item=status_item(stream, state, **fields),
            ConditionExpression="attribute_not_exists(#stop)",
            ExpressionAttributeNames={"#stop": STOP_REQUESTED},
        )
    except dynamodb.exceptions.ConditionalCheckFailedException:
        update_status(dynamodb=dynamodb, table=table, stream=stream, state=state, **fields)


def update_status(*, dynamodb: Any, table: str, stream: str, **fields: Any) -> dict[str, str]:
    """Set some attributes of the stream's status item (others untouched); the new item."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    sets = []
    for i, (k, v) in enumerate(fields.items()):
        names[f"#f{i}"] = k
        values[f":f{i}"] = encode(v)
        sets.append(f"#f{i} = :f{i}")
    resp = dynamodb.update_item(
        TableName=table,
        Key={"stream": {"S": stream}, "defect": {"S": STATUS_KEY}},
        UpdateExpression="SET " + ", ".join(sets),
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
        ReturnValues="ALL_NEW",
    )
    return _decode(resp.get("Attributes", {}))


def request_stop(*, dynamodb: Any, table: str, stream: str, at: str) -> dict[str, str]:
    """Ask monitoring of ``stream`` to stop (``at``: UTC ISO-8601); the new status item.

    It may come before the stream is recorded at all: the item then holds only the request,
    which :func:`put_status` keeps when the architecture records the stream.
    """
    return update_status(
        dynamodb=dynamodb,
        table=table,
        stream=stream,
        **{STOP_REQUESTED: True, f"{STOP_REQUESTED}_at": at},
    )


def _decode(item: dict[str, Any]) -> dict[str, str]:
    return {k: v.get("S", v.get("N")) for k, v in item.items() if k not in ("stream", "defect")}


@dataclass(frozen=True)
class StreamStatus:
    """A stream's status item, read the same way for both architectures."""

    state: str
    source: str = ""
    #: The stream's length: the longest of its shards' (an audio-only shard sees the audio end).
    duration: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)
    segments: int = 0
    error: str = ""
    #: The one-line reason a shard gave up on a bad source, if one did.
    reason: str = ""
    #: Stream time nobody monitored (a live job's worker replaced, a hole in the media):
    #: ``[start, end)`` intervals in stream seconds, merged over the shards and sorted.
    unmonitored: list[tuple[float, float]] = field(default_factory=list)
    #: The front door's DELETE asked monitoring to stop (vqa.api).
    stop_requested: bool = False
    #: Every attribute as stored (strings).
    raw: dict[str, str] = field(default_factory=dict)

    @property
    def unmonitored_seconds(self) -> float:
        return round(sum(b - a for a, b in self.unmonitored), 6)

    @classmethod
    def from_item(cls, item: dict[str, str]) -> StreamStatus:
        shards = json.loads(item.get("shards") or "[]")
        durations = [item.get("duration")] + [item.get(f"duration_{s}") for s in shards]
        skipped: dict[str, str] = json.loads(item.get("skipped") or "{}")
        for s in shards:
            skipped.update(json.loads(item.get(f"skipped_{s}") or "{}"))
        reasons = [item.get(f"reason_{s}") for s in shards]
        gaps = []
        for attr in ["unmonitored"] + [f"unmonitored_{s}" for s in shards]:
            gaps += [(float(a), float(b)) for a, b in json.loads(item.get(attr) or "[]")]
        return cls(
            state=str(item.get("state", "")),
            source=str(item.get("source", "")),
            duration=max((float(d) for d in durations if d), default=0.0),
            skipped=skipped,
            segments=int(item.get("segments") or 0),
            error=str(item.get("error", "")),
            reason=next((r for r in reasons if r), ""),
            unmonitored=merge_intervals(gaps),
            stop_requested=str(item.get("stop_requested", "")).lower() == "true"
            or bool(item.get("stop")),  # the attribute's first name, still written by some
            raw=dict(item),
        )


def merge_intervals(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sorted, overlapping or touching intervals joined."""
    out: list[tuple[float, float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def read_status(*, dynamodb: Any, table: str, stream: str) -> StreamStatus | None:
    """The stream's status, or None when no run recorded one."""
    item = get_status(dynamodb=dynamodb, table=table, stream=stream)
    return None if item is None else StreamStatus.from_item(item)


def get_status(*, dynamodb: Any, table: str, stream: str) -> dict[str, Any] | None:
    resp = dynamodb.get_item(
        TableName=table,
        Key={"stream": {"S": stream}, "defect": {"S": STATUS_KEY}},
        ConsistentRead=True,
    )
    item = resp.get("Item")
    if not item:
        return None
    return _decode(item)
