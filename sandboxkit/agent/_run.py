"""One run's life, from its job frame to its one EXIT frame: :class:`Run`."""

from __future__ import annotations

import base64
import gc
import json
import mmap
import os
import selectors
import signal
import time

from .._protocol import CLOSE_STDIN, DISPLAY, EXIT, KILL, STDERR, STDIN, STDOUT, pack
from . import _display, _files, _inline, _launch, _procs
from ._host import CHUNK, send, send_json, send_raw
from ._spare import Spare, hint_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    from resource import struct_rusage
    from typing import Any, NoReturn

    from .._protocol import ExitReport, Reason, RunJob
    from ._serve import Agent

FLOOD_SLACK = 1 << 20  # a stream past 4 x its cap + this is a flood: the run is killed
SETTLE = 0.05  # after the program's exit, how long kept processes' output is awaited
DRAIN = 2.0  # the most it waits for a pipe something unkillable holds open
CPU_POLL = 0.01  # the run's CPU time is read at most this often (when it has a CPU limit)
# the most CPU seconds the run can use in a second: the CPUs it may run on
CPU_RATE = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
# Output is forwarded at most this long after it was read (or once CHUNK is held): a
# short program's output then travels with its EXIT frame in one write, one trip through
# the engine's relay (dockerd, the shim) instead of two that compete for the CPU with the
# program's own exit. Bytes and their order are unchanged; a stream is late by <= HOLD.
HOLD = 0.004
# An exit notice (``_inline.notify_exit``) stands for the program's status only when no
# limit may be what is ending it: CPU within this of the run's CPU limit waits for the reap.
CPU_MARGIN = 0.1
# where a run stands with its program's exit notice
NOTICE_UNREAD, NOTICE_TAKEN, NOTICE_REFUSED = range(3)


class _Usage:
    """What a report takes of a reaped child's rusage, from an exit notice instead."""

    __slots__ = ("ru_maxrss", "ru_stime", "ru_utime")

    def __init__(self, cpu: float, max_rss_kb: int) -> None:
        self.ru_utime, self.ru_stime, self.ru_maxrss = cpu, 0.0, max_rss_kb


class Inbox:
    """What the host sent for one run besides the job: stdin frames, close-stdin, kill.

    Frames that arrive while the job still waits in the queue land here too."""

    __slots__ = ("close_stdin", "kill", "stdin")

    def __init__(self) -> None:
        self.stdin: list[bytes] = []
        self.close_stdin = False
        self.kill = False

    def take(self, kind: bytes, payload: bytes) -> None:
        if kind == STDIN:
            self.stdin.append(payload)
        elif kind == CLOSE_STDIN:
            self.close_stdin = True
        elif kind == KILL:
            self.kill = True


class _Output:
    """One of the program's output pipes: forwarded as frames up to the cap, counted."""

    __slots__ = ("count", "fd", "kind", "run", "truncated")

    def __init__(self, run: Run, fd: int, kind: bytes) -> None:
        self.run, self.fd, self.kind = run, fd, kind
        self.count = 0
        self.truncated = False

    def readable(self) -> None:
        run = self.run
        if self not in run.open:
            return  # closed earlier in the same round of events
        try:
            data = os.read(self.fd, CHUNK)
        except BlockingIOError:
            return
        if not data:
            run.close_output(self)
            return
        before = self.count
        self.count += len(data)
        if before < run.limit_out:
            keep = min(len(data), run.limit_out - before)
            if run.trace is not None and not before:
                run.stamp("read_" + self.kind.decode())
            run.emit(self.kind, data[:keep])
            if keep < len(data):
                self.truncated = True
        else:
            self.truncated = True
        if self.count > run.flood:
            run.stop("output_limit")


def _child(job: RunJob, fds: tuple[int, int, int], workdir: str) -> NoReturn:
    """The forked program: set up, then exec it or, for Python, become it (it touches as
    few of the agent's objects as it can: every page it writes is copied). Becoming
    means raising :class:`_inline.Become` out of the agent's whole call stack (the
    agent's entry catches it and runs the program), so the program's stack starts near
    empty."""
    program: _inline.Become | None = None
    try:
        _inline.stamp(0)
        argv, env = _procs.prepare_child(job, fds, workdir)
        program = _inline.program_for(job, argv, env)
    finally:
        if program is None:
            os._exit(126)
    raise program


def _drop(spare: Spare | None) -> None:
    """A spare the run does not use: killed, and reaped before the run's own child
    starts, so its program never sees it in /proc."""
    if spare is not None:
        spare.discard()
        _procs.wait_gone(spare.pid)


