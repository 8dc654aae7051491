"""The analysis state machine: Prime Video's per-second orchestration, built faithfully.

Per segment: ``Convert`` (decode one segment, write frames/audio to the intermediate bucket), then
every detector in parallel (one Lambda per detector), then ``Aggregate`` (store defects, alert),
then a ``Choice`` loops to the next segment. Every one of those steps is a billed state
transition on a Standard workflow, which is exactly where Prime Video's cost came from.

Live HLS: the loop advances by media segment (the playlist's media sequence number, carried as
``cursor``). A segment the origin has not published yet makes ``Convert`` answer ``waiting``;
the ``Wait for segment`` state waits half a target duration and ``Convert`` asks again, so no
Lambda busy-waits. Input loss (no media for three target durations) is found by ``Convert`` in
that loop and goes through the detectors (open defects end) and ``Aggregate`` (its alerts).

Execution input: ``{"stream": id, "source": "s3://bucket/key" | "https://.../live.m3u8",
"index": 0}``. The first execution of a stream probes the source (``Start``) and carries the
result as ``info``, and the live position as ``cursor``.

Chunking: one execution handles at most :func:`segments_per_execution` segments and then starts a
fresh execution of the same state machine at the carried index (the ``handover`` function names it
``<stream>-<index>``, so a retried hand-over cannot start two), so a stream of any length stays
far below the 25,000-event history limit of a Standard execution and the 5-minute limit of an
Express one.

Failure: throttling is retried for minutes (:func:`throttle_budget_seconds`), other transient
Lambda errors three times, both with exponential backoff and jitter; anything else
(a bad source, retries exhausted) is caught, recorded with the segment index in the results
table's stream status item, and the execution fails: it never hangs.
"""

from __future__ import annotations

from collections.abc import Mapping

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

#: Step Functions' history limit of one Standard execution.
HISTORY_EVENT_LIMIT = 25_000


#: Waits for an unpublished live segment budgeted per segment: the Wait is half a target
#: duration and a segment is published about one target duration after the one before, so in
#: the steady state a segment is asked for about twice. More waits (input loss) hand over
#: early instead (:func:`polls_per_execution`): the bound below holds either way.
WAITS_PER_SEGMENT = 2


def events_per_poll_bound() -> int:
    """History events of one wait for a live segment: Convert (5, doubled for a retry), the
    ``Segment ready?`` and ``Waited long enough?`` Choices (2 each) and the Wait (2)."""
    return 2 * 5 + 2 + 2 + 2


def events_per_segment_bound(detectors: int, *, live: bool = True) -> int:
    """Upper bound of the history events one segment adds: 5 per task (Convert, one per
    detector, Aggregate), 4 for the Parallel itself, 2 for the ``Next segment?`` Choice, doubled
    to allow one retry of every task; a live segment adds its ``Segment ready?`` Choice and
    :data:`WAITS_PER_SEGMENT` waits. Chunks are sized for the live bound (the larger). The local
    emulation measures the real figures; tests hold them under these."""
    file_bound = 2 * (5 * (1 + detectors + 1) + 4 + 2)
    if not live:
        return file_bound
    return file_bound + 2 * 2 + WAITS_PER_SEGMENT * events_per_poll_bound()


#: The bound for the six detectors of the default configuration.
EVENTS_PER_SEGMENT_BOUND = events_per_segment_bound(6)
#: Express executions stop after 5 minutes; a live stream arrives in real time, so one Express
#: execution takes at most this many one-second segments.
EXPRESS_MAX_SEGMENTS = 120
#: An Express execution's maximum duration.
EXPRESS_LIMIT_SECONDS = 300

