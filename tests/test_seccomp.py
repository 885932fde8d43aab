"""sandboxkit's seccomp profile: the data (pure), and the calls it refuses, probed from
inside real sandboxes under runc and gVisor."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess

import pytest

import sandboxkit as sk
from sandboxkit._backends import docker as dk
from sandboxkit._backends import seccomp
from sandboxkit._backends.base import BridgeNetwork
from sandboxkit._container import Resources, Shape, container_spec
from sandboxkit._images import dockerfile
from sandboxkit._languages import BASH

IO_URING = {"io_uring_setup", "io_uring_enter", "io_uring_register"}
# the calls the issue (26) names, each to be refused
NAMED = IO_URING | {
    *("userfaultfd", "unshare", "keyctl", "add_key", "request_key", "bpf"),
    *("perf_event_open", "mount", "ptrace", "kexec_load", "open_by_handle_at"),
    *("init_module", "pivot_root", "process_vm_readv", "setns", "chroot"),
}


def allowed_names(profile: dict) -> set[str]:
    """Every name an ALLOW rule lets through, whatever its conditions."""
    return {
        name
        for rule in profile["syscalls"]
        if rule["action"] == "SCMP_ACT_ALLOW"
        for name in rule["names"]
    }


# ---------------------------------------------------------------- pure: the profile
def test_io_uring_is_refused_with_eperm() -> None:
    profile = seccomp.profile()
    assert not IO_URING & allowed_names(profile)
    (refusal,) = [r for r in profile["syscalls"] if "io_uring_setup" in r["names"]]
    assert refusal == {
        "names": sorted(seccomp.REFUSED),
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": seccomp.EPERM,
    }
    assert set(refusal["names"]) >= IO_URING


def test_every_call_the_issue_names_is_refused_and_none_is_also_allowed() -> None:
    assert set(seccomp.REFUSED) >= NAMED
    assert not set(seccomp.REFUSED) & allowed_names(seccomp.profile())


def test_every_refusal_has_a_one_line_reason() -> None:
    for name, reason in seccomp.REFUSED.items():
        assert name.replace("_", "").isalnum(), name
        assert len(reason) >= 20 and "\n" not in reason, (name, reason)


def test_refusals_answer_eperm_and_nothing_is_killed() -> None:
    profile = seccomp.profile()
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["defaultErrnoRet"] == seccomp.EPERM
    actions = {(r["action"], r.get("errnoRet")) for r in profile["syscalls"]}
    assert actions == {
        ("SCMP_ACT_ALLOW", None),
        ("SCMP_ACT_ERRNO", seccomp.EPERM),
        ("SCMP_ACT_ERRNO", seccomp.ENOSYS),  # clone3 alone: the C library falls back
    }
    (enosys,) = [r for r in profile["syscalls"] if r.get("errnoRet") == seccomp.ENOSYS]
    assert enosys["names"] == ["clone3"]


def test_clone_and_socket_rules_keep_namespaces_and_odd_families_out() -> None:
    rules = {json.dumps(r["args"]) for r in seccomp.profile()["syscalls"] if "args" in r}
    clone = {"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
    assert json.dumps([clone]) in rules  # no CLONE_NEW* flag may be set
    families = [r["args"][0] for r in seccomp.profile()["syscalls"] if r["names"] == ["socket"]]
    assert {(f["op"], f["value"]) for f in families} == {
        ("SCMP_CMP_LT", 38),  # below AF_ALG
        ("SCMP_CMP_EQ", 39),  # AF_NFC
        ("SCMP_CMP_GT", 40),  # above AF_VSOCK
    }


def test_the_profile_is_the_json_every_create_body_carries() -> None:
    assert json.loads(seccomp.PROFILE_JSON) == seccomp.profile()
    spec = container_spec(Shape(image="i", network=BridgeNetwork()), Resources(), {}, {}, "n")
    opts = dk.create_body(spec)["HostConfig"]["SecurityOpt"]
    assert "no-new-privileges" in opts
    (opt,) = [o for o in opts if o.startswith("seccomp=")]
    assert json.loads(opt.removeprefix("seccomp=")) == seccomp.profile()


def test_a_changed_profile_is_a_changed_image_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    before = dockerfile.build_context(BASH)
    monkeypatch.setattr(dockerfile, "PROFILE_DIGEST", "0" * 64)
    after = dockerfile.build_context(BASH)
    assert after.dockerfile == before.dockerfile and after.tag != before.tag


# ---------------------------------------------------------------- probes in a sandbox
# x86-64 call numbers; each call made with arguments that would succeed if allowed
PROBE = r"""
import ctypes, errno, json, os, socket, subprocess, threading

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
buf = ctypes.create_string_buffer(4096)  # zeroed: io_uring_params, bpf_attr, perf attr
text = {s: ctypes.create_string_buffer(s.encode()) for s in ("none", "/tmp", "tmpfs", "user", "k")}
iov = (ctypes.c_long * 2)(ctypes.addressof(buf), 8)
a = ctypes.addressof


