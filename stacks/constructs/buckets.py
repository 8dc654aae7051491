"""One secure S3 bucket definition for both stacks."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
from constructs import Construct

#: The request-metrics filter `vqa experiment --aws` reads (CloudWatch S3 request metrics).
REQUEST_METRICS_ID = "EntireBucket"


def secure_bucket(
    scope: Construct, construct_id: str, *, destroy_on_delete: bool, **kwargs: object
) -> s3.Bucket:
    """Private (all public access blocked), TLS-only, encrypted at rest, owner-enforced, with
    request metrics for the whole bucket; destroyed with the stack in a sandbox."""
    return s3.Bucket(
        scope,
        construct_id,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        encryption=s3.BucketEncryption.S3_MANAGED,
        enforce_ssl=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        removal_policy=cdk.RemovalPolicy.DESTROY if destroy_on_delete else cdk.RemovalPolicy.RETAIN,
        auto_delete_objects=destroy_on_delete,
        metrics=[s3.BucketMetrics(id=REQUEST_METRICS_ID)],
        **kwargs,  # type: ignore[arg-type]
    )
