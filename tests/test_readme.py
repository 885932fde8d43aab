"""The README's quickstart and .ci/run agree: CI runs exactly the README's test command."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _quickstart() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.strip().splitlines() if line.strip()]


def test_quickstart_is_two_commands() -> None:
    assert len(_quickstart()) == 2


def test_ci_runs_the_readme_commands() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    setup, tests = _quickstart()
    assert tests in ci, "the README's test command must appear verbatim in .ci/run"
    for part in setup.split("&&"):
        assert part.strip() in ci, f"{part.strip()!r} from the quickstart is not in .ci/run"
    assert ci.index(tests) == len([line for line in ci if line.strip()]) - 1 or ci[-1] == tests
