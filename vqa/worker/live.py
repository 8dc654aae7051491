"""A live job: follow a live source from its live edge and alert while a defect is still on air.

The worker runs the same loop as ``vqa watch`` (:func:`vqa.watch.watch`: :mod:`vqa.live`'s
follower, the detectors' open-defect events, ``input_loss``) and publishes each event as it
happens through :mod:`vqa.alerts` (idempotent: at most one alert per event). A live source is
never seeked: a job that resumes, on another task or after a hand-over, starts at the live edge.

Stream time stays one timeline for the whole job: each run's events are shifted by the run's
``offset``, the stream time at which it began (the previous run's last media seen plus the
wall-clock time nobody watched). That interval is recorded in the stream status as
*unmonitored* (``unmonitored_<shard>``, :class:`vqa.results.StreamStatus`), like the short holes
the follower reports itself (``stream.gap``), never silently skipped.

What a replacement needs is in the job's checkpoint (``state["live"]``): the offset, the last
media seen (stream and wall time), the defects announced and not yet ended (``open``), the
events being published (``outbox``) and the unmonitored intervals. It is saved before each event
is published and every ``checkpoint_every`` segments. A resumed run first publishes the outbox
(alerts already sent are skipped), then ends each open defect where its worker last saw media
(``"interrupted": true``: nobody saw it end), so every ``started`` alert gets its ``ended``.

Stop requests (the front door's DELETE, read through ``stream_stopped`` after each segment and by
the worker's lease thread while the source is quiet) end the job: the follower ends open defects
at the last media seen and publishes their ``ended`` alerts, and the run returns a result marked
``stopped`` (the loop then deletes the message and records the state ``stopped``).

Stops of the task: on SIGTERM the follower ends open defects at the last media seen (as ``vqa
watch`` does on Ctrl-C), the run checkpoints and the job is handed back; the next run resumes at the
live edge and records the interval in between as unmonitored. Before SQS's 12-hour visibility
ceiling the run stops between two media segments instead and ends nothing: its checkpoint carries
the detectors' state and the HLS follower's position (``carry``, :func:`vqa.watch.watch`), and the
loop sends a continuation message (:func:`hand_over`). The continuation goes on from the next media
segment (not a seek: the window still holds it) with those detectors, on the same timeline and the
same wall clock, as if the run had never stopped: nothing lost or read twice, and a defect on air
across the hand-over, announced or not yet, stays one defect with its true start and end. (A
continuation that comes too late for the window records the skipped media as unmonitored, as any
follower that falls behind does; a live MPEG-TS connection cannot be carried, so it resumes at the
live edge.)
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vqa import alerts
from vqa.defects import Defect
from vqa.events import DefectEvent
from vqa.observability import LiveSegments
from vqa.worker.checkpoints import Checkpoint, CheckpointStore
from vqa.worker.clients import Clients
from vqa.worker.jobs import Job, JobResult, StopRequested, defects_of
from vqa.worker.logs import observer
from vqa.worker.settings import WorkerSettings
from vqa.worker.status import update_shard_status

log = logging.getLogger("vqa.worker")

ARCHITECTURE = "monolith"
#: Publish attempts for one event before the job fails (and is retried from its checkpoint).
PUBLISH_ATTEMPTS = 4


def publish_alerts(
    events: list[DefectEvent], *, job: Job, settings: WorkerSettings, clients: Clients
) -> None:
    """Publish a job's defect events as this shard's alerts (once each: :mod:`vqa.alerts`)."""
    sent = alerts.publish(
        events,
        stream_id=job.stream,
        architecture=ARCHITECTURE,
        source=job.source,
        table=settings.table,
        topic_arn=settings.topic_arn,
        bus_name=settings.bus_name,
        sns=clients.sns,
        events_client=clients.events,
        dynamodb=clients.dynamodb,
    )
    obs = observer()
    obs.defects_started(events)
    obs.alerts_published(sent)


class HandOver(Exception):
    """The job stopped before the visibility ceiling: the loop re-sends it as a continuation."""


@dataclass
class LiveState:
    """A live job's checkpoint (``Checkpoint.state["live"]``); times in stream seconds."""

    offset: float = 0.0
    seen: float = 0.0
    #: Epoch seconds when ``seen`` was the live edge: a replacement measures the gap from it.
    wall: float = 0.0
    open: dict[str, dict[str, Any]] = field(default_factory=dict)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    unmonitored: list[list[float]] = field(default_factory=list)
    segments: int = 0
    #: A hand-over: what the continuation goes on with (the detectors' state and the follower's
    #: position, :func:`vqa.watch.watch`); None otherwise.
    carry: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "carry": self.carry,
            "offset": self.offset,
            "seen": self.seen,
            "wall": self.wall,
            "open": self.open,
            "outbox": self.outbox,
            "unmonitored": self.unmonitored,
            "segments": self.segments,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> LiveState:
        return cls(**{k: doc[k] for k in cls().to_json() if k in doc})


