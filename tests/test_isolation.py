"""Isolation facts, proven from inside a real sandbox (and, for the engine's side, from
``docker inspect`` of a live one)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

import sandboxkit as sk
from sandboxkit import _protocol as wire

pytestmark = pytest.mark.docker

FACTS = r"""
import json, os, resource, socket
status = dict(l.split(":\t", 1) for l in open("/proc/self/status") if ":\t" in l)
def read(p):
    try:
        return open(p).read().strip()
    except OSError as e:
        return f"ERR {e.errno}"
def attempt_write(p):
    try:
        open(p, "a").write("x")
        return "WROTE"
    except OSError as e:
        return e.errno
try:
    socket.create_connection(("127.0.0.1", 8080), timeout=2)
    connect = "CONNECTED"
except OSError as e:
    connect = e.errno
routes = open("/proc/net/route").read().splitlines()[1:]
mounts = {l.split()[1]: l.split()[3] for l in open("/proc/mounts")}
print(json.dumps({
    "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
    "cap_eff": status["CapEff"].strip(), "cap_bnd": status["CapBnd"].strip(),
    "no_new_privs": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip(),
    "nets": sorted(os.listdir("/sys/class/net")), "routes": routes, "connect": connect,
    "write_etc": attempt_write("/etc/sandboxkit-test"),
    "write_usr": attempt_write("/usr/sandboxkit-test"),
    "write_root": attempt_write("/sandboxkit-test"),
    "mounts": mounts,
    "mem": read("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
    "memsw": read("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"),
    "swap_max_v2": read("/sys/fs/cgroup/memory.swap.max"),
    "pids_max": read("/sys/fs/cgroup/pids/pids.max"),
    "pids_max_v2": read("/sys/fs/cgroup/pids.max"),
    "fsize": resource.getrlimit(resource.RLIMIT_FSIZE),
    "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
    "cpu": resource.getrlimit(resource.RLIMIT_CPU),
    "core": resource.getrlimit(resource.RLIMIT_CORE),
    "pid": os.getpid(), "ppid": os.getppid(),
    "pid1": open("/proc/1/cmdline", "rb").read().decode().split("\0"),
    "hostname": socket.gethostname(),
}))
"""


@pytest.fixture(scope="module")
async def facts(pool: sk.SandboxPool) -> dict:
    r = await pool.run(
        FACTS,
        limits=sk.Limits(
            time=20, memory_mb=128, pids=48, file_size_mb=8, open_files=100, disk_mb=32
        ),
    )
    assert r.status == "ok", r
    return dict(json.loads(r.stdout))


async def test_non_root(facts: dict) -> None:
    assert (facts["uid"], facts["euid"], facts["gid"]) == (65534, 65534, 65534)
    assert 0 not in facts["groups"]


async def test_no_capabilities_and_no_new_privileges(facts: dict) -> None:
    assert facts["cap_eff"] == facts["cap_bnd"] == "0000000000000000"
    assert facts["no_new_privs"] == "1"
    assert facts["seccomp"] == "2"  # a seccomp filter is on (sandboxkit's: test_seccomp.py)


async def test_no_network_but_loopback(facts: dict) -> None:
    assert facts["nets"] == ["lo"]
    assert facts["routes"] == []  # no default route, no route at all
    assert facts["connect"] == 111  # its own loopback, nobody listening: ECONNREFUSED


async def test_read_only_root(facts: dict) -> None:
    assert facts["write_etc"] == facts["write_usr"] == facts["write_root"] == 30  # EROFS
    assert "ro" in facts["mounts"]["/"].split(",")


async def test_size_capped_tmpfs(facts: dict) -> None:
    for point in ("/work", "/tmp", "/run/sandboxkit"):  # the last: a session's own files
        opts = facts["mounts"][point].split(",")
        assert "size=32768k" in opts and "nosuid" in opts and "nodev" in opts


async def test_memory_without_swap(facts: dict) -> None:
    if facts["mem"].startswith("ERR"):  # cgroup v2
        assert facts["swap_max_v2"] == "0"
    else:
        assert int(facts["mem"]) == int(facts["memsw"]) == 128 << 20


async def test_pids_limit(facts: dict) -> None:
    pids = facts["pids_max"] if not facts["pids_max"].startswith("ERR") else facts["pids_max_v2"]
    assert pids == "48"


async def test_rlimits(facts: dict) -> None:
    assert facts["fsize"] == [8 << 20, 8 << 20]
    assert facts["nofile"] == [100, 100]
    assert facts["cpu"] == [21, 21]  # the backstop: one second past the run-wide limit
    assert facts["core"] == [0, 0]


async def test_user_program_is_not_pid1(facts: dict) -> None:
    assert facts["pid"] != 1 and facts["ppid"] == 1
    assert facts["pid1"][:2] == ["python3", "-I"]
    assert facts["pid1"][2].startswith("/opt/sandboxkit/agent")


async def test_hostname_is_neutral(facts: dict) -> None:
    assert facts["hostname"] == "sandbox"


async def test_engine_side_of_a_live_sandbox(pool: sk.SandboxPool) -> None:
    async with pool.checkout(sk.get_language("python"), pool.limits) as box:
        out = subprocess.run(
            ["docker", "inspect", box.cid], capture_output=True, text=True, check=True
        ).stdout
    (info,) = json.loads(out)
    host = info["HostConfig"]
    assert host["LogConfig"]["Type"] == "none"
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True
    # the agent's four, given up by every program it starts (test_seccomp.py proves it)
    assert host["CapDrop"] == ["ALL"]
    assert sorted(host["CapAdd"]) == ["CAP_KILL", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID"]
    assert "no-new-privileges" in host["SecurityOpt"] and not host["Privileged"]
    assert host["Memory"] == host["MemorySwap"] == 256 << 20
    assert host["PidsLimit"] == 64
    # the one mount of a host path: the direct channel's socket, read-only, gone from
    # the host (sandboxkit/_channel.py); nothing else of the host's
    assert not host["Binds"]
    for mount in info["Mounts"]:
        assert mount["Type"] == "bind" and mount["Destination"] == wire.CHANNEL_PATH
        assert mount["RW"] is False and not os.path.exists(mount["Source"])
    assert len(info["Mounts"]) <= 1
    assert info["Config"]["User"] == "0:0"  # the agent's start; programs run as 65534
    assert host["AutoRemove"] is True and info["Config"]["StdinOnce"] is True
    labels = info["Config"]["Labels"]
    assert labels["org.sandboxkit.pool"] == pool.pool_id
    assert labels["org.sandboxkit.owner"].split(":")[1].isdigit()
