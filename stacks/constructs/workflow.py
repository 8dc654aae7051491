"""The analysis state machine: Prime Video's per-second orchestration, built faithfully.

Per segment: ``Convert`` (decode one segment, write frames/audio to the intermediate bucket), then
every detector in parallel (one Lambda per detector), then ``Aggregate`` (store defects, alert),
then a ``Choice`` loops to the next segment. Every one of those steps is a billed state
transition on a Standard workflow, which is exactly where Prime Video's cost came from.

Execution input: ``{"stream": id, "source": "s3://bucket/key", "index": 0}``. The first
execution of a stream probes the source (``Start``) and carries the result as ``info``.

Chunking: one execution handles at most :func:`segments_per_execution` segments and then starts a
fresh execution of the same state machine at the carried index (the ``handover`` function names it
``<stream>-<index>``, so a retried hand-over cannot start two), so a stream of any length stays
far below the 25,000-event history limit of a Standard execution and the 5-minute limit of an
Express one.

Failure: transient Lambda errors are retried with exponential backoff and jitter; anything else
(a bad source, retries exhausted) is caught, recorded with the segment index in the results
table's stream status item, and the execution fails: it never hangs.
"""

from __future__ import annotations

from collections.abc import Mapping

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

#: Step Functions' history limit of one Standard execution.
HISTORY_EVENT_LIMIT = 25_000


def events_per_segment_bound(detectors: int) -> int:
    """Upper bound of the history events one segment adds: 5 per task (Convert, one per
    detector, Aggregate), 4 for the Parallel itself, 2 for the Choice, doubled to allow one retry
    of every task. The local emulation measures the real figure; a test holds it under this."""
    return 2 * (5 * (1 + detectors + 1) + 4 + 2)


#: The bound for the six detectors of the default configuration.
EVENTS_PER_SEGMENT_BOUND = events_per_segment_bound(6)
#: Express executions stop after 5 minutes; a live stream arrives in real time, so one Express
#: execution takes at most this many one-second segments.
EXPRESS_MAX_SEGMENTS = 120

#: Errors worth retrying: Lambda throttling/service faults, timeouts, and the handlers' own
#: ``TransientError`` (throttled or failed S3/DynamoDB/SNS calls).
TRANSIENT_ERRORS = [
    "TransientError",
    "Lambda.TooManyRequestsException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Sandbox.Timedout",
    sfn.Errors.TIMEOUT,
]


def logical_id(construct: Construct) -> str:
    """The CloudFormation logical id of a construct's resource (cdk-nag names findings by it)."""
    child = construct.node.default_child
    assert isinstance(child, cdk.CfnElement), construct.node.path
    return str(cdk.Stack.of(construct).resolve(cdk.Stack.of(construct).get_logical_id(child)))


