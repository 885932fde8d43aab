"""Streaming, interactive stdin, sessions and files (real Docker)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from box_procs import PROCS

import sandboxkit as sk

pytestmark = pytest.mark.docker


async def test_first_chunk_arrives_before_the_second_is_written(pool: sk.SandboxPool) -> None:
    code = "import time\nprint('a', flush=True)\ntime.sleep(1.5)\nprint('b', flush=True)"
    t0 = time.monotonic()
    seen: list[tuple[str, float]] = []
    last = None
    async for ev in pool.stream(code):
        seen.append((ev.kind, time.monotonic() - t0))
        last = ev
    first_stdout = next(t for k, t in seen if k == "stdout")
    assert seen[-1][1] - first_stdout > 1.0
    assert last is not None and last.kind == "exit" and last.result is not None
    assert last.result.stdout == "a\nb\n"


async def test_multibyte_characters_split_across_reads(pool: sk.SandboxPool) -> None:
    code = (
        "import sys, time\n"
        "b = 'é€😀'.encode()\n"
        "for i in range(len(b)):\n"
        "    sys.stdout.buffer.write(b[i:i+1]); sys.stdout.flush(); time.sleep(0.01)\n"
    )
    chunks = [ev.data async for ev in pool.stream(code) if ev.kind == "stdout"]
    assert "".join(chunks) == "é€😀"
    assert all("\ufffd" not in c for c in chunks)


async def test_breaking_out_of_a_stream_frees_the_container(pool: sk.SandboxPool) -> None:
    async for ev in pool.stream(
        "import time\nwhile True:\n    print('x', flush=True); time.sleep(0.05)"
    ):
        if ev.kind == "stdout":
            break
    await asyncio.sleep(0)  # let the generator finalise
    for _ in range(100):  # the abandoned generator is finalised by the event loop
        if not _busy(pool):
            break
        await asyncio.sleep(0.1)
    assert not _busy(pool)


def _busy(pool: sk.SandboxPool) -> int:
    return sum(h["busy"] for h in pool.health().values())


async def test_cancelling_a_run_frees_the_container(pool: sk.SandboxPool) -> None:
    task = asyncio.ensure_future(pool.run("import time; time.sleep(30)"))
    await asyncio.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not _busy(pool)


async def test_interactive_stdin(pool: sk.SandboxPool) -> None:
    code = "name = input('name? ')\nprint('hi', name)\nprint(input('again? '))"
    async with await pool.start(code) as proc:
        async for ev in proc:
            if ev.kind == "stdout" and "name?" in ev.data:
                await proc.write("Ada\n")
            if ev.kind == "stdout" and "again?" in ev.data:
                await proc.write("bye\n")
                await proc.close_stdin()
    assert proc.result is not None
    assert proc.result.stdout == "name? hi Ada\nagain? bye\n" and proc.result.status == "ok"


async def test_session_files_and_leftover_processes(pool: sk.SandboxPool) -> None:
    async with sk.Sandbox(pool=pool) as sb:
        await sb.write_file("in/data.txt", b"abc")
        r1 = await sb.run(
            "import subprocess\n"
            "open('out.txt','w').write(open('in/data.txt').read().upper())\n"
            "subprocess.Popen(['sleep', '1000'])\n"
        )
        assert r1.status == "ok"
        r2 = await sb.run(PROCS + "print(os.path.exists('out.txt'), others)")
        assert r2.stdout == "True []\n"
        assert await sb.read_file("out.txt") == b"ABC"
        names = {e.path for e in await sb.list_files()}
        assert names == {"in", "in/data.txt", "out.txt"}  # the run's source is not the user's


async def test_session_keeps_python_state(pool: sk.SandboxPool) -> None:
    async with sk.Sandbox(pool=pool, keep_state=True) as sb:
        assert (await sb.run("import math\nx = 41")).status == "ok"
        assert (await sb.run("x += 1\nx")).stdout == "42\n"
        bad = await sb.run("raise KeyError('k')")
        assert bad.status == "error" and "KeyError" in bad.stderr
        assert (await sb.run("print(x, round(math.pi, 2))")).stdout == "42 3.14\n"
        assert (await sb.run("print(input())", stdin="typed\n")).stdout == "typed\n"
        slow = await sb.run("import time; time.sleep(5)", limits=sk.Limits(time=1))
        assert slow.status == "timeout"
        fresh = await sb.run("print('x' in globals())")
        assert fresh.stdout == "False\n"  # a timed-out kernel restarts clean


@pytest.mark.parametrize(
    "setup, path",
    [
        ("import os; os.symlink('/etc/passwd', 'link')", "link"),
        ("import os; os.mkfifo('fifo')", "fifo"),
        ("import os; os.makedirs('d'); os.symlink('/etc', 'd2')", "d2/passwd"),
    ],
)
async def test_hostile_files_are_refused_without_blocking(
    pool: sk.SandboxPool, setup: str, path: str
) -> None:
    async with sk.Sandbox(pool=pool) as sb:
        assert (await sb.run(setup)).status == "ok"
        with pytest.raises(sk.SandboxFileError) as caught:
            await asyncio.wait_for(sb.read_file(path), 10)
        assert caught.value.path == path and caught.value.operation == "read"
        assert (await sb.run("print('still usable')")).stdout == "still usable\n"


@pytest.mark.parametrize("bad", ["../x", "/etc/../x", "", "a\0b"])
async def test_hostile_paths_rejected(pool: sk.SandboxPool, bad: str) -> None:
    async with sk.Sandbox(pool=pool) as sb:
        with pytest.raises(sk.InvalidPath):
            await sb.write_file(bad, b"x")
        with pytest.raises(sk.InvalidPath):
            await sb.read_file(bad)


async def test_idle_session_is_reclaimed(pool: sk.SandboxPool) -> None:
    async with sk.Sandbox(pool=pool, idle_timeout=0.5) as sb:
        assert (await sb.run("print(1)")).stdout == "1\n"
        await asyncio.sleep(1.5)
        with pytest.raises(sk.SandboxError, match="idle"):
            await sb.run("print(2)")


async def test_directories_in_and_out(pool: sk.SandboxPool, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "a.txt").write_text("alpha")
    (src / "b.bin").write_bytes(b"\x00\x01")
    (src / "escape").symlink_to("/etc/passwd")  # a host symlink is not followed
    async with sk.Sandbox(pool=pool) as sb:
        assert await sb.write_dir(src, "in") == 2
        r = await sb.run(
            "import os, shutil\n"
            "shutil.copytree('in', 'out')\n"
            "open('out/pkg/new.txt', 'w').write(open('in/pkg/a.txt').read().upper())\n"
            "os.symlink('/etc/shadow', 'out/link')\n"
            "os.mkfifo('out/fifo')\n"
        )
        assert r.status == "ok", r.stderr
        written = await sb.read_dir("out", tmp_path / "back")
    back = tmp_path / "back"
    assert sorted(p.relative_to(back).as_posix() for p in written) == [
        "b.bin",
        "pkg/a.txt",
        "pkg/new.txt",
    ]
    assert (back / "pkg" / "new.txt").read_text() == "ALPHA"
    assert not (back / "link").exists() and not (back / "fifo").exists()


async def test_kernel_cells_do_not_inherit_agent_future_flags(pool: sk.SandboxPool) -> None:
    async with sk.Sandbox(pool=pool, keep_state=True) as sb:
        r = await sb.run("def f(x: int): return x\nf.__annotations__['x'] is int")
        assert r.stdout == "True\n"


async def test_breaking_out_of_a_session_stream_keeps_the_session_right(
    pool: sk.SandboxPool,
) -> None:
    async with sk.Sandbox(pool=pool) as sb:
        for _ in range(3):
            async for _ev in sb.stream(
                "import time\nprint('OLD-1', flush=True)\ntime.sleep(2)\nprint('OLD-2')"
            ):
                break
            r = await sb.run("print('NEW')")
            assert (r.status, r.stdout) == ("ok", "NEW\n")


async def test_cancelled_start_releases_its_sandbox(pool: sk.SandboxPool) -> None:
    busy_before = _busy(pool)
    with pytest.raises(asyncio.TimeoutError):
        # the compile step outlasts the wait: cancelled while the job is being set up
        await asyncio.wait_for(
            pool.start("import time; time.sleep(30)", limits=sk.Limits(time=30)), 0.0001
        )
    for _ in range(100):
        if _busy(pool) == busy_before:
            break
        await asyncio.sleep(0.1)
    assert _busy(pool) == busy_before


async def test_closing_a_session_mid_run_is_an_error_of_sandboxkit(pool: sk.SandboxPool) -> None:
    sb = sk.Sandbox(pool=pool)
    await sb.open()
    task = asyncio.ensure_future(sb.run("import time; time.sleep(30)"))
    await asyncio.sleep(1.0)
    await sb.aclose()
    with pytest.raises(sk.SandboxError, match="closed by sandboxkit"):
        await task


async def test_a_session_run_cannot_make_the_next_call_raise(
    pool: sk.SandboxPool, tmp_path: Path
) -> None:
    async with sk.Sandbox(pool=pool) as sb:
        # the source file replaced by a symlink: replaced again, never followed
        await sb.run("import os; os.remove('main.py'); os.symlink('/etc/passwd', 'main.py')")
        assert (await sb.run("print('fine')")).stdout == "fine\n"
        # ... or by a directory
        await sb.run("import os; os.remove('main.py'); os.makedirs('main.py/x')")
        assert (await sb.run("print('fine')")).stdout == "fine\n"
        # files that cannot be placed (a symlinked directory on the way): a status
        await sb.run("import os; os.symlink('/tmp', 'sub')")
        blocked = await sb.run("print('x')", files={"sub/x": b"1"})
        assert blocked.status == "error" and "could not be carried out" in blocked.stderr
        # a file name that is not UTF-8 comes back with its bytes
        await sb.run("open(b'/work/bad\\xff', 'w')")
        written = await sb.read_dir(".", tmp_path)
        assert (tmp_path / os.fsdecode(b"bad\xff")) in written
        # memory already held (tmpfs files count) above a lower limit asked for later
        await sb.run("open('/tmp/blob', 'wb').write(b'x' * 60_000_000)")
        r = await sb.run("print(1)", limits=sk.Limits(memory_mb=32))
        assert r.status == "oom" and "already holds" in r.stderr
        assert (await sb.run("print('still usable')")).stdout == "still usable\n"


async def test_a_kernel_cell_forging_its_answer_breaks_only_itself(
    pool: sk.SandboxPool,
) -> None:
    async with sk.Sandbox(pool=pool, keep_state=True) as sb:
        await sb.run("x = 1")
        r = await sb.run(
            "import socket, time\nsocket.socket(fileno=3).send(b'not json')\ntime.sleep(0.5)"
        )
        assert r.status == "error"
        assert (await sb.run("print('after')")).stdout == "after\n"


async def test_idle_reclaim_never_cuts_a_run_short(pool: sk.SandboxPool) -> None:
    async with sk.Sandbox(pool=pool, idle_timeout=0.5) as sb:
        r = await sb.run("import time; time.sleep(1.5); print('done')")
        assert r.stdout == "done\n"
        assert (await sb.run("print('next')")).stdout == "next\n"
