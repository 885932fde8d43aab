"""``Sandbox.watch``: the changes under a path in a session's box, as an async iterator.

The agent watches with inotify and keeps what it sees in numbered changes (see
``agent/_watch.py``); this side polls ``watch_read`` with the last number it got, as a
background process's output is polled (``_background.py``): quickly while changes
come, backing off to :data:`POLL_MAX` while none do. The watch ends when the iterator
is closed (``async with``, ``aclose()``, or leaving an ``async for`` whose iterator is
then collected) or when the session ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from types import TracebackType

import anyio

from ._background import Call, refused
from ._errors import SandboxError
from ._models import FileChange

POLL_MIN = 0.01  # seconds between polls while changes come
POLL_MAX = 0.2  # ... and at most, while none do
STOP_TIMEOUT = 5.0  # seconds a stop may take (the session may be busy with a run)


class Watch:
    """Changes under a path of a session's box (``sb.watch(path, recursive=False)``).

    ::

        async with sb.watch("/tmp/out", recursive=True) as changes:
            await sb.start("python make.py", shell=True)
            async for change in changes:
                print(change.kind, change.path)  # created / modified / removed

    Entering it (``async with``) starts the watch, so every change made after is seen;
    a bare ``async for change in sb.watch(path)`` starts it at the first iteration.
    Iterating waits for changes; it ends when the watched path itself is removed, the
    watch is closed, or the session ends. ``dropped`` says changes were lost (more than
    the agent keeps unread, or more directories than one watch follows).
    """

    def __init__(self, call: Call, alive: Callable[[], bool], path: str, recursive: bool) -> None:
        self._call = call
        self._alive = alive
        self.path = path
        self.recursive = recursive
        self._id: int | None = None
        self._after = 0
        self._closed = False
        self._ended = False
        self._pending: list[FileChange] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.dropped = False

    async def start(self) -> Watch:
        """Start watching (once); changes from now on are seen."""
        if self._id is None and not self._closed:
            reply, _ = await self._call(
                {"op": "watch_start", "path": self.path, "recursive": self.recursive}
            )
            refused(reply, "watch", self.path)
            self._id = int(reply["id"])
            self._loop = asyncio.get_running_loop()
        return self

    async def _poll(self) -> None:
        reply, _ = await self._call({"op": "watch_read", "id": self._id, "after": self._after})
        refused(reply, "watch", self.path)
        for _seq, kind, path in reply.get("changes") or []:
            self._pending.append(FileChange(path=str(path), kind=kind))
        self._after = int(reply.get("next") or self._after)
        self.dropped = bool(reply.get("dropped"))
        self._ended = bool(reply.get("ended"))

    def __aiter__(self) -> AsyncIterator[FileChange]:
        return self

    async def __anext__(self) -> FileChange:
        try:
            await self.start()
            pause = POLL_MIN
            while not self._pending:
                if self._closed or self._ended:
                    raise StopAsyncIteration
                try:
                    await self._poll()
                except SandboxError:
                    if self._alive():
                        raise
                    self._closed = True  # the session ended: so did the watch
                    raise StopAsyncIteration from None
                if not self._pending and not self._ended:
                    await asyncio.sleep(pause)
                    pause = min(POLL_MAX, pause * 2)
            return self._pending.pop(0)
        except StopAsyncIteration:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Stop watching (the agent forgets it); shielded and bounded. Twice is fine."""
        wid, self._id, self._closed = self._id, None, True
        self._pending.clear()
        if wid is not None:
            await _stop(self._call, self._alive, wid)

    def __del__(self) -> None:
        # left without closing (a `break` out of `async for`): stop it in the background,
        # so the agent's watches do not pile up until the session ends
        wid, loop = self._id, self._loop
        if wid is None or loop is None or loop.is_closed():
            return
        call, alive = self._call, self._alive
        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(_stop_later, loop, call, alive, wid)

    async def __aenter__(self) -> Watch:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def _stop(call: Call, alive: Callable[[], bool], wid: int) -> None:
    if not alive():
        return  # the session ended: the watch with it
    with (
        anyio.CancelScope(shield=True),
        anyio.move_on_after(STOP_TIMEOUT),
        contextlib.suppress(SandboxError),  # it ended meanwhile
    ):
        await call({"op": "watch_stop", "id": wid})


_STOPPING: set[asyncio.Task[None]] = set()  # strong references until they finish


def _stop_later(
    loop: asyncio.AbstractEventLoop, call: Call, alive: Callable[[], bool], wid: int
) -> None:
    task = loop.create_task(_stop(call, alive, wid))
    _STOPPING.add(task)
    task.add_done_callback(_STOPPING.discard)
