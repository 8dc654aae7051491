"""VQA: streaming audio/video defect detectors shared by both AWS architectures.

The public surface:

- :func:`vqa.media.open_source` / :func:`vqa.media.iter_segments` / :func:`vqa.media.decode_segment`
  decode a file, ``s3://`` object or HLS/TS URL into :class:`vqa.segment.Segment` objects.
- :mod:`vqa.detectors` holds the streaming detectors (eight: picture, sound, loudness, TS
  integrity) behind one protocol.
- :func:`vqa.analyze.analyze` runs them over a source in this process.
"""

from vqa.defects import DEFECT_KINDS, Defect
from vqa.errors import BadSourceError, VqaError

__all__ = ["DEFECT_KINDS", "BadSourceError", "Defect", "VqaError"]
__version__ = "0.1.0"
