"""In-process wake-ups for a store: idle workers wait for new work, ``wait=true``
requests for their submission's result. The store sets them (SQLite: as it writes;
PostgreSQL: from LISTEN/NOTIFY); every wait is also bounded, so a wake-up that was
missed costs one poll interval, never a result."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class Wakeups:
    def __init__(self) -> None:
        self._queued = asyncio.Event()
        self._finished: dict[str, set[asyncio.Event]] = {}

    def queued(self) -> None:
        self._queued.set()

    def finished(self, token: str) -> None:
        for event in self._finished.get(token, ()):
            event.set()

    def everyone(self) -> None:
        """Wake every waiter (notifications may have been missed: look again)."""
        self._queued.set()
        for waiters in self._finished.values():
            for event in waiters:
                event.set()

    async def wait_queued(self, timeout: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._queued.wait(), timeout)
        self._queued.clear()

    @contextlib.contextmanager
    def watch(self, token: str) -> Iterator[asyncio.Event]:
        """An event set when ``token`` finishes. Subscribe first, then read the store,
        then wait: a finish between the read and the wait is not missed."""
        event = asyncio.Event()
        self._finished.setdefault(token, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._finished.get(token, set())
            waiters.discard(event)
            if not waiters:
                self._finished.pop(token, None)
