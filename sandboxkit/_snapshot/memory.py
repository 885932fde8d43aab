"""A paused box's memory: the engine's checkpoint of a gVisor container.

With the Docker engine's experimental checkpoint API and ``runtime="runsc"``, a session's
sandbox is made *pausable* (``Box.start(pausable=True)``): no AutoRemove, so a stopped
container stays with its checkpoint; no owner label, since a paused box outlives the
process that made it (labels cannot change): its name says who holds it
(``labels.held_name``) and the reaper reads that. ``pause`` checkpoints it (which stops
it: no process, no memory on the engine) and renames it ``sandboxkit-paused-<snapshot>``,
which nothing reaps; ``resume`` renames it to its new holder, attaches and starts it
from the checkpoint, and talks to the same agent again (it was idle between jobs). The
checkpoint is then used up: the snapshot keeps its files (``has_memory`` becomes False)
and the checkpoint is deleted.

Edges of this engine version: a checkpoint directory of one's own is refused (the memory
stays in the container's), and restoring content the engine's store already holds fails
("already exists"): each checkpoint is named after its snapshot and restored once.
runc cannot checkpoint here (Debian's CRIU fails ``criu check``): files only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING

import anyio

from .._backends import AttachedStream, connect
from .._backends.docker import DockerBackend
from .._container import Box
from .._errors import EngineError, SandboxError
from .._fleet.labels import PAUSED_PREFIX, held_name
from .._fleet.reaper import remove
from .._languages import language_env
from . import store

if TYPE_CHECKING:
    from .._sandbox import Sandbox
    from .._sandbox_pool import SandboxPool

log = logging.getLogger("sandboxkit")

MEMORY_RUNTIMES = frozenset({"runsc"})
RESTORE_RETRIES = (0.25, 0.5, 1.0, 2.0, 4.0)  # seconds between tries (see _restore)
# a refusal that passes: containerd's own copy of the checkpoint not yet collected
RESTORE_BUSY = ("already exists",)
_supported: dict[str, bool] = {}  # engine URL -> its checkpoint API is on


async def _checkpoints_on(engine: DockerBackend) -> bool:
    if engine.url not in _supported:
        try:
            _supported[engine.url] = await engine.can_checkpoint()
        except Exception:  # noqa: BLE001 - no memory then, files still
            return False
    return _supported[engine.url]


def docker_of(engine: object) -> DockerBackend | None:
    """The Docker backend under ``engine`` (a fleet member's watched one), if it is one:
    the checkpoint calls are Docker's own, outside the engine seam."""
    if isinstance(engine, DockerBackend):
        return engine
    raw = getattr(getattr(engine, "_member", None), "unwatched", None)
    return raw if isinstance(raw, DockerBackend) else None


async def open_pausable(sb: Sandbox, pool: SandboxPool) -> Box | None:
    """A pausable sandbox for ``sb`` when its memory can be kept; None: take one from
    the pool as usual (files-only pause)."""
    runtime = sb.runtime or pool.runtime
    if runtime not in MEMORY_RUNTIMES:
        return None
    tag = await pool.image_for(sb.spec)
    for member in pool.fleet.up:
        docker = docker_of(member.engine)
        if docker is None or not pool.depot.has(member.url, tag):
            continue
        if not await _checkpoints_on(docker):
            continue
        shape = pool._shape(tag, sb.limits, sb.spec, runtime, writable_root=sb.root)
        resources = shape.fixed or pool._container_resources(sb.spec, sb.limits)
        return await Box.start(
            member.engine, shape, resources, language_env(sb.spec), pool.pool_id, pausable=True
        )
    return None


_restored: set[str] = set()  # containers started from a checkpoint (ids)


def can_checkpoint(box: Box) -> bool:
    """Whether ``box``'s memory can be kept. Not a second time: this engine (20.10)
    leaves the containerd task of a container started from a checkpoint behind when it
    is checkpointed again, and it cannot be restored ("id already in use")."""
    return box.pausable and box.cid not in _restored and docker_of(box.engine) is not None


def _checkpoint_bytes(root: str, cid: str, name: str) -> int:
    """The checkpoint's size where this machine can see it (a local engine, as root)."""
    path = os.path.join(root, "containers", cid, "checkpoints", name)
    total = 0
    for here, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(here, f)).st_size
    return total


