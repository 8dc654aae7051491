"""Idempotent defect storage (DynamoDB) and alerts (SNS), used by both architectures.

Item format (table keys ``stream`` and ``defect``):

- a defect: ``defect = "<kind>#<start:.6f>"``, attributes ``kind``, ``start``, ``end`` (strings of
  the JSON numbers, so no float rounding), ``detail`` (JSON);
- the stream status: ``defect = "#status"``, attributes ``state`` and ``error`` etc.

A retried segment writes the same keys again: the conditional put makes the first write win, and
only that first write publishes the alert, so a retry neither duplicates a defect nor re-alerts.
"""

from __future__ import annotations

import json
from typing import Any

from vqa.defects import Defect, sort_defects

STATUS_KEY = "#status"


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
            if item["defect"]["S"] == STATUS_KEY:
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


def put_status(*, dynamodb: Any, table: str, stream: str, state: str, **fields: Any) -> None:
    """Record the stream's state (``running``, ``done``, ``failed``) and details (an error)."""
    item: dict[str, Any] = {
        "stream": {"S": stream},
        "defect": {"S": STATUS_KEY},
        "state": {"S": state},
    }
    for k, v in fields.items():
        item[k] = {"S": v if isinstance(v, str) else json.dumps(v)}
    dynamodb.put_item(TableName=table, Item=item)


def get_status(*, dynamodb: Any, table: str, stream: str) -> dict[str, Any] | None:
    resp = dynamodb.get_item(
        TableName=table,
        Key={"stream": {"S": stream}, "defect": {"S": STATUS_KEY}},
        ConsistentRead=True,
    )
    item = resp.get("Item")
    if not item:
        return None
    return {k: v.get("S", v.get("N")) for k, v in item.items() if k not in ("stream", "defect")}
