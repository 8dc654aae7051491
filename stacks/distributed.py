"""The distributed architecture (Prime Video's first): Step Functions + Lambda + S3 in between.

The stack only wires constructs together: media buckets, the results store, the functions (one
code asset and one dependencies layer for all of them), and the state machine. Permissions are
``grant_*`` calls scoped to key prefixes.
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
from constructs import Construct

from stacks.config import VqaConfig
from stacks.constructs.alarms import Alarms
from stacks.constructs.dashboard import OperationsDashboard
from stacks.constructs.front_door import FrontDoor
from stacks.constructs.intermediate import SEGMENTS_PREFIX, STATE_PREFIX, MediaBuckets
from stacks.constructs.lambda_defaults import VqaFunctions
from stacks.constructs.results import ResultsStore
from stacks.constructs.tagging import tag_architecture
from stacks.constructs.workflow import (
    AnalysisWorkflow,
    execution_seconds_budget,
    logical_id,
    polls_per_execution,
    segments_per_execution,
)
from vqa import urlguard

ARCHITECTURE = "distributed"
HANDLERS = "lambdas.distributed"


class DistributedStack(cdk.Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: VqaConfig, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        tag_architecture(self, ARCHITECTURE)

        buckets = MediaBuckets(
            self,
            "Media",
            expiry_days=config.intermediate_expiry_days,
            destroy_on_delete=config.destroy_on_delete,
        )
        results = ResultsStore(self, "Results", destroy_on_delete=config.destroy_on_delete)
        functions = VqaFunctions(
            self,
            "Functions",
            architecture=config.lambda_architecture,
            destroy_on_delete=config.destroy_on_delete,
        )
        segment_seconds = str(config.segment_seconds)
        # Each stream runs one segment at a time through convert and each detector, so
        # vqa.max_streams concurrent streams need exactly that concurrency per function;
        # reserving it keeps other functions of the account from starving them (and them from
        # starving others). Beyond it, tasks are throttled and retried (workflow.THROTTLE_*).
        per_stream = config.max_streams
        chunk = segments_per_execution(
            configured=config.segments_per_execution,
            workflow_type=config.workflow_type,
            detectors=len(config.detectors),
        )

        start = functions.function(
            "Start",
            handler=f"{HANDLERS}.start.handler",
            description="VQA: probe a source and record the stream as running",
            memory_size=config.aggregate_memory_mb,
            timeout=cdk.Duration.seconds(60),
            environment={
                "TABLE_NAME": results.table.table_name,
                "DETECTORS": ",".join(config.detectors),
                # It probes user-supplied URLs from inside the VPC: the SSRF guard on.
                **urlguard.environment(config.allowed_origins),
            },
        )
        buckets.source.grant_read(start)
        results.table.grant_write_data(start)

        convert = functions.function(
            "Convert",
            handler=f"{HANDLERS}.convert.handler",
            description="VQA media conversion: a segment of the source to the intermediate bucket",
            memory_size=config.convert_memory_mb,
            timeout=cdk.Duration.seconds(120),
            reserved_concurrency=per_stream,
            environment={
                "INTERMEDIATE_BUCKET": buckets.intermediate.bucket_name,
                "GRANULARITY": config.granularity,
                "SEGMENT_SECONDS": segment_seconds,
                "TABLE_NAME": results.table.table_name,
                "POLLS_PER_EXECUTION": str(polls_per_execution(chunk)),
                "MAX_EXECUTION_SECONDS": str(execution_seconds_budget(config.workflow_type)),
                # It fetches user-supplied playlists and segments: the SSRF guard on.
                **urlguard.environment(config.allowed_origins),
            },
        )
        buckets.source.grant_read(convert)
        # A live stream's converter reads the stream status: a stop request ends the stream.
        results.table.grant_read_data(convert)
        buckets.intermediate.grant_put(convert, f"{SEGMENTS_PREFIX}*")

        detectors = {}
        for name in config.detectors:
            fn = functions.function(
                f"Detect{name.title().replace('_', '')}",
                handler=f"{HANDLERS}.detect.handler",
                description=f"VQA detector {name}: one segment, state kept in S3",
                memory_size=config.detector_memory_mb,
                timeout=cdk.Duration.seconds(60),
                reserved_concurrency=per_stream,
                environment={
                    "INTERMEDIATE_BUCKET": buckets.intermediate.bucket_name,
                    "DETECTOR": name,
                    # This detector's overrides of cdk.json's `thresholds` (issue 11).
                    "VQA_THRESHOLDS": json.dumps(
                        config.thresholds_for((name,)), sort_keys=True, separators=(",", ":")
                    ),
                },
            )
            buckets.intermediate.grant_read(fn, f"{SEGMENTS_PREFIX}*")
            buckets.intermediate.grant_read(fn, f"{STATE_PREFIX}*")
            buckets.intermediate.grant_put(fn, f"{STATE_PREFIX}*")
            detectors[name] = fn

        aggregate = functions.function(
            "Aggregate",
            handler=f"{HANDLERS}.aggregate.handler",
            description="VQA: store a segment's defects idempotently and publish alerts",
            memory_size=config.aggregate_memory_mb,
            timeout=cdk.Duration.seconds(60),
            reserved_concurrency=per_stream,
            environment={
                "TABLE_NAME": results.table.table_name,
                "TOPIC_ARN": results.topic.topic_arn,
                "BUS_NAME": results.bus.event_bus_name,
                "SEGMENTS_PER_EXECUTION": str(chunk),
                "MAX_EXECUTION_SECONDS": str(execution_seconds_budget(config.workflow_type)),
            },
        )
        results.table.grant_read_write_data(aggregate)
        results.topic.grant_publish(aggregate)
        results.bus.grant_put_events_to(aggregate)

        # Allowed to start executions of the state machine by the workflow construct.
        handover = functions.function(
            "Handover",
            handler=f"{HANDLERS}.handover.handler",
            description="VQA: continue a long stream in a fresh execution",
            memory_size=config.aggregate_memory_mb,
            timeout=cdk.Duration.seconds(30),
        )

        self._acknowledge_grants(buckets)
        workflow = AnalysisWorkflow(
            self,
            "Workflow",
            start=start,
            convert=convert,
            detectors=detectors,
            aggregate=aggregate,
            handover=handover,
            table=results.table,
            workflow_type=config.workflow_type,
            destroy_on_delete=config.destroy_on_delete,
        )

        # Before the alarms: its function gets the same error and throttle alarms as the rest.
        self.front_door = FrontDoor(
            self,
            "FrontDoor",
            functions=functions,
            results=results,
            detectors=config.detectors,
            allowed_origins=config.allowed_origins,
            source_bucket=buckets.source,
            state_machine=workflow.state_machine,
        )

        self.alarms = Alarms(self, "Alarms", topic=results.topic)
        self.alarms.state_machine("Analysis", workflow.state_machine)
        for fn in functions.functions:
            self.alarms.function(fn.node.id, fn)
        # A stream fails as its execution does: the Analysis alarms above are its stream-failed
        # alarms (Alarms.streams_failed says why there is no StreamsFailed metric here).
        self.alarms.operational(ARCHITECTURE, segment_seconds=config.segment_seconds)
        # The intermediate bucket's requests are the S3 cost driver Prime Video named.
        self.dashboard = OperationsDashboard(
            self,
            "Operations",
            architecture=ARCHITECTURE,
            functions=functions.functions,
            buckets={"intermediate": buckets.intermediate},
            alarms=self.alarms.alarms,
            state_machine=workflow.state_machine,
        )

        self.buckets, self.results, self.functions, self.workflow = (
            buckets,
            results,
            functions,
            workflow,
        )
        cdk.CfnOutput(
            self,
            "StateMachineArn",
            value=workflow.state_machine.state_machine_arn,
            description="Start a run: StartExecution with "
            '{"stream": ID, "source": "s3://SOURCE_BUCKET/KEY", "index": 0}',
        )
        cdk.CfnOutput(
            self,
            "SourceBucket",
            value=buckets.source.bucket_name,
            description="Upload streams here",
        )
        cdk.CfnOutput(self, "IntermediateBucket", value=buckets.intermediate.bucket_name)
        cdk.CfnOutput(
            self,
            "ResultsTable",
            value=results.table.table_name,
            description="Defects by stream; the '#status' item holds the stream state",
        )
        cdk.CfnOutput(self, "AlertsTopic", value=results.topic.topic_arn)
        cdk.CfnOutput(
            self,
            "DashboardName",
            value=self.dashboard.dashboard.dashboard_name,
            description="CloudWatch dashboard: streams, lag, defects, errors, cost drivers",
        )
        cdk.CfnOutput(self, "DashboardUrl", value=self.dashboard.url)
        cdk.CfnOutput(
            self,
            "AlertsBus",
            value=results.bus.event_bus_name,
            description="Defect alerts as EventBridge events (source vqa, detail-type "
            "'Defect Started' / 'Defect Ended'): route them with rules",
        )

    def _acknowledge_grants(self, buckets: MediaBuckets) -> None:
        """cdk-nag flags the action groups and key patterns that ``grant_read``/``grant_put``
        emit; each is scoped to one bucket and one key prefix of it."""
        actions = {
            "s3:GetObject*": "object reads (GetObject and its version/ACL/tagging variants)",
            "s3:GetBucket*": "bucket metadata reads that S3 object reads may need",
            "s3:List*": "listing the bucket (a missing key then reads as NoSuchKey, not 403)",
            "s3:Abort*": "aborting this function's own multipart uploads",
        }
        acks = [
            cdk.Acknowledgment(
                id=f"AwsSolutions::AwsSolutions-IAM5[Action::{action}]",
                reason=f"From grant_read/grant_put on one bucket and key prefix: {why}.",
            )
            for action, why in actions.items()
        ]
        source = f"<{logical_id(buckets.source)}.Arn>"
        intermediate = f"<{logical_id(buckets.intermediate)}.Arn>"
        resources = {
            f"{source}/*": "read the streams uploaded for analysis",
            f"{intermediate}/{SEGMENTS_PREFIX}*": "the converter writes, the detectors read, "
            "the segments' frames and audio",
            f"{intermediate}/{STATE_PREFIX}*": "each detector reads and writes its saved state",
        }
        acks += [
            cdk.Acknowledgment(
                id=f"AwsSolutions::AwsSolutions-IAM5[Resource::{resource}]",
                reason=f"Objects under one key prefix, per object key by design: {why}.",
            )
            for resource, why in resources.items()
        ]
        cdk.Validations.of(self).acknowledge(*acks)
