"""The zygote: a copy of the agent forked at its start that makes each run's spare
(``_spare``) in the agent's stead, with ``clone(CLONE_PARENT)``, so that the spare is
still the agent's own child: waited for, measured, killed and reaped as one it forked.

Why. A fork write-protects every page the forking process has; while the child lives,
each page its parent writes is copied first. A Python run's spare lives beside the run
before it, so the agent took a copy-on-write fault for most pages it wrote during every
run, and paid the fork (the copy of its page tables) too: ~40 % of a session's CPU per
run, counted against the sandbox's CPU quota (perf over a loop of ``print(1)``). The
zygote is forked before the agent takes up its work, writes little but its own loop,
and no child ever shares the agent's pages.

It is the launcher's counterpart for Python run inline (``_launch`` starts exec'd
programs from a small C process; the interpreter has to be forked, not exec'd): it
holds the agent's separation (forked after ``_privs.separate``: the program can neither
signal nor trace it), is spared by every run's kill and the reuse scrub
(``_procs.FIXED``), and is one more process of the sandbox that the pids limit counts.

``clone`` is called through ctypes as ``os.fork`` calls ``fork``: with the GIL held and
the interpreter's own before- and after-fork steps around it. What glibc's ``fork`` also
does and a raw ``clone`` does not, the child's thread id in the C library's thread
descriptor, is written by the kernel (``CLONE_CHILD_SETTID``) at the descriptor's offset,
checked in the zygote before any use. Where anything is unsure (another architecture or
C library, gVisor's own process accounting, a clone refused, the zygote gone), spares
are forked by the agent as before.
"""

from __future__ import annotations

import _socket as socket  # not socket.py: its enums would weigh on every spare
import marshal  # not json: re would weigh on every spare; only the agent writes these
import os
import struct

from . import _inline, _privs, _spare
from ._helper import Helper, keep_only

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, NoReturn

MAX_ORDERS = 4096  # a request, at most (see Zygote.spawn)
# the variables whose values the zygote may take on (see Zygote.spawn): how the
# interpreter writes its output, nothing a program reads as data
SETTINGS = frozenset({"PYTHONUNBUFFERED", "PYTHONIOENCODING", "PYTHONDONTWRITEBYTECODE"})
FDS = 5  # stdin, stdout, stderr, control, the shared page (see _spare)
# where glibc keeps a thread's kernel id in its descriptor (struct pthread) on x86_64
TID_OFFSET = 0x2D0
CLONE_PARENT = 0x00008000
CLONE_CHILD_SETTID = 0x01000000
SIGCHLD = 17
SYS_CLONE = 56  # x86_64


class Zygote(Helper):
    """The agent's end of the zygote: its pid and socket."""

    @classmethod
    def start(cls, workdir: str, run_env: dict[str, str] | None) -> Zygote | None:
        """In the agent, once separated and before its channel is open: the zygote, where
        spares can be cloned (else None: the agent forks them). In the zygote this serves
        the agent and never returns (but in a spare that becomes its program by raising
        ``_inline.Become`` out of the whole stack, as a spare the agent forks does)."""
        if _privs.nproc is not None or os.uname().machine != "x86_64":
            return None  # gVisor (its own process accounting), another clone ABI
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            _serve(theirs, workdir, run_env)
        theirs.close()
        return cls(pid, mine, run_env)

    def __init__(self, pid: int, sock: socket.socket, run_env: dict[str, str] | None) -> None:
        super().__init__(pid, sock)
        self.run_env = run_env  # the language's environment, the zygote's own (see spawn)

    def spawn(self, fds: tuple[int, ...], env: dict[str, Any] | None, alone: bool) -> int | None:
        """A spare with ``fds`` (:data:`FDS` of them), whose run likely has the environment
        ``env`` (see ``_spare``); its pid, a child of the agent (None: the agent forks it).

        The zygote learns nothing of a run but, where ``env`` is the language's own with
        other interpreter settings (a session's unbuffered output), those settings: it
        makes itself ready for them so that its spares need not (the hint itself goes to
        the spare, see ``_spare``). Nothing a user chose, no value of theirs that could be
        a secret, stays in the zygote's memory for a later run's spare to inherit."""
        return self.ask(marshal.dumps((self._settings(env), alone)), fds)

    def _settings(self, env: dict[str, Any] | None) -> list[tuple[str, str | None]] | None:
        """``env`` as the language's environment with other interpreter settings: its
        names in order, each with its value where it is a setting (else None: the
        language's value). None: it has anything else (or no environment is known)."""
        base = self.run_env
        if env is None or base is None or set(base) - set(env):
            return None
        named = [(str(k), str(v)) for k, v in env.items()]
        if any(k not in SETTINGS and base.get(k) != v for k, v in named):
            return None
        return [(k, v if k in SETTINGS else None) for k, v in named]


