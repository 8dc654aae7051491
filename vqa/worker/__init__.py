"""The monolith's shard worker: a thin adapter between an SQS job queue and the ``vqa`` package.

One process per ECS task. It long-polls its shard's queue; a job names a stream and its source.
For each job it decodes the source once, in memory (:func:`vqa.media.iter_segments`), runs the
shard's detector group (:class:`vqa.detectors.DetectorSet`) segment by segment, and writes each
defect as soon as a detector finishes it (:func:`vqa.results.put_defects`: idempotent, so a
re-run never duplicates a defect or an alert).

Nothing is lost when a task dies or is stopped:

- every ``checkpoint_every`` segments the worker saves the next segment index and the detectors'
  state (JSON) to the checkpoint bucket; a replacement restores the state and runs the detectors
  from there (segments decoded after a seek are identical to those of a continuous pass), and
  since detector state round-trips exactly it reports exactly the defects of an uninterrupted
  run (defects re-reported after the checkpoint hit the same keys);
- while it works it extends the message's visibility (a heartbeat), so a live worker keeps its
  job and a dead one's job reappears after ``visibility_seconds``;
- on SIGTERM (ECS scale-in, deployment, spot reclaim) it finishes the current segment,
  checkpoints, requeues the job (a fresh message: a stop is not a failed receive) and exits;
- a stream stopped through the front door (``stop_requested`` in its status item, read between
  segments at most once a second: :mod:`~vqa.worker.stop`) ends its job at the next segment:
  open defects end at the last media seen (and their ``defect.ended`` alerts go out), the
  message is deleted, and the shard, then the stream, records ``stopped``; a job received for a
  stream already stopped ends at once;
- a job that fails is retried; on its last receive the failure is recorded in the stream's status
  item (``state=failed``, ``error``) and SQS moves the job to the shard's dead-letter queue.

Logs (Powertools' Logger, with ``stream_id`` and ``segment``) and metrics (EMF: segments, lag,
defects, alerts, failures; :mod:`vqa.metrics`) are one JSON object per line on stderr. Settings
come from ``VQA_*`` environment variables (the task definition sets them) or the command line:
``python -m vqa.worker --help``.

Modules: :mod:`~vqa.worker.loop` (the worker loop), :mod:`~vqa.worker.settings`,
:mod:`~vqa.worker.clients`, :mod:`~vqa.worker.jobs` (a job and its detector run),
:mod:`~vqa.worker.checkpoints`, :mod:`~vqa.worker.status` (the shard's status attributes),
:mod:`~vqa.worker.stop` (the stream's stop request),
:mod:`~vqa.worker.heartbeat` (heartbeat, hand-back, release), :mod:`~vqa.worker.protection`
(ECS task scale-in protection), :mod:`~vqa.worker.selftest`, :mod:`~vqa.worker.logs` and
:mod:`~vqa.worker.cli` (``python -m vqa.worker``). The names below are re-exported here so that
``from vqa.worker import Worker`` keeps working.
"""

from vqa.worker.checkpoints import CHECKPOINT_VERSION, Checkpoint, CheckpointStore
from vqa.worker.cli import build_parser, main
from vqa.worker.clients import Clients
from vqa.worker.heartbeat import Heartbeat, hand_back, release
from vqa.worker.jobs import (
    RESUME_MODES,
    Job,
    JobResult,
    StopRequested,
    run_detectors,
    tracks_for,
)
from vqa.worker.logs import configure_logging, observer
from vqa.worker.loop import Worker
from vqa.worker.protection import TaskProtection
from vqa.worker.selftest import self_test
from vqa.worker.settings import WorkerSettings
from vqa.worker.status import update_shard_status

__all__ = [
    "CHECKPOINT_VERSION",
    "RESUME_MODES",
    "Checkpoint",
    "CheckpointStore",
    "Clients",
    "Heartbeat",
    "Job",
    "JobResult",
    "StopRequested",
    "TaskProtection",
    "Worker",
    "WorkerSettings",
    "build_parser",
    "configure_logging",
    "hand_back",
    "main",
    "observer",
    "release",
    "run_detectors",
    "self_test",
    "tracks_for",
    "update_shard_status",
]
