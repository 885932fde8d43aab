"""The real agent, no engine: started from the files an image gets, as PID 1 of a fresh
PID namespace (``unshare --pid``), driven through its stdin/stdout frames.

Why a namespace: as PID 1 the agent wipes leftovers with ``kill(-1, SIGKILL)``, which on
the host would reach every process of the machine. Inside a new PID namespace it reaches
that namespace alone; the agent also refuses to start, and to kill, unless it is PID 1.
The guard tests run first and themselves inside a namespace (with ``sh`` as its PID 1),
so a broken guard could only ever hit that namespace.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from box_procs import PROCS

from sandboxkit import _protocol as wire
from sandboxkit._images.dockerfile import agent_files

PY = sys.executable
RLIMITS = {"cpu": 10, "fsize": 64 << 20, "nofile": 256, "core": 0}


@functools.cache
def _unshare() -> list[str]:
    """The command prefix for a fresh PID namespace (root, or a user namespace)."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux)")
    for extra in ([], ["--user", "--map-root-user"]):
        cmd = ["unshare", *extra, "--pid", "--fork", "--kill-child", "--mount-proc"]
        if subprocess.run([*cmd, "true"], capture_output=True).returncode == 0:
            return cmd
    pytest.skip("cannot make a PID namespace here (unshare --pid failed)")


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The agent's files as an image has them under /opt/sandboxkit."""
    root = tmp_path_factory.mktemp("agent")
    for name, data in agent_files().items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


