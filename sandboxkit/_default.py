"""The process-wide default ``SandboxPool`` behind ``Sandbox.run``: created lazily on
first use (one per event loop), closed by ``sandboxkit.aclose()``, else when its event
loop shuts down (``asyncio.run()`` returning), else at interpreter exit.

Its engines: the fleet file ``SANDBOXKIT_FLEET`` names (JSON, see ``sandboxkit fleet``),
else the one engine of ``DOCKER_HOST`` (with ``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH``)
or the local socket. Whatever a default pool leaves behind is removed from every one of
its engines."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
from collections.abc import AsyncGenerator

from ._backends import EngineConfig, load_fleet_file
from ._fleet.reaper import remove_owned
from ._sandbox_pool import SandboxPool

_lock = threading.Lock()
# one default pool per event loop: threads that each run their own loop do not take
# each other's pools away
_defaults: dict[asyncio.AbstractEventLoop, SandboxPool] = {}
# per loop: the async generator whose end closes that loop's default pool (see _closer)
_closers: dict[asyncio.AbstractEventLoop, AsyncGenerator[None, None]] = {}
_engines_used: dict[str, EngineConfig] = {}  # every engine a default pool has used


def default_engines() -> list[EngineConfig] | None:
    """The fleet of ``SANDBOXKIT_FLEET``, or None (the environment's one engine)."""
    path = os.environ.get("SANDBOXKIT_FLEET")
    return load_fleet_file(path) if path else None


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
            _closers.pop(lp, None)
        fresh = _defaults[loop] = SandboxPool(languages=(), size=2, engines=default_engines())
        for member in fresh.fleet.members:
            _engines_used[member.url] = member.config
        closer = _closers[loop] = _closer(loop, fresh)
    await closer.__anext__()  # now the loop counts it among its open async generators
    for orphan in orphans:
        await remove_owned([m.config for m in orphan.fleet.members], orphan.pool_id)
    return fresh


async def _closer(loop: asyncio.AbstractEventLoop, pool: SandboxPool) -> AsyncGenerator[None, None]:
    """Closes ``pool`` when ``loop`` shuts down. An event loop closes every async
    generator still open before it closes (``shutdown_asyncgens``, which
    ``asyncio.run()`` calls), with the loop still running: the pool's engine connections
    are closed on their own loop. A pool left to a closed loop could not close them (the
    next loop's pool only reaps its containers), so each ``asyncio.run()`` without
    ``sk.aclose()`` warned of an unclosed connector."""
    try:
        yield
    finally:
        with _lock:
            if _defaults.get(loop) is pool:
                del _defaults[loop]
            _closers.pop(loop, None)
        await pool.aclose()


async def aclose() -> None:
    """Close this event loop's default pool (its sandboxes are removed now, not when the
    loop shuts down or at exit)."""
    loop = asyncio.get_running_loop()
    with _lock:
        pool = _defaults.pop(loop, None)
        closer = _closers.pop(loop, None)
    if closer is not None:
        await closer.aclose()  # closes the pool
    elif pool is not None:
        await pool.aclose()


def _reap_owned_sync() -> None:
    """Remove every container this process made, on every engine used, from a private
    event loop."""
    engines = list(_engines_used.values())

    def work() -> None:
        with contextlib.suppress(Exception):  # at exit there is no one to tell
            asyncio.run(remove_owned(engines))

    thread = threading.Thread(target=work, name="sandboxkit-exit-cleanup")
    thread.start()
    thread.join(30)


@atexit.register
def _close_at_exit() -> None:
    if _defaults:
        _reap_owned_sync()
