"""``Sandbox(root=True)``: background commands and terminals as uid 0 in the box, only
where uid 0 is not the host's (gVisor, or an engine with userns-remap); refused under
plain runc before any container is made."""

from __future__ import annotations

import shutil

import pytest

import sandboxkit as sk
from sandboxkit._backends import connect

pytestmark = pytest.mark.docker

CAPS = "grep -E '^Cap(Inh|Prm|Eff|Bnd)' /proc/self/status"
# python's stat, not coreutils': this machine's gVisor answers statx with EINVAL
EXISTS = 'python3 -c "import os, sys; print(os.path.exists(sys.argv[1]))" '


async def _output(proc: sk.BackgroundProcess) -> tuple[str, int | None]:
    text = ""
    async for event in proc:
        if event.kind in ("stdout", "stderr"):
            text += event.data
        elif event.result is not None:
            return text, event.result.exit_code
    return text, None


async def _remapped() -> bool:
    engine = connect()
    try:
        return (await engine.info()).user_namespaces
    finally:
        await engine.close()


async def test_root_is_refused_under_runc(pool: sk.SandboxPool) -> None:
    if await _remapped():
        pytest.skip("this engine remaps uids (userns-remap): root is allowed under runc")
    before = {c for c in await _pool_containers(pool)}
    with pytest.raises(sk.InvalidInput, match="runsc") as refused:
        async with sk.Sandbox(pool=pool, runtime="runc", root=True):
            pass
    assert "uid 0" in str(refused.value) and "userns-remap" in str(refused.value)
    assert {c for c in await _pool_containers(pool)} <= before  # no container for it


async def _pool_containers(pool: sk.SandboxPool) -> list[str]:
    from conftest import containers_of_pool

    return containers_of_pool(pool.pool_id)


async def test_user_root_needs_a_root_session(pool: sk.SandboxPool) -> None:
    async with sk.Sandbox(pool=pool) as sb:
        with pytest.raises(sk.InvalidInput, match="root=True"):
            await sb.start("id -u", shell=True, user="root")
        with pytest.raises(sk.InvalidInput, match="root=True"):
            await sb.terminal(user="root")
        with pytest.raises(sk.InvalidInput, match="'root' or None"):
            await sb.start("id -u", shell=True, user="admin")  # type: ignore[arg-type]
    with pytest.raises(sk.InvalidInput):
        sk.Sandbox(root="yes")  # type: ignore[arg-type]


@pytest.mark.skipif(shutil.which("runsc") is None, reason="runsc (gVisor) is not installed")
async def test_root_under_gvisor_is_uid_0_with_no_capability_in_its_own_box(
    pool: sk.SandboxPool,
) -> None:
    async with (
        sk.Sandbox(pool=pool, runtime="runsc", root=True) as sb,
        sk.Sandbox(pool=pool, runtime="runsc", root=True) as other,
    ):
        out, code = await _output(await sb.start("id -u; id -g", shell=True, user="root"))
        assert (out.split(), code) == (["0", "0"], 0)
        out, _ = await _output(await sb.start(CAPS, shell=True, user="root"))
        assert [line.split()[1] for line in out.splitlines()] == ["0" * 16] * 4
        # /etc and /usr are the box's own to write (its container's layer), nobody else's
        out, code = await _output(
            await sb.start(
                "echo here > /etc/sk-root && mkdir -p /usr/lib/sk-root && cat /etc/sk-root",
                shell=True,
                user="root",
            )
        )
        assert (out, code) == ("here\n", 0)
        out, _ = await _output(await sb.start(EXISTS + "/usr/lib/sk-root", shell=True))
        assert out == "True\n"
        out, _ = await _output(await other.start(EXISTS + "/etc/sk-root", shell=True, user="root"))
        assert out == "False\n"
        # without user="root", the session's programs are the sandbox's user, as ever
        out, code = await _output(await sb.start("id -u; echo x > /etc/sk-root", shell=True))
        assert out.splitlines()[0] == "65534" and code != 0
        result = await sb.run("import os; print(os.getuid())")
        assert result.stdout == "65534\n"
        term = await sb.terminal(command=["sh", "-c", "id -u"], user="root")
        screen, _ = await _output(term)
        assert screen.strip() == "0"


async def test_doctor_says_where_root_sessions_run() -> None:
    import asyncio

    from typer.testing import CliRunner

    from sandboxkit.cli import app

    engine = connect()
    try:
        info = await engine.info()
    finally:
        await engine.close()
    out = (await asyncio.to_thread(CliRunner().invoke, app, ["doctor"])).output
    (row,) = [line for line in out.splitlines() if "root sessions" in line]
    where = [
        w for w, ok in (("runc", info.user_namespaces), ("runsc", "runsc" in info.runtimes)) if ok
    ]
    assert (f"under {' and '.join(where)}" if where else "off") in row
