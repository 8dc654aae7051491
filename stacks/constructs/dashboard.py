"""One CloudWatch dashboard, the same widgets for both architectures.

An operator (and the A/B) reads both stacks the same way: what is monitored and how far behind
the live edge, what was found and alerted, what failed, and what it costs. The cost drivers are
the ones Prime Video named and the ones the monolith replaced them with: Step Functions state
transitions, S3 requests on the bucket between stages, Lambda GB-seconds and EC2 instances.
Where an architecture has no such resource (the monolith has no state machine, the distributed
stack no instances) its widget still exists and shows a constant zero, labelled with why: the
two dashboards stay comparable slot by slot.

The VQA metrics come from :mod:`vqa.metrics` through :func:`stacks.constructs.alarms.vqa_metric`
(one place for their dimensions); the rest are AWS namespace metrics of this stack's resources.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import aws_cdk as cdk
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.constructs.alarms import metric_dimensions, vqa_metric
from stacks.constructs.buckets import REQUEST_METRICS_ID
from vqa import metrics

_MINUTE = cdk.Duration.minutes(1)
#: Widgets per row (CloudWatch's grid is 24 units wide).
_WIDTH = 8
_HEIGHT = 6


class OperationsDashboard(Construct):
    """The dashboard of one stack.

    ``functions``: every Lambda function of the stack (errors, GB-seconds); ``state_machine``,
    ``dead_letter_queues``, ``auto_scaling_group``: what the architecture has of each;
    ``buckets``: the buckets whose requests are a cost driver, by label (each has the
    :data:`~stacks.constructs.buckets.REQUEST_METRICS_ID` request-metrics filter);
    ``alarms``: shown in an alarm-status widget.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        architecture: str,
        functions: Sequence[lambda_.Function],
        buckets: Mapping[str, s3.IBucket],
        alarms: Sequence[cloudwatch.IAlarm],
        state_machine: sfn.IStateMachine | None = None,
        dead_letter_queues: Sequence[sqs.IQueue] = (),
        auto_scaling_group: autoscaling.AutoScalingGroup | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.architecture = architecture
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            default_interval=cdk.Duration.hours(3),
        )
        arch = architecture
        self.dashboard.add_widgets(
            _graph(
                "Streams monitored",
                [
                    cloudwatch.MathExpression(
                        expression="seconds / 60",
                        using_metrics={
                            "seconds": vqa_metric(
                                metrics.MONITORED_SECONDS, architecture=arch, statistic="Sum"
                            )
                        },
                        label="streams (stream-seconds analysed per minute / 60)",
                        period=_MINUTE,
                    )
                ],
            ),
            _graph(
                "Lag behind the live edge (s)",
                [
                    vqa_metric(
                        metrics.LIVE_EDGE_LAG, architecture=arch, statistic="Maximum", label="max"
                    ),
                    vqa_metric(
                        metrics.LIVE_EDGE_LAG, architecture=arch, statistic="p50", label="p50"
                    ),
                ],
            ),
            _graph(
                "Processing time per stream-second",
                [
                    vqa_metric(
                        metrics.PROCESSING_PER_STREAM_SECOND,
                        architecture=arch,
                        statistic=stat,
                        label=stat.lower(),
                    )
                    for stat in ("Average", "Maximum")
                ],
            ),
        )
        self.dashboard.add_widgets(
            _graph(
                "Defects started by kind",
                [
                    # One line per Kind that occurs, so a kind added to the package later
                    # (vqa.detectors, input_loss) shows up without redeploying the dashboard.
                    cloudwatch.MathExpression(
                        expression=_search(metrics.DEFECTS_STARTED, arch, "Sum"),
                        using_metrics={},
                        # CloudWatch's dynamic label: each line is named by its kind.
                        label="${PROP('Dim.Kind')}",
                        period=_MINUTE,
                    )
                ],
                stacked=True,
            ),
            _graph(
                "Alerts published and input loss",
                [
                    vqa_metric(
                        metrics.ALERTS_PUBLISHED, architecture=arch, statistic="Sum", label="alerts"
                    ),
                    vqa_metric(
                        metrics.INPUT_LOSS,
                        architecture=arch,
                        statistic="Sum",
                        label="channels losing input",
                    ),
                ],
            ),
            _graph("Errors", self._errors(functions, state_machine, dead_letter_queues)),
        )
        self.dashboard.add_widgets(
            _graph("Step Functions state transitions", self._transitions(state_machine)),
            _graph("S3 requests", self._s3_requests(buckets)),
            _graph("Lambda GB-seconds", [_gb_seconds(functions)]),
        )
        self.dashboard.add_widgets(
            _graph("EC2 instances in service", self._instances(auto_scaling_group)),
            cloudwatch.AlarmStatusWidget(
                title="Alarms", alarms=list(alarms), width=2 * _WIDTH, height=_HEIGHT
            ),
        )

    @property
    def url(self) -> str:
        """The dashboard in the CloudWatch console of the stack's region."""
        region = cdk.Stack.of(self).region
        return (
            f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#dashboards/dashboard/{self.dashboard.dashboard_name}"
        )

    def _errors(
        self,
        functions: Sequence[lambda_.Function],
        state_machine: sfn.IStateMachine | None,
        dead_letter_queues: Sequence[sqs.IQueue],
    ) -> list[cloudwatch.IMetric]:
        # A stream fails as its execution does where there is a state machine (see
        # Alarms.streams_failed); elsewhere the worker that gives up on it counts it.
        failed: cloudwatch.IMetric = (
            _sum(
                "streams failed (executions failed, timed out or aborted)",
                {
                    "failed": state_machine.metric_failed(period=_MINUTE),
                    "timedout": state_machine.metric_timed_out(period=_MINUTE),
                    "aborted": state_machine.metric_aborted(period=_MINUTE),
                },
            )
            if state_machine is not None
            else vqa_metric(
                metrics.STREAMS_FAILED,
                architecture=self.architecture,
                statistic="Sum",
                label="streams failed",
            )
        )
        lines = [
            failed,
            _sum(
                "function errors",
                {f"e{i}": fn.metric_errors(period=_MINUTE) for i, fn in enumerate(functions)},
            ),
        ]
        if dead_letter_queues:
            lines.append(
                _sum(
                    "dead-lettered jobs",
                    {
                        f"q{i}": q.metric_approximate_number_of_messages_visible(
                            period=_MINUTE, statistic="Maximum"
                        )
                        for i, q in enumerate(dead_letter_queues)
                    },
                )
            )
        return lines

    def _transitions(self, state_machine: sfn.IStateMachine | None) -> list[cloudwatch.IMetric]:
        if state_machine is None:
            return [_none(f"none: the {self.architecture} has no state machine")]
        # CloudWatch counts state transitions per account and region only (the throttling
        # bucket's consumption), not per state machine; executions started are this machine's.
        return [
            sfn.StateTransitionMetric.metric_consumed_capacity(
                period=_MINUTE, statistic="Sum", label="state transitions (account-wide)"
            ),
            state_machine.metric_started(
                period=_MINUTE, statistic="Sum", label="executions started"
            ),
        ]

    def _s3_requests(self, buckets: Mapping[str, s3.IBucket]) -> list[cloudwatch.IMetric]:
        return [
            cloudwatch.Metric(
                namespace="AWS/S3",
                metric_name=f"{op}Requests",
                dimensions_map={"BucketName": bucket.bucket_name, "FilterId": REQUEST_METRICS_ID},
                statistic="Sum",
                period=_MINUTE,
                label=f"{label} {op}",
            )
            for label, bucket in buckets.items()
            for op in ("Put", "Get")
        ]

    def _instances(self, group: autoscaling.AutoScalingGroup | None) -> list[cloudwatch.IMetric]:
        if group is None:
            return [_none(f"none: the {self.architecture} runs no instances")]
        return [
            cloudwatch.Metric(
                namespace="AWS/AutoScaling",
                metric_name="GroupInServiceInstances",
                dimensions_map={"AutoScalingGroupName": group.auto_scaling_group_name},
                statistic="Maximum",
                period=_MINUTE,
                label="instances in service",
            )
        ]


