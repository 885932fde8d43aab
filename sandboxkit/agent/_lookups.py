"""A fresh sandbox's first compile, as fast as its second: the file lookups of a sample
compile, recorded when the image is built and made again while the sandbox waits.

Why: every container has an overlay mount of its own, and a mount's first lookup of a
name (found or not) walks each of the image's layers, ~8-10 µs on this machine; after
that the name is cached for the mount's life. A toolchain looks up hundreds of names
(gcc: 250, mostly its include and library search paths; ``go build``: ~2000, the
staleness checks of the standard library's sources), so the first compile in a new
sandbox paid ~1 ms (C) to ~8 ms (Go) a toolchain in a long-lived container never pays
again. Made while the sandbox sits in the pool, the lookups are off every run's path.

Recording (``python3 -I _lookups.py record LIST -- ARGV...``, in the image's build):
``ARGV`` runs under ``ptrace``, every child and thread followed, and the absolute path of
every open, stat, access, readlink and exec is kept (``PTRACE_GET_SYSCALL_INFO``,
Linux 5.3: the same on every architecture but for the system calls' numbers). The
places every run has anew (``/tmp``, the workdir, ``/proc``, ``/dev``, ``/sys``) are
left out. Where anything fails the list is left empty: a sandbox works without it.

Warming (``Warmer``, in the agent): ``stat`` of each listed path a few at a time, while
no job is waiting; the first job ends it (what that job looks up, it warms itself).
"""

from __future__ import annotations

import os
import sys

LIST_FILE = "/opt/sandboxkit/lookups"  # written by the recording, read by the agent
STEP = 16  # paths per step: ~0.15 ms cold, so a job that arrives waits no more than that
SKIP = ("/tmp", "/work", "/proc", "/dev", "/sys")  # every sandbox has these anew

# per architecture: system call number -> which argument holds the path
_PATH_ARG = {
    "x86_64": {
        2: 0,  # open
        4: 0,  # stat
        6: 0,  # lstat
        21: 0,  # access
        59: 0,  # execve
        89: 0,  # readlink
        257: 1,  # openat
        262: 1,  # newfstatat
        267: 1,  # readlinkat
        269: 1,  # faccessat
        322: 1,  # execveat
        332: 1,  # statx
        437: 1,  # openat2
        439: 1,  # faccessat2
    },
    "aarch64": {
        48: 1,  # faccessat
        56: 1,  # openat
        78: 1,  # readlinkat
        79: 1,  # newfstatat
        221: 0,  # execve
        281: 1,  # execveat
        291: 1,  # statx
        437: 1,  # openat2
        439: 1,  # faccessat2
    },
}


class Warmer:
    """The agent's end: the recorded paths, looked up a few at a time while idle."""

    def __init__(self, path: str = LIST_FILE) -> None:
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                self.paths = [line for line in f.read().split("\n") if line]
        except OSError:
            self.paths = []  # an image without a recording: nothing to warm
        self.paths.reverse()  # taken from the end: in the list's order

    def pending(self) -> bool:
        return bool(self.paths)

    def step(self) -> None:
        """Look up the next few paths (the answer does not matter: a name found and
        one not found are both cached)."""
        for _ in range(min(STEP, len(self.paths))):
            try:
                os.stat(self.paths.pop())
            except (OSError, ValueError):
                pass

    def stop(self) -> None:
        """A job came: its own lookups warm what it needs."""
        self.paths.clear()


def keep(path: str) -> bool:
    """Whether a looked-up path belongs in the list: absolute, and not in a place every
    sandbox has anew."""
    if not path.startswith("/") or "\n" in path:
        return False
    return not any(path == top or path.startswith(top + "/") for top in SKIP)


