"""What the synthesized stacks deploy, as the cost model needs it, read from their templates.

The model never copies a size from ``stacks/``: the monolith's task reservations (each shard's
CPU units and memory), the instance type and the capacity provider's target capacity come from
the ``VqaMonolith`` template; which Lambda functions and state machines are traced with X-Ray
comes from each template's ``TracingConfig`` / ``TracingConfiguration``.

Placement follows ECS on EC2. What one container instance offers tasks is
:func:`registered_capacity`, the one definition of it: the monolith stack's synth-time capacity
check (``stacks/capacity.py``) and this model both call it, with the instance type's vCPUs and
installed memory from the one instance table (``vqa/data/prices.json``) and the agent's
``ECS_RESERVED_MEMORY`` (the stack's own constant at synth; read back from the launch template's
user data here). A task fits where both its reservations fit; ECS managed scaling keeps
``instances needed x 100 / target capacity`` instances. Instances needed is the better of two
packings, first-fit decreasing by task size and whole streams per instance (managed scaling sizes
the group as if tasks were binpacked).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vqa.errors import ConfigError
from vqa.pricing import InstanceType

MONOLITH_STACK = "VqaMonolith"
DISTRIBUTED_STACK = "VqaDistributed"
CPU_UNITS_PER_VCPU = 1024
#: AWS's example of the memory the agent finds: an m4.large has 8,192 MiB installed and the
#: kernel reports 7,985 MiB (ECS developer guide, "Reserving Amazon ECS Linux container instance
#: memory"; AWS Batch's "Compute resource memory management" shows the ``free -b`` behind it).
#: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/memory-management.html
EXAMPLE_INSTALLED_MIB, EXAMPLE_REPORTED_MIB = 8192, 7985


def registered_capacity(
    *, vcpus: int, installed_mib: int, ecs_reserved_memory_mib: int
) -> tuple[int, int]:
    """CPU units and MiB of memory one container instance registers with ECS for tasks.

    CPU: ``vcpus x 1024`` units. Memory: what the kernel reports, taken as the share of the
    installed memory it reports in AWS's example (most of the kernel's own memory is page
    metadata, which grows with the memory), less ``ECS_RESERVED_MEMORY``, which the agent keeps
    out of the pool for itself, Docker and the system daemons.
    """
    if vcpus <= 0 or installed_mib <= 0 or ecs_reserved_memory_mib < 0:
        raise ConfigError("instance vCPUs and memory must be positive, reserved memory >= 0")
    reported = installed_mib * EXAMPLE_REPORTED_MIB // EXAMPLE_INSTALLED_MIB
    return vcpus * CPU_UNITS_PER_VCPU, reported - ecs_reserved_memory_mib


def ecs_reserved_memory(template: Mapping[str, Any]) -> int:
    """``ECS_RESERVED_MEMORY`` (MiB) the monolith's launch template writes to ``ecs.config``
    (0, the agent's default, if its user data does not set it)."""
    found = {
        int(v)
        for r in _resources(template, "AWS::EC2::LaunchTemplate")
        for v in re.findall(
            r"ECS_RESERVED_MEMORY=(\d+)",
            json.dumps(r["Properties"]["LaunchTemplateData"].get("UserData") or ""),
        )
    }
    if len(found) > 1:
        raise ConfigError(f"monolith template: several ECS_RESERVED_MEMORY values {sorted(found)}")
    return found.pop() if found else 0


#: Granularity of right-sized reservations: 1/32 vCPU, 64 MiB.
CPU_STEP, MEMORY_STEP = 32, 64


@dataclass(frozen=True)
class TaskSize:
    """One shard's task as the template defines it."""

    shard: str
    detectors: tuple[str, ...]
    cpu_units: int
    memory_mb: int
    #: Streams one task monitors at a time (the worker runs one job per task today).
    streams_per_task: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "shard": list(self.detectors),
            "name": self.shard,
            "cpu_units": self.cpu_units,
            "memory_mb": self.memory_mb,
            "streams_per_task": self.streams_per_task,
        }


