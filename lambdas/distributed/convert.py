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


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    timer = Timer()
    stream, source, index = str(event["stream"]), str(event["source"]), int(event["index"])
    bucket = env("INTERMEDIATE_BUCKET")
    with transient_errors():
        segment = media.decode_segment(
            source, index, segment_seconds=float(env("SEGMENT_SECONDS", "1.0")),
            s3_client=CLIENTS.s3,
        )
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
    log("convert", stream=stream, index=index, last=segment.last, objects=len(objects),
        bytes=written, ms=timer.ms)
    return out