class Run:
    """One program run: place its files, start it, feed its stdin, forward its output,
    enforce the wall limit, the output cap and the host's kill, and end with exactly one
    EXIT frame, also when it cannot be carried out (reason ``setup``)."""

    def __init__(self, agent: Agent, job: RunJob, inbox: Inbox) -> None:
        self.agent, self.sel, self.job, self.inbox = agent, agent.sel, job, inbox
        self.wall = float(job.get("time", 10.0))
        self.limit_out = int(job.get("output_bytes", 1_000_000))
        self.flood = self.limit_out * 4 + FLOOD_SLACK
        self.keep = bool(job.get("keep_processes"))
        self.interactive = bool(job.get("interactive"))
        self.kernel = agent.kernel if job.get("kernel") else None
        self.pid = 0
        self.status: int | None = None  # as wait() gives it
        self.rusage: struct_rusage | _Usage | None = None
        self.reaped = False  # the program's pid was collected by wait
        self.notice = NOTICE_UNREAD  # TAKEN: its status came from it (see _take_notice)
        self.reason: Reason | None = None
        self.started = 0.0
        self.exited_at: float | None = None
        self.stdin_fd: int | None = None
        self.stdin_watched = False
        self.kernel_watched = False
        self.outputs: list[_Output] = []  # stdout, stderr
        self.open: set[_Output] = set()
        self.oom_before = 0
        self.pids_before = 0
        self.cpu_before = 0.0
        # the run's CPU limit: every process of it together, read from the cgroup
        cpu_time = job.get("cpu_time")
        self.cpu_limit = float(cpu_time) if cpu_time else None
        self.cgroup_before: float | None = None
        self.cpu_next = 0.0  # when the CPU time is read next (see _over_cpu)
        self.self_before = 0.0
        self.killed = False  # leftovers were killed: wait for them to be gone before EXIT
        self.reported = False
        self.then_started = False  # the job's "then" run is to follow at once
        self.spare_tried = False  # the next run's child was forked (or tried) during this one
        # frames not yet written to the host (see HOLD): a compile step's EXIT frame is
        # handed on to the run it carries, so both reach the host in one write
        self.held: list[bytes] = agent.carried
        self.held_size = 0
        self.held_since = agent.carried_since
        agent.carried = []
        # a traced job (benchmarks/trace_warm.py) reports when each stage ended
        self.trace: dict[str, int] | None = None
        # the page shared with a forked child: its stamps (traced jobs), its exit notice
        self.shared: Any = None
        if job.get("trace"):
            self.trace = {"read": agent.read_ns, "job": time.monotonic_ns()}

    def emit(self, kind: bytes, payload: bytes) -> None:
        """A frame for the host, written within HOLD seconds (at once past CHUNK)."""
        if not self.held:
            self.held_since = time.monotonic()
        self.held.append(pack(kind, payload))
        self.held_size += len(payload)
        if self.held_size >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.held:
            frames, self.held, self.held_size = self.held, [], 0
            send_raw(b"".join(frames))

    def stamp(self, name: str) -> None:
        if self.trace is not None:
            self.trace[name] = time.monotonic_ns()

    def execute(self) -> None:
        try:
            self._start()
            self._loop()
            self._report()
        except Exception as exc:  # noqa: BLE001 - the run ends with a status, not a fault
            self._abort(f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ start
    def _start(self) -> None:
        job, workdir = self.job, self.agent.workdir
        for rel, b64 in (job.get("files") or {}).items():
            _files.write_file(workdir, rel, base64.b64decode(b64), replace=True)
        _files.place_own(job)
        stdin = job.get("stdin")
        if stdin is not None and (data := base64.b64decode(stdin)):
            self.inbox.stdin.insert(0, data)
        self.stamp("files")
        if self.kernel is None:  # the next run likely asks for what this one did
            self.agent.hint = hint_of(job)
        self.oom_before = _procs.oom_kills()
        self.pids_before = _procs.pids_max_hits()
        pre = self.agent.take_prestarted()
        if pre is not None and self.kernel is None and pre.fits(job):
            self._clock_start()
            self.pid, self.stdin_fd, out_fd, err_fd = pre.begin(job)
            self._outputs(out_fd, err_fd)
            return
        if pre is not None:
            pre.discard()
        if self._launched() or self._from_spare():
            return
        ends: list[int] = []  # the child's ends of the pipes: closed here once it has them
        child = False
        try:
            in_r, in_w = os.pipe()
            self.stdin_fd = in_w
            ends.append(in_r)
            for kind in (STDOUT, STDERR):
                r, w = os.pipe()
                out = _Output(self, r, kind)
                self.outputs.append(out)
                self.open.add(out)
                ends.append(w)
            fds = (ends[0], ends[1], ends[2])
            self._clock_start()
            if self.kernel is not None:
                self.pid = self.kernel.cell(job, fds, workdir)
                self.cpu_before = _procs.proc_cpu(self.pid)
                self.sel.register(self.kernel.sock, selectors.EVENT_READ, self._kernel_answer)  # type: ignore[arg-type]
                self.kernel_watched = True
            else:
                # this long-lived process's objects go to gc's permanent generation: a
                # collection in the child would otherwise touch (and copy) all their pages
                gc.freeze()
                self.shared = mmap.mmap(-1, _inline.PAGE_SIZE)
                self.stamp("fork")
                pid = os.fork()
                if pid == 0:
                    child = True
                    _inline.PAGE, _inline.PAGE_OWNER = self.shared, os.getpid()
                    _inline.TRACE = self.shared if self.trace is not None else None
                    _child(job, fds, workdir)
                self.pid = pid
                self.stamp("forked")
        finally:
            if not child:  # the child has them as 0-2 and closed the rest (or is gone)
                for fd in ends:
                    os.close(fd)
        for fd in (in_w, *(out.fd for out in self.outputs)):
            os.set_blocking(fd, False)
        for out in self.outputs:
            self.sel.register(out.fd, selectors.EVENT_READ, out.readable)

    def _clock_start(self) -> None:
        """The program is about to start: its wall time and CPU are counted from here."""
        self.started = time.monotonic()
        self.cgroup_before, self.self_before = _procs.cgroup_cpu(), _procs.self_cpu()

    def _launched(self) -> bool:
        """Start an exec'd program by the launcher (``_launch``); False: not by it."""
        agent = self.agent
        if not _launch.usable(agent.launcher, self.job):
            return False
        assert agent.launcher is not None
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self._clock_start()
        self.stamp("fork")
        try:
            pid = agent.launcher.spawn(self.job, (in_r, out_w, err_w), agent.workdir)
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        if pid is None:
            for fd in (in_w, out_r, err_r):
                os.close(fd)
            return False
        self.stamp("forked")
        agent.want_spare = False  # the next program likely starts so too
        self.pid, self.stdin_fd = pid, in_w
        self._outputs(out_r, err_r)
        return True

    def _from_spare(self) -> bool:
        """Hand the run to the child forked ahead (``_spare``), or where it does not fit
        the run, to one the zygote clones for it now; False: fork one now."""
        agent = self.agent
        agent.want_spare = self.kernel is None
        spare = agent.take_spare()
        if self.kernel is not None:
            _drop(spare)
            return False
        if self._hand(spare):
            return True
        if agent.zygote is None or not agent.zygote.usable():
            return False
        # not the agent's own fork: its memory holds what earlier runs were sent
        try:
            spare = Spare(agent.workdir, hint_of(self.job), alone=True, zygote=agent.zygote)
        except OSError:
            return False
        return self._hand(spare)

    def _hand(self, spare: Spare | None) -> bool:
        """Hand the run to ``spare``; False: none, or it could not take it (then gone)."""
        if spare is None:
            return False
        self._clock_start()
        self.stamp("fork")
        if not spare.hand(self.job):
            _drop(spare)
            return False
        self.pid, self.stdin_fd = spare.pid, spare.stdin
        self.shared = spare.shared
        self._outputs(spare.stdout, spare.stderr)
        self.stamp("forked")
        return True

    def _outputs(self, out_fd: int, err_fd: int) -> None:
        """Watch the pipes of a pre-started runtime that is now the run's program."""
        assert self.stdin_fd is not None
        os.set_blocking(self.stdin_fd, False)
        for fd, kind in ((out_fd, STDOUT), (err_fd, STDERR)):
            out = _Output(self, fd, kind)
            self.outputs.append(out)
            self.open.add(out)
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ, out.readable)

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        self.cpu_next = self._next_cpu_check(self.started, 0.0)
        while True:
            self._watch_stdin()
            now = time.monotonic()
            if self.status is None:
                if now - self.started >= self.wall:
                    self.stop("timeout")
                elif self.inbox.kill:
                    self.stop("killed")
                elif self._over_cpu(now):
                    self.stop("cpu_timeout")
            elif self.exited_at is None:
                self._exited(now)
            if self.exited_at is not None and self._drained(now):
                return
            if self.status is not None:
                timeout = SETTLE
            else:
                timeout = max(0.0, self.wall - (now - self.started))
                if self.cpu_limit is not None and self.cgroup_before is not None:
                    timeout = min(timeout, max(0.0, self.cpu_next - now))
            if self.held:
                timeout = max(0.0, min(timeout, self.held_since + HOLD - now))
            if self._run_waits():
                self._spare_ahead()
            for key, _events in self.sel.select(timeout):
                key.data()
            self._reap()
            if self.status is None and not self.open and self.notice == NOTICE_UNREAD:
                self._take_notice()
            if self.held and time.monotonic() >= self.held_since + HOLD:
                self.flush()

    def _run_waits(self) -> bool:
        """Whether a run waits behind this one's program, still running, with no spare
        tried for it yet."""
        if self.status is not None or self.spare_tried:
            return False
        return bool(self.agent.queue) or "then" in self.job

    def _spare_ahead(self) -> None:
        """A run waits behind this one (a judge's next test, the run a compile step
        carries): fork its child now, while this run's program runs, rather than on its
        path once this one has ended. Only while the program runs: once it has ended,
        this run's exit report goes first. With no run waiting, the spare is forked
        after the exit report instead (the serve loop), while the host reads the
        result, not beside the program."""
        self.spare_tried = True  # once: out of pids, a fork in every round would not help
        after = self.job["then"] if "then" in self.job else self.agent.queue[0][0]
        if _launch.usable(self.agent.launcher, after):
            return  # the launcher starts it: no fork of the agent's to make ahead
        self.agent.make_spare(hint_of(after), alone=False)
        self.stamp("spare")

    def _take_notice(self) -> None:
        """The program's status from its exit notice (``_inline.notify_exit``), read once
        its output has ended, so the report need not wait for its address space to be
        torn down; it is reaped later, before the next job (``Agent.bury``).

        The notice is the process's own word, so it is also its end: SIGKILL goes to it
        as it is taken (a no-op on a process already in its exit). A program that wrote
        a notice and meant to run on ends there, with the status it gave. Not taken when
        a limit (memory, CPU) may be what is ending it: its wait status decides then."""
        self.notice = NOTICE_REFUSED  # looked at once: else the wait status decides
        notice = _inline.read_notice(self.shared, self.pid) if self.shared is not None else None
        if notice is None:
            return  # output closed by the program, not at its end
        code, cpu, rss = notice
        rlimits = self.job.get("rlimits")
        limit = self.cpu_limit or (rlimits.get("cpu") if rlimits else None)
        if _procs.oom_kills() != self.oom_before or (limit and cpu >= limit - CPU_MARGIN):
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:  # gone already: its wait status (the next reap) decides
            return
        self.notice = NOTICE_TAKEN
        self.status, self.rusage = code << 8, _Usage(cpu, rss)
        self.agent.dying = self.pid
        self.stamp("noticed")

    def _spared(self) -> tuple[int, ...]:
        """What the end-of-run kill leaves: the helpers, and a program that answered by
        its notice and is exiting (killing it would change nothing, but the kill's wait
        would then wait for its teardown)."""
        if self.notice == NOTICE_TAKEN and not self.reaped:
            return (*self.agent.helpers(), self.pid)
        return self.agent.helpers()

    def run_cpu(self) -> float | None:
        """CPU seconds of the run so far: the container's, less the agent's own."""
        now = _procs.cgroup_cpu()
        if now is None or self.cgroup_before is None:
            return None
        return max(0.0, (now - self.cgroup_before) - (_procs.self_cpu() - self.self_before))

    def _over_cpu(self, now: float) -> bool:
        """Whether the run used its CPU time, read from the cgroup when it could first
        have (see ``_next_cpu_check``)."""
        if self.cpu_limit is None or now < self.cpu_next:
            return False
        used = self.run_cpu()
        self.cpu_next = self._next_cpu_check(now, used or 0.0)
        return used is not None and used >= self.cpu_limit

    def _next_cpu_check(self, now: float, used: float) -> float:
        """When the CPU time is read next: when the run, on every CPU it may use, could
        have used the rest of its limit, and not before CPU_POLL from now. A run gets
        no more past its limit than with a read every CPU_POLL, and a compile with 30 s
        of CPU to go is not woken every 10 ms to be looked at (each wake took a CPU from
        the program: ~3 per C hello world's compile)."""
        rest = (self.cpu_limit or 0.0) - used
        return now + max(CPU_POLL, rest / CPU_RATE)

    def stop(self, reason: Reason) -> None:
        """End the program early: kill every process (the kernel too), note why."""
        if self.reason is None and self.status is None:
            self.reason = reason
            self.killed = _procs.kill_all(self.agent.spare_pids()) or self.killed

    def _exited(self, now: float) -> None:
        self.exited_at = now
        self._close_stdin()
        if not self.keep:
            # leftovers (daemons, a background writer holding stdout) end with the run
            self.killed = _procs.kill_all(self._spared()) or self.killed

    def _drained(self, now: float) -> bool:
        assert self.exited_at is not None
        waited = now - self.exited_at
        # past DRAIN: a pipe held open by something we cannot kill must not hang us
        return not self.open or (self.keep and waited > SETTLE) or waited > DRAIN

    def _watch_stdin(self) -> None:
        """Feed the program's stdin from what the host sent; close it when it is done."""
        if self.stdin_fd is None:
            return
        if self.inbox.stdin and not self.stdin_watched:
            self._write_stdin()  # most stdin fits in the pipe: no round of select for it
        if self.stdin_fd is None:
            return
        if self.inbox.stdin:
            if not self.stdin_watched:
                self.sel.register(self.stdin_fd, selectors.EVENT_WRITE, self._write_stdin)
                self.stdin_watched = True
        elif not self.interactive or self.inbox.close_stdin:
            self._close_stdin()

    def _write_stdin(self) -> None:
        pending = self.inbox.stdin
        if self.stdin_fd is None or not pending:
            return
        try:
            n = os.write(self.stdin_fd, pending[0])
        except BlockingIOError:
            return
        except OSError:  # the program closed its stdin: the rest is dropped
            pending.clear()
            self._close_stdin()
            return
        if n < len(pending[0]):
            pending[0] = pending[0][n:]
        else:
            pending.pop(0)
        if not pending and self.stdin_watched:
            self.sel.unregister(self.stdin_fd)
            self.stdin_watched = False

    def _kernel_answer(self) -> None:
        assert self.kernel is not None
        status = self.kernel.answer()
        if status is None:
            self._unwatch_kernel()  # it ended, or was killed for a broken answer
        elif self.status is None:
            self.status = status

    def _reap(self) -> None:
        """Collect every child that ended; keep the program's status and usage."""
        kernel = self.agent.kernel
        while True:
            try:
                pid, status, rusage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            _procs.note_exit(pid, status)
            if pid == self.agent.dying:
                self.agent.dying = 0
            if pid == self.pid:
                self.reaped = True
                if self.notice != NOTICE_TAKEN:
                    self.status, self.rusage = status, rusage
                    self.stamp("reaped")
            if pid == kernel.pid:
                self._unwatch_kernel()
                kernel.ended()
            spare = self.agent.spare
            if spare is not None and pid == spare.pid:  # died (out of memory...): not reused
                self.agent.take_spare().discard(kill=False)  # type: ignore[union-attr]

    # ------------------------------------------------------------------ the end
    def _close_stdin(self) -> None:
        if self.stdin_fd is not None:
            if self.stdin_watched:
                self.sel.unregister(self.stdin_fd)
                self.stdin_watched = False
            os.close(self.stdin_fd)
            self.stdin_fd = None

    def close_output(self, out: _Output) -> None:
        self.open.discard(out)
        try:
            self.sel.unregister(out.fd)
        except KeyError:
            pass
        os.close(out.fd)

    def _unwatch_kernel(self) -> None:
        if self.kernel_watched and self.kernel is not None:
            self.sel.unregister(self.kernel.sock)  # type: ignore[arg-type]
            self.kernel_watched = False

    def _release(self) -> None:
        self._close_stdin()
        for out in list(self.open):
            self.close_output(out)
        self._unwatch_kernel()

    def _settle(self) -> None:
        """Reap the killed until none is left (bounded): a SIGKILLed process takes a moment
        to die, and the next run must not see it, nor the host find it alive. What is
        left is killed again each round: with a helper to spare (the next run's spare, a
        kernel) the kill goes pid by pid from a listing of /proc, and a process forked
        between the listing and its parent's kill was not on it."""
        deadline = time.monotonic() + DRAIN
        while time.monotonic() < deadline:
            left = _procs.others(self._spared())
            if not left:
                return
            _procs.kill_each(left)
            time.sleep(0.001)
            self._reap()

    def _report(self) -> None:
        self.stamp("drained")
        if self.killed:
            self._settle()
        kernel_alive = self.kernel is not None and self.kernel.pid != 0
        self._release()
        rusage = self.rusage
        if kernel_alive:
            cpu: float | None = _procs.proc_cpu(self.pid) - self.cpu_before
            max_rss = _procs.proc_hwm_kb(self.pid)
        else:
            cpu = (rusage.ru_utime + rusage.ru_stime) if rusage is not None else None
            max_rss = rusage.ru_maxrss if rusage is not None else None
        exit_code = signum = None
        if self.status is not None:
            if os.WIFSIGNALED(self.status):
                signum = os.WTERMSIG(self.status)
            else:
                exit_code = os.waitstatus_to_exitcode(self.status)
        rlimits = self.job.get("rlimits")
        cpu_limit = self.cpu_limit or (rlimits.get("cpu") if rlimits else None)
        total = None if kernel_alive else self.run_cpu()
        if total is not None and cpu is not None:
            cpu = max(cpu, total)  # every process of the run, not only the main one
        reason: Reason | None = self.reason
        failed = signum is not None or exit_code not in (0, None)
        if (
            reason is None
            and failed
            and cpu_limit
            and cpu is not None
            and (signum in (signal.SIGXCPU, signal.SIGKILL) or exit_code in (152, 137))
            and cpu >= cpu_limit - 0.05
        ):
            # RLIMIT_CPU (the backstop) ended the program, or a process of it
            reason = "cpu_timeout"
        report: ExitReport = {
            "exit_code": exit_code,
            "signal": signum,
            "reason": reason,
            "wall": (self.exited_at or time.monotonic()) - self.started,
            "cpu": cpu,
            "max_rss_kb": max_rss,
            "oom_kills": _procs.oom_kills() - self.oom_before,
            "pids_max_hits": _procs.pids_max_hits() - self.pids_before,
            "truncated_stdout": self.outputs[0].truncated,
            "truncated_stderr": self.outputs[1].truncated,
        }
        if _display.collect(self.limit_out, self.emit, DISPLAY):
            report["truncated_outputs"] = True
        if self.kernel is not None and self.kernel.take_lost():
            report["state_lost"] = True
        if "then" in self.job:
            # a compile step carrying its run: the run follows at once only when the
            # compiler ended well within the container's limits (else the host decides)
            self.then_started = (
                exit_code == 0
                and reason is None
                and not report["oom_kills"]
                and not report["pids_max_hits"]
            )
            report["then_started"] = self.then_started
        if self.trace is not None:
            self._traced(report)
        self._close_page()
        self.emit(EXIT, json.dumps(report).encode())
        if self.then_started:
            # the run starts at once: its first frames (or HOLD) take this one along, one
            # write and one wake-up of the host instead of two beside the starting run
            self.agent.carried, self.held = self.held, []
            self.agent.carried_since = self.held_since
        else:
            self.flush()
        self.reported = True

    def _traced(self, report: ExitReport) -> None:
        """A traced job's stamps (CLOCK_MONOTONIC ns, as the host's perf_counter_ns)."""
        assert self.trace is not None
        if self.shared is not None:
            for i, name in enumerate(_inline.STAGES):
                ns = int.from_bytes(self.shared[8 * i : 8 * i + 8], "little")
                if ns:
                    self.trace[name] = ns
        self.stamp("report")
        report["trace"] = self.trace

    def _close_page(self) -> None:
        if self.shared is not None and not self.shared.closed:
            self.shared.close()

    def _abort(self, why: str) -> None:
        """The run could not be carried out (its files could not be placed, descriptors
        ran out after the user lowered our limits...): stop what it started, release its
        pipes and still end it with one EXIT frame, so the host reports a status."""
        spare = self.agent.take_spare()  # not taken yet: the kill below would reach it
        if spare is not None:
            spare.discard()
        _procs.kill_all((self.agent.kernel.pid,))
        self._release()
        self._close_page()
        held, self.held, self.held_size = self.held, [], 0
        if held:  # what was read before the fault still goes out, in order
            send_raw(b"".join(held))
        if self.reported:
            os.write(2, f"sandboxkit agent: after a run: {why}\n".encode())
            return
        send(STDERR, f"sandboxkit: the run could not be carried out: {why}\n".encode())
        report: ExitReport = {"exit_code": None, "signal": None, "reason": "setup", "wall": 0.0}
        if self.kernel is not None and self.kernel.take_lost():
            report["state_lost"] = True
        send_json(EXIT, report)
        self.reported = True
