"""Engine faults: sandboxes killed under the pool, and (opt-in) a Docker engine restart.

Killing one of our own containers through the engine is safe on a shared machine and
always runs. Restarting the engine is not (it kills every container of every user), so
that part runs only with ``SANDBOXKIT_ENGINE_FAULTS=1``; the command that restarts the
engine is ``SANDBOXKIT_ENGINE_RESTART_CMD`` (default ``service docker restart``).

What must hold: an in-flight run ends within its deadline with a status (its container
was killed while the engine stayed up) or an ``EngineError`` (the engine went away),
never a hang; the pool notices dead idle sandboxes and refills; the next run works once
the engine is back, without a new pool.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import time

import pytest

import sandboxkit as sk
from sandboxkit._run.reader import HOST_GRACE

from ._invariants import GRACE, canary, settle, view

pytestmark = [pytest.mark.docker, pytest.mark.hostile]

ENGINE_FAULTS = os.environ.get("SANDBOXKIT_ENGINE_FAULTS") == "1"
RESTART_CMD = os.environ.get("SANDBOXKIT_ENGINE_RESTART_CMD", "service docker restart")


def docker_kill(cid: str) -> None:
    subprocess.run(["docker", "kill", cid], capture_output=True, check=False)


async def test_idle_sandboxes_killed_under_the_pool_are_replaced(
    hostile_pool: sk.SandboxPool,
) -> None:
    await settle(hostile_pool)
    for cid in view(hostile_pool).idle:
        docker_kill(cid)
    deadline = time.monotonic() + 30
    boxes = [b for w in hostile_pool._pools.values() for b in w._idle]
    while any(b.alive for b in boxes) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not any(b.alive for b in boxes)  # the pool can tell: Box.alive went false
    r = await hostile_pool.run("print('fresh')")
    assert (r.status, r.stdout) == ("ok", "fresh\n")
    await settle(hostile_pool)
    await canary(hostile_pool)


async def test_in_flight_run_whose_container_is_killed_ends_promptly(
    hostile_pool: sk.SandboxPool,
) -> None:
    lim = sk.Limits(time=60)
    started = asyncio.Event()
    result: list[sk.RunResult] = []

    async def consume() -> None:
        async for ev in hostile_pool.stream(
            "import time\nprint('up', flush=True)\ntime.sleep(100)\n", limits=lim
        ):
            if ev.kind == "stdout":
                started.set()
            if ev.result is not None:
                result.append(ev.result)

    await settle(hostile_pool)
    idle_before = view(hostile_pool).idle
    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 30)
    (victim,) = idle_before - view(hostile_pool).idle  # the warm sandbox the run took
    t = time.monotonic()
    docker_kill(victim)
    await asyncio.wait_for(task, 30)  # not the 60 s wall limit
    assert time.monotonic() - t < 30
    (r,) = result
    assert r.status == "error" and "sandbox ended during the run" in r.stderr
    await settle(hostile_pool)
    await canary(hostile_pool)


def restart_engine() -> None:
    subprocess.run(shlex.split(RESTART_CMD), check=True, timeout=120)


async def wait_engine(pool: sk.SandboxPool, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await pool.engine.info()
            return
        except sk.SandboxkitError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)


async def run_when_back(pool: sk.SandboxPool, timeout: float = 120) -> sk.RunResult:
    """The first runs after a restart may fail with a clear engine error; then they work."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await pool.run("print('back')")
        except (sk.EngineError, sk.PoolError, sk.SandboxError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)


@pytest.mark.skipif(
    not ENGINE_FAULTS,
    reason="restarts the Docker engine: set SANDBOXKIT_ENGINE_FAULTS=1 on a machine of your own",
)
async def test_engine_restart_during_runs() -> None:
    async with sk.SandboxPool(size=2) as pool:
        lim = sk.Limits(time=30)
        runs = [
            asyncio.create_task(pool.run("import time\ntime.sleep(100)\n", limits=lim))
            for _ in range(3)
        ]
        await asyncio.sleep(2)
        t = time.monotonic()
        await asyncio.to_thread(restart_engine)
        outcomes = await asyncio.wait_for(
            asyncio.gather(*runs, return_exceptions=True), lim.time + HOST_GRACE + GRACE
        )
        assert time.monotonic() - t <= lim.time + HOST_GRACE + GRACE
        for o in outcomes:
            # the engine's fault is an exception that says so; never a hang, never "ok"
            assert isinstance(o, sk.SandboxkitError) or (
                isinstance(o, sk.RunResult) and o.status in ("error", "timeout")
            ), o
        await wait_engine(pool)
        r = await run_when_back(pool)
        assert (r.status, r.stdout) == ("ok", "back\n")
        await settle(pool)


@pytest.mark.skipif(
    not ENGINE_FAULTS,
    reason="restarts the Docker engine: set SANDBOXKIT_ENGINE_FAULTS=1 on a machine of your own",
)
async def test_engine_restart_while_the_pool_is_idle() -> None:
    async with sk.SandboxPool(size=2) as pool:
        await settle(pool)
        await asyncio.to_thread(restart_engine)
        await wait_engine(pool)
        r = await run_when_back(pool)
        assert (r.status, r.stdout) == ("ok", "back\n")
        await settle(pool)  # the dead warm sandboxes were noticed and replaced
        await canary(pool)
