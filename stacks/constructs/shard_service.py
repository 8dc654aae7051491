"""One shard: its job queue (with a dead-letter queue) and the ECS service that drains it.

Every shard runs the same container image; the environment tells a task which detectors it runs
and which queue it reads. The service scales on the shard's backlog: the number of stream jobs
waiting *or in progress* (a job in progress is an in-flight message, invisible to
``ApproximateNumberOfMessagesVisible``; counting it too keeps a busy worker from being scaled in
under itself). A task that is still working also protects itself from scale-in through the ECS
agent's task-protection endpoint.
"""

from __future__ import annotations

import math

import aws_cdk as cdk
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.constructs.checkov import skip_checkov
from stacks.constructs.cluster import ComputeCluster
from vqa import metrics

#: Receives before SQS moves a job to the dead-letter queue: two retries after the first failure.
MAX_RECEIVES = 3
#: How long a received job stays invisible; the worker extends it (heartbeat) while it works.
VISIBILITY_SECONDS = 120
#: SQS's ceiling on a message's visibility, counted from its receipt: a 24/7 live job hands
#: itself over to a fresh message before it (vqa.worker; the emulation's tests make it short).
VISIBILITY_CEILING_SECONDS = 12 * 60 * 60
#: ECS lets a task run this long after SIGTERM: enough to finish a segment and checkpoint.
STOP_TIMEOUT_SECONDS = 120
#: The worker's log message after each checkpoint (``vqa.worker``): its progress signal.
PROGRESS_LOG_MESSAGE = "checkpoint"
#: The key of a log line's message: Powertools' Logger (vqa.observability) writes it there.
LOG_MESSAGE_KEY = "message"
#: CloudWatch namespace of the metrics the stacks derive from logs (the workers' EMF one too).
METRIC_NAMESPACE = metrics.NAMESPACE


#: Backlog steps besides "no backlog, no tasks" (Application Auto Scaling allows 40 in all).
MAX_STEPS = 39


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
        destroy_on_delete: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.shard = shard
        self.detectors = detectors
        self.cpu = cpu
        self.memory_mb = memory_mb
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

        for queue in (self.queue, self.dead_letter_queue):
            skip_checkov(
                queue,
                "CKV_AWS_27",
                "Encrypted at rest with SSE-SQS (SqsManagedSseEnabled); the check only "
                "recognises a KMS key, which would add a key and KMS requests per message batch.",
            )

        self.task_definition = ecs.Ec2TaskDefinition(
            self, "Task", network_mode=ecs.NetworkMode.BRIDGE
        )
        self.log_group = logs.LogGroup(
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
                "VQA_VISIBILITY_CEILING_SECONDS": str(VISIBILITY_CEILING_SECONDS),
                # Powertools' own settings (vqa.observability passes the same values).
                "POWERTOOLS_SERVICE_NAME": metrics.SERVICE,
                "POWERTOOLS_METRICS_NAMESPACE": metrics.NAMESPACE,
            },
            logging=ecs.LogDrivers.aws_logs(stream_prefix=shard, log_group=self.log_group),
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

        # Backlog = jobs waiting + jobs in progress; one task per job.
        self.backlog_metric = cloudwatch.MathExpression(
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
        # Worker progress: the worker logs one "checkpoint" line every few segments of a job.
        self.progress_metric = self.log_group.add_metric_filter(
            "Progress",
            filter_pattern=logs.FilterPattern.string_value(
                f"$.{LOG_MESSAGE_KEY}", "=", PROGRESS_LOG_MESSAGE
            ),
            metric_namespace=METRIC_NAMESPACE,
            metric_name="WorkerCheckpoints",
            metric_value="1",
            dimensions={"Shard": "$.shard"},
        ).metric(statistic="Sum", period=cdk.Duration.minutes(1), dimensions_map={"Shard": shard})

    def scale_on_backlog(self, *, max_tasks: int) -> None:
        """Scale the service with its backlog, from 0 up to ``max_tasks`` tasks (what the
        capacity provider's instances hold: :func:`stacks.capacity.check_capacity`)."""
        self.max_tasks = max_tasks
        scaling = self.service.auto_scale_task_count(min_capacity=0, max_capacity=max_tasks)
        # Application Auto Scaling takes at most 40 steps: one per task count while they fit,
        # else 39 evenly spaced counts, a backlog between two scaling up to the higher one.
        counts = sorted({math.ceil(max_tasks * i / MAX_STEPS) for i in range(1, MAX_STEPS + 1)})
        steps = [appscaling.ScalingInterval(upper=0, change=0)]
        steps += [
            appscaling.ScalingInterval(lower=counts[i - 1] + 1 if i else 1, change=n)
            for i, n in enumerate(counts)
        ]
        scaling.scale_on_metric(
            "Backlog",
            metric=self.backlog_metric,
            scaling_steps=steps,
            adjustment_type=appscaling.AdjustmentType.EXACT_CAPACITY,
            evaluation_periods=1,
            cooldown=cdk.Duration.seconds(60),
        )
