"""``Sandbox.metrics()``: a session's use of its limits (CPU, memory, disk), read from its
own cgroup by its agent, or from the engine where the box sees none (gVisor)."""

from __future__ import annotations

import shutil

import pytest

import sandboxkit as sk

pytestmark = pytest.mark.docker

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.2: pass"


async def test_metrics_of_a_session(pool: sk.SandboxPool) -> None:
    async with sk.Sandbox(pool=pool) as sb:
        first = await sb.metrics()
        # the container's limits now (a run's own limits apply while it runs)
        assert first.cpu_count == 1.0 and first.memory_total == 256 * 1024 * 1024
        assert 0 < first.memory_used <= first.memory_total
        assert first.disk_total > 0 and 0 <= first.disk_used < first.disk_total
        await sb.write_file("blob", b"x" * 3_000_000)
        await sb.write_file("/tmp/blob", b"y" * 1_000_000)
        assert (await sb.run(BURN)).status == "ok"
        second = await sb.metrics()
        assert second.disk_used >= first.disk_used + 4_000_000
        assert second.cpu_percent > 0 and second.timestamp >= first.timestamp
        # tmpfs files are memory: charged to the box as page cache
        assert second.memory_cache >= 4_000_000
        await sb.remove("blob")
        assert (await sb.metrics()).disk_used <= second.disk_used - 3_000_000


async def test_metrics_of_a_closed_session_raise(pool: sk.SandboxPool) -> None:
    sb = sk.Sandbox(pool=pool)
    async with sb:
        pass
    with pytest.raises(sk.SandboxkitError):
        await sb.metrics()


@pytest.mark.skipif(shutil.which("runsc") is None, reason="runsc (gVisor) is not installed")
async def test_metrics_under_gvisor_come_from_the_engine(pool: sk.SandboxPool) -> None:
    async with sk.Sandbox(pool=pool, runtime="runsc") as sb:
        await sb.write_file("blob", b"x" * 2_000_000)
        m = await sb.metrics()
        assert m.memory_used > 0 and m.memory_total == 256 * 1024 * 1024
        assert m.disk_used >= 2_000_000
