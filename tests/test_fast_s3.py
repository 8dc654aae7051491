"""The emulation's short road to moto's S3 (vqa.local.fast_s3) leaves what is stored, what is
answered and what is metered as the full HTTP path has them."""

from __future__ import annotations

from typing import Any

import pytest
from moto import mock_aws

from vqa.local import aws, fast_s3
from vqa.meter import Meter

BUCKET = "vqa-fast-s3-test"
BODY = bytes(range(256)) * 1000


def _exercise(s3: Any) -> dict[str, Any]:
    """The calls the handlers make, and what they answer."""
    s3.put_object(Bucket=BUCKET, Key="a/frame-000", Body=BODY)
    s3.put_object(Bucket=BUCKET, Key="a/meta", Body=b"{}")
    got = s3.get_object(Bucket=BUCKET, Key="a/frame-000")
    body = got["Body"].read()
    # Not a plain PutObject: the full path serves it.
    s3.put_object(Bucket=BUCKET, Key="a/typed", Body=b"x", ContentType="application/json")
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=BUCKET, Key="a/missing")
    return {
        "body": body,
        "length": got["ContentLength"],
        "etag": got["ETag"],
        "type": got["ContentType"],
        "metadata": got["Metadata"],
        "aware": got["LastModified"].tzinfo is not None,
    }


def _run(fast: bool) -> tuple[dict[str, Any], dict[str, Any], dict[str, tuple[str, int]]]:
    with mock_aws():
        meter = Meter()
        s3 = aws.client("s3", meter=meter)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_encryption(
            Bucket=BUCKET,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )
        answers = _exercise(fast_s3.attach(s3, meter) if fast else s3)
        plain = aws.client("s3")  # what a reader of the bucket sees afterwards
        stored = {}
        for obj in plain.list_objects_v2(Bucket=BUCKET)["Contents"]:
            head = plain.head_object(Bucket=BUCKET, Key=obj["Key"])
            stored[obj["Key"]] = (head.get("ServerSideEncryption", ""), head["ContentLength"])
        snap = meter.snapshot()
    return answers, {"requests": snap["requests"], "bytes": snap["bytes"]}, stored


def test_same_objects_answers_and_metering_as_the_http_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moto.core.botocore_stubber import BotocoreStubber

    served: list[str] = []  # object requests that reached moto's HTTP layer
    original = BotocoreStubber.process_request

    def process_request(self: Any, request: Any) -> Any:
        if "/a/" in request.url and request.method in ("PUT", "GET"):
            served.append(request.method)
        return original(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", process_request)
    full = _run(fast=False)
    assert len(served) == 5
    served.clear()
    fast = _run(fast=True)
    assert served == ["PUT", "GET"]  # the typed PUT and the missing key: moto's own answers
    assert fast[0] == full[0]
    assert fast[0]["body"] == BODY
    assert fast[1] == full[1]
    assert full[1]["requests"]["s3"] == {
        "CreateBucket": 1,
        "PutBucketEncryption": 1,
        "PutObject": 3,
        "GetObject": 2,
    }
    assert full[1]["bytes"]["s3_put"] == len(BODY) + 2 + 1
    assert fast[2] == full[2]
    assert fast[2]["a/frame-000"] == ("AES256", len(BODY))
