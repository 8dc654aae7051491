"""Capacity that adds up: how many shard tasks the capacity provider's instances can hold.

Every stream request is fanned out to every shard (one task per stream per shard), so the shard
services scale together: ``S`` concurrent streams need ``S`` tasks of *each* shard. The most
streams the monolith can run at once is the largest ``S`` whose tasks fit on ``max_instances``
instances; each shard service's ``max_tasks`` is that ``S``. Anything more would leave tasks in
PROVISIONING that no instance can ever take (the Auto Scaling group is capped at
``max_instances``), while their queue backlog keeps asking for more.

The check uses the cost model's own placement (:class:`vqa.deployment.Capacity`): the instance
type's vCPUs and installed memory come from the one instance table (``vqa/data/prices.json``),
what an instance registers for tasks from :func:`vqa.deployment.registered_capacity`, given
:data:`ECS_RESERVED_MEMORY_MIB`, which the launch template's user data sets. Tasks are placed
per instance, not just in total, so a fleet that adds up in total but not per instance (a
1.5-vCPU task on 2-vCPU instances) is caught too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vqa.deployment import Capacity, registered_capacity
from vqa.deployment import TaskSize as PlacedTask
from vqa.errors import ConfigError
from vqa.pricing import InstanceType, load_prices

#: ``ECS_RESERVED_MEMORY`` the launch template's user data sets: memory the agent, Docker and the
#: SSM agent keep, which tasks cannot reserve.
ECS_RESERVED_MEMORY_MIB = 256


class CapacityError(ValueError):
    """The configured tasks cannot be placed on the configured instances."""


def instance_spec(instance_type: str) -> InstanceType:
    """The instance type's vCPUs and memory from the instance table (types the table lists)."""
    instances = load_prices().instances
    if instance_type not in instances:
        known = ", ".join(sorted(instances))
        raise CapacityError(
            f"vqa.instance_type {instance_type!r} is not in the capacity table "
            f"(vqa/data/prices.json): one of {known}"
        )
    return instances[instance_type]


@dataclass(frozen=True)
class TaskSize:
    """What one task of a shard reserves: ``cpu`` units and ``memory_mib`` (the container's
    memory reservation)."""

    name: str
    cpu: int
    memory_mib: int


def check_capacity(
    shards: Sequence[TaskSize],
    *,
    instance_type: str,
    max_instances: int,
    max_streams: int | None = None,
) -> int:
    """Each shard service's ``max_tasks``: ``max_streams`` if it fits, else the most that fits.

    Raises :class:`CapacityError` (at synth) when no stream fits, or when an explicit
    ``max_streams`` needs more than ``max_instances`` instances hold.
    """
    spec = instance_spec(instance_type)
    cpu, memory = registered_capacity(
        vcpus=spec.vcpus,
        installed_mib=spec.memory_mib,
        ecs_reserved_memory_mib=ECS_RESERVED_MEMORY_MIB,
    )
    for s in shards:
        if s.cpu > cpu or s.memory_mib > memory:
            raise CapacityError(
                f"shard {s.name} reserves {s.cpu} CPU units / {s.memory_mib} MiB, more than "
                f"one {instance_type} offers ECS ({cpu} units / {memory} MiB)"
            )
    try:
        capacity = Capacity(
            instance_type=instance_type,
            instance_vcpus=spec.vcpus,
            instance_memory_mib=spec.memory_mib,
            # Packing only: whether the tasks fit on max_instances, whatever managed scaling's
            # target would keep spare.
            target_capacity_percent=100,
            tasks=tuple(PlacedTask(s.name, (), s.cpu, s.memory_mib) for s in shards),
            ecs_reserved_memory_mib=ECS_RESERVED_MEMORY_MIB,
        )
    except ConfigError as exc:
        raise CapacityError(str(exc)) from None
    most = capacity.streams_within(max_instances)
    if most == 0:
        raise CapacityError(
            f"one stream's tasks ({', '.join(s.name for s in shards)}) do not fit on "
            f"{max_instances} x {instance_type}: raise vqa.max_instances"
        )
    if max_streams is None:
        return most
    if max_streams > most:
        need_cpu = max_streams * sum(s.cpu for s in shards)
        need_mem = max_streams * sum(s.memory_mib for s in shards)
        raise CapacityError(
            f"vqa.max_streams={max_streams} needs {need_cpu} CPU units / {need_mem} MiB of "
            f"tasks, but {max_instances} x {instance_type} hold {most} streams "
            f"({max_instances * cpu} units / {max_instances * memory} MiB): "
            "lower vqa.max_streams or raise vqa.max_instances"
        )
    return max_streams
