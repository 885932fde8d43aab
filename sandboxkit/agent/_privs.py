"""The supervisor apart from the program: two uids, capabilities in the agent only.

The engine starts the agent as uid 0 holding four capabilities and nothing else
(``CAP_SETUID``, ``CAP_SETGID``, ``CAP_KILL``, ``CAP_SETPCAP``; no-new-privileges and
sandboxkit's seccomp profile apply). :func:`separate`, the agent's first act, empties
the bounding set (``CAP_SETPCAP``'s one use), makes :data:`SUPERVISOR_UID` its real and
saved uid and the program's uid (the owner of the working directory) its effective uid,
and keeps three capabilities (:data:`HELD`). Its files are the program's, and it reads
the program's files as the program would, while the kernel's checks on signals,
``ptrace`` and ``prlimit`` see the real and saved uid, not the program's. Every child
that will run user code calls :func:`become_program` before anything of the user's
runs: the program's uid in all its uids, no supplementary group, no capability at all
(the bounding set is empty already).

So the program cannot signal, trace nor ``prlimit`` PID 1 (another uid, and it holds no
``CAP_KILL``), under runc and gVisor alike; PID 1 still ends every process of the
program (``CAP_KILL``). An agent started as another uid than 0 (an engine that grants
no capability) or whose working directory is root's (a host test) changes nothing:
agent and program then share one uid, as before.
"""

from __future__ import annotations

import os
import resource

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SUPERVISOR_UID = 65533  # nobody's (65534) neighbour: owns no file, in no image's passwd
CAP_KILL, CAP_SETGID, CAP_SETUID, CAP_SETPCAP = 5, 6, 7, 8
HELD = (1 << CAP_KILL) | (1 << CAP_SETGID) | (1 << CAP_SETUID)  # the agent's, from its start
GRANTED = HELD | (1 << CAP_SETPCAP)  # by the engine: SETPCAP empties the bounding set
PR_SET_KEEPCAPS, PR_CAPBSET_DROP = 8, 24
_CAP_VERSION_3 = 0x20080522
_EINVAL = 22

program_uid: int | None = None  # set by separate(): the uid every child becomes
# Under gVisor, the sandbox's process limit (the engine's pids cgroup there holds the
# sandbox kernel's own threads, see the Docker backend's ENV_NPROC): RLIMIT_NPROC on the
# program's uid, which gVisor counts within the sandbox. None: the cgroup is exact (runc).
ENV_NPROC = "SANDBOXKIT_NPROC"
nproc: int | None = None


def take_nproc() -> None:
    """Read (and remove from the agent's environment) the sandbox's process limit."""
    global nproc
    value = os.environ.pop(ENV_NPROC, "")
    nproc = int(value) if value.isdigit() and int(value) > 0 else None


_calls: Any = None  # set by separate(): prctl, capset and their prepared arguments


class _Calls:
    """libc's calls and the arguments a child's drop needs, made once in the agent so
    that each fork pays for the system calls only (not for ctypes' set-up)."""

    def __init__(self) -> None:
        import ctypes

        class Header(ctypes.Structure):
            _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

        class Data(ctypes.Structure):
            _fields_ = [
                ("effective", ctypes.c_uint32),
                ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32),
            ]

        libc = ctypes.CDLL(None, use_errno=True)
        self.get_errno = ctypes.get_errno
        self.prctl = libc.prctl
        self.capset = libc.capset
        self._header = Header(_CAP_VERSION_3, 0)
        self.header = ctypes.byref(self._header)
        self.held = (Data * 2)(Data(HELD, HELD, 0), Data(0, 0, 0))
        self.none = (Data * 2)(Data(0, 0, 0), Data(0, 0, 0))
        try:
            with open("/proc/sys/kernel/cap_last_cap") as f:
                self.last_cap = int(f.read())
        except (OSError, ValueError):
            self.last_cap = 63  # past the kernel's last, a drop answers EINVAL (the end)

    def check(self, result: int, what: str) -> None:
        if result != 0:
            err = self.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")


def apart_uid(workdir: str) -> int | None:
    """The program's uid (the owner of ``workdir``) where the agent can stand apart from
    it: started as uid 0, with a working directory that is not root's. None: one uid."""
    try:
        program = os.stat(workdir).st_uid
    except OSError:
        return None
    if os.getuid() != 0 or program == 0:
        return None
    return program


def separate(workdir: str) -> None:
    """In the agent, before anything else: become SUPERVISOR_UID with the four
    capabilities, acting on files as the program's uid (see the module's text)."""
    global program_uid, _calls
    program = apart_uid(workdir)
    if program is None:
        return
    calls = _calls = _Calls()
    # the bounding set emptied here, once: every child inherits it so (it limits what an
    # exec could gain; the agent's own permitted set is not touched)
    for cap in range(calls.last_cap + 1):
        if calls.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            if calls.get_errno() == _EINVAL and cap > 0:
                break  # past the kernel's last capability
            calls.check(-1, "drop from the bounding set")
    calls.check(calls.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "keep capabilities")
    os.setgroups([])
    # real and saved: the supervisor's, which is what signals, ptrace and prlimit check;
    # effective: the program's, which is what files are made and opened as (setfsuid
    # would do the same on Linux, but gVisor ignores it)
    os.setresgid(SUPERVISOR_UID, program, SUPERVISOR_UID)
    os.setresuid(SUPERVISOR_UID, program, SUPERVISOR_UID)
    # leaving uid 0 emptied the effective set; permitted stayed: keep three of it
    calls.check(calls.capset(calls.header, calls.held), "capset")
    calls.check(calls.prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0), "keep capabilities")
    program_uid = program


def become_program(*, root: bool = False) -> None:
    """In a forked child, before anything of the user's runs: the program's uid and no
    capability, the bounding set included (a no-op when the agent is not apart).

    ``root``: uid 0 instead (the host asks only where uid 0 in the box is not the host's:
    gVisor, userns-remap). Still no capability: the effective and permitted sets are
    emptied here, and an exec gains none, for an exec as uid 0 gets the bounding set's
    capabilities at most, and the agent emptied it at its start. Root's power is then
    that of the owner of root's files: the box's own writable root filesystem."""
    if nproc is not None:  # lowering a limit takes no privilege; set before the uid changes
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    uid = 0 if root and program_uid is not None else program_uid
    if uid is None:
        return
    calls = _calls
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    calls.check(calls.capset(calls.header, calls.none), "capset")


def _prlimit(pid: int, which: int, limits: tuple[int, int] | None) -> tuple[int, int]:
    return resource.prlimit(pid, which, *(() if limits is None else (limits,)))


def prlimit(pid: int, which: int, limits: tuple[int, int] | None = None) -> tuple[int, int]:
    """``resource.prlimit`` on a program's process (a pre-started runtime's, before its
    program arrives). The kernel lets only the process's own uid and gid (or
    ``CAP_SYS_RESOURCE``, which the agent does not hold) change its limits: the agent takes
    the program's real uid and gid for the call and then its own again. No user code runs
    meanwhile (a runtime is pre-started for a sandbox's first run only)."""
    uid = program_uid
    if uid is None:
        return _prlimit(pid, which, limits)
    os.setresgid(uid, uid, SUPERVISOR_UID)
    os.setresuid(uid, uid, SUPERVISOR_UID)
    try:
        return _prlimit(pid, which, limits)
    finally:
        os.setresuid(SUPERVISOR_UID, uid, SUPERVISOR_UID)
        os.setresgid(SUPERVISOR_UID, uid, SUPERVISOR_UID)