def clone_parent() -> Callable[[], int] | None:
    """``os.fork`` with ``CLONE_PARENT`` (the child is its grandparent's), or None where
    the C library's thread descriptor is not where this expects it."""
    import ctypes

    libc = ctypes.PyDLL(None, use_errno=True)  # PyDLL: the GIL stays held, as os.fork's
    api = ctypes.pythonapi
    libc.pthread_self.restype = ctypes.c_void_p
    libc.syscall.restype = ctypes.c_long
    libc.syscall.argtypes = [ctypes.c_long, ctypes.c_ulong] + [ctypes.c_void_p] * 4
    tid_at = libc.pthread_self() + TID_OFFSET
    if ctypes.c_int.from_address(tid_at).value != os.getpid():  # the main thread's id
        return None
    flags = CLONE_PARENT | CLONE_CHILD_SETTID | SIGCHLD

    def clone() -> int:
        api.PyOS_BeforeFork()
        pid = libc.syscall(SYS_CLONE, flags, None, None, tid_at, None)
        if pid == 0:
            api.PyOS_AfterFork_Child()
            return 0
        api.PyOS_AfterFork_Parent()
        if pid < 0:
            raise OSError(ctypes.get_errno(), "clone refused")
        return int(pid)

    return clone


def receive(sock: socket.socket) -> tuple[Any, list[int]] | None:
    """One request in the zygote: (its orders, its descriptors); None: the agent is gone."""
    size = socket.CMSG_SPACE(FDS * 4)
    data, ancillary, _flags, _addr = sock.recvmsg(MAX_ORDERS, size)
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += struct.unpack(f"{len(payload) // 4}i", payload[: len(payload) // 4 * 4])
    if not data:
        for fd in fds:
            os.close(fd)
        return None
    return marshal.loads(data), fds  # noqa: S302 - the agent's own socket


def _serve(sock: socket.socket, workdir: str, run_env: dict[str, str] | None) -> NoReturn:
    """The zygote: clone a spare for each request, answer its pid (or -errno), until the
    agent's end closes. It first makes itself ready for a program run in the language's
    environment (``_inline.become_env``: every spare it clones is, and a run in that
    environment does none of it again)."""
    made_spare = False
    try:
        keep_only(sock.detach())
        sock = socket.socket(fileno=3)
        _inline.warm_compiler()
        _inline.forget_agent()
        if run_env is not None:
            _inline.become_env(run_env)
        clone = clone_parent()
        while clone is not None:
            request = receive(sock)
            if request is None:
                break
            (settings, alone), fds = request
            if run_env is not None and settings is not None:
                ready = {k: run_env[k] if v is None else v for k, v in settings}
                if not _inline.is_ready_for(ready):
                    _inline.become_env(ready)
            if len(fds) != FDS:
                pid = -1
            else:
                try:
                    pid = clone()
                except OSError as exc:
                    pid = -(exc.errno or 1)
            if pid == 0:
                made_spare = True
                sock.detach()  # closed with the rest by the spare's set-up
                _spare.run_spare(tuple(fds[:-1]), _spare.page_of(fds[-1]), workdir, None, alone)
            for fd in fds:
                os.close(fd)
            sock.send(pid.to_bytes(4, "little", signed=True))
    except _inline.Become:
        if made_spare:
            raise  # the spare's program: run at the agent's entry, as a forked one
    finally:
        if not made_spare:
            os._exit(0)
    os._exit(0)