@dataclass(frozen=True)
class Capacity:
    """The monolith's tasks and the instances ECS places them on."""

    instance_type: str
    instance_vcpus: int
    instance_memory_mib: int
    target_capacity_percent: int
    tasks: tuple[TaskSize, ...]
    #: MiB the agent keeps for itself (the launch template's ``ECS_RESERVED_MEMORY``).
    ecs_reserved_memory_mib: int = 0

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ConfigError("monolith template: no shard task definitions")
        if not 0 < self.target_capacity_percent <= 100:
            raise ConfigError("capacity provider target capacity must be in 1..100")
        for t in self.tasks:
            if t.cpu_units > self.cpu_units or t.memory_mb > self.memory_mib:
                raise ConfigError(
                    f"{t.shard}'s task reserves {t.cpu_units} CPU units and {t.memory_mb} MiB;"
                    f" a {self.instance_type} registers {self.cpu_units} and {self.memory_mib}"
                )

    @property
    def registered(self) -> tuple[int, int]:
        """CPU units and MiB one container instance registers for tasks."""
        return registered_capacity(
            vcpus=self.instance_vcpus,
            installed_mib=self.instance_memory_mib,
            ecs_reserved_memory_mib=self.ecs_reserved_memory_mib,
        )

    @property
    def cpu_units(self) -> int:
        return self.registered[0]

    @property
    def memory_mib(self) -> int:
        return self.registered[1]

    @property
    def reserved_vcpus_per_stream(self) -> float:
        return sum(t.cpu_units / t.streams_per_task for t in self.tasks) / CPU_UNITS_PER_VCPU

    def instances(self, streams: int) -> int:
        """Instances the capacity provider runs for ``streams`` concurrent streams: the better
        of two packings (ECS's binpack placement finds either), scaled to target capacity."""
        if streams <= 0:
            return 0
        packed = min(self._first_fit_decreasing(streams), self._whole_streams(streams))
        return math.ceil(packed * 100 / self.target_capacity_percent - 1e-9)

    def streams_within(self, instances: int) -> int:
        """The most concurrent streams whose tasks ECS places on at most ``instances``."""
        if self.instances(1) > instances:
            return 0
        lo, hi = 1, 2
        while self.instances(hi) <= instances:
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self.instances(mid) <= instances else (lo, mid)
        return lo

    def _first_fit_decreasing(self, streams: int) -> int:
        # Task types largest first (CPU, then memory); each instance takes as many of each as
        # fit. With identical instances this is first-fit decreasing.
        remaining = {
            t: math.ceil(streams / t.streams_per_task)
            for t in sorted(self.tasks, key=lambda t: (t.cpu_units, t.memory_mb), reverse=True)
        }
        packed = 0
        while any(remaining.values()):
            cpu, mem = self.cpu_units, self.memory_mib
            packed += 1
            for t, left in remaining.items():
                k = min(left, cpu // t.cpu_units, mem // t.memory_mb)
                remaining[t] = left - k
                cpu -= k * t.cpu_units
                mem -= k * t.memory_mb
        return packed

    def _whole_streams(self, streams: int) -> int:
        # Every instance holds the same number of whole streams (one task of each shard each):
        # better than first-fit decreasing when the large tasks leave slivers.
        cpu = sum(t.cpu_units / t.streams_per_task for t in self.tasks)
        mem = sum(t.memory_mb / t.streams_per_task for t in self.tasks)
        per_instance = math.floor(min(self.cpu_units / cpu, self.memory_mib / mem) + 1e-9)
        return math.ceil(streams / per_instance) if per_instance else streams * len(self.tasks)

    def placement(self, points: Sequence[int] = (1, 100, 1000)) -> dict[str, Any]:
        """DESIGN.md's ``placement`` object."""
        return {
            "instance_type": self.instance_type,
            "tasks": [t.to_json() for t in self.tasks],
            "instances": {str(n): self.instances(n) for n in points},
            "target_capacity_percent": self.target_capacity_percent,
            "registered_per_instance": {"cpu_units": self.cpu_units, "memory_mb": self.memory_mib},
            "ecs_reserved_memory_mb": self.ecs_reserved_memory_mib,
        }


def _resources(template: Mapping[str, Any], type_: str) -> list[dict[str, Any]]:
    return [r for r in template.get("Resources", {}).values() if r.get("Type") == type_]


def _env(container: Mapping[str, Any], name: str) -> str | None:
    for e in container.get("Environment") or []:
        if e.get("Name") == name and isinstance(e.get("Value"), str):
            return str(e["Value"])
    return None


def _task_size(props: Mapping[str, Any]) -> TaskSize:
    containers = props.get("ContainerDefinitions") or []
    worker = next((c for c in containers if _env(c, "VQA_SHARD")), None)
    if worker is None:
        raise ConfigError("monolith template: a task definition without a VQA_SHARD container")
    # Task-level sizes win; else the containers' sums (memoryReservation before memory), as
    # the ECS agent reserves them.
    cpu = props.get("Cpu")
    mem = props.get("Memory")
    cpu_units = int(cpu) if cpu else sum(int(c.get("Cpu") or 0) for c in containers)
    memory_mb = (
        int(mem)
        if mem
        else sum(int(c.get("MemoryReservation") or c.get("Memory") or 0) for c in containers)
    )
    if cpu_units <= 0 or memory_mb <= 0:
        raise ConfigError(f"monolith template: {_env(worker, 'VQA_SHARD')} has no CPU/memory")
    detectors = tuple(d for d in (_env(worker, "VQA_DETECTORS") or "").split(",") if d)
    return TaskSize(str(_env(worker, "VQA_SHARD")), detectors, cpu_units, memory_mb)


def capacity_from_template(
    template: Mapping[str, Any], instance_types: Mapping[str, InstanceType]
) -> Capacity:
    """The monolith's :class:`Capacity` from its template; ``instance_types`` (the price
    table's) gives each type's vCPUs and installed memory."""
    tasks = sorted(
        (
            _task_size(r["Properties"])
            for r in _resources(template, "AWS::ECS::TaskDefinition")
            if any(_env(c, "VQA_SHARD") for c in r["Properties"].get("ContainerDefinitions", []))
        ),
        key=lambda t: t.shard,
    )
    types = {
        r["Properties"]["LaunchTemplateData"].get("InstanceType")
        for r in _resources(template, "AWS::EC2::LaunchTemplate")
    }
    types.discard(None)
    if len(types) != 1:
        raise ConfigError(f"monolith template: expected one instance type, found {sorted(types)}")
    (instance_type,) = types
    targets = [
        int(r["Properties"]["AutoScalingGroupProvider"]["ManagedScaling"]["TargetCapacity"])
        for r in _resources(template, "AWS::ECS::CapacityProvider")
    ]
    if len(targets) != 1:
        raise ConfigError("monolith template: expected one capacity provider with managed scaling")
    if instance_type not in instance_types:
        raise ConfigError(f"price table has no EC2 instance type {instance_type}")
    spec = instance_types[instance_type]
    return Capacity(
        instance_type=str(instance_type),
        instance_vcpus=spec.vcpus,
        instance_memory_mib=spec.memory_mib,
        target_capacity_percent=targets[0],
        tasks=tuple(tasks),
        ecs_reserved_memory_mib=ecs_reserved_memory(template),
    )


def traced(template: Mapping[str, Any]) -> dict[str, Any]:
    """Which functions (by handler) and whether the state machine record X-Ray traces."""
    handlers = sorted(
        {
            str(r["Properties"].get("Handler"))
            for r in _resources(template, "AWS::Lambda::Function")
            if (r["Properties"].get("TracingConfig") or {}).get("Mode") == "Active"
        }
    )
    machines = [
        bool((r["Properties"].get("TracingConfiguration") or {}).get("Enabled"))
        for r in _resources(template, "AWS::StepFunctions::StateMachine")
    ]
    return {"lambda_handlers": handlers, "state_machine": any(machines)}


def synth(stack: str, vqa_context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The stack's template (cdk.json context with ``vqa_context`` keys overridden)."""
    from vqa.local.template import synth_template

    return synth_template(stack, vqa_context=vqa_context)


def right_size(
    cpu_per_stream_second: Mapping[str, float],
    peak_rss_mb: Mapping[str, float],
    shards: Sequence[str],
    *,
    cpu_headroom: float,
    memory_headroom: float,
    cpu_step: int = CPU_STEP,
    memory_step: int = MEMORY_STEP,
) -> list[dict[str, int]]:
    """Per-shard reservations from each shard's measured CPU per stream-second and peak
    resident memory: measured / headroom, rounded up to ``cpu_step`` units / ``memory_step``
    MiB."""
    out: list[dict[str, int]] = []
    for shard in shards:
        if shard not in cpu_per_stream_second or shard not in peak_rss_mb:
            raise ConfigError(f"no measured CPU and memory for {shard}: cannot size its task")
        units = cpu_per_stream_second[shard] * CPU_UNITS_PER_VCPU / cpu_headroom
        mem = peak_rss_mb[shard] / memory_headroom
        out.append(
            {
                "cpu": max(cpu_step, math.ceil(units / cpu_step - 1e-9) * cpu_step),
                "memory_mb": max(memory_step, math.ceil(mem / memory_step - 1e-9) * memory_step),
            }
        )
    return out
