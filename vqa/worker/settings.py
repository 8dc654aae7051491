"""The worker's settings: ``VQA_*`` environment variables (the task definition's) or overrides."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vqa.worker.jobs import Job


@dataclass(frozen=True)
class WorkerSettings:
    """What a shard worker needs to know; the ECS task definition sets these as ``VQA_*``."""

    queue_url: str
    shard: str
    detectors: tuple[str, ...]
    table: str
    checkpoint_bucket: str
    topic_arn: str | None = None
    #: The alerts bus (EventBridge); alerts go to it and to the topic (vqa.alerts).
    bus_name: str | None = None
    #: Detector threshold overrides (``VQA_THRESHOLDS``, JSON: cdk.json's, this shard's only).
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)
    segment_seconds: float = 1.0
    checkpoint_every: int = 10
    visibility_seconds: int = 120
    max_receives: int = 3
    wait_seconds: int = 20
    #: Delay before a failed job is offered again (``min(cap, 2**receives)``); 0 retries at once.
    retry_delay_cap: int = 30
    #: ``seek`` or ``replay``: how a resumed job reaches its checkpoint (see run_detectors).
    resume: str = "seek"
    #: SQS's limit on a message's visibility, counted from its receipt (12 hours): a live job
    #: hands itself over to a fresh message before it (``VQA_VISIBILITY_CEILING_SECONDS``).
    visibility_ceiling_seconds: int = 43_200

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> WorkerSettings:
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {
            "queue_url": env.get("VQA_QUEUE_URL", ""),
            "shard": env.get("VQA_SHARD", "shard0"),
            "detectors": tuple(d for d in env.get("VQA_DETECTORS", "").split(",") if d),
            "table": env.get("VQA_TABLE", ""),
            "checkpoint_bucket": env.get("VQA_CHECKPOINT_BUCKET", ""),
            "topic_arn": env.get("VQA_TOPIC_ARN") or None,
            "bus_name": env.get("VQA_BUS_NAME") or None,
            "resume": env.get("VQA_RESUME") or "seek",
        }
        if env.get("VQA_THRESHOLDS"):
            from vqa.overrides import validate_thresholds

            # Bad overrides stop the worker at start-up (ConfigError), not a job later.
            values["thresholds"] = validate_thresholds(json.loads(env["VQA_THRESHOLDS"]))
        for name, conv in (
            ("segment_seconds", float),
            ("checkpoint_every", int),
            ("visibility_seconds", int),
            ("max_receives", int),
            ("wait_seconds", int),
            ("retry_delay_cap", int),
            ("visibility_ceiling_seconds", int),
        ):
            raw = env.get(f"VQA_{name.upper()}")
            if raw:
                values[name] = conv(raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def missing(self) -> list[str]:
        required = ("queue_url", "table", "checkpoint_bucket")
        out = [f"VQA_{n.upper()}" for n in required if not getattr(self, n)]
        if not self.detectors:
            out.append("VQA_DETECTORS")
        return out

    def for_job(self, job: Job) -> WorkerSettings:
        """These settings for one job: the shard's detectors the request asked for (all when
        it named none) and the request's thresholds over the deployed ones, field by field.
        The request was validated by the front door; it is validated again here, so a job
        queued some other way cannot run a detector with an unknown field."""
        from vqa.overrides import narrow

        detectors, requested = narrow(self.detectors, job.detectors, job.thresholds)
        merged = {k: dict(v) for k, v in self.thresholds.items() if k in detectors}
        for name, fields in requested.items():
            merged.setdefault(name, {}).update(fields)
        return dataclasses.replace(self, detectors=detectors, thresholds=merged)
