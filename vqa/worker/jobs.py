"""A job and its run: decode the source once, run the detector group, checkpoint as it goes."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from vqa.defects import Defect
from vqa.events import DefectEvent
from vqa.worker.checkpoints import Checkpoint

#: URL path endings of a live source (HLS playlist, MPEG-TS over HTTP): :mod:`vqa.worker.live`.
LIVE_SUFFIXES = (".m3u8", ".m3u", ".ts")


class StopRequested(Exception):
    """Raised inside a job when the worker was asked to stop: the job is handed back, not failed."""


@dataclass(frozen=True)
class Job:
    """A stream request as the orchestrator queued it for one shard."""

    stream: str
    source: str
    shard: str
    segment_seconds: float = 1.0
    #: Followed live (from the live edge, never seeked) rather than decoded as a file.
    live: bool = False
    #: How many continuation hand-overs came before this message (24/7 jobs: vqa.worker.live).
    continuation: int = 0
    #: The detectors of this shard the request asked for (None: all the shard runs) and the
    #: request's threshold overrides for them (the front door's POST, via the orchestrator).
    detectors: tuple[str, ...] | None = None
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def parse(cls, body: str, *, segment_seconds: float = 1.0) -> Job:
        doc = json.loads(body)
        if not isinstance(doc, dict) or not doc.get("stream") or not doc.get("source"):
            raise ValueError("job message needs 'stream' and 'source'")
        source = str(doc["source"])
        return cls(
            stream=str(doc["stream"]),
            source=source,
            shard=str(doc.get("shard", "")),
            segment_seconds=float(doc.get("segment_seconds", segment_seconds)),
            live=bool(doc.get("live", is_live(source))),
            continuation=int(doc.get("continuation", 0)),
            detectors=tuple(doc["detectors"]) if doc.get("detectors") else None,
            thresholds=dict(doc.get("thresholds") or {}),
        )


def is_live(source: str) -> bool:
    """An HLS playlist or an MPEG-TS over HTTP(S): a stream to follow, not a file to seek."""
    url = urlparse(source)
    return url.scheme in ("http", "https") and url.path.lower().endswith(LIVE_SUFFIXES)


def defects_of(events: Sequence[DefectEvent]) -> list[Defect]:
    """The finished defects among ``events``: each ``ended`` one that was not retracted."""
    out = []
    for e in events:
        if e.phase != "ended" or e.end is None or e.detail.get("retracted"):
            continue
        detail = {k: v for k, v in e.detail.items() if k != "id"}
        out.append(Defect(start=e.start, end=e.end, kind=e.kind, detail=detail))
    return out


@dataclass
class JobResult:
    stream: str
    segments: int
    defects: int
    duration: float
    resumed_from: int
    skipped: dict[str, str] = field(default_factory=dict)
    #: Monitoring was asked to stop (the front door's DELETE): the job ended there.
    stopped: bool = False


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
    emit_events: Callable[[list[DefectEvent]], None] | None = None,
    thresholds: Mapping[str, Mapping[str, Any]] | None = None,
    checkpoint: Checkpoint | None = None,
    save_checkpoint: Callable[[Checkpoint], None] | None = None,
    checkpoint_every: int = 10,
    after_segment: Callable[[int], None] | None = None,
    heartbeat: Callable[[], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    resume: str = "seek",
    stream_stopped: Callable[[], bool] = lambda: False,
) -> JobResult:
    """Decode ``job.source`` once and run the detector group over it, from ``checkpoint`` on.

    ``emit`` receives the defects each segment finished (and those ``flush`` closes at the end),
    then ``emit_events`` the segment's ``started`` / ``ended`` events (:mod:`vqa.events`; the
    alerts); ``thresholds`` are the detectors' overrides (``VQA_THRESHOLDS``).
    ``save_checkpoint`` is called every ``checkpoint_every`` segments, and when ``should_stop``
    turns true after a segment, in which case :class:`StopRequested` is raised. ``heartbeat`` is
    called after every decoded segment, ``after_segment`` after every analysed one.
    ``stream_stopped`` (monitoring of the stream was asked to stop) is asked before each
    segment is analysed: when true the job ends there, as at the end of the source (open
    defects end at the last media seen), with ``stopped`` set in the result.

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
    dset = DetectorSet(list(detectors), **{k: dict(v) for k, v in (thresholds or {}).items()})
    start = 0
    written = 0
    if checkpoint is not None:
        dset.set_state(checkpoint.state)
        start = checkpoint.next_index
        written = checkpoint.defects_written
    info: dict[str, Any] = {}
    segments = 0
    stopped_at: float | None = None
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
            if stream_stopped():
                stopped_at = float(seg.start)
                break
            events = dset.process_events(seg)
            found = defects_of(events)
            if found:
                emit(found)
                written += len(found)
            if events and emit_events is not None:
                emit_events(events)
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
    events = dset.flush_events()
    final = defects_of(events)
    if final:
        emit(final)
        written += len(final)
    if events and emit_events is not None:
        emit_events(events)
    skipped = dict(getattr(dset, "skipped", {}) or {})
    return JobResult(
        stream=job.stream,
        segments=segments,
        defects=written,
        duration=float(info.get("duration", 0.0)) if stopped_at is None else stopped_at,
        resumed_from=start,
        skipped=skipped,
        stopped=stopped_at is not None,
    )