class Agent:
    """One agent process, and the frames it sent. ``channel``: it is given a socket to
    connect to (as a sandbox on this machine is, see sandboxkit/_channel.py) and frames
    go over that; stdin stays open beside it."""

    def __init__(self, layout: Path, workdir: Path, *, channel: bool = False) -> None:
        self.workdir = workdir
        self.stderr = workdir.parent / "agent-stderr"
        argv = [*_unshare(), PY, "-I", str(layout / "agent.py"), "--workdir", str(workdir)]
        listener = None
        if channel:
            path = str(workdir.parent / "channel.sock")
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(path)
            listener.listen(1)
            listener.settimeout(10)
            argv += ["--channel", path]
        with self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
            )
        assert self.proc.stdout is not None
        self.conn: socket.socket | None = None
        self.out_fd = self.proc.stdout.fileno()  # where frames come from
        if listener is not None:
            with listener:
                self.conn, _ = listener.accept()
            self.out_fd = self.conn.fileno()
        self.reader = wire.FrameReader()
        self.frames: list[tuple[bytes, bytes]] = []

    def send(self, kind: bytes, payload: bytes = b"") -> None:
        if self.conn is not None:
            self.conn.sendall(wire.pack(kind, payload))
            return
        assert self.proc.stdin is not None
        self.proc.stdin.write(wire.pack(kind, payload))
        self.proc.stdin.flush()

    def job(self, job: dict[str, Any]) -> None:
        self.send(wire.JOB, json.dumps(job).encode())

    def recv(self, timeout: float = 10.0) -> tuple[bytes, bytes]:
        fd = self.out_fd
        deadline = time.monotonic() + timeout
        while not self.frames:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"no frame from the agent within {timeout}s")
            data = os.read(fd, 65536)
            if not data:
                raise EOFError(f"the agent ended: {self.stderr.read_text()!r}")
            self.frames += self.reader.feed(data)
        return self.frames.pop(0)

    def until(self, *kinds: bytes, timeout: float = 10.0) -> list[tuple[bytes, bytes]]:
        got = [self.recv(timeout)]
        while got[-1][0] not in kinds:
            got.append(self.recv(timeout))
        return got

    def run(self, argv: list[str], **job: Any) -> tuple[bytes, bytes, dict[str, Any]]:
        """Send a run job; its stdout, stderr and exit report."""
        self.job(run_job(argv, **job))
        return self.outcome()

    def stdout_until(self, expected: bytes) -> bool:
        """Read STDOUT frames until they add up to ``expected`` (a pipe may merge writes)."""
        got = b""
        while len(got) < len(expected):
            kind, payload = self.recv()
            assert kind == wire.STDOUT, (kind, payload)
            got += payload
        return got == expected

    def outcome(self) -> tuple[bytes, bytes, dict[str, Any]]:
        frames = self.until(wire.EXIT, wire.FAULT)
        assert frames[-1][0] == wire.EXIT, frames[-1]
        out = b"".join(p for k, p in frames if k == wire.STDOUT)
        err = b"".join(p for k, p in frames if k == wire.STDERR)
        return out, err, json.loads(frames[-1][1])

    def call(self, job: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        """A file job; the reply's header and data."""
        self.job(job)
        kind, payload = self.recv()
        assert kind == wire.REPLY, (kind, payload)
        header, _, data = payload.partition(b"\0")
        return json.loads(header), data

    def childless(self, timeout: float = 5.0) -> bool:
        """Whether the agent comes to have no child process (all ended and reaped) but
        the spare it forks ahead for the next run and its zygote."""
        deadline = time.monotonic() + timeout
        (agent,) = _children(self.proc.pid)  # unshare's one child: the agent
        while [p for p in _children(agent) if p not in _spares(agent)[:1] + _zygotes(agent)]:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> int:
        """Hang up (the channel when there is one, else stdin); the agent's status."""
        assert self.proc.stdin is not None
        if self.conn is not None:
            self.conn.close()
        else:
            self.proc.stdin.close()
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # unshare --kill-child takes the namespace with it
            self.proc.wait()
            raise


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _copies(agent: int) -> list[int]:
    """The agent's children that run its interpreter, alive: its zygote (``agent/_zygote``)
    and the spare forked ahead for the next run (``agent/_spare``); a leftover of these
    tests is a shell or a sleep."""
    found = []
    for pid in _children(agent):
        try:
            same = (
                Path(f"/proc/{pid}/cmdline").read_bytes()
                == Path(f"/proc/{agent}/cmdline").read_bytes()
            )
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if same and state != "Z":
            found.append(pid)
    return found


def _is_zygote(pid: int) -> bool:
    """The zygote is the agent's first child, forked at its start: PID 2 of its namespace
    (on a host there is no launcher to come before it)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return status.split("NSpid:")[1].splitlines()[0].split()[-1] == "2"


def _zygotes(agent: int) -> list[int]:
    return [pid for pid in _copies(agent) if _is_zygote(pid)]


def _spares(agent: int) -> list[int]:
    """The agent's children that may be the spare it forks ahead for the next run (a
    spare may still be closing the agent's descriptors)."""
    return [pid for pid in _copies(agent) if not _is_zygote(pid)]


def run_job(argv: list[str], **job: Any) -> dict[str, Any]:
    files = {k: base64.b64encode(v).decode() for k, v in job.pop("files", {}).items()}
    stdin = job.pop("stdin", None)
    return {
        "op": "run",
        "argv": argv,
        "files": files,
        "stdin": None if stdin is None else base64.b64encode(stdin).decode(),
        "time": 5.0,
        "output_bytes": 1_000_000,
        "rlimits": RLIMITS,
        "env": {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        **job,
    }


def python(code: str, **job: Any) -> tuple[list[str], dict[str, Any]]:
    """argv and job keys for ``code`` run inline in the agent's pre-loaded interpreter."""
    files = {"main.py": code.encode(), **job.pop("files", {})}
    return ["python3", "main.py"], {"files": files, "python_inline": True, **job}


@pytest.fixture(params=["stdio", "channel"])
def agent(layout: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Agent]:
    """An agent talking over stdin/stdout, then one talking over a direct channel."""
    workdir = tmp_path / "work"
    a = Agent(layout, workdir, channel=request.param == "channel")
    kind, payload = a.recv()
    assert kind == wire.READY, (kind, payload)
    yield a
    assert a.close() == 0


# ---------------------------------------------------------------- the PID 1 guard first
def _in_namespace(script: str, layout: Path) -> subprocess.CompletedProcess[str]:
    """``script`` run by sh as PID 1 of a fresh namespace: the agent there is not PID 1."""
    return subprocess.run(
        [*_unshare(), "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PY": PY, "LAYOUT": str(layout)},
    )


def test_agent_refuses_to_start_unless_pid1(layout: Path, tmp_path: Path) -> None:
    r = _in_namespace(
        f'sleep 30 & "$PY" -I "$LAYOUT/agent.py" --workdir {tmp_path} </dev/null; '
        'echo "rc=$?"; kill -0 $! && echo neighbour-alive',
        layout,
    )
    assert "refusing to run outside a container" in r.stderr
    assert "rc=1" in r.stdout and "neighbour-alive" in r.stdout


@pytest.mark.parametrize("call", ["kill_all()", "kill_all((2,))", "kill_and_reap()"])
def test_kill_everything_refuses_unless_pid1(layout: Path, call: str) -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1] + '/lib')\n"
        f"from sandboxkit.agent import _procs\n_procs.{call}\nprint('went on')"
    )
    r = _in_namespace(
        f'sleep 30 & "$PY" -I -c "{code}" "$LAYOUT"; echo "rc=$?"; kill -0 $! && echo alive',
        layout,
    )
    assert "refusing kill(-1)" in r.stderr, r.stderr
    assert "rc=70" in r.stdout and "went on" not in r.stdout and "alive" in r.stdout


# ---------------------------------------------------------------- runs
def test_ready_frame_then_exit_at_eof(layout: Path, tmp_path: Path) -> None:
    a = Agent(layout, tmp_path / "work")
    kind, payload = a.recv()
    assert kind == wire.READY
    ready = json.loads(payload)
    assert ready["python"] == sys.version.split()[0] and ready["toolchain"] is None
    assert (tmp_path / "work").is_dir()  # the workdir is made
    assert a.close() == 0


def test_exec_run_stdout_and_exit_report(agent: Agent) -> None:
    out, err, report = agent.run(["/bin/echo", "hello", "world"])
    assert (out, err) == (b"hello world\n", b"")
    assert report["exit_code"] == 0 and report["signal"] is None and report["reason"] is None
    assert report["truncated_stdout"] is report["truncated_stderr"] is False
    assert 0 <= report["wall"] < 5 and report["cpu"] is not None and report["max_rss_kb"] > 0


def test_stderr_exit_code_env_and_cwd(agent: Agent) -> None:
    code = "import os, sys; print(os.getcwd(), os.environ['X']); sys.stderr.write('oops'); exit(3)"
    out, err, report = agent.run([PY, "-c", code], env={"X": "42"})
    assert out == f"{agent.workdir} 42\n".encode() and err == b"oops"
    assert report["exit_code"] == 3


