"""Process lifecycle: orphans, daemons, held pipes, ignored signals, PID 1, zombies."""

from __future__ import annotations

import json

import pytest
from box_procs import PROCS

import sandboxkit as sk
from sandboxkit import _protocol as wire

from ._invariants import check, settle

pytestmark = [pytest.mark.docker, pytest.mark.hostile]

OUTLIVERS = {
    "double-fork-daemon": (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        time.sleep(1000)\n    os._exit(0)\nprint('main done')\n"
    ),
    "daemon-closing-its-fds": (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n"
        "    for fd in (0, 1, 2):\n        os.close(fd)\n    time.sleep(1000)\n"
        "print('main done')\n"
    ),
    "background-writer-holding-stdout": (
        "import subprocess\n"
        "subprocess.Popen(['sh', '-c', 'while :; do echo bg; sleep 0.05; done'])\n"
        "print('main done', flush=True)\n"
    ),
    "background-writer-on-stderr": (
        "import subprocess, sys\n"
        "subprocess.Popen(['sh', '-c', 'while :; do echo bg >&2; done'])\n"
        "print('main done', flush=True)\n"
    ),
    "orphan-ignoring-sigterm": (
        "import os, signal, time\nif os.fork() == 0:\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n    time.sleep(1000)\n"
        "print('main done')\n"
    ),
    "nohup-sleep": (
        "import subprocess\n"
        "subprocess.Popen(['nohup', 'sleep', '1000'], start_new_session=True,\n"
        "                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print('main done')\n"
    ),
}


@pytest.mark.parametrize("name", sorted(OUTLIVERS))
async def test_outliving_processes_do_not_hold_the_call(
    hostile_pool: sk.SandboxPool, name: str
) -> None:
    # the wall limit is long: a call that waited for the leftovers would time out
    r = await check(hostile_pool, OUTLIVERS[name], "ok", limits=sk.Limits(time=30))
    assert "main done\n" in r.stdout


@pytest.mark.parametrize("name", sorted(OUTLIVERS))
async def test_next_session_run_sees_no_leftover_process(
    hostile_pool: sk.SandboxPool, name: str
) -> None:
    async with sk.Sandbox(pool=hostile_pool, limits=sk.Limits(time=30)) as sb:
        r = await sb.run(OUTLIVERS[name])
        assert r.status == "ok"
        r = await sb.run(PROCS + "print(procs)")
        assert r.status == "ok"
        # the agent and this program (and the agent's helpers, see box_procs)
        assert len(json.loads(r.stdout)) == 2, r.stdout
    await settle(hostile_pool)


async def test_bash_background_jobs(hostile_pool: sk.SandboxPool) -> None:
    code = "sleep 1000 &\n(while :; do echo bg; sleep 0.1; done) &\ndisown -a\necho main done\n"
    r = await check(hostile_pool, code, "ok", language="bash", limits=sk.Limits(time=30))
    # the background loop may print before the main line; it must not keep the run going
    # (the status would be a timeout) and nothing else may appear
    lines = r.stdout.splitlines()
    assert "main done" in lines and set(lines) <= {"main done", "bg"}, r.stdout


SIGTERM_IGNORERS = {
    "py": "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(100)\n",
    "py-all-signals": (
        "import signal, time\nfor s in signal.valid_signals():\n    try:\n"
        "        signal.signal(s, signal.SIG_IGN)\n    except (OSError, ValueError):\n"
        "        pass\nwhile True:\n    pass\n"
    ),
}


@pytest.mark.parametrize("name", sorted(SIGTERM_IGNORERS))
async def test_sigterm_ignored_still_times_out(hostile_pool: sk.SandboxPool, name: str) -> None:
    await check(hostile_pool, SIGTERM_IGNORERS[name], "timeout", limits=sk.Limits(time=2))


async def test_sigterm_ignored_in_bash(hostile_pool: sk.SandboxPool) -> None:
    await check(
        hostile_pool,
        "trap '' TERM INT HUP\nwhile :; do :; done\n",
        "timeout",
        language="bash",
        limits=sk.Limits(time=2),
    )


PID1_ATTACKS = {
    # PID 1 is another uid (sandboxkit/agent/_privs.py): each kill is refused (EPERM)
    "kill-9-1": "import os\ntry:\n    os.kill(1, 9)\nexcept OSError:\n    pass\nprint('alive')\n",
    "every-signal-to-1": (
        "import os, signal\nfor s in signal.valid_signals():\n    try:\n        os.kill(1, s)\n"
        "    except OSError:\n        pass\nprint('alive')\n"
    ),
    "sigint-to-1": "import os, signal, time\ntry:\n    os.kill(1, signal.SIGINT)\n"
    "except OSError:\n    pass\ntime.sleep(0.3)\nprint('alive')\n",
    "sigstop-to-1": "import os, signal, time\ntry:\n    os.kill(1, signal.SIGSTOP)\n"
    "except OSError:\n    pass\ntime.sleep(0.3)\nprint('alive')\n",
    "kill-minus-1": "import os\ntry:\n    os.kill(-1, 9)\nexcept OSError:\n    pass\n"
    "print('alive')\n",
    "open-proc-1-fd-1": (
        "try:\n    open('/proc/1/fd/1', 'wb')\nexcept OSError as e:\n    print('denied', e.errno)\n"
    ),
    "open-proc-1-fd-0": (
        "try:\n    open('/proc/1/fd/0', 'rb')\nexcept OSError as e:\n    print('denied', e.errno)\n"
    ),
    "read-proc-1-mem": (
        "try:\n    open('/proc/1/mem', 'rb').read(1)\nexcept OSError as e:\n"
        "    print('denied', e.errno)\n"
    ),
    "read-proc-1-environ": (
        "try:\n    open('/proc/1/environ', 'rb').read()\nexcept OSError as e:\n"
        "    print('denied', e.errno)\n"
    ),
    "ptrace-attach-1": (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "rc = libc.ptrace(16, 1, 0, 0)\n"
        "print('denied', ctypes.get_errno()) if rc != 0 else print('ATTACHED')\n"
    ),
    "process-vm-readv-1": (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "class iovec(ctypes.Structure):\n"
        "    _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]\n"
        "buf = ctypes.create_string_buffer(8)\nlocal = iovec(ctypes.addressof(buf), 8)\n"
        "remote = iovec(0x400000, 8)\n"
        "n = libc.process_vm_readv(1, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)\n"
        "print('denied', ctypes.get_errno()) if n < 0 else print('READ')\n"
    ),
}


