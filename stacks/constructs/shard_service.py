"""One shard: its job queue (with a dead-letter queue) and the ECS service that drains it.

Every shard runs the same container image; the environment tells a task which detectors it runs
and which queue it reads. The service scales on the shard's backlog: the number of stream jobs
waiting *or in progress* (a job in progress is an in-flight message, invisible to
``ApproximateNumberOfMessagesVisible``; counting it too keeps a busy worker from being scaled in
under itself). A task that is still working also protects itself from scale-in through the ECS
agent's task-protection endpoint.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.constructs.cluster import ComputeCluster

#: Receives before SQS moves a job to the dead-letter queue: two retries after the first failure.
MAX_RECEIVES = 3
#: How long a received job stays invisible; the worker extends it (heartbeat) while it works.
VISIBILITY_SECONDS = 120
#: ECS lets a task run this long after SIGTERM: enough to finish a segment and checkpoint.
STOP_TIMEOUT_SECONDS = 120


class ShardService(Construct):
    """Queue + DLQ + ``Ec2TaskDefinition`` + ``Ec2Service`` + backlog step scaling for one shard."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        shard: str,
        detectors: tuple[str, ...],
        compute: ComputeCluster,
        image: ecs.ContainerImage,
        environment: dict[str, str],
        cpu: int,
        memory_mb: int,
        max_tasks: int,
        destroy_on_delete: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.shard = shard
        self.detectors = detectors
        removal = cdk.RemovalPolicy.DESTROY if destroy_on_delete else cdk.RemovalPolicy.RETAIN

        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
            removal_policy=removal,
        )
        self.queue = sqs.Queue(
            self,
            "Jobs",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=cdk.Duration.seconds(VISIBILITY_SECONDS),
            retention_period=cdk.Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=MAX_RECEIVES, queue=self.dead_letter_queue
            ),
            removal_policy=removal,
        )

        self.task_definition = ecs.Ec2TaskDefinition(
            self, "Task", network_mode=ecs.NetworkMode.BRIDGE
        )
        log_group = logs.LogGroup(
            self, "Logs", retention=logs.RetentionDays.TWO_WEEKS, removal_policy=removal
        )
        self.container = self.task_definition.add_container(
            "Worker",
            image=image,
            cpu=cpu,
            memory_reservation_mib=memory_mb,
            environment={
                **environment,
                "VQA_SHARD": shard,
                "VQA_DETECTORS": ",".join(detectors),
                "VQA_QUEUE_URL": self.queue.queue_url,
                "VQA_MAX_RECEIVES": str(MAX_RECEIVES),
                "VQA_VISIBILITY_SECONDS": str(VISIBILITY_SECONDS),
            },
            logging=ecs.LogDrivers.aws_logs(stream_prefix=shard, log_group=log_group),
            stop_timeout=cdk.Duration.seconds(STOP_TIMEOUT_SECONDS),
            readonly_root_filesystem=True,
            user="10001",
        )

        self.service = ecs.Ec2Service(
            self,
            "Service",
            cluster=compute.cluster,
            task_definition=self.task_definition,
            desired_count=0,
            min_healthy_percent=0,
            max_healthy_percent=200,
            capacity_provider_strategies=[
                ecs.CapacityProviderStrategy(
                    capacity_provider=compute.capacity_provider.capacity_provider_name, weight=1
                )
            ],
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            enable_ecs_managed_tags=True,
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
        )

        # Backlog = jobs waiting + jobs in progress; one task per job, up to max_tasks.
        backlog = cloudwatch.MathExpression(
            expression="visible + inflight",
            using_metrics={
                "visible": self.queue.metric_approximate_number_of_messages_visible(
                    period=cdk.Duration.minutes(1), statistic="Maximum"
                ),
                "inflight": self.queue.metric_approximate_number_of_messages_not_visible(
                    period=cdk.Duration.minutes(1), statistic="Maximum"
                ),
            },
            label=f"{shard} backlog",
            period=cdk.Duration.minutes(1),
        )
        self.backlog_metric = backlog
        scaling = self.service.auto_scale_task_count(min_capacity=0, max_capacity=max_tasks)
        steps = [appscaling.ScalingInterval(upper=0, change=0)]
        steps += [appscaling.ScalingInterval(lower=n, change=n) for n in range(1, max_tasks + 1)]
        scaling.scale_on_metric(
            "Backlog",
            metric=backlog,
            scaling_steps=steps,
            adjustment_type=appscaling.AdjustmentType.EXACT_CAPACITY,
            evaluation_periods=1,
            cooldown=cdk.Duration.seconds(60),
        )

        # A job in the DLQ means a stream was not analysed: page someone.
        self.dead_letter_alarm = cloudwatch.Alarm(
            self,
            "DeadLetterAlarm",
            metric=self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=cdk.Duration.minutes(1), statistic="Maximum"
            ),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"VQA shard {shard}: a stream job failed {MAX_RECEIVES} times",
        )
