"""Sessions as whole boxes (issue 27): files anywhere writable, processes in the
background, terminals. One session is shared where isolation is not the point."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
from collections.abc import AsyncIterator

import pytest

import sandboxkit as sk

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
async def sb(pool: sk.SandboxPool) -> AsyncIterator[sk.Sandbox]:
    async with sk.Sandbox(pool=pool) as session:
        yield session


async def _reason(call: object) -> str:
    with pytest.raises(sk.SandboxFileError) as caught:
        await call  # type: ignore[misc]
    return caught.value.reason


# ---------------------------------------------------------------------- files
async def test_tmp_home_and_workdir_are_writable_and_relative_means_workdir(
    sb: sk.Sandbox,
) -> None:
    await sb.write_file("/tmp/data.csv", b"a,b\n1,2\n")
    await sb.write_file("notes.txt", "workdir")
    home = (await sb.run("import os; print(os.environ['HOME'])")).stdout.strip()
    assert home == "/home/sandbox"
    await sb.write_file(f"{home}/.config/tool.toml", b"x = 1")
    await sb.make_dir(f"{home}/project/src")
    script = (
        "import os\n"
        "print(open('/tmp/data.csv').read().splitlines()[1], open('notes.txt').read(),\n"
        "      open(os.path.expanduser('~/.config/tool.toml')).read(),\n"
        "      os.path.isdir(os.path.expanduser('~/project/src')), os.getcwd())"
    )
    assert (await sb.run(script)).stdout == "1,2 workdir x = 1 True /work\n"
    assert await sb.read_file("/work/notes.txt") == b"workdir"
    # a system file the user may read; a place it may not write
    assert b"root:" in await sb.read_file("/etc/passwd")
    assert await _reason(sb.write_file("/etc/evil", b"x")) == "permission_denied"
    assert await _reason(sb.write_file("/usr/bin/env", b"x")) == "permission_denied"
    assert await _reason(sb.make_dir("/opt/mine")) == "permission_denied"


async def test_stat_list_depth_rename_remove(sb: sk.Sandbox) -> None:
    await sb.write_file("/tmp/t1/a/b/c.txt", b"12345", executable=True)
    info = await sb.stat("/tmp/t1/a/b/c.txt")
    assert (info.path, info.type, info.size, info.mode) == ("/tmp/t1/a/b/c.txt", "file", 5, 0o755)
    assert abs(info.mtime - time.time()) < 120
    shallow = await sb.list_files("/tmp/t1", depth=2)
    assert [(e.path, e.type) for e in shallow] == [("/tmp/t1/a", "dir"), ("/tmp/t1/a/b", "dir")]
    assert len(await sb.list_files("/tmp/t1")) == 3
    # across filesystems (/tmp -> the workdir), a tree
    await sb.rename("/tmp/t1/a", "moved")
    assert await sb.read_file("moved/b/c.txt") == b"12345"
    assert await _reason(sb.stat("/tmp/t1/a")) == "not_found"
    await sb.write_file("other.txt", b"o")
    assert await _reason(sb.rename("other.txt", "moved/b/c.txt")) == "exists"
    await sb.rename("other.txt", "moved/b/c.txt", overwrite=True)
    assert await sb.read_file("moved/b/c.txt") == b"o"
    await sb.remove("moved")
    assert await _reason(sb.stat("moved")) == "not_found"
    assert await _reason(sb.remove("moved")) == "not_found"
    await sb.make_dir("/tmp/exists")
    assert await _reason(sb.make_dir("/tmp/exists", parents=False)) == "exists"
    # the old forms still read relative to the workdir
    await sb.write_file("rel/x.txt", b"r")
    assert [e.path for e in await sb.list_files("rel")] == ["rel/x.txt"]


async def test_reasons_a_program_can_act_on(sb: sk.Sandbox) -> None:
    await sb.write_file("/tmp/r/file", b"x")
    assert await _reason(sb.read_file("/tmp/r")) == "is_directory"
    assert await _reason(sb.read_file("/tmp/r/missing")) == "not_found"
    assert await _reason(sb.list_files("/tmp/r/file")) == "not_directory"
    assert await _reason(sb.write_file("/tmp/r/file/under", b"x")) == "not_directory"
    assert await _reason(sb.read_file("/tmp/r/file", max_bytes=0)) == "too_large"
    await sb.run("import os; os.chmod('/tmp/r/file', 0)")
    assert await _reason(sb.read_file("/tmp/r/file")) == "permission_denied"


@pytest.mark.parametrize(
    ("setup", "path"),
    [
        ("os.symlink('/etc/passwd', '/tmp/h/link')", "/tmp/h/link"),
        ("os.symlink('/etc', '/tmp/h/dirlink')", "/tmp/h/dirlink/passwd"),
        ("os.symlink('/tmp/h', '/home/sandbox/loop')", "/home/sandbox/loop/x"),
        ("os.mkfifo('/tmp/h/fifo')", "/tmp/h/fifo"),
    ],
)
async def test_hostile_paths_stay_refused(sb: sk.Sandbox, setup: str, path: str) -> None:
    """No symlink is followed at any component, FIFOs and devices are never opened."""
    await sb.make_dir("/tmp/h")
    assert (await sb.run(f"import os\n{setup}")).status == "ok"
    assert await asyncio.wait_for(_reason(sb.read_file(path)), 10) == "invalid_path"
    assert await asyncio.wait_for(_reason(sb.write_file(path, b"x")), 10) == "invalid_path"
    await sb.run(
        "import os, shutil; shutil.rmtree('/tmp/h'); os.path.lexists"
        "('/home/sandbox/loop') and os.unlink('/home/sandbox/loop')"
    )


async def test_devices_symlink_stat_and_dotdot(sb: sk.Sandbox) -> None:
    assert await _reason(sb.read_file("/dev/zero")) == "invalid_path"
    assert await _reason(sb.write_file("/dev/null", b"x")) == "invalid_path"
    await sb.run("import os; os.symlink('/etc/passwd', 'plink')")
    info = await sb.stat("plink")
    assert info.type == "symlink" and info.target == "/etc/passwd"
    await sb.remove("plink")  # the link, never what it names
    assert b"root:" in await sb.read_file("/etc/passwd")
    with pytest.raises(sk.InvalidPath):
        await sb.read_file("/tmp/../etc/passwd")


# ---------------------------------------------------------------------- watch
async def changes_until(
    changes: AsyncIterator[sk.FileChange], last: tuple[str, str], timeout: float = 10
) -> list[tuple[str, str]]:
    """(kind, path) of each change up to ``last`` (kind, path) included."""
    seen: list[tuple[str, str]] = []

    async def collect() -> None:
        async for change in changes:
            seen.append((change.kind, change.path))
            if seen[-1] == last:
                return

    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(collect(), timeout)
    if not seen or seen[-1] != last:
        raise AssertionError(f"{last} never came; saw {seen}")
    return seen


async def _all(changes: AsyncIterator[sk.FileChange]) -> list[tuple[str, str]]:
    return [(c.kind, c.path) async for c in changes]


async def check_watch(sb: sk.Sandbox) -> None:
    """What every runtime must show: shared by the gVisor tests."""
    await sb.make_dir("/tmp/w/sub")
    async with sb.watch("/tmp/w", recursive=True) as changes:
        await sb.write_file("/tmp/w/a.txt", b"1")
        script = "import os; open('/tmp/w/a.txt', 'a').write('2'); os.makedirs('/tmp/w/sub/deep')"
        assert (await sb.run(script)).status == "ok"
        seen = await changes_until(changes, ("created", "/tmp/w/sub/deep"))
        script = (
            "import os\n"
            "open('/tmp/w/sub/deep/b.txt', 'w').write('x')\n"
            "os.rename('/tmp/w/sub/deep/b.txt', '/tmp/w/sub/c.txt')\n"
            "os.remove('/tmp/w/a.txt')"
        )
        assert (await sb.run(script)).status == "ok"
        seen += await changes_until(changes, ("removed", "/tmp/w/a.txt"))
    for expected in [
        ("created", "/tmp/w/a.txt"),
        ("modified", "/tmp/w/a.txt"),
        ("created", "/tmp/w/sub/deep"),
        ("created", "/tmp/w/sub/deep/b.txt"),  # in a directory made after the watch began
        ("removed", "/tmp/w/sub/deep/b.txt"),
        ("created", "/tmp/w/sub/c.txt"),
    ]:
        assert expected in seen, (expected, seen)
    assert seen.index(("created", "/tmp/w/a.txt")) < seen.index(("modified", "/tmp/w/a.txt"))
    # a file: its own changes; removing it ends the iteration
    await sb.write_file("/tmp/w/f.txt", b"")
    got: list[tuple[str, str]] = []
    async with sb.watch("/tmp/w/f.txt") as changes:
        await sb.run("open('/tmp/w/f.txt', 'w').write('x'); import os; os.remove('/tmp/w/f.txt')")
        got = await asyncio.wait_for(_all(changes), 10)
    assert got == [("modified", "/tmp/w/f.txt"), ("removed", "/tmp/w/f.txt")]


async def test_watch_reports_created_modified_removed(sb: sk.Sandbox) -> None:
    await check_watch(sb)


async def test_watch_relative_not_recursive_and_refusals(sb: sk.Sandbox) -> None:
    await sb.make_dir("watched/inner")
    changes = sb.watch("watched")
    first = asyncio.ensure_future(changes.__anext__())
    await sb.run("import time; time.sleep(0.3)")  # the watch has started meanwhile
    await sb.write_file("watched/inner/deep.txt", b"not seen: not recursive")
    await sb.write_file("watched/top.txt", b"seen")
    change = await asyncio.wait_for(first, 10)
    assert (change.kind, change.path) == ("created", "watched/top.txt")
    await changes.aclose()
    assert [c async for c in changes] == []  # closed: it ends
    for path, reason in [("missing", "not_found"), ("/tmp/../etc", None)]:
        if reason is None:
            with pytest.raises(sk.InvalidPath):
                sb.watch(path)
            continue
        assert await _reason(sb.watch(path).start()) == reason
    await sb.run("import os; os.symlink('/etc', '/tmp/wlink')")
    assert await _reason(sb.watch("/tmp/wlink").start()) == "invalid_path"
    # many watches left open are refused with what to do, then free again once closed
    opened = [await sb.watch("/tmp").start() for _ in range(16)]
    with pytest.raises(sk.SandboxFileError, match="close one"):
        await sb.watch("/tmp").start()
    for w in opened:
        await w.aclose()
    # handles dropped without closing (a `break`) stop in the background
    for _ in range(20):
        dropped = await sb.watch("/tmp").start()
        del dropped
        gc.collect()
        await asyncio.sleep(0.01)
    async with sb.watch("/tmp"):
        pass


async def test_a_watch_ends_with_its_session(pool: sk.SandboxPool) -> None:
    async with sk.Sandbox(pool=pool) as box:
        changes = box.watch("/tmp")
        await changes.start()
        seen = asyncio.ensure_future(_all(changes))
        await asyncio.sleep(0.3)
    assert await asyncio.wait_for(seen, 10) == []  # it ended with the session, no error


# ---------------------------------------------------------------------- processes
async def test_a_background_server_outlives_runs_and_is_killed_with_its_tree(
    sb: sk.Sandbox,
) -> None:
    proc = await sb.start(
        "echo serving $GREETING; exec python3 -m http.server 8765 --bind 127.0.0.1",
        shell=True,
        env={"GREETING": "hi"},
        cwd="/tmp",
    )
    assert isinstance(proc, sk.BackgroundProcess) and proc.pid > 1
    await sb.write_file("/tmp/page.txt", b"served")
    fetch = (
        "import time, urllib.request as u\n"
        "for _ in range(100):\n"
        "    try: print(u.urlopen('http://127.0.0.1:8765/page.txt').read().decode()); break\n"
        "    except OSError: time.sleep(0.1)\n"
    )
    assert (await sb.run(fetch)).stdout == "served\n"
    assert (await sb.run("print('a run between')")).status == "ok"  # its clean-up spares it
    assert (await sb.run(fetch)).stdout == "served\n"
    listed = {p.pid: p for p in await sb.processes()}
    assert listed[proc.pid].background and "http.server" in " ".join(listed[proc.pid].cmd)
    # a second handle sees output from its connect on
    later = await sb.connect(proc.pid)
    assert (await sb.run(fetch)).stdout == "served\n"
    first = b""
    async for event in proc:
        first += event.data_bytes
        if b"page.txt" in first:
            break
    assert first.startswith(b"serving hi\n")
    seen = b""
    async for event in later:
        seen += event.data_bytes
        if b"page.txt" in seen:
            break
    assert b"serving hi" not in seen
    await sb.kill(proc.pid)
    result = await proc.wait(timeout=10)
    assert result.signal == signal.SIGTERM
    assert proc.pid not in {p.pid for p in await sb.processes()}


async def test_a_term_trapping_tree_gets_sigkill_after_the_grace(sb: sk.Sandbox) -> None:
    proc = await sb.start(
        ["/bin/sh", "-c", "trap '' TERM; sleep 300 & sleep 300 & while :; do sleep 0.05; done"]
    )
    deadline = time.monotonic() + 10
    while len([p for p in await sb.processes() if p.background]) < 3:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    started = time.monotonic()
    await sb.kill(proc.pid, grace=0.5)
    assert 0.4 < time.monotonic() - started < 5
    result = await proc.wait(timeout=10)
    assert result.signal == signal.SIGKILL
    assert not [p for p in await sb.processes() if p.background]


async def test_stdin_and_exit_of_a_background_process(sb: sk.Sandbox) -> None:
    proc = await sb.start(["python3", "-c", "import sys; print(sys.stdin.read().upper())"])
    assert await proc.write("hello ") == 6
    await proc.write(b"box")
    await proc.close_stdin()
    result = await proc.wait(timeout=10)
    assert (result.status, result.exit_code, result.stdout) == ("ok", 0, "HELLO BOX\n")
    with pytest.raises(sk.SandboxFileError) as caught:
        await sb.connect(999999)
    assert caught.value.reason == "not_found"
    with pytest.raises(sk.SandboxFileError):
        await sb.kill(1)  # the agent is not the user's to kill


async def test_a_terminal_has_a_size_and_a_shell(sb: sk.Sandbox) -> None:
    term = await sb.terminal(cols=100, rows=30)
    await term.write("stty size; echo $TERM; tty\n")
    screen = b""
    deadline = time.monotonic() + 10
    while b"/dev/pts/" not in screen:
        assert time.monotonic() < deadline, screen
        screen += await term.read(timeout=1)
    assert b"30 100" in screen and b"xterm-256color" in screen
    await term.resize(cols=132, rows=43)
    await term.write("stty size; exit 7\n")
    result = await term.wait(timeout=10)
    assert b"43 132" in result.stdout_bytes and result.exit_code == 7


async def test_processes_end_with_the_session_and_limits_cover_them(
    pool: sk.SandboxPool,
) -> None:
    async with sk.Sandbox(pool=pool, limits=sk.Limits(pids=32)) as box:
        bomb = await box.start(":(){ :|:& };:", shell=True)
        await asyncio.sleep(2)
        # the pids limit holds the forkbomb; the session still answers
        assert (await box.run("print('alive')")).stdout == "alive\n"
        await box.kill(bomb.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while [p for p in await box.processes() if p.background]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        server = await box.start("sleep 600", shell=True)
        assert server.pid in {p.pid for p in await box.processes()}
        cid = box._box.cid if box._box is not None else ""
    # the session closed: its container, and the sleep in it, are gone
    proc = await asyncio.create_subprocess_exec(
        "docker",
        "inspect",
        cid,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while await proc.wait() == 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
        proc = await asyncio.create_subprocess_exec(
            "docker",
            "inspect",
            cid,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
