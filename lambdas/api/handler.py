"""The front door (a Lambda function URL with ``AWS_IAM`` auth): a thin adapter over vqa.api.

Event: the function URL's payload (format 2.0: ``requestContext.http.method``, ``rawPath``,
``body``, ``isBase64Encoded``). Response: ``{"statusCode", "headers", "body"}`` with the JSON
body :mod:`vqa.api` defines, the same for both stacks.

Environment (set by ``stacks/constructs/front_door.py``): ``VQA_ARCHITECTURE`` (``distributed``:
start the state machine, ``VQA_STATE_MACHINE_ARN``; ``monolith``: invoke the orchestrator,
``VQA_ORCHESTRATOR_FUNCTION``), ``VQA_TABLE``, ``VQA_DETECTORS`` (what the stack deploys),
``VQA_SOURCE_BUCKET``, ``VQA_ALLOWED_ORIGINS`` (vqa.urlguard's allow-list).
"""

from __future__ import annotations

import base64
import functools
import json
import os
from typing import Any

import boto3

from vqa import api
from vqa.observability import Observer
from vqa.urlguard import ENV_ALLOWED, UrlGuard, parse_origins

OBS = Observer("api", architecture=os.environ.get("VQA_ARCHITECTURE", ""))
logger, metrics, tracer = OBS.logger, OBS.metrics, OBS.tracer


@functools.cache
def app() -> api.Api:
    """The deployment's API, built once per execution environment (clients reused)."""
    arch = os.environ["VQA_ARCHITECTURE"]
    starter: api.Starter
    if arch == "distributed":
        starter = api.StepFunctionsStarter(
            boto3.client("stepfunctions"), os.environ["VQA_STATE_MACHINE_ARN"]
        )
    elif arch == "monolith":
        starter = api.OrchestratorStarter(
            boto3.client("lambda"), os.environ["VQA_ORCHESTRATOR_FUNCTION"]
        )
    else:
        raise RuntimeError(f"VQA_ARCHITECTURE: expected distributed or monolith, got {arch!r}")
    deployed = [d for d in os.environ.get("VQA_DETECTORS", "").split(",") if d]
    return api.Api(
        dynamodb=boto3.client("dynamodb"),
        table=os.environ["VQA_TABLE"],
        start=starter,
        # Always on here, whatever VQA_URL_GUARD says: the front door is where sources come in.
        guard=UrlGuard.from_origins(parse_origins(os.environ.get(ENV_ALLOWED, ""))),
        deployed=deployed or None,
        source_bucket=os.environ.get("VQA_SOURCE_BUCKET") or None,
    )


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)  # bodies hold sources (tokens)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    http = event.get("requestContext", {}).get("http", {})
    method = str(http.get("method", "GET"))
    path = str(event.get("rawPath", "/"))
    body = event.get("body")
    if body is not None and event.get("isBase64Encoded"):
        body = base64.b64decode(body)
    try:
        status, out = app().handle(method, path, body)
    except Exception as exc:  # an AWS call failed: the client may retry (idempotent with a token)
        logger.exception("request failed", extra={"method": method, "path": path})
        status, out = 503, {"error": f"could not complete the request ({type(exc).__name__})"}
    # The path and status only: bodies hold sources, whose query strings may carry tokens.
    logger.info("api", extra={"method": method, "path": path, "status": status})
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(out, sort_keys=True),
    }
