"""Warm pool of started, attached, idle sandboxes for one image and shape, over one
engine or several.

The counting is kept in pure objects tested without Docker: :class:`PoolState` (the
pool's totals) and :class:`~._placement.Placement` (per engine: idle, starting, busy,
the target share, where a run takes from and where a refill goes). The I/O (creating,
destroying, waiting) lives in :class:`WarmPool`, which owns its background tasks and
cancels them on close. A fleet tells it when an engine goes down (its sandboxes are
dropped, its share moves to the others) or comes back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from ._backends import Backend
from ._container import Box, Resources, Shape
from ._errors import EngineUnavailable, PoolClosed, PoolTimeout
from ._placement import FAILURES_TO_PAUSE, Host, Placement
from ._placement import RETRY_AFTER as RETRY_AFTER
from ._placement import backoff as _backoff

log = logging.getLogger("sandboxkit")

# the longest a replacement waits for the run of the sandbox it replaces: a short run
# (a hello world, a compile-and-run) ends first; a long one is not left a spare short
DEFER_REFILL = 0.5


@dataclass
class PoolState:
    """How many sandboxes exist in each phase (all engines), and what to do next. No I/O."""

    size: int
    max_size: int
    idle: int = 0
    starting: int = 0
    busy: int = 0
    waiters: int = 0
    failures_in_a_row: int = 0
    # handed out while others stayed idle: their replacement waits for their run to end
    # (or DEFER_REFILL), so the engine's work of making it does not compete for the CPU
    # with that run; void the moment the pool runs out of idle sandboxes
    deferred: int = 0

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError("size must be >= 0")
        if self.max_size < max(self.size, 1):
            raise ValueError("max_size must be >= size and >= 1")

    @property
    def total(self) -> int:
        return self.idle + self.starting + self.busy

    def to_start(self) -> int:
        """New sandboxes to start now: refill to ``size`` idle, plus one per waiter,
        less the deferred replacements while an idle sandbox remains."""
        deferred = self.deferred if self.idle > 0 else 0
        want = max(self.size, 0) + self.waiters - self.idle - self.starting - deferred
        room = self.max_size - self.total
        return max(0, min(want, room))

    def backoff(self) -> float:
        """Seconds to wait before retrying after consecutive start failures."""
        return _backoff(self.failures_in_a_row)


class PoolEngine(Protocol):
    """One engine as a warm pool needs it (a fleet's member)."""

    @property
    def url(self) -> str: ...

    @property
    def backend(self) -> Backend: ...

    @property
    def host(self) -> Host: ...


class WarmPool:
    """Sandboxes of one (image, shape) kept started and idle for the next run, spread
    over the engines that have the image."""

    def __init__(
        self,
        engines: Sequence[PoolEngine],
        shape: Shape,
        resources: Resources,
        env: Mapping[str, str],
        pool_id: str,
        *,
        size: int,
        max_size: int,
        max_idle_age: float = 300.0,
        ready: Callable[[str], bool] = lambda url: True,
        on_dead_idle: Callable[[str], None] | None = None,
    ) -> None:
        self.engines = {e.url: e for e in engines}
        self.shape = shape
        self.resources = resources
        self.env = dict(env)
        self.pool_id = pool_id
        self.max_idle_age = max_idle_age
        self.state = PoolState(size=size, max_size=max_size)
        self.placement = Placement()
        self._boxes: dict[str, collections.deque[Box]] = {}
        for e in engines:
            self.placement.add(e.host, ready=ready(e.url))
            self._boxes[e.url] = collections.deque()
        self.placement.retarget(size)
        self._leased: set[Box] = set()  # handed out, not yet released: closing kills them too
        self._deferred: dict[Box, asyncio.TimerHandle] = {}  # see PoolState.deferred
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._starts: dict[str, set[asyncio.Task[None]]] = {url: set() for url in self.engines}
        self._janitor: asyncio.Task[None] | None = None
        self._closed = False
        self._on_dead_idle = on_dead_idle
        self.last_error: BaseException | None = None
        self.image_errors: dict[str, BaseException] = {}  # engines the image could not reach
        self.toolchain: str | None = None  # as the image's agent reports it

    @property
    def _idle(self) -> list[Box]:
        """Every idle sandbox, engine by engine (one engine: in the order handed out)."""
        return [box for boxes in self._boxes.values() for box in boxes]

    # ------------------------------------------------------------------ background
    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _refill(self) -> None:
        if self._closed:
            return
        if self._janitor is None:
            self._janitor = asyncio.get_running_loop().create_task(
                self._tend(), name="sandboxkit-janitor"
            )
        now = time.monotonic()
        for _ in range(self.state.to_start()):
            url = self.placement.choose_start(now)
            if url is None:
                break  # no engine can take one now: up, with the image, with room
            self._begin_start(url)

    def _begin_start(self, url: str) -> None:
        """Count a new sandbox as starting on ``url`` and start it in the background."""
        self.placement.begin_start(url)
        self.state.starting += 1
        task = self._spawn(self._start_one(url), "sandboxkit-warm")
        starts = self._starts[url]
        starts.add(task)
        task.add_done_callback(starts.discard)

    async def _start_one(self, url: str) -> None:
        engine = self.engines[url]
        box: Box | None = None
        try:
            delay = _backoff(self.placement.spots[url].failures)
            if delay:
                await asyncio.sleep(delay)
            box = await Box.start(
                engine.backend, self.shape, self.resources, self.env, self.pool_id
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - remembered, surfaced to callers
            self.last_error = exc
            log.warning("sandboxkit: starting a sandbox on %s failed: %s", url, exc)
        finally:
            if box is None:
                self.state.starting -= 1
                self.placement.end_start(url, ok=False, now=time.monotonic())
                self.state.failures_in_a_row = self.placement.spots[url].failures
        # a started box leaves "starting" in the same step it joins "idle": counted in
        # neither while this waits for the lock, a refill could go past max_size
        counted = box is None
        try:
            async with self._changed:
                if box is not None:
                    self.state.starting -= 1
                    self.placement.end_start(url, ok=True)
                    counted = True
                    if self._closed or not self.placement.spots[url].usable:
                        self.placement.idle_gone(url)
                        self._drop(url, box, lost=not self._closed)
                    else:
                        self.state.failures_in_a_row = 0
                        self.last_error = None
                        self.toolchain = box.toolchain or self.toolchain
                        self._boxes[url].append(box)
                        self.state.idle += 1
                        self._trim(url)
                self._changed.notify_all()
        finally:
            if not counted and box is not None:  # cancelled while waiting for the lock
                self.state.starting -= 1
                self.placement.end_start(url, ok=True)
                self.placement.idle_gone(url)
                self._drop(url, box)
        if box is None and not self._closed:
            self._refill()

    def _drop(self, url: str, box: Box, *, lost: bool = False) -> None:
        """Destroy ``box`` in the background (abandon it, when its engine is down); its
        engine holds one sandbox less once that is done."""

        async def go() -> None:
            try:
                if lost:
                    await box.abandon()
                await box.destroy()
            finally:
                self.placement.freed(url)

        self._spawn(go(), "sandboxkit-destroy")

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
                for url, boxes in self._boxes.items():
                    fresh: collections.deque[Box] = collections.deque()
                    died = False
                    for box in boxes:
                        if box.alive and now - box.created < max(
                            self.max_idle_age - period, period
                        ):
                            fresh.append(box)
                        else:
                            died = died or not box.alive
                            self.state.idle -= 1
                            self.placement.idle_gone(url)
                            self._drop(url, box)
                    self._boxes[url] = fresh
                    if died and self._on_dead_idle is not None:
                        self._on_dead_idle(url)  # an engine whose sandboxes die: probe it
                self._refill()
                if not self.state.waiters and not self.state.starting:
                    # at rest but lopsided (a burst's refills went where there was room):
                    # start the missing share; _trim retires the surplus once it is up
                    short = self.placement.misplaced()
                    if short is not None:
                        self._rebalance(short)

    def _rebalance(self, url: str) -> None:
        """Start ``url``'s share of the warm pool now (an engine back up, or one its
        image just reached), even when the pool holds ``size`` already: elsewhere."""
        spot = self.placement.spots[url]
        room = self.state.max_size - self.state.total
        for _ in range(max(0, min(spot.short, room))):
            if not (spot.usable and spot.host.room):
                break
            self._begin_start(url)

    def _trim(self, url: str) -> None:
        """A sandbox just became idle on ``url``, below or at its target: if the pool now
        holds more idle sandboxes than it wants, retire one from the engine furthest
        over its target (what a rebalance moved away). Bursts' extras, which go beyond
        targets, are kept as before; one engine alone never trims."""
        spots = self.placement.spots
        if len(spots) < 2 or spots[url].idle > spots[url].target:
            return
        if self.state.idle <= self.state.size + self.state.waiters:
            return
        over = [u for u, s in spots.items() if u != url and s.idle > s.target]
        if not over:
            return
        most = max(over, key=lambda u: spots[u].idle - spots[u].target)
        box = self._boxes[most].popleft()  # the oldest
        self.state.idle -= 1
        self.placement.idle_gone(most)
        self._drop(most, box)

    def discard(self, box: Box) -> None:
        """A used (or broken) sandbox: destroy it in the background and refill."""
        url = box.engine.url
        self._end_deferral(box, refill=False)  # the refill below starts its replacement
        if box.busy:
            box.busy = False
            self.state.busy -= 1
            self.placement.busy_done(url)
        if box in self._leased:
            self._leased.discard(box)
            self._drop(url, box)
        elif not box.closed:
            self._spawn(box.destroy(), "sandboxkit-destroy")
        self._refill()

    # ------------------------------------------------------------------ engines
    @property
    def _serving(self) -> bool:
        """Warmed up or used already: changes of engines start sandboxes only then (so a
        pool still opening waits for every image, then spreads evenly)."""
        return self._janitor is not None and not self._closed

    def engine_down(self, url: str) -> None:
        """``url`` stopped answering: drop its sandboxes, end its runs' streams, cancel
        its starts, and make its share up on the other engines."""
        if url not in self.engines:
            return
        for box in self._boxes[url]:
            self.state.idle -= 1
            self.placement.idle_gone(url)
            self._drop(url, box, lost=True)
        self._boxes[url].clear()
        for box in self._leased:
            if box.engine.url == url:
                self._spawn(box.abandon(), "sandboxkit-abandon")
        for task in list(self._starts[url]):
            task.cancel()
        self.placement.host_changed()
        if self._serving:
            self._refill()
        self._spawn(self._notify(), "sandboxkit-notify")

    def engine_up(self, url: str) -> None:
        """``url`` is back: it takes its share of the warm pool again."""
        if url not in self.engines:
            return
        self.placement.spots[url].failures = 0
        self.placement.host_changed()
        if self._serving:
            self._refill()
            self._rebalance(url)
        self._spawn(self._notify(), "sandboxkit-notify")

    def image_ready(self, url: str) -> None:
        """The pool's image arrived on ``url``: it can hold sandboxes of this pool now."""
        if url in self.engines:
            self.image_errors.pop(url, None)
            self.placement.set_ready(url)
            if self._serving:
                self._refill()
                self._rebalance(url)
            self._spawn(self._notify(), "sandboxkit-notify")

    def image_failed(self, url: str, exc: BaseException) -> None:
        if url in self.engines:
            self.image_errors[url] = exc
            self._spawn(self._notify(), "sandboxkit-notify")

    def image_gone(self, url: str) -> None:
        """``url`` came back without the pool's image: no sandbox there until it arrives."""
        if url in self.engines:
            self.placement.set_ready(url, False)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _unservable(self) -> BaseException | None:
        """Why no engine can hold a sandbox of this pool, when that will not pass by
        waiting: every engine down, or the image failed to reach every engine up."""
        engines = list(self.engines.values())
        if not any(e.host.up for e in engines):
            if len(engines) == 1:
                return None  # one engine is never marked down
            return EngineUnavailable(
                "every engine of this pool is down: "
                + "; ".join(f"{e.url}" for e in engines)
                + ". They are probed and re-admitted when they answer; "
                "`sandboxkit fleet status` shows them"
            )
        failed = [e.url for e in engines if e.host.up and e.url in self.image_errors]
        if failed and len(failed) == sum(1 for e in engines if e.host.up):
            return self.image_errors[failed[0]]
        return None

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
                problem = self._unservable()
                if problem is not None:
                    raise problem
                await self._changed.wait()

    async def acquire(self, timeout: float, avoid: frozenset[str] = frozenset()) -> Box:
        """An idle, live sandbox, waiting up to ``timeout`` seconds for one; from an engine
        in ``avoid`` only when no other has one."""
        # every call yields to the loop at least once: a caller retrying a failure in a
        # tight loop must not starve the fleet's watch that would cure it
        await asyncio.sleep(0)
        if self._closed:
            raise PoolClosed("the sandbox pool is closed; create a new one")
        deadline = time.monotonic() + timeout
        async with self._changed:
            self.state.waiters += 1
            try:
                while True:
                    while (url := self.placement.choose_idle(avoid)) is not None:
                        box = self._boxes[url].popleft()
                        self.state.idle -= 1
                        too_old = time.monotonic() - box.created > self.max_idle_age
                        if box.alive and not too_old:
                            self.placement.idle_to_busy(url)
                            box.busy = True
                            self.state.busy += 1
                            self._leased.add(box)
                            if self.state.idle > 0 and self.state.waiters == 1:
                                self._defer_refill(box)
                            return box
                        self.placement.idle_gone(url)
                        self._drop(url, box)
                    if self._closed:
                        raise PoolClosed("the sandbox pool was closed")
                    problem = self._unservable()
                    if problem is not None:
                        raise problem
                    now = time.monotonic()
                    if (
                        self.placement.all_paused(now)
                        and self.last_error is not None
                        and not self.state.starting
                    ):
                        raise self.last_error
                    self._resume_paused(now)
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

    def _defer_refill(self, box: Box) -> None:
        """Hold ``box``'s replacement back until it is released or DEFER_REFILL passed."""
        self._deferred[box] = asyncio.get_running_loop().call_later(
            DEFER_REFILL, self._end_deferral, box
        )
        self.state.deferred += 1

    def _end_deferral(self, box: Box, *, refill: bool = True) -> None:
        handle = self._deferred.pop(box, None)
        if handle is not None:
            handle.cancel()
            self.state.deferred -= 1
            if refill:
                self._refill()

    def _resume_paused(self, now: float) -> None:
        """Engines left alone after five failed starts get one more try once
        ``RETRY_AFTER`` has passed (an engine restart?), instead of failing forever."""
        for spot in self.placement.spots.values():
            if spot.failures >= FAILURES_TO_PAUSE and not spot.paused(now):
                spot.failures = FAILURES_TO_PAUSE - 1

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
                for handle in self._deferred.values():
                    handle.cancel()
                self._deferred.clear()
                self.state.deferred = 0
                for url, boxes in self._boxes.items():
                    for box in boxes:
                        self.placement.idle_gone(url)
                        self._drop(url, box, lost=box.lost)
                    boxes.clear()
                leased = list(self._leased)
                self.state.idle = 0
                self._changed.notify_all()
            for task in list(self._tasks):
                if task.get_name() == "sandboxkit-warm":
                    task.cancel()
            for box in leased:
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

    def per_engine(self) -> dict[str, dict[str, int]]:
        """Counts on each engine: idle, starting, busy, and its target share of ``size``."""
        return {
            url: {
                "idle": spot.idle,
                "starting": spot.starting,
                "busy": spot.busy,
                "target": spot.target,
            }
            for url, spot in self.placement.spots.items()
        }
