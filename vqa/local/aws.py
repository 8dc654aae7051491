"""Clients of the in-process moto account (inside ``moto.mock_aws()``), metered on request.

The resources themselves are created from the synthesized template by :mod:`vqa.local.provision`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from vqa.local.provision import REGION
from vqa.meter import Meter

REPO_ROOT = Path(__file__).resolve().parents[2]


def ensure_repo_on_path() -> None:
    """``stacks`` and ``lambdas`` live beside ``vqa`` in the repository, not in the wheel."""
    root = str(REPO_ROOT)
    if root not in sys.path:
        sys.path.insert(0, root)


#: Checksums only where an API requires them: with the default ("when_supported") every PUT
#: is sent aws-chunked with a CRC trailer that moto decodes in pure Python, an emulator cost that
#: would dominate local runs. It changes no request count and no byte count that is billed.
_CONFIG = Config(
    request_checksum_calculation="when_required",
    response_checksum_validation="when_required",
)


def client(service: str, *, meter: Meter | None = None) -> Any:
    """A boto3 client for the emulated region, metered when ``meter`` is given."""
    c = boto3.client(service, region_name=REGION, config=_CONFIG)  # type: ignore[call-overload]
    return meter.attach(c) if meter is not None else c


@contextlib.contextmanager
def environ(values: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set for the block (a handler module loaded as Lambda loads
    it reads its configuration at import), restored after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
