"""A shard's part of the stream's status item (the other shards' attributes are never touched)."""

from __future__ import annotations

from typing import Any

from vqa.results import update_status


def update_shard_status(
    dynamodb: Any, table: str, stream: str, shard: str, shard_state: str, /, **fields: Any
) -> dict[str, Any]:
    """Set this shard's attributes on the stream's status item; return the whole new item.

    Attributes: ``shard_<name>`` (running, retrying, done, failed) plus the given fields
    (stored as strings, JSON for non-strings, like :func:`vqa.results.put_status`). Only this
    shard's attributes are touched, so shards never overwrite each other.
    """
    return update_status(
        dynamodb=dynamodb, table=table, stream=stream, **{f"shard_{shard}": shard_state, **fields}
    )
