"""Crash-proof cleanup: nothing is left when the SDK's process dies or exits, and the
reaper removes only what belongs to dead owners."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import sandboxkit as sk
from sandboxkit._backends import Backend, connect
from sandboxkit._fleet.labels import LABEL_MANAGED, LABEL_OWNER
from sandboxkit._fleet.reaper import reap

pytestmark = pytest.mark.docker


def identity_of(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        start = f.read().rsplit(")", 1)[1].split()[19]
    return f"{os.uname().nodename}:{pid}:{start}"


async def owned_by(engine: Backend, owner: str) -> list[str]:
    return [c.id for c in await engine.list_containers({LABEL_OWNER: owner})]


async def wait_none_owned(engine: Backend, owner: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (left := await owned_by(engine, owner)) and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
    assert not left, f"{len(left)} container(s) of {owner} remain"


def python(code: str, *, stderr: int | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        cwd=os.getcwd(),
    )


def start_labelled_container(owner: str) -> str:
    """A plain long-lived container carrying sandboxkit's labels (not from a pool)."""
    out = subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--rm",
            "--network",
            "none",
            "--label",
            f"{LABEL_MANAGED}=1",
            "--label",
            f"{LABEL_OWNER}={owner}",
            "sandboxkit/base:bookworm",
            "sleep",
            "600",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


async def test_sigkill_during_20_runs_leaves_nothing() -> None:
    child = python("""
        import asyncio, sys
        import sandboxkit as sk

        async def one(pool, started):
            async for ev in pool.stream("import time\\nprint('up', flush=True)\\ntime.sleep(60)",
                                        limits=sk.Limits(time=120)):
                if ev.kind == "stdout":
                    started.append(1)
                    if len(started) == 20:
                        print("RUNNING", flush=True)

        async def main():
            pool = sk.SandboxPool(size=2, max_size=24, acquire_timeout=120)
            await pool.open()
            started = []
            await asyncio.gather(*(one(pool, started) for _ in range(20)))

        asyncio.run(main())
    """)
    engine = connect()
    try:
        owner = identity_of(child.pid)
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 240)
        assert line == "RUNNING\n"
        assert len(await owned_by(engine, owner)) >= 20
        child.send_signal(signal.SIGKILL)
        child.wait()
        await asyncio.sleep(1)
        report = await reap(engine)
        assert not report.failed
        # AutoRemove + StdinOnce end most by themselves; the reaper took the rest
        await wait_none_owned(engine, owner)
    finally:
        if child.poll() is None:
            child.kill()
        await engine.close()


async def test_reaper_keeps_live_owners_and_removes_dead_ones(pool: sk.SandboxPool) -> None:
    sleeper = subprocess.Popen(["sleep", "600"])
    engine = connect()
    made: list[str] = []
    try:
        live = identity_of(sleeper.pid)
        reused = live.rsplit(":", 1)[0] + ":1"  # same pid, another start time: PID reuse
        cid_live = start_labelled_container(live)
        cid_reused = start_labelled_container(reused)
        made += [cid_live, cid_reused]
        mine = {b.cid for w in pool._pools.values() for b in w._idle}
        assert mine

        # (on a shared engine another process's pool start may reap the dead one first)
        report = await reap(engine)
        assert cid_live not in report.removed and not mine & set(report.removed)
        await wait_none_owned(engine, reused)
        assert await engine.inspect(cid_live) is not None
        r = await pool.run("print('still here')")  # this process's warm sandboxes survived
        assert r.stdout == "still here\n"

        sleeper.kill()
        sleeper.wait()
        report = await reap(engine)
        assert not report.failed
        await wait_none_owned(engine, live)
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
        for cid in made:
            subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
        await engine.close()


async def test_foreign_hosts_and_unlabelled_owners_are_never_touched() -> None:
    engine = connect()
    cid = start_labelled_container("some-other-host:1:1")
    try:
        report = await reap(engine)
        assert cid not in report.removed
        assert await engine.inspect(cid) is not None
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
        await engine.close()


@pytest.mark.parametrize("ending", ["returns", "exception", "sys.exit"])
async def test_default_pool_leaves_nothing_when_the_process_exits(ending: str) -> None:
    tail = {"returns": "", "exception": "raise RuntimeError('boom')", "sys.exit": "sys.exit(3)"}[
        ending
    ]
    child = python(
        f"""
        import asyncio, sys
        import sandboxkit as sk

        async def main():
            r = await sk.Sandbox.run("print(1)")
            print("RAN", r.stdout.strip(), flush=True)
            async with sk.Sandbox() as sb:
                await sb.run("x = 1")
            {tail}

        asyncio.run(main())
    """,
        stderr=subprocess.PIPE,
    )
    engine = connect()
    try:
        owner = identity_of(child.pid)
        out, err = await asyncio.to_thread(child.communicate, timeout=180)
        assert out.startswith("RAN 1\n")
        assert child.returncode == {"returns": 0, "exception": 1, "sys.exit": 3}[ending]
        assert await owned_by(engine, owner) == []  # gone at exit, not later
        # and quietly: no refill still querying the engine while the loop shuts down
        # ("aclose(): asynchronous generator is already running"), nothing left pending
        for noise in ("asynchronous generator", "Task was destroyed", "Unclosed"):
            assert noise not in err, err
    finally:
        if child.poll() is None:
            child.kill()
        await engine.close()


async def test_cli_reap(pool: sk.SandboxPool) -> None:
    dead = f"{os.uname().nodename}:999999999:1"
    cid = start_labelled_container(dead)
    cli = os.path.join(os.path.dirname(sys.executable), "sandboxkit")
    # on a shared engine, any other process's pool start may reap it first: both fine
    out = subprocess.run([cli, "reap", "--dry-run"], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "would remove" in out.stderr, out.stderr
    out = subprocess.run([cli, "reap"], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "kept" in out.stderr, out.stderr
    engine = connect()
    try:
        assert await engine.inspect(cid) is None
    finally:
        await engine.close()
    assert (await pool.run("print(2)")).stdout == "2\n"