#: Lambda throttling: the function's reserved concurrency (``vqa.max_streams``) or the account's
#: concurrency is exhausted, or Lambda's scaling rate lags a burst of new streams.
THROTTLING_ERRORS = ["Lambda.TooManyRequestsException", "Lambda.ThrottlingException"]
#: Throttling is retried on its own, longer schedule than other transient errors: waits of 2 s
#: doubling up to a cap of 60 s. Standard: ten attempts, 2 + 4 + 8 + 16 + 32 + 5 x 60 = 362 s,
#: six minutes of uninterrupted throttling of one task before its execution fails (three
#: retries of 1, 2, 4 s gave up after 7 s). Express: six attempts, 2 + 4 + 8 + 16 + 32 + 60 =
#: 122 s, so that a chunk of EXPRESS_MAX_SEGMENTS one-second segments (at most 120 s of a live
#: stream) plus a throttled spell still end inside Express's 300 s: past it the execution would
#: time out, uncaught and unrecorded. Full jitter draws each wait uniformly below its nominal
#: value, so the retries of a burst of streams throttled together spread out instead of
#: colliding again (the expected total is half the nominal). A throttled task waits, it does not
#: fail: a burst larger than the concurrency is served as earlier streams' invocations finish
#: (each function runs at most one segment per stream at a time).
THROTTLE_INTERVAL_SECONDS = 2
THROTTLE_BACKOFF_RATE = 2.0
THROTTLE_MAX_DELAY_SECONDS = 60
THROTTLE_MAX_ATTEMPTS = {"STANDARD": 10, "EXPRESS": 6}


def throttle_budget_seconds(workflow_type: str) -> float:
    """Nominal seconds of throttling a task waits out before its execution fails."""
    return sum(
        min(THROTTLE_INTERVAL_SECONDS * THROTTLE_BACKOFF_RATE**n, THROTTLE_MAX_DELAY_SECONDS)
        for n in range(THROTTLE_MAX_ATTEMPTS[workflow_type])
    )


