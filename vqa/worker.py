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
- a job that fails is retried; on its last receive the failure is recorded in the stream's status
  item (``state=failed``, ``error``) and SQS moves the job to the shard's dead-letter queue.

Logs are one JSON object per line on stderr. Settings come from ``VQA_*`` environment variables
(the task definition sets them) or the command line: ``python -m vqa.worker --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from vqa.defects import Defect
from vqa.meter import Meter
from vqa.results import STATUS_KEY, put_defects

log = logging.getLogger("vqa.worker")

#: Version of the checkpoint document; a checkpoint of another version is ignored.
CHECKPOINT_VERSION = 1


class StopRequested(Exception):
    """Raised inside a job when the worker was asked to stop: the job is handed back, not failed."""


# --------------------------------------------------------------------------------------------
# Structured logs
# --------------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and any ``extra`` fields."""

    _STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class CountingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that also counts the bytes it emits (CloudWatch Logs ingestion)."""

    def __init__(self, stream: Any, meter: Meter | None) -> None:
        super().__init__(stream)
        self.meter = meter

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        if self.meter is not None:
            with contextlib.suppress(Exception):
                self.meter.add("log_bytes", len(self.format(record).encode()) + 1)


def configure_logging(meter: Meter | None, level: int = logging.INFO) -> None:
    handler = CountingHandler(sys.stderr, meter)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("vqa")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerSettings:
    """What a shard worker needs to know; the ECS task definition sets these as ``VQA_*``."""

    queue_url: str
    shard: str
    detectors: tuple[str, ...]
    table: str
    checkpoint_bucket: str
    topic_arn: str | None = None
    segment_seconds: float = 1.0
    checkpoint_every: int = 10
    visibility_seconds: int = 120
    max_receives: int = 3
    wait_seconds: int = 20
    #: Delay before a failed job is offered again (``min(cap, 2**receives)``); 0 retries at once.
    retry_delay_cap: int = 30
    #: ``seek`` or ``replay``: how a resumed job reaches its checkpoint (see run_detectors).
    resume: str = "seek"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> WorkerSettings:
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {
            "queue_url": env.get("VQA_QUEUE_URL", ""),
            "shard": env.get("VQA_SHARD", "shard0"),
            "detectors": tuple(d for d in env.get("VQA_DETECTORS", "").split(",") if d),
            "table": env.get("VQA_TABLE", ""),
            "checkpoint_bucket": env.get("VQA_CHECKPOINT_BUCKET", ""),
            "topic_arn": env.get("VQA_TOPIC_ARN") or None,
            "resume": env.get("VQA_RESUME") or "seek",
        }
        for name, conv in (
            ("segment_seconds", float),
            ("checkpoint_every", int),
            ("visibility_seconds", int),
            ("max_receives", int),
            ("wait_seconds", int),
            ("retry_delay_cap", int),
        ):
            raw = env.get(f"VQA_{name.upper()}")
            if raw:
                values[name] = conv(raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def missing(self) -> list[str]:
        required = ("queue_url", "table", "checkpoint_bucket")
        out = [f"VQA_{n.upper()}" for n in required if not getattr(self, n)]
        if not self.detectors:
            out.append("VQA_DETECTORS")
        return out


@dataclass
class Clients:
    """The boto3 clients a worker uses, each attached to the meter when there is one."""

    sqs: Any
    dynamodb: Any
    s3: Any
    sns: Any | None

    @classmethod
    def create(
        cls,
        *,
        meter: Meter | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> Clients:
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(region_name=region)
        cfg = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=4)

        def make(service: str) -> Any:
            client = session.client(service, endpoint_url=endpoint_url, config=cfg)  # type: ignore[call-overload]
            return meter.attach(client) if meter is not None else client

        return cls(sqs=make("sqs"), dynamodb=make("dynamodb"), s3=make("s3"), sns=make("sns"))


# --------------------------------------------------------------------------------------------
# Checkpoints and status
# --------------------------------------------------------------------------------------------


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
            log.warning("ignoring incompatible checkpoint", extra={"stream": job.stream})
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


def update_shard_status(
    dynamodb: Any, table: str, stream: str, shard: str, shard_state: str, /, **fields: Any
) -> dict[str, Any]:
    """Set this shard's attributes on the stream's status item; return the whole new item.

    Attributes: ``shard_<name>`` (running, retrying, done, failed) plus the given fields
    (stored as strings, JSON for non-strings, like :func:`vqa.results.put_status`). Only this
    shard's attributes are touched, so shards never overwrite each other.
    """
    names = {"#sh": f"shard_{shard}"}
    values: dict[str, Any] = {":st": {"S": shard_state}}
    sets = ["#sh = :st"]
    for i, (k, v) in enumerate(fields.items()):
        names[f"#f{i}"] = k
        values[f":f{i}"] = {"S": v if isinstance(v, str) else json.dumps(v)}
        sets.append(f"#f{i} = :f{i}")
    resp = dynamodb.update_item(
        TableName=table,
        Key={"stream": {"S": stream}, "defect": {"S": STATUS_KEY}},
        UpdateExpression="SET " + ", ".join(sets),
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
        ReturnValues="ALL_NEW",
    )
    return {k: v.get("S", v.get("N")) for k, v in resp.get("Attributes", {}).items()}


# --------------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """A stream request as the orchestrator queued it for one shard."""

    stream: str
    source: str
    shard: str
    segment_seconds: float = 1.0

    @classmethod
    def parse(cls, body: str, *, segment_seconds: float = 1.0) -> Job:
        doc = json.loads(body)
        if not isinstance(doc, dict) or not doc.get("stream") or not doc.get("source"):
            raise ValueError("job message needs 'stream' and 'source'")
        return cls(
            stream=str(doc["stream"]),
            source=str(doc["source"]),
            shard=str(doc.get("shard", "")),
            segment_seconds=float(doc.get("segment_seconds", segment_seconds)),
        )


@dataclass
class JobResult:
    stream: str
    segments: int
    defects: int
    duration: float
    resumed_from: int
    skipped: dict[str, str] = field(default_factory=dict)


def tracks_for(detectors: Sequence[str]) -> tuple[str, ...]:
    """The tracks a detector group needs: an audio-only shard never decodes the picture."""
    from vqa.detectors import DETECTORS

    needs = {DETECTORS[name].needs for name in detectors}
    tracks = []
    if needs & {"video", "both"}:
        tracks.append("video")
    if needs & {"audio", "both"}:
        tracks.append("audio")
    return tuple(tracks)


#: How a resumed job gets back to its checkpoint (see :func:`run_detectors`).
RESUME_MODES = ("seek", "replay")


def run_detectors(
    job: Job,
    *,
    detectors: Sequence[str],
    s3_client: Any | None,
    emit: Callable[[list[Defect]], None],
    checkpoint: Checkpoint | None = None,
    save_checkpoint: Callable[[Checkpoint], None] | None = None,
    checkpoint_every: int = 10,
    after_segment: Callable[[int], None] | None = None,
    heartbeat: Callable[[], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    resume: str = "seek",
) -> JobResult:
    """Decode ``job.source`` once and run the detector group over it, from ``checkpoint`` on.

    ``emit`` receives the defects each segment finished (and those ``flush`` closes at the end);
    ``save_checkpoint`` is called every ``checkpoint_every`` segments, and when ``should_stop``
    turns true after a segment, in which case :class:`StopRequested` is raised. ``heartbeat`` is
    called after every decoded segment, ``after_segment`` after every analysed one.

    Resuming, ``resume="seek"`` (the default) seeks to the checkpoint's segment: exact, because
    :func:`vqa.media.iter_segments` makes every segment a function of the segment alone (video
    from the preceding keyframe, audio from a fresh decoder with a fixed preroll: FFmpeg's AAC
    decoder would otherwise carry noise-generator state across a seek). ``"replay"`` decodes the
    source from its start again and runs the detectors only from the checkpoint on: the
    conservative choice for a decoder or container that cannot seek exactly.
    """
    from vqa.detectors import DetectorSet
    from vqa.media import iter_segments

    if resume not in RESUME_MODES:
        raise ValueError(f"resume must be one of {RESUME_MODES}, not {resume!r}")
    dset = DetectorSet(list(detectors))
    start = 0
    written = 0
    if checkpoint is not None:
        dset.set_state(checkpoint.state)
        start = checkpoint.next_index
        written = checkpoint.defects_written
    info: dict[str, Any] = {}
    segments = 0
    segs: Iterator[Any] = iter_segments(
        job.source,
        segment_seconds=job.segment_seconds,
        start_index=start if resume == "seek" else 0,
        s3_client=s3_client,
        info=info,
        tracks=tracks_for(detectors),
    )
    with contextlib.closing(segs):  # type: ignore[type-var]
        for seg in segs:
            if heartbeat is not None:
                heartbeat()
            if seg.index < start:  # replaying up to the checkpoint: decode only
                if should_stop():
                    raise StopRequested(f"stopped while replaying to segment {start}")
                continue
            found = dset.process(seg)
            if found:
                emit(found)
                written += len(found)
            segments += 1
            if after_segment is not None:
                after_segment(seg.index)
            if seg.last:
                break
            due = (seg.index + 1) % max(1, checkpoint_every) == 0
            stopping = should_stop()
            if save_checkpoint is not None and (due or stopping):
                save_checkpoint(Checkpoint(seg.index + 1, dset.get_state(), written))
            if stopping:
                raise StopRequested(f"stopped after segment {seg.index}")
    final = dset.flush()
    if final:
        emit(final)
        written += len(final)
    skipped = dict(getattr(dset, "skipped", {}) or {})
    return JobResult(
        stream=job.stream,
        segments=segments,
        defects=written,
        duration=float(info.get("duration", 0.0)),
        resumed_from=start,
        skipped=skipped,
    )


# --------------------------------------------------------------------------------------------
# The worker loop
# --------------------------------------------------------------------------------------------


class Worker:
    """Long-polls one shard queue and runs its jobs; see the module docstring for the guarantees."""

    def __init__(
        self,
        settings: WorkerSettings,
        clients: Clients,
        *,
        meter: Meter | None = None,
        cpu_clock: Callable[[], float] = time.process_time,
        after_segment: Callable[[Worker, int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.meter = meter
        self.cpu_clock = cpu_clock
        self.after_segment_hook = after_segment
        self.checkpoints = CheckpointStore(clients.s3, settings.checkpoint_bucket)
        self._stop = threading.Event()
        self._retry_due = 0.0
        self.jobs_done = 0
        self.jobs_failed = 0

    # -- control -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop after the current segment (what SIGTERM does)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def install_signal_handlers(self) -> None:
        def on_signal(signum: int, _frame: Any) -> None:
            log.info("signal received: finishing the current segment", extra={"signal": signum})
            self.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    # -- loop ------------------------------------------------------------------------------

    def run(self, *, drain: bool = False, max_jobs: int | None = None, first_wait: int = 0) -> int:
        """Process jobs until stopped (or, with ``drain``, until the queue is empty).

        ``first_wait`` (drain mode): long-poll this long for the first job, so that a worker can
        be started before its job is queued. Returns the number of jobs completed. CPU time spent
        in the loop is added to the meter's ``worker_cpu_seconds``.
        """
        cpu0 = self.cpu_clock()
        first = True
        try:
            while not self.stopping:
                if max_jobs is not None and self.jobs_done + self.jobs_failed >= max_jobs:
                    break
                if drain:
                    wait = min(20, first_wait) if first else 0
                else:
                    wait = self.settings.wait_seconds
                first = False
                resp = self.clients.sqs.receive_message(
                    QueueUrl=self.settings.queue_url,
                    MaxNumberOfMessages=1,
                    WaitTimeSeconds=wait,
                    VisibilityTimeout=self.settings.visibility_seconds,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                )
                messages = resp.get("Messages", [])
                if not messages:
                    if drain:
                        pause = self._retry_due - time.monotonic()
                        if pause <= 0:
                            break
                        time.sleep(min(pause, 1.0))
                    continue
                self.handle(messages[0])
        finally:
            if self.meter is not None:
                self.meter.add("worker_cpu_seconds", self.cpu_clock() - cpu0)
        return self.jobs_done

    def handle(self, message: dict[str, Any]) -> None:
        """Run one job message: delete it when done, hand it back when stopped, else retry/DLQ."""
        s = self.settings
        receipt = message["ReceiptHandle"]
        receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        if self.stopping:
            self._hand_back(message)
            return
        try:
            job = Job.parse(message["Body"], segment_seconds=s.segment_seconds)
        except (ValueError, TypeError) as exc:
            # Unparseable: nothing to record it against; let SQS dead-letter it.
            log.error("malformed job message", extra={"error": str(exc), "receives": receives})
            self._release(receipt, delay=0)
            self.jobs_failed += 1
            return
        ctx = {"stream": job.stream, "shard": s.shard, "receives": receives}
        log.info("job received", extra={**ctx, "source": job.source})
        protection = TaskProtection.from_env()
        protection.set(True)
        try:
            result = self._run_job(job, receipt, receives, protection)
        except StopRequested:
            log.info("job handed back after checkpoint", extra=ctx)
            self._hand_back(message)
            return
        except Exception as exc:
            self._fail(job, receipt, receives, exc)
            return
        finally:
            protection.set(False)
        self.clients.sqs.delete_message(QueueUrl=s.queue_url, ReceiptHandle=receipt)
        self.jobs_done += 1
        log.info(
            "job done",
            extra={
                **ctx,
                "segments": result.segments,
                "defects": result.defects,
                "resumed_from": result.resumed_from,
                "duration": result.duration,
            },
        )

    def _run_job(
        self, job: Job, receipt: str, receives: int, protection: TaskProtection | None = None
    ) -> JobResult:
        s, c = self.settings, self.clients
        update_shard_status(
            c.dynamodb, s.table, job.stream, s.shard, "running", **{f"attempts_{s.shard}": receives}
        )
        checkpoint = self.checkpoints.load(job, s.shard, s.detectors)
        if checkpoint is not None:
            log.info(
                "resuming from checkpoint",
                extra={"stream": job.stream, "shard": s.shard, "next_index": checkpoint.next_index},
            )
        heartbeat = Heartbeat(c.sqs, s.queue_url, receipt, s.visibility_seconds)

        def beat() -> None:
            heartbeat.beat()
            if protection is not None:
                protection.renew()

        def emit(defects: list[Defect]) -> None:
            put_defects(
                dynamodb=c.dynamodb,
                table=s.table,
                stream=job.stream,
                defects=defects,
                sns=c.sns,
                topic_arn=s.topic_arn,
            )

        def save(cp: Checkpoint) -> None:
            self.checkpoints.save(job, s.shard, s.detectors, cp)
            log.info(
                "checkpoint",
                extra={"stream": job.stream, "shard": s.shard, "next_index": cp.next_index},
            )

        def after_segment(index: int) -> None:
            if self.after_segment_hook is not None:
                self.after_segment_hook(self, index)

        result = run_detectors(
            job,
            detectors=s.detectors,
            s3_client=c.s3,
            emit=emit,
            checkpoint=checkpoint,
            save_checkpoint=save,
            checkpoint_every=s.checkpoint_every,
            after_segment=after_segment,
            heartbeat=beat,
            should_stop=lambda: self.stopping,
            resume=s.resume,
        )
        item = update_shard_status(
            c.dynamodb,
            s.table,
            job.stream,
            s.shard,
            "done",
            **{
                # Per shard: an audio-only shard sees the audio's end, the video shard the
                # picture's; the stream lasts as long as the longest.
                f"duration_{s.shard}": repr(result.duration),
                f"skipped_{s.shard}": result.skipped,
                f"defects_{s.shard}": str(result.defects),
            },
        )
        shards = json.loads(item.get("shards") or "[]")
        if shards and all(item.get(f"shard_{n}") == "done" for n in shards):
            c.dynamodb.update_item(
                TableName=s.table,
                Key={"stream": {"S": job.stream}, "defect": {"S": STATUS_KEY}},
                UpdateExpression="SET #s = :done REMOVE #e",
                ExpressionAttributeNames={"#s": "state", "#e": "error"},
                ExpressionAttributeValues={":done": {"S": "done"}},
            )
        with contextlib.suppress(Exception):
            self.checkpoints.delete(job, s.shard)
        return result

    def _fail(self, job: Job, receipt: str, receives: int, exc: Exception) -> None:
        s = self.settings
        reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:1000]
        final = receives >= s.max_receives
        self.jobs_failed += 1
        log.error(
            "job failed" + (": dead-lettered" if final else ": will retry"),
            extra={"stream": job.stream, "shard": s.shard, "receives": receives, "error": reason},
            exc_info=not isinstance(exc, _EXPECTED_ERRORS()),
        )
        fields: dict[str, Any] = {"error": f"{s.shard}: {reason}", f"error_{s.shard}": reason}
        bad = getattr(exc, "reason", None)
        if isinstance(bad, str):  # BadSourceError: the one-line reason a client can show
            fields[f"reason_{s.shard}"] = bad
        try:
            if final:
                fields["state"] = "failed"
                update_shard_status(
                    self.clients.dynamodb, s.table, job.stream, s.shard, "failed", **fields
                )
            else:
                update_shard_status(
                    self.clients.dynamodb, s.table, job.stream, s.shard, "retrying", **fields
                )
        except Exception:  # the job is retried anyway; the status is best effort
            log.exception("could not record the failure", extra={"stream": job.stream})
        delay = 0 if final else min(s.retry_delay_cap, 2**receives)
        self._release(receipt, delay=delay)

    def _hand_back(self, message: dict[str, Any]) -> None:
        """Requeue a job this worker was stopped in (not a failure).

        A fresh copy replaces the message, because making the same message visible again would
        count this receive towards ``maxReceiveCount``: a stream whose workers are scaled in three
        times would land in the DLQ without ever failing. The copy is sent before the original
        is deleted, so a crash in between duplicates the job (harmless: writes are idempotent and
        both resume from the checkpoint) rather than losing it.
        """
        q = self.settings.queue_url
        self.clients.sqs.send_message(QueueUrl=q, MessageBody=message["Body"])
        self.clients.sqs.delete_message(QueueUrl=q, ReceiptHandle=message["ReceiptHandle"])

    def _release(self, receipt: str, *, delay: int) -> None:
        """Make the message visible again after ``delay`` seconds (0: now)."""
        self.clients.sqs.change_message_visibility(
            QueueUrl=self.settings.queue_url, ReceiptHandle=receipt, VisibilityTimeout=delay
        )
        self._retry_due = max(self._retry_due, time.monotonic() + delay)


def _EXPECTED_ERRORS() -> tuple[type[BaseException], ...]:
    from vqa.errors import VqaError

    return (VqaError,)


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


class TaskProtection:
    """ECS task scale-in protection through the agent endpoint (a no-op outside ECS).

    While a task works on a job, a scale-in (the backlog dropped because *another* job ended)
    must pick an idle task, not this one.
    """

    #: Protection expires after this long unless renewed (a hung task must not keep it forever).
    MINUTES = 60

    def __init__(self, agent_uri: str | None) -> None:
        self.agent_uri = agent_uri
        self._since: float | None = None

    @classmethod
    def from_env(cls) -> TaskProtection:
        return cls(os.environ.get("ECS_AGENT_URI"))

    def renew(self) -> None:
        """Called as segments complete: extend the protection at half its lifetime."""
        if self._since is not None and time.monotonic() - self._since > self.MINUTES * 30:
            self.set(True)

    def set(self, enabled: bool) -> None:
        if not self.agent_uri:
            return
        self._since = time.monotonic() if enabled else None
        body: dict[str, Any] = {"ProtectionEnabled": enabled}
        if enabled:
            body["ExpiresInMinutes"] = self.MINUTES
        req = urllib.request.Request(
            f"{self.agent_uri}/task-protection/v1/state",
            data=json.dumps(body).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=3) as resp:
                resp.read()
        except Exception as exc:
            log.warning("task protection not updated", extra={"error": str(exc)})


# --------------------------------------------------------------------------------------------
# Self-test and command line
# --------------------------------------------------------------------------------------------


def self_test(detectors: Sequence[str] | None = None) -> dict[str, Any]:
    """Decode a generated 4-second clip and run the detector group, with no AWS involved.

    Proves the image holds a working PyAV/FFmpeg, numpy and every detector module.
    """
    import tempfile
    from pathlib import Path

    import av

    from vqa.corpus import write_sample_clip
    from vqa.detectors import DETECTORS

    names = list(detectors or DETECTORS)
    with tempfile.TemporaryDirectory(prefix="vqa-self-test-") as tmp:
        clip = str(Path(tmp) / "self-test.mp4")
        write_sample_clip(clip, seconds=4.0, width=160, height=96)
        found: list[Defect] = []
        result = run_detectors(
            Job(stream="self-test", source=clip, shard="self-test"),
            detectors=names,
            s3_client=None,
            emit=found.extend,
        )
    return {
        "ok": result.segments > 0,
        "av": av.__version__,
        "detectors": names,
        "segments": result.segments,
        "defects": len(found),
        "package": str(Path(__file__).resolve().parent),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m vqa.worker",
        description="VQA monolith shard worker: long-polls a shard queue and runs its detectors. "
        "Every option defaults to its VQA_* environment variable (set by the ECS task).",
    )
    p.add_argument("--queue-url", help="shard job queue (VQA_QUEUE_URL)")
    p.add_argument("--shard", help="shard name (VQA_SHARD)")
    p.add_argument("--detectors", help="comma-separated detector group (VQA_DETECTORS)")
    p.add_argument("--table", help="defects/status table (VQA_TABLE)")
    p.add_argument("--topic-arn", help="alerts topic (VQA_TOPIC_ARN)")
    p.add_argument("--checkpoint-bucket", help="checkpoint bucket (VQA_CHECKPOINT_BUCKET)")
    p.add_argument("--segment-seconds", type=float, help="VQA_SEGMENT_SECONDS")
    p.add_argument("--checkpoint-every", type=int, help="segments between checkpoints")
    p.add_argument("--visibility-seconds", type=int, help="job visibility timeout / heartbeat")
    p.add_argument("--max-receives", type=int, help="the queue's redrive maxReceiveCount")
    p.add_argument("--wait-seconds", type=int, help="long-poll wait (default 20)")
    p.add_argument("--retry-delay-cap", type=int, help="longest delay before a retry (s)")
    p.add_argument(
        "--resume",
        choices=RESUME_MODES,
        default=None,
        help="how a resumed job reaches its checkpoint: seek (default) or replay, which decodes "
        "the source from its start again (VQA_RESUME)",
    )
    p.add_argument(
        "--endpoint-url",
        default=os.environ.get("VQA_ENDPOINT_URL"),
        help="AWS endpoint override (local emulation; VQA_ENDPOINT_URL)",
    )
    p.add_argument("--region", default=None, help="AWS region (default: AWS_DEFAULT_REGION)")
    p.add_argument("--drain", action="store_true", help="exit when the queue is empty")
    p.add_argument(
        "--first-wait",
        type=int,
        default=0,
        help="with --drain: long-poll up to this many seconds (max 20) for the first job",
    )
    p.add_argument("--max-jobs", type=int, default=None, help="exit after this many jobs")
    p.add_argument(
        "--usage-out", default=None, help="write the metered usage (JSON) to this file at exit"
    )
    p.add_argument(
        "--self-test",
        action="store_true",
        help="decode a generated clip with the detector group, print JSON, exit",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    meter = Meter()
    configure_logging(meter)
    if args.self_test:
        names = [d for d in (args.detectors or os.environ.get("VQA_DETECTORS", "")).split(",") if d]
        report = self_test(names or None)
        sys.stdout.write(json.dumps(report) + "\n")
        return 0 if report["ok"] else 1
    settings = WorkerSettings.from_env(
        queue_url=args.queue_url,
        shard=args.shard,
        detectors=tuple(d for d in args.detectors.split(",") if d) if args.detectors else None,
        table=args.table,
        topic_arn=args.topic_arn,
        checkpoint_bucket=args.checkpoint_bucket,
        segment_seconds=args.segment_seconds,
        checkpoint_every=args.checkpoint_every,
        visibility_seconds=args.visibility_seconds,
        max_receives=args.max_receives,
        wait_seconds=args.wait_seconds,
        retry_delay_cap=args.retry_delay_cap,
        resume=args.resume,
    )
    if missing := settings.missing():
        print(f"vqa.worker: error: missing settings: {', '.join(missing)}", file=sys.stderr)
        return 2
    # Import the decoder and the detectors before the first job, not while it waits.
    import vqa.detectors
    import vqa.media  # noqa: F401

    clients = Clients.create(meter=meter, endpoint_url=args.endpoint_url, region=args.region)
    worker = Worker(settings, clients, meter=meter)
    worker.install_signal_handlers()
    log.info(
        "worker started",
        extra={"shard": settings.shard, "detectors": list(settings.detectors)},
    )
    try:
        done = worker.run(drain=args.drain, max_jobs=args.max_jobs, first_wait=args.first_wait)
        log.info("worker exiting", extra={"jobs_done": done, "jobs_failed": worker.jobs_failed})
    finally:
        if args.usage_out:
            with open(args.usage_out, "w") as fh:
                json.dump(meter.snapshot(), fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
