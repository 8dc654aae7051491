"""The worker loop: long-poll one shard queue, run each job, delete, hand back or retry it.

The guarantees (nothing lost when a task dies or is stopped) are described in :mod:`vqa.worker`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from vqa.defects import Defect
from vqa.events import DefectEvent
from vqa.meter import Meter
from vqa.observability import FileSegments
from vqa.results import STATUS_KEY, StreamStatus, put_defects
from vqa.urlguard import redact
from vqa.worker.checkpoints import Checkpoint, CheckpointStore
from vqa.worker.clients import Clients
from vqa.worker.heartbeat import Heartbeat, hand_back, release
from vqa.worker.jobs import Job, JobResult, StopRequested, run_detectors
from vqa.worker.live import HandOver, LiveRun, hand_over, publish_alerts
from vqa.worker.logs import observer
from vqa.worker.protection import TaskProtection
from vqa.worker.settings import WorkerSettings
from vqa.worker.status import update_shard_status
from vqa.worker.stop import StopPoll

log = logging.getLogger("vqa.worker")


class _PollInterrupted(BaseException):
    """Raised by the signal handler to abandon an idle long poll.

    A ``BaseException``, like ``KeyboardInterrupt``, so that botocore's retry handling (which
    catches ``Exception``) lets it through.
    """


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
        #: The running live job's stop (vqa.watch waits on it while the source is quiet).
        self._job_stop = threading.Event()
        #: True only while blocked in an idle long poll: a stop then has nothing to finish.
        self._polling = False
        self._retry_due = 0.0
        self.jobs_done = 0
        self.jobs_failed = 0

    # -- control -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop after the current segment (what SIGTERM does)."""
        self._stop.set()
        self._job_stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def install_signal_handlers(self) -> None:
        def on_signal(signum: int, _frame: Any) -> None:
            self.stop()
            if self._polling:
                # Idle: leave now instead of when the long poll returns (up to 20 s; ECS kills
                # the task 30 s after SIGTERM by default). A message the poll was returning at
                # this very instant is not lost: it reappears after its visibility timeout.
                log.info("signal received while idle: exiting", extra={"signal": signum})
                raise _PollInterrupted
            log.info("signal received: finishing the current segment", extra={"signal": signum})

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
                try:
                    self._polling = not self.stopping
                    resp = self.clients.sqs.receive_message(
                        QueueUrl=self.settings.queue_url,
                        MaxNumberOfMessages=1,
                        WaitTimeSeconds=wait,
                        VisibilityTimeout=self.settings.visibility_seconds,
                        MessageSystemAttributeNames=["ApproximateReceiveCount"],
                    )
                finally:
                    self._polling = False
                messages = resp.get("Messages", [])
                if not messages:
                    if drain:
                        pause = self._retry_due - time.monotonic()
                        if pause <= 0:
                            break
                        time.sleep(min(pause, 1.0))
                    continue
                self.handle(messages[0])
        except _PollInterrupted:
            pass  # stopped while idle: nothing to hand back
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
        # Every line about this job carries its stream_id (Powertools' appended keys).
        observer().bind(stream_id=job.stream)
        ctx = {"shard": s.shard, "receives": receives}
        log.info("job received", extra={**ctx, "source": redact(job.source)})
        protection = TaskProtection.from_env()
        protection.set(True)
        self._received = time.monotonic()
        try:
            result = self._run_job(job, receipt, receives, protection)
        except HandOver:
            # Before SQS's visibility ceiling: a fresh message continues the stream.
            hand_over(self.clients.sqs, s.queue_url, message, job)
            log.info("live job handed over", extra={**ctx, "continuation": job.continuation + 1})
            return
        except StopRequested:
            log.info("job handed back after checkpoint", extra=ctx)
            self._hand_back(message)
            return
        except Exception as exc:
            self._fail(job, receipt, receives, exc)
            return
        finally:
            protection.set(False)
            observer().flush()  # whatever the job's outcome, what it measured goes out
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
                "stopped": result.stopped,
            },
        )

    def _run_job(
        self, job: Job, receipt: str, receives: int, protection: TaskProtection | None = None
    ) -> JobResult:
        # The request's detectors and thresholds for this shard (the front door's POST).
        s, c = self.settings.for_job(job), self.clients
        item = update_shard_status(
            c.dynamodb, s.table, job.stream, s.shard, "running", **{f"attempts_{s.shard}": receives}
        )
        # The front door's stop request: already there (a job queued, redelivered or handed
        # back after the stream was stopped), or read between segments from now on.
        stop = StopPoll(
            c.dynamodb,
            s.table,
            job.stream,
            requested=StreamStatus.from_item(item).stop_requested,
        )
        heartbeat = Heartbeat(c.sqs, s.queue_url, receipt, s.visibility_seconds)

        def beat() -> None:
            heartbeat.beat()
            if protection is not None:
                protection.renew()

        def emit(defects: list[Defect]) -> None:
            # Stored only: the alerts are the events (emit_events), published once each.
            put_defects(dynamodb=c.dynamodb, table=s.table, stream=job.stream, defects=defects)

        def emit_events(events: list[DefectEvent]) -> None:
            publish_alerts(events, job=job, settings=s, clients=c)

        if job.live:  # never seeked: a resumed live job starts at the live edge
            result = self._run_live(job, s, heartbeat, protection, emit, stop)
            self._finish(job, result)
            return result
        checkpoint = self.checkpoints.load(job, s.shard, s.detectors)
        if checkpoint is not None:
            log.info(
                "resuming from checkpoint",
                extra={"shard": s.shard, "next_index": checkpoint.next_index},
            )
        obs = observer()
        segments = FileSegments(obs, job.segment_seconds)

        def save(cp: Checkpoint) -> None:
            self.checkpoints.save(job, s.shard, s.detectors, cp)
            # Progress for the front door's GET (monitored time so far): the media analysed up
            # to this checkpoint, whole segments; the final figure comes with _finish.
            progress = {f"duration_{s.shard}": repr(cp.next_index * job.segment_seconds)}
            update_shard_status(c.dynamodb, s.table, job.stream, s.shard, "running", **progress)
            log.info("checkpoint", extra={"shard": s.shard, "next_index": cp.next_index})
            obs.flush()  # the metrics of this checkpoint's batch of segments

        def after_segment(index: int) -> None:
            obs.bind(stream_id=job.stream, segment=index)
            segments.segment(index)
            if self.after_segment_hook is not None:
                self.after_segment_hook(self, index)

        result = run_detectors(
            job,
            detectors=s.detectors,
            s3_client=c.s3,
            emit=emit,
            emit_events=emit_events,
            thresholds=s.thresholds,
            checkpoint=checkpoint,
            save_checkpoint=save,
            checkpoint_every=s.checkpoint_every,
            after_segment=after_segment,
            heartbeat=beat,
            should_stop=lambda: self.stopping,
            resume=s.resume,
            stream_stopped=stop.poll,
        )
        segments.finish(result.duration)
        obs.flush()
        self._finish(job, result)
        return result

    def _finish(self, job: Job, result: JobResult) -> None:
        """Record the shard done or stopped (and the stream, once every shard is: ``stopped``
        if monitoring was stopped on request); drop the checkpoint."""
        s, c = self.settings, self.clients
        item = update_shard_status(
            c.dynamodb,
            s.table,
            job.stream,
            s.shard,
            "stopped" if result.stopped else "done",
            **{
                # Per shard: an audio-only shard sees the audio's end, the video shard the
                # picture's; the stream lasts as long as the longest.
                f"duration_{s.shard}": repr(result.duration),
                f"skipped_{s.shard}": result.skipped,
                f"defects_{s.shard}": str(result.defects),
            },
        )
        shards = json.loads(item.get("shards") or "[]")
        states = [item.get(f"shard_{n}") for n in shards]
        if shards and all(st in ("done", "stopped") for st in states):
            final = "stopped" if "stopped" in states else "done"
            c.dynamodb.update_item(
                TableName=s.table,
                Key={"stream": {"S": job.stream}, "defect": {"S": STATUS_KEY}},
                UpdateExpression="SET #s = :done REMOVE #e",
                ExpressionAttributeNames={"#s": "state", "#e": "error"},
                ExpressionAttributeValues={":done": {"S": final}},
            )
        with contextlib.suppress(Exception):
            self.checkpoints.delete(job, s.shard)

    def handover_due(self) -> bool:
        """Time to hand a live job over: its next visibility extension would pass SQS's
        ceiling (12 hours from receipt), less a margin for the hand-over itself."""
        s = self.settings
        ceiling = s.visibility_ceiling_seconds
        margin = min(s.visibility_seconds, ceiling / 2)
        return time.monotonic() - self._received >= ceiling - margin

    def _run_live(
        self,
        job: Job,
        settings: WorkerSettings,
        heartbeat: Heartbeat,
        protection: TaskProtection | None,
        emit: Callable[[list[Defect]], None],
        stop: StopPoll,
    ) -> JobResult:
        """Follow a live source (:mod:`vqa.worker.live`); the lease is kept by a thread, since
        a quiet source (input loss) yields no segment for as long as it lasts. That thread also
        reads the stream's stop request while no segment comes."""
        self._job_stop = threading.Event()
        if self.stopping:
            self._job_stop.set()
        run = LiveRun(
            job,
            settings=settings,
            clients=self.clients,
            checkpoints=self.checkpoints,
            stop=self._job_stop,
            handover_due=self.handover_due,
            keep_lease=lambda: None,
            put_defects=emit,
            stream_stopped=stop.poll,
        )
        if stop.requested:
            return run.finish_stopped()
        done = threading.Event()

        def lease() -> None:
            while not done.wait(1.0):
                if not run.stopped and stop.poll():
                    run.request_stop()  # the follower stops even while no media comes
                if self.handover_due():
                    # At the next media-segment boundary (LiveRun); now, if no media comes.
                    run.request_hand_over()
                    if time.monotonic() - run.last_segment_at > 2 * job.segment_seconds + 1:
                        self._job_stop.set()
                        return  # no extension past the ceiling: the hand-over is under way
                try:
                    heartbeat.beat()
                    if protection is not None:
                        protection.renew()
                except Exception:  # the next beat retries; a lost lease shows as a duplicate
                    log.warning("heartbeat failed", exc_info=True)

        keeper = threading.Thread(target=lease, name="vqa-lease", daemon=True)
        keeper.start()
        try:
            result = run.run()
        finally:
            done.set()
            keeper.join()
        if run.handing_over and not self.stopping and not result.stopped:
            raise HandOver(job.stream)
        return result

    def _fail(self, job: Job, receipt: str, receives: int, exc: Exception) -> None:
        s = self.settings
        reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:1000]
        final = receives >= s.max_receives
        self.jobs_failed += 1
        if final:
            observer().stream_failed()
            observer().flush()
        log.error(
            "job failed" + (": dead-lettered" if final else ": will retry"),
            extra={"shard": s.shard, "receives": receives, "error": reason},
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
            log.exception("could not record the failure")
        delay = 0 if final else min(s.retry_delay_cap, 2**receives)
        self._release(receipt, delay=delay)

    def _hand_back(self, message: dict[str, Any]) -> None:
        """Requeue a job this worker was stopped in (see :func:`vqa.worker.heartbeat.hand_back`)."""
        hand_back(self.clients.sqs, self.settings.queue_url, message)

    def _release(self, receipt: str, *, delay: int) -> None:
        """Make the message visible again after ``delay`` seconds (0: now)."""
        release(self.clients.sqs, self.settings.queue_url, receipt, delay=delay)
        self._retry_due = max(self._retry_due, time.monotonic() + delay)


def _EXPECTED_ERRORS() -> tuple[type[BaseException], ...]:
    from vqa.errors import VqaError

    return (VqaError,)
