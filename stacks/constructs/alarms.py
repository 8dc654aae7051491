"""Operational alarms, each wired to the alerts topic so that a failure reaches a person.

The topic is encrypted with a customer-managed key whose policy lets CloudWatch use it
(:class:`stacks.constructs.results.ResultsStore`): CloudWatch cannot publish to a topic under the
AWS-managed ``alias/aws/sns`` key, whose policy no one can change. Every alarm treats missing data
as not breaching: an idle sandbox (no streams, no invocations) is healthy, not alarming.

Besides the alarms on AWS resources (dead letters, executions, functions, shard queues), both
stacks raise the same three on the operational metrics the handlers and the worker emit
(:mod:`vqa.metrics`): a stream failed, analysis falling behind the live edge, and a monitored
channel losing its input. Their thresholds are the constants below, in this one place.
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
from vqa import metrics

_MINUTE = cdk.Duration.minutes(1)
#: A job in flight with no checkpoint for this long is stalled: the worker checkpoints every
#: few segments, and decodes far faster than real time, so a healthy job logs well within it.
STALL_MINUTES = 10
#: Analysis further behind the live edge than this many segments (``vqa.segment_seconds`` each)...
LAG_ALARM_SEGMENTS = 10
#: ...in every one of this many consecutive minutes: see :meth:`Alarms.lag_growing`.
LAG_ALARM_MINUTES = 5


def vqa_metric(
    name: str,
    *,
    architecture: str,
    statistic: str,
    label: str | None = None,
    period: cdk.Duration = _MINUTE,
) -> cloudwatch.Metric:
    """One of :data:`vqa.metrics.ALL` as the handlers and the worker emit it.

    The dimension set must be exactly the emitted one, or an alarm watches a metric nobody
    writes: Powertools adds ``service`` (:data:`vqa.metrics.SERVICE`) to every metric besides
    the ``Architecture`` that VQA adds. (``DefectsStarted`` also carries ``Kind``; the dashboard
    finds its kinds with a SEARCH, see :mod:`stacks.constructs.dashboard`.)
    """
    if name not in metrics.ALL:
        raise ValueError(f"{name!r} is not a metric VQA emits (vqa.metrics.ALL)")
    return cloudwatch.Metric(
        namespace=metrics.NAMESPACE,
        metric_name=name,
        dimensions_map=metric_dimensions(architecture),
        statistic=statistic,
        period=period,
        label=label,
    )


def metric_dimensions(architecture: str) -> dict[str, str]:
    """The dimensions every VQA metric of ``architecture`` carries."""
    return {metrics.ARCHITECTURE: architecture, "service": metrics.SERVICE}


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

    def streams_failed(self, architecture: str) -> cloudwatch.Alarm:
        """A stream ended in failure (``StreamsFailed``, counted by the worker that gave up on
        it). Complements the dead-letter alarms, which fire only once every retry is spent.

        Only where a process counts it: in the distributed architecture a stream fails as its
        execution does (the failure branch records the error with a direct DynamoDB write and
        ends in a Fail state, no function runs), so :meth:`state_machine`'s alarms are its
        stream-failed alarms."""
        return self._alarm(
            "StreamsFailed",
            metric=vqa_metric(metrics.STREAMS_FAILED, architecture=architecture, statistic="Sum"),
            description=f"VQA {architecture}: a stream failed and is no longer monitored (its "
            "'#status' item in the results table holds the error)",
        )

    def input_loss(self, architecture: str) -> cloudwatch.Alarm:
        """A monitored channel stopped delivering media (an ``input_loss`` defect started):
        the origin or the path to it is down, which the operator of the channel must know even
        though VQA itself is healthy."""
        return self._alarm(
            "InputLoss",
            metric=vqa_metric(metrics.INPUT_LOSS, architecture=architecture, statistic="Sum"),
            description=f"VQA {architecture}: a monitored channel lost its input (no media for "
            "three target durations); the alert on the alerts topic names the stream",
        )

    def lag_growing(self, architecture: str, *, segment_seconds: float) -> cloudwatch.Alarm:
        """Analysis more than :data:`LAG_ALARM_SEGMENTS` segments behind the live edge (the
        maximum ``LiveEdgeLag`` of each minute) for :data:`LAG_ALARM_MINUTES` minutes running.

        A level held for minutes rather than a rising slope: a monitor that keeps up stays
        within a segment or two of the edge (it waits for each segment to be published, then
        analyses it faster than real time), so a lag many segments long that persists means it
        is slower than real time or stuck, and its alerts arrive late. A slope alarm would fire
        on the jitter of segment publication, and would go quiet exactly when it matters: a
        reader that falls out of the playlist window jumps back to the live edge (``vqa.live``),
        so the lag saws up and down instead of rising for ever, and each maximum-per-minute
        above the threshold still counts. One slow segment is not enough: every minute of the
        window must breach.
        """
        threshold = LAG_ALARM_SEGMENTS * segment_seconds
        return self._alarm(
            "LiveEdgeLagHigh",
            metric=vqa_metric(
                metrics.LIVE_EDGE_LAG, architecture=architecture, statistic="Maximum"
            ),
            threshold=threshold,
            evaluation_periods=LAG_ALARM_MINUTES,
            description=f"VQA {architecture}: analysis more than {threshold:g} s "
            f"({LAG_ALARM_SEGMENTS} segments) behind the live edge for {LAG_ALARM_MINUTES} "
            "minutes: alerts arrive late (capacity, throttling, a slow origin?)",
        )

    def operational(self, architecture: str, *, segment_seconds: float) -> None:
        """The alarms both architectures share, on the metrics both emit."""
        self.lag_growing(architecture, segment_seconds=segment_seconds)
        self.input_loss(architecture)
