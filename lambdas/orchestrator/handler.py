"""The monolith's lightweight orchestrator (AWS Lambda; Powertools for its logs and traces).

Event: ``{"stream": "<id>", "source": "s3://<source bucket>/<key>" | "https://.../index.m3u8"}``.
It validates the request, records the stream's status item (``state=running`` and the shards
that will report on it), and sends one job to every shard's queue. It never touches media.

Environment (set by the stack): ``VQA_TABLE``, ``VQA_SHARD_QUEUES`` (JSON ``{shard: queue_url}``),
``VQA_SHARD_DETECTORS`` (JSON ``{shard: [detector, ...]}``), ``VQA_SEGMENT_SECONDS``,
``VQA_SOURCE_BUCKET``.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any
from urllib.parse import urlparse

import boto3

from vqa import results
from vqa.observability import Observer
from vqa.overrides import narrow

OBS = Observer("orchestrator", architecture="monolith")
logger, metrics, tracer = OBS.logger, OBS.metrics, OBS.tracer

TABLE = os.environ["VQA_TABLE"]
SHARD_QUEUES: dict[str, str] = json.loads(os.environ["VQA_SHARD_QUEUES"])
SHARD_DETECTORS: dict[str, list[str]] = json.loads(os.environ.get("VQA_SHARD_DETECTORS", "{}"))
SEGMENT_SECONDS = float(os.environ.get("VQA_SEGMENT_SECONDS", "1.0"))
SOURCE_BUCKET = os.environ.get("VQA_SOURCE_BUCKET", "")

# Created once per execution environment, reused across invocations.
DYNAMODB = boto3.client("dynamodb")
SQS = boto3.client("sqs")
S3 = boto3.client("s3")

STREAM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,199}$")


class BadRequest(ValueError):
    """The request cannot be fanned out; the message names the field and the reason."""


def _validate(event: dict[str, Any]) -> tuple[str, str]:
    if not isinstance(event, dict):
        raise BadRequest("event must be a JSON object with 'stream' and 'source'")
    stream, source = event.get("stream"), event.get("source")
    if not isinstance(stream, str) or not STREAM_ID.match(stream):
        raise BadRequest(f"stream: expected 1-200 characters [A-Za-z0-9._:@/-], got {stream!r}")
    if not isinstance(source, str) or not source:
        raise BadRequest("source: expected an s3:// or http(s):// URL")
    url = urlparse(source)
    if url.scheme == "s3":
        if SOURCE_BUCKET and url.netloc != SOURCE_BUCKET:
            raise BadRequest(f"source {source}: workers read only s3://{SOURCE_BUCKET}/")
        try:
            S3.head_object(Bucket=url.netloc, Key=url.path.lstrip("/"))
        except S3.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise BadRequest(f"source {source}: not readable ({code})") from None
    elif url.scheme not in ("http", "https"):
        raise BadRequest(f"source {source}: expected an s3:// or http(s):// URL")
    return stream, source


def _plan(request: Any) -> dict[str, dict[str, Any]]:
    """``{shard: {"detectors", "thresholds"}}``: the shards the stream needs and what each runs.

    ``request`` is the front door's validated request (vqa.api); without one (a direct invoke)
    every shard runs all its detectors at the deployed thresholds. A shard none of whose
    detectors was requested gets no job, and is not waited for.
    """
    request = request if isinstance(request, dict) else {}
    wanted, overrides = request.get("detectors"), request.get("thresholds")
    plan: dict[str, dict[str, Any]] = {}
    for shard in sorted(SHARD_QUEUES):
        detectors, thresholds = narrow(SHARD_DETECTORS.get(shard, []), wanted, overrides)
        if detectors:
            plan[shard] = {"detectors": list(detectors), "thresholds": thresholds}
    if not plan:
        raise BadRequest(f"request.detectors: none of {wanted} is deployed by any shard")
    return plan


def _put_status(stream: str, source: str, shards: list[str]) -> None:
    """The stream's status item (vqa.results: the one schema both architectures write); a stop
    requested before it (the front door's DELETE racing its POST) survives, and the jobs still
    go out: each worker finds the stop at once, ends the job and records ``stopped``."""
    results.put_status(
        dynamodb=DYNAMODB,
        table=TABLE,
        stream=stream,
        state="running",
        source=source,
        architecture="monolith",
        shards=json.dumps(sorted(shards)),
        requested_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)  # the response holds the source URL
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    OBS.bind()  # a warm function must not log the previous stream's id
    stream, source = _validate(event)
    OBS.bind(stream_id=stream)
    plan = _plan(event.get("request"))
    _put_status(stream, source, list(plan))
    sent: dict[str, str] = {}
    for shard, job in plan.items():
        body = {
            "stream": stream,
            "source": source,
            "shard": shard,
            **job,
            "segment_seconds": SEGMENT_SECONDS,
        }
        resp = SQS.send_message(QueueUrl=SHARD_QUEUES[shard], MessageBody=json.dumps(body))
        sent[shard] = resp["MessageId"]
    logger.info("stream fanned out", extra={"shards": sorted(sent)})
    return {"stream": stream, "source": source, "state": "running", "jobs": sent}
