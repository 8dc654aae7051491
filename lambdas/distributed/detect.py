"""One detector on one segment; the detector's state lives in S3 between segments.

Event: ``{"stream": id, "segment": <convert's output>, "info": <start's output>}``; the detector
is the function's ``DETECTOR`` environment variable (one function per detector, same code), with
the thresholds of ``VQA_THRESHOLDS`` (the stack's ``thresholds`` for this detector).

The detector reads back only the objects it needs (a video detector the frames, an audio
detector the audio buffer; one object holds both at ``segment`` granularity), restores its state
saved after the previous segment, processes the segment and saves the new state under the
segment's own key, so a retry of this segment starts from the same state and returns the same
defects and events. The saved state holds the detector's and its open-defect events'
(:class:`vqa.events.EventTracker`). On the last segment it flushes instead of saving; a
``flush`` segment (input loss, a hole in a live stream) ends what is open and starts afresh.

Returns ``{"detector": name, "defects": [...], "events": [...]}``: the defects finished in this
segment, and the ``defect.started`` / ``defect.ended`` events (:mod:`vqa.events`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from lambdas.distributed.common import (
    CLIENTS,
    OBS,
    Timer,
    env,
    logger,
    metrics,
    state_key,
    tracer,
    transient_errors,
)
from vqa import detectors
from vqa.defects import Defect
from vqa.events import DefectEvent
from vqa.segment import Segment

if TYPE_CHECKING:
    from vqa.detectors.base import Detector

_NEEDS = {
    "video": ("meta", "frame-", "segment"),
    "audio": ("meta", "audio", "segment"),
    # The transport object carries the segment's meta itself: no frames, no audio.
    "transport": ("transport",),
}


class LostStateError(Exception):
    """The state saved after the previous segment is missing: never silently start afresh."""


def _wanted(det: Detector[Any], name: str) -> bool:
    if det.needs == "both":
        return True
    return name.startswith(_NEEDS[det.needs])


def load_segment(bucket: str, ref: dict[str, Any], det: Detector[Any]) -> Segment:
    objects = {}
    for name in ref["objects"]:
        if _wanted(det, name):
            resp = CLIENTS.s3.get_object(Bucket=bucket, Key=ref["prefix"] + name)
            objects[name] = resp["Body"].read()
    segment = Segment.from_objects(objects)
    # The tracks this detector did not read are absent, not empty.
    if det.needs == "video":
        segment.audio = None
    elif det.needs == "audio":
        segment.video = None
    if det.needs != "transport":
        segment.transport = None
    return segment


def _create(name: str, requested: dict[str, Any] | None = None) -> Detector[Any]:
    """The detector with this function's thresholds (``VQA_THRESHOLDS``, set by the stack),
    overridden field by field by the stream's request (``requested``: the Start step's
    ``info.thresholds``, from the front door's POST)."""
    thresholds: dict[str, dict[str, Any]] = json.loads(env("VQA_THRESHOLDS", "{}"))
    fields = {**thresholds.get(name, {}), **(requested or {}).get(name, {})}
    return detectors.create(name, **fields)


def _restore(
    bucket: str, name: str, stream: str, index: int, requested: dict[str, Any] | None = None
) -> Detector[Any]:
    """The detector as it was after segment ``index - 1`` (fresh at the first segment)."""
    det = _create(name, requested)
    if index > 0:
        try:
            saved = CLIENTS.s3.get_object(Bucket=bucket, Key=state_key(stream, name, index - 1))
        except CLIENTS.s3.exceptions.NoSuchKey:
            raise LostStateError(
                f"{name}: no saved state after segment {index - 1} of stream {stream}"
            ) from None
        state = json.loads(saved["Body"].read())
        det.set_state(state["detector"])
        det.events.set_state(state["events"])
    return det


def _save(bucket: str, det: Detector[Any], stream: str, index: int) -> None:
    # The open-defect events are part of the state: a defect announced as started in one
    # segment is ended, once, by a later one.
    state = {"detector": det.get_state(), "events": det.events.get_state()}
    CLIENTS.s3.put_object(
        Bucket=bucket,
        Key=state_key(stream, det.name, index),
        Body=json.dumps(state, separators=(",", ":")).encode(),
    )


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)  # defects and events: large, in the table
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    timer = Timer()
    name = env("DETECTOR")
    bucket = env("INTERMEDIATE_BUCKET")
    stream, ref, info = str(event["stream"]), event["segment"], event["info"]
    index = int(ref["index"])
    OBS.bind(stream_id=stream, segment=index)
    if name in info.get("skipped", {}):  # this stream lacks the track(s) it needs
        return {"detector": name, "defects": [], "events": []}
    # A live media segment may hold several parts; a file segment is its own only part.
    parts = ref.get("parts", [ref])
    with transient_errors():
        det = _restore(bucket, name, stream, index, info.get("thresholds"))
        segments = [load_segment(bucket, part, det) for part in parts]
    found: list[Defect] = []
    events: list[DefectEvent] = []
    for segment in segments:
        # Detector.process_events, keeping the finished defects too (the results table's).
        finished = det.process(segment)
        found += finished
        events += det.events.update(finished, det.open_start(), seen=segment.end)
    if ref["last"] or ref.get("flush"):
        # The end of the stream, or of the media before a loss or a hole: what is open ends
        # at the last media seen, as in `vqa watch`.
        finished = det.flush()
        found += finished
        events += det.events.update(finished, None, seen=float(ref["end"]))
    if not ref["last"]:
        if ref.get("flush"):
            # What came before a hole says nothing about what follows.
            det = _create(name, info.get("thresholds"))
        with transient_errors():
            _save(bucket, det, stream, index)
    logger.info("detect", extra={"detector": name, "defects": len(found), "ms": timer.ms})
    return {
        "detector": name,
        "defects": [d.to_json() for d in found],
        "events": [e.to_json() for e in events],
    }
