"""The lightweight orchestrator: a small Lambda that records a stream request and fans it out.

It needs only boto3 (in the Lambda runtime), so its code asset is the plain handler directory:
no layer, no bundling, no Docker at synth or deploy time.
"""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.constructs.lambda_defaults import RUNTIME, RUNTIME_ACKNOWLEDGMENT
from stacks.constructs.results import ResultsStore
from stacks.constructs.shard_service import ShardService

HANDLER_DIR = Path(__file__).resolve().parents[2] / "lambdas" / "orchestrator"


class Orchestrator(Construct):
    """``{"stream", "source"}`` in; a status item and one job per shard queue out."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        results: ResultsStore,
        shards: list[ShardService],
        source_bucket: s3.IBucket,
        segment_seconds: float,
        architecture: str,
        destroy_on_delete: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        removal = cdk.RemovalPolicy.DESTROY if destroy_on_delete else cdk.RemovalPolicy.RETAIN
        log_group = logs.LogGroup(
            self, "Logs", retention=logs.RetentionDays.TWO_WEEKS, removal_policy=removal
        )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64
            if architecture == "arm64"
            else lambda_.Architecture.X86_64,
            handler="handler.handler",
            code=lambda_.Code.from_asset(str(HANDLER_DIR), exclude=["__pycache__", "*.pyc"]),
            memory_size=256,
            timeout=cdk.Duration.seconds(30),
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            description="VQA monolith: record a stream request and fan it out to every shard",
            environment={
                "VQA_TABLE": results.table.table_name,
                "VQA_SHARD_QUEUES": cdk.Fn.to_json_string(
                    {s.shard: s.queue.queue_url for s in shards}
                ),
                "VQA_SHARD_DETECTORS": json.dumps({s.shard: list(s.detectors) for s in shards}),
                "VQA_SEGMENT_SECONDS": repr(segment_seconds),
                "VQA_SOURCE_BUCKET": source_bucket.bucket_name,
            },
        )
        cdk.Validations.of(self.function).acknowledge(RUNTIME_ACKNOWLEDGMENT)
        results.table.grant_write_data(self.function)
        # It checks that an s3:// source in the source bucket exists before fanning it out.
        source_bucket.grant_read(self.function)
        for shard in shards:
            shard.queue.grant_send_messages(self.function)
