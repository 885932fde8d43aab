"""Warm pool of started, attached, idle sandboxes for one image and shape.

The counting is kept in :class:`PoolState`, a pure object tested without Docker; the
I/O (creating, destroying, waiting) lives in :class:`WarmPool`, which owns its
background tasks and cancels them on close.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import anyio

from ._backends import Backend
from ._container import Box, Resources, Shape
from ._errors import PoolClosed, PoolTimeout

log = logging.getLogger("sandboxkit")

RETRY_AFTER = 5.0  # seconds after five failed starts before a caller may trigger a retry


@dataclass
class PoolState:
    """How many sandboxes exist in each phase, and what to do next. No I/O."""

    size: int
    max_size: int
    idle: int = 0
    starting: int = 0
    busy: int = 0
    waiters: int = 0
    failures_in_a_row: int = 0

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError("size must be >= 0")
        if self.max_size < max(self.size, 1):
            raise ValueError("max_size must be >= size and >= 1")

    @property
    def total(self) -> int:
        return self.idle + self.starting + self.busy

    def to_start(self) -> int:
        """New sandboxes to start now: refill to ``size`` idle, plus one per waiter."""
        want = max(self.size, 0) + self.waiters - self.idle - self.starting
        room = self.max_size - self.total
        return max(0, min(want, room))

    def backoff(self) -> float:
        """Seconds to wait before retrying after consecutive start failures."""
        if self.failures_in_a_row == 0:
            return 0.0
        return float(min(10.0, 0.2 * 2 ** (self.failures_in_a_row - 1)))


class WarmPool:
    """Sandboxes of one (image, shape) kept started and idle for the next run."""

    def __init__(
        self,
        engine: Backend,
        shape: Shape,
        resources: Resources,
        env: Mapping[str, str],
        pool_id: str,
        *,
        size: int,
        max_size: int,
        max_idle_age: float = 300.0,
    ) -> None:
        self.engine = engine
        self.shape = shape
        self.resources = resources
        self.env = dict(env)
        self.pool_id = pool_id
        self.max_idle_age = max_idle_age
        self.state = PoolState(size=size, max_size=max_size)
        self._idle: collections.deque[Box] = collections.deque()
        self._leased: set[Box] = set()  # handed out, not yet released: closing kills them too
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._janitor: asyncio.Task[None] | None = None
        self._closed = False
        self.last_error: BaseException | None = None
        self.toolchain: str | None = None  # as the image's agent reports it
        self._failed_at = 0.0  # when the last start failed (monotonic)

    # ------------------------------------------------------------------ background
    def _spawn(self, coro: object, name: str) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refill(self) -> None:
        if self._closed:
            return
        if self._janitor is None:
            self._janitor = asyncio.get_running_loop().create_task(
                self._tend(), name="sandboxkit-janitor"
            )
        for _ in range(self.state.to_start()):
            self.state.starting += 1
            self._spawn(self._start_one(), "sandboxkit-warm")

    async def _start_one(self) -> None:
        box: Box | None = None
        try:
            delay = self.state.backoff()
            if delay:
                await asyncio.sleep(delay)
            box = await Box.start(self.engine, self.shape, self.resources, self.env, self.pool_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - remembered, surfaced to callers
            self.last_error = exc
            self._failed_at = time.monotonic()
            self.state.failures_in_a_row += 1
            log.warning("sandboxkit: starting a sandbox failed: %s", exc)
        finally:
            if box is None:
                self.state.starting -= 1
        # a started box leaves "starting" in the same step it joins "idle": counted in
        # neither while this waits for the lock, a refill could go past max_size
        counted = box is None
        try:
            async with self._changed:
                if box is not None:
                    self.state.starting -= 1
                    counted = True
                    if self._closed:
                        self._spawn(box.destroy(), "sandboxkit-destroy")
                    else:
                        self.state.failures_in_a_row = 0
                        self.last_error = None
                        self.toolchain = box.toolchain or self.toolchain
                        self._idle.append(box)
                        self.state.idle += 1
                self._changed.notify_all()
        finally:
            if not counted and box is not None:  # cancelled while waiting for the lock
                self.state.starting -= 1
                self._spawn(box.destroy(), "sandboxkit-destroy")
        if box is None and not self._closed and self.state.failures_in_a_row < 5:
            self._refill()

    async def _tend(self) -> None:
        """Replace idle sandboxes that died or will soon be too old, in the background.

        Otherwise the first caller after a quiet spell would find every idle sandbox
        expired and wait for a container to be created on its request path.
        """
        period = max(0.5, min(30.0, self.max_idle_age / 4))
        while not self._closed:
            await asyncio.sleep(period)
            async with self._changed:
                now = time.monotonic()
                fresh: collections.deque[Box] = collections.deque()
                for box in self._idle:
                    if box.alive and now - box.created < max(self.max_idle_age - period, period):
                        fresh.append(box)
                    else:
                        self.state.idle -= 1
                        self._spawn(box.destroy(), "sandboxkit-destroy")
                self._idle = fresh
                self._refill()

    def discard(self, box: Box) -> None:
        """A used (or broken) sandbox: destroy it in the background and refill."""
        if box.busy:
            box.busy = False
            self.state.busy -= 1
        self._leased.discard(box)
        self._spawn(box.destroy(), "sandboxkit-destroy")
        self._refill()

    # ------------------------------------------------------------------ public
    async def warm_up(self) -> None:
        """Start ``size`` sandboxes and wait for them; the first failure is raised.

        At once, not after the retries: a pool that cannot start a sandbox while opening
        is misconfigured (image, runtime, engine), and the caller should hear it now.
        """
        self._refill()
        async with self._changed:
            while self.state.idle < self.state.size:
                if self.last_error is not None:
                    raise self.last_error
                if self._closed:
                    raise PoolClosed("the pool was closed while warming up")
                await self._changed.wait()

    async def acquire(self, timeout: float) -> Box:
        """An idle, live sandbox, waiting up to ``timeout`` seconds for one."""
        if self._closed:
            raise PoolClosed("the sandbox pool is closed; create a new one")
        deadline = time.monotonic() + timeout
        async with self._changed:
            self.state.waiters += 1
            try:
                while True:
                    while self._idle:
                        box = self._idle.popleft()
                        self.state.idle -= 1
                        too_old = time.monotonic() - box.created > self.max_idle_age
                        if box.alive and not too_old:
                            box.busy = True
                            self.state.busy += 1
                            self._leased.add(box)
                            return box
                        self._spawn(box.destroy(), "sandboxkit-destroy")
                    if self._closed:
                        raise PoolClosed("the sandbox pool was closed")
                    if (
                        self.state.failures_in_a_row >= 5
                        and self.last_error is not None
                        and not self.state.starting
                    ):
                        if time.monotonic() - self._failed_at < RETRY_AFTER:
                            raise self.last_error
                        # refilling stopped after five failures in a row; time has passed
                        # (an engine restart?): try again instead of failing forever
                        self.state.failures_in_a_row = 4
                    self._refill()
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise PoolTimeout(
                            f"no sandbox became free within {timeout:.1f}s "
                            f"({self.state.busy} busy of at most {self.state.max_size}); "
                            "raise max_size or acquire_timeout, or run fewer at once"
                        )
                    with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), remaining)
            finally:
                self.state.waiters -= 1
                self._refill()

    async def release(self, box: Box) -> None:
        """Done with ``box``: single use, so it is destroyed and replaced."""
        async with self._changed:
            self.discard(box)
            self._changed.notify_all()

    async def aclose(self) -> None:
        """Destroy every sandbox and stop background work; shielded and bounded."""
        with anyio.CancelScope(shield=True):
            async with self._changed:
                self._closed = True
                if self._janitor is not None:
                    self._janitor.cancel()
                idle = list(self._idle) + list(self._leased)
                self._idle.clear()
                self.state.idle = 0
                self._changed.notify_all()
            for task in list(self._tasks):
                if task.get_name() == "sandboxkit-warm":
                    task.cancel()
            for box in idle:
                self._spawn(box.destroy(), "sandboxkit-destroy")
            if self._tasks:
                with anyio.move_on_after(30):
                    await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def health(self) -> dict[str, int]:
        return {
            "idle": self.state.idle,
            "starting": self.state.starting,
            "busy": self.state.busy,
            "size": self.state.size,
        }
