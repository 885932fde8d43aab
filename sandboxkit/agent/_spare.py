"""A child forked ahead of the next run: the fork and the job-independent part of its
set-up (signals, session, stdio pipes, descriptors closed) happen while the sandbox
waits or the current run runs, not on the next run's path. Where the zygote serves
(``_zygote``) it clones the spare instead of the agent forking it, and the hint below
goes to the spare first on its control pipe.

The agent forks the next run's spare as soon as the current run's program has started
(so a job queued behind it, a judge's next test, finds one), and the end-of-run kill
spares it. It is a process of the sandbox like any other: the container's pids limit
counts it (while a run runs: the agent, the next run's spare and the program's
processes together; see docs/fast-path.md).

The spare waits for the run's essentials on a control pipe (argv, environment, working
directory, rlimits, whether Python runs inline) still as the supervisor: undumpable (so
nothing of a previous or current run can open its ``/proc`` entries or ptrace it) and
with the supervisor's real and saved uid (so the program running beside it cannot
signal it: stop it, kill it). Once they arrive it drops to the program's uid and
finishes the set-up exactly as a freshly forked child (``_procs.apply_job``) and becomes
the program. A run it does not fit (a session kernel's cell, a pre-started runtime's)
kills it; the agent makes a new one when it next waits for a job, unless the last run
had no use for one (or, for a run the spare does not fit, the zygote clones one at
once: not the agent's fork, whose memory holds what earlier runs were sent).

A spare also does ahead what its run is likely to ask for (a *hint*: the last run's
environment, directory and rlimits, or for a sandbox's first run the language's
environment): the rlimits, the directory and, for Python, the interpreter made ready
for that environment (``_inline.become_env``), the half of becoming the program that
depends on the environment alone. A run whose orders differ redoes what differs, and
lowers rlimits set ahead to its own; one that wants any of them higher, or not set at
all, gets a fresh child (a limit cannot be raised again).
When no program runs beside it (the sandbox waits between jobs, so no process of
another run can be there to signal or trace it) it also takes the program's uid ahead.
Beside a running program it sets its OOM score ahead (``_procs.oom_first``: dumpable
for that one write, while its real and saved uid are still the supervisor's, so the
program can neither trace it nor read its memory, environment or descriptors).
"""

from __future__ import annotations

import _signal as signal  # type: ignore[import-not-found]  # see _procs
import gc
import marshal  # not json: its re would weigh on every spare (see _zygote)
import mmap
import os

from . import _inline, _privs, _procs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from .._protocol import RunJob
    from ._zygote import Zygote

MAX_ORDERS = 32768  # what goes on the control pipe at most (bigger: fork as before)
MAX_AHEAD = 16384  # a cloned spare's hint, before its orders on the same pipe
ORDER_KEYS = ("argv", "env", "cwd", "rlimits", "python_inline", "path0")
# what a spare prepares ahead (see the module's text)
HINT_KEYS = ("env", "cwd", "rlimits", "python_inline")


def hint_of(job: RunJob) -> dict[str, Any]:
    """What of ``job`` a spare can get ready for (see the module's text)."""
    return {k: job.get(k) for k in HINT_KEYS}


class Spare:
    """The agent's handle on a spare child: its pid and the agent's ends of its pipes."""

    def __init__(
        self,
        workdir: str,
        hint: dict[str, Any] | None = None,
        *,
        alone: bool = False,
        zygote: Zygote | None = None,
    ) -> None:
        """``hint``: the orders the run is likely to bring (see the module's text);
        ``alone``: no program runs beside the spare, so it may become the program's
        uid ahead; ``zygote``: it makes the spare, where it can (else the agent forks it)."""
        # the rlimits set ahead: a run must want these (the spare cannot raise them)
        self.rlimits: dict[str, Any] | None = None
        if hint is not None and hint.get("rlimits") is not None:
            self.rlimits = dict(hint["rlimits"])
        mine: list[int] = []
        page = -1
        try:
            for _ in range(4):  # stdin, stdout, stderr, control
                mine.extend(os.pipe())
            in_r, in_w, out_r, out_w, err_r, err_w, ctl_r, ctl_w = mine
            theirs = (in_r, out_w, err_w, ctl_r)
            pid = None
            ahead = marshal.dumps(hint) if zygote is not None and zygote.usable() else None
            if ahead is not None and zygote is not None and len(ahead) <= MAX_AHEAD:
                # the page is shared with a process the agent does not fork: by a memfd
                page = os.memfd_create("sandboxkit-page", os.MFD_CLOEXEC)
                os.ftruncate(page, _inline.PAGE_SIZE)
                self.shared = page_of(page)
                pid = zygote.spawn((*theirs, page), (hint or {}).get("env"), alone)
                if pid is None:
                    self.shared.close()
                else:  # its hint, first on its control pipe (empty: the write cannot block)
                    os.write(ctl_w, len(ahead).to_bytes(4, "little") + ahead)
            if pid is None:
                # a traced run's stamps and the exit notice go here (see _inline.PAGE)
                self.shared = mmap.mmap(-1, _inline.PAGE_SIZE)
                gc.freeze()  # as in Run._start: a collection in the child must not copy pages
                pid = os.fork()
        except BaseException:
            for fd in mine:
                os.close(fd)
            raise
        finally:
            if page >= 0:
                os.close(page)
        if pid == 0:
            run_spare(theirs, self.shared, workdir, hint, alone)
        for fd in theirs:
            os.close(fd)
        self.pid = pid
        self.stdin, self.stdout, self.stderr, self.control = in_w, out_r, err_r, ctl_w

    def hand(self, job: RunJob) -> bool:
        """Give the spare the run's essentials; False: it could not take them (it died,
        they are too big for the pipe, or its rlimits set ahead do not :meth:`fits`), so
        the run forks as before."""
        if not self.fits(job):
            return False
        orders = marshal.dumps({k: job[k] for k in ORDER_KEYS if k in job})  # type: ignore[literal-required]
        if len(orders) > MAX_ORDERS:
            return False
        os.set_blocking(self.control, False)
        try:
            written = os.write(self.control, orders)
        except OSError:  # BrokenPipeError: it is gone
            return False
        finally:
            os.close(self.control)
            self.control = -1
        return written == len(orders)

    def fits(self, job: RunJob) -> bool:
        """Whether the rlimits set ahead can become the run's: each of them is one the
        run sets too, at most as high (a limit can be lowered, never raised again)."""
        if self.rlimits is None:
            return True
        wanted: dict[str, Any] = dict(job.get("rlimits") or {})
        return all(name in wanted and wanted[name] <= value for name, value in self.rlimits.items())

    def discard(self, *, kill: bool = True) -> None:
        """Not needed (or found dead, ``kill=False``: a reaped pid may be reused): kill it
        (reaped with the run's other children) and close the agent's ends."""
        if kill:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
        for fd in (self.stdin, self.stdout, self.stderr, self.control):
            if fd >= 0:
                os.close(fd)
        self.shared.close()


