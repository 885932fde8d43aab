"""A paused box's memory: the engine's checkpoint of a gVisor container (placeholder)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._container import Box
from . import store

if TYPE_CHECKING:
    from .._sandbox import Sandbox
    from .._sandbox_pool import SandboxPool


def can_checkpoint(box: Box) -> bool:
    return False


async def checkpoint(box: Box, snapshot_id: str) -> store.Memory | None:
    return None


async def restore(
    record: store.Record, *, pool: SandboxPool | None, idle_timeout: float | None
) -> Sandbox | None:
    return None


async def discard(memory: store.Memory) -> None:
    return None
