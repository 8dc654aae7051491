"""The monolith architecture: ECS on EC2, sharded detector groups, a lightweight orchestrator.

Prime Video's second design: each shard decodes the stream once, in memory, in the same process
as its detectors (no intermediate bucket), and a thin orchestrator fans every stream request out
to all shards. The stack only wires the constructs together; each concern is its own construct.
"""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from constructs import Construct

from stacks.capacity import TaskSize, check_capacity
from stacks.config import VqaConfig
from stacks.constructs.alarms import Alarms
from stacks.constructs.cluster import ComputeCluster
from stacks.constructs.dashboard import OperationsDashboard
from stacks.constructs.front_door import FrontDoor
from stacks.constructs.lambda_defaults import VqaFunctions
from stacks.constructs.network import Network
from stacks.constructs.orchestrator import Orchestrator
from stacks.constructs.results import ResultsStore
from stacks.constructs.shard_service import MAX_RECEIVES, ShardService
from stacks.constructs.stream_storage import StreamStorage
from stacks.constructs.tagging import tag_architecture
from vqa import urlguard

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = "containers/Dockerfile"
ARCHITECTURE = "monolith"
#: Segments between two checkpoints: after a crash at most this many are analysed again.
CHECKPOINT_EVERY = 10


#: cdk-nag (AwsSolutions) rules this design accepts, with the reason for each.
NAG_ACKNOWLEDGEMENTS: dict[str, str] = {
    "ECS4": "Container Insights bills custom metrics per task and service even when idle; the "
    "sandbox A/B reads CPU from the ASG's free EC2 metrics and the workers' own logs.",
    "ECS2": "The environment holds only resource names, queue URLs, tuning numbers and the SSRF "
    "guard's switch and allow-list (no secrets); they come from the stack at deploy time.",
    "AS3": "Scaling notifications would only echo ECS managed scaling; the capacity provider "
    "and the dead-letter alarms are the operational signals.",
    "S1": "Access logs would need a third bucket; the source and checkpoint buckets are "
    "private, TLS-only, and read/written only by this stack's roles (CloudTrail data events "
    "can be enabled account-wide).",
}
_MANAGED_POLICIES = {
    "service-role/AmazonEC2ContainerServiceforEC2Role": "the ECS agent's AWS-maintained policy",
    "AmazonSSMManagedInstanceCore": "Session Manager instead of SSH: no inbound rule to open",
    "service-role/AWSLambdaBasicExecutionRole": "the orchestrator's log writing, AWS-maintained",
}
#: Action groups that CDK's grant_* methods emit (grant_read, grant_read_write, grant_delete) and
#: that the ECS agent's instance policy uses.
_GRANT_ACTIONS = (
    "s3:GetBucket*",
    "s3:GetObject*",
    "s3:List*",
    "s3:Abort*",
    "s3:DeleteObject*",
    "ecs:Submit*",
)


def shard_names(shards: tuple[tuple[str, ...], ...]) -> list[str]:
    """``shard0``, ``shard1``...: the same names in the stack and in the local emulation."""
    return [f"shard{i}" for i in range(len(shards))]


