"""The public API as a user's type checker sees it: real signatures, no ``Any`` holes.

Runs mypy --strict on two user files: one using the API as documented (no errors), one
with a typical mistake on each marked line (exactly those errors). No engine needed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "typing"


def mypy(path: Path) -> list[str]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--show-error-codes",
            "--no-error-summary",
            str(path),
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
        timeout=300,
    )
    return [line for line in out.stdout.splitlines() if ": error:" in line]


@pytest.fixture(scope="module")
def both() -> tuple[list[str], list[str]]:
    return mypy(HERE / "good.py"), mypy(HERE / "bad.py")


def test_documented_use_type_checks(both: tuple[list[str], list[str]]) -> None:
    good, _ = both
    assert good == []


def test_each_mistake_is_flagged_where_it_is(both: tuple[list[str], list[str]]) -> None:
    _, bad = both
    source = (HERE / "bad.py").read_text().splitlines()
    wanted = {
        (n, m.group(1))
        for n, line in enumerate(source, 1)
        if (m := re.search(r"# E: ([\w-]+)", line))
    }
    found = set()
    for line in bad:
        m = re.search(r":(\d+): error: .*\[([\w-]+)\]$", line)
        assert m, line
        found.add((int(m.group(1)), m.group(2)))
    assert found == wanted, "\n".join(bad)
