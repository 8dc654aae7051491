"""Start step: probe the source once per stream and record the stream as running.

Event: ``{"stream": id, "source": "s3://bucket/key" | "https://.../live.m3u8", "index": 0}``.
Returns the loop state every later step carries: the event plus ``info`` (which tracks exist,
which detectors do not apply) and ``cursor``: for a live HLS source where reading continues
(:class:`vqa.hls_cursor.Cursor`, at the live edge), else ``{}`` (files are read by index).
A source that is not media raises :class:`vqa.errors.BadSourceError`; the state machine records
it in the stream status and fails the execution.
"""

from __future__ import annotations

import time
from typing import Any

from lambdas.distributed.common import (
    CLIENTS,
    OBS,
    Timer,
    TransientError,
    env,
    logger,
    metrics,
    tracer,
    transient_errors,
)
from vqa import detectors, hls_cursor, media, results
from vqa.detectors import NEEDS_REASON
from vqa.overrides import narrow


def skipped_detectors(names: list[str], info: media.SourceInfo) -> dict[str, str]:
    """What ``vqa analyze`` reports as skipped: undecodable streams (``"<kind> stream"``) and the
    detectors that do not apply to the tracks there are, with the same reasons."""
    skipped = {f"{kind} stream": why for kind, why in info.skipped.items()}
    for name in names:
        det = detectors.create(name)
        if not det.applies(
            has_video=info.has_video, has_audio=info.has_audio, has_transport=info.transport
        ):
            skipped[name] = NEEDS_REASON[det.needs]
    return skipped


#: Why a deployed detector does not run on a stream: the front door's request left it out.
NOT_REQUESTED = "not requested"


def requested(execution_input: Any, deployed: list[str]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The detectors (of ``deployed``) and threshold overrides the front door's request asked
    for (vqa.api puts it in the execution input as ``request``); without one, all of them at
    the deployed thresholds."""
    request = (execution_input or {}).get("request") if isinstance(execution_input, dict) else None
    if not isinstance(request, dict):
        return tuple(deployed), {}
    wanted, thresholds = narrow(deployed, request.get("detectors"), request.get("thresholds"))
    if not wanted:
        raise ValueError(f"request.detectors: none of {request.get('detectors')} is deployed")
    return wanted, thresholds


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)  # the response holds the source URL
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    timer = Timer()
    stream, source = str(event["stream"]), str(event["source"])
    OBS.bind(stream_id=stream)
    names = [n for n in env("DETECTORS").split(",") if n]
    cursor: dict[str, Any] = {}
    with transient_errors():
        probed = source
        if hls_cursor.is_live_hls(source):
            try:
                live = hls_cursor.open_cursor(source, now=time.time())
            except hls_cursor.NotPublished as exc:
                # A channel just starting: the state machine retries this step with backoff.
                raise TransientError(str(exc)) from None
            cursor = live.to_json()
            # The tracks of a live stream: those of the segment at the edge, read next.
            probed = hls_cursor.edge_segment_url(live, source)
        info = media.probe(probed, s3_client=CLIENTS.s3)
    wanted, thresholds = requested(event.get("input"), names)
    skipped = skipped_detectors(names, info)
    skipped.update({n: NOT_REQUESTED for n in names if n not in wanted and n not in skipped})
    out = {
        "has_video": info.has_video,
        "has_audio": info.has_audio,
        "duration": info.duration,
        "skipped": skipped,
        "live": bool(cursor),
        "thresholds": thresholds,
    }
    with transient_errors():
        # A stop requested before this step (the front door's DELETE right after its POST)
        # survives the put (vqa.results.put_status); the converter then ends the stream at once.
        results.put_status(
            dynamodb=CLIENTS.dynamodb,
            table=env("TABLE_NAME"),
            stream=stream,
            state="running",
            source=source,
            duration=info.duration,
            skipped=skipped,
        )
    logger.info("start", extra=OBS.safe(source=source, ms=timer.ms, **out))
    return {
        "stream": stream,
        "source": source,
        "index": int(event.get("index", 0)),
        "info": out,
        "cursor": cursor,
        "polls": 0,
        "last": False,
        "rollover": False,
    }
