"""The process-wide default ``SandboxPool`` behind ``Sandbox.run``: created lazily on
first use (one per event loop), closed by ``sandboxkit.aclose()`` or at interpreter exit."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading

from ._engine import LABEL_OWNER, LABEL_POOL, Engine, owner_identity
from ._sandbox_pool import SandboxPool

_lock = threading.Lock()
_default: SandboxPool | None = None
_default_loop: asyncio.AbstractEventLoop | None = None


async def default_pool() -> SandboxPool:
    global _default, _default_loop
    loop = asyncio.get_running_loop()
    with _lock:
        pool, pool_loop = _default, _default_loop
        if pool is not None and pool_loop is loop and not pool.closed:
            return pool
        # a pool from an earlier (finished) event loop cannot be used from this one
        _default = SandboxPool(languages=(), size=2)
        _default_loop = loop
        fresh = _default
    if pool is not None and (pool_loop is None or pool_loop.is_closed()):
        # its loop is gone, so it cannot close itself: remove its containers from here
        await _reap_owned(pool.pool_id)
    return fresh


async def aclose() -> None:
    """Close the default pool (its warm sandboxes are removed now, not at exit)."""
    global _default, _default_loop
    with _lock:
        pool, _default, _default_loop = _default, None, None
    if pool is not None:
        await pool.aclose()


async def _reap_owned(pool_id: str | None = None) -> None:
    engine = Engine()
    labels = {LABEL_OWNER: owner_identity()}
    if pool_id is not None:
        labels[LABEL_POOL] = pool_id
    try:
        for c in await engine.list_containers(labels):
            await engine.remove(str(c["Id"]))
    finally:
        await engine.close()


def _reap_owned_sync() -> None:
    """Remove every container this process made, from a private event loop."""

    def work() -> None:
        with contextlib.suppress(Exception):  # at exit there is no one to tell
            asyncio.run(_reap_owned())

    thread = threading.Thread(target=work, name="sandboxkit-exit-cleanup")
    thread.start()
    thread.join(30)


@atexit.register
def _close_at_exit() -> None:
    if _default is not None:
        _reap_owned_sync()