def segments_per_execution(*, configured: int, workflow_type: str, detectors: int) -> int:
    """How many segments one execution handles before handing over to a fresh one."""
    history_cap = (HISTORY_EVENT_LIMIT * 4 // 5) // events_per_segment_bound(detectors)
    cap = history_cap if workflow_type == "STANDARD" else min(history_cap, EXPRESS_MAX_SEGMENTS)
    return max(1, min(configured, cap))


class AnalysisWorkflow(Construct):
    """The state machine wiring ``start``, ``convert``, ``detectors``, ``aggregate`` and
    ``handover``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        start: lambda_.Function,
        convert: lambda_.Function,
        detectors: Mapping[str, lambda_.Function],
        aggregate: lambda_.Function,
        handover: lambda_.Function,
        table: dynamodb.ITableV2,
        workflow_type: str,
        destroy_on_delete: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        # A fixed name lets the definition start executions of its own state machine without a
        # circular reference (the ARN is built from the name, not from the resource's Ref).
        self.state_machine_name = f"{stack.stack_name}-Analysis"
        myself = sfn.StateMachine.from_state_machine_name(self, "Self", self.state_machine_name)

        def invoke(
            construct_id: str, fn: lambda_.IFunction, payload: dict[str, object], **kwargs: object
        ) -> tasks.LambdaInvoke:
            task = tasks.LambdaInvoke(
                self,
                construct_id,
                lambda_function=fn,
                payload=sfn.TaskInput.from_object(payload),
                payload_response_only=True,
                retry_on_service_exceptions=False,  # covered by TRANSIENT_ERRORS below
                **kwargs,  # type: ignore[arg-type]
            )
            task.add_retry(
                errors=TRANSIENT_ERRORS,
                interval=cdk.Duration.seconds(1),
                backoff_rate=2.0,
                max_attempts=3,
                jitter_strategy=sfn.JitterType.FULL,
            )
            return task

        stream = sfn.JsonPath.string_at("$.stream")
        source = sfn.JsonPath.string_at("$.source")
        index = sfn.JsonPath.number_at("$.index")
        info = sfn.JsonPath.object_at("$.info")

        start_task = invoke(
            "Start",
            start,
            {"stream": stream, "source": source},
            result_path="$.info",
            comment="Probe the source once per stream and record it as running",
        )
        convert_task = invoke(
            "Convert",
            convert,
            {"stream": stream, "source": source, "index": index},
            result_path="$.segment",
            comment="Decode one segment; write its frames and audio to the intermediate bucket",
        )
        detect = sfn.Parallel(
            self,
            "Detect",
            result_path="$.detected",
            comment="Every detector on the segment, one Lambda each, in parallel",
        )
        for name, fn in detectors.items():
            detect.branch(
                invoke(
                    f"Detect {name}",
                    fn,
                    {
                        "stream": stream,
                        "segment": sfn.JsonPath.object_at("$.segment"),
                        "info": info,
                    },
                )
            )
        aggregate_task = invoke(
            "Aggregate",
            aggregate,
            {
                "stream": stream,
                "source": source,
                "index": index,
                "info": info,
                "first": sfn.JsonPath.number_at("$$.Execution.Input.index"),
                "segment": sfn.JsonPath.object_at("$.segment"),
                "detected": sfn.JsonPath.list_at("$.detected"),
            },
            comment="Store defects idempotently, alert on new ones; yields the next loop state",
        )
        # The hand-over is a Lambda rather than the states:startExecution integration so that
        # the local emulation (whose interpreter mis-cases that integration's parameters) runs
        # the same definition; it costs one invocation per chunk of segments.
        myself.grant_start_execution(handover)
        handover.add_environment("STATE_MACHINE_ARN", myself.state_machine_arn)
        hand_over = invoke(
            "Continue",
            handover,
            {"stream": stream, "source": source, "index": index, "info": info},
            result_path=sfn.JsonPath.DISCARD,
            comment="Hand the rest of the stream to a fresh execution (history limit)",
        )
        record_failure = tasks.DynamoPutItem(
            self,
            "Record failure",
            table=table,
            item={
                "stream": tasks.DynamoAttributeValue.from_string(stream),
                "defect": tasks.DynamoAttributeValue.from_string("#status"),
                "state": tasks.DynamoAttributeValue.from_string("failed"),
                "error": tasks.DynamoAttributeValue.from_string(
                    sfn.JsonPath.string_at("$.error.Error")
                ),
                "cause": tasks.DynamoAttributeValue.from_string(
                    sfn.JsonPath.string_at("$.error.Cause")
                ),
                "segment": tasks.DynamoAttributeValue.from_string(
                    sfn.JsonPath.format("{}", sfn.JsonPath.string_at("$.index"))
                ),
            },
            result_path=sfn.JsonPath.DISCARD,
            comment="Record the failure and the segment it happened at in the stream status",
        )
        record_failure.add_retry(
            errors=[sfn.Errors.ALL],
            interval=cdk.Duration.seconds(1),
            backoff_rate=2.0,
            max_attempts=3,
            jitter_strategy=sfn.JitterType.FULL,
        )
        failed = sfn.Fail(
            self,
            "Failed",
            error_path="$.error.Error",
            cause_path="$.error.Cause",
        )
        record_failure.next(failed)
        for step in (start_task, convert_task, detect, aggregate_task, hand_over):
            step.add_catch(record_failure, errors=[sfn.Errors.ALL], result_path="$.error")

        done = sfn.Succeed(self, "Done", comment="Last segment analysed")
        handed_over = sfn.Succeed(self, "Handed over", comment="A fresh execution continues")
        next_step = (
            sfn.Choice(self, "Next segment?")
            .when(sfn.Condition.boolean_equals("$.last", True), done)
            .when(sfn.Condition.boolean_equals("$.rollover", True), hand_over.next(handed_over))
            .otherwise(convert_task)
        )
        convert_task.next(detect).next(aggregate_task).next(next_step)
        start_task.next(convert_task)
        definition = (
            sfn.Choice(self, "Started?")
            .when(sfn.Condition.is_present("$.info"), convert_task)
            .otherwise(start_task)
        )

        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=logs.RetentionDays.ONE_WEEK,
            removal_policy=cdk.RemovalPolicy.DESTROY
            if destroy_on_delete
            else cdk.RemovalPolicy.RETAIN,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=self.state_machine_name,
            state_machine_type=sfn.StateMachineType(workflow_type),
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=self.log_group,
                level=sfn.LogLevel.ERROR,
                include_execution_data=False,
            ),
            comment="VQA distributed: per segment Convert -> detectors in parallel -> Aggregate",
        )
        functions = [start, convert, *detectors.values(), aggregate, handover]
        cdk.Validations.of(self).acknowledge(
            cdk.Acknowledgment(
                id="AwsSolutions::AwsSolutions-SF1",
                reason="Logging ALL events writes a log event per state transition (about ten "
                "per stream-second), a CloudWatch cost outside the architecture under study; "
                "errors are logged, and failures are recorded in the results table.",
            ),
            cdk.Acknowledgment(
                id="AwsSolutions::AwsSolutions-IAM5[Resource::*]",
                reason="X-Ray tracing and CloudWatch Logs delivery for the state machine: "
                "their actions have no resource-level permissions, so AWS requires '*'.",
            ),
            *(
                cdk.Acknowledgment(
                    id=f"AwsSolutions::AwsSolutions-IAM5[Resource::<{logical_id(fn)}.Arn>:*]",
                    reason="The LambdaInvoke task's grant: invoke this one function and its "
                    "versions/aliases (ARN suffix ':*'), nothing else.",
                )
                for fn in functions
            ),
        )
