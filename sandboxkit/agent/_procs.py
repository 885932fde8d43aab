"""Processes under the agent: the forked child's setup, killing and reaping, /proc figures.

Every "kill them all" goes through :func:`kill_all`, which acts only in PID 1 of a PID
namespace (a container's init, or a test's ``unshare --pid``): there ``kill(-1)`` reaches
that namespace alone; anywhere else it would reach every process of the machine.
"""

from __future__ import annotations

# _signal, not signal: signal.py's enums weigh ~0.8 MB in the zygote that every spare
# is forked from (_zygote), and a fresh python3 has not imported them either
import _signal as signal  # type: ignore[import-not-found]
import os
import resource  # at module level: a forked run would otherwise import it each time
import time

from . import _privs

TYPE_CHECKING = False
if TYPE_CHECKING:  # importing typing costs ~3 ms of every sandbox's start; annotations only
    from typing import Any, NoReturn

    from .._protocol import RunJob

# signals the agent ignores (all that can be, but SIGCHLD, which it handles)
SHIELDED = tuple(
    s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD)
)


def _init_only() -> None:
    """Die rather than signal every process when this is not a namespace's PID 1."""
    if os.getpid() != 1:
        os.write(2, b"sandboxkit agent: not PID 1 of a PID namespace; refusing kill(-1)\n")
        os._exit(70)


# Session ids of the processes started in the background (``sb.start(cmd, shell=True)``,
# terminals): a run's clean-up spares every process of those sessions (a background
# process and what it started, unless that left its session); the sandbox's end does not.
KEPT: set[int] = set()
# wait statuses of ended background processes, by pid, as whichever loop reaped them saw
EXITS: dict[int, int] = {}
# The agent's own processes that live as long as the sandbox (_launch, _zygote):
# no kill but the sandbox's end reaches them, and no scrub counts them as left over.
FIXED: set[int] = set()


def note_exit(pid: int, status: int) -> None:
    if pid in KEPT:
        EXITS[pid] = status
    FIXED.discard(pid)  # a helper died (its pid may be reused): never killed now


