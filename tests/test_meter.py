"""The shared meter counts what the clients really did."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from vqa.meter import Meter


def test_meter_counts_requests_bytes_and_failures() -> None:
    with mock_aws():
        meter = Meter()
        s3 = meter.attach(boto3.client("s3", region_name="us-east-1"))
        ddb = meter.attach(boto3.client("dynamodb", region_name="us-east-1"))
        s3.create_bucket(Bucket="metered")
        s3.put_object(Bucket="metered", Key="a", Body=b"x" * 1000)
        s3.put_object(Bucket="metered", Key="b", Body=b"y" * 24)
        assert s3.get_object(Bucket="metered", Key="a")["Body"].read() == b"x" * 1000
        with pytest.raises(s3.exceptions.NoSuchKey):
            s3.get_object(Bucket="metered", Key="missing")
        ddb.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.put_item(TableName="t", Item={"k": {"S": "1"}})
        meter.add("state_transitions", 3)
        snap = meter.snapshot()
    assert snap["requests"]["s3"] == {"CreateBucket": 1, "PutObject": 2, "GetObject": 2}
    assert snap["requests"]["dynamodb"] == {"CreateTable": 1, "PutItem": 1}
    assert snap["bytes"] == {"s3_put": 1024, "s3_get": 1000}
    assert snap["counters"] == {"state_transitions": 3}


def test_meter_merge_adds_snapshots() -> None:
    a, b = Meter(), Meter()
    a.count_request("lambda", "Invoke", 2)
    b.count_request("lambda", "Invoke", 3)
    b.add("lambda_gb_seconds", 1.5)
    a.merge(b.snapshot())
    assert a.snapshot()["requests"] == {"lambda": {"Invoke": 5}}
    assert a.snapshot()["counters"] == {"lambda_gb_seconds": 1.5}
