"""``vqa run --arch distributed``, locally: the synthesized stack, emulated in-process with moto.

What runs is what would be deployed: the CDK app is synthesized, the template's buckets, table,
topic and functions are created in moto, the state machine definition is taken from the template
(tokens resolved to the local resources) and executed by moto's Step Functions interpreter, and
every Lambda task runs the real handler in this process (:mod:`vqa.local.moto_lambda`).

Metering (``usage``): S3/DynamoDB/SNS requests and bytes through a :class:`vqa.meter.Meter` on
the clients the handlers use; Lambda invocations and GB-seconds from the dispatcher; state
transitions from the execution histories (every state entered, plus every retried attempt),
executions, Express duration, and the state machine's own service calls (the failure record,
the hand-over to a fresh execution).
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from vqa.errors import BadSourceError, ConfigError, VqaError
from vqa.local import aws
from vqa.local.template import Resolver, definition, resources_of, state_machine, synth_template
from vqa.meter import Meter

log = logging.getLogger("vqa.local.distributed")

#: A run that makes no progress for this long is reported as hung (a bug, never expected).
STALL_SECONDS = 300.0
_POLL_SECONDS = 0.25


def _overrides(config: Any, granularity: str | None, workflow_type: str | None) -> dict[str, Any]:
    if config is None:
        ctx: dict[str, Any] = {}
    elif dataclasses.is_dataclass(config) and not isinstance(config, type):
        ctx = json.loads(json.dumps(dataclasses.asdict(config)))  # tuples -> lists
    elif isinstance(config, Mapping):
        ctx = dict(config)
    else:
        raise ConfigError(f"config must be a VqaConfig or a mapping, not {type(config).__name__}")
    if granularity is not None:
        ctx["granularity"] = granularity
    if workflow_type is not None:
        ctx["workflow_type"] = workflow_type.upper()
    return ctx


def _placeholder_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("README", "Handlers run in-process (vqa.local.moto_lambda).\n")
    return buf.getvalue()


def _create_functions(template: Mapping[str, Any], resolver: Resolver, *, suffix: str) -> None:
    lam = aws.client("lambda")
    role = aws.create_role(f"vqa-functions-{suffix}", service="lambda.amazonaws.com")
    code = _placeholder_zip()
    for logical_id, resource in resources_of(template, "AWS::Lambda::Function").items():
        props = resource["Properties"]
        if not str(props.get("Runtime", "")).startswith("python"):
            continue  # CDK's own providers (e.g. auto-delete objects) are not part of a run
        variables = resolver.resolve(props.get("Environment", {}).get("Variables", {}))
        fn = lam.create_function(
            FunctionName=f"{logical_id[:50]}-{suffix}",
            Runtime=props["Runtime"],
            Role=role,
            Handler=props["Handler"],
            Code={"ZipFile": code},
            MemorySize=int(props.get("MemorySize", 128)),
            Timeout=int(props.get("Timeout", 3)),
            Environment={"Variables": {k: str(v) for k, v in variables.items()}},
            Architectures=props.get("Architectures", ["x86_64"]),
        )
        resolver.refs[logical_id] = fn["FunctionName"]
        resolver.attrs[logical_id] = {"Arn": fn["FunctionArn"]}


def _create_state_machine(template: Mapping[str, Any], resolver: Resolver, *, suffix: str) -> str:
    sfn = aws.client("stepfunctions")
    logical_id, props = state_machine(template)
    asl = definition(template, resolver)
    arn = sfn.create_state_machine(
        name=resolver.resolve(props["StateMachineName"]),
        definition=json.dumps(asl),
        roleArn=aws.create_role(f"vqa-states-{suffix}", service="states.amazonaws.com"),
        type=props.get("StateMachineType", "STANDARD"),
    )["stateMachineArn"]
    resolver.refs[logical_id] = arn
    resolver.attrs[logical_id] = {"Arn": arn}
    return str(arn)


def _outputs(template: Mapping[str, Any], resolver: Resolver) -> dict[str, str]:
    return {k: str(resolver.resolve(v["Value"])) for k, v in template.get("Outputs", {}).items()}


@contextmanager
def _handler_io(meter: Meter) -> Iterator[list[str]]:
    """Install metered clients and a metered log sink for the handlers; restore them after."""
    from lambdas.distributed import common

    lines: list[str] = []

    def sink(line: str) -> None:
        meter.add("log_bytes", len(line.encode()) + 1)
        lines.append(line)
        log.debug("%s", line)

    previous_sink = common.LOG_SINK
    common.CLIENTS.install(
        s3=aws.client("s3", meter=meter),
        dynamodb=aws.client("dynamodb", meter=meter),
        sns=aws.client("sns", meter=meter),
        stepfunctions=aws.client("stepfunctions", meter=meter),
    )
    common.LOG_SINK = sink
    try:
        yield lines
    finally:
        common.LOG_SINK = previous_sink
        common.CLIENTS.install()


@contextmanager
def _quiet_interpreter() -> Iterator[None]:
    """moto's interpreter logs every caught task failure with its whole state tree at ERROR;
    the run reports failures itself (status item, one-line error), so keep stderr for that."""
    loggers = [logging.getLogger(n) for n in ("moto.stepfunctions.parser", "moto.awslambda")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events.extend(page["events"])
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def meter_history(meter: Meter, events: list[dict[str, Any]]) -> dict[str, int]:
    """Add one execution's billable workflow usage to ``meter``; returns its event counts.

    A state transition is billed for every state entered and for every retry of a task, so
    transitions = states entered + task attempts beyond the first of each task state entered.
    """
    entered = sum(1 for e in events if e["type"].endswith("StateEntered"))
    task_entered = sum(1 for e in events if e["type"] == "TaskStateEntered")
    attempts = sum(1 for e in events if e["type"] in ("LambdaFunctionScheduled", "TaskScheduled"))
    transitions = entered + max(0, attempts - task_entered)
    meter.add("state_transitions", transitions)
    for e in events:
        if e["type"] != "TaskScheduled":
            continue
        details = e.get("taskScheduledEventDetails", {})
        service, action = details.get("resourceType", ""), details.get("resource", "")
        if service == "dynamodb":
            meter.count_request("dynamodb", action[:1].upper() + action[1:])
        elif service == "states":
            meter.count_request("stepfunctions", action[:1].upper() + action[1:])
    return {"events": len(events), "transitions": transitions, "retries": attempts - task_entered}


def _duration_seconds(start: datetime, stop: datetime | None) -> float:
    return max(0.0, ((stop or start) - start).total_seconds())


def _progress_bar(progress: bool, source: str, segment_seconds: float) -> Any:
    """Segments analysed so far, on stderr (total from the container header when it has one)."""
    if not progress:
        return None
    from tqdm import tqdm

    from vqa.media import probe

    try:
        total: int | None = math.ceil(probe(source).duration / segment_seconds) or None
    except VqaError:
        total = None  # the run itself reports a bad source
    return tqdm(total=total, unit="seg", desc="distributed", file=sys.stderr, leave=False)


def _failure(source: str, status: Mapping[str, Any]) -> VqaError:
    """The one-line error of a run the state machine recorded as failed."""
    error = str(status.get("error", "Error"))
    try:
        message = str(json.loads(status.get("cause", "{}")).get("errorMessage", ""))
    except (ValueError, AttributeError):
        message = str(status.get("cause", ""))
    err: VqaError
    if error == "BadSourceError":
        # The handler names the uploaded copy ("s3://bucket/key: reason"); name the user's source.
        _, sep, reason = message.partition(": ")
        err = BadSourceError(source, reason if sep else message)
    else:
        segment = status.get("segment", "?")
        detail = " ".join(f"{error}: {message}".split())
        err = VqaError(f"{source}: distributed run failed at segment {segment}: {detail}")
    err.recorded = dict(status)  # type: ignore[attr-defined]  # the stream status item, as stored
    return err


def _upload(source: str, s3: Any, bucket: str, stream: str) -> str:
    """The ``s3://`` URI the state machine reads: local files are uploaded to the source bucket."""
    if source.startswith(("http://", "https://")):
        return source
    if source.startswith("s3://"):
        raise ConfigError(
            "the local emulation reads local files or http(s) URLs; use --aws for s3:// sources"
        )
    path = Path(source)
    if not path.is_file():
        raise BadSourceError(source, "no such file")
    key = f"{stream}/{path.name}"
    s3.upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"


