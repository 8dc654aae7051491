"""Operational alarms, each wired to the alerts topic so that a failure reaches a person.

The topic is encrypted with a customer-managed key whose policy lets CloudWatch use it
(:class:`stacks.constructs.results.ResultsStore`): CloudWatch cannot publish to a topic under the
AWS-managed ``alias/aws/sns`` key, whose policy no one can change. Every alarm treats missing data
as not breaching: an idle sandbox (no streams, no invocations) is healthy, not alarming.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.constructs.shard_service import ShardService

_MINUTE = cdk.Duration.minutes(1)
#: A job in flight with no checkpoint for this long is stalled: the worker checkpoints every
#: few segments, and decodes far faster than real time, so a healthy job logs well within it.
STALL_MINUTES = 10


class Alarms(Construct):
    """A factory of alarms that all notify ``topic``."""

    def __init__(self, scope: Construct, construct_id: str, *, topic: sns.ITopic) -> None:
        super().__init__(scope, construct_id)
        self._action = cw_actions.SnsAction(topic)
        self.alarms: list[cloudwatch.Alarm] = []

    def _alarm(
        self,
        construct_id: str,
        *,
        metric: cloudwatch.IMetric,
        description: str,
        threshold: float = 0,
        evaluation_periods: int = 1,
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=evaluation_periods,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        alarm.add_alarm_action(self._action)
        self.alarms.append(alarm)
        return alarm

    def dead_letters(self, name: str, queue: sqs.IQueue, *, why: str) -> cloudwatch.Alarm:
        """Any message in ``queue`` (a dead-letter queue): a job that was never completed."""
        return self._alarm(
            f"{name}DeadLetters",
            metric=queue.metric_approximate_number_of_messages_visible(
                period=_MINUTE, statistic="Maximum"
            ),
            description=f"VQA {name}: {why}",
        )

    def function(self, name: str, fn: lambda_.IFunction) -> None:
        """Errors and throttles of one function, each its own alarm (they need different
        responses: a bug or bad input vs. concurrency)."""
        self._alarm(
            f"{name}Errors",
            metric=fn.metric_errors(period=_MINUTE, statistic="Sum"),
            description=f"VQA function {name}: invocations failed",
        )
        self._alarm(
            f"{name}Throttles",
            metric=fn.metric_throttles(period=_MINUTE, statistic="Sum"),
            description=f"VQA function {name}: invocations throttled (concurrency exhausted)",
        )

    def state_machine(self, name: str, machine: sfn.IStateMachine) -> None:
        """Executions that failed, timed out or were aborted: a stream not analysed to its end."""
        for what, metric in (
            ("Failed", machine.metric_failed(period=_MINUTE, statistic="Sum")),
            ("TimedOut", machine.metric_timed_out(period=_MINUTE, statistic="Sum")),
            ("Aborted", machine.metric_aborted(period=_MINUTE, statistic="Sum")),
        ):
            self._alarm(
                f"{name}Executions{what}",
                metric=metric,
                description=f"VQA {name}: an execution {what.lower()} (see the stream's "
                "'#status' item in the results table)",
            )

    def jobs_waiting(self, shard: ShardService) -> cloudwatch.Alarm:
        """A job waiting in ``shard``'s queue, unreceived, for :data:`STALL_MINUTES` minutes: no
        task could be placed for it (instances at max_instances, or the account's vCPU quota
        refusing new instances), so its stream is not being analysed."""
        return self._alarm(
            f"{shard.shard}JobsWaiting",
            metric=shard.queue.metric_approximate_age_of_oldest_message(
                period=_MINUTE, statistic="Maximum"
            ),
            threshold=STALL_MINUTES * 60,
            description=f"VQA shard {shard.shard}: a job has waited {STALL_MINUTES} minutes for "
            "a worker (capacity or the EC2 vCPU quota exhausted?)",
        )

    def worker_stalled(self, shard: ShardService) -> cloudwatch.Alarm:
        """Jobs in flight on ``shard`` but no checkpoint logged by any of its workers for
        :data:`STALL_MINUTES` minutes: a worker is hung (or the log line it writes changed)."""
        stalled = cloudwatch.MathExpression(
            expression="IF(inflight > 0 AND FILL(progress, 0) == 0, 1, 0)",
            using_metrics={
                "inflight": shard.queue.metric_approximate_number_of_messages_not_visible(
                    period=_MINUTE, statistic="Minimum"
                ),
                "progress": shard.progress_metric,
            },
            label=f"{shard.shard} stalled",
            period=_MINUTE,
        )
        return self._alarm(
            f"{shard.shard}Stalled",
            metric=stalled,
            evaluation_periods=STALL_MINUTES,
            description=f"VQA shard {shard.shard}: jobs in flight but no segment progress for "
            f"{STALL_MINUTES} minutes",
        )