def session_of(pid: int) -> int | None:
    """The session id of a process (``/proc/PID/stat``), None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[3])
    except (OSError, IndexError, ValueError):
        return None


def kill_all(keep: tuple[int, ...] = (), *, everything: bool = False) -> bool:
    """SIGKILL every process in the namespace but this one, those in ``keep`` (a kernel,
    the next run's spare) and, unless ``everything``, the background sessions
    (:data:`KEPT`); whether there was any to kill."""
    _init_only()
    keep = tuple(p for p in keep if p)
    if not keep and not FIXED and (everything or not KEPT):
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True
    return kill_each(others(keep, everything=everything))


def kill_each(pids: list[int]) -> bool:
    """SIGKILL each of ``pids`` (zombies too, harmlessly); whether any was there."""
    _init_only()
    found = False
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
            found = True
        except OSError:
            pass
    return found


def others(keep: tuple[int, ...] = (), *, everything: bool = False) -> list[int]:
    """The processes in the namespace (zombies too) but this one, the agent's own
    (:data:`FIXED`), those in ``keep`` and, unless ``everything``, the background
    sessions'."""
    try:
        listed = map(int, filter(str.isdigit, os.listdir("/proc")))
        pids = [p for p in listed if p != 1 and p not in keep and p not in FIXED]
    except OSError:
        return []
    if KEPT and not everything:
        pids = [p for p in pids if p not in KEPT and session_of(p) not in KEPT]
    return pids


def wait_gone(pid: int, timeout: float = 2.0) -> None:
    """Reap ``pid``, a child that is exiting (bounded: past ``timeout`` it is killed and
    left to the next reap)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return  # reaped by another wait already
        if done:
            note_exit(done, status)
            return
        if time.monotonic() > deadline:
            kill_each([pid])
            return
        time.sleep(0.0001)


def kill_and_reap(timeout: float = 2.0) -> None:
    """Kill every other process but the agent's own (:data:`FIXED`), then reap them
    (bounded: an unkillable one cannot hang us)."""
    kill_all(everything=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not FIXED:
                os.waitpid(-1, 0)
            else:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid:
                    note_exit(pid, status)
                elif not others(everything=True):
                    return  # only the agent's own helpers live on
                else:
                    time.sleep(0.0005)
        except ChildProcessError:
            return
        except InterruptedError:
            continue


def reap() -> list[int]:
    """Collect every child that has ended (orphans re-parented to PID 1 included)."""
    pids: list[int] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return pids
        if pid == 0:
            return pids
        note_exit(pid, status)
        pids.append(pid)


# The cgroup files a run reads at its start and end (OOM kills, pids refusals, CPU),
# opened once and read again with pread: an open and a close less per read, four to six
# reads per run. The descriptors are the agent's (every child closes them); None: the
# file cannot be opened here (another cgroup version, a host test).
_COUNTERS: dict[str, int | None] = {}


def _read_counter_file(path: str) -> bytes | None:
    fd = _COUNTERS.get(path, -1)
    if fd == -1:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            fd = None
        _COUNTERS[path] = fd
    if fd is None:
        return None
    try:
        return os.pread(fd, 65536, 0)
    except OSError:
        return None


def cgroup_value(path: str) -> int | None:
    """The number a one-value cgroup file holds; None: unreadable, or not a number
    (``max``: no limit)."""
    data = _read_counter_file(path)
    try:
        return int(data) if data else None
    except ValueError:
        return None


def cgroup_field(path: str, *keys: str) -> int | None:
    """The value of the first of ``keys`` that ``path`` (a ``key value`` file) has."""
    for key in keys:
        value = _cgroup_counter((path,), key)
        if value is not None:
            return value
    return None


def _cgroup_counter(paths: tuple[str, ...], key: str) -> int | None:
    """The ``key value`` line of the first of ``paths`` (cgroup v1, then v2) that has it."""
    want = key.encode() + b" "
    for path in paths:
        data = _read_counter_file(path)
        if data is None:
            continue
        for line in data.splitlines():
            if line.startswith(want):
                try:
                    return int(line[len(want) :])
                except ValueError:
                    break
    return None


def oom_kills() -> int:
    """OOM kills counted by this container's memory cgroup (v1 or v2)."""
    paths = ("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events")
    return _cgroup_counter(paths, "oom_kill") or 0


# Inside a sandbox image the cgroup mounted at /sys/fs/cgroup is the container's own; an
# agent run from a source tree (the fast tests' PID namespace) would read the machine's.
IN_IMAGE = __file__.startswith("/opt/sandboxkit/")


def cgroup_cpu() -> float | None:
    """CPU seconds used by every process of this container (its cpuacct cgroup, v1 or
    v2); None outside a sandbox image or where neither is readable."""
    if not IN_IMAGE:
        return None
    ns = cgroup_value("/sys/fs/cgroup/cpuacct/cpuacct.usage")
    if ns is not None:
        return ns / 1e9
    usec = _cgroup_counter(("/sys/fs/cgroup/cpu.stat",), "usage_usec")
    return None if usec is None else usec / 1e6


def self_cpu() -> float:
    """CPU seconds of the agent itself (not of its children)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def pids_max_hits() -> int:
    """Forks this container's pids cgroup refused at its limit so far (v1 or v2)."""
    paths = ("/sys/fs/cgroup/pids/pids.events", "/sys/fs/cgroup/pids.events")
    return _cgroup_counter(paths, "max") or 0


def proc_hwm_kb(pid: int) -> int | None:
    """Peak resident memory of a live process, in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a live process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


_prctl: Any = None  # libc's prctl, loaded once in the agent (a forked child reuses it)
PR_SET_DUMPABLE = 4


def set_dumpable(on: bool) -> None:
    """``PR_SET_DUMPABLE``: the agent (PID 1) sets it off, so user code cannot open
    ``/proc/1`` (its fds, memory) nor ptrace it even where it shares PID 1's uid; a
    forked run's child sets it on again (a fork inherits the flag, only an exec resets
    it), so its own ``/proc/self`` is readable and writable (``oom_score_adj``,
    ``environ``, ``fd``) as in a fresh process."""
    global _prctl
    try:
        if _prctl is None:
            import ctypes

            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        _prctl(PR_SET_DUMPABLE, int(on), 0, 0, 0)
    except Exception:  # noqa: BLE001 - gVisor or exotic libc: isolation still holds by uid
        pass


def prepare_child(
    job: RunJob,
    fds: tuple[int, int, int],
    cwd: str,
    *,
    keep_fd: int | None = None,
    rlimits: dict[str, Any] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """In the forked child: signals, session, stdio, limits, directory; ``(argv, env)``.

    ``keep_fd`` (a kernel's socket) survives as descriptor 3; every other one is closed.
    """
    detach_child(fds, keep_fd=keep_fd)
    return apply_job(job, cwd, rlimits=rlimits)


def detach_child(
    fds: tuple[int, int, int],
    *,
    keep_fd: int | None = None,
    drop: bool = True,
    root: bool = False,
) -> None:
    """The job-independent half of :func:`prepare_child` (a spare does it ahead):
    default signals, a new session, ``fds`` as 0-2, every other descriptor closed and,
    with ``drop``, the program's uid (:func:`drop_privileges`; a spare drops them only
    once its run is handed to it). ``root``: the program is uid 0 (``_privs.become_program``)."""
    signal.set_wakeup_fd(-1)
    # the descriptors first: a spare forked while a run runs holds that run's pipes
    # (its stdin's write end: the program sees no end of input while it is open)
    for fd_target, fd_src in enumerate(fds):
        os.dup2(fd_src, fd_target)
    if keep_fd is not None:
        os.dup2(keep_fd, 3)
    os.closerange(3 if keep_fd is None else 4, 65536)
    for sig in (signal.SIGCHLD, *SHIELDED):
        try:
            # as a fresh Python would have them: SIGPIPE and SIGXFSZ ignored (exec resets)
            keep = sig in (signal.SIGPIPE, signal.SIGXFSZ)
            signal.signal(sig, signal.SIG_IGN if keep else signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    os.setsid()
    if drop:
        drop_privileges(root=root)


def drop_privileges(*, root: bool = False) -> None:
    """In a child, before anything of the user's runs: nothing of the user's may run with
    the agent's uid or capabilities (or the child ends, status 127). ``root``: uid 0 with
    no capability (only where the box's uid 0 is not the host's)."""
    try:
        _privs.become_program(root=root)
    except OSError as exc:
        os.write(2, f"sandboxkit: cannot drop the supervisor's privileges: {exc}\n".encode())
        os._exit(127)


class Ahead:
    """What a spare did before its orders came (see ``_spare``): the rlimits it set
    (None: none), the directory it went to, whether it is the program already (its uid,
    dumpable, its OOM score) or has its OOM score set. :func:`apply_job` does the rest."""

    __slots__ = ("cwd", "oom", "program", "rlimits")

    def __init__(self) -> None:
        self.rlimits: dict[str, Any] | None = None
        self.cwd: str | None = None
        self.program = False
        self.oom = False  # its OOM score set (only: it is not the program yet)


def set_limits(limits: dict[str, Any]) -> None:
    """A run's rlimits, each as its soft and hard limit (the hard one lowered only)."""
    for name, value in limits.items():
        res = getattr(resource, "RLIMIT_" + name.upper())
        try:
            resource.setrlimit(res, (value, value))
        except (ValueError, OSError):
            _soft, hard = resource.getrlimit(res)
            resource.setrlimit(res, (min(value, hard) if hard >= 0 else value, hard))


