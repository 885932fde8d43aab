"""envd's directory watching onto ``Sandbox.watch``: the stream the async SDK reads
(``WatchDir``) and the polled watchers of the sync SDK (``CreateWatcher``, then
``GetWatcherEvents`` until ``RemoveWatcher``).

A polled watcher is a task that follows the session's watch and keeps what it sees
until the next poll takes it, so a change made between two polls is never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath

import anyio
from e2b.envd.filesystem import filesystem_pb as fs

from .._errors import SandboxError
from .._models import FileChange
from .._watch import Watch

MAX_KEPT = 10_000  # events a polled watcher keeps unread; past it the oldest go
# envd sees a change as it is made; here it comes from the box a moment later, so a
# poll finding nothing waits that moment, then for the rest of a burst to arrive
FIRST_WAIT = 0.3
QUIET = 0.05

_KINDS = {
    "created": fs.EventType.CREATE,
    "modified": fs.EventType.WRITE,
    "removed": fs.EventType.REMOVE,
}


def event_of(root: str, change: FileChange) -> fs.FilesystemEvent:
    """envd's event: the name is the path relative to the watched directory."""
    name = posixpath.relpath(change.path, root) if change.path.startswith("/") else change.path
    return fs.FilesystemEvent(name=name, type=_KINDS.get(change.kind, fs.EventType.UNSPECIFIED))


class Watcher:
    """One ``CreateWatcher``: a started watch and the events not polled yet."""

    def __init__(self, watch: Watch) -> None:
        self._watch = watch
        self._events: list[fs.FilesystemEvent] = []
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()
        self.error: SandboxError | None = None

    async def start(self) -> Watcher:
        await self._watch.start()  # every change from here on is seen
        self._task = asyncio.create_task(self._follow())
        return self

    async def _follow(self) -> None:
        try:
            async for change in self._watch:
                self._events.append(event_of(self._watch.path, change))
                del self._events[:-MAX_KEPT]
                self._arrived.set()
        except SandboxError as exc:
            self.error = exc

    async def take(self) -> list[fs.FilesystemEvent]:
        """The events seen since the last poll (waiting a moment for late ones)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + FIRST_WAIT
        while loop.time() < end + 1:  # a burst that never ends is cut after a second
            wait = QUIET if self._events else end - loop.time()
            if wait <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), wait)
            except TimeoutError:
                break  # quiet: the burst is over (or nothing came)
        events, self._events = self._events, []
        return events

    async def stop(self) -> None:
        """Shielded: the watch in the box is stopped even when the caller is cancelled."""
        with anyio.CancelScope(shield=True):
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            await self._watch.aclose()
