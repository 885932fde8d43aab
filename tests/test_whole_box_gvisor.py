"""Whole-box sessions under gVisor (``runtime="runsc"``).

Under gVisor the engine's pids cgroup holds the sandbox kernel's own host threads
(~42, and ~9 more per process it runs), so at the sandbox's limit of 64 a background
process with two children ended the whole sandbox ("the sandbox container ended
unexpectedly"). The cgroup now has room for the sandbox kernel, and the sandbox's own
limit is RLIMIT_NPROC on the program's uid (see the Docker backend's ``engine_pids``).
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from collections.abc import AsyncIterator

import pytest
from test_whole_box import check_watch

import sandboxkit as sk

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(shutil.which("runsc") is None, reason="runsc (gVisor) is not installed"),
]


@pytest.fixture(scope="module")
async def gsb(pool: sk.SandboxPool) -> AsyncIterator[sk.Sandbox]:
    async with sk.Sandbox(pool=pool, runtime="runsc", keep_processes=True) as session:
        yield session


async def _background(sb: sk.Sandbox) -> list[sk.ProcessInfo]:
    return [p for p in await sb.processes() if p.background]


async def test_a_background_process_with_children_keeps_the_sandbox(gsb: sk.Sandbox) -> None:
    proc = await gsb.start("sh -c 'sleep 300 & sleep 300'", shell=True)
    deadline = time.monotonic() + 10
    while len(await _background(gsb)) < 4:  # the shell, its sh, two sleeps
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert (await gsb.run("print('alive')")).stdout == "alive\n"
    await gsb.kill(proc.pid, grace=0.5)
    assert (await proc.wait(timeout=10)).signal == signal.SIGTERM
    assert not await _background(gsb)


async def test_a_kept_forking_loop_keeps_the_sandbox(gsb: sk.Sandbox) -> None:
    left = await gsb.run(
        "import subprocess\n"
        "subprocess.Popen(['sh', '-c', 'while :; do sleep 0.02; done'])\n"
        "print('started')"
    )
    assert left.stdout == "started\n"
    for _ in range(3):  # each run's clean-up and reaping meet the loop's children
        await asyncio.sleep(0.3)
        assert (await gsb.run("print('alive')")).stdout == "alive\n"
    assert (await gsb.run("import os; print(os.getpid() > 1)")).stdout == "True\n"


async def test_the_pids_limit_holds_a_forkbomb_inside_the_sandbox(pool: sk.SandboxPool) -> None:
    async with sk.Sandbox(pool=pool, runtime="runsc", limits=sk.Limits(pids=32)) as box:
        counted = await box.run("import resource; print(resource.getrlimit(resource.RLIMIT_NPROC))")
        assert counted.stdout == "(32, 32)\n"
        bomb = await box.start(":(){ :|:& };:", shell=True)
        await asyncio.sleep(2)
        assert (await box.run("print('alive')")).stdout == "alive\n"
        assert len([p for p in await box.processes()]) <= 32
        await box.kill(bomb.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while await _background(box):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert (await box.run("print('still')")).stdout == "still\n"


async def test_watch_under_gvisor(gsb: sk.Sandbox) -> None:
    await check_watch(gsb)  # inotify works under gVisor too
