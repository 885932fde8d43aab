"""Resource exhaustion: fork/thread bombs, memory bombs, disk and descriptor fills."""

from __future__ import annotations

import pytest

import sandboxkit as sk

from ._invariants import check

pytestmark = [pytest.mark.docker, pytest.mark.hostile]

SHORT = sk.Limits(time=3)

FORK_BOMBS = {
    "py-fork-loop": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n"
    "        pass\n",
    "py-subprocess-bomb": (
        "import subprocess, sys\nwhile True:\n    try:\n"
        "        subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(100)'])\n"
        "    except OSError:\n        pass\n"
    ),
    "py-fork-and-spin": "import os\nfor _ in range(10):\n    try:\n        os.fork()\n"
    "    except OSError:\n        pass\nwhile True:\n    pass\n",
    "sh-classic": "import os\nos.execv('/bin/bash', ['bash', '-c', ':(){ :|:& };:; sleep 100'])\n",
}


@pytest.mark.parametrize("name", sorted(FORK_BOMBS))
async def test_fork_bomb_times_out_and_is_wiped(hostile_pool: sk.SandboxPool, name: str) -> None:
    await check(hostile_pool, FORK_BOMBS[name], "timeout", limits=SHORT)


async def test_fork_bomb_in_bash(hostile_pool: sk.SandboxPool) -> None:
    await check(
        hostile_pool, ":(){ :|:& };:\nsleep 100\n", "timeout", language="bash", limits=SHORT
    )


async def test_fork_bomb_in_c(hostile_pool: sk.SandboxPool) -> None:
    code = "#include <unistd.h>\nint main(void) { for (;;) fork(); }\n"
    await check(hostile_pool, code, "timeout", language="c", limits=SHORT)


async def test_fork_bomb_cannot_pass_the_pids_limit(hostile_pool: sk.SandboxPool) -> None:
    code = (
        "import os, time\nn = 0\n"
        "while True:\n    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
        "    if pid == 0:\n        time.sleep(100)\n    n += 1\n"
        "print(n)\n"
    )
    r = await check(hostile_pool, code, "ok", limits=sk.Limits(time=10, pids=32))
    assert 0 < int(r.stdout) < 32


async def test_daemon_thread_bomb_fails_cleanly(hostile_pool: sk.SandboxPool) -> None:
    code = (
        "import threading, time\nwhile True:\n"
        "    threading.Thread(target=time.sleep, args=(100,), daemon=True).start()\n"
    )
    r = await check(hostile_pool, code, "error", limits=sk.Limits(time=10))
    assert "can't start new thread" in r.stderr


async def test_thread_bomb_waiting_on_its_threads_times_out(
    hostile_pool: sk.SandboxPool,
) -> None:
    code = (
        "import threading, time\nwhile True:\n"
        "    threading.Thread(target=time.sleep, args=(100,)).start()\n"
    )
    await check(hostile_pool, code, "timeout", limits=SHORT)


REFORKERS = {
    # each generation forks and exits: the main program ends at once, the chain hops on
    "hopping-chain": ("import os\nwhile True:\n    if os.fork():\n        os._exit(0)\n", "ok"),
    # a parent that respawns its child whenever it dies
    "respawner": (
        "import os, time\nwhile True:\n    pid = os.fork()\n    if pid == 0:\n"
        "        time.sleep(100)\n    os.waitpid(pid, 0)\n",
        "timeout",
    ),
    # short-lived children as fast as possible
    "churn": (
        "import os\nwhile True:\n    pid = os.fork()\n    if pid == 0:\n"
        "        os._exit(0)\n    os.waitpid(pid, 0)\n",
        "timeout",
    ),
}


@pytest.mark.parametrize("name", sorted(REFORKERS))
async def test_reforking_parent(hostile_pool: sk.SandboxPool, name: str) -> None:
    code, status = REFORKERS[name]
    await check(hostile_pool, code, status, limits=SHORT)


MEMORY_BOMBS = {
    "append-loop": "b = []\nwhile True:\n    b.append(bytearray(10**7))\n",
    "one-big-string": "s = 'x' * (400 << 20)\nprint(len(s))\n",
    "forked-hogs": (
        "import os, time\nfor _ in range(6):\n    if os.fork() == 0:\n"
        "        b = bytearray(30 << 20)\n        for i in range(0, len(b), 4096):\n"
        "            b[i] = 1\n        time.sleep(100)\n"
        "b = []\nwhile True:\n    b.append(bytearray(10**6))\n"
    ),
    "mmap-touch": (
        "import mmap\nm = mmap.mmap(-1, 1 << 30)\nfor i in range(0, len(m), 4096):\n    m[i] = 1\n"
    ),
}


@pytest.mark.parametrize("name", sorted(MEMORY_BOMBS))
async def test_memory_bomb_is_oom(hostile_pool: sk.SandboxPool, name: str) -> None:
    await check(hostile_pool, MEMORY_BOMBS[name], "oom", limits=sk.Limits(memory_mb=96, time=20))


async def test_memory_bomb_in_c(hostile_pool: sk.SandboxPool) -> None:
    code = (
        "#include <stdlib.h>\n#include <string.h>\n"
        "int main(void) { for (;;) { char *p = malloc(1 << 20); memset(p, 1, 1 << 20); } }\n"
    )
    await check(hostile_pool, code, "oom", language="c", limits=sk.Limits(memory_mb=96, time=20))