#: Errors worth retrying: Lambda service faults, timeouts, and the handlers' own
#: ``TransientError`` (throttled or failed S3/DynamoDB/SNS calls).
TRANSIENT_ERRORS = [
    "TransientError",
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


def execution_seconds_budget(workflow_type: str) -> int:
    """Wall seconds after which an execution hands over (0: no limit). A live stream's segments
    arrive in real time, one target duration apart, which the stack cannot know at synth: an
    Express execution (5 minutes at most) hands over once this much of it has passed, leaving
    room for a throttled spell (:func:`throttle_budget_seconds`) and the segment under way."""
    if workflow_type != "EXPRESS":
        return 0
    return int(EXPRESS_LIMIT_SECONDS - throttle_budget_seconds("EXPRESS") - 30)


def polls_per_execution(segments: int) -> int:
    """Waits for a live segment one execution makes before handing over (``segments``: its
    :func:`segments_per_execution`); with that many segments it stays inside their bound."""
    return WAITS_PER_SEGMENT * segments


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
                errors=THROTTLING_ERRORS,
                interval=cdk.Duration.seconds(THROTTLE_INTERVAL_SECONDS),
                backoff_rate=THROTTLE_BACKOFF_RATE,
                max_attempts=THROTTLE_MAX_ATTEMPTS[workflow_type],
                max_delay=cdk.Duration.seconds(THROTTLE_MAX_DELAY_SECONDS),
                jitter_strategy=sfn.JitterType.FULL,
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

        cursor = sfn.JsonPath.object_at("$.cursor")
        start_task = invoke(
            "Start",
            start,
            # The whole execution input: the front door's request (detectors, thresholds)
            # when it started the stream, absent when someone started it directly.
            {
                "stream": stream,
                "source": source,
                "index": index,
                "input": sfn.JsonPath.object_at("$$.Execution.Input"),
            },
            comment="Probe the source once per stream, record it as running; the loop state",
        )
        # Convert returns the whole loop state (a live stream's cursor moves even while it
        # waits for the next segment). Files and live streams have a Convert state each, so
        # that a file's segment does not pay the live loop's `Segment ready?` transition.
        convert_payload: dict[str, object] = {
            "stream": stream,
            "source": source,
            "index": index,
            "info": info,
            "cursor": cursor,
            "polls": sfn.JsonPath.number_at("$.polls"),
            "execution_start": sfn.JsonPath.string_at("$$.Execution.StartTime"),
        }
        convert_task = invoke(
            "Convert",
            convert,
            convert_payload,
            comment="Decode a file's next segment to the intermediate bucket",
        )
        convert_live = invoke(
            "Convert live",
            convert,
            convert_payload,
            comment="Read a live stream's next media segment (by media sequence) to the "
            "intermediate bucket, or say it is not published yet",
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
                "cursor": cursor,
                "polls": sfn.JsonPath.number_at("$.polls"),
                "first": sfn.JsonPath.number_at("$$.Execution.Input.index"),
                "execution_start": sfn.JsonPath.string_at("$$.Execution.StartTime"),
                "segment": sfn.JsonPath.object_at("$.segment"),
                "detected": sfn.JsonPath.list_at("$.detected"),
            },
            comment="Store defects idempotently, alert on new ones; yields the next loop state",
        )
        # The hand-over is a Lambda rather than the states:startExecution integration so that
        # the local emulation (whose interpreter mis-cases that integration's parameters) runs
        # the same definition; it costs one invocation per chunk of segments. It is told which
        # state machine to continue by the execution's context object: the machine's name is
        # generated by CloudFormation, so that changing its type is a replacement it can make.
        hand_over = invoke(
            "Continue",
            handover,
            {
                "stream": stream,
                "source": source,
                "index": index,
                "info": info,
                "cursor": cursor,
                "state_machine": sfn.JsonPath.string_at("$$.StateMachine.Id"),
            },
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
        for step in (start_task, convert_task, convert_live, detect, aggregate_task, hand_over):
            step.add_catch(record_failure, errors=[sfn.Errors.ALL], result_path="$.error")

        done = sfn.Succeed(self, "Done", comment="Last segment analysed")
        handed_over = sfn.Succeed(self, "Handed over", comment="A fresh execution continues")
        hand_over.next(handed_over)
        live = sfn.Condition.boolean_equals("$.info.live", True)
        next_step = (
            sfn.Choice(self, "Next segment?")
            .when(sfn.Condition.boolean_equals("$.last", True), done)
            .when(sfn.Condition.boolean_equals("$.rollover", True), hand_over)
            .when(live, convert_live)
            .otherwise(convert_task)
        )
        self.wait = sfn.Wait(
            self,
            "Wait for segment",
            time=sfn.WaitTime.seconds_path("$.wait"),
            comment="The live segment is not published yet: ask again in half a target duration",
        )
        self.wait.next(convert_live)
        ready = (
            sfn.Choice(self, "Segment ready?")
            .when(
                sfn.Condition.boolean_equals("$.waiting", True),
                sfn.Choice(self, "Waited long enough?")
                .when(sfn.Condition.boolean_equals("$.rollover", True), hand_over)
                .otherwise(self.wait),
            )
            .otherwise(detect)
        )
        convert_live.next(ready)
        convert_task.next(detect)
        detect.next(aggregate_task).next(next_step)
        start_task.next(next_step)  # Start's loop state: not last, no rollover
        definition = (
            sfn.Choice(self, "Started?")
            .when(sfn.Condition.is_present("$.info"), next_step)
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
        # No state_machine_name: CloudFormation replaces a state machine whose type changes
        # (STANDARD <-> EXPRESS), creating the new one before deleting the old, which it can only
        # do when it names the resource itself.
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
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
        # The grant goes into a policy of its own (through an imported view of the role): in the
        # role's default policy it would make the function depend on the state machine, which
        # depends on the function (it invokes it), a cycle CloudFormation rejects.
        handover_role = handover.role
        assert handover_role is not None
        self.state_machine.grant_start_execution(
            iam.Role.from_role_arn(self, "HandoverRole", handover_role.role_arn, mutable=True)
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
