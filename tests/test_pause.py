"""Pause, resume and fork of sessions on real Docker (runc: files; gVisor: memory too)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import sandboxkit as sk
from sandboxkit._fleet.labels import LABEL_PAUSABLE

pytestmark = pytest.mark.docker

FILL = r"""
import os
os.makedirs('/tmp/d/empty/deeper', exist_ok=True)
open('/tmp/d/f.txt', 'w').write('tmp data')
os.chmod('/tmp/d/f.txt', 0o640)
os.symlink('f.txt', '/tmp/d/rel')
os.symlink('/etc/hostname', '/tmp/d/abs')
os.makedirs('proj/src', exist_ok=True)
open('proj/src/run.sh', 'w').write('#!/bin/sh\necho hi\n')
os.chmod('proj/src/run.sh', 0o751)
open('proj/big.bin', 'wb').write(bytes(range(256)) * 4000)
os.link('proj/big.bin', 'proj/same.bin')
open('secret', 'w').write('only mine')
os.chmod('secret', 0)
os.makedirs('ro', exist_ok=True)
open('ro/inside', 'w').write('x')
os.chmod('ro', 0o555)
os.mkfifo('/tmp/fifo')
print('filled')
"""

SURVEY = r"""
import hashlib, json, os, stat
out = {}
for top in ('/work', '/tmp'):
    for here, dirs, files in os.walk(top):
        for name in dirs + files:
            p = os.path.join(here, name)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[p] = ['link', os.readlink(p)]
            elif stat.S_ISDIR(st.st_mode):
                out[p] = ['dir', oct(stat.S_IMODE(st.st_mode))]
            elif stat.S_ISREG(st.st_mode):
                mode = stat.S_IMODE(st.st_mode)
                os.chmod(p, mode | 0o400)
                digest = hashlib.sha256(open(p, 'rb').read()).hexdigest()
                os.chmod(p, mode)
                out[p] = ['file', oct(mode), digest, st.st_nlink]
            else:
                out[p] = ['other']
