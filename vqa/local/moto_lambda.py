"""The one patch the local emulation makes to moto: Lambda invocations run the real handlers.

moto's Step Functions interpreter invokes Lambda tasks through moto's Lambda backend, which ends
in ``moto.awslambda.models.LambdaFunction._invoke_lambda(self, event) -> (payload, errored,
logs)`` and would start a Docker container. :func:`dispatch_in_process` replaces exactly that
method, for the duration of a ``with`` block, with an in-process call of the function's handler
(``module.function`` from its ``Handler`` setting) with the function's own environment.

Errors are reported as Lambda reports an unhandled exception (``errorType`` is the exception's
class name), so the state machine's ``Retry``/``Catch`` see the same error names as in AWS.

Metering per invocation: one ``lambda_invocations``, and ``lambda_gb_seconds`` = the measured
duration (rounded up to the millisecond, as Lambda bills) x the configured memory. Invocations
are serialised by a lock: each Lambda sandbox has its own CPU, so timing concurrent handlers on
a shared CPU would bill their contention.

:func:`check_patch_point` fails loudly if moto moves or reshapes the method.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import math
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from vqa.local import iam
from vqa.local.iam import Principal
from vqa.meter import Meter

log = logging.getLogger(__name__)

PATCH_MODULE = "moto.awslambda.models"
PATCH_CLASS = "LambdaFunction"
PATCH_METHOD = "_invoke_lambda"
#: The function's settings the dispatcher reads.
_FUNCTION_ATTRS = ("function_name", "handler", "memory_size", "timeout", "environment_vars")


class PatchPointMoved(RuntimeError):
    """moto no longer has ``LambdaFunction._invoke_lambda(self, event)``: update this module."""


def _target() -> type:
    try:
        module = importlib.import_module(PATCH_MODULE)
        cls = getattr(module, PATCH_CLASS)
        method = getattr(cls, PATCH_METHOD)
    except (ImportError, AttributeError) as exc:
        raise PatchPointMoved(
            f"{PATCH_MODULE}.{PATCH_CLASS}.{PATCH_METHOD} not found ({exc}); moto moved the "
            "Lambda invocation hook: the local emulation cannot run handlers"
        ) from exc
    params = list(inspect.signature(method).parameters)
    if params[:2] != ["self", "event"]:
        raise PatchPointMoved(
            f"{PATCH_CLASS}.{PATCH_METHOD} takes {params}, expected (self, event)"
        )
    return cls  # type: ignore[no-any-return]


def check_patch_point() -> None:
    """Raise :class:`PatchPointMoved` unless moto still routes invocations where we patch."""
    cls = _target()
    source = inspect.getsource(cls.invoke)  # type: ignore[attr-defined]
    if PATCH_METHOD not in source:
        raise PatchPointMoved(f"{PATCH_CLASS}.invoke no longer calls {PATCH_METHOD}")
    init = inspect.getsource(cls.__init__)  # type: ignore[misc]
    for attr in _FUNCTION_ATTRS:
        if f"self.{attr} =" not in init:
            raise PatchPointMoved(f"{PATCH_CLASS} no longer sets self.{attr}")


@dataclass(frozen=True)
class Invocation:
    """What the dispatcher reports after each handler call."""

    function_name: str
    handler: str
    memory_mb: int
    seconds: float
    error: str | None


class LambdaContext:
    """The parts of Lambda's context object handlers use (both emulations)."""

    def __init__(self, function_name: str, memory_mb: int, timeout_s: float, arn: str = "") -> None:
        self.function_name = function_name
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = arn
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _load_handler(spec: str) -> Callable[[Any, Any], Any]:
    module_name, _, func = spec.rpartition(".")
    return getattr(importlib.import_module(module_name), func)  # type: ignore[no-any-return]


@contextmanager
def dispatch_in_process(
    *,
    meter: Meter | None = None,
    on_invoke: Callable[[Invocation], None] | None = None,
    principals: Mapping[str, Principal] | None = None,
) -> Iterator[None]:
    """Within the block, moto's Lambda invocations call the handlers in this process.

    ``principals`` (function name -> its execution role): each handler's AWS calls are checked
    against its own role (:mod:`vqa.local.iam`).
    """
    from lambdas.distributed.common import FUNCTION_ENVIRONMENT

    if principals is not None:
        iam.install()

    cls = _target()
    original = getattr(cls, PATCH_METHOD)
    lock = threading.Lock()

    def _invoke_lambda(self: Any, event: Any = None) -> tuple[str, bool, str]:
        memory_mb = int(self.memory_size)
        if isinstance(event, str | bytes):
            event = json.loads(event or "{}")
        environment = {k: str(v) for k, v in (self.environment_vars or {}).items()}
        context = LambdaContext(
            self.function_name, memory_mb, float(self.timeout or 3), str(self.function_arn)
        )
        error: str | None = None
        principal = (principals or {}).get(self.function_name)
        with lock, iam.acting_as(principal):
            token = FUNCTION_ENVIRONMENT.set(environment)
            t0 = time.perf_counter()
            try:
                result = _load_handler(str(self.handler))(event, context)
                payload = json.dumps(result)
            except BaseException as exc:  # reported to Step Functions exactly as Lambda does;
                # nothing may escape: moto's interpreter thread would die and the run would hang.
                error = type(exc).__name__
                payload = json.dumps(
                    {
                        "errorMessage": str(exc),
                        "errorType": error,
                        "requestId": context.aws_request_id,
                        "stackTrace": traceback.format_tb(exc.__traceback__),
                    }
                )
            finally:
                seconds = time.perf_counter() - t0
                FUNCTION_ENVIRONMENT.reset(token)
        if meter is not None:
            billed = math.ceil(seconds * 1000.0) / 1000.0
            meter.add("lambda_invocations", 1)
            meter.add("lambda_seconds", billed)
            meter.add("lambda_gb_seconds", billed * memory_mb / 1024.0)
            # Per handler and memory size: the cost model bills each at its CPU share.
            meter.add(f"lambda_seconds@{self.handler}@{memory_mb}", billed)
            meter.add(f"lambda_invocations@{self.handler}@{memory_mb}", 1)
            if "DETECTOR" in environment:  # one function per detector: what each one costs
                meter.add(f"detector_seconds@{environment['DETECTOR']}@{memory_mb}", billed)
                meter.add(f"detector_invocations@{environment['DETECTOR']}@{memory_mb}", 1)
        if on_invoke is not None:
            try:
                on_invoke(
                    Invocation(self.function_name, str(self.handler), memory_mb, seconds, error)
                )
            except Exception:  # a progress callback must not fail the invocation
                log.exception("on_invoke callback failed")
        return payload, error is not None, ""

    setattr(cls, PATCH_METHOD, _invoke_lambda)
    try:
        yield
    finally:
        setattr(cls, PATCH_METHOD, original)