def record(argv: list[str]) -> tuple[set[str], int]:
    """Run ``argv`` under ptrace to its end: the absolute paths it looked up, and its
    wait status."""
    import ctypes
    import platform
    import signal

    table = _PATH_ARG.get(platform.machine())
    if table is None:
        raise OSError(f"no system call table for {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    ptrace = libc.ptrace
    ptrace.restype = ctypes.c_long
    ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    traceme, syscall, setoptions, get_info = 0, 24, 0x4200, 0x420E
    # TRACESYSGOOD | TRACEFORK | TRACEVFORK | TRACECLONE | TRACEEXEC | EXITKILL
    options = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x100000
    wall = 0x40000000  # __WALL: threads too

    class Info(ctypes.Structure):  # struct ptrace_syscall_info, its entry part
        _fields_ = [
            ("op", ctypes.c_uint8),
            ("pad", ctypes.c_uint8 * 3),
            ("arch", ctypes.c_uint32),
            ("ip", ctypes.c_uint64),
            ("sp", ctypes.c_uint64),
            ("nr", ctypes.c_uint64),
            ("args", ctypes.c_uint64 * 6),
        ]

    pid = os.fork()
    if pid == 0:
        try:
            if ptrace(traceme, 0, None, None) != 0:
                os._exit(126)  # refused: a stop now would be one no tracer ever sees
            os.kill(os.getpid(), signal.SIGSTOP)
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, wall)
    if not os.WIFSTOPPED(status):
        raise OSError(f"ptrace refused (the child ended with status {status})")
    if ptrace(setoptions, pid, None, options) != 0:
        raise OSError(ctypes.get_errno(), "ptrace(PTRACE_SETOPTIONS) failed")
    ptrace(syscall, pid, None, None)
    found: set[str] = set()
    info = Info()
    ended = -1
    while True:  # until no process of it is left, children and threads followed
        try:
            who, status = os.waitpid(-1, wall)
        except ChildProcessError:
            break
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            if who == pid:
                ended = status
            continue
        if not os.WIFSTOPPED(status):
            continue
        sig = os.WSTOPSIG(status)
        if sig == signal.SIGTRAP | 0x80:  # a system call stop
            got = ptrace(get_info, who, ctypes.c_void_p(ctypes.sizeof(info)), ctypes.byref(info))
            if got > 0 and info.op == 1 and info.nr in table:  # an entry with a path
                path = _string(who, info.args[table[info.nr]])
                if path is not None and keep(path):
                    found.add(path)
        # the tracer's own stops (an event, a new child's first stop) are not passed on;
        # the program's signals are (Go preempts its threads with SIGURG)
        ours = status >> 16 or sig in (signal.SIGTRAP | 0x80, signal.SIGTRAP, signal.SIGSTOP)
        ptrace(syscall, who, None, ctypes.c_void_p(0 if ours else sig))
    return found, ended


def _string(pid: int, address: int) -> str | None:
    """The NUL-ended string at ``address`` in process ``pid``'s memory."""
    if not address:
        return None
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    except OSError:
        return None
    try:
        data = b""
        while len(data) < 4096 and b"\0" not in data:
            at = address + len(data)
            chunk = os.pread(fd, 4096 - at % 4096, at)  # to the page's end: never past it
            if not chunk:
                break
            data += chunk
    except OSError:
        return None
    finally:
        os.close(fd)
    if b"\0" not in data:
        return None
    return data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def main(args: list[str]) -> int:
    """``record LIST -- ARGV...``: run ARGV, write the paths it looked up to LIST."""
    if len(args) < 4 or args[0] != "record" or args[2] != "--":
        print("usage: _lookups.py record LIST -- ARGV...", file=sys.stderr)
        return 2
    try:
        found, status = record(args[3:])
    except OSError as exc:  # ptrace refused (a builder's seccomp): no list, no harm
        print(f"sandboxkit: no lookups recorded: {exc}", file=sys.stderr)
        found, status = set(), -1
    with open(args[1], "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write("".join(p + "\n" for p in sorted(found)))
    # a sample that did not compile still leaves what it looked up: said, not fatal
    code = os.waitstatus_to_exitcode(status) if status >= 0 else "unknown"
    print(f"sandboxkit: {len(found)} lookups recorded (exit status {code})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
