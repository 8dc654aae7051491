"""Block corruption: bitstream damage and the pictures it spoils.

FFmpeg's ``blockdetect`` filter measures blockiness from pixels alone; on flipped bytes, dropped
packets and damaged MPEG-TS packets it flagged nothing in our trials, while the decoder knew. This
detector therefore starts from the decoder's own signals, which media conversion records per frame:

- ``corrupt``: the decoder concealed errors in the frame (``AV_FRAME_FLAG_CORRUPT``), or rejected
  the packet before it (the frame out next references damaged data), or a timestamp ran
  backwards in a container that carries real presentation times (MPEG-TS/PS; media conversion
  puts the decode-order times of AVI and of an MP4 without composition offsets back in display
  order, and shows AVI null frames as the repeats they are);
- timestamp gaps: a frame interval longer than ``gap_frames`` cadences (the median of the last 15
  intervals) *followed by the old cadence again* is a dropped packet; a new cadence that holds is a
  variable-frame-rate change, not damage (hence a one-frame look-ahead). Loss leaves a hole of
  whole frames in a *regular* cadence: where the recent intervals already spread by more than
  ``cadence_jitter`` of a frame (old codecs' and captures' own timing), or the hole is no whole
  number of frames, or no cadence is known yet, a long interval is not evidence.

Damage spreads along prediction: a damaged or missing anchor picture (I/P) spoils every picture
until the next keyframe that decodes clean, and the B-pictures shown just before it (they predict
from it), so an interval starts at the first picture after the previous anchor. A damaged
B-picture spoils only B-pictures up to the next clean anchor. A lost picture's type is unknown, so
a gap is treated as a lost anchor (recall first). Intervals closer than ``merge_window`` are one.

An image measure checks the decoder's word where it has none to give (damage baked in upstream,
before encoding): ``blockiness`` is the ratio of luma steps across the 8-pixel coding-block grid to
steps inside blocks (about 1 on camera pictures, well above on block garbage). Graphics -- colour
bars, test cards, slates, text, screen content -- also have edges on the grid and flat insides, so
the ratio alone cannot tell them apart; what separates coding artefacts is that they *appear* in a
shot that had none. A frame counts only when its ratio is at least ``image_threshold`` and
``image_rise`` times the median of the shot's last clean frames (``image_history`` of them at
least; a cut, a change of the 4x4-grid mean luma by ``cut_level``, starts a new shot without a
baseline). A run of ``image_min_frames`` such frames is reported.

Which evidence raised each reported interval is in :meth:`CorruptionDetector.measurements`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vqa.defects import Defect
from vqa.detectors.base import Detector
from vqa.segment import Segment, cadence

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CorruptionConfig:
    gap_frames: float = 1.5  # an interval this many cadences long is a gap (if cadence resumes)
    cadence_jitter: float = 0.25  # fraction of a frame: the spread of a regular cadence
    merge_window: float = 0.5  # seconds: closer intervals are one defect
    image_threshold: float = 2.5  # blockiness ratio for image-only evidence
    image_min_frames: int = 3
    rows: int = 24  # rows sampled (evenly) for the blockiness measure
    image_rise: float = 2.0  # image evidence: blockiness this many times the shot's baseline
    image_history: int = 5  # frames of the same shot that make a baseline
    cut_level: float = 20.0  # luma levels: a coarse-grid mean change this large starts a shot


def blockiness(planes: list[NDArray[np.uint8]], rows: int) -> NDArray[np.float64]:
    """``(n,)`` mean |horizontal step| across the 8-px grid / mean step inside blocks, per frame.

    Sampled on about ``rows`` evenly spaced rows of the full-resolution luma (the grid is lost on
    the thumbnail). About 1 on clean pictures; flat pictures give 1.0.
    """
    out = np.ones(len(planes))
    for i, plane in enumerate(planes):
        w = plane.shape[1] - plane.shape[1] % 8
        if w < 16:
            continue
        step = max(1, plane.shape[0] // rows)
        sample = plane[step // 2 :: step, :w].astype(np.int16)
        steps = np.abs(sample[:, 1:] - sample[:, :-1])
        # steps[:, 8k+7] is the step from column 8k+7 to 8k+8: across a block edge.
        edge = steps[:, 7::8]
        edge_sum, edge_n = float(edge.sum()), edge.size
        inner = (float(steps.sum()) - edge_sum) / max(1, steps.size - edge_n)
        out[i] = (edge_sum / max(1, edge_n) + 0.5) / (inner + 0.5)
    return out


def coarse_means(thumbs: NDArray[np.uint8]) -> NDArray[np.float64]:
    """``(n, 16)`` mean luma of a 4x4 grid of each thumbnail: enough to see a cut."""
    n, h, w = thumbs.shape
    if n == 0 or h < 4 or w < 4:
        return np.zeros((n, 16))
    t = thumbs[:, : h - h % 4, : w - w % 4].astype(np.float64)
    return t.reshape(n, 4, (h - h % 4) // 4, 4, (w - w % 4) // 4).mean(axis=(2, 4)).reshape(n, 16)


# A frame waiting for the next one: [time, key, corrupt, bframe, image_bad, interval before it]
_Frame = list[Any]


class CorruptionDetector(Detector[CorruptionConfig]):
    name = "corruption"
    needs = "video"
    Config = CorruptionConfig

    def reset(self) -> None:
        self._held: _Frame | None = None  # the one-frame look-ahead
        self._deltas: list[float] = []  # recent frame intervals (cadence)
        self._after_anchor: float | None = None  # first frame shown after the last anchor
        self._open: list[Any] | None = None  # [start, until ("key" | "anchor" | "image")]
        self._pending: list[float] | None = None  # a closed interval held for merging
        self._frames = 0
        self._evidence: dict[str, int] = {}
        self._image_run: list[float] = []
        self._nominal = 1.0 / 30.0
        self._shot: list[float] = []  # blockiness of the current shot's recent clean frames
        self._coarse: list[float] | None = None  # the previous frame's coarse grid means
        self._alarms: list[dict[str, Any]] = []  # per emitted defect: which evidence raised it

    # ---- cadence
    def _cadence(self) -> float:
        return cadence(self._deltas, self._nominal)

    def _loss_shaped(self, delta: float, cad: float) -> bool:
        """A lost picture leaves a hole of whole frames in a regular cadence. Old codecs and
        index-timed containers (Cinepak in AVI) space frames irregularly by design: where recent
        intervals already spread over more than ``cadence_jitter`` of the cadence, or the hole is
        no whole number of frames, a long interval is the encoder's timing, not loss; so is one
        before three intervals have shown a cadence."""
        jitter = self.config.cadence_jitter
        if len(self._deltas) < 3 or max(self._deltas) - min(self._deltas) > jitter * cad:
            return False
        frames = delta / cad
        return abs(frames - round(frames)) <= jitter

    # ---- intervals
    def _begin(self, start: float, until: str, out: list[Defect]) -> None:
        if self._open is not None:
            self._open[0] = min(self._open[0], start)
            if until == "key" or self._open[1] == "image":
                self._open[1] = until
            return
        if self._pending is not None:
            if start - self._pending[1] <= self.config.merge_window:
                self._open = [min(self._pending[0], start), until]
                self._pending = None
                return
            out += self._emit()
        self._open = [start, until]

    def _close(self, end: float) -> None:
        if self._open is not None:
            self._pending = [self._open[0], max(end, self._open[0])]
            self._open = None

    def _emit(self) -> list[Defect]:
        if self._pending is None:
            return []
        start, end = self._pending
        self._pending = None
        # The evidence is logged, not reported: with frame-threaded decoding, *which* signal
        # arrives first for a damaged tail can vary run to run, while the interval does not, and
        # both architectures must report exactly the same defect.
        log.debug(
            "corruption %.3f-%.3f: %d frames, evidence %s",
            start,
            end,
            self._frames,
            dict(sorted(self._evidence.items())),
        )
        evidence = sorted(self._evidence)
        self._evidence, self._frames = {}, 0
        if end <= start:
            return []
        self._alarms.append({"start": round(start, 6), "end": round(end, 6), "evidence": evidence})
        return [Defect(start=start, end=end, kind=self.name)]

    def measurements(self) -> dict[str, Any]:
        """Per alarm, the kinds of evidence that raised it (``decoder``, ``timestamp_gap``,
        ``blockiness``). Kept out of the defect record: with frame threads *which* signal comes
        first may vary between runs, the interval does not."""
        return {"alarms": list(self._alarms)}

    def _image_bad(self, ratio: float, coarse: NDArray[np.float64]) -> bool:
        """Blockiness that appears suddenly within a shot. Graphics (bars, test cards, slates,
        text) have edges on the 8-px grid from their first frame: their own baseline is high,
        and a cut to them starts a shot with no baseline."""
        cfg = self.config
        prev = self._coarse
        self._coarse = [float(x) for x in coarse]
        if prev is None or float(np.abs(coarse - np.asarray(prev)).max()) > cfg.cut_level:
            self._shot = []
        base = float(np.median(self._shot)) if len(self._shot) >= cfg.image_history else None
        bad = base is not None and ratio >= cfg.image_threshold and ratio >= cfg.image_rise * base
        if not bad:
            self._shot = [*self._shot[-14:], float(ratio)]
        return bad

    def _note(self, what: str) -> None:
        self._evidence[what] = self._evidence.get(what, 0) + 1

    # ---- one frame, knowing the interval to the next one (None at the end of the stream)
    def _judge(self, f: _Frame, next_delta: float | None, out: list[Defect]) -> None:
        t, key, corrupt, bframe, image_bad, delta = f
        cfg = self.config
        if self._pending is not None and t - self._pending[1] > cfg.merge_window:
            out += self._emit()
        cad = self._cadence()
        gap = (
            delta is not None
            and delta > cfg.gap_frames * cad
            and (next_delta is None or next_delta <= cfg.gap_frames * cad)
            and self._loss_shaped(delta, cad)
        )
        if delta is not None and not gap:
            self._deltas = [*self._deltas[-14:], delta]
        # Where damage to this frame's references would first show: after the last anchor.
        first_affected = self._after_anchor if self._after_anchor is not None else t
        if gap:
            missing_from = t - delta + cad
            self._begin(min(first_affected, missing_from), "key", out)
            self._note("timestamp_gap")
        if corrupt:
            self._begin(t if bframe else first_affected, "anchor" if bframe else "key", out)
            self._note("decoder")
        if self._open is not None:
            until = self._open[1]
            clean = not corrupt and not (gap and not key)
            if clean and (key or (until == "anchor" and not bframe)):
                self._close(t)
            elif until != "image":
                self._frames += 1
        # Image-only evidence: a sustained run of pictures on a block grid.
        if image_bad:
            self._image_run.append(t)
            if len(self._image_run) >= cfg.image_min_frames:
                if self._open is None:
                    self._begin(self._image_run[0], "image", out)
                    self._note("blockiness")
                if self._open is not None and self._open[1] == "image":
                    self._frames += 1
        else:
            self._image_run = []
            if self._open is not None and self._open[1] == "image":
                self._close(t)
        if bframe:
            if self._after_anchor is None:
                self._after_anchor = t
        else:
            self._after_anchor = None

    def process(self, segment: Segment) -> list[Defect]:
        v = segment.video
        if v is None or len(v) == 0:
            return []
        self._nominal = v.frame_duration
        ratios = blockiness(v.planes, self.config.rows)
        coarse = coarse_means(v.thumbs)
        bframes = v.bframe if len(v.bframe) == len(v) else np.zeros(len(v), dtype=np.bool_)
        out: list[Defect] = []
        for i in range(len(v)):
            t = float(v.times[i])
            delta = None if self._held is None else t - self._held[0]
            if self._held is not None:
                self._judge(self._held, delta, out)
            self._held = [
                t,
                bool(v.key[i]),
                bool(v.corrupt[i]),
                bool(bframes[i]),
                self._image_bad(float(ratios[i]), coarse[i]),
                delta,
            ]
        return out

    def flush(self) -> list[Defect]:
        out: list[Defect] = []
        end = 0.0
        if self._held is not None:
            self._judge(self._held, None, out)
            end = self._held[0] + self._cadence()
            self._held = None
        self._close(end)
        return out + self._emit()

    def open_start(self) -> float | None:
        if self._pending is not None:
            # Closed and held for merging: its start is final, only its end may still grow.
            return self._pending[0] if self._pending[1] > self._pending[0] else None
        if self._open is None:
            return None
        # The start can still move back to the first picture after the last anchor; once that
        # is not earlier than the start (or an anchor was judged since), it is final.
        after = self._after_anchor
        return self._open[0] if after is None or after >= self._open[0] else None

    def get_state(self) -> dict[str, Any]:
        return {
            "held": self._held,
            "deltas": self._deltas,
            "after_anchor": self._after_anchor,
            "open": self._open,
            "pending": self._pending,
            "frames": self._frames,
            "evidence": self._evidence,
            "image_run": self._image_run,
            "nominal": self._nominal,
            "shot": self._shot,
            "coarse": self._coarse,
            "alarms": self._alarms,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._held = None if state["held"] is None else list(state["held"])
        self._deltas = list(state["deltas"])
        self._after_anchor = state["after_anchor"]
        self._open = None if state["open"] is None else list(state["open"])
        self._pending = None if state["pending"] is None else list(state["pending"])
        self._frames = state["frames"]
        self._evidence = dict(state["evidence"])
        self._image_run = list(state["image_run"])
        self._nominal = state["nominal"]
        self._shot = list(state["shot"])
        self._coarse = None if state["coarse"] is None else list(state["coarse"])
        self._alarms = [dict(a) for a in state["alarms"]]
