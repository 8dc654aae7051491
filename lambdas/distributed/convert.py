"""Media conversion: decode one segment of the source and write it to the intermediate bucket.

Event: ``{"stream": id, "source": "s3://...", "index": n}``. Granularity (environment
``GRANULARITY``): ``frame`` writes one object per frame plus the audio buffer and a small meta
object, as Prime Video's converter did; ``segment`` writes one object per segment. Returns the
segment reference every detector reads back: ``{"index", "start", "end", "last", "prefix",
"objects"}``.
"""

from __future__ import annotations

from typing import Any

from lambdas.distributed.common import CLIENTS, Timer, env, log, segment_prefix, transient_errors
from vqa import media
from vqa.segment import Segment


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    timer = Timer()
    stream, source, index = str(event["stream"]), str(event["source"]), int(event["index"])
    bucket = env("INTERMEDIATE_BUCKET")
    seconds = float(env("SEGMENT_SECONDS", "1.0"))
    decoded: dict[str, Any] = {}
    with transient_errors():
        # media.decode_segment, plus the decoder's facts: at the last segment the decoded
        # duration of the whole source, which is what `vqa analyze` reports.
        segment = next(
            media.iter_segments(
                source,
                segment_seconds=seconds,
                start_index=index,
                stop_index=index + 1,
                s3_client=CLIENTS.s3,
                info=decoded,
            ),
            None,
        ) or Segment(index=index, start=index * seconds, end=(index + 1) * seconds, last=True)
    objects = segment.to_objects(env("GRANULARITY", "segment"))
    prefix = segment_prefix(stream, index)
    written = 0
    with transient_errors():
        for name, body in objects.items():
            CLIENTS.s3.put_object(Bucket=bucket, Key=prefix + name, Body=body)
            written += len(body)
    out = {
        "index": segment.index,
        "start": segment.start,
        "end": segment.end,
        "last": segment.last,
        "prefix": prefix,
        "objects": sorted(objects),
    }
    if segment.last and "duration" in decoded:
        out["duration"] = float(decoded["duration"])
    log(
        "convert",
        stream=stream,
        index=index,
        last=segment.last,
        objects=len(objects),
        bytes=written,
        ms=timer.ms,
    )
    return out
