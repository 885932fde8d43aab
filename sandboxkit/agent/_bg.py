"""Background processes and terminals: started apart from runs, kept across them.

Each is the leader of a session of its own (its pid is the session id, recorded in
``_procs.KEPT``), so a run's clean-up spares it and what it started, and a kill reaches
its whole tree. Its output (pipes, or a PTY's master) is read whenever the agent waits,
between jobs and during runs (the descriptors sit in the agent's selector), into a
bounded buffer of numbered chunks: the host polls ``proc_read`` with the last number it
saw, so a connection made later gets what was written since, and nothing blocks the
process while no host reads. The sandbox's end kills them all (``kill_and_reap``).
"""

from __future__ import annotations

import os
import selectors
import signal
import time

from . import _procs
from ._files import Refused
from ._host import CHUNK

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

KEEP_BYTES = 4 << 20  # output kept per process (oldest chunks dropped past it)
READ_BYTES = 1 << 20  # output sent in one reply at most
WRITE_WAIT = 2.0  # how long a write to a full stdin waits before saying how much went in
OPS = ("proc_start", "proc_read", "proc_write", "proc_signal", "proc_resize", "proc_list")


class BgProc:
    def __init__(self, pid: int, argv: list[str], cwd: str, pty: bool) -> None:
        self.pid, self.argv, self.cwd, self.pty = pid, argv, cwd, pty
        self.started = time.time()
        self.stdin: int | None = None  # the PTY's master, or the stdin pipe
        self.outputs: dict[int, str] = {}  # open output descriptors -> stream name
        self.chunks: list[tuple[int, str, bytes]] = []
        self.seq = 0
        self.kept = 0
        self.dropped = False

    def take(self, stream: str, data: bytes) -> None:
        self.seq += 1
        self.chunks.append((self.seq, stream, data))
        self.kept += len(data)
        while self.kept > KEEP_BYTES and len(self.chunks) > 1:
            self.kept -= len(self.chunks.pop(0)[2])
            self.dropped = True


KILL_PASSES = 10  # SIGKILL rounds over a tree before its last members are reported left


