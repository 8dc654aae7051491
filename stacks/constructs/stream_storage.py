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


class StreamStorage(Construct):
    """Private, encrypted, TLS-only buckets for sources and checkpoints."""

    def __init__(self, scope: Construct, construct_id: str, *, destroy_on_delete: bool) -> None:
        super().__init__(scope, construct_id)
        removal = cdk.RemovalPolicy.DESTROY if destroy_on_delete else cdk.RemovalPolicy.RETAIN

        def bucket(name: str, **kwargs: object) -> s3.Bucket:
            return s3.Bucket(
                self,
                name,
                encryption=s3.BucketEncryption.S3_MANAGED,
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                enforce_ssl=True,
                object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
                removal_policy=removal,
                auto_delete_objects=destroy_on_delete,
                **kwargs,  # type: ignore[arg-type]
            )

        self.source_bucket = bucket("Sources", versioned=False)
        self.checkpoint_bucket = bucket(
            "Checkpoints",
            lifecycle_rules=[s3.LifecycleRule(expiration=cdk.Duration.days(1))],
        )
