"""The warm pool on real Docker (its counts without Docker: ``test_pool_state.py``).

Real-Docker tests make their own small pools (not the shared ``pool`` fixture) because
they kill containers, exhaust pools and close them.
"""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest
from conftest import containers_of_pool, images_of, scratch_language

import sandboxkit as sk
from sandboxkit._container import Box
from sandboxkit._fleet.pool import WarmPool
from sandboxkit._languages import get_language

PY = get_language("python")


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": -1},
        {"size": 257},
        {"size": "2"},
        {"size": True},
        {"size": 4, "max_size": 3},
        {"size": 0, "max_size": 0},
        {"acquire_timeout": 0},
        {"runtime": "kata"},
    ],
)
def test_pool_arguments_are_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(sk.InvalidInput):
        sk.SandboxPool(**kwargs)  # type: ignore[arg-type]


def test_max_size_defaults_to_the_engines_capacity() -> None:
    pool = sk.SandboxPool(size=2)
    assert pool.max_size == 6  # before the engine answered: max(2 * size, size + 4)
    engine = pool.fleet.members[0].host
    engine.weight = 16.0  # what a 4-core engine's CPUs make it (4 sandboxes per CPU)
    assert (pool.capacity, pool.max_size) == (16, 16)
    engine.capacity = 3  # a configured capacity wins; the floor stays
    assert (pool.capacity, pool.max_size) == (3, 6)
    assert sk.SandboxPool(size=2, max_size=3).max_size == 3  # given: as given


@pytest.mark.docker
async def test_an_open_pool_may_grow_to_the_engines_capacity() -> None:
    async with sk.SandboxPool(size=2) as pool:
        wp = _warm(pool)
        assert pool.capacity > 1  # learnt from the engine's CPUs and memory
        assert wp.state.max_size == pool.max_size == max(6, pool.capacity)
        assert wp.state.grow_to == pool.capacity


# --------------------------------------------------------------------------- real Docker


def _warm(pool: sk.SandboxPool) -> WarmPool:
    (wp,) = pool._pools.values()
    return wp