class Background:
    def __init__(self, sel: selectors.BaseSelector, internal: Any) -> None:
        self.sel = sel
        self.internal = internal  # () -> pids of the agent's own helpers (kernel, spare)
        self.procs: dict[int, BgProc] = {}

    # ------------------------------------------------------------------ start
    def start(self, job: Any) -> dict[str, Any]:
        argv = [str(a) for a in job["argv"]]
        if not argv:
            raise Refused("invalid_path", "an empty command")
        cwd = str(job.get("cwd") or "/")
        if not os.path.isdir(cwd):
            raise Refused("not_found", f"working directory {cwd!r} does not exist")
        env = {str(k): str(v) for k, v in (job.get("env") or {}).items()}
        term = job.get("pty")
        if term:
            master, slave = os.openpty()
            self._winsize(master, int(term["cols"]), int(term["rows"]))
            fds = (slave, slave, slave)
            mine = [master]
            theirs = [slave]
        else:
            in_r, in_w = os.pipe()
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            fds = (in_r, out_w, err_w)
            mine = [in_w, out_r, err_r]
            theirs = [in_r, out_w, err_w]
        try:
            pid = os.fork()
        except OSError:
            for fd in mine + theirs:
                os.close(fd)
            raise
        if pid == 0:  # the child: never returns
            try:
                _procs.detach_child(fds, root=bool(job.get("root")))
                if term:
                    import fcntl
                    import termios

                    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
                job = {"argv": argv, "env": env, "cwd": cwd, "rlimits": job.get("rlimits")}
                _procs.apply_job(job, cwd)
                _procs.exec_program(argv, env)
            finally:
                os._exit(127)
        for fd in theirs:
            os.close(fd)
        _procs.KEPT.add(pid)
        proc = BgProc(pid, argv, cwd, bool(term))
        if term:
            proc.stdin = master
            proc.outputs[master] = "stdout"
        else:
            proc.stdin = mine[0]
            proc.outputs[mine[1]] = "stdout"
            proc.outputs[mine[2]] = "stderr"
        for fd in proc.outputs:
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ, lambda fd=fd, p=proc: self._pump(p, fd))
        os.set_blocking(proc.stdin, False)
        self.procs[pid] = proc
        return {"ok": True, "pid": pid}

    @staticmethod
    def _winsize(fd: int, cols: int, rows: int) -> None:
        import fcntl
        import struct
        import termios

        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def _pump(self, proc: BgProc, fd: int) -> None:
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: a PTY's other side closed
            data = b""
        if data:
            proc.take(proc.outputs[fd], data)
            return
        self._close_output(proc, fd)

    def _close_output(self, proc: BgProc, fd: int) -> None:
        proc.outputs.pop(fd, None)
        try:
            self.sel.unregister(fd)
        except (KeyError, ValueError):
            pass
        if fd == proc.stdin:
            proc.stdin = None
        os.close(fd)

    def _get(self, job: Any) -> BgProc:
        proc = self.procs.get(int(job["pid"]))
        if proc is None:
            raise Refused("not_found", f"no process {job['pid']} started with start()/terminal()")
        return proc

    # ------------------------------------------------------------------ talk
    def read(self, job: Any) -> tuple[dict[str, Any], bytes]:
        proc = self._get(job)
        status = _procs.EXITS.get(proc.pid)
        for fd in list(proc.outputs):  # what is already there, before saying what ended
            while fd in proc.outputs and self._readable(fd):
                self._pump(proc, fd)
        after = int(job.get("after") or 0)
        header: dict[str, Any] = {"ok": True, "next": proc.seq, "dropped": proc.dropped}
        parts: list[bytes] = []
        chunks: list[list[Any]] = []
        if not job.get("peek"):
            size = 0
            for seq, stream, data in proc.chunks:
                if seq <= after:
                    continue
                if size and size + len(data) > READ_BYTES:
                    break
                chunks.append([seq, stream, len(data)])
                parts.append(data)
                size += len(data)
                header["next"] = seq
        header["chunks"] = chunks
        header["running"] = status is None
        if status is not None:
            header["exit_code"] = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
            header["signal"] = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            # all output read and the leader gone: nothing more will come
            header["done"] = not proc.outputs or not self._alive_members(proc.pid)
        return header, b"".join(parts)

    @staticmethod
    def _readable(fd: int) -> bool:
        import select

        return bool(select.select([fd], [], [], 0)[0])

    def write(self, job: Any) -> dict[str, Any]:
        import base64

        proc = self._get(job)
        data = base64.b64decode(job.get("data") or "")
        sent = 0
        if data and proc.stdin is None:
            raise Refused("invalid_path", f"process {proc.pid}'s stdin is closed")
        deadline = time.monotonic() + WRITE_WAIT
        view = memoryview(data)
        while sent < len(data) and time.monotonic() < deadline:
            assert proc.stdin is not None
            try:
                sent += os.write(proc.stdin, view[sent:])
            except BlockingIOError:
                time.sleep(0.005)
            except OSError as exc:  # EPIPE: nobody reads it any more
                raise Refused(
                    "invalid_path", f"process {proc.pid}'s stdin: {exc.strerror}"
                ) from None
        if job.get("eof") and proc.stdin is not None and not proc.pty:
            os.close(proc.stdin)
            proc.stdin = None
        return {"ok": True, "written": sent}

    def resize(self, job: Any) -> dict[str, Any]:
        proc = self._get(job)
        if not proc.pty or proc.stdin is None:
            raise Refused("invalid_path", f"process {proc.pid} has no terminal")
        self._winsize(proc.stdin, int(job["cols"]), int(job["rows"]))
        return {"ok": True}

    # ------------------------------------------------------------------ processes
    def _alive_members(self, sid: int) -> list[int]:
        return [p for p in _pids() if p == sid or _procs.session_of(p) == sid]

    def tree(self, pid: int) -> list[int]:
        """``pid`` and its descendants; a background process's whole session too."""
        parents: dict[int, int] = {}
        for p in _pids():
            info = _stat(p)
            if info is not None:
                parents[p] = info[1]
        members = {pid} if pid in parents else set()
        if pid in self.procs:
            members.update(p for p in parents if _procs.session_of(p) == pid)
        grew = True
        while grew:
            more = {p for p, pp in parents.items() if pp in members and p not in members}
            members |= more
            grew = bool(more)
        return sorted(members)

    def signal(self, job: Any) -> dict[str, Any]:
        pid = int(job["pid"])
        if pid <= 1 or pid in self.internal():
            raise Refused("not_found", f"no process {pid}")
        members = self.tree(pid)
        if not members and pid not in self.procs:
            raise Refused("not_found", f"no process {pid}")
        sig = int(job.get("signal", signal.SIGTERM))  # 0: only say which are left
        # SIGKILL: again while any is left, since a member forking as it is killed leaves
        # a child the first pass did not see (re-parented to PID 1, still in the session)
        for _ in range(KILL_PASSES if sig == signal.SIGKILL else 1 if sig else 0):
            for p in members:
                try:
                    os.kill(p, sig)
                except OSError:
                    pass
            members = self._alive(pid)
            if not members:
                break
        return {"ok": True, "left": self._alive(pid)}

    def _alive(self, pid: int) -> list[int]:
        """``pid``'s tree less its zombies."""
        return [p for p in self.tree(pid) if (info := _stat(p)) is not None and info[0] != "Z"]

    def listing(self, job: Any) -> dict[str, Any]:
        internal = set(self.internal())
        out = []
        for p in _pids():
            if p == 1 or p in internal:
                continue
            info = _stat(p)
            if info is None or (info[0] == "Z" and p not in self.procs):
                continue
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    cmd = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
            except OSError:
                continue
            bg = self.procs.get(p)
            out.append(
                {
                    "pid": p,
                    "ppid": info[1],
                    "state": info[0],
                    "cmd": cmd or (bg.argv if bg else []),
                    "started": bg.started if bg else None,
                    "background": bg is not None or _procs.session_of(p) in _procs.KEPT,
                    "pty": bool(bg and bg.pty),
                }
            )
        self._tidy()
        return {"ok": True, "processes": out}

    def _tidy(self) -> None:
        """Forget ended processes whose output was all read and whose session is empty."""
        for pid, proc in list(self.procs.items()):
            if pid in _procs.EXITS and not proc.outputs and not self._alive_members(pid):
                _procs.KEPT.discard(pid)

    def serve(self, job: Any) -> tuple[dict[str, Any], bytes]:
        op = job["op"]
        if op == "proc_start":
            return self.start(job), b""
        if op == "proc_read":
            return self.read(job)
        if op == "proc_write":
            return self.write(job), b""
        if op == "proc_signal":
            return self.signal(job), b""
        if op == "proc_resize":
            return self.resize(job), b""
        return self.listing(job), b""


def _pids() -> list[int]:
    try:
        return [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []


def _stat(pid: int) -> tuple[str, int] | None:
    """``(state, ppid)`` of a live process (a zombie's state is ``Z``)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[0].decode(), int(fields[1])
    except (OSError, IndexError, ValueError):
        return None
