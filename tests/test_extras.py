"""Dependencies by need: the core import pulls in no extra's packages, and the console
script names the extra to install when one is missing (exit 1, no traceback).

Each check runs in a fresh interpreter; a missing package is simulated by a
``sys.meta_path`` finder that refuses it, as an environment without it would.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

EXTRA_PACKAGES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "typer",
    "click",
    "rich",
    "judge0",
    "httpx",
    "mcp",
    "mcp_types",
    "e2b",
    "e2b_code_interpreter",
    "connectrpc",
    "smolagents",
    "deepagents",
    "langchain",
    "langchain_core",
    "langgraph",
    "agents",
    "openai",
    "pydantic_ai",
    "matplotlib",
    "numpy",
    "pandas",
)

_BLOCK = """
import sys

class _Missing:
    def find_spec(self, name, path=None, target=None):
        if name in BLOCKED or name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

BLOCKED = set(sys.argv[1].split(","))
sys.meta_path.insert(0, _Missing())
sys.argv = ["sandboxkit", *sys.argv[2:]]
from sandboxkit._cli_entry import main
main()
"""


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _without(packages: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """The console script's ``main`` with ``packages`` (comma-separated) not installed."""
    return _python(_BLOCK, packages, *argv)


@pytest.mark.parametrize(
    "module", ["sandboxkit", "sandboxkit._cli_entry", "sandboxkit.integrations"]
)
def test_core_import_pulls_in_no_extra(module: str) -> None:
    names = set(EXTRA_PACKAGES)
    r = _python(
        f"import {module}, sys; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {names!r}))"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize("package", ["typer", "rich"])
def test_command_without_cli_extra_names_it(package: str) -> None:
    r = _without(package, "--help")
    assert r.returncode == 1, r.stderr
    assert "pip install 'sandboxkit[cli]'" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_serve_without_anything_names_the_server_extra() -> None:
    r = _without("typer", "serve", "--port", "0")
    assert r.returncode == 1, r.stderr
    assert "pip install 'sandboxkit[server]'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("package", ["fastapi", "uvicorn", "starlette"])
def test_serve_without_server_extra_names_it(package: str) -> None:
    pytest.importorskip("typer")
    r = _without(package, "serve", "--port", "0")
    assert r.returncode == 1, r.stderr
    assert "pip install 'sandboxkit[server]'" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("package", ["mcp", "mcp_types"])
def test_mcp_without_mcp_extra_names_it(package: str) -> None:
    pytest.importorskip("typer")
    r = _without(package, "mcp")
    assert r.returncode == 1, r.stderr
    assert "pip install 'sandboxkit[mcp]'" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("package", ["e2b", "connectrpc"])
def test_e2b_without_e2b_extra_names_it(package: str) -> None:
    pytest.importorskip("typer")
    r = _without(package, "e2b")
    assert r.returncode == 1, r.stderr
    assert "pip install 'sandboxkit[e2b]'" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_other_commands_work_without_server_extra() -> None:
    pytest.importorskip("typer")
    r = _without("fastapi,uvicorn,starlette", "--help")
    assert r.returncode == 0, r.stderr
    assert "serve" in r.stdout and "judge" in r.stdout


def test_an_unrelated_import_error_is_not_disguised() -> None:
    # a broken module of our own is a bug: it must show, not pass for a missing extra
    pytest.importorskip("typer")
    r = _without("sandboxkit.cli.run", "--help")
    assert r.returncode != 0
    assert "Traceback" in r.stderr and "pip install" not in r.stderr


def test_python_dash_m_runs_the_same_command() -> None:
    pytest.importorskip("typer")
    r = subprocess.run(
        [sys.executable, "-m", "sandboxkit", "--help"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert "Usage: sandboxkit" in r.stdout
