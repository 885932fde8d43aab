"""``Process``: a run you can talk to while it runs (feed stdin, close it, kill it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType

import anyio

from . import _protocol as wire
from ._container import Box
from ._errors import SandboxError
from ._models import Event, RunResult

DRAIN_TIMEOUT = 10.0
EventsFactory = Callable[[Callable[[], None]], AsyncIterator[Event]]


class Process:
    """A program running in a sandbox with its stdin open.

    ::

        async with await sb.start("name = input('name? '); print('hi', name)") as proc:
            async for ev in proc:
                if ev.kind == "stdout" and "name?" in ev.data:
                    await proc.write("Ada\\n")
                    await proc.close_stdin()
        proc.result.stdout   # 'name? hi Ada\\n'

    The run is driven by a task of its own from the start, so input written before the
    first event is read is never lost and output is collected even while nobody iterates.
    """

    def __init__(self, box: Box, on_close: Callable[[], Awaitable[object]] | None = None) -> None:
        self._box = box
        self._on_close = on_close
        self._queue: asyncio.Queue[Event | BaseException | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._done = False
        self.result: RunResult | None = None

    async def _begin(self, factory: EventsFactory) -> None:
        """Start driving the run; return once its job is with the agent (see launch)."""
        sent = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._pump(factory(sent.set)))
        waiter = asyncio.ensure_future(sent.wait())
        try:
            await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()

    async def _pump(self, events: AsyncIterator[Event]) -> None:
        try:
            async for event in events:
                if event.kind == "exit":
                    self.result = event.result
                self._queue.put_nowait(event)
        except Exception as exc:  # noqa: BLE001 - handed to the reader
            self._queue.put_nowait(exc)
        finally:
            self._queue.put_nowait(None)

    async def write(self, data: str | bytes) -> None:
        """Send ``data`` to the program's stdin."""
        if self.result is not None:
            raise SandboxError("the program has ended; its stdin is closed")
        await self._box.send(wire.STDIN, data.encode() if isinstance(data, str) else bytes(data))

    async def close_stdin(self) -> None:
        """End-of-file on the program's stdin."""
        if self.result is None:
            await self._box.send(wire.CLOSE_STDIN)

    async def kill(self) -> None:
        """Stop the program and everything it started (status ``error``, signal 9)."""
        if self.result is None:
            await self._box.send(wire.KILL)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while not self._done:
            item = await self._queue.get()
            if item is None:
                self._done = True
                return
            if isinstance(item, BaseException):
                self._done = True
                raise item
            yield item

    async def wait(self) -> RunResult:
        """Let the program finish and return its result."""
        async for _ in self._iterate():
            pass
        if self.result is None:
            raise SandboxError("the run ended without a result")
        return self.result

    def __del__(self) -> None:
        # A Process dropped without aclose() (or `async with`) still gives its sandbox
        # back: the run ends by its own limits, then this schedules the cleanup.
        if self._on_close is None or self._task is None:
            return
        loop = self._task.get_loop()
        if not loop.is_closed():
            loop.call_soon_threadsafe(lambda: loop.create_task(self.aclose()))

    async def __aenter__(self) -> Process:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Kill the program if it still runs, wait (bounded) for its end, free the sandbox."""
        with anyio.CancelScope(shield=True):
            try:
                if self.result is None and self._box.alive:
                    with contextlib.suppress(SandboxError):
                        await self.kill()
                if self._task is not None:
                    with anyio.move_on_after(DRAIN_TIMEOUT):
                        await asyncio.wait({self._task})
                    if not self._task.done():
                        self._task.cancel()  # the run's own cleanup destroys the sandbox
                        await asyncio.wait({self._task})
            finally:
                if self._on_close is not None:
                    on_close, self._on_close = self._on_close, None
                    await on_close()


async def launch(
    box: Box, factory: EventsFactory, on_close: Callable[[], Awaitable[object]]
) -> Process:
    """A :class:`Process` driving ``factory``'s run in ``box``; ``on_close`` frees the box.

    If starting fails or is cancelled, the run is stopped and ``on_close`` called."""
    proc = Process(box, on_close=on_close)
    try:
        await proc._begin(factory)
    except BaseException:
        await proc.aclose()
        raise
    return proc
