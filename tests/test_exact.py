"""Exact mode: interpreted programs by their real command, per pool, per run and in the
Judge0 server's settings; the fast path stays the default."""

from __future__ import annotations

import asyncio

import pytest

import sandboxkit as sk

pytestmark = pytest.mark.docker

# what a pre-loaded interpreter cannot hide: its argv, and the modules it had imported
# (ctypes: the zygote's own, which every spare it clones inherits, see agent/_zygote.py)
PROBE = (
    "import sys\n"
    "argv = open('/proc/self/cmdline', 'rb').read().split(b'\\0')\n"
    "print(b'main.py' in argv, 'ctypes' in sys.modules)"
)
# how long node has been running: a pre-started one since its sandbox was made
NODE_PROBE = "console.log(process.argv[1], performance.now() > 1500 ? 'old' : 'new')"


async def test_exact_per_run_and_per_pool(pool: sk.SandboxPool) -> None:
    fast = await pool.run(PROBE)
    exact = await pool.run(PROBE, exact=True)
    assert (fast.stdout, exact.stdout) == ("False True\n", "True False\n"), (fast, exact)
    async with sk.SandboxPool(languages=["python"], size=1, exact=True) as strict:
        assert (await strict.run(PROBE)).stdout == "True False\n"
        assert (await strict.run(PROBE, exact=False)).stdout == "False True\n"
        assert (await sk.Sandbox.run(PROBE, pool=strict)).stdout == "True False\n"


async def test_exact_runs_node_by_its_own_command() -> None:
    async with sk.SandboxPool(languages=["javascript"], size=2) as js:
        await asyncio.sleep(2.0)  # the warm sandboxes' pre-started node ages meanwhile
        fast = await js.run(NODE_PROBE, language="javascript")
        exact = await js.run(NODE_PROBE, language="javascript", exact=True)
    assert (fast.stdout, exact.stdout) == ("/work/main.js old\n", "/work/main.js new\n")


async def test_exact_reaches_the_judge() -> None:
    async with sk.SandboxPool(languages=["python"], size=1, exact=True) as strict:
        report = await sk.judge(PROBE, tests=[sk.TestCase(expected="True False\n")], pool=strict)
    assert report.passed, report


def test_exact_must_be_a_bool() -> None:
    with pytest.raises(sk.InvalidInput):
        sk.SandboxPool(exact="yes")  # type: ignore[arg-type]