def page_of(fd: int) -> mmap.mmap:
    """The page a spare shares with the agent, mapped from a memfd (see ``_zygote``)."""
    return mmap.mmap(fd, _inline.PAGE_SIZE)


def run_spare(
    fds: tuple[int, ...], page: mmap.mmap, workdir: str, hint: dict[str, Any] | None, alone: bool
) -> NoReturn:
    """In the new spare (forked by the agent or cloned by the zygote): ``fds`` are its
    stdin, stdout, stderr and control pipe; ``page`` the one it shares with the agent.
    ``hint`` None: it comes first on the control pipe (a cloned spare's, see ``_zygote``)."""
    _inline.TRACE = _inline.PAGE = page
    _inline.PAGE_OWNER = os.getpid()
    in_r, out_w, err_w, control = fds
    _wait_for_orders((in_r, out_w, err_w), control, workdir, hint, alone)


def _get_ready(hint: dict[str, Any] | None, workdir: str, alone: bool) -> _procs.Ahead:
    """What the spare does ahead of its orders, from the hint (see the module's text)."""
    ahead = _procs.Ahead()
    if hint is None:
        return ahead
    limits = hint.get("rlimits")
    if limits is not None:
        _procs.set_limits(dict(limits))
        ahead.rlimits = dict(limits)
    if alone:
        _procs.drop_privileges()
        _procs.become_visible()
        ahead.program = True
    elif _privs.program_uid is not None:  # another uid than the program's: see oom_first
        _procs.oom_first()
        ahead.oom = True
    where = hint.get("cwd") or workdir
    try:
        os.chdir(where)
        ahead.cwd = where
    except OSError:
        pass  # gone (a user removed it): the run's own chdir reports it
    env = hint.get("env")
    if env is not None and hint.get("python_inline", True):  # (unknown before any run)
        env = {str(k): str(v) for k, v in env.items()}
        if not _inline.is_ready_for(env):  # (the zygote's own: see _zygote)
            _inline.become_env(env)
    return ahead


def _read_hint(control: int) -> dict[str, Any] | None:
    """A cloned spare's hint: its length (4 bytes), then itself, on the control pipe."""
    size = int.from_bytes(_read_exactly(control, 4), "little")
    hint: dict[str, Any] | None = marshal.loads(_read_exactly(control, size))  # noqa: S302 - the agent's own pipe
    return hint


def _read_exactly(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            os._exit(0)  # the agent went away
        data += chunk
    return data


def _wait_for_orders(
    fds: tuple[int, int, int],
    control: int,
    workdir: str,
    hint: dict[str, Any] | None,
    alone: bool,
) -> NoReturn:
    """The spare: set up what no job decides, get ready for the likely one, wait for the
    orders, become the program."""
    program: _inline.Become | None = None
    try:
        _procs.detach_child(fds, keep_fd=control, drop=False)
        if hint is None:
            hint = _read_hint(3)
        ahead = _get_ready(hint, workdir, alone)
        chunks = []
        while chunk := os.read(3, 65536):
            chunks.append(chunk)
        os.close(3)
        if not chunks:
            os._exit(0)  # the agent went away without a job for it
        _inline.stamp(0)
        job: RunJob = marshal.loads(b"".join(chunks))  # noqa: S302 - the agent's own pipe
        if not ahead.program:
            _procs.drop_privileges()
        argv, env = _procs.apply_job(job, workdir, ahead=ahead)
        program = _inline.program_for(job, argv, env)
    finally:
        if program is None:
            os._exit(126)
    raise program