print(json.dumps(out, sort_keys=True))
"""


@pytest.fixture(autouse=True)
def snapshot_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "snapshots"
    monkeypatch.setenv("SANDBOXKIT_SNAPSHOT_DIR", str(path))
    return path


def _container(cid: str) -> dict[str, object] | None:
    out = subprocess.run(["docker", "inspect", cid], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    found: list[dict[str, object]] = json.loads(out.stdout)
    return found[0]


def _pausable_containers() -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={LABEL_PAUSABLE}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


async def _survey(sb: sk.Sandbox) -> dict[str, list[object]]:
    result = await sb.run(SURVEY)
    assert result.status == "ok", result.stderr
    survey: dict[str, list[object]] = json.loads(result.stdout)
    return survey


# ---------------------------------------------------------------------- files (runc)
async def test_files_survive_pause_and_resume_exactly(
    pool: sk.SandboxPool, snapshot_dir: Path
) -> None:
    sb = await sk.Sandbox(pool=pool).open()
    assert (await sb.run(FILL)).stdout == "filled\n"
    before = await _survey(sb)
    cid = sb._live_box().cid
    snap = await sb.pause()
    assert snap.has_memory is False and snap.runtime == "runc"
    assert 1_000_000 < snap.size_bytes < 1_200_000  # the 1 MB file once, not twice
    assert _container(cid) is None  # nothing of it left on the engine
    with pytest.raises(sk.SandboxError, match=f"paused as snapshot {snap.id}"):
        await sb.run("print(1)")
    async with await sk.Sandbox.resume(snap.id, pool=pool) as back:
        after = await _survey(back)
    fifo = before.pop("/tmp/fifo")
    assert fifo == ["other"] and "/tmp/fifo" not in after  # FIFOs are not kept
    assert after == before
    assert before["/work/proj/same.bin"][3] == 2  # the hard link stayed a link
    assert before["/work/secret"][1] == "0o0" and before["/work/ro"][1] == "0o555"
    assert [s.id for s in await sk.snapshots()] == [snap.id]


async def test_resume_in_another_process_then_delete(
    pool: sk.SandboxPool, snapshot_dir: Path
) -> None:
    async with sk.Sandbox(pool=pool) as sb:
        await sb.write_file("note.txt", "from the first process")
        await sb.run("open('/tmp/t', 'w').write('tmp too')")
        snap = await sb.pause()
    script = (
        "import asyncio, sys\nimport sandboxkit as sk\n"
        "async def main():\n"
        f"    async with await sk.Sandbox.resume({snap.id!r}) as sb:\n"
        "        r = await sb.run(\"print(open('note.txt').read(), open('/tmp/t').read())\")\n"
        "        print(r.stdout, end='')\n"
        "    await sk.aclose()\n"
        "asyncio.run(main())\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(sk.__file__).parent.parent))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "from the first process tmp too\n"
    await sk.delete_snapshot(snap.id)
    assert not (snapshot_dir / snap.id).exists()
    assert await sk.snapshots() == []
    with pytest.raises(sk.SnapshotError) as gone:
        await sk.Sandbox.resume(snap.id, pool=pool)
    assert gone.value.reason == "not_found"
    with pytest.raises(sk.SnapshotError):
        await sk.delete_snapshot(snap.id)


async def test_fork_goes_its_own_way(pool: sk.SandboxPool) -> None:
    async with sk.Sandbox(pool=pool) as sb:
        await sb.write_file("shared.txt", "v1")
        await sb.run("import os; os.makedirs('/tmp/e/f')")
        async with await sb.fork() as copy:
            assert await copy.read_file("shared.txt") == b"v1"
            await copy.write_file("shared.txt", "copy")
            await sb.write_file("shared.txt", "original")
            await sb.write_file("only-original.txt", "x")
            assert await copy.read_file("shared.txt") == b"copy"
            assert (await copy.run("import os; print(os.listdir('/tmp/e'))")).stdout == "['f']\n"
            assert not [e for e in await copy.list_files() if e.path == "only-original.txt"]
            assert copy._live_box().cid != sb._live_box().cid
        assert await sb.read_file("shared.txt") == b"original"
    assert await sk.snapshots() == []  # a fork's tar is not kept


async def test_missing_and_corrupt_snapshots_are_clear_errors(
    pool: sk.SandboxPool, snapshot_dir: Path
) -> None:
    with pytest.raises(sk.InvalidInput):
        await sk.Sandbox.resume("../../etc", pool=pool)
    with pytest.raises(sk.SnapshotError) as missing:
        await sk.Sandbox.resume("snap-" + "0" * 20, pool=pool)
    assert missing.value.reason == "not_found"
    async with sk.Sandbox(pool=pool) as sb:
        await sb.write_file("a.txt", "a")
        snap = await sb.pause()
    tar = snapshot_dir / snap.id / "files.tar"
    data = bytearray(tar.read_bytes())
    data[600] ^= 0xFF
    tar.write_bytes(bytes(data))
    with pytest.raises(sk.SnapshotError) as corrupt:
        await sk.Sandbox.resume(snap.id, pool=pool)
    assert corrupt.value.reason == "corrupt" and "delete it" in str(corrupt.value)
    await sk.delete_snapshot(snap.id)
    assert not (snapshot_dir / snap.id).exists()


async def test_a_box_that_filled_its_disk_pauses_and_resumes(pool: sk.SandboxPool) -> None:
    limits = sk.Limits(disk_mb=8)
    async with sk.Sandbox(pool=pool, limits=limits) as sb:
        fill = (
            "n = 0\ntry:\n    with open('full.bin', 'wb') as f:\n"
            "        while True:\n            f.write(b'z' * 65536); f.flush(); n += 1\n"
            "except OSError as e:\n    print('full', e.errno)\n"
        )
        assert (await sb.run(fill)).stdout == "full 28\n"  # ENOSPC
        snap = await sb.pause()
    assert snap.size_bytes <= 8 * 1024 * 1024 + 64 * 1024  # never more than the box held
    async with await sk.Sandbox.resume(snap.id, pool=pool) as back:
        size = (await back.run("import os; print(os.path.getsize('full.bin'))")).stdout
        assert 7 * 1024 * 1024 < int(size) <= 8 * 1024 * 1024
    await sk.delete_snapshot(snap.id)


async def test_snapshot_over_the_cap_is_refused(
    pool: sk.SandboxPool, monkeypatch: pytest.MonkeyPatch, snapshot_dir: Path
) -> None:
    monkeypatch.setenv("SANDBOXKIT_SNAPSHOT_MAX_MB", "1")
    async with sk.Sandbox(pool=pool) as sb:
        await sb.run("open('two.bin', 'wb').write(b'2' * 2_000_000)")
        with pytest.raises(sk.SnapshotError) as big:
            await sb.pause()
        assert big.value.reason == "too_large"
        assert (await sb.run("print('still here')")).stdout == "still here\n"
    assert await sk.snapshots() == [] and list(snapshot_dir.iterdir()) == []


# ---------------------------------------------------------------------- memory (gVisor)
@pytest.fixture(scope="module")
async def gvisor() -> AsyncIterator[sk.SandboxPool]:
    on = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Experimental}}"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    if on != "true":
        pytest.fail(
            "the engine's checkpoint API is off, so gVisor sessions cannot keep memory: "
            'add "experimental": true to /etc/docker/daemon.json (scripts/engine-up.sh '
            "does) and restart dockerd"
        )
    async with sk.SandboxPool(languages=["python"], size=0, runtime="runsc") as p:
        yield p


@pytest.fixture
def no_pausable_left() -> Iterator[None]:
    before = set(_pausable_containers())
    yield
    assert set(_pausable_containers()) <= before


async def test_gvisor_pause_keeps_memory_and_runs_nothing(
    gvisor: sk.SandboxPool, no_pausable_left: None
) -> None:
    sb = await sk.Sandbox(pool=gvisor, keep_state=True, keep_processes=True).open()
    await sb.run("secret = 41 + 1\nimport subprocess, sys")
    await sb.run(
        "counter = subprocess.Popen([sys.executable, '-c', "
        '\'import time\\nn=0\\nwhile True:\\n n+=1\\n open("/tmp/n","w").write(str(n))\\n'
        " time.sleep(0.05)'])"
    )
    await sb.run("import time; time.sleep(0.5)")
    cid = sb._live_box().cid
    snap = await sb.pause()
    assert snap.has_memory is True and snap.runtime == "runsc"
    state = _container(cid)
    assert state is not None and state["State"]["Running"] is False  # type: ignore[index]
    assert state["State"]["Pid"] == 0  # type: ignore[index]
    assert [s.has_memory for s in await sk.snapshots()] == [True]
    async with await sk.Sandbox.resume(snap.id, pool=gvisor) as back:
        first = await back.run("print(secret, counter.poll(), int(open('/tmp/n').read()))")
        assert first.status == "ok", first.stderr
        value, poll, count = first.stdout.split()
        assert (value, poll) == ("42", "None") and int(count) > 3
        later = await back.run("import time; time.sleep(0.5); print(int(open('/tmp/n').read()))")
        assert int(later.stdout) > int(count)  # still counting, from where it was
        # this engine cannot restore a container checkpointed twice: files only, said so
        second = await back.pause()
        assert second.has_memory is False
    # the checkpoint is used up; the files stay resumable
    assert {s.id: s.has_memory for s in await sk.snapshots()} == {
        snap.id: False,
        second.id: False,
    }
    await sk.delete_snapshot(snap.id)
    await sk.delete_snapshot(second.id)


async def test_gvisor_delete_removes_the_paused_container(
    gvisor: sk.SandboxPool, snapshot_dir: Path, no_pausable_left: None
) -> None:
    sb = await sk.Sandbox(pool=gvisor).open()
    await sb.write_file("x.txt", "x")
    cid = sb._live_box().cid
    snap = await sb.pause()
    assert snap.has_memory and _container(cid) is not None
    await sk.delete_snapshot(snap.id)
    assert _container(cid) is None and not (snapshot_dir / snap.id).exists()


async def test_gvisor_memory_resumes_in_another_process(
    gvisor: sk.SandboxPool, no_pausable_left: None
) -> None:
    sb = await sk.Sandbox(pool=gvisor, keep_state=True).open()
    await sb.run("answer = [6 * 7]")
    snap = await sb.pause()
    assert snap.has_memory
    script = (
        "import asyncio\nimport sandboxkit as sk\n"
        "async def main():\n"
        f"    async with await sk.Sandbox.resume({snap.id!r}) as sb:\n"
        "        print((await sb.run('print(answer[0])')).stdout, end='')\n"
        "    await sk.aclose()\n"
        "asyncio.run(main())\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(sk.__file__).parent.parent))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "42\n"
    await sk.delete_snapshot(snap.id)
