"""The warm pool's one book of counts, without Docker.

``PoolState`` decides what to start from the counts its ``Placement`` keeps; the
placement moves a sandbox between phases in its spot's, its pool's and its host's
tallies at once. A ``WarmPool`` over fake engines (whose starts succeed, fail or hang on
command) is driven through every transition, and a seeded random walk through hundreds,
with the invariant checked after each step: every total is the sum over engines,
nothing is negative, no pool holds more than ``max_size``, no engine more than its
capacity, and the pool's boxes and tasks match its counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

import sandboxkit as sk
from sandboxkit._container import Box, Resources, Shape
from sandboxkit._fleet import pool as _pool
from sandboxkit._fleet.placement import (
    FAILURES_TO_PAUSE,
    RETRY_AFTER,
    Counts,
    Host,
    Placement,
    backoff,
)
from sandboxkit._fleet.pool import GROW_EVERY, PoolState, WarmPool

PHASES = ("starting", "idle", "busy", "leaving")
# the random walk's steps; the common ones weighted up so the pool is used in between
MOVES = ["take"] * 4 + ["give"] * 4 + ["tick"] * 3
MOVES += ["kill_idle", "kill_busy", "age", "tidy", "down", "up", "mode", "image", "undefer"]
MOVES += ["quiet"]


# --------------------------------------------------------------------------- PoolState
def book(
    size: int,
    max_size: int,
    *,
    idle: int = 0,
    starting: int = 0,
    busy: int = 0,
    grow_to: int | None = None,
) -> PoolState:
    """A one-engine pool's state, its sandboxes brought to those phases by transitions."""
    placement = Placement(random.Random(0))
    placement.add(Host("e0"), ready=True)
    state = PoolState(placement, size=size, max_size=max_size, grow_to=grow_to)
    for _ in range(idle + busy):
        placement.begin_start("e0")
        placement.end_start("e0", ok=True)
    for _ in range(busy):
        placement.idle_to_busy("e0")
    for _ in range(starting):
        placement.begin_start("e0")
    return state


@pytest.mark.parametrize(("size", "max_size"), [(-1, 4), (3, 2), (0, 0)])
def test_state_rejects_bad_sizes(size: int, max_size: int) -> None:
    with pytest.raises(ValueError, match="size"):
        PoolState(Placement(), size=size, max_size=max_size)


def test_state_reads_its_counts_from_the_placement() -> None:
    state = book(3, 5, idle=2, starting=1, busy=1)
    assert (state.idle, state.starting, state.busy, state.total) == (2, 1, 1, 4)
    assert state.size == state.placement.size == 3
    state.placement.idle_gone("e0")  # one call: the pool's count follows, nothing else
    assert (state.idle, state.total) == (1, 3)


def test_state_fills_to_size_from_empty() -> None:
    assert book(3, 5).to_start() == 3


def test_state_counts_starting_and_idle_towards_size() -> None:
    assert book(3, 5, idle=2, starting=1).to_start() == 0
    assert book(3, 5, idle=1, starting=1).to_start() == 1


def test_state_starts_one_per_waiter_within_max_size() -> None:
    # 4 callers wait, 3 sandboxes busy: 3 + 4 wanted, but only 2 more fit under 5
    state = book(3, 5, busy=3)
    state.waiters = 4
    assert state.total == 3
    assert state.to_start() == 2


def test_state_never_exceeds_max_size_nor_goes_negative() -> None:
    full = book(2, 2, busy=2)
    full.waiters = 9
    assert full.to_start() == 0
    assert book(1, 4, idle=4).to_start() == 0


def test_state_size_zero_starts_only_on_demand() -> None:
    state = book(0, 3)
    assert state.to_start() == 0
    state.waiters = 2
    assert state.to_start() == 2


