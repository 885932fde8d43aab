"""Pre-started runtimes: a language's runtime started in a sandbox that has served no
one yet, before any user code arrives, waiting for its program (JavaScript: node with a
small preload, ``prestart.js``, that says ready on descriptor 4 and blocks before node
loads the main module) or, for a compiled language, for its compile step (TypeScript:
``prestart_tsc.js``, the image's tsc loaded and warmed in node; Java:
``SandboxkitJavac.java``, javac warmed in a JVM); each then does what the command it
stands for does, with that command's output and exit status.

The image records what to start in :data:`CONFIG` (written from the language spec when
the image is built). The agent starts it as its own child, exactly as it starts a run's
program (the sandbox user, a new session, default signal actions, three pipes as its
stdio, nothing else open but the control pipe, descriptor 3). The first run whose argv,
working directory and environment are the ones it was started with takes it over: the
agent places the files, applies the run's rlimits (``prlimit``), and sends the program's
arguments and environment on descriptor 3; from there the run is an ordinary run of that
process. Any other run discards it first. It is killed with everything else at the end
of the run, like every process in the container.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal

from ._privs import become_program, prlimit
from ._procs import SHIELDED, become_visible

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from .._protocol import RunJob

CONFIG = "/opt/sandboxkit/prestart.json"
READY_TIMEOUT = 10.0


def launch(workdir: str) -> Prestarted | None:
    """Start the image's runtime, if it has one; ``None`` if not (or it cannot start)."""
    try:
        with open(CONFIG, "rb") as f:
            conf = json.loads(f.read())
    except (OSError, ValueError):
        return None
    if "argv" not in conf:
        return None
    try:
        return Prestarted(conf, workdir)
    except OSError:
        return None


class Prestarted:
    """One runtime waiting for its program: its pid, the agent's ends of its pipes."""

    def __init__(self, conf: dict[str, Any], workdir: str) -> None:
        self.run: list[str] = [str(a) for a in conf["run"]]
        # how the run is told: JSON, or NUL-separated fields for a runtime without a
        # JSON parser of its own (ruby: requiring one would show in the program)
        self.fields = conf.get("orders") == "fields"
        self.env: dict[str, str] = {str(k): str(v) for k, v in conf["env"].items()}
        self.cwd = workdir
        argv = [str(a) for a in conf["argv"]]
        start_in = str(conf.get("cwd") or workdir)  # the runtime's own; the run's is workdir
        ends: list[int] = []
        mine: list[int] = []
        try:
            # stdin, stdout, stderr, control (3), ready (4)
            for child_reads in (True, False, False, True, False):
                r, w = os.pipe()
                ends.append(r if child_reads else w)
                mine.append(w if child_reads else r)
            self.pid = os.fork()
            if self.pid == 0:
                _child(ends, argv, self.env, start_in)
        except OSError:
            for fd in ends + mine:
                os.close(fd)
            raise
        for fd in ends:
            os.close(fd)
        self.stdin, self.stdout, self.stderr, self.control, ready = mine
        # the sandbox says ready once its runtime is: a run never waits for it to load
        # (bounded: a runtime that does not come up is just not used)
        try:
            if select.select([ready], [], [], READY_TIMEOUT)[0]:
                os.read(ready, 1)
        finally:
            os.close(ready)

    def fits(self, job: RunJob) -> bool:
        """Whether ``job`` is this runtime's program, started as it was started."""
        argv = [str(a) for a in job["argv"]]
        env = {str(k): str(v) for k, v in (job.get("env") or {}).items()}
        return (
            argv[: len(self.run)] == self.run
            and (job.get("cwd") or self.cwd) == self.cwd
            and env == self.env
            and not job.get("kernel")
            and not job.get("exact")
            and self._alive()
        )

    def _alive(self) -> bool:
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        return pid == 0

    def begin(self, job: RunJob) -> tuple[int, int, int, int]:
        """Hand the runtime its program: ``(pid, stdin, stdout, stderr)`` of the run."""
        limits: dict[str, Any] = dict(job.get("rlimits") or {})
        for name, raw in limits.items():
            value = int(raw)
            res = getattr(resource, "RLIMIT_" + str(name).upper())
            try:
                prlimit(self.pid, res, (value, value))
            except (ValueError, OSError):
                _soft, hard = prlimit(self.pid, res)
                prlimit(self.pid, res, (min(value, hard) if hard >= 0 else value, hard))
        args = [str(a) for a in job["argv"]][len(self.run) :]
        if self.fields:  # the working directory, the count of arguments, them, the env
            pairs = [f"{k}={v}" for k, v in self.env.items()]
            fields = [self.cwd, str(len(args)), *args, *pairs]
            message = "\0".join(fields).encode(errors="surrogateescape")
        else:
            message = json.dumps({"args": args, "env": self.env}).encode()
        view = memoryview(message)
        while view:
            view = view[os.write(self.control, view) :]
        os.close(self.control)
        return self.pid, self.stdin, self.stdout, self.stderr

    def discard(self) -> None:
        """Stop it: the run is not its program (reaped with the run's other children)."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass
        for fd in (self.stdin, self.stdout, self.stderr, self.control):
            os.close(fd)


def _child(fds: list[int], argv: list[str], env: dict[str, str], cwd: str) -> NoReturn:
    """The runtime's process, set up as a run's program is (``_procs.prepare_child``)."""
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, *SHIELDED):
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
        os.setsid()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.closerange(len(fds), 65536)
        become_program()  # raising: the finally below ends the child, nothing run
        become_visible()  # as a run's child: dumpable, first for the OOM killer
        os.chdir(cwd)
        os.execvpe(argv[0], argv, env)
    finally:
        os._exit(127)