def test_a_program_that_cannot_start(agent: Agent) -> None:
    _out, err, report = agent.run(["/no/such/program"])
    assert report["exit_code"] == 127 and b"cannot start '/no/such/program'" in err


def test_signal(agent: Agent) -> None:
    _out, _err, report = agent.run(["/bin/sh", "-c", "kill -SEGV $$"])
    assert (report["exit_code"], report["signal"]) == (None, 11)


def test_stdin_data_then_eof(agent: Agent) -> None:
    out, _err, report = agent.run(["/bin/cat"], stdin=b"line 1\nline 2\n")
    assert out == b"line 1\nline 2\n" and report["exit_code"] == 0
    out, _err, report = agent.run(["/bin/cat"])  # no stdin: end of file at once
    assert out == b"" and report["exit_code"] == 0


def test_interactive_stdin_frames(agent: Agent) -> None:
    agent.job(run_job(["/bin/cat"], interactive=True, stdin=b"first\n"))
    agent.send(wire.STDIN, b"second\n")
    assert agent.stdout_until(b"first\nsecond\n")
    agent.send(wire.STDIN, b"third\n")
    assert agent.stdout_until(b"third\n")  # the run goes on until stdin is closed
    agent.send(wire.CLOSE_STDIN)
    out, _err, report = agent.outcome()
    assert out == b"" and report["exit_code"] == 0


def test_wall_timeout(agent: Agent) -> None:
    t = time.monotonic()
    _out, _err, report = agent.run(["/bin/sleep", "30"], time=0.3)
    assert time.monotonic() - t < 3
    assert report["reason"] == "timeout" and report["signal"] == 9
    assert 0.3 <= report["wall"] < 2


def test_output_cap_keeps_the_first_bytes(agent: Agent) -> None:
    code = "import sys; sys.stdout.write('x' * 5000); sys.stderr.write('e' * 10)"
    out, err, report = agent.run([PY, "-c", code], output_bytes=1000)
    assert out == b"x" * 1000 and err == b"e" * 10
    assert report["truncated_stdout"] is True and report["truncated_stderr"] is False
    assert report["reason"] is None and report["exit_code"] == 0


def test_flood_is_killed(agent: Agent) -> None:
    out, _err, report = agent.run(["/usr/bin/yes"], output_bytes=1000)
    assert report["reason"] == "output_limit" and report["signal"] == 9
    assert len(out) == 1000 and report["truncated_stdout"] is True


def test_kill_frame(agent: Agent) -> None:
    agent.job(run_job(["/bin/sh", "-c", "echo started; exec sleep 30"], interactive=True))
    assert agent.recv() == (wire.STDOUT, b"started\n")
    agent.send(wire.KILL)
    _out, _err, report = agent.outcome()
    assert report["reason"] == "killed" and report["signal"] == 9


def test_frames_sent_behind_a_queued_job_belong_to_it(agent: Agent) -> None:
    agent.job(run_job(["/bin/sleep", "0.2"]))
    agent.job(run_job(["/bin/cat"], interactive=True))
    agent.send(wire.STDIN, b"for the second run\n")
    agent.send(wire.CLOSE_STDIN)
    assert agent.outcome()[2]["exit_code"] == 0
    out, _err, report = agent.outcome()
    assert out == b"for the second run\n" and report["exit_code"] == 0
    agent.job(run_job(["/bin/sleep", "30"]))
    agent.send(wire.KILL)  # a kill right behind its job is not lost
    assert agent.outcome()[2]["reason"] == "killed"


# prints whether the process whose pid is in ./pid has ended, waiting for a kill to land
ENDED = """\
import os, sys, time
def state(pid):
    try:
        return open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[0]
    except OSError:
        return 'gone'
pid = int(sys.argv[1]) if len(sys.argv) > 1 else int(open('pid').read())  # the daemon's
deadline = time.monotonic() + (5 if 'wait' in sys.argv else 0)
while state(pid) not in ('Z', 'gone') and time.monotonic() < deadline:
    time.sleep(0.01)
print('dead' if state(pid) in ('Z', 'gone') else 'alive')
"""


@pytest.mark.parametrize(
    "leftover",
    [
        "sleep 100 & echo $!",
        "sleep 100 >/dev/null 2>&1 &",  # killed after the run's pipes closed
        "sh -c 'while :; do echo bg; sleep 0.01; done' & echo started",
    ],
    ids=["holding-stdout", "detached", "writer-with-children"],
)
def test_leftovers_are_killed_and_reaped_after_a_run(agent: Agent, leftover: str) -> None:
    t = time.monotonic()
    agent.run(["/bin/sh", "-c", leftover])
    assert time.monotonic() - t < 2  # the leftover holding stdout does not hold the run
    assert agent.childless(timeout=0)  # gone (killed and reaped) when the run is reported


def _waiting_spare(agent: Agent) -> int:
    """The in-namespace pid of the child the agent forked ahead, once it waits for a job."""
    (pid1,) = _children(agent.proc.pid)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for pid in _spares(pid1):
            fds = sorted(int(n) for n in os.listdir(f"/proc/{pid}/fd"))
            if fds == [0, 1, 2, 3]:
                status = Path(f"/proc/{pid}/status").read_text()
                return int(status.split("NSpid:")[1].splitlines()[0].split()[-1])
        time.sleep(0.01)
    raise AssertionError("no spare child waits for the next run")