def run_local(
    source: str,
    *,
    granularity: str | None = None,
    workflow_type: str | None = None,
    progress: bool = False,
    config: Any = None,
) -> dict[str, Any]:
    """Run ``source`` through the emulated distributed stack; the JSON of ``vqa run --json``.

    ``config``: a :class:`stacks.config.VqaConfig` or a mapping of ``vqa`` context keys
    overriding ``cdk.json``; ``granularity``/``workflow_type`` override it further.
    Raises :class:`BadSourceError` when the source is not media (the failure recorded by the
    state machine), :class:`VqaError` when a run failed otherwise.
    """
    aws.ensure_repo_on_path()
    from moto import mock_aws

    from vqa import results
    from vqa.local import moto_lambda

    overrides = _overrides(config, granularity, workflow_type)
    template = synth_template(vqa_context=overrides)
    settings = json.loads(json.dumps(_effective_config(overrides)))
    wall0 = time.perf_counter()
    meter = Meter()
    suffix = uuid.uuid4().hex[:8]
    stream = f"s{uuid.uuid4().hex[:12]}"

    with (
        _quiet_interpreter(),
        mock_aws(config={"stepfunctions": {"execute_state_machine": True}}),  # type: ignore[arg-type]
    ):
        resolver = aws.create_data_stores(template, suffix=suffix)
        _create_functions(template, resolver, suffix=suffix)
        arn = _create_state_machine(template, resolver, suffix=suffix)
        outputs = _outputs(template, resolver)
        s3, ddb = aws.client("s3"), aws.client("dynamodb")
        uri = _upload(source, s3, outputs["SourceBucket"], stream)

        bar = _progress_bar(progress, source, float(settings["segment_seconds"]))
        done_segments: list[int] = []

        def on_invoke(inv: moto_lambda.Invocation) -> None:
            if inv.handler.endswith(".aggregate.handler") and inv.error is None:
                done_segments.append(1)
                if bar is not None:
                    bar.update(1)

        sfn = aws.client("stepfunctions")
        with _handler_io(meter), moto_lambda.dispatch_in_process(meter=meter, on_invoke=on_invoke):
            aws.client("stepfunctions", meter=meter).start_execution(
                stateMachineArn=arn,
                name=f"{stream}-0",
                input=json.dumps({"stream": stream, "source": uri, "index": 0}),
            )
            executions = _wait(sfn, arn, done_segments)
        if bar is not None:
            bar.close()

        counts = []
        for ex in executions:
            counts.append(meter_history(meter, _history(sfn, ex["executionArn"])))
            meter.add("sfn_executions", 1)
            if settings["workflow_type"] == "EXPRESS":
                meter.add(
                    "sfn_express_duration_seconds",
                    _duration_seconds(ex["startDate"], ex.get("stopDate")),
                )
        status = results.get_status(dynamodb=ddb, table=outputs["ResultsTable"], stream=stream)
        if status is None or status.get("state") != "done":
            if status is not None and status.get("state") == "failed":
                raise _failure(source, status)
            states = sorted({ex["status"] for ex in executions})
            raise VqaError(
                f"{source}: distributed run ended ({', '.join(states)}) without a result"
            )
        defects = results.read_defects(dynamodb=ddb, table=outputs["ResultsTable"], stream=stream)

    duration = round(float(status.get("duration") or 0.0), 6)
    skipped = json.loads(status.get("skipped") or "{}")
    usage = {
        **meter.snapshot(),
        "architecture": "distributed",
        "stream_seconds": duration,
        "wall_seconds": round(time.perf_counter() - wall0, 3),
        "config": settings,
    }
    return {
        "source": source,
        "duration": duration,
        "defects": [d.to_json() for d in defects],
        "skipped": skipped,
        "usage": usage,
        "workflow": {
            "executions": len(executions),
            "segments": int(status.get("segments") or 0),
            "history_events": [c["events"] for c in counts],
            "retries": sum(c["retries"] for c in counts),
        },
    }


