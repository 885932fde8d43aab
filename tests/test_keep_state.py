"""keep_state sessions (real Docker): what survives a cell, and ``RunResult.state_lost``
when the interpreter does not."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

import sandboxkit as sk

pytestmark = pytest.mark.docker


async def test_system_exit_ends_the_cell_and_keeps_the_variables(pool: sk.SandboxPool) -> None:
    async with sk.Sandbox(pool=pool, keep_state=True) as sb:
        await sb.run("import sys\nx = 1")
        r = await sb.run("x += 1\nprint('before')\nsys.exit(0)\nprint('after')")
        assert (r.status, r.exit_code, r.stdout, r.state_lost) == ("ok", 0, "before\n", False)
        r = await sb.run("x += 1\nsys.exit(3)")
        assert (r.status, r.exit_code, r.state_lost) == ("error", 3, False)
        r = await sb.run("x += 1\nexit()")
        assert (r.status, r.exit_code, r.state_lost) == ("ok", 0, False)
        r = await sb.run("x")
        assert (r.stdout, r.state_lost) == ("4\n", False)


async def test_a_cell_that_ends_the_interpreter_says_the_state_was_lost(
    pool: sk.SandboxPool,
) -> None:
    async with sk.Sandbox(pool=pool, keep_state=True) as sb:
        assert not (await sb.run("x = 1")).state_lost
        r = await sb.run("import os\nos._exit(0)")  # cannot be caught: the interpreter ends
        assert (r.status, r.state_lost) == ("ok", True)
        r = await sb.run("print('x' in globals())")
        assert (r.stdout, r.state_lost) == ("False\n", False)  # said once, by the run above
        await sb.run("y = 2")
        r = await sb.run("while True: pass", limits=sk.Limits(time=1))
        assert (r.status, r.state_lost) == ("timeout", True)
        r = await sb.run("print('y' in globals())")
        assert (r.stdout, r.state_lost) == ("False\n", False)
        await sb.run("z = 3")
        r = await sb.run("b = b'x' * 400_000_000", limits=sk.Limits(memory_mb=128))
        assert (r.status, r.state_lost) == ("oom", True)
        r = await sb.run("print('z' in globals())")
        assert (r.stdout, r.state_lost) == ("False\n", False)


async def test_a_kernel_that_died_between_runs_is_reported_by_the_next_run(
    pool: sk.SandboxPool,
) -> None:
    # a process kept running kills the kernel once the host says "go", then waits for it
    # to be gone (reaped by the supervisor) and leaves "killed"
    killer = (
        "import os, subprocess\nx = 1\nk = os.getpid()\nsubprocess.Popen(['sh', '-c', "
        "f'while [ ! -e go ]; do sleep 0.01; done; kill -9 {k}; "
        "while kill -0 {k} 2>/dev/null; do sleep 0.01; done; touch killed'])"
    )
    async with sk.Sandbox(pool=pool, keep_state=True, keep_processes=True) as sb:
        assert (await sb.run(killer)).state_lost is False
        await sb.write_file("go", b"")
        for _ in range(500):
            if "killed" in {e.path for e in await sb.list_files()}:
                break
            await asyncio.sleep(0.02)
        r = await sb.run("print('x' in globals())")
        assert (r.status, r.stdout, r.state_lost) == ("ok", "False\n", True)
        assert (await sb.run("print(1)")).state_lost is False


async def test_a_stream_abandoned_mid_cell_has_the_next_result_say_so(
    pool: sk.SandboxPool,
) -> None:
    async with sk.Sandbox(pool=pool, keep_state=True) as sb:
        await sb.run("x = 1")
        async with sb.stream("import time\nprint('up', flush=True)\ntime.sleep(30)") as events:
            async for ev in events:
                if ev.kind == "stdout":
                    break  # the cell is killed, and the interpreter with it
        r = await sb.run("print('x' in globals())")
        assert (r.stdout, r.state_lost) == ("False\n", True)
        assert (await sb.run("print(1)")).state_lost is False


async def test_a_sandbox_lost_mid_cell_loses_the_state(pool: sk.SandboxPool) -> None:
    async with sk.Sandbox(pool=pool, keep_state=True) as sb:
        await sb.run("x = 1")
        assert sb._box is not None
        cid = sb._box.cid
        result = None
        async with sb.stream("import time\nprint('up', flush=True)\ntime.sleep(30)") as events:
            killed = False
            async for ev in events:
                if ev.kind == "stdout" and not killed:  # the print may come in two chunks
                    subprocess.run(["docker", "kill", cid], capture_output=True, check=True)
                    killed = True
                if ev.result is not None:
                    result = ev.result
        assert result is not None
        assert (result.status, result.state_lost) == ("error", True)
        assert "sandbox ended during the run" in result.stderr


async def test_top_level_await_in_a_session(pool: sk.SandboxPool) -> None:
    async with sk.Sandbox(pool=pool, keep_state=True) as sb:
        r = await sb.run(
            "import asyncio\nasync def double(n):\n    await asyncio.sleep(0)\n    return 2 * n\n"
            "x = await double(21)\nprint(x)"
        )
        assert (r.status, r.stdout, r.stderr) == ("ok", "42\n", "")
        r = await sb.run("await double(x)")  # an awaited last expression is shown too
        assert (r.status, r.stdout) == ("ok", "84\n")
        # a task left pending by one cell runs on in a later one: one loop for the session
        await sb.run(
            "ev = asyncio.Event()\ntask = asyncio.create_task(ev.wait())\nawait asyncio.sleep(0)"
        )
        r = await sb.run("ev.set()\nawait task")
        assert (r.status, r.stdout, r.state_lost) == ("ok", "True\n", False)
