"""The S3 buckets of the distributed architecture: the source bucket and the intermediate bucket.

The intermediate bucket is where Prime Video's media converter put frames and audio buffers for
the detector functions to read back: its PUT/GET requests are one of the two cost drivers the
A/B measures. Objects (and the detectors' saved state) are only needed while a stream runs, so a
lifecycle rule expires them after ``expiry_days``.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
from constructs import Construct

#: Key prefixes inside the intermediate bucket (the handlers build keys under these).
SEGMENTS_PREFIX = "segments/"
STATE_PREFIX = "state/"


def _secure_bucket(
    scope: Construct, construct_id: str, *, destroy_on_delete: bool, **kwargs: object
) -> s3.Bucket:
    return s3.Bucket(
        scope,
        construct_id,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        encryption=s3.BucketEncryption.S3_MANAGED,
        enforce_ssl=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        removal_policy=cdk.RemovalPolicy.DESTROY if destroy_on_delete else cdk.RemovalPolicy.RETAIN,
        auto_delete_objects=destroy_on_delete,
        **kwargs,  # type: ignore[arg-type]
    )


class MediaBuckets(Construct):
    """``source``: where clients (and the experiment) upload streams; ``intermediate``: frames,
    audio buffers and detector state, expired after a day."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        expiry_days: int,
        destroy_on_delete: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        cdk.Validations.of(self).acknowledge(
            cdk.Acknowledgment(
                id="AwsSolutions::AwsSolutions-S1",
                reason="Server access logs would add a log record per frame object written and "
                "read (tens per stream-second), a storage cost outside the architecture under "
                "study; use CloudTrail S3 data events in an account that needs the audit.",
            )
        )
        self.source = _secure_bucket(self, "Source", destroy_on_delete=destroy_on_delete)
        self.intermediate = _secure_bucket(
            self,
            "Intermediate",
            destroy_on_delete=destroy_on_delete,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireIntermediates",
                    enabled=True,
                    expiration=cdk.Duration.days(expiry_days),
                    abort_incomplete_multipart_upload_after=cdk.Duration.days(1),
                )
            ],
        )