def test_state_defers_replacements_only_while_an_idle_sandbox_remains() -> None:
    # one of two handed out, its replacement deferred: nothing starts during its run
    assert book(2, 4, idle=1, busy=1).to_start(deferred=1) == 0
    assert book(2, 4, idle=1, busy=1).to_start() == 1
    # the last idle one went too: every replacement starts now, deferred or not
    assert book(2, 4, busy=2).to_start(deferred=1) == 2


# --------------------------------------------------------------------------- sizing to demand
def test_pressure_doubles_want_at_most_once_per_grow_every() -> None:
    state = book(2, 16, grow_to=16)
    assert state.want == 2
    assert state.pressure(0.0) and state.want == 4
    # the rest of the burst's callers, finding it dry at the same moment: no more growth
    assert not state.pressure(0.0) and not state.pressure(GROW_EVERY / 2)
    assert state.want == 4
    assert state.pressure(GROW_EVERY) and state.want == 8
    assert state.to_start() == 8  # refills go to want, not to size


def test_growth_stops_at_the_lower_of_max_size_and_the_engines_capacity() -> None:
    by_capacity = book(2, 16, grow_to=5)
    by_max_size = book(2, 6, grow_to=100)
    for t in range(10):
        by_capacity.pressure(t * GROW_EVERY)
        by_max_size.pressure(t * GROW_EVERY)
    assert (by_capacity.grow_to, by_capacity.want) == (5, 5)
    assert (by_max_size.grow_to, by_max_size.want) == (6, 6)
    # a capacity below size never cuts size: size is the user's promise
    assert book(4, 8, grow_to=2).grow_to == 4


def test_a_size_zero_pool_starts_per_run_and_never_grows() -> None:
    state = book(0, 8, grow_to=8)
    assert not state.pressure(0.0)
    assert (state.want, state.to_start()) == (0, 0)


def test_a_size_one_pool_grows_from_one() -> None:
    state = book(1, 8, grow_to=8)
    assert state.pressure(0.0) and state.want == 2


def test_want_steps_halfway_back_to_size_after_each_quiet_period() -> None:
    state = book(2, 32, grow_to=32, idle=18)
    for t in range(4):
        state.pressure(t * GROW_EVERY)
    assert state.want == 32
    pressed = 3 * GROW_EVERY
    # pressure within the quiet period keeps it
    assert state.relax(pressed + 1.0, quiet=10.0) == 0 and state.want == 32
    assert state.relax(pressed + 10.0, quiet=10.0) == 1  # 2 + 30 // 2 = 17 wanted, 18 idle
    assert state.want == 17
    assert state.relax(pressed + 15.0, quiet=10.0) == 1  # the next step waits a whole period
    steps = [state.relax(pressed + 10.0 * k, quiet=10.0) for k in range(2, 7)]
    assert state.want == 2 and steps[-1] == 16  # back at size: 16 idle beyond it
    assert state.relax(1e6, quiet=10.0) == 16 and state.want == 2  # never below size


def test_no_idle_sandbox_is_surplus_while_callers_wait() -> None:
    state = book(2, 8, idle=5)
    assert state.relax(0.0) == 3
    state.waiters = 1
    assert state.relax(0.0) == 0


def test_leaving_sandboxes_take_engine_room_but_not_pool_room() -> None:
    state = book(1, 1, busy=1)
    state.placement.busy_done("e0")  # given back; its container is still being removed
    host = state.placement.spots["e0"].host
    assert (state.total, host.live, state.to_start()) == (0, 1, 1)
    state.placement.freed("e0")
    assert host.live == 0


def test_backoff_doubles_and_is_capped() -> None:
    seen = [backoff(failures) for failures in range(0, 12)]
    assert seen[0] == 0.0
    assert seen[1] == pytest.approx(0.2)
    assert seen[2] == pytest.approx(0.4)
    assert seen[3] == pytest.approx(0.8)
    assert all(b <= 10.0 for b in seen)
    assert seen[-1] == 10.0
    assert seen == sorted(seen)


