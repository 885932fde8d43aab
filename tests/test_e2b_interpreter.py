"""The code interpreter's pure parts: how a cell is prepared for the kernel and how its
output becomes E2B's lines (no Docker; the SDK-driven tests are in test_e2b.py)."""

from __future__ import annotations

import ast
import json

import pytest

pytest.importorskip("e2b")

from sandboxkit._models import DisplayData
from sandboxkit.e2b._interpreter import (
    MAIN,
    Lines,
    Stderr,
    as_cell,
    error_line,
    in_context,
    parsable,
    restore_env,
    result_line,
    with_setup,
)


def test_parsable_applies_ipython_leniencies_only_when_needed() -> None:
    assert parsable("x = 1\n") == "x = 1\n"
    indented = "\n    import os\n    x = 1\n    x\n"
    assert ast.parse(parsable(indented))  # a common indentation is removed
    escaped = parsable("print(1)\n!echo hi\n")
    assert "subprocess" in escaped and "'echo hi'" in escaped
    assert ast.parse(escaped)
    broken = "echo 'E2B'"  # not Python: left as it is, for the kernel's SyntaxError
    assert parsable(broken) == broken


def test_as_cell_shows_the_last_expression_as_the_main_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import builtins
    import sys

    cell = as_cell("x = 1\nx + 1")
    assert "_e2b_main" in cell and cell.startswith("x = 1\n")
    assert as_cell("x = 1") == "x = 1"  # no expression last: nothing shown
    shown: list[object] = []
    monkeypatch.setattr(builtins, "display", shown.append, raising=False)  # the kernel's
    monkeypatch.setattr(sys, "_e2b_main", shown.append, raising=False)  # the prelude's
    default: dict[str, object] = {}
    exec(compile(in_context(cell, "c1"), "<t>", "exec"), default)
    contexts = sys.__dict__.pop("_e2b_contexts")
    assert contexts["c1"]["x"] == 1 and "x" not in default  # ran in its own namespace
    assert shown == [2]


def test_setup_runs_in_a_namespace_of_its_own() -> None:
    cell = with_setup("y = 2\n", "/nonexistent-dir")
    first = cell.splitlines()[0]
    assert first.startswith("exec(") and first.endswith(", {})")


def test_lines_pass_whole_lines_and_keep_the_rest() -> None:
    lines = Lines()
    assert lines.feed("Hello") == ""
    assert lines.feed(" world\nand") == "Hello world\n"
    assert lines.feed("\n") == "and\n"
    assert lines.feed("tail") == "" and lines.rest() == "tail" and lines.rest() == ""


def test_a_partial_line_that_waited_goes_with_the_next_output(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr("sandboxkit.e2b._interpreter.time.monotonic", lambda: clock[0])
    lines = Lines()
    assert lines.feed("10%\r") == ""
    clock[0] += 0.001
    assert lines.feed("20%\r") == ""  # a moment later: still one line being written
    clock[0] += 1.0
    assert lines.feed("30%\r") == "10%\r20%\r30%\r"  # it waited: out as it is


def test_stderr_holds_a_traceback_back() -> None:
    err = Stderr()
    assert err.feed("warning\n") == "warning\n"
    assert err.feed("Traceback (most recent call last):\n") == ""
    assert err.feed("NameError: name 'x' is not defined\n") == ""
    shown = error_line(err.held, "error")
    assert (shown["name"], shown["value"]) == ("NameError", "name 'x' is not defined")
    syntax = Stderr()
    assert syntax.feed('  File "/work/main.py", line 1\n') == ""
    assert error_line(syntax.held + "SyntaxError: invalid syntax\n", "error")["name"] == (
        "SyntaxError"
    )


def test_result_line_maps_mime_types_onto_e2b_fields() -> None:
    chart = {"type": "pie", "title": "t", "elements": []}
    output = DisplayData(
        data={
            "text/plain": "'quoted'",
            "image/png": "iVBOR",
            "e2b/chart": json.dumps(chart),
            "e2b/data": json.dumps({"a": [1]}),
            "application/x-custom": "c",
            MAIN: "1",
        }
    )
    line = result_line(output)
    assert line["is_main_result"] is True and line["text"] == "quoted"
    assert line["chart"] == chart and line["data"] == {"a": [1]} and line["png"] == "iVBOR"
    assert line["extra"] == {"application/x-custom": "c"}
    assert result_line(DisplayData(data={"text/plain": "1"}))["is_main_result"] is False


def test_restore_env_puts_the_sandbox_values_back() -> None:
    import os

    os.environ["E2B_T_OWN"], os.environ["E2B_T_KEPT"] = "cell", "cell"
    try:
        exec(restore_env({"E2B_T_OWN": "cell", "E2B_T_KEPT": "cell"}, {"E2B_T_KEPT": "box"}))
        assert "E2B_T_OWN" not in os.environ and os.environ["E2B_T_KEPT"] == "box"
    finally:
        os.environ.pop("E2B_T_OWN", None)
        os.environ.pop("E2B_T_KEPT", None)
