"""``vqa watch --arch``: follow a source through a locally emulated architecture.

The emitted objects are the alerts that architecture publishes (:mod:`vqa.alerts`), read from its
topic and bus, so the latency seen is the architecture's. Kept apart from :mod:`vqa.watch`, which
the worker image runs, because the emulation synthesizes the CDK app.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from vqa.detectors import DetectorSet
from vqa.errors import ConfigError
from vqa.overrides import validate_thresholds
from vqa.watch import Emit, sigint_sets


def watch_emulated(
    arch: str,
    source: str,
    *,
    emit: Emit,
    detectors: Sequence[str] | None = None,
    thresholds: Mapping[str, Mapping[str, Any]] | None = None,
    stop: threading.Event | None = None,
) -> str:
    """Follow ``source`` through the locally emulated architecture ``arch`` and ``emit`` each
    alert it publishes (the contract's object plus ``architecture`` and ``stream_id``), as read
    from its EventBridge bus. Stops when the stream ends or on SIGINT / ``stop``: the emulated
    workers then end their open defects at the last media seen and those alerts are emitted too.
    Returns ``"ended"`` or ``"interrupted"``."""
    config = validate_thresholds(thresholds or {})
    names = list(DetectorSet(detectors).names) if detectors else None  # bad names fail here
    stop = stop or threading.Event()
    if arch == "monolith":
        from vqa.local import monolith as emulation
    elif arch == "distributed":
        from vqa.local import distributed as emulation  # type: ignore[no-redef]
    else:
        raise ConfigError(f"unknown architecture {arch!r}: distributed or monolith")
    follow_alerts = getattr(emulation, "watch", None)
    if follow_alerts is None:
        raise ConfigError(f"watch --arch {arch}: the {arch} emulation has no live path yet")
    with sigint_sets(stop):
        for body in follow_alerts(source, stop=stop, detectors=names, thresholds=config):
            emit(body)
    return "interrupted" if stop.is_set() else "ended"
