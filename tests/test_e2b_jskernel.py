"""The code interpreter's JavaScript kernel (``sandboxkit/e2b/_jskernel.js``) under the
host's node, and the reading of its token-ended output: no Docker. The same kernel
behind the official SDK is in tests/test_e2b.py."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest

from sandboxkit.e2b._javascript import KERNEL, Marked

NODE = shutil.which("node")


def test_marked_splits_output_from_the_reply_across_reads() -> None:
    mark = Marked("abc123")
    assert mark.feed("hello\nab") == "hello\n"  # a token's possible start waits
    assert not mark.done
    assert mark.feed("x") == "abx"  # ...and goes out once it is not one
    assert mark.feed("partial ab") == "partial "
    assert mark.feed('c123{"text": "2"}') == ""
    assert not mark.done  # the reply's line has not ended
    assert mark.feed("\nlater") == ""
    assert mark.done and mark.reply() == {"text": "2"}


def test_marked_keeps_what_came_before_a_token_that_never_ends() -> None:
    mark = Marked("tok")
    assert mark.feed("no end t") == "no end "
    assert mark.rest() == "t" and not mark.done and mark.reply() == {}


def _cells(*cells: str | tuple[str, dict[str, str]]) -> list[tuple[str, str, dict[str, Any]]]:
    """Each cell's stdout, stderr and reply from one kernel process."""
    if NODE is None:
        pytest.skip("no node on this host")
    lines = []
    for n, cell in enumerate(cells):
        code, env = cell if isinstance(cell, tuple) else (cell, {})
        lines.append(json.dumps({"token": f"TOKEN{n}x", "code": code, "env": env}))
    done = subprocess.run(
        [NODE, "-e", KERNEL],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out: list[tuple[str, str, dict[str, Any]]] = []
    stdout, stderr = done.stdout, done.stderr
    for n in range(len(cells)):
        token = f"TOKEN{n}x"
        before, _, stdout = stdout.partition(token)
        reply, _, stdout = stdout.partition("\n")
        err_before, _, stderr = stderr.partition(token + "\n")
        out.append((before, err_before, json.loads(reply)))
    return out


def test_state_output_and_values_between_cells() -> None:
    first, second, third = _cells(
        "var a = 1; const b = 2; console.log('side'); a + b",
        "console.error('warn'); ({ a, b, s: 'x' })",
        "'plain string'",
    )
    assert first == ("side\n", "", {"text": "3"})
    assert second == ("", "warn\n", {"text": "{ a: 1, b: 2, s: 'x' }"})
    assert third[2] == {"text": "plain string"}  # strings unquoted, as E2B shows them


def test_top_level_await_keeps_declarations_and_returns_the_last_value() -> None:
    plain, declared, used = _cells(
        "\n    await Promise.resolve('Hello World!')\n    ",
        "const c = await Promise.resolve(5)\nfunction f() { return c + 1 }\nc * 2",
        "f()",
    )
    assert plain[2] == {"text": "Hello World!"}
    assert declared[2] == {"text": "10"} and used[2] == {"text": "6"}


def test_esm_imports_become_requires() -> None:
    (named,) = _cells(
        "import { readFileSync } from 'fs'\nimport * as p from 'path'\n"
        "import os, { EOL as eol } from 'os'\n"
        "console.log(typeof readFileSync);\n[p.sep, typeof os.cpus, eol.length]"
    )
    assert named[0] == "function\n" and named[2] == {"text": "[ '/', 'function', 1 ]"}


def test_errors_have_name_value_and_the_cells_own_stack() -> None:
    missing, thrown, syntax, after = _cells("nope", "throw 'str'", "let = = 1", "1 + 1")
    error = missing[2]["error"]
    assert error["name"] == "ReferenceError" and error["value"] == "nope is not defined"
    assert "<cell 1>" in error["traceback"] and "_jskernel" not in error["traceback"]
    assert thrown[2]["error"]["value"] == "'str'"
    assert syntax[2]["error"]["name"] == "SyntaxError"
    assert after[2] == {"text": "2"}  # the kernel lives on


def test_env_lasts_one_cell_and_output_cannot_end_a_cell() -> None:
    scoped, back, forged = _cells(
        ("process.env.FOO", {"FOO": "bar"}),
        "process.env.FOO || 'default'",
        "console.log('TOKEN1x{\"text\": \"forged\"}'); 'real'",
    )
    assert scoped[2] == {"text": "bar"} and back[2] == {"text": "default"}
    assert forged[2] == {"text": "real"}  # another cell's token is just text
