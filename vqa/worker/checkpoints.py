"""Checkpoints: where a job stands, saved to S3 so that a replacement task resumes it exactly."""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vqa.worker.jobs import Job

log = logging.getLogger("vqa.worker")

#: Version of the checkpoint document; a checkpoint of another version is ignored.
CHECKPOINT_VERSION = 1


@dataclass
class Checkpoint:
    """Where a job stands: the next segment to decode and the detectors' state before it."""

    next_index: int
    state: dict[str, Any]
    defects_written: int = 0


class CheckpointStore:
    """One JSON object per (stream, shard) in the checkpoint bucket."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    @staticmethod
    def key(stream: str, shard: str) -> str:
        return f"checkpoints/{urllib.parse.quote(stream, safe='')}/{shard}.json"

    def load(self, job: Job, shard: str, detectors: Sequence[str]) -> Checkpoint | None:
        try:
            resp = self.s3.get_object(Bucket=self.bucket, Key=self.key(job.stream, shard))
        except self.s3.exceptions.NoSuchKey:
            return None
        doc = json.loads(resp["Body"].read())
        # A checkpoint of another source, detector group or segmentation cannot be resumed.
        expected = {
            "version": CHECKPOINT_VERSION,
            "source": job.source,
            "detectors": list(detectors),
            "segment_seconds": job.segment_seconds,
        }
        if any(doc.get(k) != v for k, v in expected.items()):
            log.warning("ignoring incompatible checkpoint", extra={"stream_id": job.stream})
            return None
        return Checkpoint(
            next_index=int(doc["next_index"]),
            state=doc["state"],
            defects_written=int(doc.get("defects_written", 0)),
        )

    def save(self, job: Job, shard: str, detectors: Sequence[str], cp: Checkpoint) -> None:
        doc = {
            "version": CHECKPOINT_VERSION,
            "stream": job.stream,
            "source": job.source,
            "shard": shard,
            "detectors": list(detectors),
            "segment_seconds": job.segment_seconds,
            "next_index": cp.next_index,
            "defects_written": cp.defects_written,
            "state": cp.state,
        }
        self.s3.put_object(
            Bucket=self.bucket,
            Key=self.key(job.stream, shard),
            Body=json.dumps(doc, separators=(",", ":")).encode(),
            ContentType="application/json",
        )

    def delete(self, job: Job, shard: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=self.key(job.stream, shard))
