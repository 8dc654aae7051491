"""Hand-over: start a fresh execution of the analysis state machine at the carried index.

Event: ``{"stream", "source", "index", "info"}`` (the loop state after a chunk of segments).
The execution is named ``<stream>-<index>``: a retried hand-over finds the execution it already
started (same name and input) instead of starting a second one, so a stream never forks.
Keeping each execution to a chunk of segments keeps its history far below Step Functions'
25,000-event limit whatever the stream's length.
"""

from __future__ import annotations

import json
from typing import Any

from lambdas.distributed.common import CLIENTS, Timer, env, log, transient_errors


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    timer = Timer()
    stream, index = str(event["stream"]), int(event["index"])
    name = f"{stream}-{index}"
    payload = json.dumps(
        {"stream": stream, "source": event["source"], "index": index, "info": event["info"]},
        sort_keys=True,
    )
    sfn = CLIENTS.get("stepfunctions")
    with transient_errors():
        try:
            arn = sfn.start_execution(
                stateMachineArn=env("STATE_MACHINE_ARN"), name=name, input=payload
            )["executionArn"]
        except sfn.exceptions.ExecutionAlreadyExists:
            # Started by an earlier attempt of this hand-over (Express does not dedupe by name).
            arn = f"{env('STATE_MACHINE_ARN').replace(':stateMachine:', ':execution:')}:{name}"
    log("handover", stream=stream, index=index, execution=arn, ms=timer.ms)
    return {"executionArn": arn}