def event_to_json(e: DefectEvent) -> dict[str, Any]:
    return {"phase": e.phase, "kind": e.kind, "start": e.start, "end": e.end, "detail": e.detail}


def event_from_json(doc: dict[str, Any]) -> DefectEvent:
    return DefectEvent(doc["phase"], doc["kind"], doc["start"], doc["end"], dict(doc["detail"]))


def shifted(obj: dict[str, Any], offset: float) -> DefectEvent:
    """A ``defect.*`` object of :func:`vqa.watch.watch` as a :class:`DefectEvent` on the job's
    timeline (its id, ``kind#start``, moves with it)."""
    phase = obj["event"].split(".", 1)[1]
    kind = obj["kind"]
    detail = {
        k: v for k, v in obj.items() if k not in ("event", "kind", "start", "end", "source", "at")
    }
    start = round(float(obj["start"]) + offset, 6)
    end = None if obj.get("end") is None else round(float(obj["end"]) + offset, 6)
    ident = str(detail.get("id", f"{kind}#{obj['start']:.6f}"))
    head, _, at = ident.rpartition("#")
    try:
        detail["id"] = f"{head}#{float(at) + offset:.6f}"
    except ValueError:
        detail["id"] = ident
    return DefectEvent(phase, kind, start, end, detail)


def media_end(seg: Any) -> float:
    """Where a segment's media ends (its nominal ``end`` may lie past a short last segment):
    the later of its last picture's end and its audio's end."""
    ends = []
    if seg.video is not None and len(seg.video):
        ends.append(seg.video.end_time(len(seg.video) - 1))
    if seg.audio is not None:
        ends.append(seg.audio.end)
    return min(max(ends), float(seg.end)) if ends else float(seg.end)


