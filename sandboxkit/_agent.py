"""The in-container supervisor: PID 1 of every sandbox, standard library only.

This file is copied into each image and runs as ``python3 -I /opt/sandboxkit/agent.py``.
The host imports it too, for the frame format (:func:`pack`, :class:`FrameReader`), so
both sides share one definition of the wire protocol.

Why PID 1 and not a user program: PID 1 ignores any signal it has no handler for, even
SIGKILL sent from inside its own namespace, so user code cannot kill its supervisor; and
``kill(-1, SIGKILL)`` from PID 1 reaches every other process in the container, which is
how leftovers (orphans, daemons, fork bombs) are wiped after a run.

Why user output cannot forge our framing: the user's program writes into pipes that this
process reads and frames; the container's stdout (the attach stream) is held only by this
process, which marks itself non-dumpable so that ``/proc/1/fd/1`` cannot be opened by the
(same-uid) user code. Only this process writes frames.

Wire format, both directions: one byte ``kind``, a big-endian u32 ``length``, ``payload``.

host → agent:  J job (JSON)   I stdin bytes   C close stdin   K kill the running program
agent → host:  R ready (JSON) O stdout bytes  E stderr bytes  X run finished (JSON)
               D reply (JSON header, then raw data after a NUL)  Z agent error (JSON)
"""

from __future__ import annotations

import base64
import gc
import json
import os
import resource  # at module level: a forked run would otherwise import it each time
import select
import selectors
import signal
import stat
import struct
import sys
import threading  # noqa: F401 - preloaded: the inline runner's shutdown uses it (~1 ms)
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # importing typing costs ~3 ms of every sandbox's start; annotations only
    from typing import Any

HEADER = struct.Struct(">BI")
MAX_FRAME = 256 * 1024 * 1024
CHUNK = 65536
WORKDIR = "/work"

# host → agent
JOB, STDIN, CLOSE_STDIN, KILL = b"J", b"I", b"C", b"K"
# agent → host
READY, STDOUT, STDERR, EXIT, REPLY, FAULT = b"R", b"O", b"E", b"X", b"D", b"Z"


def pack(kind: bytes, payload: bytes = b"") -> bytes:
    """One frame: kind byte, u32 length, payload."""
    return HEADER.pack(kind[0], len(payload)) + payload


class FrameReader:
    """Incremental frame parser: feed bytes, take complete ``(kind, payload)`` frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self._buf += data
        frames: list[tuple[bytes, bytes]] = []
        while len(self._buf) >= HEADER.size:
            kind, length = HEADER.unpack_from(self._buf)
            if length > MAX_FRAME:
                raise ValueError(f"frame of {length} bytes exceeds the protocol maximum")
            end = HEADER.size + length
            if len(self._buf) < end:
                break
            frames.append((bytes((kind,)), bytes(self._buf[HEADER.size : end])))
            del self._buf[:end]
        return frames

    @property
    def pending(self) -> int:
        return len(self._buf)


# --------------------------------------------------------------------------- agent side


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
            continue
        view = view[n:]


def _send(kind: bytes, payload: bytes = b"") -> None:
    _write_all(1, pack(kind, payload))


def _send_json(kind: bytes, obj: object) -> None:
    _send(kind, json.dumps(obj).encode())


def _reply(header: dict[str, object], data: bytes = b"") -> None:
    _send(REPLY, json.dumps(header).encode() + b"\0" + data)


def _make_undumpable() -> None:
    """Keep same-uid user code out of /proc/1 (fds, memory): PR_SET_DUMPABLE = 0."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(4, 0, 0, 0, 0)
    except Exception:  # noqa: BLE001 - gVisor or exotic libc: isolation still holds by uid
        pass


