"""A subset of the suite under each runtime: runc, and runsc (gVisor) where installed."""

from __future__ import annotations

import pytest

import sandboxkit as sk

from ._invariants import check
from .test_lifecycle import OUTLIVERS, PID1_ATTACKS
from .test_resources import FORK_BOMBS, MEMORY_BOMBS

pytestmark = [pytest.mark.docker, pytest.mark.hostile]

SUBSET = {
    "fork-bomb": (FORK_BOMBS["py-fork-loop"], "timeout", sk.Limits(time=3)),
    "memory-bomb": (MEMORY_BOMBS["append-loop"], "oom", sk.Limits(memory_mb=96, time=20)),
    "self-sigkill": ("import os\nos.kill(os.getpid(), 9)\n", "error", None),
    "daemon": (OUTLIVERS["double-fork-daemon"], "ok", sk.Limits(time=30)),
    "background-writer": (OUTLIVERS["background-writer-holding-stdout"], "ok", sk.Limits(time=30)),
    "kill-pid1": (PID1_ATTACKS["every-signal-to-1"], "ok", None),
    "flood": (
        "while True:\n    print('y' * 1000)\n",
        "output_limit",
        sk.Limits(output_bytes=10_000, time=20),
    ),
    "timeout": ("while True:\n    pass\n", "timeout", sk.Limits(time=2)),
    "network": (
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9), 2)\n"
        "except OSError as e:\n    print('refused', e.errno)\n",
        "ok",
        None,
    ),
    "caps": ("print(open('/proc/self/status').read().count('0000000000000000'))\n", "ok", None),
}


@pytest.mark.parametrize("name", sorted(SUBSET))
async def test_hostile_subset_under_each_runtime(
    any_runtime_pool: sk.SandboxPool, name: str
) -> None:
    code, status, limits = SUBSET[name]
    wanted: tuple[str, ...] = (status,)
    if any_runtime_pool.runtime == "runsc" and name == "fork-bomb":
        # gVisor runs every task inside one sandbox kernel: the process limit there is
        # RLIMIT_NPROC (the pids cgroup is sized for the kernel's host threads), and
        # each task costs that kernel host memory, so a fork bomb either stalls at the
        # limit until the wall clock runs out or ends the whole sandbox at the memory
        # limit (contained, reported as a status)
        wanted = ("timeout", "error", "oom")
    r = await check(any_runtime_pool, code, wanted, limits=limits)
    if r.status == "error" and status != "error":
        assert "sandbox ended during the run" in r.stderr
    if name == "network":
        assert r.stdout.startswith("refused")
