"""The emulation's stand-in for the intermediate bucket's lifecycle rule (vqa.local.lifecycle)."""

from __future__ import annotations

import boto3
from moto import mock_aws

from lambdas.distributed.common import segment_prefix, state_key
from vqa.local.lifecycle import MARGIN, expire_consumed


def test_only_what_no_step_reads_again_is_dropped() -> None:
    """Segments and states below the slowest detector's last saved state, less a margin for
    retries, go; everything of another stream, and everything later, stays."""
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="inter")

        def put(key: str) -> None:
            s3.put_object(Bucket="inter", Key=key, Body=b"x")

        for index in range(10):
            for name in ("meta", "frame-00000", "audio"):
                put(segment_prefix("s1", index) + name)
            put(segment_prefix("s2", index) + "meta")  # another stream: not this run's
            put(state_key("s1", "black", index))  # the fast detector: saved after segment 9
            if index <= 6:
                put(state_key("s1", "silence", index))  # the slow one: after segment 6
        dropped = expire_consumed("inter", "s1")
        left = {o["Key"] for o in s3.list_objects_v2(Bucket="inter")["Contents"]}

    keep_from = 6 - MARGIN  # the slowest detector's last state, less the margin
    assert dropped == keep_from * (3 + 2)  # three segment objects and two states per index
    for index in range(10):
        kept = index >= keep_from
        assert (segment_prefix("s1", index) + "frame-00000" in left) is kept, index
        assert (state_key("s1", "black", index) in left) is kept, index
        assert segment_prefix("s2", index) + "meta" in left


def test_nothing_goes_before_any_state_is_saved() -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="inter")
        s3.put_object(Bucket="inter", Key=segment_prefix("s1", 0) + "meta", Body=b"x")
        assert expire_consumed("inter", "s1") == 0
        assert s3.list_objects_v2(Bucket="inter")["KeyCount"] == 1