def _toolchain() -> str | None:
    """The toolchain's own version line, recorded in the image when it was built."""
    try:
        with open("/opt/sandboxkit/version", errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return None
    return lines[0][:200] if lines else None


def _oom_kills() -> int:
    """OOM kills counted by this container's memory cgroup (v1 or v2)."""
    for path, key in (
        ("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill"),
        ("/sys/fs/cgroup/memory.events", "oom_kill"),
    ):
        try:
            with open(path) as f:
                for line in f:
                    name, _, value = line.partition(" ")
                    if name == key:
                        return int(value)
        except OSError:
            continue
    return 0


def _safe_path(rel: str) -> str:
    if not rel or "\0" in rel or rel.startswith("/"):
        raise ValueError(f"invalid path {rel!r}")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise ValueError(f"path {rel!r} escapes the workdir")
    return os.path.join(WORKDIR, *parts)


def _open_beneath(rel: str, flags: int, mode: int = 0o644, replace: bool = False) -> int:
    """Open a workdir path without following any symlink on the way (no escape)."""
    path = _safe_path(rel)
    parts = os.path.relpath(path, WORKDIR).split("/")
    dirfd = os.open(WORKDIR, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            if flags & os.O_CREAT:
                try:
                    os.mkdir(part, 0o755, dir_fd=dirfd)
                except FileExistsError:
                    pass
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dirfd)
            os.close(dirfd)
            dirfd = nxt
        if replace:
            # a run's own files: a symlink, FIFO, device or directory the user's code left
            # where they go is replaced, never followed or opened
            try:
                st = os.lstat(parts[-1], dir_fd=dirfd)
                if stat.S_ISDIR(st.st_mode):
                    import shutil

                    # fd-based, no symlink followed (dir_fd: Python 3.11, as in every image)
                    shutil.rmtree(parts[-1], dir_fd=dirfd)  # type: ignore[call-arg]
                elif not stat.S_ISREG(st.st_mode):
                    os.unlink(parts[-1], dir_fd=dirfd)
            except FileNotFoundError:
                pass
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_NONBLOCK, mode, dir_fd=dirfd)
    finally:
        os.close(dirfd)


