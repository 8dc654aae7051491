"""Buckets of the monolith: the source bucket clients upload streams to, and worker checkpoints.

A checkpoint is one small JSON object per (stream, shard): the next segment index and the
detectors' state, rewritten every few segments, so a replacement worker resumes where a stopped
one left off. S3 rather than DynamoDB because detector state (a reference thumbnail for freeze)
can approach DynamoDB's 400 KB item limit, and a PUT costs less than the write units of a large
item. Checkpoints expire after a day; a finished job deletes its own.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.constructs.buckets import secure_bucket


class StreamStorage(Construct):
    """Private, encrypted, TLS-only buckets for sources and checkpoints."""

    def __init__(self, scope: Construct, construct_id: str, *, destroy_on_delete: bool) -> None:
        super().__init__(scope, construct_id)

        def bucket(name: str, **kwargs: object) -> s3.Bucket:
            return secure_bucket(self, name, destroy_on_delete=destroy_on_delete, **kwargs)

        self.source_bucket = bucket("Sources", versioned=False)
        self.checkpoint_bucket = bucket(
            "Checkpoints",
            lifecycle_rules=[s3.LifecycleRule(expiration=cdk.Duration.days(1))],
        )
