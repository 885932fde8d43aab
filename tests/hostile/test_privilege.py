"""Privilege: capabilities, setuid, mount, unshare, ptrace, hostname, mknod."""

from __future__ import annotations

import pytest

import sandboxkit as sk

from ._invariants import check

pytestmark = [pytest.mark.docker, pytest.mark.hostile]

LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"


def syscall_attempt(call: str) -> str:
    return LIBC + (
        f"rc = {call}\nprint('denied', ctypes.get_errno()) if rc != 0 else print('ALLOWED')\n"
    )


ATTEMPTS = {
    "mount-tmpfs": syscall_attempt("libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)"),
    "remount-root-rw": syscall_attempt("libc.mount(b'none', b'/', None, 32 | 0x20, None)"),
    "unshare-user": syscall_attempt("libc.unshare(0x10000000)"),
    "unshare-mount": syscall_attempt("libc.unshare(0x00020000)"),
    "unshare-net": syscall_attempt("libc.unshare(0x40000000)"),
    "sethostname": syscall_attempt("libc.sethostname(b'evil', 4)"),
    "setuid-0": syscall_attempt("libc.setuid(0)"),
    "setgid-0": syscall_attempt("libc.setgid(0)"),
    "chroot": syscall_attempt("libc.chroot(b'/tmp')"),
    "mknod-char": syscall_attempt("libc.mknod(b'/tmp/mem', 0o20600, os.makedev(1, 1))"),
    "mknod-block": syscall_attempt("libc.mknod(b'/work/sda', 0o60600, os.makedev(8, 0))"),
    "ptrace-traceme-then-attach-1": syscall_attempt("libc.ptrace(16, 1, 0, 0)"),
    "kexec-load": syscall_attempt("libc.syscall(246, 0, 0, 0, 0)"),
    "init-module": syscall_attempt("libc.syscall(175, 0, 0, b'')"),
    "reboot": syscall_attempt("libc.reboot(0x4321fedc)"),
    "settimeofday": syscall_attempt("libc.settimeofday(ctypes.byref(ctypes.c_long(0) ), None)"),
    "chown-to-root": LIBC
    + "open('/tmp/x', 'w').close()\n"
    + (
        "rc = libc.chown(b'/tmp/x', 0, 0)\n"
        "print('denied', ctypes.get_errno()) if rc != 0 else print('ALLOWED')\n"
    ),
    "raw-socket": (
        "import socket\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)\n"
        "    print('ALLOWED')\nexcept OSError as e:\n    print('denied', e.errno)\n"
    ),
}


@pytest.mark.parametrize("name", sorted(ATTEMPTS))
async def test_privileged_operation_is_denied(hostile_pool: sk.SandboxPool, name: str) -> None:
    r = await check(hostile_pool, ATTEMPTS[name], "ok")
    assert r.stdout.startswith("denied"), r.stdout


async def test_no_capabilities_and_no_new_privileges(hostile_pool: sk.SandboxPool) -> None:
    code = (
        "st = dict(l.split(':\\t', 1) for l in open('/proc/self/status') if ':\\t' in l)\n"
        "print(*(st[k].strip() for k in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb',"
        " 'NoNewPrivs')))\n"
    )
    r = await check(hostile_pool, code, "ok")
    assert r.stdout.split() == ["0000000000000000"] * 5 + ["1"]


async def test_setuid_binaries_do_not_elevate(hostile_pool: sk.SandboxPool) -> None:
    code = (
        "import os, stat, subprocess\nfound = []\n"
        "for d in ('/bin', '/sbin', '/usr/bin', '/usr/sbin', '/usr/lib'):\n"
        "    for root, _, files in os.walk(d):\n        for f in files:\n"
        "            p = os.path.join(root, f)\n            try:\n"
        "                m = os.lstat(p).st_mode\n            except OSError:\n"
        "                continue\n"
        "            if stat.S_ISREG(m) and m & (stat.S_ISUID | stat.S_ISGID):\n"
        "                found.append(p)\n"
        "print(len(found))\n"
        # a setuid copy of our own: nosuid tmpfs + no_new_privs keep the same ids
        "import shutil\nshutil.copy('/usr/bin/id', '/tmp/myid')\nos.chmod('/tmp/myid', 0o6755)\n"
        "out = subprocess.run(['/tmp/myid', '-u'], capture_output=True, text=True)\n"
        "print(out.stdout.strip())\n"
        "print(subprocess.run(['su', '-c', 'id -u'], capture_output=True, text=True,"
        " stdin=subprocess.DEVNULL).stdout.strip() or 'no su')\n"
    )
    r = await check(hostile_pool, code, "ok", limits=sk.Limits(time=30))
    lines = r.stdout.splitlines()
    assert lines[1] == "65534" and lines[2] == "no su", r.stdout


async def test_mount_and_unshare_commands_fail(hostile_pool: sk.SandboxPool) -> None:
    code = (
        "mount -t tmpfs none /tmp 2>/dev/null; echo mount=$?\n"
        "unshare -r true 2>/dev/null; echo unshare=$?\n"
        "hostname evil 2>/dev/null; echo hostname=$? $(hostname)\n"
    )
    r = await check(hostile_pool, code, "ok", language="bash")
    assert r.stdout.splitlines()[0] != "mount=0"
    assert r.stdout.splitlines()[1] != "unshare=0"
    assert r.stdout.splitlines()[2].split()[1] == "sandbox"


async def test_ptrace_of_own_child_is_fine_but_not_of_pid1(hostile_pool: sk.SandboxPool) -> None:
    # tracing one's own process is ordinary (debuggers): the boundary is the agent
    code = LIBC + (
        "import signal\npid = os.fork()\nif pid == 0:\n    import time\n    time.sleep(5)\n"
        "    os._exit(0)\n"
        "own = libc.ptrace(16, pid, 0, 0)\nos.kill(pid, signal.SIGKILL)\n"
        "pid1 = libc.ptrace(16, 1, 0, 0)\nprint(own, pid1)\n"
    )
    r = await check(hostile_pool, code, "ok")
    assert r.stdout.split()[1] == "-1"