# --------------------------------------------------------------------------- Placement
def summed(counts: Sequence[Counts]) -> Counts:
    out = Counts()
    for c in counts:
        for phase in PHASES:
            setattr(out, phase, getattr(out, phase) + getattr(c, phase))
    return out


def check_placements(placements: Sequence[Placement], hosts: Sequence[Host]) -> None:
    """Each pool's total is the sum of its spots, each host's the sum of every pool's
    spots on it; nothing is negative."""
    for placement in placements:
        for spot in placement.spots.values():
            assert min(dataclasses.astuple(spot.counts)) >= 0, spot
        assert placement.total == summed([s.counts for s in placement.spots.values()])
    for host in hosts:
        mine = [p.spots[host.key].counts for p in placements if host.key in p.spots]
        assert host.counts == summed(mine), host
        assert host.capacity is None or host.live <= host.capacity, host


def test_every_transition_moves_one_sandbox_in_all_three_tallies() -> None:
    a, b = Host("a"), Host("b")
    one, two = Placement(random.Random(1)), Placement(random.Random(2))
    for placement in (one, two):  # two pools sharing both engines
        placement.add(a, ready=True)
        placement.add(b, ready=True)
        placement.retarget(2)

    def phases(key: str) -> tuple[int, ...]:
        return dataclasses.astuple(one.spots[key].counts)

    steps: list[tuple[str, tuple[int, int, int, int]]] = [
        ("begin_start", (1, 0, 0, 0)),
        ("end_start", (0, 1, 0, 0)),
        ("idle_to_busy", (0, 0, 1, 0)),
        ("busy_done", (0, 0, 0, 1)),
        ("freed", (0, 0, 0, 0)),
        ("begin_start", (1, 0, 0, 0)),
        ("start_failed", (0, 0, 0, 0)),
        ("begin_start", (1, 0, 0, 0)),
        ("start_dropped", (0, 0, 0, 1)),
        ("freed", (0, 0, 0, 0)),
        ("begin_start", (1, 0, 0, 0)),
        ("end_start", (0, 1, 0, 0)),
        ("idle_gone", (0, 0, 0, 1)),
        ("freed", (0, 0, 0, 0)),
    ]
    two.begin_start("a")  # the other pool's sandbox on the same host counts there too
    for step, want in steps:
        if step == "end_start":
            one.end_start("a", ok=True)
        elif step == "start_failed":
            one.end_start("a", ok=False, now=1.0)
        else:
            getattr(one, step)("a")
        assert phases("a") == want, step
        assert phases("b") == (0, 0, 0, 0)
        check_placements([one, two], [a, b])
    assert a.live == 1 and one.spots["a"].failures == 0  # dropped after a success


def test_a_host_going_down_and_up_moves_targets_and_forgets_failures() -> None:
    a, b = Host("a"), Host("b")
    placement = Placement(random.Random(0))
    placement.add(a, ready=True)
    placement.add(b, ready=True)
    placement.retarget(4)
    for _ in range(3):
        placement.begin_start("b")
        placement.end_start("b", ok=False, now=10.0)
    b.up = False
    placement.host_changed()
    assert [s.target for s in placement.spots.values()] == [4, 0]
    b.up = True
    placement.host_up("b")
    assert [s.target for s in placement.spots.values()] == [2, 2]
    assert placement.spots["b"].failures == 0


def test_a_paused_host_gets_one_more_try_after_retry_after() -> None:
    placement = Placement(random.Random(0))
    placement.add(Host("a"), ready=True)
    placement.retarget(1)
    for _ in range(FAILURES_TO_PAUSE):
        placement.begin_start("a")
        placement.end_start("a", ok=False, now=0.0)
    assert placement.all_paused(1.0) and placement.choose_start(1.0) is None
    placement.resume_paused(1.0)  # too early: still left alone
    assert placement.all_paused(1.0)
    placement.resume_paused(RETRY_AFTER + 1)
    assert not placement.all_paused(RETRY_AFTER + 1)
    assert placement.choose_start(RETRY_AFTER + 1) == "a"
    placement.begin_start("a")
    placement.end_start("a", ok=False, now=RETRY_AFTER + 1)  # failed again: paused again
    assert placement.all_paused(RETRY_AFTER + 2)


