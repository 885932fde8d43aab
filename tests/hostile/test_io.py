"""I/O: floods, one enormous line, invalid UTF-8, closed stdout, exit codes, signals."""

from __future__ import annotations

import pytest

import sandboxkit as sk

from ._invariants import check

pytestmark = [pytest.mark.docker, pytest.mark.hostile]

CAP = 10_000
SMALL = sk.Limits(output_bytes=CAP, time=20)

FLOODS = {
    "stdout-print": ("while True:\n    print('y' * 1000)\n", "stdout"),
    "stderr-print": ("import sys\nwhile True:\n    print('e' * 1000, file=sys.stderr)\n", "stderr"),
    "both": (
        "import sys\nwhile True:\n    print('y' * 999)\n    print('e' * 999, file=sys.stderr)\n",
        "both",
    ),
    "raw-write": ("import os\nwhile True:\n    os.write(1, b'z' * 65536)\n", "stdout"),
    "child-yes": ("import subprocess\nsubprocess.run(['yes'])\n", "stdout"),
    "one-enormous-line": ("import sys\nsys.stdout.write('L' * (50 << 20))\n", "stdout"),
    "no-newline-binary": (
        "import os\nwhile True:\n    os.write(2, bytes(range(256)) * 256)\n",
        "stderr",
    ),
}


@pytest.mark.parametrize("name", sorted(FLOODS))
async def test_flood_is_cut_and_stopped(hostile_pool: sk.SandboxPool, name: str) -> None:
    code, stream = FLOODS[name]
    r = await check(hostile_pool, code, "output_limit", limits=SMALL)
    assert r.truncated
    assert len(r.stdout.encode()) <= CAP and len(r.stderr.encode("utf-8", "replace")) <= 3 * CAP
    if stream in ("stdout", "both"):
        assert len(r.stdout) == CAP


async def test_flood_in_bash(hostile_pool: sk.SandboxPool) -> None:
    r = await check(
        hostile_pool,
        "while :; do echo flood; done\n",
        "output_limit",
        language="bash",
        limits=SMALL,
    )
    assert r.truncated and len(r.stdout) == CAP


async def test_line_over_the_cap_but_under_the_flood_threshold(
    hostile_pool: sk.SandboxPool,
) -> None:
    # kept up to the cap, flagged, and the program is not killed for it
    r = await check(hostile_pool, f"print('x' * {2 * CAP})\nprint('end')\n", "ok", limits=SMALL)
    assert r.truncated and r.stdout == "x" * CAP


INVALID_UTF8 = {
    "random-bytes": ("import os, sys\nsys.stdout.buffer.write(bytes(range(256)) * 4)\n", None),
    "lone-continuation": (
        "import sys\nsys.stdout.buffer.write(b'a\\x80b\\xc3')\n",
        "a\ufffdb\ufffd",
    ),
    "split-character": (
        "import os, time\nos.write(1, b'\\xe2\\x82')\ntime.sleep(0.2)\nos.write(1, b'\\xac!')\n",
        "\u20ac!",
    ),
    "surrogates-print": ("print('\\udcff')\n", None),
    "overlong-nul": (
        "import sys\nsys.stdout.buffer.write(b'\\xc0\\x80\\x00end')\n",
        "\ufffd\ufffd\x00end",
    ),
}


@pytest.mark.parametrize("name", sorted(INVALID_UTF8))
async def test_invalid_utf8_never_raises(hostile_pool: sk.SandboxPool, name: str) -> None:
    code, want = INVALID_UTF8[name]
    r = await check(hostile_pool, code, ("ok", "error"))
    assert isinstance(r.stdout, str)
    if want is not None:
        assert r.status == "ok" and r.stdout == want


CLOSED = {
    "close-fds-then-exit": ("import os\nos.close(1)\nos.close(2)\n", "ok", None),
    "close-then-print": ("import sys\nsys.stdout.close()\nprint('x')\n", "error", None),
    "close-then-sleep": (
        "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(0.5)\n",
        "ok",
        None,
    ),
    "close-stdin-read": (
        "import os\nos.close(0)\ntry:\n    input()\n"
        "except (OSError, ValueError, EOFError, RuntimeError) as e:\n"
        "    print(type(e).__name__)\n",
        "ok",
        None,
    ),
    "absent-stdin-read-all": ("import sys\nprint(len(sys.stdin.buffer.read()))\n", "ok", "0\n"),
    "write-to-stdin": (
        "import os\ntry:\n    os.write(0, b'x')\n    print('wrote')\n"
        "except OSError as e:\n    print('refused', e.errno)\n",
        "ok",
        None,
    ),
}


@pytest.mark.parametrize("name", sorted(CLOSED))
async def test_closed_and_absent_streams(hostile_pool: sk.SandboxPool, name: str) -> None:
    code, status, want = CLOSED[name]
    r = await check(hostile_pool, code, status, limits=sk.Limits(time=10))
    if want is not None:
        assert r.stdout == want


async def test_closed_stdout_in_c_dies_of_nothing(hostile_pool: sk.SandboxPool) -> None:
    code = (
        "#include <unistd.h>\n#include <stdio.h>\n"
        'int main(void) { close(1); return printf("x\\n") < 0 ? 0 : 0; }\n'
    )
    await check(hostile_pool, code, "ok", language="c")


async def test_sigpipe_default_for_exec_programs(hostile_pool: sk.SandboxPool) -> None:
    # `yes | head` ends because yes dies of SIGPIPE, as in any shell
    code = 'yes | head -n 2\necho "${PIPESTATUS[@]}"\n'
    r = await check(hostile_pool, code, "ok", language="bash", limits=sk.Limits(time=10))
    assert r.stdout == "y\ny\n141 0\n" and r.stderr == ""


EXITS = [
    ("import sys\nsys.exit(0)", "ok", 0, None),
    ("import sys\nsys.exit(1)", "error", 1, None),
    ("import sys\nsys.exit(255)", "error", 255, None),
    ("import os\nos._exit(256)", "ok", 0, None),
    ("import os\nos._exit(127)", "error", 127, None),
    ("import sys\nsys.exit('message')", "error", 1, None),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)", "error", None, 15),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)", "error", None, 11),
    ("import os\nos.abort()", "error", None, 6),
    ("import ctypes\nctypes.string_at(0)", "error", None, 11),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGUSR1)", "error", None, 10),
]


@pytest.mark.parametrize(("code", "status", "exit_code", "signal"), EXITS)
async def test_exit_codes_and_signals(
    hostile_pool: sk.SandboxPool,
    code: str,
    status: str,
    exit_code: int | None,
    signal: int | None,
) -> None:
    r = await check(hostile_pool, code, status)
    assert (r.exit_code, r.signal) == (exit_code, signal)


async def test_exit_codes_in_bash_and_c(hostile_pool: sk.SandboxPool) -> None:
    r = await check(hostile_pool, "exit 42\n", "error", language="bash")
    assert r.exit_code == 42
    r = await check(
        hostile_pool, "int main(void) { return *(volatile int *)0; }\n", "error", language="c"
    )
    assert r.signal == 11
