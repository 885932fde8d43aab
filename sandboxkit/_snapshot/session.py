"""``Sandbox.pause``, ``Sandbox.resume``, ``Sandbox.fork``, ``snapshots``, ``delete_snapshot``.

Files always: the agent packs the writable places (:data:`.files.SNAPSHOT_PLACES`) into
a tar kept in the snapshot store, and unpacks it into a fresh sandbox. Memory where the
box can be checkpointed (see :mod:`.memory`): a gVisor session on an engine with the
checkpoint API. Elsewhere ``has_memory`` is False and a resume starts fresh processes
(a ``keep_state`` interpreter starts empty) over the same files.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import anyio

from .._errors import SnapshotError
from . import memory as mem
from . import store
from .files import pack, unpack

if TYPE_CHECKING:
    from .._sandbox import Sandbox
    from .._sandbox_pool import SandboxPool

log = logging.getLogger("sandboxkit")


async def _room() -> int:
    """How many bytes the next snapshot may take: its own cap, and the store's."""
    used = await anyio.to_thread.run_sync(store.used_bytes)
    left = store.max_store_bytes() - used
    if left <= 0:
        raise SnapshotError(
            f"the snapshot store {store.snapshot_dir()} is full ({used // store.MB} MB); "
            "delete snapshots (sandboxkit.delete_snapshot) or raise SANDBOXKIT_SNAPSHOT_STORE_MB",
            "too_large",
        )
    return min(store.max_snapshot_bytes(), left)


async def _save(sb: Sandbox, *, memory_too: bool) -> store.Record:
    """``sb``'s files (and its memory, when asked and the box can be checkpointed) as a
    committed snapshot; nothing of it is left in the store if this fails. Under ``sb._lock``."""
    box = sb._live_box()
    max_bytes = await _room()
    writer = await anyio.to_thread.run_sync(store.Writer)
    try:
        await pack(box, writer, max_bytes)
        memory = None
        if memory_too and mem.can_checkpoint(box):
            memory = await mem.checkpoint(box, writer.id)
        snapshot = store.Snapshot(
            id=writer.id,
            language=sb.language,
            runtime=box.shape.runtime,
            has_memory=memory is not None,
            size_bytes=writer.size,
            memory_bytes=memory.memory_bytes if memory is not None else 0,
            created_at=datetime.now(timezone.utc),
            limits=sb.limits,
            keep_state=sb.keep_state,
            keep_processes=sb.keep_processes,
            root=sb.root,
        )
        return await anyio.to_thread.run_sync(writer.commit, snapshot, memory)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(writer.discard)
        raise


async def _open_with_files(sb: Sandbox, record: store.Record) -> Sandbox:
    """Open the new session ``sb`` and unpack ``record``'s files into it (closed on failure)."""
    await sb.open()
    try:
        async with sb._lock:
            await unpack(sb._live_box(), record)
    except BaseException:
        await sb.aclose()
        raise
    sb._opened_for_you = True
    return sb


async def pause(sb: Sandbox) -> store.Snapshot:
    """Save ``sb`` and stop it; the session is closed afterwards (resume by the id)."""
    async with sb._lock:
        box = sb._live_box()
        record = await _save(sb, memory_too=True)
        sb._paused_as = record.snapshot.id
        # gone (or stopped and kept, with its memory) before pause returns: the pool's
        # release would remove it in the background
        with anyio.CancelScope(shield=True):
            await box.destroy()
    await sb.aclose()
    return record.snapshot


async def resume(
    snapshot_id: str | store.Snapshot,
    *,
    pool: SandboxPool | None = None,
    idle_timeout: float | None = 600.0,
) -> Sandbox:
    """A session back from a snapshot: its memory where it has memory, its files always."""
    from .._sandbox import Sandbox

    sid = store.check_id(snapshot_id)
    record = await anyio.to_thread.run_sync(store.load, sid)
    await anyio.to_thread.run_sync(store.verify, record)
    snap = record.snapshot
    if record.memory is not None:
        sb = await mem.restore(record, pool=pool, idle_timeout=idle_timeout)
        if sb is not None:
            return sb
        log.warning("sandboxkit: snapshot %s: its memory is gone; resuming its files", sid)
    runtime = snap.runtime if snap.runtime in ("runc", "runsc") else None
    fresh = Sandbox(
        snap.language,
        limits=snap.limits,
        pool=pool,
        keep_processes=snap.keep_processes,
        keep_state=snap.keep_state,
        idle_timeout=idle_timeout,
        runtime=runtime,  # type: ignore[arg-type]
        root=snap.root,
    )
    return await _open_with_files(fresh, record)


async def fork(sb: Sandbox) -> Sandbox:
    """A new session with a copy of ``sb``'s files (and its settings); ``sb`` goes on."""
    from .._sandbox import Sandbox

    async with sb._lock:
        record = await _save(sb, memory_too=False)
        sb._touch()
    try:
        child = Sandbox(
            sb.language,
            limits=sb.limits,
            pool=sb._pool,
            keep_processes=sb.keep_processes,
            keep_state=sb.keep_state,
            idle_timeout=sb.idle_timeout,
            runtime=sb.runtime,
            root=sb.root,
        )
        return await _open_with_files(child, record)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(store.remove, record.snapshot.id)


async def snapshots() -> list[store.Snapshot]:
    """Every snapshot in the store (``SANDBOXKIT_SNAPSHOT_DIR``), oldest first."""
    return [r.snapshot for r in await anyio.to_thread.run_sync(store.all_records)]


async def delete_snapshot(snapshot_id: str | store.Snapshot) -> None:
    """Delete a snapshot: its files, and its stopped container when it kept memory.
    SnapshotError ``not_found`` when there is none by that id."""
    sid = store.check_id(snapshot_id)
    record: store.Record | None = None
    with contextlib.suppress(SnapshotError):
        record = await anyio.to_thread.run_sync(store.load, sid)
    if record is not None and record.memory is not None:
        await mem.discard(record.memory)
    if not await anyio.to_thread.run_sync(store.remove, sid):
        raise SnapshotError(f"no snapshot {sid} in {store.snapshot_dir()}", "not_found", sid)


__all__ = ["delete_snapshot", "fork", "pause", "resume", "snapshots"]
