"""``EventStream``: the events of one run, as an async iterator that is also a resource."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from types import TracebackType

import anyio

from ._models import Event, RunResult


class EventStream:
    """Output chunks of one run as they are written, then one ``exit`` event.

    ::

        async with sk.Sandbox.stream(code) as events:
            async for ev in events:
                ...

    As a context manager, the run is stopped and its sandbox freed when the block ends,
    also on ``break`` or an exception, before the ``async with`` returns. Iterated
    directly (``async for ev in sk.Sandbox.stream(code)``) it is freed when the run ends,
    or, after an early ``break``, when the stream is closed or garbage-collected: use
    the ``async with`` form (or :meth:`aclose`) to free it at once.

    A compiled language's compiler output comes first, as ``stderr`` events: on a
    ``compile_error`` they are the result's ``stderr`` (the diagnostics); after a compile
    that succeeded with warnings the result's ``stderr`` is still the program's own, so
    ``Sandbox.run`` returns what the program wrote and the stream shows what a terminal
    would (the compiler's warnings, then the program).
    """

    def __init__(self, events: AsyncGenerator[Event, None]) -> None:
        self._events = events
        self._result: RunResult | None = None

    @property
    def result(self) -> RunResult | None:
        """The run's result once its ``exit`` event has been read; ``None`` before."""
        return self._result

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        event = await self._events.__anext__()
        if event.kind == "exit":
            self._result = event.result
        return event

    async def aclose(self) -> None:
        """Stop the run if it still goes and free its sandbox (shielded)."""
        with anyio.CancelScope(shield=True):
            await self._events.aclose()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