@pytest.mark.parametrize("inline", [True, False], ids=["python-inline", "exec"])
def test_a_run_is_the_child_forked_ahead_of_it(agent: Agent, inline: bool) -> None:
    for _ in range(2):  # the first run's spare was made before ready, the next after a run
        spare = _waiting_spare(agent)
        if inline:
            argv, job = python("import os; print(os.getpid())")
            out, err, report = agent.run(argv, **job)
        else:
            out, err, report = agent.run(["/bin/sh", "-c", "echo $$"])
        assert (err, report["exit_code"]) == (b"", 0)
        assert int(out) == spare


def test_without_its_zygote_the_agent_forks_the_spares(agent: Agent) -> None:
    """The zygote clones Python's spares; killed (it cannot be from inside a sandbox, see
    tests/test_zygote.py), the agent reaps it and forks them itself, run after run."""
    (pid1,) = _children(agent.proc.pid)
    argv, job = python("import os, sys; print(os.getppid(), 'selectors' in sys.modules)")
    assert agent.run(argv, **job)[0] == b"1 False\n"  # cloned: the zygote's few modules
    (zygote,) = _zygotes(pid1)
    os.kill(zygote, signal.SIGKILL)
    seen = [agent.run(argv, **job) for _ in range(3)]
    assert all((err, report["exit_code"]) == (b"", 0) for _, err, report in seen)
    # the first may be the spare cloned before the kill; the agent forks the next ones
    assert [out for out, _, _ in seen][1:] == [b"1 True\n"] * 2
    assert _zygotes(pid1) == [] and agent.childless()


@pytest.mark.parametrize("queued", ["job", "then"])
def test_a_waiting_run_s_child_is_forked_during_the_current_run(agent: Agent, queued: str) -> None:
    """A run queued behind the current one (a judge's next test, a compile step's run)
    finds its child forked while the current program ran (listed by it), and the end of
    the current run does not kill it: it becomes the next program."""
    listing = "sleep 0.3; ls /proc | grep -x '[0-9]*' | tr '\\n' ' '"
    second = run_job(["/bin/sh", "-c", "echo $$"])
    if queued == "then":
        agent.job(run_job(["/bin/sh", "-c", listing], then=second))
    else:
        agent.job(run_job(["/bin/sh", "-c", listing]))
        agent.job(second)
    seen, _err, report = agent.outcome()
    assert report["exit_code"] == 0
    out, err, report = agent.outcome()
    assert (err, report["exit_code"]) == (b"", 0)
    assert out.strip() in seen.split(), (out, seen)
    assert agent.childless()  # nothing of either run is left but the next spare


def test_a_forking_run_with_a_spare_beside_it_leaves_nothing_to_the_next(agent: Agent) -> None:
    """With a spare to leave alive the end-of-run kill goes pid by pid from a listing;
    processes forked meanwhile are killed in the rounds that follow, before the run
    behind it starts."""
    bomb = "for i in 1 2 3 4; do (while :; do (sleep 100 &) ; done) & done; wait"
    agent.job(run_job(["/bin/sh", "-c", bomb], time=0.5))
    argv, job = python(PROCS + "print(procs)")
    agent.job(run_job(argv, **job))
    assert agent.outcome()[2]["reason"] == "timeout"
    out, err, report = agent.outcome()
    assert (err, report["exit_code"]) == (b"", 0)
    # PID 1 and this program (and the agent's zygote, see box_procs): no sleeper, no shell
    assert len(json.loads(out)) == 2, out


def test_processes_ending_between_runs_are_reaped(agent: Agent) -> None:
    agent.run(["/bin/sh", "-c", "sleep 0.2 >/dev/null 2>&1 &"], keep_processes=True)
    assert agent.childless()  # it ends while the agent waits for the next job


def test_keep_processes_spares_leftovers(agent: Agent) -> None:
    daemon = ["/bin/sh", "-c", "sleep 100 >/dev/null 2>&1 & echo $! > pid"]
    assert agent.run(daemon, keep_processes=True)[2]["exit_code"] == 0
    argv, job = python(ENDED)
    assert agent.run(argv, keep_processes=True, **job)[0] == b"alive\n"  # pid from ./pid
    assert agent.run(["/bin/true"])[2]["exit_code"] == 0  # leftovers end with this run
    pid = (agent.workdir / "pid").read_text().strip()
    assert agent.run([*argv, pid, "wait"], **job)[0] == b"dead\n"


