"""One detector on one segment; the detector's state lives in S3 between segments.

Event: ``{"stream": id, "segment": <convert's output>, "info": <start's output>}``; the detector
is the function's ``DETECTOR`` environment variable (one function per detector, same code).

The detector reads back only the objects it needs (a video detector the frames, an audio
detector the audio buffer; one object holds both at ``segment`` granularity), restores its state
saved after the previous segment, processes the segment and saves the new state under the
segment's own key, so a retry of this segment starts from the same state and returns the same
defects. On the last segment it flushes instead of saving.

Returns ``{"detector": name, "defects": [...]}``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from lambdas.distributed.common import CLIENTS, Timer, env, log, state_key, transient_errors
from vqa import detectors
from vqa.segment import Segment

if TYPE_CHECKING:
    from vqa.detectors.base import Detector

_NEEDS = {"video": ("meta", "frame-", "segment"), "audio": ("meta", "audio", "segment")}


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
    return segment


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    timer = Timer()
    name = env("DETECTOR")
    bucket = env("INTERMEDIATE_BUCKET")
    stream, ref, info = str(event["stream"]), event["segment"], event["info"]
    index = int(ref["index"])
    if name in info.get("skipped", {}):  # this stream lacks the track(s) it needs
        return {"detector": name, "defects": []}
    det = detectors.create(name)
    with transient_errors():
        if index > 0:
            try:
                saved = CLIENTS.s3.get_object(Bucket=bucket, Key=state_key(stream, name, index - 1))
            except CLIENTS.s3.exceptions.NoSuchKey:
                raise LostStateError(
                    f"{name}: no saved state after segment {index - 1} of stream {stream}"
                ) from None
            det.set_state(json.loads(saved["Body"].read()))
        segment = load_segment(bucket, ref, det)
    found = det.process(segment)
    if segment.last:
        found += det.flush()
    else:
        with transient_errors():
            CLIENTS.s3.put_object(
                Bucket=bucket,
                Key=state_key(stream, name, index),
                Body=json.dumps(det.get_state(), separators=(",", ":")).encode(),
            )
    log("detect", detector=name, stream=stream, index=index, defects=len(found), ms=timer.ms)
    return {"detector": name, "defects": [d.to_json() for d in found]}