async def _until(cond: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


@pytest.mark.docker
async def test_refill_starts_several_at_once_within_max_size() -> None:
    async with sk.SandboxPool(size=0, max_size=3) as pool:
        wp = await pool._warm_pool(PY, pool.limits)
        wp.placement.retarget(3)  # as if configured with size=3: one refill starts all three
        wp._refill()
        assert wp.state.starting == 3
        wp._refill()  # nothing more: three already on the way
        assert wp.state.starting == 3
        seen_total = []

        async def one() -> None:
            seen_total.append(wp.state.total)
            result = await pool.run("print(2 + 2)")
            assert result.stdout == "4\n"
            seen_total.append(wp.state.total)

        await asyncio.gather(*(one() for _ in range(6)))
        assert max(seen_total) <= 3


@pytest.mark.docker
async def test_warm_up_failure_surfaces_from_async_with() -> None:
    # an image that builds but whose agent, in a sandbox (where the engine mounted its
    # own directory), exits at once (site runs a .pth file's import lines even under
    # -I): no sandbox can become ready
    quit_at_start = (
        "echo 'import os; os.path.isdir(\"/run/sandboxkit\") and os._exit(3)'"
        " > /usr/lib/python3/dist-packages/zz-quit.pth"
    )
    with scratch_language(PY.extend("pybroken-pooltest", setup=[quit_at_start])) as broken:
        pool = sk.SandboxPool(languages=[broken.name], size=1)
        with pytest.raises(sk.SandboxError, match=r"ended unexpectedly|ready"):
            async with pool:
                pytest.fail("a pool that cannot start a sandbox must not open")
        assert pool.closed
        assert containers_of_pool(pool.pool_id) == []
        assert images_of(broken.name)
    assert images_of(broken.name) == []  # nothing left for `sandboxkit images list`


@pytest.mark.docker
async def test_dead_idle_sandbox_is_replaced() -> None:
    async with sk.SandboxPool(size=2) as pool:
        wp = _warm(pool)
        victim: Box = wp._idle[0]  # the next one acquire would hand out
        subprocess.run(["docker", "kill", victim.cid], capture_output=True, check=True)
        await _until(lambda: not victim.alive)
        async with pool.checkout(PY, pool.limits) as box:
            assert box.cid != victim.cid
            assert box.alive
        result = await pool.run("print('alive')")
        assert result.status == "ok" and result.stdout == "alive\n"
        await _until(lambda: victim.cid[:12] not in " ".join(containers_of_pool(pool.pool_id)))


@pytest.mark.docker
async def test_too_old_idle_sandbox_is_replaced() -> None:
    async with sk.SandboxPool(size=1, max_idle_age=60) as pool:
        wp = _warm(pool)
        old = wp._idle[0]
        old.created -= 61  # as if it had idled a minute (no sleeping, no timing race)
        async with pool.checkout(PY, pool.limits) as box:
            assert box.cid != old.cid
            assert time.monotonic() - box.created < 60
        await _until(lambda: old.cid[:12] not in " ".join(containers_of_pool(pool.pool_id)))


@pytest.mark.docker
async def test_idle_sandboxes_are_tended_in_the_background() -> None:
    # no caller comes: dead and expiring idle sandboxes are still replaced, so the next
    # caller finds a live one without waiting for a container to be created
    async with sk.SandboxPool(size=2, max_idle_age=4) as pool:  # checked every second
        wp = _warm(pool)
        dead, aged = list(wp._idle)
        subprocess.run(["docker", "kill", dead.cid], capture_output=True, check=True)
        aged.created -= 3
        await _until(
            lambda: (
                wp.state.idle == 2
                and not {dead, aged} & set(wp._idle)
                and all(b.alive for b in wp._idle)
            )
        )
        await _until(
            lambda: not {dead.cid[:12], aged.cid[:12]} & set(containers_of_pool(pool.pool_id))
        )


@pytest.mark.docker
async def test_a_replacement_waits_for_the_run_while_another_sandbox_is_idle() -> None:
    async with sk.SandboxPool(size=2) as pool:
        wp = _warm(pool)
        async with pool.checkout(PY, pool.limits):
            assert (wp.state.idle, wp.state.starting, len(wp._deferred)) == (1, 0, 1)
            async with pool.checkout(PY, pool.limits):  # the last idle one: no waiting
                assert len(wp._deferred) == 1 and wp.state.starting == 2
        await _until(lambda: wp.state.idle == 2 and not wp._tasks)
        assert (len(wp._deferred), wp.state.total) == (0, 2)

        async with pool.checkout(PY, pool.limits):
            assert wp.state.starting == 0
        assert not wp._deferred and wp.state.starting == 1  # released: now
        await _until(lambda: wp.state.idle == 2)

        async with pool.checkout(PY, pool.limits):  # a long run: not left a spare short
            await _until(lambda: wp.state.starting + wp.state.idle == 2, timeout=2)
            assert not wp._deferred


@pytest.mark.docker
async def test_exhausted_pool_times_out_with_pool_timeout() -> None:
    async with sk.SandboxPool(size=1, max_size=1, acquire_timeout=1.0) as pool:
        async with pool.checkout(PY, pool.limits):
            t0 = time.monotonic()
            with pytest.raises(sk.PoolTimeout, match="max_size"):
                await pool.run("print(1)")
            assert time.monotonic() - t0 >= 0.9
        # once the lease ends, the pool serves again
        result = await pool.run("print(1)")
        assert result.stdout == "1\n"


@pytest.mark.docker
async def test_closing_drains_every_container() -> None:
    pool = sk.SandboxPool(size=2)
    async with pool:
        assert len(containers_of_pool(pool.pool_id)) >= 2
        await pool.run("print(1)")
        session = sk.Sandbox(pool=pool)
        await session.__aenter__()  # still open when the pool closes
        held = pool.checkout(PY, pool.limits)
        await held.__aenter__()
    assert containers_of_pool(pool.pool_id) == []
    with pytest.raises(sk.PoolClosed):
        await pool.run("print(1)")
    # letting go of what was held after the close is harmless and makes nothing new
    await held.__aexit__(None, None, None)
    await session.aclose()
    assert containers_of_pool(pool.pool_id) == []


@pytest.mark.docker
async def test_each_container_serves_exactly_one_run() -> None:
    code = (
        "import os\n"
        "print(os.path.exists('/tmp/mark'), os.path.exists('mark'))\n"
        "open('/tmp/mark', 'w').write('x'); open('mark', 'w').write('x')\n"
    )
    async with sk.SandboxPool(size=1) as pool:
        for _ in range(3):
            result = await pool.run(code)
            assert result.status == "ok", result
            assert result.stdout == "False False\n"
        async with pool.checkout(PY, pool.limits) as first:
            pass
        async with pool.checkout(PY, pool.limits) as second:
            assert second.cid != first.cid
        await _until(lambda: first.cid[:12] not in " ".join(containers_of_pool(pool.pool_id)))


@pytest.mark.docker
async def test_runs_back_to_back_grow_the_pool_which_shrinks_when_quiet_and_leaves_nothing() -> (
    None
):
    pool = sk.SandboxPool(size=2, max_size=6)
    async with pool:
        wp = _warm(pool)
        for _ in range(12):  # a loop of runs: faster than containers are made
            result = await pool.run("print(1)")
            assert result.stdout == "1\n", result
        grown = wp.state.want
        assert 2 < grown <= 6, wp.health()
        assert pool.health()[next(iter(pool.health()))]["want"] == grown
        # the grown pool fills up: more idle sandboxes than size, all of them real
        await _until(lambda: wp.state.idle >= 3 and not wp.state.starting, timeout=30)
        assert len(containers_of_pool(pool.pool_id)) >= 3
        # quiet (the period shortened for the test; the janitor notices within its round
        # of up to 7.5 s): back to size, the extras removed from the engine
        wp.shrink_after = 1.0
        await _until(lambda: wp.state.want == 2 and wp.state.idle == 2, timeout=40)
        await _until(lambda: len(containers_of_pool(pool.pool_id)) == 2, timeout=20)
        assert (await pool.run("print(2)")).stdout == "2\n"  # and it still serves
    assert containers_of_pool(pool.pool_id) == []