# --------------------------------------------------------------------------- WarmPool
class FakeBox:
    """What a warm pool uses of a Box: alive, its age, destroy, abandon."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.created = time.monotonic()
        self.toolchain: str | None = "fake 1.0"
        self.dead = False  # its container exited on its own
        self.lost = False
        self.closed = False

    @property
    def alive(self) -> bool:
        return not (self.dead or self.lost or self.closed)

    async def abandon(self) -> None:
        self.lost = True

    async def destroy(self) -> None:
        if self.closed:
            return
        self.closed = True
        await asyncio.sleep(0)
        if not self.lost:  # a lost box is left for the engine's restart or the sweep
            self.engine.containers.discard(self)


class FakeEngine:
    """An engine as a warm pool sees it (``url``, ``backend``, ``host``) whose starts do
    what ``mode`` says: ``ok``, ``fail``, or ``hang`` until ``unhang()``."""

    def __init__(self, url: str, capacity: int | None = None) -> None:
        self.url = url
        self.host = Host(url, capacity=capacity)
        self.engine = self
        self.mode = "ok"
        self.gate = asyncio.Event()
        self.containers: set[FakeBox] = set()
        self.cancelled = 0  # starts cancelled half-way

    def unhang(self) -> None:
        self.gate.set()
        self.gate = asyncio.Event()

    async def start(self) -> FakeBox:
        try:
            await asyncio.sleep(0)
            if self.mode == "hang":
                await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.mode == "fail":
            raise sk.SandboxError("the fake engine refused to start a sandbox")
        box = FakeBox(self)
        self.containers.add(box)
        return box


async def fake_box_start(backend: FakeEngine, *args: Any) -> FakeBox:
    return await backend.start()


@pytest.fixture
def fake_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Box, "start", fake_box_start)
    monkeypatch.setattr(_pool, "_backoff", lambda failures: 0.0)  # no sleeping in tests


def warm_pool(engines: Sequence[FakeEngine], size: int, max_size: int) -> WarmPool:
    return WarmPool(engines, Shape("fake"), Resources(), {}, "p1", size=size, max_size=max_size)


def check(pools: Sequence[WarmPool], engines: Sequence[FakeEngine]) -> None:
    """The invariant, true whenever the test's task runs."""
    check_placements([wp.placement for wp in pools], [e.host for e in engines])
    for wp in pools:
        state = wp.state
        assert 0 <= state.total <= state.max_size, wp.health()
        assert state.waiters >= 0 and len(wp._deferred) <= state.busy
        for url, spot in wp.placement.spots.items():
            assert len(wp._boxes[url]) == spot.idle  # the idle boxes are the idle count
            assert sum(1 for where in wp._leased.values() if where == url) == spot.busy
            # a start is counted until it settles or fails; a cancelled one until its
            # done-callback ran (in the same batch as the one that forgets the task)
            held = [t for t in wp._starts[url] if not t.done() or t.cancelled()]
            assert spot.starting == len(held), (url, spot.counts, wp._starts[url])


