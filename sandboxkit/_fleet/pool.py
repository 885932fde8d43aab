"""Warm pool of started, attached, idle sandboxes for one image and shape, over one
engine or several.

The counting is kept in pure objects tested without Docker: the
:class:`~.placement.Placement` is the one book of counts (per engine and phase:
starting, idle, busy, leaving; the target share; where a run takes from and where a
refill goes), and :class:`PoolState` reads its totals from it to decide what to start.
Each change of a sandbox's phase is one placement call. The I/O (creating, destroying,
waiting) lives in :class:`WarmPool`, which keeps the tasks it starts and cancels or
awaits them on close. A fleet tells it when an engine goes down (its sandboxes are
dropped, its share moves to the others) or comes back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol

import anyio

from .._backends import Backend
from .._container import Box, Resources, Shape
from .._errors import EngineUnavailable, PoolClosed, PoolTimeout, SandboxkitError
from .placement import Host, Placement
from .placement import backoff as _backoff

log = logging.getLogger("sandboxkit")

# the longest a replacement waits for the run of the sandbox it replaces: a short run
# (a hello world, a compile-and-run) ends first; a long one is not left a spare short
DEFER_REFILL = 0.5
# the pool grows at most this often (seconds): about one container start, so a burst's
# callers, all finding the pool dry at once, double it once and not once each
GROW_EVERY = 0.25
# seconds without pressure (a caller waiting, a run leaving the pool dry) after which a
# grown pool steps halfway back to ``size``, retiring the idle sandboxes beyond that
SHRINK_AFTER = 15.0


class PoolState:
    """What a warm pool wants next, over the counts its placement keeps (all engines):
    this holds only what is not a count of sandboxes (the bound, the callers waiting,
    how many idle ones demand calls for). No I/O; the clock is the caller's.

    **Sizing to demand.** ``want`` is the number of idle sandboxes the pool keeps ready:
    ``size`` at rest. Pressure (a run that leaves the pool dry, a caller that has to
    wait) doubles it, at most once per ``GROW_EVERY`` and never past ``grow_to`` (the
    user's ``max_size`` and the engines' capacity, whichever is lower); a
    ``SHRINK_AFTER`` without pressure steps it halfway back to ``size``, and the idle
    sandboxes beyond it are retired. A pool of ``size=0`` starts one per run and never
    grows."""

    def __init__(
        self, placement: Placement, *, size: int, max_size: int, grow_to: int | None = None
    ) -> None:
        if size < 0:
            raise ValueError("size must be >= 0")
        if max_size < max(size, 1):
            raise ValueError("max_size must be >= size and >= 1")
        self.placement = placement
        self.max_size = max_size
        self.waiters = 0
        placement.retarget(size)
        # the most idle sandboxes demand may ask for: never below size, nor above max_size
        bound = max_size if grow_to is None else min(max_size, grow_to)
        self.grow_to = max(size, bound)
        self._want = size
        self._grew_at = -1e18  # when want last grew (caller's clock)
        self._pressed_at = -1e18  # when pressure was last seen (or want last shrank)

    @property
    def size(self) -> int:
        return self.placement.size

    @property
    def idle(self) -> int:
        return self.placement.total.idle

    @property
    def starting(self) -> int:
        return self.placement.total.starting

    @property
    def busy(self) -> int:
        return self.placement.total.busy

    @property
    def total(self) -> int:
        """Starting, idle or busy: never more than ``max_size``."""
        return self.placement.total.pooled

    @property
    def want(self) -> int:
        """Idle sandboxes to keep ready: ``size``, or more while demand is high (never
        below ``size``, even when the placement's ``size`` was changed since)."""
        return max(self.size, self._want)

    def pressure(self, now: float) -> bool:
        """A run left the pool dry, or a caller waits: want more idle sandboxes (doubled,
        at most once per ``GROW_EVERY``, up to ``grow_to``). True when it grew."""
        self._pressed_at = now
        want = self.want
        if self.size == 0 or want >= self.grow_to or now - self._grew_at < GROW_EVERY:
            return False
        self._want = min(self.grow_to, max(want + 1, 2 * want))
        self._grew_at = now
        return True

    def relax(self, now: float, quiet: float = SHRINK_AFTER) -> int:
        """Called now and then: after ``quiet`` seconds without pressure, ``want`` steps
        halfway back to ``size`` (the next step one more quiet period later). Returns
        how many idle sandboxes are surplus now (0 while callers wait)."""
        want = self.want
        if want > self.size and now - self._pressed_at >= quiet:
            self._want = self.size + (want - self.size) // 2
            self._pressed_at = now
        if self.waiters:
            return 0
        return max(0, self.idle - self.want)

    def to_start(self, deferred: int = 0, scrubbing: int = 0) -> int:
        """New sandboxes to start now: refill to ``want`` idle, plus one per waiter,
        less the ``deferred`` replacements (see ``WarmPool._deferred``) while an idle
        sandbox remains, and less the ``scrubbing`` ones (reuse mode: idle again within
        milliseconds, far sooner than a new container)."""
        deferred = deferred if self.idle > 0 else 0
        want = self.want + self.waiters - self.idle - self.starting - deferred - scrubbing
        room = self.max_size - self.total
        return max(0, min(want, room))


class Changes:
    """Wakes whoever waits for the pool to change. No lock: the pool's state changes only
    between awaits of one event loop, and a waiter cancelled mid-wait must never queue for
    a lock to leave (``asyncio.Condition`` re-acquires its lock on cancel: a mass cancel
    deadlocked the pool's callers on Python 3.11.7, CPython gh-112202)."""

    def __init__(self) -> None:
        self._now = asyncio.Event()

    def notify_all(self) -> None:
        self._now.set()
        self._now = asyncio.Event()

    def next(self) -> asyncio.Event:
        """The event the next change sets: taken before awaiting, so none is missed."""
        return self._now


class PoolMember(Protocol):
    """One engine of the fleet as a warm pool needs it (a fleet's member)."""

    @property
    def url(self) -> str: ...

    @property
    def engine(self) -> Backend: ...

    @property
    def host(self) -> Host: ...


class WarmPool:
    """Sandboxes of one (image, shape) kept started and idle for the next run, spread
    over the engines that have the image."""

    def __init__(
        self,
        members: Sequence[PoolMember],
        shape: Shape,
        resources: Resources,
        env: Mapping[str, str],
        pool_id: str,
        *,
        size: int,
        max_size: int,
        grow_to: int | None = None,
        max_idle_age: float = 300.0,
        max_uses: int = 1,
        ready: Callable[[str], bool] = lambda url: True,
        on_dead_idle: Callable[[str], None] | None = None,
    ) -> None:
        self.members = {m.url: m for m in members}
        self.shape = shape
        self.resources = resources
        self.env = dict(env)
        self.pool_id = pool_id
        self.max_idle_age = max_idle_age
        self.max_uses = max_uses  # runs one sandbox serves (more than 1: reuse mode)
        self.placement = Placement()
        self._boxes: dict[str, collections.deque[Box]] = {}  # the idle ones, per engine
        for m in members:
            self.placement.add(m.host, ready=ready(m.url))
            self._boxes[m.url] = collections.deque()
        self.state = PoolState(self.placement, size=size, max_size=max_size, grow_to=grow_to)
        self.shrink_after = SHRINK_AFTER  # quiet seconds before a grown pool steps back
        # handed out, not yet released, with the engine each came from: closing kills them too
        self._leased: dict[Box, str] = {}
        # leased ones given back in reuse mode, being scrubbed: idle again soon
        self._scrubbing: set[Box] = set()
        # handed out while others stayed idle: their replacement waits for their run to end
        # (or DEFER_REFILL), so the engine's work of making it does not compete for the CPU
        # with that run; void the moment the pool runs out of idle sandboxes
        self._deferred: dict[Box, asyncio.TimerHandle] = {}
        self._changed = Changes()
        # every task this pool starts, kept here (not found by name): closing cancels the
        # starts and the janitor, and waits for all of them (removals run to their end)
        self._tasks: set[asyncio.Task[None]] = set()
        self._starts: dict[str, set[asyncio.Task[None]]] = {url: set() for url in self.members}
        self._replace_cancelled: set[asyncio.Task[None]] = set()  # see _start_cancelled
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
        for _ in range(self.state.to_start(len(self._deferred), len(self._scrubbing))):
            url = self.placement.choose_start(now)
            if url is None:
                break  # no engine can take one now: up, with the image, with room
            self._begin_start(url)

    def _begin_start(self, url: str) -> None:
        """Count a new sandbox as starting on ``url`` and start it in the background."""
        self.placement.begin_start(url)
        task = self._spawn(self._start_one(url), "sandboxkit-warm")
        starts = self._starts[url]
        starts.add(task)
        task.add_done_callback(starts.discard)
        task.add_done_callback(functools.partial(self._start_cancelled, url))

    async def _start_one(self, url: str) -> None:
        """Start one sandbox on ``url`` and count it out of "starting": idle, or failed.
        Nothing is awaited once the start is over, so a cancelled task is always one
        that never got that far (see _start_cancelled)."""
        member = self.members[url]
        delay = _backoff(self.placement.spots[url].failures)
        if delay:
            await asyncio.sleep(delay)
        try:
            box = await Box.start(member.engine, self.shape, self.resources, self.env, self.pool_id)
        except Exception as exc:  # noqa: BLE001 - remembered, surfaced to callers
            self.last_error = exc
            log.warning("sandboxkit: starting a sandbox on %s failed: %s", url, exc)
            self._start_failed(url)
            return
        self._settle(url, box)
        self._spawn(self._notify(), "sandboxkit-notify")

    def _start_cancelled(self, url: str, task: asyncio.Task[None]) -> None:
        """A start was cancelled, perhaps before it ran a line of its own: Box.start
        removed what it made; count it out here. Replaced only when its engine went down
        (``engine_down`` cancelled it): a start cancelled from outside, as ``asyncio.run``
        cancels every task before the loop's default pool closes, must not start another
        that would still be querying the engine while the loop shuts down."""
        replace = task in self._replace_cancelled
        self._replace_cancelled.discard(task)
        if task.cancelled():
            self._start_failed(url, replace=replace)

    def _start_failed(self, url: str, *, replace: bool = True) -> None:
        self.placement.end_start(url, ok=False, now=time.monotonic())
        if replace:
            self._refill()  # a replacement, where placement sees fit (none once closed)
        self._spawn(self._notify(), "sandboxkit-notify")

    def _settle(self, url: str, box: Box) -> None:
        """A start on ``url`` succeeded: the box joins the idle ones, unless the pool
        closed or the engine became unusable meanwhile (then it is replaced elsewhere)."""
        if self._closed or not self.placement.spots[url].usable:
            self.placement.start_dropped(url)
            self._drop(url, box, lost=not self._closed)
            self._refill()
            return
        self.placement.end_start(url, ok=True)
        self._boxes[url].append(box)
        self.last_error = None
        self.toolchain = box.toolchain or self.toolchain
        self._trim(url)

    def _drop(self, url: str, box: Box, *, lost: bool = False) -> None:
        """Destroy ``box``, counted as leaving already, in the background (abandon it,
        when its engine is down); its engine holds one sandbox less once that is done."""

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
        while not self._closed:
            period = max(0.5, min(30.0, self.max_idle_age / 4, self.shrink_after / 2))
            await asyncio.sleep(period)
            self._tidy(period)

    def _tidy(self, period: float) -> None:
        """One round of the janitor, ``period`` seconds before the next: idle sandboxes
        that died or would be too old by then leave and are replaced; a pool at rest
        but lopsided is rebalanced."""
        now = time.monotonic()
        keep_for = max(self.max_idle_age - period, period)
        for url, boxes in self._boxes.items():
            fresh: collections.deque[Box] = collections.deque()
            died = False
            for box in boxes:
                if box.alive and now - box.created < keep_for:
                    fresh.append(box)
                else:
                    died = died or not box.alive
                    self.placement.idle_gone(url)
                    self._drop(url, box)
            self._boxes[url] = fresh
            if died and self._on_dead_idle is not None:
                self._on_dead_idle(url)  # an engine whose sandboxes die: probe it
        self._shrink(self.state.relax(now, self.shrink_after))
        self._refill()
        if not self.state.waiters and not self.state.starting:
            # at rest but lopsided (a burst's refills went where there was room): start
            # the missing share; _trim retires the surplus once it is up
            short = self.placement.misplaced()
            if short is not None:
                self._rebalance(short)

    def _shrink(self, surplus: int) -> None:
        """Retire ``surplus`` idle sandboxes (demand fell): the oldest first, each from
        the engine furthest over its target, so what is left keeps the targets."""
        spots = self.placement.spots
        for _ in range(surplus):
            stocked = [u for u, boxes in self._boxes.items() if boxes]
            if not stocked:
                return
            url = max(
                stocked, key=lambda u: (spots[u].idle - spots[u].target, -self._boxes[u][0].created)
            )
            box = self._boxes[url].popleft()  # the oldest there
            self.placement.idle_gone(url)
            self._drop(url, box)

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
        if self.state.idle <= self.state.want + self.state.waiters:
            return
        over = [u for u, s in spots.items() if u != url and s.idle > s.target]
        if not over:
            return
        most = max(over, key=lambda u: spots[u].idle - spots[u].target)
        box = self._boxes[most].popleft()  # the oldest
        self.placement.idle_gone(most)
        self._drop(most, box)

    def discard(self, box: Box) -> None:
        """A used (or broken) sandbox: destroy it in the background and refill. Given
        back twice, the second time does nothing."""
        url = self._leased.pop(box, None)
        if url is None:
            return
        self._end_deferral(box, refill=False)  # the refill below starts its replacement
        self.placement.busy_done(url)
        self._drop(url, box)
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
        if url not in self.members:
            return
        for box in self._boxes[url]:
            self.placement.idle_gone(url)
            self._drop(url, box, lost=True)
        self._boxes[url].clear()
        for box, where in self._leased.items():
            if where == url:
                self._spawn(box.abandon(), "sandboxkit-abandon")
        for task in list(self._starts[url]):
            self._replace_cancelled.add(task)
            task.cancel()
        self.placement.host_changed()
        if self._serving:
            self._refill()
        self._spawn(self._notify(), "sandboxkit-notify")

    def engine_up(self, url: str) -> None:
        """``url`` is back: it takes its share of the warm pool again."""
        if url not in self.members:
            return
        self.placement.host_up(url)
        if self._serving:
            self._refill()
            self._rebalance(url)
        self._spawn(self._notify(), "sandboxkit-notify")

    def image_ready(self, url: str) -> None:
        """The pool's image arrived on ``url``: it can hold sandboxes of this pool now."""
        if url in self.members:
            self.image_errors.pop(url, None)
            self.placement.set_ready(url)
            if self._serving:
                self._refill()
                self._rebalance(url)
            self._spawn(self._notify(), "sandboxkit-notify")

    def image_failed(self, url: str, exc: BaseException) -> None:
        if url in self.members:
            self.image_errors[url] = exc
            self._spawn(self._notify(), "sandboxkit-notify")

    def image_gone(self, url: str) -> None:
        """``url`` came back without the pool's image: no sandbox there until it arrives."""
        if url in self.members:
            self.placement.set_ready(url, False)

    async def _notify(self) -> None:
        self._changed.notify_all()

    def _unservable(self) -> BaseException | None:
        """Why no engine can hold a sandbox of this pool, when that will not pass by
        waiting: every engine down, or the image failed to reach every engine up."""
        members = list(self.members.values())
        if not any(e.host.up for e in members):
            if len(members) == 1:
                return None  # one engine is never marked down
            return EngineUnavailable(
                "every engine of this pool is down: "
                + "; ".join(f"{e.url}" for e in members)
                + ". They are probed and re-admitted when they answer; "
                "`sandboxkit fleet status` shows them"
            )
        failed = [e.url for e in members if e.host.up and e.url in self.image_errors]
        if failed and len(failed) == sum(1 for e in members if e.host.up):
            return self.image_errors[failed[0]]
        return None

    # ------------------------------------------------------------------ public
    async def warm_up(self) -> None:
        """Start ``size`` sandboxes and wait for them; the first failure is raised.

        At once, not after the retries: a pool that cannot start a sandbox while opening
        is misconfigured (image, runtime, engine), and the caller should hear it now.
        """
        self._refill()
        while self.state.idle < self.state.size:
            if self.last_error is not None:
                raise self.last_error
            if self._closed:
                raise PoolClosed("the pool was closed while warming up")
            problem = self._unservable()
            if problem is not None:
                raise problem
            await self._changed.next().wait()

    async def acquire(self, timeout: float, avoid: frozenset[str] = frozenset()) -> Box:
        """An idle, live sandbox, waiting up to ``timeout`` seconds for one; from an engine
        in ``avoid`` only when no other has one."""
        # every call yields to the loop at least once: a caller retrying a failure in a
        # tight loop must not starve the fleet's watch that would cure it
        await asyncio.sleep(0)
        if self._closed:
            raise PoolClosed("the sandbox pool is closed; create a new one")
        deadline = time.monotonic() + timeout
        self.state.waiters += 1
        try:
            while True:
                while (url := self.placement.choose_idle(avoid)) is not None:
                    box = self._boxes[url].popleft()
                    too_old = time.monotonic() - box.created > self.max_idle_age
                    if box.alive and not too_old:
                        box.reusable = False  # until its holder's run ends cleanly
                        self.placement.idle_to_busy(url)
                        self._leased[box] = url
                        if self.state.idle > 0 and self.state.waiters == 1:
                            self._defer_refill(box)
                        elif not self.state.idle and self.state.starting and self.max_uses == 1:
                            # dry, with an earlier run's refill still on its way: runs
                            # outpace refills (the finally below starts the growth); in
                            # reuse mode a scrub, not a refill, serves the next run
                            self.state.pressure(time.monotonic())
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
                self.placement.resume_paused(now)
                if len(self._scrubbing) < self.state.waiters:
                    # a caller waits, and no scrub (milliseconds) will serve it: too small
                    self.state.pressure(now)
                self._refill()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PoolTimeout(
                        f"no sandbox became free within {timeout:.1f}s "
                        f"({self.state.busy} busy of at most {self.state.max_size}); "
                        "raise max_size or acquire_timeout, or run fewer at once"
                    )
                with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                    await asyncio.wait_for(self._changed.next().wait(), remaining)
        finally:
            self.state.waiters -= 1
            self._refill()

    def _defer_refill(self, box: Box) -> None:
        """Hold ``box``'s replacement back until it is released or DEFER_REFILL passed."""
        self._deferred[box] = asyncio.get_running_loop().call_later(
            DEFER_REFILL, self._end_deferral, box
        )

    def _end_deferral(self, box: Box, *, refill: bool = True) -> None:
        handle = self._deferred.pop(box, None)
        if handle is not None:
            handle.cancel()
            if refill:
                self._refill()

    async def release(self, box: Box, *, reuse: bool = False) -> None:
        """Done with ``box``: destroyed and replaced; or, with ``reuse`` (its run ended
        and nothing is pending in it), scrubbed in the background and idle again."""
        if reuse and box.alive and box.uses < self.max_uses and box in self._leased:
            self._end_deferral(box, refill=False)  # it may need no replacement
            self._scrubbing.add(box)
            self._spawn(self._scrub(box), "sandboxkit-scrub")
            return
        self.discard(box)
        self._changed.notify_all()

    async def _scrub(self, box: Box) -> None:
        """Make ``box`` as new and serve it again; destroyed (and replaced) when it is
        not clean, broken, or no longer wanted (the pool full meanwhile, or closed)."""
        clean = False
        try:
            with contextlib.suppress(SandboxkitError):
                clean = await box.scrub()
        finally:
            self._scrubbing.discard(box)
        url = self._leased.get(box)
        if url is None:
            return  # the pool closed meanwhile (it destroys leased boxes itself)
        wanted = self.state.idle < self.state.want + self.state.waiters
        if not (clean and wanted and box.alive and not self._closed):
            self.discard(box)
        else:
            del self._leased[box]
            self.placement.busy_to_idle(url)
            self._boxes[url].append(box)
        self._changed.notify_all()

    async def aclose(self) -> None:
        """Destroy every sandbox and stop background work; shielded and bounded."""
        with anyio.CancelScope(shield=True):
            self._closed = True
            for handle in self._deferred.values():
                handle.cancel()
            self._deferred.clear()
            for url, boxes in self._boxes.items():
                for box in boxes:
                    self.placement.idle_gone(url)
                    self._drop(url, box, lost=box.lost)
                boxes.clear()
            self._changed.notify_all()
            for starts in self._starts.values():
                for task in list(starts):
                    task.cancel()
            if self._janitor is not None:
                self._janitor.cancel()
            for box in self._leased:  # its holder's release counts it out later
                self._spawn(box.destroy(), "sandboxkit-destroy")
            with anyio.move_on_after(30):
                # cancelled starts count themselves out and notify in tasks of their own
                while left := [
                    t for t in (self._janitor, *self._tasks) if t is not None and not t.done()
                ]:
                    await asyncio.gather(*left, return_exceptions=True)

    def health(self) -> dict[str, int]:
        return {
            "idle": self.state.idle,
            "starting": self.state.starting,
            "busy": self.state.busy,
            "size": self.state.size,
            "want": self.state.want,
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
