"""Detector threshold overrides: ``--set DETECTOR.FIELD=VALUE`` and the stacks' ``thresholds``.

One place validates them for every entry point (``vqa analyze``, ``vqa run``, ``vqa watch``, the
stacks' ``cdk.json``): an unknown detector or field, or a value that is not of the field's type,
is a :class:`~vqa.errors.ConfigError` with a one-line message, which the CLI turns into exit 2.
Values are coerced to the type the detector's config dataclass declares, so ``"0.5"`` from a
command line and ``0.5`` from JSON give the same config.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from vqa.errors import ConfigError

__all__ = ["field_types", "parse_overrides", "validate_thresholds"]

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def field_types(detector: str) -> dict[str, type]:
    """``{field: type}`` of one detector's config dataclass (float, int, bool or str)."""
    from vqa.detectors import DETECTORS

    try:
        cls = DETECTORS[detector]
    except KeyError:
        raise ConfigError(
            f"unknown detector {detector!r}; choose from {', '.join(DETECTORS)}"
        ) from None
    hints = typing.get_type_hints(cls.Config)
    return {f.name: hints[f.name] for f in fields(cls.Config)}


def _coerce(detector: str, name: str, want: type, value: Any) -> Any:
    where = f"{detector}.{name}"
    if want is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if want is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if want is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            out = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if not math.isfinite(out):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return out
    if want is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: cannot be overridden")  # pragma: no cover - no such field today


def _check_value(detector: str, name: str, value: Any) -> None:
    # Durations, counts and levels are never negative in any detector's config; the dB fields are
    # the exception, and they carry their sign in the name's unit.
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if numeric and value < 0 and not name.endswith("_db"):
        raise ConfigError(f"{detector}.{name}: must not be negative, got {value!r}")


def validate_thresholds(
    mapping: Mapping[str, Mapping[str, Any]],
) -> dict[str, dict[str, Any]]:
    """Check ``{detector: {field: value}}`` and return it with values coerced to the field types.

    Raises :class:`~vqa.errors.ConfigError` (one line) for an unknown detector or field, or a value
    of the wrong type.
    """
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"thresholds: expected {{detector: {{field: value}}}}, got {mapping!r}")
    out: dict[str, dict[str, Any]] = {}
    for detector, values in mapping.items():
        types = field_types(str(detector))
        if not isinstance(values, Mapping):
            raise ConfigError(f"{detector}: expected {{field: value}}, got {values!r}")
        for name, value in values.items():
            if name not in types:
                raise ConfigError(
                    f"unknown field {detector}.{name}; {detector} has {', '.join(types)}"
                )
            coerced = _coerce(detector, name, types[name], value)
            _check_value(detector, name, coerced)
            out.setdefault(detector, {})[name] = coerced
    return out


def parse_overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["black.min_duration=0.5", ...]`` -> ``{"black": {"min_duration": 0.5}}``, validated.

    A later item for the same field wins, as with repeated command-line options.
    """
    raw: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        detector, dot, name = key.strip().partition(".")
        if not sep or not dot or not detector or not name or not value.strip():
            raise ConfigError(f"--set {item!r}: expected DETECTOR.FIELD=VALUE")
        raw.setdefault(detector, {})[name] = value.strip()
    return validate_thresholds(raw)


def narrow(
    deployed: Sequence[str],
    wanted: Sequence[str] | None,
    thresholds: Mapping[str, Mapping[str, Any]] | None,
) -> tuple[tuple[str, ...], dict[str, dict[str, Any]]]:
    """What one stream's request (the front door's ``detectors`` and ``thresholds``) asks of the
    ``deployed`` detectors: those it names, in deployed order (all of them when it names none),
    and its thresholds for those, validated again (a job or an execution may have been started
    without the front door)."""
    detectors = tuple(d for d in deployed if not wanted or d in wanted)
    overrides = validate_thresholds(thresholds or {})
    return detectors, {d: f for d, f in overrides.items() if d in detectors}
