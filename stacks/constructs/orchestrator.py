"""The lightweight orchestrator: a small Lambda that records a stream request and fans it out.

It is made by the stack's :class:`~stacks.constructs.lambda_defaults.VqaFunctions` like every
other function: the shared code asset and dependencies layer (for Powertools' logs, metrics and
traces, from the same lock), X-Ray tracing, JSON logs in its own log group. It imports nothing
heavy (no PyAV, no numpy), so the layer costs it disk, not start-up time.
"""

from __future__ import annotations

import json

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.constructs.lambda_defaults import VqaFunctions
from stacks.constructs.results import ResultsStore
from stacks.constructs.shard_service import ShardService

#: The handler in the shared code asset (stacks/constructs/packaging.py ships lambdas/orchestrator).
HANDLER = "lambdas.orchestrator.handler.handler"


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
        functions: VqaFunctions,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = functions.function(
            "Orchestrator",
            handler=HANDLER,
            memory_size=256,
            timeout=cdk.Duration.seconds(30),
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
        results.table.grant_write_data(self.function)
        # It checks that an s3:// source in the source bucket exists before fanning it out.
        source_bucket.grant_read(self.function)
        for shard in shards:
            shard.queue.grant_send_messages(self.function)
