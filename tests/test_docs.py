"""The docs stay true: the API reference builds from the docstrings (pdoc) with every
public name; the README lists every extra, the `Limits` defaults as the model has them,
the session idle default, an example per framework; the MCP "From Python" snippet runs
without an activated venv; the light setup path is there."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sandboxkit as sk

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10: tomli, as pip and pytest bring it
    tomllib = pytest.importorskip("tomli")


# ---------------------------------------------------------------- the API reference
@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("pdoc")
    out = tmp_path_factory.mktemp("api")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_api_docs.py"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_the_api_reference_has_every_public_name(api: Path) -> None:
    page = (api / "sandboxkit.html").read_text()
    assert (api / "index.html").exists()
    for name in sk.__all__:
        if name == "__version__":
            continue
        assert f'id="{name}"' in page, f"{name} is missing from the API reference"
    for member in (
        "Sandbox.run",
        "Sandbox.stream",
        "Sandbox.write_file",
        "SandboxPool.run",
        "Limits.time",
        "Limits.memory_mb",
        "RunResult.status",
        "RunResult.stdout",
        "JudgeReport.verdict",
    ):
        assert f'id="{member}"' in page, f"{member} is missing from the API reference"
    assert "wall-clock seconds" in page  # the fields' descriptions are there
    assert "<p>::</p>" not in page  # reST literal markers do not show
    assert f"sandboxkit {sk.__version__}" in page


def test_the_api_reference_covers_the_framework_executors(api: Path) -> None:
    pages = api / "sandboxkit" / "integrations"
    for module, cls in (
        ("smolagents", "SandboxkitExecutor"),
        ("deepagents", "SandboxkitBackend"),
        ("openai_agents", "SandboxkitSandboxClient"),
    ):
        assert f'id="{cls}"' in (pages / f"{module}.html").read_text()
    assert not (pages / "_loop.html").exists()  # private


def test_nox_has_a_docs_session_and_dev_has_the_tool() -> None:
    noxfile = (ROOT / "noxfile.py").read_text()
    assert "def docs(" in noxfile and "build_api_docs.py" in noxfile
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(dep.startswith("pdoc") for dep in dev["optional-dependencies"]["dev"])


# ---------------------------------------------------------------- the README
def test_the_readme_lists_every_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    install = README.split("## Install", 1)[1].split("\n## ", 1)[0]
    for extra in project["optional-dependencies"]:
        listed = f"sandboxkit[{extra}]" in install or f".[{extra}]" in install
        assert listed, f"the extra {extra!r} is not in the README's Install section"


def _limits_table() -> dict[str, tuple[str, str]]:
    section = README.split("### Limits and their defaults", 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\| `(\w+)` \| ([^|]+) \| ([^|]+) \|", line)
        if m:
            rows[m.group(1)] = (m.group(2).strip(), m.group(3).strip())
    return rows


def _range(field: object) -> str:
    bounds = {}
    for meta in getattr(field, "metadata", []):
        for name in ("gt", "ge", "lt", "le"):
            if getattr(meta, name, None) is not None:
                bounds[name] = getattr(meta, name)
    if "ge" in bounds and "le" in bounds:
        return f"{bounds['ge']} to {bounds['le']}"
    signs = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    return ", ".join(f"{signs[k]} {v}" for k, v in bounds.items())


def test_the_readme_limits_table_is_the_model() -> None:
    table = _limits_table()
    fields = sk.Limits.model_fields
    assert list(table) == list(fields), "the README's Limits table must list every field"
    for name, field in fields.items():
        default, limits = table[name]
        assert default == repr(field.default), f"{name}: README {default}, model {field.default}"
        assert limits == _range(field), f"{name}: README {limits}, model {_range(field)}"


def test_the_readme_says_the_session_idle_default() -> None:
    idle = inspect.signature(sk.Sandbox).parameters["idle_timeout"].default
    assert f"default **{idle:g}**" in README
    assert "idle_timeout=None" in README


def test_the_readme_says_what_setup_costs_and_the_light_path() -> None:
    quick = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert "~18 GB" in quick and "20 minutes" in quick and "PostgreSQL" in quick
    assert "SANDBOXKIT_LANGUAGES=python bash scripts/setup.sh" in quick
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "SANDBOXKIT_LANGUAGES" in setup
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / "setup.sh")], check=True)


def test_the_readme_says_back_to_back_speed() -> None:
    speed = README.split("## Speed", 1)[1].split("\n## ", 1)[0]
    assert "Back-to-back" in speed and "SandboxPool(size=N)" in speed


def test_every_framework_executor_has_an_example_linked_from_the_readme() -> None:
    integrations = ROOT / "sandboxkit" / "integrations"
    modules = sorted(p.stem for p in integrations.glob("*.py") if not p.stem.startswith("_"))
    assert modules, "no integrations found"
    examples = {p.name: p.read_text() for p in (ROOT / "examples").glob("*.py")}
    for module in modules:
        users = [n for n, text in examples.items() if f"sandboxkit.integrations.{module}" in text]
        assert users, f"no example in examples/ uses sandboxkit.integrations.{module}"
        assert any(f"examples/{n}" in README for n in users), f"no README link to {users}"


# ---------------------------------------------------------------- examples/mcp.md
def _from_python_snippet() -> str:
    text = (ROOT / "examples" / "mcp.md").read_text()
    section = text.split("## From Python", 1)[1]
    return section.split("```python", 1)[1].split("```", 1)[0]


def test_the_mcp_doc_says_what_a_timeout_over_the_cap_does() -> None:
    text = (ROOT / "examples" / "mcp.md").read_text()
    assert "a timeout past the" not in text  # it is not refused
    assert "A timeout\nabove `--max-timeout` is not an error" in text


@pytest.mark.docker
def test_the_mcp_from_python_snippet_runs_without_the_venv_on_path(tmp_path: Path) -> None:
    pytest.importorskip("mcp")
    script = tmp_path / "snippet.py"
    script.write_text(_from_python_snippet())
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = "/usr/bin:/bin"  # no .venv/bin: `sandboxkit` is not a command here
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "42" in proc.stdout, proc.stdout
