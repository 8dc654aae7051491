"""Read the alerts an emulated stack publishes, as a subscriber of its topic and bus would.

A user routes the alerts with an SNS subscription or an EventBridge rule; :class:`AlertTap` makes
both, each into an SQS queue of its own in the emulated account (the user's resources, so not
metered and not the stack's roles): a queue subscribed to the alerts topic, and a rule on the
alerts bus matching ``{"source": ["vqa"]}`` with that queue as target. :meth:`AlertTap.read`
returns the alert bodies (the contract's objects) as they arrive, per channel.

Delivery is at least once (:mod:`vqa.alerts`): a consumer dedupes on ``(id, event)``, and so does
:meth:`AlertTap.fresh`, which :func:`vqa.local.monolith.watch` prints from.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

#: The channels an alert goes out on.
CHANNELS = ("topic", "bus")


class AlertTap:
    """An SQS queue per channel receiving the stack's alerts; ``client(service)`` is the
    emulated account's (unmetered) client factory."""

    def __init__(self, client: Any, *, topic_arn: str, bus_name: str) -> None:
        self.sqs = client("sqs")
        tag = uuid.uuid4().hex[:8]
        self.urls: dict[str, str] = {}
        arns: dict[str, str] = {}
        for channel in CHANNELS:
            url = self.sqs.create_queue(QueueName=f"vqa-alerts-{channel}-{tag}")["QueueUrl"]
            attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            self.urls[channel] = url
            arns[channel] = attrs["Attributes"]["QueueArn"]
        client("sns").subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=arns["topic"],
            Attributes={"RawMessageDelivery": "true"},
        )
        events = client("events")
        rule = f"vqa-alerts-{tag}"
        events.put_rule(
            Name=rule, EventBusName=bus_name, EventPattern=json.dumps({"source": ["vqa"]})
        )
        events.put_targets(
            Rule=rule, EventBusName=bus_name, Targets=[{"Id": "tap", "Arn": arns["bus"]}]
        )
        self._seen: set[tuple[str, str]] = set()
        #: Every alert read so far, per channel, duplicates included (tests count them).
        self.received: dict[str, list[dict[str, Any]]] = {c: [] for c in CHANNELS}
        #: The EventBridge envelopes (source, detail-type) of the bus alerts.
        self.envelopes: list[dict[str, Any]] = []

    def read(self, channel: str, *, wait: float = 0.0) -> list[dict[str, Any]]:
        """The alerts waiting on ``channel`` (long-polls up to ``wait`` seconds for the first)."""
        out: list[dict[str, Any]] = []
        first = True
        while True:
            resp = self.sqs.receive_message(
                QueueUrl=self.urls[channel],
                MaxNumberOfMessages=10,
                WaitTimeSeconds=int(wait) if first else 0,
            )
            first = False
            messages = resp.get("Messages", [])
            if not messages:
                break
            for m in messages:
                doc = json.loads(m["Body"])
                if channel == "bus":
                    self.envelopes.append({k: v for k, v in doc.items() if k != "detail"})
                    doc = doc["detail"]
                out.append(doc)
                self.sqs.delete_message(
                    QueueUrl=self.urls[channel], ReceiptHandle=m["ReceiptHandle"]
                )
        out.sort(key=lambda b: b.get("at", ""))
        self.received[channel].extend(out)
        return out

    def fresh(self, channel: str = "bus", *, wait: float = 0.0) -> list[dict[str, Any]]:
        """:meth:`read`, less alerts already returned (same ``id`` and ``event``)."""
        out = []
        for body in self.read(channel, wait=wait):
            key = (str(body.get("id")), str(body.get("event")))
            if key not in self._seen:
                self._seen.add(key)
                out.append(body)
        return out