def docker_ignore_patterns() -> list[str]:
    """The image's build context filter, shared by ``docker build`` and CDK's asset staging."""
    lines = (ROOT / f"{DOCKERFILE}.dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


class MonolithStack(cdk.Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: VqaConfig, **kwargs: object
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        self.config = config
        tag_architecture(self, ARCHITECTURE)

        network = Network(
            self,
            "Network",
            private_subnets=config.private_subnets,
            destroy_on_delete=config.destroy_on_delete,
        )
        compute = ComputeCluster(
            self,
            "Compute",
            network=network,
            instance_type=config.instance_type,
            min_instances=config.min_instances,
            max_instances=config.max_instances,
        )
        results = ResultsStore(self, "Results", destroy_on_delete=config.destroy_on_delete)
        storage = StreamStorage(self, "Storage", destroy_on_delete=config.destroy_on_delete)

        # One image for every shard; synth only hashes the context, `cdk deploy` builds it.
        image = ecs.ContainerImage.from_asset(
            str(ROOT),
            file=DOCKERFILE,
            exclude=docker_ignore_patterns(),
            ignore_mode=cdk.IgnoreMode.DOCKER,
            platform=ecr_assets.Platform.LINUX_ARM64
            if compute.arm64
            else ecr_assets.Platform.LINUX_AMD64,
        )
        common_env = {
            "AWS_DEFAULT_REGION": cdk.Aws.REGION,
            "VQA_TABLE": results.table.table_name,
            "VQA_TOPIC_ARN": results.topic.topic_arn,
            "VQA_BUS_NAME": results.bus.event_bus_name,
            "VQA_CHECKPOINT_BUCKET": storage.checkpoint_bucket.bucket_name,
            "VQA_SEGMENT_SECONDS": repr(config.segment_seconds),
            "VQA_CHECKPOINT_EVERY": str(CHECKPOINT_EVERY),
            # The workers fetch user-supplied URLs from inside the VPC: the SSRF guard on.
            **urlguard.environment(config.allowed_origins),
        }
        self.shards: list[ShardService] = []
        for i, (name, detectors) in enumerate(
            zip(shard_names(config.shards), config.shards, strict=True)
        ):
            cpu, memory_mb = config.task_size(i)
            shard = ShardService(
                self,
                f"Shard-{name}",
                shard=name,
                detectors=detectors,
                compute=compute,
                image=image,
                environment={
                    **common_env,
                    # cdk.json's overrides of this shard's detectors: the worker's one source.
                    "VQA_THRESHOLDS": json.dumps(config.thresholds_for(detectors), sort_keys=True),
                },
                cpu=cpu,
                memory_mb=memory_mb,
                destroy_on_delete=config.destroy_on_delete,
            )
            role = shard.task_definition.task_role
            shard.queue.grant_consume_messages(role)
            # SIGTERM hand-back: the worker re-sends its unfinished job to its own queue.
            shard.queue.grant_send_messages(role)
            # Conditional puts and status updates, and reading back the one alert record a
            # conditional put found (vqa.alerts: published already, or to publish again): no
            # Scan or Query, so a worker cannot read other streams' results.
            results.table.grant_write_data(role)
            results.table.grant(role, "dynamodb:GetItem")
            results.topic.grant_publish(role)
            results.bus.grant_put_events_to(role)
            storage.source_bucket.grant_read(role)
            storage.checkpoint_bucket.grant_read_write(role)
            compute.cluster.grant_task_protection(role)
            self.shards.append(shard)

        # Every stream runs one task of every shard: the services may scale to as many tasks
        # as the capacity provider's max_instances hold, and no further (a clear error at synth
        # if an explicit vqa.max_streams cannot fit).
        self.max_streams = check_capacity(
            [TaskSize(s.shard, s.cpu, s.memory_mb) for s in self.shards],
            instance_type=config.instance_type,
            max_instances=config.max_instances,
            max_streams=config.max_streams,
        )
        for shard in self.shards:
            shard.scale_on_backlog(max_tasks=self.max_streams)

        # The orchestrator and the front door run on the shared code asset and dependencies layer
        # (Powertools; the front door validates detectors and thresholds with the package).
        functions = VqaFunctions(
            self,
            "Functions",
            architecture=config.lambda_architecture,
            destroy_on_delete=config.destroy_on_delete,
        )
        orchestrator = Orchestrator(
            self,
            "Orchestrator",
            results=results,
            shards=self.shards,
            source_bucket=storage.source_bucket,
            segment_seconds=config.segment_seconds,
            functions=functions,
        )
        self.front_door = FrontDoor(
            self,
            "FrontDoor",
            functions=functions,
            results=results,
            detectors=[d for shard in config.shards for d in shard],
            allowed_origins=config.allowed_origins,
            source_bucket=storage.source_bucket,
            orchestrator=orchestrator.function,
        )
        self.alarms = Alarms(self, "Alarms", topic=results.topic)
        for shard in self.shards:
            self.alarms.dead_letters(
                shard.shard,
                shard.dead_letter_queue,
                why=f"a stream job failed {MAX_RECEIVES} times and was dead-lettered",
            )
            self.alarms.jobs_waiting(shard)
            self.alarms.worker_stalled(shard)
        self.alarms.function("Orchestrator", orchestrator.function)
        self.alarms.function("Api", self.front_door.function)
        self.alarms.operational(ARCHITECTURE, segment_seconds=config.segment_seconds)
        self.alarms.streams_failed(ARCHITECTURE)
        # The checkpoint bucket is where the monolith's S3 requests go (no frames in between).
        self.dashboard = OperationsDashboard(
            self,
            "Operations",
            architecture=ARCHITECTURE,
            functions=[orchestrator.function, *functions.functions],
            buckets={"checkpoints": storage.checkpoint_bucket},
            alarms=self.alarms.alarms,
            dead_letter_queues=[shard.dead_letter_queue for shard in self.shards],
            auto_scaling_group=compute.auto_scaling_group,
        )
        self._outputs(orchestrator, results, storage, compute)
        self._acknowledge_findings(storage, compute)

    def _acknowledge_findings(self, storage: StreamStorage, compute: ComputeCluster) -> None:
        """cdk-nag (AwsSolutions) findings this design accepts, each with its reason.

        IAM4/IAM5 findings are acknowledged one by one (policy, action group or resource), so
        a new wildcard that no grant_* produced still fails the check.
        """
        acks = {f"AwsSolutions-{rule}": reason for rule, reason in NAG_ACKNOWLEDGEMENTS.items()}
        for policy, why in _MANAGED_POLICIES.items():
            acks[f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{policy}]"] = why
        for action in _GRANT_ACTIONS:
            acks[f"AwsSolutions-IAM5[Action::{action}]"] = (
                "the ECS agent's container-instance policy CDK attaches (scoped to this cluster)"
                if action.startswith("ecs:")
                else f"{action}: an action group a grant_* call emits, on this stack's buckets"
            )
        for bucket in (storage.source_bucket, storage.checkpoint_bucket):
            logical = self.get_logical_id(bucket.node.default_child)  # type: ignore[arg-type]
            acks[f"AwsSolutions-IAM5[Resource::<{logical}.Arn>/*]"] = (
                "objects of this stack's own bucket (grant_read / grant_read_write)"
            )
        cluster = self.get_logical_id(compute.cluster.node.default_child)  # type: ignore[arg-type]
        task_arn = f"arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:task/<{cluster}>/*"
        acks[f"AwsSolutions-IAM5[Resource::{task_arn}]"] = (
            "grant_task_protection: the workers protect their own tasks in this cluster only"
        )
        acks["AwsSolutions-IAM5[Resource::*]"] = (
            "ecr:GetAuthorizationToken (task execution roles) and the ECS agent's instance "
            "actions are account-wide by AWS design; no other statement uses Resource *"
        )
        for rule, reason in acks.items():
            cdk.Validations.of(self).acknowledge(
                cdk.Acknowledgment(id=f"AwsSolutions::{rule}", reason=reason)
            )

    def _outputs(
        self,
        orchestrator: Orchestrator,
        results: ResultsStore,
        storage: StreamStorage,
        compute: ComputeCluster,
    ) -> None:
        out = {
            "OrchestratorFunctionName": orchestrator.function.function_name,
            "OrchestratorFunctionArn": orchestrator.function.function_arn,
            "DefectsTableName": results.table.table_name,
            "AlertsTopicArn": results.topic.topic_arn,
            "AlertsBusName": results.bus.event_bus_name,
            "SourceBucketName": storage.source_bucket.bucket_name,
            "CheckpointBucketName": storage.checkpoint_bucket.bucket_name,
            "ClusterName": compute.cluster.cluster_name,
            "DashboardName": self.dashboard.dashboard.dashboard_name,
            "DashboardUrl": self.dashboard.url,
        }
        for key, value in out.items():
            cdk.CfnOutput(self, key, value=value)
        for shard in self.shards:
            cdk.CfnOutput(
                self,
                f"{shard.shard}QueueUrl",
                value=shard.queue.queue_url,
                description=f"jobs of {shard.shard}: {','.join(shard.detectors)}",
            )
            cdk.CfnOutput(
                self, f"{shard.shard}DeadLetterQueueUrl", value=shard.dead_letter_queue.queue_url
            )
            cdk.CfnOutput(self, f"{shard.shard}ServiceName", value=shard.service.service_name)
