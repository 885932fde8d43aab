"""A pool's reuse mode (``SandboxPool(reuse=...)``): one container serves one-shot runs one
after another, and nothing of one run is visible to the next — processes, files in every
writable place, IPC objects, the supervisor's limits — or the container is not reused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from box_procs import PROCS

import sandboxkit as sk

pytestmark = pytest.mark.docker

# the agent's start time (clock ticks since boot): the same number means the same container
WHICH = "print(open('/proc/1/stat').read().rsplit(')', 1)[1].split()[19])"

LITTER = r"""
import ctypes, os, subprocess, time
for place in ('.', '/tmp', '/dev/shm', '/run/sandboxkit'):
    try:
        with open(os.path.join(place, 'litter'), 'w') as f:
            f.write('from the last run')
    except OSError as exc:
        print('skip', place, exc)
os.makedirs('deep/er', exist_ok=True)
open('deep/er/file', 'w').write('x')
os.symlink('/etc/passwd', 'link')
os.chmod('deep/er', 0)
os.chmod('deep', 0)
# a daemon that left its session: the end of the run does not reach it
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp('sleep', ['sleep', '1000'])
    os._exit(0)
libc = ctypes.CDLL(None, use_errno=True)
assert libc.shmget(0x5eed, 4096, 0o1666) >= 0, ctypes.get_errno()   # IPC_CREAT | 0666
assert libc.semget(0x5eed, 1, 0o1666) >= 0, ctypes.get_errno()
assert libc.msgget(0x5eed, 0o1666) >= 0, ctypes.get_errno()
os.environ['LEAK'] = '1'
time.sleep(0.2)
"""

LOOK = (
    PROCS
    + r"""
import os
found = []
for place in ('.', '/tmp', '/dev/shm', '/run/sandboxkit'):
    try:
        found += [os.path.join(place, n) for n in os.listdir(place) if n != 'main.py']
    except OSError:
        pass
cmds = [open(f'/proc/{p}/cmdline', 'rb').read() for p in others if os.path.exists(f'/proc/{p}')]
ipc = [open(f'/proc/sysvipc/{t}').read().count('\n') - 1 for t in ('shm', 'sem', 'msg')]
print(sorted(found), [c for c in cmds if b'sleep' in c], ipc, os.environ.get('LEAK'))
"""
)


@pytest.fixture(scope="module")
async def reuse_pool() -> AsyncIterator[sk.SandboxPool]:
    # size 1: the next run gets the one container back once it is scrubbed
    async with sk.SandboxPool(languages=["python"], size=1, reuse=True) as pool:
        yield pool


async def which(pool: sk.SandboxPool) -> str:
    r = await pool.run(WHICH)
    assert r.ok, r
    return r.stdout.strip()


async def test_a_container_serves_runs_one_after_another(reuse_pool: sk.SandboxPool) -> None:
    seen = [await which(reuse_pool) for _ in range(6)]
    assert len(set(seen)) < len(seen), seen  # reused, not one container per run


async def test_nothing_of_one_run_is_visible_to_the_next(reuse_pool: sk.SandboxPool) -> None:
    litter = await reuse_pool.run(LITTER + WHICH)
    assert litter.ok, litter
    littered = litter.stdout.strip().splitlines()[-1]
    for _ in range(3):  # whichever container serves next, the littered one among them
        looked = await reuse_pool.run(LOOK + WHICH)
        assert looked.ok, looked
        seen, container = looked.stdout.strip().splitlines()
        assert seen == "[] [] [0, 0, 0] None", looked.stdout
        if container == littered:
            return
    pytest.fail("the littered container never served again: reuse was not exercised")


async def test_the_supervisor_s_limits_and_niceness_are_out_of_reach(
    reuse_pool: sk.SandboxPool,
) -> None:
    # the program runs as a uid of its own (docs/security.md): PID 1 is not its to change,
    # so nothing of this kind carries over to the next run (the scrub checks them too,
    # and would retire a container whose supervisor was changed)
    r = await reuse_pool.run(
        "import os, resource\n"
        "for attempt in (lambda: resource.prlimit(1, resource.RLIMIT_NOFILE, (64, 64)),\n"
        "                lambda: os.setpriority(os.PRIO_PROCESS, 1, 5),\n"
        "                lambda: os.sched_setaffinity(1, {0})):\n"
        "    try:\n        attempt(); print('changed')\n"
        "    except PermissionError:\n        print('refused')\n"
    )
    assert r.stdout.split() == ["refused"] * 3, r
    assert (await reuse_pool.run("print('next')")).stdout == "next\n"


async def test_a_run_that_timed_out_leaves_nothing(reuse_pool: sk.SandboxPool) -> None:
    r = await reuse_pool.run(
        "import os\nif os.fork() == 0:\n    os.setsid()\n    while True: pass\n"
        "open('/tmp/t', 'w').write('t')\nwhile True: pass",
        limits=sk.Limits(time=1),
    )
    assert r.status == "timeout", r
    looked = await reuse_pool.run(PROCS + "print(os.listdir('/tmp'), others)")
    assert looked.stdout.strip() == "[] []", looked


async def test_a_full_disk_is_empty_again(reuse_pool: sk.SandboxPool) -> None:
    fill = await reuse_pool.run(
        "f = open('big', 'wb')\ntry:\n    for _ in range(200):\n"
        "        f.write(b'x' * (1 << 20)); f.flush()\nexcept OSError as e:\n    print(e.errno)"
    )
    assert fill.stdout.strip() == "28", fill  # ENOSPC: the workdir's tmpfs is full
    again = await reuse_pool.run("open('small', 'wb').write(b'x' * (8 << 20)); print('ok')")
    assert again.stdout.strip() == "ok", again


async def test_reuse_is_refused_when_invalid() -> None:
    for bad in (0, -1, "yes", 1.5):
        with pytest.raises(sk.InvalidInput):
            sk.SandboxPool(reuse=bad)  # type: ignore[arg-type]
