"""A child forked ahead of the next run: the fork and the job-independent part of its
set-up (signals, session, stdio pipes, descriptors closed) happen while the sandbox
waits or the current run runs, not on the next run's path.

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
had no use for one.
"""

from __future__ import annotations

import gc
import json
import mmap
import os
import signal

from . import _inline, _procs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from .._protocol import RunJob

MAX_ORDERS = 32768  # what goes on the control pipe at most (bigger: fork as before)
ORDER_KEYS = ("argv", "env", "cwd", "rlimits", "python_inline", "path0")


class Spare:
    """The agent's handle on a spare child: its pid and the agent's ends of its pipes."""

    def __init__(self, workdir: str) -> None:
        mine: list[int] = []
        try:
            for _ in range(4):  # stdin, stdout, stderr, control
                mine.extend(os.pipe())
            # a traced run's stamps and the exit notice go here (see _inline.PAGE)
            self.shared = mmap.mmap(-1, _inline.PAGE_SIZE)
            gc.freeze()  # as in Run._start: a collection in the child must not copy pages
            pid = os.fork()
        except BaseException:
            for fd in mine:
                os.close(fd)
            raise
        in_r, in_w, out_r, out_w, err_r, err_w, ctl_r, ctl_w = mine
        if pid == 0:
            _inline.TRACE = _inline.PAGE = self.shared
            _inline.PAGE_OWNER = os.getpid()
            _wait_for_orders((in_r, out_w, err_w), ctl_r, workdir)
        for fd in (in_r, out_w, err_w, ctl_r):
            os.close(fd)
        self.pid = pid
        self.stdin, self.stdout, self.stderr, self.control = in_w, out_r, err_r, ctl_w

    def hand(self, job: RunJob) -> bool:
        """Give the spare the run's essentials; False: it could not take them (it died,
        or they are too big for the pipe), so the run forks as before."""
        orders = json.dumps({k: job[k] for k in ORDER_KEYS if k in job}).encode()  # type: ignore[literal-required]
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


def _wait_for_orders(fds: tuple[int, int, int], control: int, workdir: str) -> NoReturn:
    """The spare: set up what no job decides, wait for the orders, become the program."""
    program: _inline.Become | None = None
    try:
        _procs.detach_child(fds, keep_fd=control, drop=False)
        chunks = []
        while chunk := os.read(3, 65536):
            chunks.append(chunk)
        os.close(3)
        if not chunks:
            os._exit(0)  # the agent went away without a job for it
        _inline.stamp(0)
        job: RunJob = json.loads(b"".join(chunks))
        _procs.drop_privileges()
        argv, env = _procs.apply_job(job, workdir)
        program = _inline.program_for(job, argv, env)
    finally:
        if program is None:
            os._exit(126)
    raise program