def _effective_config(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The architecture settings priced by the cost model (``usage.config``)."""
    from stacks import load_context
    from stacks.config import VqaConfig
    from stacks.constructs.workflow import segments_per_execution

    ctx = {**load_context().get("vqa", {}), **overrides}
    cfg = VqaConfig.from_context(ctx)
    return {
        "workflow_type": cfg.workflow_type,
        "granularity": cfg.granularity,
        "lambda_architecture": cfg.lambda_architecture,
        "convert_memory_mb": cfg.convert_memory_mb,
        "detector_memory_mb": cfg.detector_memory_mb,
        "aggregate_memory_mb": cfg.aggregate_memory_mb,
        "segment_seconds": cfg.segment_seconds,
        "detectors": list(cfg.detectors),
        "segments_per_execution": segments_per_execution(
            configured=cfg.segments_per_execution,
            workflow_type=cfg.workflow_type,
            detectors=len(cfg.detectors),
        ),
    }


def _wait(sfn: Any, arn: str, progress: list[int]) -> list[dict[str, Any]]:
    """Every execution of the stream, once none is running (a hand-over starts the next
    execution before the current one ends, so "none running" means the stream is over)."""
    last_change, seen = time.monotonic(), -1
    while True:
        executions: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"stateMachineArn": arn}
        while True:
            page = sfn.list_executions(**kwargs)
            executions.extend(page["executions"])
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
        if executions and all(ex["status"] != "RUNNING" for ex in executions):
            return sorted(executions, key=lambda ex: ex["startDate"])
        if len(progress) != seen:
            seen, last_change = len(progress), time.monotonic()
        elif time.monotonic() - last_change > STALL_SECONDS:
            raise VqaError(f"distributed run made no progress for {STALL_SECONDS:.0f} s")
        time.sleep(_POLL_SECONDS)
