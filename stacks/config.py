"""The app's configuration: read once from ``cdk.json`` context (key ``vqa``) in ``app.py``."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

ALL_DETECTORS = ("black", "freeze", "corruption", "silence", "clipping", "av_sync")


@dataclass(frozen=True)
class VqaConfig:
    """Everything the two stacks and the local emulation need to agree on."""

    # Shared.
    segment_seconds: float = 1.0
    detectors: tuple[str, ...] = ALL_DETECTORS
    # Distributed architecture.
    workflow_type: str = "STANDARD"  # or "EXPRESS"
    granularity: str = "frame"  # "frame": one object per frame as Prime Video did; or "segment"
    # About 46 history events per segment with six detectors (more with retries): 200 segments
    # keep an execution well under Step Functions' 25,000-event limit (the stack clamps it too).
    segments_per_execution: int = 200
    convert_memory_mb: int = 2048
    detector_memory_mb: int = 1024
    aggregate_memory_mb: int = 256
    lambda_architecture: str = "x86_64"  # or "arm64"
    intermediate_expiry_days: int = 1
    # Monolith architecture.
    # av_sync needs both tracks, so it sits with the video detectors and the audio shard never
    # decodes the picture.
    shards: tuple[tuple[str, ...], ...] = (
        ("black", "freeze", "corruption", "av_sync"),
        ("silence", "clipping"),
    )
    instance_type: str = "c7i.large"
    min_instances: int = 0
    max_instances: int = 4
    worker_cpu: int = 1024
    worker_memory_mb: int = 1536
    private_subnets: bool = False
    # Sandbox hygiene.
    destroy_on_delete: bool = True

    @classmethod
    def from_context(cls, ctx: dict[str, Any] | str | None) -> VqaConfig:
        # `cdk deploy -c vqa='{...}'` hands the value over as a JSON string.
        raw: dict[str, Any] = json.loads(ctx) if isinstance(ctx, str) else dict(ctx or {})
        ctx = raw
        known = {f.name for f in fields(cls)}
        unknown = set(ctx) - known
        if unknown:
            raise ValueError(f"unknown vqa context keys: {sorted(unknown)}")
        if "detectors" in ctx:
            ctx["detectors"] = tuple(ctx["detectors"])
        if "shards" in ctx:
            ctx["shards"] = tuple(tuple(s) for s in ctx["shards"])
        cfg = cls(**ctx)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for d in (*self.detectors, *(d for s in self.shards for d in s)):
            if d not in ALL_DETECTORS:
                raise ValueError(f"unknown detector {d!r}")
        if self.workflow_type not in ("STANDARD", "EXPRESS"):
            raise ValueError("workflow_type must be STANDARD or EXPRESS")
        if self.granularity not in ("frame", "segment"):
            raise ValueError("granularity must be frame or segment")
        if self.lambda_architecture not in ("x86_64", "arm64"):
            raise ValueError("lambda_architecture must be x86_64 or arm64")
