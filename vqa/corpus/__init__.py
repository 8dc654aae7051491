"""The test corpus: small H.264 + AAC clips with defects injected at known times, and their truth.

Everything is encoded with PyAV (libx264 + FFmpeg's AAC, bundled in the wheel): no ffmpeg binary.
The pictures look like live video rather than test patterns (a 1/f-textured plane seen through a
drifting camera, moving soft-edged shapes, sensor noise), and the audio is music-like (a chord pad,
a plucked bass and melody, hi-hat noise, a varying envelope and a noise floor), so that detectors
are tested on content that moves and sounds.

Defects are injected on exact frame boundaries (video) and exact sample positions (audio).
Bitstream damage is made by altering the encoded packets or the MPEG-TS bytes of a clean encode,
and its truth (which frames are damaged) is measured by decoding both and comparing luma.

Time origin: every time in ``truth.json`` is in seconds from the source start, the earliest first
presentation time of the audio and video streams (as ``vqa.media`` reports times). In MP4 both
streams start at 0 (the edit list trims the AAC encoder delay). In MPEG-TS the AAC encoder's 1024
priming samples are not trimmed, so the audio starts 21.333 ms before the first video frame: there
``video_start`` is 0.021333 and every injected time is shifted by it.

Truth format, one entry per clip (see docs/corpus.md)::

    {"file": "black.mp4", "container": "mp4", "duration": 8.0, "fps": 30, "width": 320,
     "height": 180, "has_video": true, "has_audio": true,
     "defects": [{"kind": "black", "start": 2.0, "end": 3.5}],
     "sync_offset_ms": null, "damaged_frames": [], "traps": [], "purpose": "..."}

plus informative extras: ``frames`` (video frame count), ``audio_start``, ``sync_marks`` (flash
times), ``vfr``, ``reference`` (the clean encode a damaged clip was made from), ``missing_frames``.

Modules: :mod:`~vqa.corpus.synth` (pictures, sound, encoding: shared by every corpus),
:mod:`~vqa.corpus.truth` (entries, the source timeline, :func:`score`), and one per corpus:
:mod:`~vqa.corpus.detector_clips` (``write_corpus``, ``truth.json``; with the bitstream damage of
:mod:`~vqa.corpus.damage` and the loudness clips of :mod:`~vqa.corpus.loudness_clips`),
:mod:`~vqa.corpus.transport_clips` (``write_transport_corpus``); :mod:`~vqa.corpus.bad_inputs`
for the bad-input tests. Everything public is importable from ``vqa.corpus``.
"""

from vqa.corpus.bad_inputs import (
    write_no_moov,
    write_undecodable,
)
from vqa.corpus.damage import (
    DAMAGE_FPS,
    DAMAGE_MAD,
    DAMAGE_MERGE_FRAMES,
    DAMAGE_SECONDS,
    compare_decodes,
    decode_luma,
    luma_of,
)
from vqa.corpus.detector_clips import (
    CLIP_NAMES,
    CORPUS_THRESHOLDS,
    Recipe,
    write_corpus,
    write_sample_clip,
)
from vqa.corpus.loudness_clips import (
    LOUD_RMS_DBFS,
    PEAK_BURST_SECONDS,
    PROGRAMME_RMS_DBFS,
    QUIET_RMS_DBFS,
)
from vqa.corpus.synth import (
    AAC_PRIMING,
    BEEP_AMPLITUDE,
    BEEP_HZ,
    BEEP_SECONDS,
    BLACK_Y,
    FLASH_Y,
    SAMPLE_RATE,
    SYNC_EARLY_MS,
    SYNC_LATE_MS,
    Motion,
    Pcm,
    RenderFn,
    Scene,
    Timeline,
    VideoSpec,
    Yuv,
    beep,
    cfr_times,
    drifting_camera,
    encode,
    flash_frame,
    flat_frame,
    inject_beeps,
    inject_clipping,
    inject_silence,
    music,
    pack_yuv,
    room_tone,
    slow_pan,
)
from vqa.corpus.transport_clips import (
    TRANSPORT_CLIPS,
    TRANSPORT_FPS,
    TRANSPORT_SECONDS,
    TS_AUDIO_PID,
    TS_NULL_PID,
    TS_PACKET,
    TS_PMT_PID,
    TS_VIDEO_PID,
    write_transport_corpus,
)
from vqa.corpus.truth import (
    DEFAULT_MATCH_SLACK,
    HOLD_MARGIN_SECONDS,
    LOUD_OVERLAP_SECONDS,
    MATCH_SLACK,
    R128_MAX_SHORT_TERM_LUFS,
    SHORT_TERM_SECONDS,
    TRUTH_VERSION,
    beeps_too_loud,
    clipping_loudness,
    expected_defects,
    score,
    stream_starts,
    unjudged,
)

__all__ = [
    "AAC_PRIMING",
    "BEEP_AMPLITUDE",
    "BEEP_HZ",
    "BEEP_SECONDS",
    "BLACK_Y",
    "CLIP_NAMES",
    "CORPUS_THRESHOLDS",
    "DAMAGE_FPS",
    "DAMAGE_MAD",
    "DAMAGE_MERGE_FRAMES",
    "DAMAGE_SECONDS",
    "DEFAULT_MATCH_SLACK",
    "FLASH_Y",
    "HOLD_MARGIN_SECONDS",
    "LOUD_OVERLAP_SECONDS",
    "LOUD_RMS_DBFS",
    "MATCH_SLACK",
    "PEAK_BURST_SECONDS",
    "PROGRAMME_RMS_DBFS",
    "QUIET_RMS_DBFS",
    "R128_MAX_SHORT_TERM_LUFS",
    "SAMPLE_RATE",
    "SHORT_TERM_SECONDS",
    "SYNC_EARLY_MS",
    "SYNC_LATE_MS",
    "TRANSPORT_CLIPS",
    "TRANSPORT_FPS",
    "TRANSPORT_SECONDS",
    "TRUTH_VERSION",
    "TS_AUDIO_PID",
    "TS_NULL_PID",
    "TS_PACKET",
    "TS_PMT_PID",
    "TS_VIDEO_PID",
    "Motion",
    "Pcm",
    "Recipe",
    "RenderFn",
    "Scene",
    "Timeline",
    "VideoSpec",
    "Yuv",
    "beep",
    "beeps_too_loud",
    "cfr_times",
    "clipping_loudness",
    "compare_decodes",
    "decode_luma",
    "drifting_camera",
    "encode",
    "expected_defects",
    "flash_frame",
    "flat_frame",
    "inject_beeps",
    "inject_clipping",
    "inject_silence",
    "luma_of",
    "music",
    "pack_yuv",
    "room_tone",
    "score",
    "slow_pan",
    "stream_starts",
    "unjudged",
    "write_corpus",
    "write_no_moov",
    "write_sample_clip",
    "write_transport_corpus",
    "write_undecodable",
]