async def checkpoint(box: Box, snapshot_id: str) -> store.Memory:
    """Checkpoint ``box`` (it stops) and keep it, named for ``snapshot_id``."""
    engine = docker_of(box.engine)
    assert engine is not None
    name = snapshot_id  # unique: its content is never restored twice
    # the agent reads its next input by polling: its selector would miss it after a
    # restore (see agent/_snapshot.await_restore)
    reply, _ = await box.call({"op": "checkpoint", "nonce": name})
    if not reply.get("ok"):
        raise SandboxError(f"the sandbox agent refused a checkpoint: {reply.get('error')}")
    await engine.checkpoint(box.cid, name)
    await engine.rename(box.cid, PAUSED_PREFIX + snapshot_id)
    box.kept = True  # stopped, with its memory: closing the session must not remove it
    return store.Memory(
        engine=engine.url,
        container=box.cid,
        checkpoint=name,
        memory_bytes=await anyio.to_thread.run_sync(
            _checkpoint_bytes, await engine.root_dir(), box.cid, name
        ),
    )


async def restore(
    record: store.Record, *, pool: SandboxPool | None, idle_timeout: float | None
) -> Sandbox | None:
    """The paused box back, running from its checkpoint, as an open session; None when
    its container is gone (the caller resumes the files)."""
    from .._default import default_pool
    from .._sandbox import Sandbox

    memory = record.memory
    assert memory is not None
    snap = record.snapshot
    pool = pool or await default_pool()
    member = pool.fleet.by_url.get(memory.engine)
    engine = docker_of(member.engine) if member is not None else None
    if member is None or engine is None:
        log.warning(
            "sandboxkit: snapshot %s's memory is on %s, not in this pool", snap.id, memory.engine
        )
        return None
    found = await engine.inspect(memory.container)
    if found is None or found.state == "running":
        return None
    sb = Sandbox(
        snap.language,
        limits=snap.limits,
        pool=pool,
        keep_processes=snap.keep_processes,
        keep_state=snap.keep_state,
        idle_timeout=idle_timeout,
        runtime="runsc",
        root=snap.root,
    )
    # the checkpoint is used up whatever happens next: the snapshot keeps its files
    await _forget_memory(record)
    await engine.rename(memory.container, held_name(uuid.uuid4().hex[:12]))
    tag = await pool.image_for(sb.spec)
    shape = pool._shape(tag, sb.limits, sb.spec, "runsc")
    resources = shape.fixed or pool._container_resources(sb.spec, sb.limits)
    try:
        stream = await _restore(engine, memory)
    except EngineError as exc:  # the files are still there: the caller resumes them
        log.warning("sandboxkit: snapshot %s: restoring its memory failed: %s", snap.id, exc)
        await remove(engine, memory.container)
        return None
    except BaseException:
        await remove(engine, memory.container)
        raise
    box = Box(member.engine, memory.container, stream, shape, resources)
    box.pausable = True
    _restored.add(box.cid)
    with contextlib.suppress(Exception):
        await engine.delete_checkpoint(memory.container, memory.checkpoint)
    await sb._adopt(box, pool)
    return sb


async def _restore(engine: DockerBackend, memory: store.Memory) -> AttachedStream:
    """Start the container from its checkpoint. The engine uploads the checkpoint to
    containerd's store first, where the copy containerd made when checkpointing may
    still lie until its garbage collection runs ("content ... already exists"): such a
    refusal is tried again for a few seconds."""
    for wait in RESTORE_RETRIES:
        try:
            return await engine.restore(memory.container, memory.checkpoint)
        except EngineError as exc:
            if not any(busy in str(exc) for busy in RESTORE_BUSY):
                raise
            await anyio.sleep(wait)
    return await engine.restore(memory.container, memory.checkpoint)


async def _forget_memory(record: store.Record) -> None:
    snap = record.snapshot.model_copy(update={"has_memory": False})
    await anyio.to_thread.run_sync(store.rewrite, replace(record, snapshot=snap, memory=None))


async def discard(memory: store.Memory) -> None:
    """Remove the stopped container that holds a snapshot's memory (gone: fine)."""
    engine = connect(memory.engine)
    try:
        failure = await remove(engine, memory.container)
        if failure is not None:
            log.warning("sandboxkit: could not remove %s: %s", memory.container[:12], failure)
    finally:
        await engine.close()
