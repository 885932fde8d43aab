"""A Python program run inline tells the agent its status just before its exit, and the
run's report goes out without waiting for the exit to tear the forked address space
down (issue 25: the agent's ``_take_notice``). These check, on real Docker, that the
status, the usage and the sandbox after the run are what they were when the report
waited for the reap, and that a program cannot use the notice to run on."""

from __future__ import annotations

import pytest

import sandboxkit as sk

pytestmark = pytest.mark.docker


@pytest.mark.parametrize(
    ("code", "exit_code", "stderr_has"),
    [
        ("print('fine')", 0, ""),
        ("import sys\nsys.exit(3)", 3, ""),
        ("raise ValueError('no')", 1, "ValueError: no"),
        ("raise SystemExit('a message')", 1, "a message"),
        ("import os, sys\nsys.stdout.flush()\nos._exit(5)", 5, ""),
    ],
)
async def test_the_status_is_the_programs(
    pool: sk.SandboxPool, code: str, exit_code: int, stderr_has: str
) -> None:
    async with sk.Sandbox(pool=pool) as sb:
        for _ in range(2):  # the first run and one after it in the same sandbox
            r = await sb.run(code)
            assert r.exit_code == exit_code and r.signal is None, (r.status, r.stderr)
            assert stderr_has in r.stderr
            assert r.cpu_time is not None and r.cpu_time >= 0
            assert r.memory_mb and r.memory_mb > 1


async def test_a_forked_child_ending_as_a_program_does_not_speak_for_it(
    pool: sk.SandboxPool,
) -> None:
    # the child falls off the end of the program first (as the program would end); the
    # run's status is still its own process's, given after the child's end
    code = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    sys.exit(7)\n"
        "os.wait()\n"
        "time.sleep(0.05)\n"
        "sys.exit(3)\n"
    )
    async with sk.Sandbox(pool=pool) as sb:
        for _ in range(3):
            r = await sb.run(code)
            assert r.exit_code == 3, (r.status, r.stderr)


async def test_the_next_run_sees_nothing_of_the_last(pool: sk.SandboxPool) -> None:
    async with sk.Sandbox(pool=pool) as sb:
        for _ in range(5):
            first = await sb.run("import os\nprint(os.getpid())")
            pid = int(first.stdout)
            r = await sb.run(f"import os\nprint(os.path.exists('/proc/{pid}'))")
            assert r.stdout == "False\n", r.stderr


# A program that writes a notice of its own (status 0), closes its output and means to
# go on: it is ended where it says it ends, with the status it gave; nothing it meant to
# do after that happens, in the run or the next one.
FORGER = r"""
import ctypes, os, resource, struct, sys, time
maps = open('/proc/self/maps').read().splitlines()
pages = [l for l in maps if 'rw-s' in l and ('/dev/zero' in l or 'SYSV' in l)]
for line in pages:
    lo = int(line.split('-')[0], 16)
    ctypes.memmove(lo + 2048, struct.pack('<QqqdQ', 0x5AFE_E417_0000_0001,
                                          os.getpid(), 0, 0.0, 1), 40)
print(len(pages), flush=True)
os.closerange(0, 3)
time.sleep(0.3)
open('/tmp/ran-on', 'w').write('still here')
sys.exit(9)
"""


async def test_a_forged_notice_ends_the_program(pool: sk.SandboxPool) -> None:
    async with sk.Sandbox(pool=pool) as sb:
        r = await sb.run(FORGER)
        # either the notice was taken (the program ended at once with the status it
        # wrote) or it was not (it ran on to its own end, status 9): never a mix
        if r.exit_code == 0:
            assert r.duration < 0.3, r
        else:
            assert r.exit_code == 9, (r.status, r.stderr)
        await sb.run("import time\ntime.sleep(0.5)")
        r2 = await sb.run("import os\nprint(os.path.exists('/tmp/ran-on'))")
        assert r2.stdout == ("True\n" if r.exit_code == 9 else "False\n")


async def test_a_memory_kill_is_not_hidden_by_a_notice(pool: sk.SandboxPool) -> None:
    # the program prints and ends well; a process it left behind is killed by the OOM
    # killer: the run says so, as before
    code = (
        "import os\n"
        "if os.fork() == 0:\n"
        "    os.closerange(0, 3)\n"
        "    block = bytearray(300 << 20)\n"
        "    os._exit(0)\n"
        "os.wait()\n"
        "print('done')\n"
    )
    r = await pool.run(code, limits=sk.Limits(memory_mb=128))
    assert r.status == "oom" and r.ended_by == "memory", r