SELF_KILLS = {
    "py-kill-self": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
    "py-kill-after-alloc": (
        "import os, signal\nb = bytearray(60 << 20)\n"
        "for i in range(0, len(b), 4096):\n    b[i] = 1\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    ),
    "py-killpg": "import os, signal\nos.killpg(0, signal.SIGKILL)\n",
}


@pytest.mark.parametrize("name", sorted(SELF_KILLS))
async def test_self_sigkill_is_error_not_oom(hostile_pool: sk.SandboxPool, name: str) -> None:
    r = await check(hostile_pool, SELF_KILLS[name], "error")
    assert (r.signal, r.exit_code) == (9, None)


async def test_self_sigkill_in_bash(hostile_pool: sk.SandboxPool) -> None:
    r = await check(hostile_pool, "echo hi\nkill -9 $$\n", "error", language="bash")
    assert r.signal == 9 and r.stdout == "hi\n"


async def test_self_sigkill_in_c(hostile_pool: sk.SandboxPool) -> None:
    code = "#include <signal.h>\nint main(void) { raise(SIGKILL); return 0; }\n"
    r = await check(hostile_pool, code, "error", language="c")
    assert r.signal == 9


FILL = (
    "import errno, os\nchunk = b'x' * (1 << 20)\nn = 0\n"
    "try:\n    with open({path!r}, 'wb') as f:\n        while True:\n"
    "            f.write(chunk)\n            f.flush()\n            n += 1\n"
    "except OSError as e:\n    print(errno.errorcode[e.errno], n)\n"
)


@pytest.mark.parametrize(
    ("path", "cap_mb"), [("/dev/shm/fill", 16), ("/tmp/fill", 64), ("/work/fill", 64)]
)
async def test_filling_a_tmpfs_stops_at_its_size(
    hostile_pool: sk.SandboxPool, path: str, cap_mb: int
) -> None:
    lim = sk.Limits(time=20, file_size_mb=1024)
    r = await check(hostile_pool, FILL.format(path=path), "ok", limits=lim)
    err, n = r.stdout.split()
    assert err == "ENOSPC" and int(n) <= cap_mb


async def test_huge_file_python_gets_efbig(hostile_pool: sk.SandboxPool) -> None:
    r = await check(
        hostile_pool, FILL.format(path="/tmp/big"), "ok", limits=sk.Limits(file_size_mb=4)
    )
    err, n = r.stdout.split()
    assert err == "EFBIG" and int(n) <= 4


async def test_huge_file_sparse_truncate_is_refused(hostile_pool: sk.SandboxPool) -> None:
    code = (
        "import os\nopen('/tmp/sparse', 'w').close()\n"
        "try:\n    os.truncate('/tmp/sparse', 10 << 30)\n"
        "except OSError as e:\n    print('refused', e.errno)\n"
    )
    r = await check(hostile_pool, code, "ok", limits=sk.Limits(file_size_mb=4))
    assert r.stdout == "refused 27\n"


async def test_huge_file_from_an_exec_program_dies_of_sigxfsz(
    hostile_pool: sk.SandboxPool,
) -> None:
    # a program the agent execs gets SIGXFSZ's default action, as in any shell
    code = "head -c 8000000 /dev/zero > /tmp/f\necho rc=$?\nstat -c %s /tmp/f\n"
    r = await check(hostile_pool, code, "ok", language="bash", limits=sk.Limits(file_size_mb=4))
    assert r.stdout == f"rc={128 + 25}\n{4 << 20}\n"


async def test_huge_file_in_c_is_sigxfsz(hostile_pool: sk.SandboxPool) -> None:
    code = (
        '#include <stdio.h>\nint main(void) {\n  FILE *f = fopen("/tmp/f", "w");\n'
        "  static char b[1 << 16];\n  for (;;) fwrite(b, 1, sizeof b, f);\n}\n"
    )
    r = await check(hostile_pool, code, "error", language="c", limits=sk.Limits(file_size_mb=4))
    assert r.signal == 25  # SIGXFSZ


async def test_many_files(hostile_pool: sk.SandboxPool) -> None:
    code = (
        "import os\nfor i in range(20000):\n    open(f'/tmp/f{i}', 'w').close()\n"
        "d = '/work'\nfor i in range(300):\n    d += '/d'\n    os.mkdir(d)\n"
        "print(len(os.listdir('/tmp')))\n"
    )
    r = await check(hostile_pool, code, "ok", limits=sk.Limits(time=20))
    assert r.stdout == "20000\n"


DESCRIPTOR_HOGS = {
    "files": "fds = []\ntry:\n    while True:\n        fds.append(open('/dev/null'))\n"
    "except OSError as e:\n    print(e.errno, len(fds))\n",
    "pipes": "import os\nfds = []\ntry:\n    while True:\n        fds.extend(os.pipe())\n"
    "except OSError as e:\n    print(e.errno, len(fds))\n",
    "sockets": "import socket\nfds = []\ntry:\n    while True:\n"
    "        fds.extend(socket.socketpair())\n"
    "except OSError as e:\n    print(e.errno, len(fds))\n",
}


@pytest.mark.parametrize("name", sorted(DESCRIPTOR_HOGS))
async def test_descriptor_exhaustion_stops_at_the_limit(
    hostile_pool: sk.SandboxPool, name: str
) -> None:
    r = await check(hostile_pool, DESCRIPTOR_HOGS[name], "ok", limits=sk.Limits(open_files=64))
    err, n = r.stdout.split()
    assert int(err) == 24 and 50 <= int(n) <= 64  # EMFILE