def test_run_files_replace_what_the_program_left(agent: Agent, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("untouched")
    (agent.workdir / "main.py").symlink_to(outside)
    (agent.workdir / "data").mkdir()
    argv, job = python("print(open('data').read())", files={"data": b"fresh"})
    out, err, _report = agent.run(argv, **job)
    assert out == b"fresh\n", err
    assert outside.read_text() == "untouched" and not (agent.workdir / "main.py").is_symlink()


def test_unplaceable_files_end_the_run_with_a_setup_status(agent: Agent) -> None:
    _out, err, report = agent.run(["/bin/true"], files={"../escape": b"x"})
    assert report["reason"] == "setup" and b"escapes the workdir" in err
    assert agent.run(["/bin/echo", "next"])[0] == b"next\n"  # the agent goes on


# ---------------------------------------------------------------- inline Python
PARITY = """\
import sys, os
print(repr(sys.argv))
print(sys.path[0])
print(any('sandboxkit' in p or p.endswith('/lib') for p in sys.path))
print(sorted(m for m in sys.modules if m.split('.')[0] == 'sandboxkit'))
print(__name__, __file__, type(__builtins__).__name__, __package__, __spec__)
print(os.environ.get('X'), sorted(os.environ) == ['LANG', 'PATH', 'X'])
def f(x: int): return x
print(f.__annotations__['x'] is int)
"""


def test_inline_python_sees_a_plain_interpreter(agent: Agent) -> None:
    argv, job = python(PARITY, env={"X": "1", "PATH": "/bin", "LANG": "C.UTF-8"})
    out, err, report = agent.run([*argv, "a", "b"], **job)
    assert report["exit_code"] == 0, err
    lines = out.decode().splitlines()
    assert lines[0] == "['main.py', 'a', 'b']"
    assert lines[1] == str(agent.workdir)
    assert lines[2:4] == ["False", "[]"]
    assert lines[4] == f"__main__ {agent.workdir}/main.py module None None"
    assert lines[5:7] == ["1 True", "True"]


def test_inline_python_errors_as_the_interpreter_reports_them(agent: Agent) -> None:
    argv, job = python("def f():\n    raise ValueError('bad')\nf()\n")
    _out, err, report = agent.run(argv, **job)
    assert report["exit_code"] == 1
    # the absolute path, as `python3 main.py` shows it (since 3.9)
    head = f'Traceback (most recent call last):\n  File "{agent.workdir}/main.py", line 3'
    assert err.decode().startswith(head)
    assert err.decode().endswith("ValueError: bad\n") and b"sandboxkit" not in err
    argv, job = python("import sys\nsys.exit('goodbye')")
    _out, err, report = agent.run(argv, **job)
    assert (report["exit_code"], err) == (1, b"goodbye\n")
    argv, job = python("import sys\nsys.stdout.write('partial')\nsys.exit(300)")
    out, _err, report = agent.run(argv, **job)
    assert (out, report["exit_code"]) == (b"partial", 300 & 0xFF)


def test_session_kernel_keeps_state_between_cells(agent: Agent) -> None:
    argv, job = python("x = 6 * 7\nprint('set')", kernel=True)
    assert agent.run(argv, **job)[0] == b"set\n"
    argv, job = python("import sys\nx + 1", kernel=True)
    out, _err, report = agent.run(argv, **job)
    assert out == b"43\n" and report["exit_code"] == 0
    argv, job = python("raise KeyError(x)", kernel=True)
    _out, err, report = agent.run(argv, **job)
    assert report["exit_code"] == 1 and err.endswith(b"KeyError: 42\n")
    argv, job = python("import sys\nprint(sys.path[0], 'sandboxkit' in sys.modules)", kernel=True)
    assert agent.run(argv, **job)[0] == f"{agent.workdir} False\n".encode()


def test_system_exit_ends_the_cell_not_the_kernel(agent: Agent) -> None:
    argv, job = python("import os\nx = 1\nprint(os.getpid())", kernel=True)
    pid = agent.run(argv, **job)[0]
    for cell, status, err in [
        ("import sys\nx += 1\nsys.exit(0)\nx = 100", 0, b""),
        ("x += 1\nsys.exit(3)", 3, b""),
        ("x += 1\nexit()", 0, b""),
        ("x += 1\nsys.exit('bye')", 1, b"bye\n"),
    ]:
        argv, job = python(cell, kernel=True)
        _out, got_err, report = agent.run(argv, **job)
        assert (report["exit_code"], got_err) == (status, err), cell
        assert "state_lost" not in report
    argv, job = python("import os\nprint(os.getpid())\nx", kernel=True)
    out, _err, report = agent.run(argv, **job)
    assert out == pid + b"5\n" and "state_lost" not in report  # the same interpreter


def test_a_kernel_that_ends_says_its_state_was_lost_once(agent: Agent) -> None:
    argv, job = python("x = 1", kernel=True)
    assert "state_lost" not in agent.run(argv, **job)[2]  # nothing was lost: a first cell
    argv, job = python("import os\nprint('going', flush=True)\nos._exit(5)", kernel=True)
    out, _err, report = agent.run(argv, **job)
    assert (out, report["exit_code"], report.get("state_lost")) == (b"going\n", 5, True)
    argv, job = python("print('x' in globals())", kernel=True)
    out, _err, report = agent.run(argv, **job)
    assert out == b"False\n" and "state_lost" not in report  # said once, by the run above
    argv, job = python("y = 2\nwhile True: pass", kernel=True, time=0.5)
    _out, _err, report = agent.run(argv, **job)
    assert (report["reason"], report.get("state_lost")) == ("timeout", True)
    argv, job = python("print('y' in globals())", kernel=True)
    out, _err, report = agent.run(argv, **job)
    assert out == b"False\n" and "state_lost" not in report


def test_top_level_await_in_a_kernel_cell(agent: Agent) -> None:
    argv, job = python("import sys\nprint('asyncio' in sys.modules)", kernel=True)
    assert agent.run(argv, **job)[0] == b"False\n"  # a kernel that never awaits skips it
    cell = (
        "import asyncio\nev = asyncio.Event()\n"
        "async def waiter():\n    await ev.wait()\n    return 'woke'\n"
        "task = asyncio.create_task(waiter())\nx = 21\nawait asyncio.sleep(0)"
    )
    argv, job = python(cell, kernel=True)
    out, err, report = agent.run(argv, **job)
    assert (out, err, report["exit_code"]) == (b"", b"", 0)
    # the task left pending lives on the same loop into the next cell; awaited last value
    argv, job = python("ev.set()\nprint(await task)\nawait asyncio.sleep(0, x * 2)", kernel=True)
    out, err, report = agent.run(argv, **job)
    assert (out, err, report["exit_code"]) == (b"woke\n42\n", b"", 0)
    argv, job = python("async def f():\n    return 7\nasyncio.run(f())", kernel=True)
    assert agent.run(argv, **job)[0] == b"7\n"  # a cell with no await may run its own loop
    argv, job = python("await asyncio.sleep(0)\nraise ValueError('bad')", kernel=True)
    _out, err, report = agent.run(argv, **job)
    head = 'Traceback (most recent call last):\n  File "main.py", line 2, in <module>\n'
    assert report["exit_code"] == 1 and err.decode().startswith(head), err
    assert err.endswith(b"ValueError: bad\n") and b"asyncio" not in err
    argv, job = python("import sys\nawait asyncio.sleep(0)\nsys.exit(4)", kernel=True)
    assert agent.run(argv, **job)[2]["exit_code"] == 4
    argv, job = python("print(x)", kernel=True)
    out, _err, report = agent.run(argv, **job)
    assert out == b"21\n" and "state_lost" not in report


def test_a_kernel_cell_syntax_error_reads_as_the_interpreter_s(agent: Agent) -> None:
    argv, job = python("x = (", kernel=True)
    _out, err, report = agent.run(argv, **job)
    assert report["exit_code"] == 1
    assert err.decode().startswith('  File "main.py", line 1\n'), err
    assert err.decode().rstrip().splitlines()[-1].startswith("SyntaxError: ")


# ---------------------------------------------------------------- file jobs
def test_write_read_list(agent: Agent) -> None:
    data = bytes(range(256))
    b64 = base64.b64encode(data).decode()
    job = {"op": "write", "path": "pkg/sub/a.bin", "data": b64, "mode": 0o755}
    assert agent.call(job) == ({"ok": True}, b"")
    assert (agent.workdir / "pkg/sub/a.bin").stat().st_mode & 0o777 == 0o755
    assert agent.call({"op": "read", "path": "pkg/sub/a.bin", "max_bytes": 1000}) == (
        {"ok": True},
        data,
    )
    reply, _ = agent.call({"op": "read", "path": "pkg/sub/a.bin", "max_bytes": 10})
    assert not reply["ok"] and "cap" in reply["error"]
    reply, _ = agent.call({"op": "list"})
    assert [(e["path"], e["type"]) for e in reply["entries"]] == [
        ("pkg", "dir"),
        ("pkg/sub", "dir"),
        ("pkg/sub/a.bin", "file"),
    ]
    assert reply["entries"][2]["size"] == 256 and reply["entries"][2]["mode"] == 0o755
    reply, _ = agent.call({"op": "read", "path": "missing", "max_bytes": 10})
    assert not reply["ok"] and reply["reason"] == "not_found"


def test_file_jobs_never_leave_the_workdir(agent: Agent, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    (agent.workdir / "link").symlink_to(outside)
    (agent.workdir / "file-link").symlink_to(outside / "secret")
    b64 = base64.b64encode(b"x").decode()
    for path in ("../x", "/etc/passwd", "link/new", "file-link", "a/../../x"):
        reply, _ = agent.call({"op": "write", "path": path, "data": b64, "mode": 0o644})
        assert not reply["ok"], path
    for path in ("link/secret", "file-link", "../outside/secret"):
        reply, data = agent.call({"op": "read", "path": path, "max_bytes": 100})
        assert not reply["ok"] and data == b"", path
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    reply, _ = agent.call({"op": "list"})
    assert {e["path"]: e["type"] for e in reply["entries"]} == {
        "link": "symlink",
        "file-link": "symlink",
    }


def test_unknown_op_and_a_broken_job(agent: Agent) -> None:
    reply, _ = agent.call({"op": "format-disk"})
    assert reply == {"ok": False, "error": "unknown op 'format-disk'"}
    agent.job({"op": "read"})  # no path: the agent reports a fault and goes on
    kind, payload = agent.recv()
    assert kind == wire.FAULT and "KeyError" in json.loads(payload)["error"]
    assert agent.run(["/bin/echo", "still here"])[0] == b"still here\n"


def test_a_kernel_that_died_between_runs_is_started_anew(agent: Agent) -> None:
    (agent.workdir / "ended.py").write_text(ENDED)
    killer = (
        "import os, subprocess, sys\nx = 1\nsubprocess.Popen(['sh', '-c', "
        "f'sleep 0.1; kill -9 {os.getpid()}; {sys.executable} ended.py {os.getpid()} wait "
        "> killed'])\nprint(os.getpid())"
    )
    argv, job = python(killer, kernel=True, keep_processes=True)
    first = agent.run(argv, **job)[0]
    deadline = time.monotonic() + 10
    while b"dead" not in _read(agent.workdir / "killed") and time.monotonic() < deadline:
        time.sleep(0.02)  # the kernel is killed while no run is going on
    argv, job = python("import os\nprint(os.getpid(), 'x' in globals())", kernel=True)
    out, err, report = agent.run(argv, **job)
    assert report["exit_code"] == 0, err
    pid, had_x = out.split()
    assert pid != first.strip() and had_x == b"False"  # a fresh kernel, a fresh namespace
    assert report.get("state_lost") is True  # the first report since it ended says so
    out, err, report = agent.run(argv, **job)
    assert out.split()[0] == pid and "state_lost" not in report


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


# ---------------------------------------------------------------- the direct channel
def test_over_a_channel_stdout_stays_silent_and_stdin_eof_still_ends_it(
    layout: Path, tmp_path: Path
) -> None:
    a = Agent(layout, tmp_path / "work", channel=True)
    assert a.recv()[0] == wire.READY  # over the socket
    out, _err, report = a.run(["/bin/echo", "via the channel"])
    assert (out, report["exit_code"]) == (b"via the channel\n", 0)
    assert a.proc.stdin is not None
    a.proc.stdin.close()  # the attach stream's end: the host is gone
    assert a.proc.wait(10) == 0
    assert a.proc.stdout is not None and a.proc.stdout.read() == b""


def test_a_channel_nobody_listens_on_falls_back_to_stdio(layout: Path, tmp_path: Path) -> None:
    path = str(tmp_path / "dead.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()  # the file stays, nothing listens: connect is refused
    stderr = tmp_path / "stderr"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [
                *_unshare(),
                PY,
                "-I",
                str(layout / "agent.py"),
                "--workdir",
                str(tmp_path / "w"),
                "--channel",
                path,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    assert proc.stdout is not None and proc.stdin is not None
    head = proc.stdout.read(wire.HEADER.size)
    assert head[:1] == wire.READY
    proc.stdin.close()
    assert proc.wait(10) == 0
    assert "no direct channel" in stderr.read_text()


@pytest.mark.parametrize("inline", [True, False])
def test_a_program_holds_none_of_the_agents_descriptors(agent: Agent, inline: bool) -> None:
    code = "import os; print(sorted(int(f) for f in os.listdir('/proc/self/fd')))"
    if inline:
        argv, job = python(code)
    else:
        argv, job = ["python3", "-c", code], {}
    out, _err, report = agent.run(argv, **job)
    assert report["exit_code"] == 0
    assert out == b"[0, 1, 2, 3]\n"  # stdio and the listing's own descriptor


# ---------------------------------------------------------------- a step that carries its run
def test_a_step_that_ends_well_starts_its_then_run_at_once(agent: Agent) -> None:
    then = run_job(["/bin/sh", "-c", "cat; echo ran"], stdin=b"in\n")
    agent.job(run_job(["/bin/sh", "-c", "echo built"], then=then))
    out, _err, report = agent.outcome()
    assert (out, report["exit_code"], report["then_started"]) == (b"built\n", 0, True)
    out, _err, report = agent.outcome()  # the run's own frames, unasked
    assert (out, report["exit_code"]) == (b"in\nran\n", 0) and "then_started" not in report


@pytest.mark.parametrize("step", ["exit 1", "kill -9 $$"])
def test_a_step_that_fails_does_not_start_its_then_run(agent: Agent, step: str) -> None:
    then = run_job(["/bin/sh", "-c", "echo must not run"])
    agent.job(run_job(["/bin/sh", "-c", step], then=then))
    _out, _err, report = agent.outcome()
    assert report["then_started"] is False
    out, _err, report = agent.run(["/bin/echo", "next"])  # the next job is the next run
    assert out == b"next\n"


# ---------------------------------------------------------------- the whole box (issue 27)
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_absolute_paths_and_the_new_file_jobs(agent: Agent) -> None:
    """Absolute paths reach the box's filesystem (here: the test's own directory, the
    agent's FS_ROOT outside an image); every job says why it was refused."""
    root = str(agent.workdir.parent)
    ok = {"ok": True}
    write = {"op": "write", "path": f"{root}/abs/deep/x.txt", "data": _b64(b"hi"), "mode": 0o600}
    assert agent.call(write)[0] == ok
    assert (agent.workdir.parent / "abs/deep/x.txt").read_bytes() == b"hi"
    reply, _ = agent.call({"op": "stat", "path": f"{root}/abs/deep/x.txt"})
    (info,) = reply["entries"]
    assert info["path"] == f"{root}/abs/deep/x.txt" and info["mode"] == 0o600
    assert info["type"] == "file" and info["size"] == 2 and info["mtime"] > 0
    assert agent.call({"op": "mkdir", "path": f"{root}/abs/d1/d2"})[0] == ok
    reply, _ = agent.call({"op": "mkdir", "path": f"{root}/abs/d1", "parents": False})
    assert reply["reason"] == "exists"
    reply, _ = agent.call({"op": "list", "path": f"{root}/abs", "depth": 1})
    assert [e["path"] for e in reply["entries"]] == [f"{root}/abs/d1", f"{root}/abs/deep"]
    reply, _ = agent.call({"op": "list", "path": f"{root}/abs"})
    assert len(reply["entries"]) == 4
    # a rename across filesystems would copy; within one it moves
    move = {"op": "rename", "path": f"{root}/abs/deep", "dst": "moved"}
    assert agent.call(move)[0] == ok
    assert (agent.workdir / "moved/x.txt").read_bytes() == b"hi"
    again = {"op": "rename", "path": f"{root}/abs/d1", "dst": "moved"}
    assert agent.call(again)[0]["reason"] == "exists"
    assert agent.call({**again, "overwrite": True})[0]["reason"] == "exists"  # non-empty dir
    assert agent.call({"op": "remove", "path": f"{root}/abs"})[0] == ok
    assert not (agent.workdir.parent / "abs").exists()
    reasons = {
        "missing": agent.call({"op": "stat", "path": "nope"})[0]["reason"],
        "dir": agent.call({"op": "read", "path": "moved", "max_bytes": 9})[0]["reason"],
        "notdir": agent.call({"op": "list", "path": "moved/x.txt"})[0]["reason"],
        "under file": agent.call({**write, "path": "moved/x.txt/y"})[0]["reason"],
        "outside": agent.call({"op": "stat", "path": "/etc/passwd"})[0]["reason"],
        "dotdot": agent.call({"op": "stat", "path": f"{root}/../x"})[0]["reason"],
    }
    assert reasons == {
        "missing": "not_found",
        "dir": "is_directory",
        "notdir": "not_directory",
        "under file": "not_directory",
        "outside": "invalid_path",
        "dotdot": "invalid_path",
    }


def test_links_fifos_on_absolute_paths_are_refused(agent: Agent, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    (tmp_path / "dirlink").symlink_to(outside)
    os.mkfifo(tmp_path / "fifo")
    for path in (f"{tmp_path}/dirlink/secret", f"{tmp_path}/fifo"):
        reply, data = agent.call({"op": "read", "path": path, "max_bytes": 100})
        assert reply["reason"] == "invalid_path" and data == b"", path
        write = {"op": "write", "path": path, "data": _b64(b"x"), "mode": 0o644}
        assert agent.call(write)[0]["reason"] == "invalid_path", path
    reply, _ = agent.call({"op": "stat", "path": f"{tmp_path}/dirlink"})
    assert reply["entries"][0]["type"] == "symlink"
    assert reply["entries"][0]["target"] == str(outside)
    assert agent.call({"op": "remove", "path": f"{tmp_path}/dirlink"})[0] == {"ok": True}
    assert (outside / "secret").read_text() == "s"  # the link went, not what it named


def _read_all(agent: Agent, pid: int, until_done: bool = True) -> tuple[bytes, dict[str, Any]]:
    out, after = b"", 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        reply, data = agent.call({"op": "proc_read", "pid": pid, "after": after})
        out += data
        after = reply["next"]
        if not until_done or reply.get("done"):
            return out, reply
        time.sleep(0.02)
    raise AssertionError(f"process {pid} did not end: {out!r}")


def test_background_process_outlives_runs_and_takes_stdin(agent: Agent) -> None:
    script = "echo up; echo oops >&2; read line; echo got $line"
    reply, _ = agent.call(
        {"op": "proc_start", "argv": ["/bin/sh", "-c", script], "env": {}, "cwd": "/"}
    )
    pid = reply["pid"]
    # a run (and its clean-up of leftovers) between: the background process stays
    assert agent.run(["/bin/echo", "run"])[0] == b"run\n"
    listed = agent.call({"op": "proc_list"})[0]["processes"]
    assert any(p["pid"] == pid and p["background"] for p in listed)
    sent = agent.call({"op": "proc_write", "pid": pid, "data": _b64(b"ada\n"), "eof": True})
    assert sent[0] == {"ok": True, "written": 4}
    out, reply = _read_all(agent, pid)
    assert out.replace(b"oops\n", b"") == b"up\ngot ada\n" and b"oops" in out
    assert reply["exit_code"] == 0 and reply["running"] is False


def test_a_kill_reaches_the_whole_tree(agent: Agent) -> None:
    tree = "sleep 60 & sleep 60 & trap '' TERM; while :; do sleep 0.05; done"
    reply, _ = agent.call({"op": "proc_start", "argv": ["/bin/sh", "-c", tree], "env": {}})
    pid = reply["pid"]
    deadline = time.monotonic() + 5
    while len(agent.call({"op": "proc_signal", "pid": pid, "signal": 0})[0]["left"]) < 4:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    left = agent.call({"op": "proc_signal", "pid": pid, "signal": 15})[0]["left"]
    time.sleep(0.3)
    # the sleeps took SIGTERM; the shell ignores it and goes on: still there
    assert pid in agent.call({"op": "proc_signal", "pid": pid, "signal": 0})[0]["left"], left
    agent.call({"op": "proc_signal", "pid": pid, "signal": 9})
    _out, reply = _read_all(agent, pid)
    assert reply["signal"] == 9
    assert agent.call({"op": "proc_signal", "pid": 1, "signal": 9})[0]["reason"] == "not_found"


def test_a_terminal_is_a_pty_with_a_size(agent: Agent) -> None:
    job = {"op": "proc_start", "argv": ["/bin/sh"], "env": {}, "pty": {"cols": 91, "rows": 33}}
    pid = agent.call(job)[0]["pid"]
    agent.call({"op": "proc_write", "pid": pid, "data": _b64(b"stty size; tty\n")})
    out = b""
    deadline = time.monotonic() + 10
    while b"33 91" not in out or b"/dev/pts" not in out:
        assert time.monotonic() < deadline, out
        out += _read_all(agent, pid, until_done=False)[0]
        time.sleep(0.02)
    assert agent.call({"op": "proc_resize", "pid": pid, "cols": 120, "rows": 40})[0]["ok"]
    agent.call({"op": "proc_write", "pid": pid, "data": _b64(b"stty size; exit 3\n")})
    out, reply = _read_all(agent, pid)
    assert b"40 120" in out and reply["exit_code"] == 3