async def settle(rounds: int = 30) -> None:
    """Let every ready task and callback run (starts here take one or two rounds)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


@pytest.fixture
async def engines(fake_starts: None) -> AsyncIterator[list[FakeEngine]]:
    yield [FakeEngine("e0"), FakeEngine("e1", capacity=5), FakeEngine("e2")]


async def test_warm_up_fills_the_targets_and_a_run_cycle_is_counted(
    engines: list[FakeEngine],
) -> None:
    wp = warm_pool(engines, size=6, max_size=8)
    try:
        await wp.warm_up()
        check([wp], engines)
        assert [s.idle for s in wp.placement.spots.values()] == [2, 2, 2]
        box = await wp.acquire(1.0)
        check([wp], engines)
        assert (wp.state.idle, wp.state.busy, len(wp._deferred)) == (5, 1, 1)
        assert wp.state.starting == 0  # its replacement waits for the run
        await wp.release(box)
        check([wp], engines)
        assert wp.state.busy == 0 and wp.state.starting == 1  # released: replaced now
        await settle()
        check([wp], engines)
        assert (wp.state.idle, wp.placement.total.leaving) == (6, 0)
        assert sum(len(e.containers) for e in engines) == 6
        await wp.release(box)  # given back twice: nothing more happens
        check([wp], engines)
    finally:
        await wp.aclose()
    check([wp], engines)
    assert wp.placement.total == Counts()
    assert all(not e.containers for e in engines)


async def test_a_failed_start_is_counted_out_and_surfaces_from_warm_up(
    engines: list[FakeEngine],
) -> None:
    for e in engines:
        e.mode = "fail"
    wp = warm_pool(engines, size=3, max_size=3)
    try:
        with pytest.raises(sk.SandboxError, match="refused"):
            await wp.warm_up()
        check([wp], engines)
        assert all(s.failures >= 1 for s in wp.placement.spots.values())
        for e in engines:
            e.mode = "ok"
        box = await wp.acquire(1.0)  # failed starts were replaced; this one worked
        check([wp], engines)
        await wp.release(box)
    finally:
        await wp.aclose()
    check([wp], engines)
    assert wp.placement.total == Counts()


async def test_an_engine_going_down_drops_its_idle_and_abandons_its_busy(
    engines: list[FakeEngine],
) -> None:
    e0 = engines[0]
    wp = warm_pool(engines, size=6, max_size=9)
    try:
        await wp.warm_up()
        busy = [await wp.acquire(1.0, avoid=frozenset({"e1", "e2"})) for _ in range(2)]
        assert [wp._leased[b] for b in busy] == ["e0", "e0"]
        e0.mode = "hang"
        for b in busy:  # their replacements go to e0, short of its target, and hang there
            wp._end_deferral(b)
        await settle()
        assert wp.placement.spots["e0"].starting >= 1
        e0.host.up = False  # what the fleet does, then it tells each pool
        wp.engine_down("e0")
        check([wp], engines)
        spot = wp.placement.spots["e0"]
        assert (spot.idle, spot.target) == (0, 0)
        assert spot.busy == 2  # until their holders give them back
        await settle()
        check([wp], engines)
        assert spot.starting == 0 and e0.cancelled >= 1
        assert all(b.lost for b in busy)  # their runs' streams end now
        for b in busy:
            await wp.release(b)
            check([wp], engines)
        await settle()
        check([wp], engines)
        assert spot.counts == Counts()
        assert wp.state.idle == 6  # its share moved to the others
        e0.mode = "ok"
        e0.host.up = True
        wp.engine_up("e0")
        await settle()
        check([wp], engines)
        assert spot.target == 2 and spot.idle == 2
    finally:
        await wp.aclose()
    check([wp], engines)


async def test_a_box_lost_while_busy_is_counted_out_and_replaced(
    engines: list[FakeEngine],
) -> None:
    wp = warm_pool(engines, size=3, max_size=3)
    try:
        await wp.warm_up()
        box = await wp.acquire(1.0)
        box.dead = True  # its container died during the run
        check([wp], engines)
        await wp.release(box)
        await settle()
        check([wp], engines)
        assert (wp.state.idle, wp.state.busy, wp.placement.total.leaving) == (3, 0, 0)
        wp._idle[0].dead = True  # an idle one dies: the next acquire skips it
        other = await wp.acquire(1.0)
        assert other.alive
        check([wp], engines)
        await wp.release(other)
    finally:
        await wp.aclose()
    check([wp], engines)


async def test_closing_during_warm_up_cancels_the_starts_the_pool_owns(
    engines: list[FakeEngine],
) -> None:
    for e in engines:
        e.mode = "hang"
    wp = warm_pool(engines, size=3, max_size=3)
    warming = asyncio.get_running_loop().create_task(wp.warm_up())
    await settle()
    assert wp.state.starting == 3
    check([wp], engines)
    await wp.aclose()
    with pytest.raises(sk.PoolClosed):
        await warming
    check([wp], engines)
    assert sum(e.cancelled for e in engines) == 3
    assert wp.placement.total == Counts()
    # nothing the pool owns still runs once aclose returns
    assert all(t.done() for t in wp._tasks) and wp._janitor is not None and wp._janitor.done()
    assert all(not e.containers for e in engines)


async def test_a_start_cancelled_before_it_ran_is_counted_out(
    engines: list[FakeEngine],
) -> None:
    wp = warm_pool(engines, size=3, max_size=3)
    try:
        wp._refill()  # three starts scheduled, none has run yet...
        engines[0].host.up = False
        wp.engine_down("e0")  # ...when their engine goes down in the same tick
        check([wp], engines)
        await settle()
        check([wp], engines)
        assert wp.placement.spots["e0"].starting == 0
        assert wp.state.idle == 3  # replaced on the engines still up
    finally:
        await wp.aclose()
    check([wp], engines)


async def test_a_start_cancelled_from_outside_is_counted_out_and_not_replaced(
    engines: list[FakeEngine],
) -> None:
    """``asyncio.run`` cancels every task before the loop's default pool closes: a start
    cancelled so must not start another, still querying the engine at shutdown."""
    for e in engines:
        e.mode = "hang"
    wp = warm_pool(engines, size=3, max_size=3)
    try:
        wp._refill()
        await settle()
        starts = [t for ts in wp._starts.values() for t in ts]
        assert len(starts) == 3
        for task in starts:
            task.cancel()  # as asyncio.run's shutdown does
        await settle()
        check([wp], engines)
        assert wp.state.starting == 0
        assert not any(wp._starts.values())  # nothing new started
        assert sum(e.cancelled for e in engines) == 3
    finally:
        await wp.aclose()
    check([wp], engines)


async def test_a_start_ending_on_an_engine_no_longer_usable_is_dropped_and_replaced(
    engines: list[FakeEngine],
) -> None:
    e0, e1 = engines[:2]
    wp = warm_pool([e0, e1], size=2, max_size=2)
    try:
        e0.mode = "hang"
        wp._refill()
        await settle()
        assert [s.counts for s in wp.placement.spots.values()] == [
            Counts(starting=1),
            Counts(idle=1),
        ]
        wp.placement.set_ready("e0", False)  # its image is gone (a re-admitted engine)
        e0.mode = "ok"
        e0.unhang()  # the start there succeeds now: too late, the box is not kept
        await settle()
        check([wp], [e0, e1])
        assert wp.placement.spots["e0"].counts == Counts()
        assert [b.lost for b in e0.containers] == [True]  # left to the sweep at re-admission
        assert wp.placement.spots["e1"].idle == 2  # its replacement went where it can serve
    finally:
        await wp.aclose()
    check([wp], [e0, e1])


async def test_the_janitor_rebalances_a_lopsided_pool_at_rest(
    engines: list[FakeEngine],
) -> None:
    e0, e1 = engines[:2]
    wp = WarmPool(
        [e0, e1],
        Shape("fake"),
        Resources(),
        {},
        "p1",
        size=2,
        max_size=3,
        ready=lambda url: url == "e0",  # the image is on e0 alone at first
    )
    try:
        await wp.warm_up()
        assert [s.idle for s in wp.placement.spots.values()] == [2, 0]
        oldest = wp._boxes["e0"][0]
        wp.placement.set_ready("e1")  # the image reached e1 without the pool being told
        wp._tidy(1.0)  # a janitor's round: the pool is at size but lopsided
        check([wp], [e0, e1])
        assert wp.placement.spots["e1"].starting == 1
        await settle()
        check([wp], [e0, e1])
        # the missing share started on e1, then the surplus on e0 (its oldest) retired
        assert [s.idle for s in wp.placement.spots.values()] == [1, 1]
        assert oldest.closed and wp.placement.total.leaving == 0
    finally:
        await wp.aclose()
    check([wp], [e0, e1])


async def test_closing_while_sandboxes_are_held_counts_them_out_when_given_back(
    engines: list[FakeEngine],
) -> None:
    wp = warm_pool(engines, size=3, max_size=3)
    await wp.warm_up()
    held = [await wp.acquire(1.0), await wp.acquire(1.0)]
    assert len(wp._deferred) >= 1
    await wp.aclose()
    check([wp], engines)
    assert all(b.closed for b in held)  # destroyed at the close, under their holders
    assert (wp.state.idle, wp.state.busy, len(wp._deferred)) == (0, 2, 0)
    for box in held:
        await wp.release(box)
        check([wp], engines)
    await settle()
    assert wp.placement.total == Counts() and wp.state.starting == 0  # nothing new made
    assert all(e.host.counts == Counts() and not e.containers for e in engines)


async def test_a_deferred_replacement_starts_when_its_timer_ends(
    engines: list[FakeEngine],
) -> None:
    wp = warm_pool(engines[:1], size=2, max_size=4)
    try:
        await wp.warm_up()
        box = await wp.acquire(1.0)
        assert (wp.state.starting, len(wp._deferred)) == (0, 1)
        wp._end_deferral(box)  # what the DEFER_REFILL timer calls
        check([wp], engines[:1])
        assert (wp.state.starting, len(wp._deferred)) == (1, 0)
        await wp.release(box)
    finally:
        await wp.aclose()
    check([wp], engines[:1])


async def test_a_pool_outpaced_by_its_runs_grows_then_retires_its_extras_when_quiet(
    engines: list[FakeEngine],
) -> None:
    engine = engines[0]
    wp = warm_pool([engine], size=2, max_size=8)
    try:
        await wp.warm_up()
        engine.mode = "hang"  # containers take a while to make: runs outpace refills
        held = [await wp.acquire(1.0), await wp.acquire(1.0)]
        await settle()
        assert (wp.state.want, wp.state.starting) == (2, 2)  # just the two replacements
        waiter = asyncio.get_running_loop().create_task(wp.acquire(5.0))
        await settle()
        check([wp], [engine])
        # a caller waits: want doubled, its starts on the way with one for the waiter
        assert wp.state.want == 4 and wp.health()["want"] == 4
        assert wp.state.starting == 4 + 1
        engine.unhang()
        held.append(await waiter)
        await settle()
        check([wp], [engine])
        assert (wp.state.idle, wp.state.busy) == (4, 3)
        for box in held:
            await wp.release(box)
        await settle()
        assert wp.state.idle == 4 and len(engine.containers) == 4  # the grown pool stays

        wp._tidy(1.0)  # within the quiet period: nothing retired
        await settle()
        assert (wp.state.want, wp.state.idle) == (4, 4)
        wp.shrink_after = 0.0  # every round now comes after a quiet period
        wp._tidy(1.0)
        await settle()
        check([wp], [engine])
        assert (wp.state.want, wp.state.idle) == (3, 3)
        oldest = min(box.created for box in engine.containers)
        wp._tidy(1.0)
        await settle()
        check([wp], [engine])
        assert (wp.state.want, wp.state.idle, wp.state.starting) == (2, 2, 0)
        assert len(engine.containers) == 2  # retired ones are destroyed, not leaked
        assert all(box.created > oldest for box in engine.containers)  # oldest went first
    finally:
        await wp.aclose()
    await settle()
    check([wp], [engine])
    assert not engine.containers and wp.placement.total == Counts()


async def test_a_random_walk_through_every_transition_keeps_the_invariant(
    engines: list[FakeEngine],
) -> None:
    """Hundreds of steps in a seeded random order, over two pools sharing three engines
    (one with a capacity): runs taken and given back, sandboxes dying idle or busy or
    growing old, starts failing or hanging, engines and images going and coming back,
    the janitor's rounds, deferred refills ending; then close while starts hang."""
    rng = random.Random(20)
    pools = [warm_pool(engines, size=3, max_size=5), warm_pool(engines, size=2, max_size=3)]
    for wp in pools:
        await wp.warm_up()
    check(pools, engines)
    held: list[tuple[WarmPool, Any]] = []
    callers: list[asyncio.Task[None]] = []

    async def take(wp: WarmPool) -> None:
        # a time-out, every engine down or failing: counted all the same
        with contextlib.suppress(sk.SandboxkitError):
            held.append((wp, await wp.acquire(0.05)))

    def pick_engine() -> FakeEngine:
        return rng.choice(engines)

    seen: set[str] = set()
    grew = False
    for _step in range(400):
        wp = rng.choice(pools)
        move = rng.choice(MOVES)
        if move == "take":
            callers.append(asyncio.get_running_loop().create_task(take(wp)))
        elif move == "give" and held:
            owner, box = held.pop(rng.randrange(len(held)))
            await owner.release(box)
        elif move == "kill_idle" and wp._idle:
            rng.choice(wp._idle).dead = True
        elif move == "kill_busy" and held:
            rng.choice(held)[1].dead = True
        elif move == "age" and wp._idle:
            rng.choice(wp._idle).created -= wp.max_idle_age
        elif move == "tidy":
            wp._tidy(1.0)
        elif move == "quiet":  # a round of the janitor after demand fell: extras retire
            wp.shrink_after = 0.0
            wp._tidy(1.0)
            wp.shrink_after = _pool.SHRINK_AFTER
        elif move == "down":
            engine = pick_engine()
            if engine.host.up:
                engine.host.up = False
                for each in pools:
                    each.engine_down(engine.url)
        elif move == "up":
            engine = pick_engine()
            if not engine.host.up:
                engine.host.up = True
                for each in pools:
                    each.engine_up(engine.url)
        elif move == "mode":
            engine = pick_engine()
            engine.mode = rng.choice(["ok", "ok", "fail", "hang"])
            if engine.mode != "hang":
                engine.unhang()
        elif move == "image":
            url = pick_engine().url
            if rng.random() < 0.5:
                wp.placement.set_ready(url, False)  # what a re-admitted engine lacking it does
            else:
                wp.image_ready(url)
        elif move == "undefer" and wp._deferred:
            wp._end_deferral(rng.choice(list(wp._deferred)))
        else:
            await settle(rng.randrange(1, 6))
        seen.add(move)
        grew = grew or any(each.state.want > each.state.size for each in pools)
        check(pools, engines)
        await asyncio.sleep(0)
        check(pools, engines)
    assert seen >= {"take", "give", "kill_idle", "down", "up", "mode", "tidy", "undefer", "quiet"}
    assert grew, "no pool grew under the walk's pressure"

    for engine in engines:
        engine.mode = "hang"  # close while starts hang
    for wp in pools:
        wp._refill()
    await settle()
    for wp in pools:
        await wp.aclose()
        check(pools, engines)
    for task in callers:
        task.cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    for owner, box in held:  # holders give back after the close: counted out, no new box
        await owner.release(box)
        check(pools, engines)
    await settle()
    check(pools, engines)
    for wp in pools:
        assert wp.placement.total == Counts(), wp.placement.total
        assert not wp._tasks and not wp._deferred
    assert all(e.host.counts == Counts() for e in engines)
    assert all(b.lost for e in engines for b in e.containers)  # only abandoned ones left
