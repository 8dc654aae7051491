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

from stacks.constructs.buckets import secure_bucket

#: Key prefixes inside the intermediate bucket (the handlers build keys under these).
SEGMENTS_PREFIX = "segments/"
STATE_PREFIX = "state/"


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
        self.source = secure_bucket(self, "Source", destroy_on_delete=destroy_on_delete)
        self.intermediate = secure_bucket(
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
