"""Start step: probe the source once per stream and record the stream as running.

Event: ``{"stream": id, "source": "s3://bucket/key"}``. Returns the ``info`` the state machine
carries to every detector: which tracks exist and which detectors do not apply.
A source that is not media raises :class:`vqa.errors.BadSourceError`; the state machine records
it in the stream status and fails the execution.
"""

from __future__ import annotations

from typing import Any

from lambdas.distributed.common import CLIENTS, Timer, env, log, transient_errors
from vqa import detectors, media, results
from vqa.detectors import NEEDS_REASON


def skipped_detectors(names: list[str], info: media.SourceInfo) -> dict[str, str]:
    """What ``vqa analyze`` reports as skipped: undecodable streams (``"<kind> stream"``) and the
    detectors that do not apply to the tracks there are, with the same reasons."""
    skipped = {f"{kind} stream": why for kind, why in info.skipped.items()}
    for name in names:
        det = detectors.create(name)
        if not det.applies(has_video=info.has_video, has_audio=info.has_audio):
            skipped[name] = NEEDS_REASON[det.needs]
    return skipped


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    timer = Timer()
    stream, source = str(event["stream"]), str(event["source"])
    names = [n for n in env("DETECTORS").split(",") if n]
    with transient_errors():
        info = media.probe(source, s3_client=CLIENTS.s3)
    skipped = skipped_detectors(names, info)
    out = {
        "has_video": info.has_video,
        "has_audio": info.has_audio,
        "duration": info.duration,
        "skipped": skipped,
    }
    with transient_errors():
        results.put_status(
            dynamodb=CLIENTS.dynamodb,
            table=env("TABLE_NAME"),
            stream=stream,
            state="running",
            source=source,
            duration=info.duration,
            skipped=skipped,
        )
    log("start", stream=stream, source=source, ms=timer.ms, **out)
    return out
