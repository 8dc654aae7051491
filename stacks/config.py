"""The app's configuration: read once from ``cdk.json`` context (key ``vqa``) in ``app.py``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

from stacks.capacity import instance_spec
from vqa.detectors import DETECTORS

#: Every detector the package registers: the stacks deploy what the package has, never a copy.
ALL_DETECTORS: tuple[str, ...] = tuple(DETECTORS)


@dataclass(frozen=True)
class VqaConfig:
    """Everything the two stacks and the local emulation need to agree on."""

    # Shared.
    segment_seconds: float = 1.0
    detectors: tuple[str, ...] = ALL_DETECTORS
    # Distributed architecture.
    workflow_type: str = "STANDARD"  # or "EXPRESS"
    granularity: str = "frame"  # "frame": one object per frame as Prime Video did; or "segment"
    # Segments one Standard execution handles before handing over to a fresh one. The stack
    # clamps it to what keeps the history under Step Functions' 25,000-event limit for the
    # detectors deployed (stacks.constructs.workflow: 135 with all eight, retries included).
    segments_per_execution: int = 200
    convert_memory_mb: int = 2048
    detector_memory_mb: int = 1024
    aggregate_memory_mb: int = 256
    lambda_architecture: str = "x86_64"  # or "arm64"
    intermediate_expiry_days: int = 1
    # Monolith architecture.
    # Shards split by what each decodes. av_sync needs both tracks, so it sits with the video
    # detectors and the audio shard never decodes the picture. loudness needs only the audio;
    # transport needs no decoding at all, only the TS packets every shard's demuxer reads anyway
    # (the tee), so both join the light audio shard rather than the video shard, which spends
    # most of its reserved CPU decoding the picture.
    shards: tuple[tuple[str, ...], ...] = (
        ("black", "freeze", "corruption", "av_sync"),
        ("silence", "clipping", "loudness", "transport"),
    )
    instance_type: str = "c7i.large"
    min_instances: int = 0
    max_instances: int = 4
    worker_cpu: int = 1024
    worker_memory_mb: int = 1536
    # Per-shard reservations, one {"cpu": units, "memory_mb": MiB} per shard in `shards` order,
    # sized from each shard's measured CPU and memory per stream (`vqa experiment` prints them);
    # empty: every shard reserves worker_cpu / worker_memory_mb.
    shard_sizes: tuple[tuple[int, int], ...] = ()
    private_subnets: bool = False
    # Concurrent streams the deployment is sized for. Monolith: tasks per shard service (an
    # error at synth if max_instances cannot hold them; unset: as many as they hold). Distributed:
    # reserved concurrency of every per-segment function (unset: none reserved, the account's
    # unreserved pool; reserving needs 100 unreserved left, more than a new account may have).
    max_streams: int | None = None
    # Detector threshold overrides, {detector: {field: value}} (e.g. {"black": {"min_duration":
    # 0.5}}), validated against the detectors' config fields; the stacks hand each function and
    # task its own detectors' overrides (VQA_THRESHOLDS), as `--set` does for local runs.
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Private origins the deployed services may fetch despite the SSRF guard (vqa.urlguard):
    # host names, ".domain" suffixes or CIDRs; handed to functions and tasks as
    # VQA_ALLOWED_ORIGINS. Empty: only public addresses.
    allowed_origins: tuple[str, ...] = ()
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
        if "shard_sizes" in ctx:
            ctx["shard_sizes"] = tuple(_shard_size(s) for s in ctx["shard_sizes"])
        if "allowed_origins" in ctx:
            from vqa.urlguard import UrlGuard

            origins = ctx["allowed_origins"]
            if isinstance(origins, str) or not isinstance(origins, list | tuple):
                raise ValueError("allowed_origins must be a list of host names, domains or CIDRs")
            ctx["allowed_origins"] = tuple(str(o).strip() for o in origins)
            try:
                UrlGuard.from_origins(ctx["allowed_origins"])
            except ValueError as exc:
                raise ValueError(f"allowed_origins: {exc}") from None
        if "thresholds" in ctx:
            from vqa.errors import ConfigError
            from vqa.overrides import validate_thresholds

            try:
                ctx["thresholds"] = validate_thresholds(ctx["thresholds"] or {})
            except ConfigError as exc:  # one line naming the detector and field
                raise ValueError(f"thresholds: {exc}") from None
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
        if self.max_streams is not None and (
            not isinstance(self.max_streams, int) or self.max_streams < 1
        ):
            raise ValueError(f"max_streams must be a positive integer, not {self.max_streams!r}")
        if not isinstance(self.max_instances, int) or self.max_instances < 1:
            raise ValueError(
                f"max_instances must be a positive integer, not {self.max_instances!r}"
            )
        instance_spec(self.instance_type)  # one of the types the capacity check knows
        if self.shard_sizes and len(self.shard_sizes) != len(self.shards):
            raise ValueError(
                f"shard_sizes has {len(self.shard_sizes)} entries for {len(self.shards)} shards"
            )
        for cpu, memory_mb in (*self.shard_sizes, (self.worker_cpu, self.worker_memory_mb)):
            _check_task_size(cpu, memory_mb)

    def thresholds_for(self, detectors: tuple[str, ...] | list[str]) -> dict[str, dict[str, Any]]:
        """The overrides of these detectors only (a function or task sees its own)."""
        return {d: dict(self.thresholds[d]) for d in detectors if d in self.thresholds}

    def task_size(self, shard_index: int) -> tuple[int, int]:
        """(CPU units, memory MiB) that shard ``shard_index``'s task reserves."""
        if self.shard_sizes:
            return self.shard_sizes[shard_index]
        return self.worker_cpu, self.worker_memory_mb


#: Bounds of the worker container's reservation (the stack sets container-level cpu): Linux's
#: smallest CPU share (2), ECS on EC2's largest task (192 vCPUs), Docker's smallest container
#: memory: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_definition_parameters.html
MIN_CPU_UNITS, MAX_CPU_UNITS, MIN_MEMORY_MB = 2, 196_608, 6


def _shard_size(raw: Any) -> tuple[int, int]:
    if isinstance(raw, dict) and set(raw) == {"cpu", "memory_mb"}:
        return raw["cpu"], raw["memory_mb"]
    if isinstance(raw, list | tuple) and len(raw) == 2:
        return raw[0], raw[1]
    raise ValueError(f'shard_sizes entries are {{"cpu": units, "memory_mb": MiB}}, not {raw!r}')


def _check_task_size(cpu: Any, memory_mb: Any) -> None:
    for name, v in (("cpu", cpu), ("memory_mb", memory_mb)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise ValueError(f"task {name} must be an integer, not {v!r}")
    if not MIN_CPU_UNITS <= cpu <= MAX_CPU_UNITS:
        raise ValueError(f"task cpu {cpu} units outside ECS's {MIN_CPU_UNITS}..{MAX_CPU_UNITS}")
    if memory_mb < MIN_MEMORY_MB:
        raise ValueError(f"task memory {memory_mb} MiB below Docker's {MIN_MEMORY_MB} MiB minimum")
