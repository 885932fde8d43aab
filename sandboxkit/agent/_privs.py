"""The supervisor apart from the program: two uids, capabilities in the agent only.

The engine starts the agent as uid 0 holding four capabilities and nothing else
(``CAP_SETUID``, ``CAP_SETGID``, ``CAP_KILL``, ``CAP_SETPCAP``; no-new-privileges and
sandboxkit's seccomp profile apply). :func:`separate`, the agent's first act, makes
:data:`SUPERVISOR_UID` its real and saved uid, keeping those four, and the program's uid
(the owner of the working directory) its effective uid: the files it writes for the
program are the program's, and it reads the program's files as the program would, while
the kernel's checks on signals, ``ptrace`` and ``prlimit`` see the real and saved uid,
not the program's. Every child that will
run user code calls :func:`become_program` before anything of the user's runs: the
program's uid, no supplementary group, an empty bounding set, no capability at all.

So the program cannot signal, trace nor ``prlimit`` PID 1 (another uid, and it holds no
``CAP_KILL``), under runc and gVisor alike; PID 1 still ends every process of the
program (``CAP_KILL``). An agent started as another uid than 0 (an engine that grants
no capability) or whose working directory is root's (a host test) changes nothing:
agent and program then share one uid, as before.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SUPERVISOR_UID = 65533  # nobody's (65534) neighbour: owns no file, in no image's passwd
CAP_KILL, CAP_SETGID, CAP_SETUID, CAP_SETPCAP = 5, 6, 7, 8
KEPT = (1 << CAP_KILL) | (1 << CAP_SETGID) | (1 << CAP_SETUID) | (1 << CAP_SETPCAP)
PR_SET_KEEPCAPS, PR_CAPBSET_DROP = 8, 24
_CAP_VERSION_3 = 0x20080522
_EINVAL = 22

_libc: Any = None
program_uid: int | None = None  # set by separate(): the uid every child becomes


def _load() -> Any:
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result: int, what: str) -> None:
    if result != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _capset(effective: int, permitted: int) -> None:
    """Set this thread's capabilities (inheritable: none)."""
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [
            ("effective", ctypes.c_uint32),
            ("permitted", ctypes.c_uint32),
            ("inheritable", ctypes.c_uint32),
        ]

    header = Header(_CAP_VERSION_3, 0)
    data = (Data * 2)(Data(effective, permitted, 0), Data(0, 0, 0))
    _check(_load().capset(ctypes.byref(header), data), "capset")


def separate(workdir: str) -> None:
    """In the agent, before anything else: become SUPERVISOR_UID with the four
    capabilities, acting on files as the program's uid (see the module's text)."""
    global program_uid
    try:
        program = os.stat(workdir).st_uid
    except OSError:
        return
    if os.getuid() != 0 or program == 0:
        return
    libc = _load()
    _check(libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "keep capabilities")
    os.setgroups([])
    # real and saved: the supervisor's, which is what signals, ptrace and prlimit check;
    # effective: the program's, which is what files are made and opened as (setfsuid
    # would do the same on Linux, but gVisor ignores it)
    os.setresgid(SUPERVISOR_UID, program, SUPERVISOR_UID)
    os.setresuid(SUPERVISOR_UID, program, SUPERVISOR_UID)
    _capset(KEPT, KEPT)  # leaving uid 0 emptied the effective set; permitted stayed
    _check(libc.prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0), "keep capabilities")
    program_uid = program


def become_program() -> None:
    """In a forked child, before anything of the user's runs: the program's uid and no
    capability, the bounding set included (a no-op when the agent is not apart)."""
    uid = program_uid
    if uid is None:
        return
    libc = _load()
    for cap in range(64):  # up to the kernel's last: EINVAL past it
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            import ctypes

            if ctypes.get_errno() == _EINVAL:
                break
            _check(-1, "drop from the bounding set")
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    _capset(0, 0)
