"""A stream's stop request (the front door's DELETE), as a worker sees it.

The request sits in the stream's one status item (:func:`vqa.results.request_stop`). A worker
reads it between segments, but at most once per ``interval`` seconds of wall time: a file job
decodes many segments a second, and one ``GetItem`` per segment would be a cost of its own.
For a live job, segments come at most about once a second, so the stop takes effect at the next
segment; while the source is quiet (input loss) the lease thread asks instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from vqa.results import read_status

log = logging.getLogger("vqa.worker")

#: Seconds between reads of the status item.
STOP_POLL_SECONDS = 1.0


class StopPoll:
    """``poll()`` is True once monitoring of ``stream`` was asked to stop (then stays True)."""

    def __init__(
        self,
        dynamodb: Any,
        table: str,
        stream: str,
        *,
        interval: float = STOP_POLL_SECONDS,
        requested: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.stream = stream
        self.interval = interval
        self.requested = requested
        self.clock = clock
        self._last = clock()
        # Called from the job's thread and the lease thread: one read at a time.
        self._lock = threading.Lock()

    def poll(self) -> bool:
        with self._lock:
            if self.requested:
                return True
            now = self.clock()
            if now - self._last < self.interval:
                return False
            self._last = now
            try:
                status = read_status(dynamodb=self.dynamodb, table=self.table, stream=self.stream)
            except Exception:  # a throttled read must not fail the job: ask again next time
                log.warning("could not read the stop request", extra={"stream": self.stream})
                return False
            self.requested = status is not None and status.stop_requested
            return self.requested