def _write_file(rel: str, data: bytes, mode: int = 0o644, replace: bool = False) -> None:
    fd = _open_beneath(rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode, replace)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{rel!r} is not a regular file")
        _write_all(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _read_file(rel: str, max_bytes: int) -> bytes:
    fd = _open_beneath(rel, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{rel!r} is not a regular file")
        if st.st_size > max_bytes:
            raise ValueError(f"{rel!r} is {st.st_size} bytes, over the {max_bytes}-byte cap")
        chunks = []
        total = 0
        while True:
            chunk = os.read(fd, CHUNK)
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:
                raise ValueError(f"{rel!r} grew past the {max_bytes}-byte cap")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _list_files(max_entries: int) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = []
    for root, dirs, files in os.walk(WORKDIR, followlinks=False):
        for name in sorted(dirs) + sorted(files):
            full = os.path.join(root, name)
            try:
                st = os.lstat(full)
            except OSError:
                continue
            kind = (
                "dir"
                if stat.S_ISDIR(st.st_mode)
                else "file"
                if stat.S_ISREG(st.st_mode)
                else "symlink"
                if stat.S_ISLNK(st.st_mode)
                else "other"
            )
            entries.append(
                {"path": os.path.relpath(full, WORKDIR), "type": kind, "size": st.st_size}
            )
            if len(entries) >= max_entries:
                return entries
    return entries


class _Child:
    """The program of one run and the pipes the agent reads it through."""

    def __init__(self, job: dict[str, object]) -> None:
        self.job = job
        self.pid = 0
        self.status: int | None = None
        self.rusage: object = None
        self.stdin_fd: int | None = None
        self.out_fds: dict[int, bytes] = {}


# signals the agent ignores (all that can be, but SIGCHLD, which it handles)
_SHIELDED = tuple(
    s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD)
)


def _child_setup(job: dict[str, Any], fds: tuple[int, int, int]) -> None:
    """In the forked child: limits, stdio, session; then exec or run preloaded Python."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, *_SHIELDED):
        try:
            # as a fresh Python would have them: SIGPIPE and SIGXFSZ ignored (exec resets)
            keep = sig in (signal.SIGPIPE, signal.SIGXFSZ)
            signal.signal(sig, signal.SIG_IGN if keep else signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    os.setsid()
    for fd_target, fd_src in enumerate(fds):
        os.dup2(fd_src, fd_target)
    if job.get("kernel_socket") is not None:
        os.dup2(int(job["kernel_socket"]), 3)
        job = {**job, "kernel_socket": 3}
        os.closerange(4, 65536)
    else:
        os.closerange(3, 65536)
    limits = job.get("rlimits", {})
    for name, value in limits.items():
        res = getattr(resource, "RLIMIT_" + name.upper())
        try:
            resource.setrlimit(res, (value, value))
        except (ValueError, OSError):
            _soft, hard = resource.getrlimit(res)
            resource.setrlimit(res, (min(value, hard) if hard >= 0 else value, hard))
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass
    os.chdir(job.get("cwd") or WORKDIR)
    env = {str(k): str(v) for k, v in (job.get("env") or {}).items()}
    argv = [str(a) for a in job["argv"]]
    if job.get("kernel_socket") is not None:
        _kernel_loop(int(job["kernel_socket"]), env)
    if job.get("python_inline"):
        _run_python_inline(argv, env)
    # like subprocess's restore_signals: an exec'd program gets the default actions Python
    # ignores (a C program writing to a closed pipe dies of SIGPIPE; past RLIMIT_FSIZE, SIGXFSZ)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        os.write(2, f"sandboxkit: cannot start {argv[0]!r}: {exc.strerror}\n".encode())
        os._exit(127)


def _run_python_inline(argv: list[str], env: dict[str, str]) -> None:
    """Run a Python file in this already-loaded interpreter, as ``python3 FILE`` would."""
    import io
    import types

    os.environ.clear()
    os.environ.update(env)
    script = argv[1]
    sys.argv = argv[1:]
    sys.path[0:0] = [os.path.dirname(os.path.abspath(script))]
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(  # type: ignore[misc]
        io.open(0, "rb", closefd=False), encoding="utf-8"
    )
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(  # type: ignore[misc]
        io.open(1, "wb", closefd=False), encoding="utf-8", errors="strict"
    )
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(  # type: ignore[misc]
        io.open(2, "wb", closefd=False),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )
    main = types.ModuleType("__main__")
    main.__file__ = os.path.abspath(script)
    main.__builtins__ = __builtins__  # type: ignore[attr-defined]
    sys.modules["__main__"] = main
    code = 0
    try:
        with open(script, "rb") as f:
            source = f.read()
        # dont_inherit: the agent's own `from __future__` must not change the user's code
        code_obj = compile(source, script, "exec", dont_inherit=True)
        exec(code_obj, main.__dict__)  # noqa: S102 - that is the job
    except SystemExit as exc:
        c = exc.code
        if c is None:
            code = 0
        elif isinstance(c, int):
            code = c & 0xFF
        else:
            print(c, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - report it exactly as the interpreter would
        _report_exception()
        code = 1
    try:
        import threading

        threading._shutdown()  # type: ignore[attr-defined]  # wait for non-daemon threads
    except Exception:  # noqa: BLE001
        pass
    for stream in (sys.stdout, sys.stderr):
        # as the interpreter's own exit: closed streams are skipped, and stdout that
        # cannot be flushed (a closed pipe) makes the exit status 120
        try:
            if stream is not None and not stream.closed:
                stream.flush()
        except BaseException:  # noqa: BLE001
            if stream is sys.stdout:
                code = code or 120
    os._exit(code)


def _report_exception() -> None:
    """Print the current exception as ``python3 main.py`` would: without the agent's frame."""
    etype, value, tb = sys.exc_info()
    if etype is None:
        return
    user_tb = tb.tb_next if tb is not None else None
    if value is not None:
        value.__traceback__ = user_tb
    if value is not None:
        sys.excepthook(etype, value, user_tb)


def _fresh_stdio() -> None:
    """New sys.std* objects on descriptors 0-2 (which change from run to run)."""
    import io

    sys.stdin = io.TextIOWrapper(io.open(0, "rb", closefd=False), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(io.open(1, "wb", closefd=False), encoding="utf-8")
    sys.stderr = io.TextIOWrapper(
        io.open(2, "wb", closefd=False),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr  # type: ignore[misc]


def _kernel_loop(sock_fd: int, env: dict[str, str]) -> None:
    """A Python kernel kept between session runs: one namespace, one cell per message.

    Each cell arrives as ``{"path": FILE}`` with three descriptors (stdin, stdout, stderr
    pipes of that run) passed over a Unix socket; when the cell ends the kernel lets go of
    them (so the agent sees end-of-file) and answers with the cell's exit code. A value of
    the cell's last expression is printed, as in a notebook or a REPL.
    """
    import ast
    import socket
    import types

    os.environ.clear()
    os.environ.update(env)
    sock = socket.socket(fileno=sock_fd)
    main = types.ModuleType("__main__")
    main.__builtins__ = __builtins__  # type: ignore[attr-defined]
    sys.modules["__main__"] = main
    sys.path[0:0] = [WORKDIR]
    while True:
        msg, fds, _, _ = socket.recv_fds(sock, 65536, 3)
        if not msg or len(fds) != 3:
            os._exit(0)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        _fresh_stdio()
        code = 0
        try:
            path = json.loads(msg)["path"]
            with open(path, "rb") as f:
                tree = ast.parse(f.read(), path)
            last = tree.body[-1] if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            if last is not None:
                tree.body.pop()
            cell = compile(tree, path, "exec", dont_inherit=True)
            exec(cell, main.__dict__)  # noqa: S102 - that is the job
            if last is not None:
                value = eval(  # noqa: S307 - the user's own expression
                    compile(ast.Expression(last.value), path, "eval", dont_inherit=True),
                    main.__dict__,
                )
                if value is not None:
                    print(repr(value))
        except SystemExit as exc:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except BaseException:  # noqa: BLE001
                    pass
            c = exc.code
            os._exit(c & 0xFF if isinstance(c, int) else (0 if c is None else 1))
        except BaseException:  # noqa: BLE001 - reported as the interpreter would
            _report_exception()
            code = 1
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001
                pass
        null = os.open("/dev/null", os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(null, target)
        os.close(null)
        sock.send(json.dumps({"exit_code": code}).encode())


def _proc_hwm_kb(pid: int) -> int | None:
    """Peak resident memory of a live process, in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a live process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class Agent:
    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.reader = FrameReader()
        self.jobs: list[dict[str, Any]] = []
        self.stdin_eof = False
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w)
        os.set_blocking(0, False)
        self.sel.register(0, selectors.EVENT_READ, "host")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.child: _Child | None = None
        self.pending_stdin: list[bytes] = []
        self.close_stdin_after = False
        self.kill_requested = False
        self.exit_sent = False
        self.kernel_pid = 0
        self.kernel_sock: object = None

    # ---- host input
    def _pump_host(self) -> None:
        try:
            data = os.read(0, CHUNK)
        except BlockingIOError:
            return
        if not data:
            self.stdin_eof = True
            self.sel.unregister(0)
            return
        for kind, payload in self.reader.feed(data):
            if kind == JOB:
                self.jobs.append(json.loads(payload))
            elif self.jobs:
                # input that arrived together with a job not started yet belongs to it
                job = self.jobs[-1]
                if kind == STDIN:
                    job.setdefault("_stdin_frames", []).append(payload)
                elif kind == CLOSE_STDIN:
                    job["_close_stdin"] = True
                elif kind == KILL:
                    job["_kill"] = True
            elif kind == STDIN:
                self.pending_stdin.append(payload)
            elif kind == CLOSE_STDIN:
                self.close_stdin_after = True
            elif kind == KILL:
                self.kill_requested = True

    def _wait_host(self, timeout: float | None) -> None:
        for key, _ in self.sel.select(timeout):
            if key.data == "host":
                self._pump_host()
            elif key.data == "wake":
                try:
                    while os.read(self.wake_r, 512):
                        pass
                except BlockingIOError:
                    pass

    def serve(self) -> None:
        _send_json(READY, {"python": sys.version.split()[0], "toolchain": _toolchain()})
        while True:
            while not self.jobs and not self.stdin_eof:
                self._wait_host(None)
                self._reap_orphans()
            if not self.jobs:
                self._kill_all()
                return
            job = self.jobs.pop(0)
            try:
                self._dispatch(job)
            except Exception as exc:  # noqa: BLE001 - report, never die
                _send_json(FAULT, {"error": f"{type(exc).__name__}: {exc}"})

    def _dispatch(self, job: dict[str, Any]) -> None:
        op = job.get("op")
        if op == "run":
            self.exit_sent = False
            try:
                self._run(job)
            except Exception as exc:  # noqa: BLE001 - the run ends with a status, not a fault
                self._abort_run(f"{type(exc).__name__}: {exc}")
        elif op == "write":
            try:
                _write_file(job["path"], base64.b64decode(job["data"]), int(job.get("mode", 0o644)))
                _reply({"ok": True})
            except (OSError, ValueError) as exc:
                _reply({"ok": False, "error": str(exc)})
        elif op == "read":
            try:
                data = _read_file(job["path"], int(job["max_bytes"]))
                _reply({"ok": True}, data)
            except (OSError, ValueError) as exc:
                _reply({"ok": False, "error": str(exc)})
        elif op == "list":
            _reply({"ok": True, "entries": _list_files(int(job.get("max_entries", 10000)))})
        elif op == "cleanup":
            self._kill_all()
            self._forget_kernel()
            _reply({"ok": True})
        else:
            _reply({"ok": False, "error": f"unknown op {op!r}"})

    def _abort_run(self, why: str) -> None:
        """The run could not be carried out (its files could not be placed, descriptors
        ran out after the user lowered our limits...): stop what it started, release its
        pipes and still end it with one EXIT frame, so the host reports a status."""
        self._kill_others(spare=self.kernel_pid)
        for key in list(self.sel.get_map().values()):
            if key.data in ("out", "in", "kernel"):
                self.sel.unregister(key.fileobj)
                if key.data != "kernel":
                    try:
                        os.close(key.fd)
                    except OSError:
                        pass
        if self.exit_sent:
            os.write(2, f"sandboxkit agent: after a run: {why}\n".encode())
            return
        _send(STDERR, f"sandboxkit: the run could not be carried out: {why}\n".encode())
        _send_json(EXIT, {"exit_code": None, "signal": None, "reason": "setup", "wall": 0.0})
        self.exit_sent = True

    def _reap_orphans(self) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def _kill_all(self) -> None:
        """Kill every process but this one (PID 1 may signal them all), then reap."""
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                return
            except InterruptedError:
                continue

    def _run(self, job: dict[str, Any]) -> None:
        files = job.get("files") or {}
        for rel, b64 in files.items():
            mode = 0o755 if rel in job.get("executable", []) else 0o644
            _write_file(rel, base64.b64decode(b64), mode, replace=True)
        stdin_data = base64.b64decode(job["stdin"]) if job.get("stdin") is not None else b""
        interactive = bool(job.get("interactive"))
        limit_out = int(job.get("output_bytes", 1_000_000))
        flood = int(job.get("flood_bytes", limit_out * 4 + (1 << 20)))
        wall = float(job.get("time", 10.0))
        oom_before = _oom_kills()

        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self.kill_requested = bool(job.get("_kill"))
        self.pending_stdin = ([stdin_data] if stdin_data else []) + job.get("_stdin_frames", [])
        self.close_stdin_after = not interactive or bool(job.get("_close_stdin"))
        started = time.monotonic()
        kernel = bool(job.get("kernel"))
        cpu_before = 0.0
        if kernel:
            pid = self._kernel_cell(job, (in_r, out_w, err_w))
            cpu_before = _proc_cpu(pid)
        else:
            # this long-lived process's objects go to gc's permanent generation: a
            # collection in the child would otherwise touch (and copy) all their pages
            gc.freeze()
            pid = os.fork()
            if pid == 0:  # child
                try:
                    _child_setup(job, (in_r, out_w, err_w))
                finally:
                    os._exit(126)
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        for fd in (in_w, out_r, err_r):
            os.set_blocking(fd, False)
        counts = {out_r: 0, err_r: 0}
        kinds = {out_r: STDOUT, err_r: STDERR}
        truncated = {out_r: False, err_r: False}
        open_out = {out_r, err_r}
        for fd in open_out:
            self.sel.register(fd, selectors.EVENT_READ, "out")
        stdin_fd: int | None = in_w
        stdin_registered = False
        status: int | None = None
        rusage = None
        reason = None  # "timeout" | "output_limit" | "killed"
        exited_at: float | None = None
        keep = bool(job.get("keep_processes"))

        def close_stdin() -> None:
            nonlocal stdin_fd, stdin_registered
            if stdin_fd is not None:
                if stdin_registered:
                    self.sel.unregister(stdin_fd)
                    stdin_registered = False
                os.close(stdin_fd)
                stdin_fd = None

        while True:
            # feed the program's stdin from what the host sent
            if stdin_fd is not None:
                if self.pending_stdin and not stdin_registered:
                    self.sel.register(stdin_fd, selectors.EVENT_WRITE, "in")
                    stdin_registered = True
                elif not self.pending_stdin and self.close_stdin_after:
                    close_stdin()
            now = time.monotonic()
            if status is None and reason is None and now - started >= wall:
                reason = "timeout"
                self._kill_all_but_pipes()
            if self.kill_requested and status is None and reason is None:
                reason = "killed"
                self._kill_all_but_pipes()
            if status is not None and exited_at is None:
                exited_at = now
                close_stdin()
                if not keep:
                    # leftovers (daemons, a background writer holding stdout) end with the run
                    self._kill_others(spare=self.kernel_pid)
            if exited_at is not None and (not open_out or (keep and now - exited_at > 0.05)):
                break
            if exited_at is not None and now - exited_at > 2.0:
                break  # a pipe held open by something we cannot kill: do not hang
            timeout = 0.05 if status is not None else max(0.0, wall - (now - started))
            for key, _events in self.sel.select(timeout):
                tag = key.data
                if tag == "host":
                    self._pump_host()
                elif tag == "wake":
                    try:
                        while os.read(self.wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                elif tag == "in" and stdin_fd is not None:
                    try:
                        chunk = self.pending_stdin[0]
                        n = os.write(stdin_fd, chunk)
                        if n < len(chunk):
                            self.pending_stdin[0] = chunk[n:]
                        else:
                            self.pending_stdin.pop(0)
                        if not self.pending_stdin:
                            self.sel.unregister(stdin_fd)
                            stdin_registered = False
                    except BlockingIOError:
                        pass
                    except (BrokenPipeError, OSError):
                        self.pending_stdin.clear()
                        close_stdin()
                elif tag == "kernel":
                    try:
                        answer = self.kernel_sock.recv(4096)  # type: ignore[attr-defined]
                    except OSError:
                        answer = b""
                    if answer and status is None:
                        try:  # the kernel is user code: its answer is not trusted
                            status = (int(json.loads(answer)["exit_code"]) & 0xFF) << 8
                        except (ValueError, KeyError, TypeError):
                            os.kill(pid, signal.SIGKILL)  # a broken kernel: restart it
                    elif not answer:
                        self.sel.unregister(key.fd)
                elif tag == "out":
                    fd = key.fd
                    try:
                        data = os.read(fd, CHUNK)
                    except BlockingIOError:
                        continue
                    if not data:
                        self.sel.unregister(fd)
                        os.close(fd)
                        open_out.discard(fd)
                        continue
                    before = counts[fd]
                    counts[fd] += len(data)
                    if before < limit_out:
                        keep_n = min(len(data), limit_out - before)
                        _send(kinds[fd], data[:keep_n])
                        if keep_n < len(data):
                            truncated[fd] = True
                    else:
                        truncated[fd] = True
                    if counts[fd] > flood and reason is None and status is None:
                        reason = "output_limit"
                        self._kill_all_but_pipes()
            # reap everything that ended; keep the main program's status and usage
            while True:
                try:
                    wpid, wstatus, ru = os.wait4(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if wpid == 0:
                    break
                if wpid == pid:
                    status, rusage = wstatus, ru
                if wpid == self.kernel_pid:
                    self._forget_kernel()

        close_stdin()
        for fd in list(open_out):
            self.sel.unregister(fd)
            os.close(fd)
        max_rss = rusage.ru_maxrss if rusage is not None else None
        if kernel and self.kernel_pid:
            self.sel.unregister(self.kernel_sock)  # type: ignore[arg-type]
            rusage_cpu: float | None = _proc_cpu(pid) - cpu_before
            max_rss = _proc_hwm_kb(pid)
        else:
            rusage_cpu = (rusage.ru_utime + rusage.ru_stime) if rusage is not None else None
        wall_time = (exited_at or time.monotonic()) - started
        exit_code = signum = None
        if status is not None:
            if os.WIFSIGNALED(status):
                signum = os.WTERMSIG(status)
            else:
                exit_code = os.waitstatus_to_exitcode(status)
        cpu = rusage_cpu
        cpu_limit = (job.get("rlimits") or {}).get("cpu")
        if (
            reason is None
            and signum in (signal.SIGXCPU, signal.SIGKILL)
            and cpu_limit
            and cpu is not None
            and cpu >= cpu_limit - 0.05
        ):
            reason = "cpu_timeout"
        report = {
            "exit_code": exit_code,
            "signal": signum,
            "reason": reason,
            "wall": wall_time,
            "cpu": cpu,
            "max_rss_kb": max_rss,
            "oom_kills": _oom_kills() - oom_before,
            "truncated_stdout": truncated[out_r],
            "truncated_stderr": truncated[err_r],
        }
        _send_json(EXIT, report)
        self.exit_sent = True

    def _kill_all_but_pipes(self) -> None:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _kill_others(self, spare: int) -> None:
        """Kill every process but this one and ``spare`` (the session's kernel)."""
        if not spare:
            self._kill_all_but_pipes()
            return
        try:
            pids = [int(e) for e in os.listdir("/proc") if e.isdigit()]
        except OSError:
            return
        for p in pids:
            if p not in (1, spare):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass

    def _forget_kernel(self) -> None:
        if self.kernel_sock is not None:
            try:
                self.sel.unregister(self.kernel_sock)  # type: ignore[arg-type]
            except (KeyError, ValueError):
                pass
            self.kernel_sock.close()  # type: ignore[attr-defined]
        self.kernel_pid, self.kernel_sock = 0, None

    def _kernel_cell(self, job: dict[str, Any], fds: tuple[int, int, int]) -> int:
        """Hand one run to the session's Python kernel, starting it if needed."""
        import socket

        if not self.kernel_pid:
            parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            limits = dict(job.get("rlimits") or {})
            limits["cpu"] = max(int(limits.get("cpu", 0)), 3600)  # cumulative over cells
            pid = os.fork()
            if pid == 0:
                try:
                    parent.close()
                    _child_setup({**job, "rlimits": limits, "kernel_socket": child.fileno()}, fds)
                finally:
                    os._exit(126)
            child.close()
            self.kernel_pid, self.kernel_sock = pid, parent
        self.sel.register(self.kernel_sock, selectors.EVENT_READ, "kernel")  # type: ignore[arg-type]
        path = str(job["argv"][-1])
        socket.send_fds(self.kernel_sock, [json.dumps({"path": path}).encode()], list(fds))  # type: ignore[arg-type]
        return self.kernel_pid


def main() -> None:
    if os.getpid() != 1:
        # kill(-1) from anywhere but a container's PID 1 would hit the whole host
        sys.exit("sandboxkit agent: refusing to run outside a container (must be PID 1)")
    _make_undumpable()
    # User code runs as the same uid and may signal PID 1. Linux drops signals PID 1 has
    # no handler for, but Python installs one for SIGINT, and gVisor does not protect an
    # init at all: ignore every signal that can be ignored (runs get the defaults back).
    for sig in _SHIELDED:
        try:
            signal.signal(sig, signal.SIG_IGN)
        except (OSError, ValueError):
            pass
    try:
        os.makedirs(WORKDIR, exist_ok=True)
    except OSError:
        pass
    Agent().serve()


if __name__ == "__main__":
    main()
