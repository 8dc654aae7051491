"""Loudness: ITU-R BS.1770-4 / EBU R128 / ATSC A/85 programme loudness and true peak.

What is measured (BS.1770-4, EBU Tech 3341 "EBU mode" meter, EBU Tech 3342 loudness range):

- K-weighting: a high shelf (+4 dB above ~1.7 kHz, the head's acoustic effect) then the RLB
  high-pass (~38 Hz). Coefficients are derived for any sample rate with the bilinear transform
  from the analogue prototypes libebur128 fitted to BS.1770's 48 kHz table (f0, gain, Q below);
  at 48 kHz they reproduce the table to 1e-9.
- Channel weights (BS.1770-4 Table 3): L, R, C 1.0; Ls, Rs 1.41 (+1.5 dB); LFE excluded. The
  segment's PCM carries no layout, so FFmpeg's default layout for the channel count is assumed
  (6 channels = FL FR FC LFE BL BR).
- Loudness of a block: ``-0.691 + 10 log10(sum_c G_c * mean(y_c^2))`` LUFS (BS.1770-4 eq. 2).
  Momentary: 400 ms blocks, short-term: 3 s, both every 100 ms (Tech 3341; 75 % overlap).
- Integrated (BS.1770-4 eq. 5-7): the momentary blocks gated at -70 LUFS (absolute), then at
  10 LU below the mean of those (relative). Loudness range (Tech 3342): short-term values gated at
  -70 LUFS and 20 LU below their mean; LRA = 95th - 10th percentile. Both keep their blocks in a
  histogram at 0.01 LU resolution (as libebur128's histogram mode, at 10x its resolution): the
  state stays bounded however long a stream is monitored, and the mean is off by at most 0.005 LU.
- True peak (BS.1770-4 Annex 2): 4x oversampling with the Annex's 48-tap polyphase FIR, the
  largest absolute interpolated value, in dBTP. The Annex asks for 4x at 48 kHz and less above
  96 kHz; here 4x is used at every rate (more points never hide a peak).

Why numpy and not FFmpeg's ``ebur128`` filter through ``av.filter.Graph``: the filter would run
at native speed, but its state (filter memories, gating history) cannot be saved and restored,
and the distributed architecture runs each segment in a fresh Lambda from JSON state. The
biquads are computed exactly without a per-sample loop (:class:`_Biquad`: 32-sample blocks as one
matrix product, the block-to-block state recurrence as a doubling scan); their state is two
numbers per channel and biquad, and the result equals a direct-form recursion to ~1e-11. True
peak interpolates only the 1024-sample chunks whose sample peak, times the interpolator's largest
gain (2.02), could reach the level that matters (the running maximum or the ceiling), which is
exact. At 48 kHz stereo the detector costs about 5 ms of CPU per stream-second, 1.5 % of a
1080p30 decode's (``python -m benchmarks.bench_loudness``).

Defects (one kind, ``loudness``; ``reason`` says which):

- ``too_loud``: short-term loudness above target + ``loud_lu`` for at least ``loud_hold``
  seconds. 5 LU is EBU R128 s1's maximum short-term loudness (-18 LUFS at the -23 target): the
  level at which R128 calls a loud break (an advertisement) non-compliant; 5 s of hold lets a
  single explosion or a goal cheer pass (a 3 s window already smooths it) and catches a loud break,
  a wrong gain or an unnormalised feed.
- ``too_quiet``: short-term loudness more than ``quiet_lu`` below target for at least
  ``quiet_hold`` seconds. 20 LU is Tech 3342's relative gate: programme material more than 20 LU
  below the programme's level is not part of its loudness range at all, so a feed that stays
  there is a fault (a dropped mix, a -20 dB pad, a wrong channel), not quiet drama; 10 s of hold
  lets programme pauses, room tone and quiet scenes pass. Below -70 LUFS (BS.1770's absolute
  gate: digital silence or nearly) is ``silence``'s job, so such values end a too-quiet run.
- ``true_peak``: true peak above the profile's ceiling (R128: -1 dBTP; A/85: -2 dBTP). Over-peak
  instants closer than ``peak_bridge`` (one momentary block) are one defect; no hold (a ceiling).

Short-term values are compared at 0.1 LU, the resolution meters display and Tech 3341's accuracy
(so EBU R 68 line-up tone, -18 dBFS = -18.0 LUFS, sits exactly *at* R128's short-term maximum
and is not an alarm). Profile ``atsc_a85`` moves the target to -24 LKFS and the ceiling to
-2 dBTP (A/85 RP); the same tone is then 6 LU over and alarms, as it should under A/85, whose
line-up tone is -20 dBFS.

Boundaries: a short-term value is stamped at the middle of its 3 s window, and covers the 100 ms
hop ending there; the first value after the start also covers the window's first half, the last
one the rest of the media. A level step well past a limit is located within half a window
(1.5 s; a step that only just crosses it, later, by up to a further hop); true-peak boundaries
are the over-ceiling instants (to 1/4 sample).

Not run unless named (``--detectors ...,loudness``, the stacks' ``detectors``): a broadcast
target is a policy choice, and programme normalised for the web (-14 or -16 LUFS) would alarm
all the time under R128.

``measurements()`` gives the stream's integrated loudness, LRA, maximum true peak, maximum
momentary and short-term loudness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vqa.defects import Defect
from vqa.detectors.base import Detector
from vqa.errors import ConfigError
from vqa.events import DefectEvent, EventTracker, sort_events
from vqa.segment import Segment

#: profile -> (target loudness LUFS/LKFS, maximum true peak dBTP).
PROFILES: dict[str, tuple[float, float]] = {
    "ebu_r128": (-23.0, -1.0),  # EBU R 128: -23 LUFS, max true peak -1 dBTP
    "atsc_a85": (-24.0, -2.0),  # ATSC A/85:2013 RP: -24 LKFS, true peak -2 dBTP
}

#: BS.1770-4 absolute gate (LUFS): below this a block is silence, for gating and for us.
ABSOLUTE_GATE = -70.0
#: Relative gates: integrated (BS.1770-4) and loudness range (Tech 3342), in LU.
INTEGRATED_GATE = -10.0
LRA_GATE = -20.0
LRA_PERCENTILES = (0.10, 0.95)
#: Momentary and short-term windows in 100 ms sub-blocks (Tech 3341).
HOP_SECONDS = 0.1
MOMENTARY_HOPS = 4
SHORT_TERM_HOPS = 30
#: Histogram resolution of the gated block loudness (LU) and its top bin (LUFS), far above
#: anything real (a full-scale square wave on five weighted channels is below +10 LUFS).
BIN_LU = 0.01
TOP_LUFS = 30.0
#: Largest hole or overlap (s) in the audio timeline that measurement runs across: less than
#: one 100 ms hop changes no window noticeably; a longer hole restarts the windows.
MAX_JITTER = HOP_SECONDS
#: Resolution at which short-term values are compared with the limits (Tech 3341 display).
COMPARE_LU = 0.1

# K-weighting analogue prototypes (libebur128, fitted to BS.1770-4 Table 1/2 at 48 kHz).
_SHELF_F0, _SHELF_GAIN_DB, _SHELF_Q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
_SHELF_VB_EXP = 0.4996667741545416
_HP_F0, _HP_Q = 38.13547087602444, 0.5003270373238773

#: BS.1770-4 Annex 2 interpolation filter, phases 0 and 1 (phases 3 and 2 are them reversed).
_TP_PHASES01 = (
    (0.0017089843750, 0.0109863281250, -0.0196533203125, 0.0332031250000, -0.0594482421875,
     0.1373291015625, 0.9721679687500, -0.1022949218750, 0.0476074218750, -0.0266113281250,
     0.0148925781250, -0.0083007812500),
    (-0.0291748046875, 0.0292968750000, -0.0517578125000, 0.0891113281250, -0.1665039062500,
     0.4650878906250, 0.7797851562500, -0.2003173828125, 0.1015625000000, -0.0582275390625,
     0.0330810546875, -0.0189208984375),
)  # fmt: skip
_TP_TAPS = 12
#: Samples per true-peak screening chunk: chunks whose sample peak cannot reach the level of
#: interest after interpolation (sample peak x the filter's largest phase gain) are skipped.
_TP_CHUNK = 1024


Coefficients = tuple[float, float, float]


def k_weighting(rate: int) -> tuple[Coefficients, Coefficients, Coefficients, Coefficients]:
    """``(shelf_b, shelf_a, highpass_b, highpass_a)``: the two K-weighting biquads at ``rate``.

    Bilinear transform of the analogue shelf and high-pass (with pre-warping, ``K = tan(pi f0 /
    fs)``), as libebur128 and pyloudnorm derive them for any rate.
    """
    k = math.tan(math.pi * _SHELF_F0 / rate)
    vh = 10.0 ** (_SHELF_GAIN_DB / 20.0)
    vb = vh**_SHELF_VB_EXP
    a0 = 1.0 + k / _SHELF_Q + k * k
    shelf_b = ((vh + vb * k / _SHELF_Q + k * k) / a0, 2.0 * (k * k - vh) / a0,
               (vh - vb * k / _SHELF_Q + k * k) / a0)  # fmt: skip
    shelf_a = (1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / _SHELF_Q + k * k) / a0)
    k = math.tan(math.pi * _HP_F0 / rate)
    a0 = 1.0 + k / _HP_Q + k * k
    hp_b = (1.0, -2.0, 1.0)
    hp_a = (1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / _HP_Q + k * k) / a0)
    return shelf_b, shelf_a, hp_b, hp_a


#: Samples per block of the block state-space filter (a matrix product per block).
_BLOCK = 32


@dataclass(frozen=True)
class _Biquad:
    """One biquad run a block at a time, exactly, without a per-sample loop.

    Transposed direct form II as a state space: ``y = D x + C s``, ``s' = A s + B x`` (state
    ``s``: 2 numbers). For a block of ``L`` inputs starting in state ``s0``,
    ``y = T x + O s0`` and the end state is ``A^L s0 + R x``, where ``T`` is the impulse
    response's Toeplitz matrix, ``O`` the rows ``C A^k`` and ``R`` the columns ``A^(L-1-j) B``.
    The zero-state parts of every block are one matrix product; the states entering the blocks
    follow ``s[q+1] = A^L s[q] + R x_q``, a linear recurrence solved by a doubling scan in
    log2(blocks) steps. Row-vector convention throughout (states are ``(..., 2)``).
    """

    tr: NDArray[np.float64]  # (L, L + 2): [T^T | R^T]
    ot: NDArray[np.float64]  # (2, L): O^T
    at: NDArray[np.float64]  # (L + 1, 2, 2): (A^r)^T for r = 0..L

    @classmethod
    def design(cls, b: Coefficients, a: Coefficients) -> _Biquad:
        b0, b1, b2 = b
        _, a1, a2 = a
        amat = np.array([[-a1, 1.0], [-a2, 0.0]])
        bvec = np.array([b1 - a1 * b0, b2 - a2 * b0])
        powers = [np.eye(2)]
        for _ in range(_BLOCK):
            powers.append(amat @ powers[-1])
        h = np.array([b0] + [float(powers[m - 1][0] @ bvec) for m in range(1, _BLOCK)])
        k, j = np.indices((_BLOCK, _BLOCK))
        t = np.where(k >= j, h[np.clip(k - j, 0, None)], 0.0)
        r = np.stack([powers[_BLOCK - 1 - i] @ bvec for i in range(_BLOCK)], axis=1)  # (2, L)
        o = np.stack([p[0] for p in powers[:_BLOCK]])  # (L, 2): C A^k with C = (1, 0)
        return cls(
            tr=np.ascontiguousarray(np.concatenate([t.T, r.T], axis=1)),
            ot=np.ascontiguousarray(o.T),
            at=np.stack([p.T for p in powers]),
        )

    def run(
        self, x: NDArray[np.float64], s0: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Filter ``x`` ``(channels, n)`` from state ``s0`` ``(channels, 2)``: ``(y, state)``."""
        c, n = x.shape
        q, rest = divmod(n, _BLOCK)
        y = np.empty_like(x)
        state = s0
        if q:
            z = _matmul(x[:, : q * _BLOCK].reshape(c * q, _BLOCK), self.tr).reshape(
                c, q, _BLOCK + 2
            )
            ends = z[..., _BLOCK:].copy()  # zero-state end states, then the true ones
            ends[:, 0] += s0 @ self.at[_BLOCK]
            step, d = self.at[_BLOCK], 1
            while d < q:  # inclusive scan: ends[i] += (A^L)^d ends[i - d]
                ends[:, d:] += ends[:, :-d] @ step
                step, d = step @ step, 2 * d
            entering = np.concatenate([s0[:, None, :], ends[:, :-1]], axis=1)
            out = y[:, : q * _BLOCK].reshape(c, q, _BLOCK)
            np.multiply(entering[..., :1], self.ot[0], out=out)  # O s, without a K=2 product
            out += entering[..., 1:] * self.ot[1]
            out += z[..., :_BLOCK]
            state = ends[:, -1]
        if rest:
            xr = x[:, q * _BLOCK :]
            y[:, q * _BLOCK :] = xr @ self.tr[:rest, :rest] + state @ self.ot[:, :rest]
            # A^(rest-1-j) B is column L - rest + j of R.
            state = state @ self.at[rest] + xr @ self.tr[_BLOCK - rest :, _BLOCK:]
        return y, state