def _graph(
    title: str, metrics_: Sequence[cloudwatch.IMetric], *, stacked: bool = False
) -> cloudwatch.GraphWidget:
    return cloudwatch.GraphWidget(
        title=title,
        left=list(metrics_),
        width=_WIDTH,
        height=_HEIGHT,
        stacked=stacked,
        period=_MINUTE,
    )


def _sum(label: str, using: Mapping[str, cloudwatch.IMetric]) -> cloudwatch.MathExpression:
    """One line: the sum of ``using`` at each minute (a missing point counts as zero)."""
    return cloudwatch.MathExpression(
        expression=" + ".join(f"FILL({k}, 0)" for k in using),
        using_metrics=dict(using),
        label=label,
        period=_MINUTE,
    )


def _none(label: str) -> cloudwatch.MathExpression:
    """A constant zero: the cost driver this architecture does not have."""
    return cloudwatch.MathExpression(
        expression="TIME_SERIES(0)", using_metrics={}, label=label, period=_MINUTE
    )


def _gb_seconds(functions: Sequence[lambda_.Function]) -> cloudwatch.MathExpression:
    """Lambda GB-seconds per minute: each function's summed duration (ms) times its configured
    memory, read from the function itself, as Lambda bills it."""
    using: dict[str, cloudwatch.IMetric] = {}
    terms = []
    for i, fn in enumerate(functions):
        cfn = fn.node.default_child
        memory_mb = cfn.memory_size if isinstance(cfn, lambda_.CfnFunction) else None
        if not isinstance(memory_mb, int | float):  # unset (Lambda's default) or a token
            raise ValueError(f"function {fn.node.id}: set memory_size to chart its GB-seconds")
        using[f"d{i}"] = fn.metric_duration(period=_MINUTE, statistic="Sum")
        terms.append(f"FILL(d{i}, 0) * {memory_mb:g}")
    return cloudwatch.MathExpression(
        expression=f"({' + '.join(terms)}) / 1024 / 1000",
        using_metrics=using,
        label="GB-seconds (duration x configured memory)",
        period=_MINUTE,
    )


def _search(metric_name: str, architecture: str, statistic: str) -> str:
    """A SEARCH for ``metric_name`` of ``architecture``, one line per ``Kind``: the schema is
    exactly the emitted dimension set, as for the alarms' metrics."""
    dims = metric_dimensions(architecture)
    schema = ",".join([metrics.NAMESPACE, *sorted([*dims, metrics.KIND])])
    terms = " ".join(f'{k}="{v}"' for k, v in dims.items())
    return f"SEARCH('{{{schema}}} MetricName=\"{metric_name}\" {terms}', '{statistic}', 60)"