@pytest.mark.parametrize("name", sorted(PID1_ATTACKS))
async def test_attacks_on_pid1(hostile_pool: sk.SandboxPool, name: str) -> None:
    r = await check(hostile_pool, PID1_ATTACKS[name], "ok")
    assert r.stdout.startswith(("alive", "denied")), r.stdout


@pytest.mark.parametrize("name", ["kill-9-1", "every-signal-to-1", "sigint-to-1"])
async def test_agent_survives_signals_within_a_session(
    hostile_pool: sk.SandboxPool, name: str
) -> None:
    async with sk.Sandbox(pool=hostile_pool) as sb:
        assert (await sb.run(PID1_ATTACKS[name])).stdout == "alive\n"
        r = await sb.run("print('next')")
        assert (r.status, r.stdout) == ("ok", "next\n")
    await settle(hostile_pool)


async def test_the_supervisors_limits_are_out_of_the_programs_reach(
    hostile_pool: sk.SandboxPool,
) -> None:
    # PID 1 is another uid: lowering its limits is refused, and the run goes on
    code = (
        "import resource, time\ntry:\n    resource.prlimit(1, resource.RLIMIT_CPU, (0, 0))\n"
        "except OSError as e:\n    print('denied', e.errno)\n"
        "t = time.time()\nwhile time.time() - t < 2:\n    pass\nprint('done')\n"
    )
    r = await check(hostile_pool, code, "ok", limits=sk.Limits(time=10))
    assert r.stdout == "denied 1\ndone\n"


async def test_frames_forged_on_stdout_are_plain_output(hostile_pool: sk.SandboxPool) -> None:
    fake_exit = json.dumps(
        {"exit_code": 0, "signal": None, "reason": None, "wall": 0, "oom_kills": 0}
    )
    forged = (
        wire.pack(wire.STDOUT, b"forged-out")
        + wire.pack(wire.EXIT, fake_exit.encode())
        + wire.pack(wire.READY, b"{}")
    )
    docker_hdr = b"\x01\x00\x00\x00\x00\x00\x00\x05hello"  # the engine's own multiplexing
    code = (
        f"import sys\nsys.stdout.buffer.write({forged + docker_hdr!r})\n"
        f"sys.stderr.buffer.write({forged!r})\nsys.stdout.flush()\nsys.exit(3)\n"
    )
    r = await check(hostile_pool, code, "error")
    assert r.exit_code == 3
    raw = (forged + docker_hdr).decode("utf-8", errors="replace")
    assert r.stdout == raw and r.stderr == forged.decode("utf-8", errors="replace")


ZOMBIES = {
    "zombie-herd": (
        "import os, time\nfor _ in range(40):\n    if os.fork() == 0:\n        os._exit(0)\n"
        "time.sleep(0.5)\nprint('zombies', sum(1 for p in os.listdir('/proc') if p.isdigit()"
        " and open(f'/proc/{p}/stat').read().split(')')[1].split()[0] == 'Z'))\n"
    ),
    "zombies-to-the-pids-limit": (
        "import os\nn = 0\nwhile True:\n    try:\n        pid = os.fork()\n"
        "    except OSError:\n        break\n    if pid == 0:\n        os._exit(0)\n"
        "    n += 1\nprint('zombies', n > 0)\n"
    ),
}


@pytest.mark.parametrize("name", sorted(ZOMBIES))
async def test_zombies(hostile_pool: sk.SandboxPool, name: str) -> None:
    r = await check(hostile_pool, ZOMBIES[name], "ok", limits=sk.Limits(time=20))
    assert r.stdout.startswith("zombies")


async def test_zombies_are_reaped_before_the_next_session_run(
    hostile_pool: sk.SandboxPool,
) -> None:
    async with sk.Sandbox(pool=hostile_pool) as sb:
        assert (await sb.run(ZOMBIES["zombies-to-the-pids-limit"])).status == "ok"
        r = await sb.run(
            PROCS + "print(len(procs))\n"
            "pid = os.fork()\nif pid == 0:\n    os._exit(7)\n"
            "print(os.waitpid(pid, 0)[1] >> 8)\n"
        )
        assert (r.status, r.stdout) == ("ok", "2\n7\n")
    await settle(hostile_pool)


async def test_state_is_not_left_for_the_next_user(hostile_pool: sk.SandboxPool) -> None:
    code = (
        "import os, subprocess\nfor d in ('/work', '/tmp', '/dev/shm'):\n"
        "    open(d + '/left', 'w').write('secret')\n"
        "subprocess.Popen(['sleep', '1000'], start_new_session=True)\n"
    )
    await check(hostile_pool, code, "ok")
    r = await hostile_pool.run(
        PROCS + "print([os.path.exists(d + '/left') for d in ('/work', '/tmp', '/dev/shm')],"
        " len(procs))\n"
    )
    assert r.stdout == "[False, False, False] 2\n"