class LiveRun:
    """One run of a live job on this worker, from resume (or start) to end, stop or hand-over."""

    def __init__(
        self,
        job: Job,
        *,
        settings: WorkerSettings,
        clients: Clients,
        checkpoints: CheckpointStore,
        stop: threading.Event,
        handover_due: Callable[[], bool],
        keep_lease: Callable[[], None],
        put_defects: Callable[[list[Defect]], None],
        wall: Callable[[], float] = time.time,
        stream_stopped: Callable[[], bool] = lambda: False,
    ) -> None:
        self.job = job
        self.s = settings
        self.c = clients
        self.checkpoints = checkpoints
        self.stop = stop
        self.handover_due = handover_due
        self.keep_lease = keep_lease
        self.put_defects = put_defects
        self.wall = wall
        self.stream_stopped = stream_stopped
        #: Monitoring of the stream was asked to stop (the front door's DELETE): the run ends
        #: the job rather than handing it back or over. Set here or by the lease thread.
        self.stopped = False
        self.state = LiveState()
        #: Set for a hand-over (by this run before the ceiling, or by the lease thread).
        self._hand_over = threading.Event()
        self.defects = 0
        #: The previous run's last media (stream time, wall time), until this run joins.
        self._prev: tuple[float, float] | None = None
        #: A hand-over's carry that this run goes on from (:attr:`LiveState.carry`).
        self._resume_from: dict[str, Any] | None = None
        #: What the follower knows (stream, position, sequence_end), from vqa.live.
        self.info: dict[str, Any] = {}
        #: Monotonic time of the last segment (the lease thread forces a pending hand-over
        #: through when the source is quiet).
        self.last_segment_at = time.monotonic()

    @property
    def handing_over(self) -> bool:
        return self._hand_over.is_set()

    def request_hand_over(self) -> None:
        """Hand the job over at the next media-segment boundary (unless the stream was stopped:
        nothing continues a stopped stream)."""
        if not self.stopped:
            self._hand_over.set()

    def request_stop(self) -> None:
        """The stream was asked to stop: end what is open at the last media seen, end the job."""
        self.stopped = True
        self._hand_over.clear()
        self.stop.set()

    # -- alerts ----------------------------------------------------------------------------

    def publish(self, events: list[DefectEvent]) -> None:
        """Publish ``events`` (idempotent); a failure is retried a few times, then raised."""
        for attempt in range(PUBLISH_ATTEMPTS):
            try:
                publish_alerts(events, job=self.job, settings=self.s, clients=self.c)
                return
            except Exception:
                if attempt == PUBLISH_ATTEMPTS - 1:
                    raise  # the job fails; its retry publishes the outbox first
                log.warning("alert publish failed: retrying", extra=self._ctx(), exc_info=True)
                time.sleep(0.5 * 2**attempt)

    def _deliver(self, events: list[DefectEvent]) -> None:
        """Checkpoint the outcome first (open set, outbox), then publish, then store defects."""
        st = self.state
        for e in events:
            if e.phase == "started":
                st.open[e.id] = event_to_json(e)
            else:
                st.open.pop(e.id, None)
        st.outbox = [event_to_json(e) for e in events]
        self.save()
        self.publish(events)
        found = defects_of(events)
        if found:
            self.put_defects(found)
            self.defects += len(found)
        st.outbox = []

    # -- checkpoints and status ------------------------------------------------------------

    def save(self) -> None:
        cp = Checkpoint(self.state.segments, {"live": self.state.to_json()}, self.defects)
        self.checkpoints.save(self.job, self.s.shard, self.s.detectors, cp)

    def record_progress(self) -> None:
        """The stream time seen so far, for the front door's GET (the final figure, the same
        quantity, comes when the job ends); at the periodic checkpoints only."""
        update_shard_status(
            self.c.dynamodb,
            self.s.table,
            self.job.stream,
            self.s.shard,
            "running",
            **{f"duration_{self.s.shard}": repr(self.state.seen)},
        )

    def _ctx(self) -> dict[str, Any]:
        return {"stream_id": self.job.stream, "shard": self.s.shard}

    def _record_unmonitored(self, start: float, end: float) -> None:
        if end - start <= 1e-6:
            return
        self.state.unmonitored.append([round(start, 6), round(end, 6)])
        update_shard_status(
            self.c.dynamodb,
            self.s.table,
            self.job.stream,
            self.s.shard,
            "running",
            **{f"unmonitored_{self.s.shard}": self.state.unmonitored},
        )
        log.info(
            "unmonitored interval recorded",
            extra={**self._ctx(), "start": start, "end": end, "seconds": round(end - start, 3)},
        )

    def _resume(self, *, carry: bool = True) -> None:
        """Pick up where a previous run stopped: its outbox, then its hand-over's carry (``carry``
        allowing) or, failing that, its open defects ended and the gap measured at the join."""
        cp = self.checkpoints.load(self.job, self.s.shard, self.s.detectors)
        doc = cp.state.get("live") if cp is not None else None
        now = self.wall()
        if not isinstance(doc, dict):
            self.state = LiveState(wall=now)
            return
        prev = LiveState.from_json(doc)
        self.state = prev
        self.defects = cp.defects_written if cp is not None else 0
        if prev.outbox:
            self.publish([event_from_json(d) for d in prev.outbox])
        if carry and prev.carry is not None:
            # A hand-over: go on from the next media segment, on the same timeline.
            self._resume_from = prev.carry
        else:
            if prev.open:
                self._end_open(prev)
            # Where the new run joins is known once the follower has read the playlist
            # (stream.started): see _join.
            self._prev = (prev.seen, prev.wall)
        self.state.outbox = []
        self.state.carry = None
        self.save()

    def _end_open(self, prev: LiveState) -> None:
        """End what a previous run announced and nobody saw end (``"interrupted": true``)."""
        ends = []
        for d in prev.open.values():
            e = event_from_json(d)
            # Announced once it had lasted its minimum duration: it lasted at least that
            # long, even if the last checkpoint predates the segment that announced it.
            at = max(prev.seen, e.start + max(self._min_duration(e.kind), 0.001))
            lasted = Defect(start=e.start, end=at, kind=e.kind)
            ends.append(DefectEvent.ended(lasted, id=e.id, interrupted=True))
        # The dead task watched at least that far: the unmonitored time starts there.
        prev.seen = max([prev.seen] + [e.end for e in ends if e.end is not None])
        self._deliver(ends)

    def _join(self, started: dict[str, Any]) -> None:
        """The new run's place on the job's timeline, and the unmonitored time before it.

        The first segment read is the live edge: published once it had fully aired, so its media
        began about one target duration before now. The previous run's last media ended at
        ``prev_seen``, seen at wall time ``prev_wall`` (the same publish delay on both sides).
        """
        if self._prev is None:
            return
        prev_seen, prev_wall = self._prev
        self._prev = None
        now = self.wall()
        lead = float(started.get("target_duration") or 0.0)
        # Never before prev_seen: a live edge segment read again is not time travel.
        self.state.offset = round(prev_seen + max(0.0, now - prev_wall - lead), 6)
        self.state.seen, self.state.wall = self.state.offset, now
        self._record_unmonitored(prev_seen, self.state.offset)
        self.save()
        log.info(
            "live job resumed at the live edge",
            extra={
                **self._ctx(),
                "offset": self.state.offset,
                "continuation": self.job.continuation,
            },
        )

    def _min_duration(self, kind: str) -> float:
        from vqa.detectors import create

        try:
            config = create(kind, **self.s.thresholds.get(kind, {})).config
        except Exception:  # input_loss and other source kinds have no detector
            return 0.0
        return float(getattr(config, "min_duration", 0.0))

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> JobResult:
        from vqa.watch import watch

        self._resume()
        st = self.state
        obs = observer()
        segments = LiveSegments(obs, wall=self.wall)

        def on_event(obj: dict[str, Any]) -> None:
            kind = obj["event"]
            if kind == "stream.started":
                segments.joined()
                log.info(
                    "live stream continued" if self._resume_from else "live stream joined",
                    extra={**self._ctx(), "media_sequence": obj.get("media_sequence")},
                )
                self._join(obj)
            elif kind.startswith("defect."):
                self._deliver([shifted(obj, st.offset)])
            elif kind == "stream.gap":
                self._record_unmonitored(st.offset + obj["start"], st.offset + obj["end"])

        def on_segment(seg: Any) -> None:
            st.segments += 1
            st.seen = round(st.offset + media_end(seg), 6)
            obs.bind(stream_id=self.job.stream, segment=seg.index)
            segments.segment(float(seg.start), media_end(seg), self.info.get("sequence_end"))
            st.wall = self.wall()
            self.last_segment_at = time.monotonic()
            self.keep_lease()
            if st.segments % max(1, self.s.checkpoint_every) == 0:
                self.save()
                self.record_progress()
                log.info(
                    "checkpoint",
                    extra={**self._ctx(), "next_index": st.segments, "seen": st.seen},
                )
                obs.flush()  # the metrics of this checkpoint's batch of segments
            if not self.stopped and self.stream_stopped():
                # Asked to stop: this was the last segment; the follower ends what is open
                # at the last media seen, as on SIGTERM, but the job ends with it.
                self.request_stop()
            if self.stopped:
                return
            if self.handover_due():
                self.request_hand_over()
            # Between two media segments of an HLS stream (else any segment will do: nothing
            # is carried, the continuation resumes at the live edge).
            between = self.info.get("position") is not None or "sequence_end" not in self.info
            if self.handing_over and between:
                self.stop.set()

        reason = watch(
            self.job.source,
            emit=on_event,
            detectors=self.s.detectors,
            thresholds=self.s.thresholds,
            segment_seconds=self.job.segment_seconds,
            stop=self.stop,
            clock=self.wall,  # epoch seconds: a continuation's follower goes on on the same clock
            on_segment=on_segment,
            info=self.info,
            hand_over=self._hand_over,
            resume=self._resume_from,
        )
        st.carry = self.info.get("carry") if reason == "handed_over" else None
        st.wall = self.wall()
        self.save()
        if self.stopped:
            log.info("live job stopped on request", extra={**self._ctx(), "seen": st.seen})
            return self._result(stopped=True)
        if reason != "ended":
            if self.handing_over:
                raise HandOver(f"hand-over after {st.segments} segments")
            raise StopRequested(f"stopped at stream time {st.seen:.3f}")
        return self._result()

    def finish_stopped(self) -> JobResult:
        """The stream was asked to stop before this run began: end what an earlier run left
        open where it last saw media, without reading the source again."""
        self._resume(carry=False)
        self.state.wall = self.wall()
        self.save()
        return self._result(stopped=True)

    def _result(self, *, stopped: bool = False) -> JobResult:
        return JobResult(
            stream=self.job.stream,
            segments=self.state.segments,
            defects=self.defects,
            duration=self.state.seen,
            resumed_from=0,
            stopped=stopped,
        )


def hand_over(sqs: Any, queue_url: str, message: dict[str, Any], job: Job) -> None:
    """Re-send a live job as its continuation, then delete the old message (before SQS's
    visibility ceiling ends the lease). A crash in between leaves two messages for the stream:
    the second run resumes from the same checkpoint (alerts already sent are not sent again)."""
    body = json.loads(message["Body"])
    body["continuation"] = job.continuation + 1
    body["live"] = True
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
