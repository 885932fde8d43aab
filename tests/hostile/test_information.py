"""Information: host secrets, the engine socket, host mounts, kernel interfaces."""

from __future__ import annotations

import json
import os
import secrets
import subprocess

import pytest

import sandboxkit as sk
from sandboxkit import _protocol as wire

from ._invariants import check, settle

pytestmark = [pytest.mark.docker, pytest.mark.hostile]


async def test_host_environment_never_reaches_the_sandbox() -> None:
    name, value = f"SANDBOXKIT_TEST_SECRET_{secrets.token_hex(4).upper()}", secrets.token_hex(16)
    os.environ[name] = value
    try:
        # a pool made after the secret is set: nothing of the host's environment is passed
        async with sk.SandboxPool(size=1) as pool:
            code = (
                "import os, subprocess\n"
                "seen = '\\n'.join(f'{k}={v}' for k, v in os.environ.items())\n"
                "seen += subprocess.run(['env'], capture_output=True, text=True).stdout\n"
                "for p in os.listdir('/proc'):\n"
                "    try:\n        seen += open(f'/proc/{p}/environ', 'rb').read().decode()\n"
                "    except OSError:\n        pass\n"
                "print(seen)\n"
            )
            r = await check(pool, code, "ok")
            assert name not in r.stdout and value not in r.stdout
            async with pool.checkout(sk.get_language("python"), pool.limits) as box:
                inspected = subprocess.run(
                    ["docker", "inspect", box.cid], capture_output=True, text=True, check=True
                ).stdout
            assert name not in inspected and value not in inspected
            await settle(pool)
    finally:
        del os.environ[name]


async def test_engine_socket_is_absent(hostile_pool: sk.SandboxPool) -> None:
    code = (
        "import os, stat\n"
        "names = ['/var/run/docker.sock', '/run/docker.sock', '/run/containerd/containerd.sock',"
        " '/var/run/docker', '/run/docker']\n"
        "print([n for n in names if os.path.lexists(n)])\n"
        "socks = []\n"
        "for root, dirs, files in os.walk('/', onerror=None):\n"
        "    if root.startswith(('/proc', '/sys')):\n        dirs[:] = []\n        continue\n"
        "    for f in files:\n        p = os.path.join(root, f)\n"
        "        try:\n            if stat.S_ISSOCK(os.lstat(p).st_mode):\n"
        "                socks.append(p)\n        except OSError:\n            pass\n"
        "print(socks)\n"
        "import socket\n"
        "for p in socks:\n"
        "    try:\n        socket.socket(socket.AF_UNIX).connect(p)\n        print('open', p)\n"
        "    except OSError as exc:\n        print(type(exc).__name__)\n"
    )
    r = await check(hostile_pool, code, "ok", limits=sk.Limits(time=30))
    # the one socket there may be is sandboxkit's direct channel (sandboxkit/_channel.py):
    # its agent connected before any program ran, and the host no longer listens
    channel = wire.CHANNEL_PATH
    assert r.stdout in ("[]\n[]\n", f"[]\n[{channel!r}]\nConnectionRefusedError\n")


async def test_no_host_mounts(hostile_pool: sk.SandboxPool) -> None:
    code = "import json\nprint(json.dumps([l.split()[:4] for l in open('/proc/mounts')]))\n"
    r = await check(hostile_pool, code, "ok")
    mounts = json.loads(r.stdout)
    points = {m[1]: m for m in mounts}
    # nothing of the host's filesystem but the engine's three generated files and the
    # direct channel's socket (sandboxkit/_channel.py), all read-only
    generated = {"/etc/hostname", "/etc/hosts", "/etc/resolv.conf", wire.CHANNEL_PATH}
    binds = [
        m
        for m in mounts
        if (m[0].startswith("/dev/") and m[2] != "tmpfs") or m[1] == wire.CHANNEL_PATH
    ]
    assert {m[1] for m in binds} <= generated, binds
    assert all("ro" in m[3].split(",") for m in binds), binds
    assert "ro" in points["/"][3].split(",")
    for writable in ("/work", "/tmp", "/dev/shm"):
        assert points[writable][2] == "tmpfs"


WRITES = {
    "/etc/passwd": "append",
    "/usr/bin/python3": "append",
    "/etc/hostname": "append",
    "/etc/hosts": "append",
    "/opt/sandboxkit/agent.py": "append",
    "/proc/sys/kernel/hostname": "write",
    "/proc/sys/net/ipv4/ip_forward": "write",
    "/sys/kernel/mm/transparent_hugepage/enabled": "write",
    "/sys/fs/cgroup/memory/memory.limit_in_bytes": "write",
    "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes": "write",
    "/sys/fs/cgroup/pids/pids.max": "write",
    "/sys/fs/cgroup/memory/release_agent": "write",
    "/sys/fs/cgroup/memory/cgroup.procs": "write",
    "/proc/self/oom_score_adj": "lower",
}


async def test_kernel_and_system_files_are_not_writable(hostile_pool: sk.SandboxPool) -> None:
    code = (
        f"import os\nfor path, how in {WRITES!r}.items():\n"
        "    try:\n"
        # in a with block: a write the kernel refuses fails at close, not silently in __del__
        "        with open(path, 'a' if how == 'append' else 'w') as f:\n"
        "            f.write('-1000' if how == 'lower' else 'max')\n"
        "        print('WROTE', path)\n"
        "    except OSError as e:\n        print('refused', path, e.errno)\n"
        "print(open('/sys/fs/cgroup/memory/memory.limit_in_bytes').read().strip())\n"
    )
    r = await check(hostile_pool, code, "ok")
    assert "WROTE" not in r.stdout, r.stdout
    assert r.stdout.splitlines()[-1] == str(256 << 20)


async def test_masked_kernel_interfaces(hostile_pool: sk.SandboxPool) -> None:
    code = (
        "import os\nfor p in ('/proc/kcore', '/proc/keys', '/proc/timer_list',"
        " '/sys/firmware', '/proc/kmsg', '/dev/mem', '/dev/kmsg', '/dev/sda', '/dev/vda'):\n"
        "    try:\n        with open(p, 'rb') as f:\n            data = f.read(64)\n"
        "        print('read', p, len(data))\n"
        "    except IsADirectoryError:\n        print('dir', p, os.listdir(p))\n"
        "    except OSError as e:\n        print('refused', p, e.errno)\n"
        "print(sorted(os.listdir('/dev')))\n"
    )
    r = await check(hostile_pool, code, "ok")
    lines = r.stdout.splitlines()
    for line in lines[:-1]:
        assert line.startswith(
            ("refused", "read /proc/keys 0", "read /proc/timer_list 0", "dir /sys/firmware []")
        ), line
    devices = set(json.loads(lines[-1].replace("'", '"')))
    assert devices <= {
        "console",
        "core",
        "fd",
        "full",
        "mqueue",
        "null",
        "ptmx",
        "pts",
        "random",
        "shm",
        "stderr",
        "stdin",
        "stdout",
        "tty",
        "urandom",
        "zero",
    }
