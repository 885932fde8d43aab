"""The ``sandboxkit`` command as a user runs it: a fresh interpreter, real pipes, a real
engine. ``run``: compiler messages, piped stdin and ``-``, a clean exit every time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOISE = ("Traceback", "Task exception was never retrieved", "InvalidStateError", "Exception in")


def sandboxkit(
    *args: str, stdin: bytes | None = b"", timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``sandboxkit ARGS`` (this tree's), ``stdin`` piped in (None: a pipe left open)."""
    cmd = [sys.executable, "-m", "sandboxkit", *args]
    if stdin is None:
        with subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as proc:
            try:
                # stdin stays open: the command must not wait for its end
                code = proc.wait(timeout)
                assert proc.stdout is not None and proc.stderr is not None
                out, err = proc.stdout.read(), proc.stderr.read()
            finally:
                assert proc.stdin is not None
                proc.stdin.close()
        return subprocess.CompletedProcess(cmd, code, out, err)
    r = subprocess.run(cmd, cwd=ROOT, input=stdin, capture_output=True, timeout=timeout)
    return subprocess.CompletedProcess(
        cmd, r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    )


def clean(stderr: str) -> bool:
    return not any(word in stderr for word in NOISE)


@pytest.mark.docker
def test_run_prints_the_compilers_diagnostics(tmp_path: Path) -> None:
    bad = tmp_path / "bad.c"
    bad.write_text("int main( {\n")
    r = sandboxkit("run", str(bad))
    assert r.returncode != 0
    assert "error:" in r.stderr and "expected" in r.stderr, r.stderr
    assert "status compile_error" in r.stderr and clean(r.stderr), r.stderr


@pytest.mark.docker
def test_run_passes_arguments_and_variables(tmp_path: Path) -> None:
    f = tmp_path / "f.py"
    f.write_text("import os, sys\nprint(sys.argv[1:], os.environ.get('X'))\n")
    r = sandboxkit("run", str(f), "--env", "X=a=b", "--", "-v", "two words")
    assert (r.returncode, r.stdout) == (0, "['-v', 'two words'] a=b\n"), r.stderr
    r = sandboxkit("run", str(f), "--env", "nonsense")
    assert r.returncode == 2 and "NAME=VALUE" in r.stderr


READ_ONE = 'read -r line || line="(eof)"; echo "got $line"\n'


@pytest.mark.docker
def test_run_feeds_piped_stdin_to_the_program(tmp_path: Path) -> None:
    f = tmp_path / "f.sh"
    f.write_text(READ_ONE + "exit 4\n")
    r = sandboxkit("run", str(f), stdin=b"x\n")
    assert (r.returncode, r.stdout) == (4, "got x\n"), r.stderr
    assert clean(r.stderr), r.stderr


@pytest.mark.docker
def test_run_does_not_wait_for_a_pipe_nobody_closes(tmp_path: Path) -> None:
    f = tmp_path / "f.sh"
    f.write_text("echo done\n")
    r = sandboxkit("run", str(f), stdin=None, timeout=60)
    assert (r.returncode, r.stdout) == (0, "done\n"), r.stderr


@pytest.mark.docker
def test_run_dash_reads_the_code_from_stdin(tmp_path: Path) -> None:
    r = sandboxkit("run", "-", "--lang", "bash", stdin=READ_ONE.encode())
    assert (r.returncode, r.stdout) == (0, "got (eof)\n"), r.stderr  # its stdin: empty
    given = tmp_path / "in.txt"
    given.write_text("from the file\n")
    r = sandboxkit("run", "-", "-l", "bash", "--stdin", str(given), stdin=READ_ONE.encode())
    assert (r.returncode, r.stdout) == (0, "got from the file\n"), r.stderr


def test_run_dash_without_a_language_says_to_pass_lang() -> None:
    r = sandboxkit("run", "-", stdin=b"print(1)\n")
    assert r.returncode == 2
    assert "--lang" in r.stderr and "stdin" in r.stderr and clean(r.stderr), r.stderr


def test_run_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    r = sandboxkit("run", str(tmp_path / "nope.py"))
    assert r.returncode == 2 and "does not exist" in r.stderr and clean(r.stderr), r.stderr


@pytest.mark.docker
def test_run_closes_cleanly_every_time(tmp_path: Path) -> None:
    # the pool closes while the run's replacement sandbox may still be starting: nothing
    # may be printed after the program's output (it was, about one run in ten)
    f = tmp_path / "f.sh"
    f.write_text("echo hi\n")
    for _ in range(12):
        r = sandboxkit("run", str(f))
        assert (r.returncode, r.stdout) == (0, "hi\n"), r.stderr
        assert r.stderr == "", r.stderr


def _every_command() -> list[tuple[list[str], list[str]]]:
    """(argv to the command, its option names) for every command and group."""
    from typer.main import get_command

    from sandboxkit.cli import app

    found: list[tuple[list[str], list[str]]] = []

    def walk(cmd: Any, path: list[str]) -> None:
        names = [o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o[:1] == "-"]
        found.append((path, names))
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            walk(sub, [*path, name])

    walk(get_command(app), [])
    return found


def test_help_at_80_columns_shows_whole_option_names_and_no_bool_types(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from sandboxkit.cli import app

    monkeypatch.setenv("COLUMNS", "80")
    commands = _every_command()
    assert len(commands) > 10
    for path, names in commands:
        r = CliRunner().invoke(app, [*path, "--help"])
        assert r.exit_code == 0, (path, r.output)
        assert "<bool>" not in r.output and "…" not in r.output, (path, r.output)
        assert max(map(len, r.output.splitlines())) <= 80, (path, r.output)
        words = set(r.output.replace(",", " ").split())
        assert set(names) <= words, (path, set(names) - words, r.output)


@pytest.mark.docker
def test_serve_keeps_its_database_in_the_users_data_dir(tmp_path: Path) -> None:
    import os
    import signal
    import socket
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cwd, data = tmp_path / "cwd", tmp_path / "data"
    cwd.mkdir()
    env = {**os.environ, "XDG_DATA_HOME": str(data), "PYTHONPATH": str(ROOT)}
    env.pop("SANDBOXKIT_DB", None)
    cmd = [sys.executable, "-m", "sandboxkit", "serve", "--port", str(port), "--pool-size", "0"]
    with subprocess.Popen(
        [*cmd, "--log-level", "warning"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, proc.communicate()
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/about", timeout=2).is_success:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "serve did not answer"
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=60)
    db = data / "sandboxkit" / "judge0.sqlite3"
    assert db.is_file()
    assert list(cwd.iterdir()) == []  # nothing written where it was started
    assert f"submissions are kept in {db}" in err, err


TWO_LOOPS = """
import asyncio
import sandboxkit as sk
from sandboxkit import _default

async def once():
    r = await sk.Sandbox.run("echo hi", language="bash")
    return r.stdout, await _default.default_pool()

for _ in range(2):
    out, pool = asyncio.run(once())  # no sk.aclose(): the loop's end closes its pool
    print(out.strip(), pool.closed, len(_default._defaults))
"""


@pytest.mark.docker
def test_each_event_loop_closes_its_default_pool_at_its_end() -> None:
    r = subprocess.run(
        [sys.executable, "-c", TWO_LOOPS], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.stdout == "hi True 0\nhi True 0\n", r.stderr
    assert "nclosed" not in r.stderr and clean(r.stderr), r.stderr  # "Unclosed connector"
