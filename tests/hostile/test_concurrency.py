"""Concurrency: no cross-talk, a benign neighbour during a bomb, cancellation mid-run."""

from __future__ import annotations

import asyncio
import secrets

import pytest

import sandboxkit as sk

from ._invariants import canary, containers, settle, view

pytestmark = [pytest.mark.docker, pytest.mark.hostile]


async def test_no_cross_talk_between_simultaneous_runs(hostile_pool: sk.SandboxPool) -> None:
    nonces = [secrets.token_hex(8) for _ in range(8)]
    code = (
        "import os, sys, time\nme = sys.stdin.read().strip()\n"
        "for d in ('/work', '/tmp', '/dev/shm'):\n    open(f'{d}/{me}', 'w').write(me)\n"
        "time.sleep(0.5)\n"
        "seen = sorted(set(os.listdir('/work') + os.listdir('/tmp') + os.listdir('/dev/shm')))\n"
        "print(me, open('data').read(), seen)\n"
        "print(me, file=sys.stderr)\n"
    )
    results = await asyncio.gather(
        *(
            hostile_pool.run(
                code, stdin=n + "\n", files={"data": n.encode()}, limits=sk.Limits(time=30)
            )
            for n in nonces
        )
    )
    for n, r in zip(nonces, results, strict=True):
        assert r.status == "ok", r
        assert r.stdout == f"{n} {n} {sorted(['data', 'main.py', n])}\n"
        assert r.stderr == f"{n}\n"
    await settle(hostile_pool)
    await canary(hostile_pool)


async def test_benign_neighbour_during_a_fork_bomb(hostile_pool: sk.SandboxPool) -> None:
    bomb = asyncio.create_task(
        hostile_pool.run(
            "import os\nwhile True:\n    try:\n        os.fork()\n"
            "    except OSError:\n        pass\n",
            limits=sk.Limits(time=4),
        )
    )
    await asyncio.sleep(1.0)
    neighbours = [await hostile_pool.run(f"print(sum(range({i} * 1000)))") for i in range(5)]
    assert [r.stdout for r in neighbours] == [f"{sum(range(i * 1000))}\n" for i in range(5)]
    assert all(r.status == "ok" for r in neighbours)
    assert (await bomb).status == "timeout"
    await settle(hostile_pool)


@pytest.mark.parametrize("where", ["running", "streaming", "flooding"])
async def test_cancellation_mid_run_leaves_no_container(
    hostile_pool: sk.SandboxPool, where: str
) -> None:
    codes = {
        "running": "import time\nprint('started', flush=True)\ntime.sleep(100)\n",
        "streaming": "import time\nwhile True:\n    print('tick', flush=True)\n"
        "    time.sleep(0.01)\n",
        "flooding": "print('started', flush=True)\nwhile True:\n    print('x' * 10000)\n",
    }
    started = asyncio.Event()

    async def consume() -> None:
        async for ev in hostile_pool.stream(codes[where], limits=sk.Limits(time=60)):
            if ev.kind == "stdout":
                started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 30)
    busy_before = view(hostile_pool).busy
    assert busy_before == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle(hostile_pool)
    assert not (await containers(hostile_pool)) - view(hostile_pool).idle
    await canary(hostile_pool)


async def test_breaking_out_of_a_stream_leaves_no_container(
    hostile_pool: sk.SandboxPool,
) -> None:
    agen = hostile_pool.stream(
        "while True:\n    print('tick', flush=True)\n", limits=sk.Limits(time=60)
    )
    async for ev in agen:
        if ev.kind == "stdout":
            break
    await agen.aclose()
    await settle(hostile_pool)
    await canary(hostile_pool)


async def test_timeouts_of_many_simultaneous_runs(hostile_pool: sk.SandboxPool) -> None:
    results = await asyncio.gather(
        *(hostile_pool.run("while True:\n    pass\n", limits=sk.Limits(time=2)) for _ in range(6))
    )
    assert [r.status for r in results] == ["timeout"] * 6
    await settle(hostile_pool)
    await canary(hostile_pool)
