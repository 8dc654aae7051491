"""vqa.alerts: the contract's alert body, published once to SNS and EventBridge, never lost."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from vqa import alerts
from vqa.defects import Defect
from vqa.events import DefectEvent
from vqa.results import read_defects

REGION = "us-east-1"


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    """A table, a topic and a bus, each delivering to an SQS queue the test reads."""
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        sns = boto3.client("sns", region_name=REGION)
        eb = boto3.client("events", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        ddb.create_table(
            TableName="t",
            KeySchema=[
                {"AttributeName": "stream", "KeyType": "HASH"},
                {"AttributeName": "defect", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "stream", "AttributeType": "S"},
                {"AttributeName": "defect", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        topic = sns.create_topic(Name="alerts")["TopicArn"]
        eb.create_event_bus(Name="bus")
        queues = {}
        for name in ("from-topic", "from-bus"):
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            queues[name] = (url, arn["Attributes"]["QueueArn"])
        sns.subscribe(
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=queues["from-topic"][1],
            Attributes={"RawMessageDelivery": "false"},
        )
        eb.put_rule(Name="r", EventBusName="bus", EventPattern=json.dumps({"source": ["vqa"]}))
        eb.put_targets(
            Rule="r", EventBusName="bus", Targets=[{"Id": "q", "Arn": queues["from-bus"][1]}]
        )
        yield {
            "ddb": ddb,
            "sns": sns,
            "eb": eb,
            "sqs": sqs,
            "topic": topic,
            "topic_q": queues["from-topic"][0],
            "bus_q": queues["from-bus"][0],
        }


def _drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    out = []
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def _publish(aws: dict[str, Any], events: list[DefectEvent], **over: Any) -> int:
    kwargs: dict[str, Any] = dict(
        stream_id="s1",
        architecture="monolith",
        source="http://origin/live.m3u8",
        table="t",
        topic_arn=aws["topic"],
        bus_name="bus",
        sns=aws["sns"],
        events_client=aws["eb"],
        dynamodb=aws["ddb"],
    )
    kwargs.update(over)
    return alerts.publish(events, **kwargs)


def _events() -> list[DefectEvent]:
    started = DefectEvent.started("black", 4.0)
    ended = DefectEvent.ended(Defect(start=4.0, end=7.5, kind="black"), id=started.id)
    return [started, ended]


def test_alert_body_is_the_contract_object() -> None:
    at = datetime(2026, 11, 30, 22, 4, 5, 123456, tzinfo=UTC)
    started, ended = _events()
    body = alerts.alert_body(started, source="src", architecture="monolith", stream_id="s", at=at)
    assert body == {
        "event": "defect.started",
        "kind": "black",
        "start": 4.0,
        "end": None,
        "id": "black#4.000000",
        "source": "src",
        "at": "2026-11-30T22:04:05.123Z",
        "architecture": "monolith",
        "stream_id": "s",
    }
    end_body = alerts.alert_body(ended, source="src", architecture="monolith", stream_id="s")
    assert (end_body["event"], end_body["end"], end_body["id"]) == ("defect.ended", 7.5, body["id"])


def test_each_alert_reaches_topic_and_bus_once(aws: dict[str, Any]) -> None:
    events = _events()
    assert _publish(aws, events) == 2
    # The same events again (a retried segment, a resumed worker): nothing new goes out.
    assert _publish(aws, events) == 0
    from_topic = _drain(aws["sqs"], aws["topic_q"])
    from_bus = _drain(aws["sqs"], aws["bus_q"])
    assert [json.loads(n["Message"])["event"] for n in from_topic] == [
        "defect.started",
        "defect.ended",
    ]
    assert from_topic[0]["MessageAttributes"]["kind"]["Value"] == "black"
    assert [e["detail-type"] for e in from_bus] == ["Defect Started", "Defect Ended"]
    assert {e["source"] for e in from_bus} == {"vqa"}
    detail = from_bus[1]["detail"]
    assert (detail["kind"], detail["start"], detail["end"]) == ("black", 4.0, 7.5)
    assert (detail["architecture"], detail["stream_id"]) == ("monolith", "s1")
    # Alert records are not defects.
    assert read_defects(dynamodb=aws["ddb"], table="t", stream="s1") == []


class _FailingSns:
    """An SNS client whose publish fails ``fail`` times, then delegates."""

    def __init__(self, real: Any, fail: int) -> None:
        self.real, self.fail = real, fail

    def publish(self, **kwargs: Any) -> Any:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("SNS unavailable")
        return self.real.publish(**kwargs)


def test_failed_publish_raises_and_the_retry_sends_it_once(aws: dict[str, Any]) -> None:
    events = _events()
    flaky = _FailingSns(aws["sns"], fail=1)
    with pytest.raises(RuntimeError, match="SNS unavailable"):
        _publish(aws, events, sns=flaky)
    # Nothing went out, the claim stays pending: the retry publishes both, in order.
    assert _drain(aws["sqs"], aws["topic_q"]) == []
    assert _publish(aws, events, sns=flaky) == 2
    assert _publish(aws, events, sns=flaky) == 0
    sent = [json.loads(n["Message"]) for n in _drain(aws["sqs"], aws["topic_q"])]
    assert [(b["event"], b["id"]) for b in sent] == [
        ("defect.started", "black#4.000000"),
        ("defect.ended", "black#4.000000"),
    ]
    assert len(_drain(aws["sqs"], aws["bus_q"])) == 2


def test_refused_eventbridge_entry_is_a_failure() -> None:
    class Refusing:
        def put_events(self, **_: Any) -> dict[str, Any]:
            return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "ThrottlingException"}]}

    body = {"id": "black#1.000000", "stream_id": "s"}
    with pytest.raises(alerts.PublishError, match="ThrottlingException"):
        alerts._send(
            body, _events()[0], topic_arn=None, bus_name="bus", sns=None, events=Refusing()
        )