#: Rows per BLAS call. OpenBLAS spreads a product over threads above 262,144 multiply-adds
#: (interface/gemm.c: 65536 x GEMM_MULTITHREAD_THRESHOLD 4); for these small products the threads
#: cost 8x the work (measured: 15 ms instead of 1.9 ms per stream-second on 2 busy cores).
_BLAS_ROWS = 240


def _matmul(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """``a @ b`` (2-D) in row slices small enough for BLAS to stay on this thread."""
    out = np.empty((a.shape[0], b.shape[1]))
    for i in range(0, a.shape[0], _BLAS_ROWS):
        np.matmul(a[i : i + _BLAS_ROWS], b, out=out[i : i + _BLAS_ROWS])
    return out


@lru_cache(maxsize=8)
def _k_sections(rate: int) -> tuple[_Biquad, _Biquad]:
    shelf_b, shelf_a, hp_b, hp_a = k_weighting(rate)
    return _Biquad.design(shelf_b, shelf_a), _Biquad.design(hp_b, hp_a)


def k_filter(
    x: NDArray[np.float64], state: NDArray[np.float64], rate: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """K-weight ``x`` ``(channels, n)``; ``state`` ``(2, channels, 2)`` is both biquads' state.
    Returns ``(y, new state)``."""
    shelf, hp = _k_sections(rate)
    y, s1 = shelf.run(x, state[0])
    y, s2 = hp.run(y, state[1])
    return y, np.stack([s1, s2])


def channel_weights(channels: int) -> NDArray[np.float64]:
    """BS.1770-4 weights for FFmpeg's default layout of ``channels`` channels."""
    layouts = {
        1: [1.0],
        2: [1.0, 1.0],
        3: [1.0, 1.0, 1.0],  # 2.1 is FL FR LFE in FFmpeg, 3.0 FL FR FC: take 3.0
        4: [1.0, 1.0, 1.0, 1.41],  # 4.0: FL FR FC BC
        5: [1.0, 1.0, 1.0, 1.41, 1.41],  # 5.0: FL FR FC BL BR
        6: [1.0, 1.0, 1.0, 0.0, 1.41, 1.41],  # 5.1: FL FR FC LFE BL BR
        7: [1.0, 1.0, 1.0, 0.0, 1.41, 1.41, 1.41],  # 6.1: ... BC
        8: [1.0, 1.0, 1.0, 0.0, 1.41, 1.41, 1.41, 1.41],  # 7.1: ... SL SR
    }
    return np.asarray(layouts.get(channels, [1.0] * channels), dtype=np.float64)


@lru_cache(maxsize=1)
def _tp_matrix() -> NDArray[np.float32]:
    """``(12, 4)``: column p applied to a window of 12 samples (oldest first) gives phase p."""
    p0, p1 = (np.asarray(p) for p in _TP_PHASES01)
    phases = np.stack([p0, p1, p1[::-1], p0[::-1]])  # (4, 12), tap k multiplies x[n - k]
    return np.ascontiguousarray(phases[:, ::-1].T, dtype=np.float32)


#: Largest gain of any phase for a full-scale input (sum of |taps|): a bound on interpolation.
_TP_GAIN = float(np.abs(_tp_matrix()).sum(axis=0).max())


def _abs_max(a: NDArray[np.float32], *, axis: tuple[int, ...]) -> NDArray[np.float32]:
    """``abs(a).max(axis)`` without the copy ``abs`` makes."""
    out: NDArray[np.float32] = np.maximum(a.max(axis=axis), -a.min(axis=axis))
    return out


def lufs(energy: float | NDArray[np.float64]) -> Any:
    """BS.1770-4 eq. 2: weighted mean square -> LUFS (``-inf`` for 0)."""
    with np.errstate(divide="ignore"):
        return -0.691 + 10.0 * np.log10(energy)


def _energy(loudness: NDArray[np.float64]) -> NDArray[np.float64]:
    out: NDArray[np.float64] = 10.0 ** ((loudness + 0.691) / 10.0)
    return out


class _Histogram:
    """Counts of block loudness at 0.01 LU from the absolute gate up: bounded gating state."""

    def __init__(self, counts: dict[int, int] | None = None) -> None:
        self.counts: dict[int, int] = dict(counts or {})

    def add(self, loudness: NDArray[np.float64]) -> None:
        kept = loudness[loudness >= ABSOLUTE_GATE]
        if kept.size == 0:
            return
        top = round((TOP_LUFS - ABSOLUTE_GATE) / BIN_LU) - 1
        bins = np.minimum(((kept - ABSOLUTE_GATE) / BIN_LU).astype(np.int64), top)
        ids, n = np.unique(bins, return_counts=True)
        for i, c in zip(ids.tolist(), n.tolist(), strict=True):
            self.counts[i] = self.counts.get(i, 0) + c

    def arrays(self) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        """Bin-centre loudness and counts, ascending."""
        ids = np.asarray(sorted(self.counts), dtype=np.int64)
        counts = np.asarray([self.counts[i] for i in ids.tolist()], dtype=np.int64)
        level = (ABSOLUTE_GATE + (ids + 0.5) * BIN_LU).astype(np.float64)
        return level, counts

    def relative_gated(self, gate_lu: float) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        """Bins at or above ``gate_lu`` below the (absolute-gated) mean energy."""
        level, counts = self.arrays()
        if counts.sum() == 0:
            return level, counts
        mean = float((_energy(level) * counts).sum() / counts.sum())
        keep = level >= lufs(mean) + gate_lu
        return level[keep], counts[keep]

    def get_state(self) -> list[list[int]]:
        return [[i, self.counts[i]] for i in sorted(self.counts)]


def integrated_loudness(hist: _Histogram) -> float | None:
    """BS.1770-4 gated loudness of the momentary blocks in ``hist`` (None: all below -70)."""
    level, counts = hist.relative_gated(INTEGRATED_GATE)
    if counts.sum() == 0:
        return None
    return float(lufs(float((_energy(level) * counts).sum() / counts.sum())))


def loudness_range(hist: _Histogram) -> float | None:
    """EBU Tech 3342 LRA of the short-term values in ``hist`` (percentiles as libebur128)."""
    level, counts = hist.relative_gated(LRA_GATE)
    n = int(counts.sum())
    if n == 0:
        return None
    cum = np.cumsum(counts)
    lo, hi = (int((n - 1) * p + 0.5) for p in LRA_PERCENTILES)
    return float(level[np.searchsorted(cum, hi + 1)] - level[np.searchsorted(cum, lo + 1)])


@dataclass(frozen=True)
class LoudnessConfig:
    profile: str = "ebu_r128"  # or "atsc_a85": target and true-peak ceiling (PROFILES)
    loud_lu: float = 5.0  # too loud: short-term above target + this (R128 s1 max short-term)
    quiet_lu: float = 20.0  # too quiet: short-term below target - this (Tech 3342 relative gate)
    loud_hold: float = 5.0  # seconds too loud before it is a defect
    quiet_hold: float = 10.0  # seconds too quiet before it is a defect (pauses, quiet scenes)
    peak_bridge: float = 0.4  # seconds between over-ceiling instants that still join one defect


class LoudnessDetector(Detector[LoudnessConfig]):
    name = "loudness"
    needs = "audio"
    Config = LoudnessConfig
    # Compliance with a broadcast target is a policy a user opts into (web platforms normalise
    # to -14 or -16 LUFS, where every R128 check would alarm): run when named.
    default = False

    def reset(self) -> None:
        if self.config.profile not in PROFILES:
            raise ConfigError(
                f"loudness.profile: expected one of {', '.join(PROFILES)}, "
                f"got {self.config.profile!r}"
            )
        self._rate = 0
        self._channels = 0
        self._anchor = 0.0  # stream time of the first sample since the last discontinuity
        self._seen = 0.0  # end of the audio seen
        self._hops = 0  # completed 100 ms sub-blocks since the anchor
        self._acc = 0.0  # weighted sum of squares of the partial sub-block
        self._fill = 0  # samples in the partial sub-block
        self._ring: list[float] = []  # weighted energy sums of the last 29 sub-blocks
        self._kstate = np.zeros((2, 0, 2))  # K-weighting biquads' states
        self._tph = np.zeros((0, _TP_TAPS - 1))
        self._momentary = _Histogram()
        self._short = _Histogram()
        self._tp_max = 0.0  # linear
        self._max_m = -math.inf
        self._max_s = -math.inf
        # The open level run: reason, start, end, extreme short-term level.
        self._run: dict[str, Any] | None = None
        # The open over-peak cluster: start, end (last over instant), peak (linear).
        self._peak: dict[str, Any] | None = None
        self._peak_events = EventTracker(self.name)

    # ---- limits ----------------------------------------------------------------------------

    @property
    def target(self) -> float:
        return PROFILES[self.config.profile][0]

    @property
    def ceiling(self) -> float:
        """The true-peak ceiling in dBTP."""
        return PROFILES[self.config.profile][1]

    def _classify(self, level: float) -> str | None:
        if not level >= ABSOLUTE_GATE:
            return None  # silence (or nearly): the silence detector's
        shown = round(level / COMPARE_LU) * COMPARE_LU
        if shown > self.target + self.config.loud_lu + 1e-9:
            return "too_loud"
        if shown < self.target - self.config.quiet_lu - 1e-9:
            return "too_quiet"
        return None

    def _hold(self, reason: str) -> float:
        return self.config.loud_hold if reason == "too_loud" else self.config.quiet_hold

    # ---- streaming -------------------------------------------------------------------------

    def process(self, segment: Segment) -> list[Defect]:
        a = segment.audio
        if a is None or a.n == 0:
            return []
        out: list[Defect] = []
        channels = int(a.samples.shape[0])
        jump = a.start - self._seen
        if a.rate != self._rate or channels != self._channels or abs(jump) > MAX_JITTER:
            # First audio, a hole in the timeline or a new format: measurement restarts there
            # (filters, windows); the stream's gating histograms and maxima carry on.
            out += self._close_run(self._seen)
            out += self._close_peak()
            self._restart(a.start, a.rate, channels)
        else:
            # A few samples missing or repeated between packets (MP3 frames): the measurement
            # runs on, its clock moved to the samples' own times.
            self._anchor += jump
        out += self._true_peak(a.samples.astype(np.float32, copy=False), a.start)
        y, self._kstate = k_filter(a.samples.astype(np.float64), self._kstate, self._rate)
        np.square(y, out=y)
        out += self._levels(channel_weights(channels) @ y)
        self._seen = a.end
        return out

    @property
    def _sub(self) -> int:
        return round(self._rate * HOP_SECONDS)

    def _restart(self, start: float, rate: int, channels: int) -> None:
        self._rate, self._channels, self._anchor = rate, channels, start
        self._hops, self._acc, self._fill, self._ring = 0, 0.0, 0, []
        self._kstate = np.zeros((2, channels, 2))
        self._tph = np.zeros((channels, _TP_TAPS - 1))

    def _levels(self, e: NDArray[np.float64]) -> list[Defect]:
        """Consume weighted squared K-weighted samples ``e`` (n,); judge each new short-term."""
        sub = self._sub
        first = sub - self._fill  # samples that complete the partial sub-block
        if e.size < first:
            self._acc += float(e.sum())
            self._fill += e.size
            return []
        n_full = (e.size - first) // sub
        sums = np.empty(1 + n_full)
        sums[0] = self._acc + float(e[:first].sum())
        body = e[first : first + n_full * sub]
        sums[1:] = body.reshape(n_full, sub).sum(axis=1)
        tail = e[first + n_full * sub :]
        self._acc, self._fill = float(tail.sum()), int(tail.size)
        # Window sums over the ring of previous sub-blocks plus the new ones.
        hist = np.concatenate([np.asarray(self._ring, dtype=np.float64), sums])
        cum = np.concatenate([[0.0], np.cumsum(hist)])
        n_prev = len(self._ring)
        ends = np.arange(n_prev + 1, n_prev + 1 + sums.size)  # window ends, in cum indices
        index = self._hops + np.arange(sums.size)  # global index of each new sub-block
        self._hops += sums.size
        self._ring = hist[-(SHORT_TERM_HOPS - 1) :].tolist()

        ok_m = index >= MOMENTARY_HOPS - 1
        if ok_m.any():
            e_m = (cum[ends[ok_m]] - cum[ends[ok_m] - MOMENTARY_HOPS]) / (MOMENTARY_HOPS * sub)
            m = lufs(np.maximum(e_m, 0.0))
            self._momentary.add(m)
            self._max_m = max(self._max_m, float(m.max()))
        ok_s = index >= SHORT_TERM_HOPS - 1
        if not ok_s.any():
            return []
        e_s = (cum[ends[ok_s]] - cum[ends[ok_s] - SHORT_TERM_HOPS]) / (SHORT_TERM_HOPS * sub)
        s = lufs(np.maximum(e_s, 0.0))
        self._short.add(s)
        self._max_s = max(self._max_s, float(s.max()))
        hop = sub / self._rate
        half = SHORT_TERM_HOPS * hop / 2
        out: list[Defect] = []
        for j, level in zip(index[ok_s].tolist(), s.tolist(), strict=True):
            window_end = self._anchor + (j + 1) * hop
            centre = window_end - half
            # The first value after the start also stands for the first half of its window.
            start = self._anchor if j == SHORT_TERM_HOPS - 1 else centre - hop
            out += self._judge(self._classify(level), level, start, centre)
        return out

    def _judge(self, reason: str | None, level: float, start: float, end: float) -> list[Defect]:
        run = self._run
        if run is not None and run["reason"] == reason:
            run["end"] = end
            pick = max if reason == "too_loud" else min
            run["level"] = pick(run["level"], level)
            return []
        out = self._close_run(start)
        if reason is not None:
            self._run = {"reason": reason, "start": start, "end": end, "level": level}
        return out

    def _close_run(self, end: float | None = None) -> list[Defect]:
        """Close the level run; ``end`` (if later than its last value) extends it, as at the end
        of the media where the last value stands for the rest of its window."""
        run, self._run = self._run, None
        if run is None:
            return []
        stop = max(run["end"], end) if end is not None else run["end"]
        if stop - run["start"] < self._hold(run["reason"]) - 1e-9:
            return []
        detail = {"reason": run["reason"], "level": round(run["level"], 1), "target": self.target}
        return [Defect(start=run["start"], end=stop, kind=self.name, detail=detail)]

    # ---- true peak -------------------------------------------------------------------------

    def _true_peak(self, x: NDArray[np.float32], t0: float) -> list[Defect]:
        """4x oversampled peaks of ``x`` (channels, n) starting at ``t0``; over-ceiling
        instants extend or open the peak cluster."""
        n = x.shape[1]
        ext = np.concatenate([self._tph.astype(np.float32), x], axis=1)  # 11 samples of history
        self._tph = ext[:, -(_TP_TAPS - 1) :].astype(np.float64)
        ceiling = 10.0 ** (self.ceiling / 20.0)
        interest = min(ceiling, self._tp_max)
        # Output row i reads ext[i : i + 12]: chunk c's rows read chunk c and the start of c + 1
        # of `ext`, so the larger peak of the two, times the largest phase gain, bounds them.
        chunks = -(-n // _TP_CHUNK)
        padded = np.zeros((x.shape[0], chunks + 1, _TP_CHUNK), dtype=np.float32)
        padded.reshape(x.shape[0], -1)[:, : ext.shape[1]] = ext
        chunk_peak = _abs_max(padded, axis=(0, 2))
        picked = np.flatnonzero(np.maximum(chunk_peak[:-1], chunk_peak[1:]) * _TP_GAIN > interest)
        if picked.size == 0:
            return self._end_peak(t0 + n / self._rate)
        span = _TP_CHUNK + _TP_TAPS - 1
        flat = padded.reshape(x.shape[0], -1)
        win = flat[:, picked[:, None] * _TP_CHUNK + np.arange(span)]  # (channels, k, span)
        taps = _tp_matrix()  # (12, 4): row j multiplies ext[i + j]
        valid = n - picked[-1] * _TP_CHUNK  # rows past the segment are the next segment's
        phases = []
        for p in range(4):
            acc = taps[0, p] * win[..., :_TP_CHUNK]
            for j in range(1, _TP_TAPS):
                acc += taps[j, p] * win[..., j : j + _TP_CHUNK]
            acc[:, -1, valid:] = 0.0
            phases.append(acc)
        peaks = np.stack([_abs_max(acc, axis=(0, 2)) for acc in phases], axis=1)  # (k, 4)
        self._tp_max = max(self._tp_max, float(peaks.max()))
        hot = np.flatnonzero(peaks.max(axis=1) > ceiling)
        if hot.size == 0:
            return self._end_peak(t0 + n / self._rate)
        # Over-ceiling instants, only in the chunks that have them: (chunk, row, phase).
        tp = np.stack([np.abs(acc[:, hot]).max(axis=0) for acc in phases], axis=2)
        over = np.argwhere(tp > ceiling)
        row = (picked[hot] * _TP_CHUNK)[over[:, 0]] + over[:, 1]  # input index of each row
        out: list[Defect] = []
        if over.size:
            # Row i, phase p interpolates input position i - 6 + p/4 (the taps' centre).
            pos = row - _TP_TAPS // 2 + over[:, 2] / 4.0
            times = t0 + pos / self._rate
            levels = tp[over[:, 0], over[:, 1], over[:, 2]]
            bridge = self.config.peak_bridge
            breaks = np.flatnonzero(np.diff(times) > bridge) + 1
            for g0, g1 in zip(np.r_[0, breaks], np.r_[breaks, times.size], strict=True):
                first, last = float(times[g0]), float(times[g1 - 1])
                top = float(levels[g0:g1].max())
                pk = self._peak
                if pk is not None and first - pk["end"] <= bridge:
                    pk["end"], pk["peak"] = max(pk["end"], last), max(pk["peak"], top)
                    continue
                out += self._close_peak()
                self._peak = {"start": first, "end": last, "peak": top}
        return out + self._end_peak(t0 + n / self._rate)

    def _end_peak(self, seen: float) -> list[Defect]:
        """Close the peak cluster once ``peak_bridge`` has passed without an over."""
        pk = self._peak
        if pk is not None and seen - pk["end"] > self.config.peak_bridge:
            return self._close_peak()
        return []

    def _close_peak(self) -> list[Defect]:
        pk, self._peak = self._peak, None
        if pk is None:
            return []
        end = pk["end"] + 0.25 / self._rate
        detail = {"reason": "true_peak", "level": round(20.0 * math.log10(pk["peak"]), 1),
                  "ceiling": self.ceiling}  # fmt: skip
        return [Defect(start=pk["start"], end=end, kind=self.name, detail=detail)]

    # ---- protocol --------------------------------------------------------------------------

    def flush(self) -> list[Defect]:
        out = self._close_run(self._seen)
        out += self._close_peak()
        return out

    def open_start(self) -> float | None:
        """Start of the level run under way once it has lasted its hold (the true-peak
        cluster under way is :meth:`_peak_open`: the two overlap freely)."""
        run = self._run
        if run is not None and run["end"] - run["start"] >= self._hold(run["reason"]) - 1e-9:
            return float(run["start"])
        return None

    def _peak_open(self) -> float | None:
        return None if self._peak is None else float(self._peak["start"])

    # A level run and an over-peak cluster can be under way at once, and the event tracker
    # follows one defect at a time: each has its own (the level one is ``self.events``).

    def process_events(self, segment: Segment) -> list[DefectEvent]:
        return self._events(self.process(segment), seen=segment.end, live=True)

    def flush_events(self, *, seen: float) -> list[DefectEvent]:
        return self._events(self.flush(), seen=seen, live=False)

    def _events(self, finished: list[Defect], *, seen: float, live: bool) -> list[DefectEvent]:
        peaks = [d for d in finished if d.detail["reason"] == "true_peak"]
        levels = [d for d in finished if d.detail["reason"] != "true_peak"]
        level = self.events.update(levels, self.open_start() if live else None, seen=seen)
        peak = self._peak_events.update(peaks, self._peak_open() if live else None, seen=seen)
        # `started` says which condition it is, as `ended` does (the defect's detail).
        reasons = {d.start: d.detail["reason"] for d in levels}
        if self._run is not None:
            reasons[round(self._run["start"], 6)] = self._run["reason"]
        for e in level:
            if e.phase == "started" and e.start in reasons:
                e.detail.setdefault("reason", reasons[e.start])
        for e in peak:
            if e.phase == "started":
                e.detail.setdefault("reason", "true_peak")
        out = level + peak
        return sort_events(out)

    def measurements(self) -> dict[str, Any]:
        def r(v: float | None, nd: int = 2) -> float | None:
            return None if v is None or not math.isfinite(v) else round(v, nd)

        tp = 20.0 * math.log10(self._tp_max) if self._tp_max > 0 else None
        return {
            "profile": self.config.profile,
            "target_lufs": self.target,
            "integrated_lufs": r(integrated_loudness(self._momentary)),
            "lra_lu": r(loudness_range(self._short)),
            "true_peak_dbtp": r(tp),
            "max_momentary_lufs": r(self._max_m),
            "max_short_term_lufs": r(self._max_s),
        }

    def get_state(self) -> dict[str, Any]:
        return {
            "rate": self._rate,
            "channels": self._channels,
            "anchor": self._anchor,
            "seen": self._seen,
            "hops": self._hops,
            "acc": self._acc,
            "fill": self._fill,
            "ring": list(self._ring),
            "k": self._kstate.tolist(),
            "tph": self._tph.tolist(),
            "momentary": self._momentary.get_state(),
            "short": self._short.get_state(),
            "tp_max": self._tp_max,
            "max_m": None if math.isinf(self._max_m) else self._max_m,
            "max_s": None if math.isinf(self._max_s) else self._max_s,
            "run": None if self._run is None else dict(self._run),
            "peak": None if self._peak is None else dict(self._peak),
            "peak_events": self._peak_events.get_state(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._rate, self._channels = int(state["rate"]), int(state["channels"])
        self._anchor, self._seen = float(state["anchor"]), float(state["seen"])
        self._hops, self._acc, self._fill = int(state["hops"]), float(state["acc"]), state["fill"]
        self._ring = [float(v) for v in state["ring"]]
        c = self._channels
        self._kstate = np.asarray(state["k"], dtype=np.float64).reshape(2, c, 2)
        self._tph = np.asarray(state["tph"], dtype=np.float64).reshape(c, _TP_TAPS - 1)
        self._momentary = _Histogram({int(i): int(n) for i, n in state["momentary"]})
        self._short = _Histogram({int(i): int(n) for i, n in state["short"]})
        self._tp_max = float(state["tp_max"])
        self._max_m = -math.inf if state["max_m"] is None else float(state["max_m"])
        self._max_s = -math.inf if state["max_s"] is None else float(state["max_s"])
        self._run = None if state["run"] is None else dict(state["run"])
        self._peak = None if state["peak"] is None else dict(state["peak"])
        self._peak_events.set_state(state["peak_events"])
