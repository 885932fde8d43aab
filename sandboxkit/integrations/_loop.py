"""One private event loop on a daemon thread, for frameworks that call executors
synchronously (smolagents, deepagents' sync methods)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from .._default import aclose as aclose_default

if TYPE_CHECKING:
    from .._sandbox import Sandbox

T = TypeVar("T")


class LoopThread:
    """Runs coroutines on its own loop; :meth:`call` blocks the caller until done."""

    def __init__(self, name: str = "sandboxkit-executor") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("LoopThread.call from its own loop would deadlock")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def acall(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on this loop from another loop (the caller's stays free)."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
        if not self.loop.is_running() and not self.loop.is_closed():
            self.loop.close()

    def close_session(self, sandbox: Sandbox, *, default_pool: bool) -> None:
        """Close ``sandbox`` (opened on this loop), this loop's default pool if it was
        used, then the loop itself: what an executor's close/cleanup does."""
        if self.loop.is_closed():
            return

        async def shutdown() -> None:
            await sandbox.aclose()
            if default_pool:
                await aclose_default()

        try:
            self.call(shutdown(), timeout=60)
        finally:
            self.stop()