def call(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(x) for x in args))
    if r == 0 and nr == 56:  # a clone that went through: the child leaves at once
        os._exit(0)
    if r >= 0:
        return "ok"
    return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))


# ordinary programs first: threads (clone3 -> ENOSYS -> clone), a child, a socket
out = {}
t = threading.Thread(target=lambda: None)
t.start()
t.join()
out["thread"] = "ok"
out["subprocess"] = subprocess.run(["sh", "-c", "echo hi"], capture_output=True, text=True).stdout
socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close()
out["sockets"] = "ok"
CLONE_NEWUSER = 0x10000000
probes = {
    "io_uring_setup": (425, 8, a(buf)),
    "io_uring_enter": (426, 0, 1, 0, 0, 0, 0),
    "io_uring_register": (427, 0, 0, 0, 0),
    "userfaultfd": (323, 0),
    "clone_newuser": (56, CLONE_NEWUSER | 17, 0, 0, 0, 0),
    "setns": (308, 0, 0),
    "keyctl": (250, 0, -3, 0),
    "add_key": (248, a(text["user"]), a(text["k"]), a(text["k"]), 1, -3),
    "request_key": (249, a(text["user"]), a(text["k"]), 0, 0),
    "bpf": (321, 0, a(buf), 72),
    "perf_event_open": (298, a(buf), 0, -1, -1, 0),
    "mount": (165, a(text["none"]), a(text["/tmp"]), a(text["tmpfs"]), 0, 0),
    "umount2": (166, a(text["/tmp"]), 0),
    "pivot_root": (155, a(text["/tmp"]), a(text["/tmp"])),
    "chroot": (161, a(text["/tmp"])),
    "ptrace_attach_pid1": (101, 16, 1, 0, 0),
    "process_vm_readv_pid1": (310, 1, a(iov), 1, a(iov), 1, 0),
    "personality_read_implies_exec": (135, 0x0400000),
    "kexec_load": (246, 0, 0, 0, 0),
    "init_module": (175, a(buf), 0, a(text["k"])),
    "open_by_handle_at": (304, -100, a(buf), 0),
    "name_to_handle_at": (303, -100, a(text["/tmp"]), a(buf), a(buf), 0),
    "modify_ldt": (154, 0, a(buf), 16),
    "clone3": (435, a(buf), 88),
    "socket_af_alg": (41, 38, 5, 0),
    "socket_af_vsock": (41, 40, 1, 0),
    "personality_query": (135, 0xFFFFFFFF),
    "unshare_newuser": (272, CLONE_NEWUSER),  # last: gVisor lets it through
}
out.update({name: call(*args) for name, args in probes.items()})
print(json.dumps(out))
"""
ORDINARY = {"thread": "ok", "subprocess": "hi\n", "sockets": "ok"}
# what gVisor implements in its own kernel: the call stays there, the host's is not reached
GVISOR_OWN = {"io_uring_setup", "clone_newuser", "unshare_newuser", "personality_query"}

x86_64 = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64"), reason="the probe's call numbers are x86-64's"
)


@x86_64
@pytest.mark.docker
async def test_under_runc_every_refused_call_answers_eperm(pool: sk.SandboxPool) -> None:
    r = await pool.run(PROBE)
    assert r.status == "ok", r
    out = json.loads(r.stdout)
    for name, answer in ORDINARY.items():
        assert out.pop(name) == answer, name
    assert out.pop("clone3") == "ENOSYS"
    assert out.pop("personality_query") == "ok"
    assert out == dict.fromkeys(out, "EPERM"), out


@x86_64
@pytest.mark.docker
async def test_under_gvisor_the_calls_stay_in_its_own_kernel(pool: sk.SandboxPool) -> None:
    if shutil.which("runsc") is None:
        pytest.skip("runsc (gVisor) is not installed here")
    # runsc does not apply an OCI seccomp profile (its own kernel answers the program);
    # what it refuses, it refuses itself, with its own errno
    r = await pool.run(PROBE, runtime="runsc")
    assert r.status == "ok", r
    out = json.loads(r.stdout)
    for name, answer in ORDINARY.items():
        assert out.pop(name) == answer, name
    refused = {name: answer for name, answer in out.items() if name not in GVISOR_OWN}
    assert "ok" not in refused.values(), refused


@pytest.mark.docker
async def test_the_engine_holds_the_profile_of_a_live_sandbox(pool: sk.SandboxPool) -> None:
    async with pool.checkout(sk.get_language("python"), pool.limits) as box:
        out = subprocess.run(
            ["docker", "inspect", box.cid], capture_output=True, text=True, check=True
        ).stdout
    (info,) = json.loads(out)
    opts = info["HostConfig"]["SecurityOpt"]
    (opt,) = [o for o in opts if o.startswith("seccomp=")]
    assert json.loads(opt.removeprefix("seccomp=")) == seccomp.profile()
