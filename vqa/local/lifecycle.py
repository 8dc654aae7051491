"""The intermediate bucket's lifecycle rule, in an emulated live run.

In AWS the stack's lifecycle rule expires a segment's objects (frames, audio, detector state) a
day after they were written, and the cost model prices that day of storage. An emulated live run
keeps moto's objects in this process's memory, where a day of a 1080p30 stream's frames (60 MB of
luma per stream-second) does not fit: a 10-minute run was killed for memory. So, standing in for
the rule, the emulation drops what no step of the stream will read again: a segment's objects and
the detector states before it, once every detector has saved its state ``margin`` segments past
it (a retried task re-reads its own segment and the state just before it, never older ones).

Nothing the stack does changes and nothing is metered: this is the platform's housekeeping, as
the expiry is in AWS (lifecycle expirations are not billed requests).
"""

from __future__ import annotations

import logging

from vqa.local.fast_s3 import _backend

log = logging.getLogger(__name__)

#: Segments kept behind the slowest detector's saved state (retries of the segments in flight).
MARGIN = 2


def expire_consumed(bucket: str, stream: str, *, margin: int = MARGIN) -> int:
    """Delete ``stream``'s objects in ``bucket`` that no step reads again; how many went.

    Key layout (``lambdas.distributed.common``): ``segments/<stream>/<index>/...`` and
    ``state/<stream>/<detector>/<index>.json`` (the state *after* segment ``index``).
    """
    backend = _backend()
    keys = list(backend.get_bucket(bucket).keys.keys())  # a C-level copy: atomic under the GIL
    states, segments = f"state/{stream}/", f"segments/{stream}/"
    latest: dict[str, int] = {}
    for key in keys:
        if key.startswith(states):
            detector, name = key[len(states) :].split("/", 1)
            latest[detector] = max(latest.get(detector, -1), int(name.split(".", 1)[0]))
    if not latest:
        return 0
    done = min(latest.values()) - margin  # every index below this is consumed
    dropped = 0
    for key in keys:
        if key.startswith(states):
            index = int(key.rsplit("/", 1)[1].split(".", 1)[0])
        elif key.startswith(segments):
            index = int(key[len(segments) :].split("/", 1)[0])
        else:
            continue
        if index < done:
            backend.delete_object(bucket, key)
            dropped += 1
    if dropped:
        log.debug("expired %d objects of %s below segment %d", dropped, stream, done)
    return dropped
