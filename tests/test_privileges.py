"""The supervisor apart from the program (sandboxkit/agent/_privs.py), proven from inside
real sandboxes under runc and gVisor: the program runs as a uid of its own with no
capability, and PID 1 is out of its reach."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from box_procs import PROCS
from conftest import containers_of_pool

import sandboxkit as sk
from sandboxkit._backends import docker as dk
from sandboxkit._backends.base import BridgeNetwork
from sandboxkit._container import Resources, Shape, container_spec
from sandboxkit.agent import _privs

PROBE = r"""
import ctypes, json, os, resource, signal

def status(pid):
    return {k: v.split() for k, v in (l.split(":\t", 1) for l in open(f"/proc/{pid}/status")
            if ":\t" in l)}

out = {"me": status("self"), "pid1": status(1)}
def attempt(name, f):
    try:
        f()
        out[name] = "ok"
    except OSError as e:
        out[name] = e.errno
attempt("kill_1_sig0", lambda: os.kill(1, 0))
attempt("kill_1_sigkill", lambda: os.kill(1, signal.SIGKILL))
attempt("kill_1_sigstop", lambda: os.kill(1, signal.SIGSTOP))
attempt("prlimit_1_read", lambda: resource.prlimit(1, resource.RLIMIT_NOFILE))
attempt("prlimit_1_write", lambda: resource.prlimit(1, resource.RLIMIT_CORE, (0, 0)))
attempt("open_1_fd_1", lambda: os.close(os.open("/proc/1/fd/1", os.O_WRONLY)))
attempt("read_1_mem", lambda: open("/proc/1/mem", "rb").read(1))
attempt("setuid_supervisor", lambda: os.setuid(int(out["pid1"]["Uid"][0])))
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
r = libc.syscall(ctypes.c_long(101), ctypes.c_long(16), ctypes.c_long(1), ctypes.c_long(0),
                 ctypes.c_long(0))
out["ptrace_1"] = "ok" if r == 0 else ctypes.get_errno()
with open("made.txt", "w") as f:
    f.write("x")
out["made_owner"] = os.stat("made.txt").st_uid
out["given_owner"] = os.stat("given.txt").st_uid
with open("given.txt", "a") as f:  # the file the host gave is the program's to change
    f.write("more")