def become_visible(*, oom_set: bool = False) -> None:
    """Dumpable again, and first for the OOM killer: the last of becoming the program.
    ``oom_set``: the OOM score is set already (a spare set it ahead, :func:`oom_first`)."""
    # dumpable only now that the agent's descriptors are closed: while the child is
    # undumpable its /proc/self is root's and the oom_score_adj write below fails
    set_dumpable(True)
    if not oom_set:
        _write_oom_score()


def oom_first() -> None:
    """A spare's OOM score set ahead, while the supervisor's real and saved uid keep the
    program running beside it from tracing it or reading its memory, environment or
    descriptors: dumpable for the one write (see :func:`become_visible`), then not again.
    It also takes ahead the page faults of :func:`set_dumpable`'s path that the run's own
    call would take (with the write, ~0.5 ms of a judge test's path)."""
    set_dumpable(True)
    try:
        _write_oom_score()
    finally:
        set_dumpable(False)


def _write_oom_score() -> None:
    try:  # the OOM killer takes the user's process before the agent
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)  # not open(): no text layer
        try:
            os.write(fd, b"1000")
        finally:
            os.close(fd)
    except OSError:
        pass


def apply_job(
    job: RunJob,
    cwd: str,
    *,
    rlimits: dict[str, Any] | None = None,
    ahead: Ahead | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The job's half of :func:`prepare_child`: rlimits, dumpable, OOM score, directory
    (what ``ahead`` did already is not done again); ``(argv, env)``."""
    limits: dict[str, Any] = dict(job.get("rlimits") or {}) if rlimits is None else rlimits
    ahead = ahead or Ahead()
    if ahead.rlimits != limits:
        set_limits(limits)
    if not ahead.program:
        become_visible(oom_set=ahead.oom)
    where = job.get("cwd") or cwd
    if ahead.cwd != where:
        os.chdir(where)
    env = {str(k): str(v) for k, v in (job.get("env") or {}).items()}
    return [str(a) for a in job["argv"]], env


def exec_program(argv: list[str], env: dict[str, str]) -> NoReturn:
    """Replace the child with the program (or exit 127 saying why it could not start)."""
    # like subprocess's restore_signals: an exec'd program gets the default actions Python
    # ignores (a C program writing to a closed pipe dies of SIGPIPE; past RLIMIT_FSIZE, SIGXFSZ)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        os.write(2, f"sandboxkit: cannot start {argv[0]!r}: {exc.strerror}\n".encode())
        os._exit(127)
