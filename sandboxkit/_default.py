"""The process-wide default ``SandboxPool`` behind ``Sandbox.run``: created lazily on
first use (one per event loop), closed by ``sandboxkit.aclose()`` or at interpreter exit."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading

from ._backends import connect
from ._labels import LABEL_OWNER, LABEL_POOL, owner_identity
from ._sandbox_pool import SandboxPool

_lock = threading.Lock()
# one default pool per event loop: threads that each run their own loop do not take
# each other's pools away
_defaults: dict[asyncio.AbstractEventLoop, SandboxPool] = {}


async def default_pool() -> SandboxPool:
    loop = asyncio.get_running_loop()
    with _lock:
        pool = _defaults.get(loop)
        if pool is not None and not pool.closed:
            return pool
        # pools of finished loops cannot close themselves: collect them for reaping
        orphans = [p for lp, p in _defaults.items() if lp.is_closed()]
        for lp in [lp for lp in _defaults if lp.is_closed()]:
            del _defaults[lp]
        fresh = _defaults[loop] = SandboxPool(languages=(), size=2)
    for orphan in orphans:
        await _reap_owned(orphan.pool_id)
    return fresh


async def aclose() -> None:
    """Close this event loop's default pool (its sandboxes are removed now, not at exit)."""
    with _lock:
        pool = _defaults.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        await pool.aclose()


async def _reap_owned(pool_id: str | None = None) -> None:
    engine = connect()
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
    if _defaults:
        _reap_owned_sync()
