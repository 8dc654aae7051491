"""A job's lease on its SQS message: the heartbeat that keeps it, the hand-back and the release.

A worker keeps its job by extending the message's visibility while it makes progress; it gives
the job back when stopped (a fresh copy of the message, not a failed receive), and it releases the
message (visible again after a delay) when the job failed and is to be retried.
"""

from __future__ import annotations

import time
from typing import Any


class Heartbeat:
    """Extends a message's visibility while its job makes progress (a stuck job loses it)."""

    def __init__(self, sqs: Any, queue_url: str, receipt: str, visibility_seconds: int) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.receipt = receipt
        self.visibility = visibility_seconds
        self.interval = max(1.0, visibility_seconds / 3)
        self.last = time.monotonic()

    def beat(self) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.sqs.change_message_visibility(
            QueueUrl=self.queue_url, ReceiptHandle=self.receipt, VisibilityTimeout=self.visibility
        )
        self.last = now


def hand_back(sqs: Any, queue_url: str, message: dict[str, Any]) -> None:
    """Requeue a job its worker was stopped in (not a failure).

    A fresh copy replaces the message, because making the same message visible again would
    count this receive towards ``maxReceiveCount``: a stream whose workers are scaled in three
    times would land in the DLQ without ever failing. The copy is sent before the original
    is deleted, so a crash in between duplicates the job (harmless: writes are idempotent and
    both resume from the checkpoint) rather than losing it.
    """
    sqs.send_message(QueueUrl=queue_url, MessageBody=message["Body"])
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def release(sqs: Any, queue_url: str, receipt: str, *, delay: int) -> None:
    """Make the message visible again after ``delay`` seconds (0: now)."""
    sqs.change_message_visibility(
        QueueUrl=queue_url, ReceiptHandle=receipt, VisibilityTimeout=delay
    )
