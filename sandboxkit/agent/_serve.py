"""The serve loop: say ready, then carry out one job at a time until the host hangs up."""

from __future__ import annotations

import json
import os
import selectors
import signal
import sys
import time

from .._protocol import FAULT, JOB, READY, FrameReader
from . import _bg, _files, _host, _lookups, _procs, _scrub, _snapshot, _watch
from ._boot import WORKDIR
from ._host import CHUNK, reply, send_json, send_raw
from ._kernel import Kernel
from ._procs import kill_and_reap, reap, wait_gone
from ._run import Inbox, Run
from ._spare import Spare

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ._launch import Launcher
    from ._prestart import Prestarted
    from ._zygote import Zygote

TOOLCHAIN_FILE = "/opt/sandboxkit/version"


class Agent:
    """The supervisor's state between runs: the host's input, queued jobs, the kernel."""

    def __init__(
        self,
        workdir: str = WORKDIR,
        run_env: dict[str, str] | None = None,
        launcher: Launcher | None = None,
        zygote: Zygote | None = None,
    ) -> None:
        self.workdir = workdir
        self.zygote = zygote  # makes the spares, where it can (_zygote)
        # exec'd programs start by the launcher's fork instead of the agent's (_launch)
        self.launcher = launcher
        # what the next run likely brings, for its spare: the last run's, and before any
        # run the language's environment in the workdir (see _spare)
        self.hint: dict[str, Any] | None = None
        if run_env is not None:
            self.hint = {"env": run_env, "cwd": workdir}
        self.first_hint = self.hint  # after a scrub: nothing of the last run's carried on
        self.sel = selectors.DefaultSelector()
        self.reader = FrameReader()
        self.queue: list[tuple[Any, Inbox]] = []  # jobs (parsed JSON) not started yet
        self.inbox = Inbox()  # where input for the running job goes
        self.stdin_eof = False
        self.kernel = Kernel()  # a session's persistent interpreter (pid 0: none yet)
        self.prestarted: Prestarted | None = None  # the image's runtime, for the first run
        self.read_ns = 0  # when the host's input was last read (a traced run reports it)
        # frames a compile step's run takes over unsent (see Run._report), and since when
        self.carried: list[bytes] = []
        self.carried_since = 0.0
        self.spare: Spare | None = None  # forked ahead for the next run (see _spare)
        # False after a run that had no use for one (a kernel's, a launched program's);
        # where a launcher starts the programs, the first run has none either
        self.want_spare = launcher is None
        # a run's program that answered by its exit notice, reaped by the next wait or
        # before the next job at the latest (see Run._take_notice, bury)
        self.dying = 0
        self.baseline = _scrub.Baseline()  # as it was before any program: scrub's target
        self.prestart: Callable[[str], Prestarted | None] | None = None
        # SIGCHLD interrupts a select() through this pipe, so an exit is seen at once
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w)
        os.set_blocking(_host.IN, False)
        self.sel.register(_host.IN, selectors.EVENT_READ, self.pump_host)
        if _host.IN != 0:
            # over a direct channel the attach stream still tells when the host is gone
            os.set_blocking(0, False)
            self.sel.register(0, selectors.EVENT_READ, self.watch_stdin)
        self.sel.register(self.wake_r, selectors.EVENT_READ, self.drain_wake)
        self.bg = _bg.Background(self.sel, self.internal_pids)
        self.watches = _watch.Watches(self.sel, workdir)  # Sandbox.watch's inotify
        # the image's recorded toolchain lookups, made while no job waits (_lookups)
        self.warmer = _lookups.Warmer()

    def internal_pids(self) -> list[int]:
        """The agent's own helpers: not the user's processes to list or signal."""
        pids = [self.kernel.pid, self.spare.pid if self.spare is not None else 0]
        pids += _procs.FIXED  # the launcher, the zygote
        if self.prestarted is not None:
            pids.append(self.prestarted.pid)
        return [p for p in pids if p]

    def spare_pids(self) -> tuple[int, ...]:
        """The next run's spare, which a run's kills leave alone (none: ``()``)."""
        return (self.spare.pid,) if self.spare is not None else ()

    def helpers(self) -> tuple[int, ...]:
        """What the end of a run leaves alive: a session's kernel, the next run's spare."""
        return (self.kernel.pid, *self.spare_pids())

    def pump_host(self) -> None:
        """Read what the host sent: queue jobs, hand other frames to their run's inbox."""
        try:
            data = os.read(_host.IN, CHUNK)
        except BlockingIOError:
            return
        except ConnectionError:  # the host's end of the channel went away
            data = b""
        if not data:
            self.hung_up(_host.IN)
            return
        self.take(data)

    def take(self, data: bytes) -> None:
        """Frames from the host's bytes ``data``: jobs queued, input to its run's inbox."""
        self.read_ns = time.monotonic_ns()
        for kind, payload in self.reader.feed(data):
            if kind == JOB:
                self.queue.append((json.loads(payload), Inbox()))
            else:
                # input that arrived together with a job not started yet belongs to it
                (self.queue[-1][1] if self.queue else self.inbox).take(kind, payload)

    def watch_stdin(self) -> None:
        """The attach stream beside a direct channel: only its end matters."""
        try:
            if os.read(0, CHUNK):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        self.hung_up(0)

    def hung_up(self, fd: int) -> None:
        """The end of either way in from the host ends the sandbox."""
        self.stdin_eof = True
        self.sel.unregister(fd)

    def drain_wake(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def make_spare(self, hint: dict[str, Any] | None = None, *, alone: bool = True) -> None:
        """Fork the next run's child ahead: while the sandbox waits for a job (``alone``:
        no program runs), or for a job known to come next (``hint``: its orders)."""
        if self.spare is None and self.want_spare and self.prestarted is None:
            try:
                self.spare = Spare(self.workdir, hint or self.hint, alone=alone, zygote=self.zygote)
            except OSError:  # out of pids or descriptors: the run forks as before
                pass

    def send_carried(self) -> None:
        """What a compile step left for its run to take along, sent now (no run took it)."""
        frames, self.carried = self.carried, []
        if frames:
            send_raw(b"".join(frames))

    def take_spare(self) -> Spare | None:
        spare, self.spare = self.spare, None
        return spare

    def take_prestarted(self) -> Prestarted | None:
        """The pre-started runtime, once: only the sandbox's first run may use it."""
        pre, self.prestarted = self.prestarted, None
        return pre

    def serve(self, prestart: Callable[[str], Prestarted | None] | None = None) -> None:
        self.prestart = prestart
        if prestart is not None:
            self.prestarted = prestart(self.workdir)
        self.make_spare()
        # the cgroup counters every run reads, opened now: not on a fresh sandbox's one run
        _procs.oom_kills(), _procs.pids_max_hits(), _procs.cgroup_cpu()
        send_json(READY, {"python": sys.version.split()[0], "toolchain": _toolchain()})
        while True:
            if not self.queue and not self.stdin_eof:
                self.make_spare()  # once per wait: a spare killed meanwhile is not redone
            while not self.queue and not self.stdin_eof:
                ready = self.sel.select(0 if self.warmer.pending() else None)
                for key, _events in ready:
                    key.data()
                if not ready:
                    self.warmer.step()  # nothing came meanwhile
                ended = reap()
                if self.dying in ended:
                    self.dying = 0
                if self.kernel.pid in ended:
                    # it died between runs: the next cell starts anew and says state_lost
                    self.kernel.ended()
                if self.spare is not None and self.spare.pid in ended:
                    self.take_spare().discard(kill=False)  # type: ignore[union-attr]
            if not self.queue:
                # the host hung up: the container ends, nothing outlives it
                kill_and_reap()
                return
            job, inbox = self.queue.pop(0)
            self.warmer.stop()
            if self.carried and job.get("op") != "run":
                self.send_carried()
            try:
                self.dispatch(job, inbox)
            except Exception as exc:  # noqa: BLE001 - report, never die
                self.send_carried()
                send_json(FAULT, {"error": f"{type(exc).__name__}: {exc}"})

    def bury(self) -> None:
        """Wait for the last run's program to be gone, if it answered by its exit notice
        while still tearing down: nothing of a run lives on into the next job."""
        pid, self.dying = self.dying, 0
        if pid:
            wait_gone(pid)

    def dispatch(self, job: Any, inbox: Inbox) -> None:
        self.bury()
        op = job.get("op")
        if op == "run":
            self.inbox = inbox
            run = Run(self, job, inbox)
            run.execute()
            if run.then_started:  # no round trip to the host between compile and run
                self.queue.insert(0, (job["then"], Inbox()))
        elif op in _files.OPS:
            _files.serve(self.workdir, job)
        elif op == "scrub":
            self.scrub()
        elif op in _bg.OPS or op in _watch.OPS:
            try:
                if op in _watch.OPS:
                    header, data = self.watches.serve(job), b""
                else:
                    header, data = self.bg.serve(job)
            except (_files.Refused, OSError, ValueError) as exc:
                text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                reply({"ok": False, "reason": _files.reason_of(exc), "error": text})
            else:
                reply(header, data)
        elif op in _snapshot.OPS:  # Sandbox.pause / resume / fork
            _snapshot.serve(self, job, inbox)
        else:
            reply({"ok": False, "error": f"unknown op {op!r}"})

    def scrub(self) -> None:
        """Make the sandbox as new for another run (a pool's reuse mode), then pre-start
        its runtime again, as for a first run."""
        if self.bg.procs:  # a session's background processes: never a one-shot run's
            reply({"ok": True, "clean": False, "leftovers": ["background processes"]})
            return
        for handle in (self.take_spare(), self.take_prestarted()):
            if handle is not None:
                handle.discard()
        self.kernel.forget()
        self.hint = self.first_hint
        report = _scrub.scrub(self.baseline)
        if report["clean"] and self.prestart is not None:
            self.prestarted = self.prestart(self.workdir)
        self.want_spare = self.launcher is None
        reply(report)


def _toolchain() -> str | None:
    """The toolchain's own version line, recorded in the image when it was built."""
    try:
        with open(TOOLCHAIN_FILE, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return None
    return lines[0][:200] if lines else None