print(json.dumps(out))
"""
EPERM, EACCES = 1, 13
RUNTIMES = ["runc", "runsc"]


def need(runtime: str) -> None:
    if runtime == "runsc" and shutil.which("runsc") is None:
        pytest.skip("runsc (gVisor) is not installed here")


def test_only_the_agent_gets_capabilities_and_it_starts_as_root() -> None:
    spec = container_spec(Shape(image="i", network=BridgeNetwork()), Resources(), {}, {}, "n")
    body = dk.create_body(spec)
    assert body["User"] == "0:0"
    assert body["HostConfig"]["CapDrop"] == ["ALL"]
    # the engine grants what the agent keeps (bits 5 to 8), nothing more
    assert sorted(dk.AGENT_CAPABILITIES) == ["CAP_KILL", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID"]
    assert _privs.GRANTED == 0x1E0 and _privs.HELD == 0xE0  # SETPCAP: the start only
    assert _privs.SUPERVISOR_UID not in (0, spec.uid)


@pytest.mark.docker
@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_pid1_is_out_of_the_programs_reach(pool: sk.SandboxPool, runtime: str) -> None:
    need(runtime)
    async with sk.Sandbox(pool=pool, runtime=runtime) as sb:  # type: ignore[arg-type]
        await sb.write_file("given.txt", "from the host")
        r = await sb.run(PROBE)
        assert r.status == "ok", r
        out = json.loads(r.stdout)
        # the next run sees what the program left, and the file the host gave, changed
        assert await sb.read_file("given.txt") == b"from the hostmore"
    me, pid1 = out.pop("me"), out.pop("pid1")
    assert me["Uid"] == ["65534"] * 4 and me["Gid"] == ["65534"] * 4
    assert me.get("Groups", []) == []
    for field in ("CapInh", "CapPrm", "CapEff", "CapBnd"):
        assert me[field] == ["0000000000000000"], field
    # the supervisor: its own real and saved uid, acting on files as the program's
    sup, prog = str(_privs.SUPERVISOR_UID), "65534"
    assert pid1["Uid"] == [sup, prog, sup, prog] and pid1["Gid"] == [sup, prog, sup, prog]
    assert pid1["CapEff"] == pid1["CapPrm"] == [f"{_privs.HELD:016x}"]
    assert pid1["CapBnd"] == ["0000000000000000"]  # emptied at its start, for every child
    assert out.pop("made_owner") == out.pop("given_owner") == 65534
    refused = {
        "kill_1_sig0": EPERM,
        "kill_1_sigkill": EPERM,
        "kill_1_sigstop": EPERM,
        "prlimit_1_read": EPERM,
        "prlimit_1_write": EPERM,
        "open_1_fd_1": EACCES,
        "read_1_mem": EACCES,
        "setuid_supervisor": EPERM,
        "ptrace_1": EPERM,
    }
    assert out == refused


@pytest.mark.docker
@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_the_supervisor_still_ends_what_the_program_leaves(
    pool: sk.SandboxPool, runtime: str
) -> None:
    need(runtime)
    leave = (
        "import subprocess\n"
        "subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
        "print('left')\n"
    )
    count = PROCS + "print([p for p in procs if p != os.getpid()])\n"  # (see box_procs)
    async with sk.Sandbox(pool=pool, runtime=runtime) as sb:  # type: ignore[arg-type]
        assert (await sb.run(leave)).stdout == "left\n"
        r = await sb.run(count)
    # PID 1 alone (under gVisor too): the leftover of another uid was killed (CAP_KILL)
    assert r.stdout == "[1]\n", r


def host_status(pid: int | str) -> dict[str, list[str]]:
    """A process's /proc status as the host sees it."""
    text = Path(f"/proc/{pid}/status").read_text()
    return {
        k: v.split() for k, v in (ln.split(":\t", 1) for ln in text.splitlines() if ":\t" in ln)
    }


def find_program(pool_id: str, marker: str) -> tuple[str, str, str] | None:
    """(PID 1, the program) as host pids, and PID 1's uid map: the program is the child
    of a runc sandbox's PID 1 holding ``marker`` open."""
    for cid in containers_of_pool(pool_id):
        out = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Pid}} {{.HostConfig.Runtime}}", cid],
            capture_output=True,
            text=True,
        ).stdout.split()
        if len(out) != 2 or out[1] != "runc" or out[0] == "0":
            continue
        pid = out[0]
        try:
            for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
                fds = Path(f"/proc/{child}/fd")
                if any(os.readlink(fds / fd).endswith(marker) for fd in os.listdir(fds)):
                    return pid, child, Path(f"/proc/{pid}/uid_map").read_text()
        except OSError:  # it ended meanwhile
            continue
    return None


@pytest.mark.docker
async def test_no_process_of_a_sandbox_is_root_on_the_host(pool: sk.SandboxPool) -> None:
    marker = f"sk-marker-{secrets.token_hex(4)}"
    code = f"import sys\nf = open('/tmp/{marker}', 'w')\nprint('up', flush=True)\nsys.stdin.read()"
    async with await sk.Sandbox.start(code, pool=pool) as proc:
        async for event in proc:
            if event.kind == "stdout":
                break
        found = find_program(pool.pool_id, marker)
        assert found is not None, "the program's process was not found on this machine"
        agent, program = host_status(found[0]), host_status(found[1])
        await proc.close_stdin()
        assert (await proc.wait()).status == "ok"
    # uid 0 inside is host uid `offset`: 0 itself unless the engine remaps (doctor says)
    offset = int(found[2].split()[1])
    sup, prog = str(offset + _privs.SUPERVISOR_UID), str(offset + 65534)
    assert agent["Uid"] == [sup, prog, sup, prog]
    assert program["Uid"] == [prog] * 4
