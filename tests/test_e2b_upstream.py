"""The ``e2b`` and ``e2b-code-interpreter`` SDKs' OWN integration tests against
``sandboxkit e2b`` on loopback, through ``scripts/e2b_upstream.py`` (its selection, and
every test left out with its reason, live there).

The suites are not part of this repository (nor of the SDKs' PyPI sdists): set
``SANDBOXKIT_E2B_UPSTREAM=DIR`` to a folder holding ``e2b/`` (e2b-dev/E2B's
``packages/python-sdk/tests``) and ``code-interpreter/`` (e2b-dev/code-interpreter's
``python/tests``); without it this test is skipped and says so.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("e2b")
pytest.importorskip("e2b_code_interpreter")

pytestmark = pytest.mark.docker

SCRIPT = Path(__file__).parent.parent / "scripts" / "e2b_upstream.py"


def _suites() -> Path:
    where = os.environ.get("SANDBOXKIT_E2B_UPSTREAM")
    if not where:
        pytest.skip(
            "the upstream e2b test suites are not on disk: set SANDBOXKIT_E2B_UPSTREAM=DIR "
            "(DIR/e2b and DIR/code-interpreter, see scripts/e2b_upstream.py)"
        )
    root = Path(where)
    for suite in ("e2b", "code-interpreter"):
        if not (root / suite / "conftest.py").is_file():
            pytest.fail(f"SANDBOXKIT_E2B_UPSTREAM={where}: {suite}/conftest.py is missing")
    return root


def test_every_reason_names_a_real_upstream_test() -> None:
    """A deselection that no longer matches a test would silently run nothing less:
    each one must name a file of the suites on disk."""
    root = _suites()
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import e2b_upstream
    finally:
        sys.path.pop(0)
    for node in [*e2b_upstream.DESELECTED, *e2b_upstream.ROOT_TESTS]:
        file, _, test = node.partition("::")
        assert (root / file).is_file(), node
        assert f"def {test}(" in (root / file).read_text(), node


@pytest.mark.parametrize("suite", ["e2b", "code-interpreter"])
def test_upstream_suite_passes(suite: str) -> None:
    root = _suites()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(root), "--suite", suite, "-q", "-p", "no:warnings"],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    tail = "\n".join(done.stdout.splitlines()[-60:])
    assert done.returncode == 0, f"upstream {suite} tests failed:\n{tail}\n{done.stderr[-2000:]}"


def test_root_needing_upstream_tests_pass_under_gvisor() -> None:
    """The tests left out under runc because they run commands as root (ROOT_TESTS):
    against a server under gVisor, where root is offered, they run and pass."""
    root = _suites()
    from sandboxkit._backends import connect

    async def runtimes() -> tuple[str, ...]:
        engine = connect()
        try:
            return (await engine.info()).runtimes
        finally:
            await engine.close()

    import asyncio

    if "runsc" not in asyncio.run(runtimes()):
        pytest.skip("the engine has no runsc (gVisor) runtime")
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import e2b_upstream
    finally:
        sys.path.pop(0)
    names = sorted({node.partition("::")[2] for node in e2b_upstream.ROOT_TESTS})
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(root), "--runtime", "runsc", "--suite", "e2b",
         "-q", "-p", "no:warnings", "-k", " or ".join(names)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )  # fmt: skip
    tail = "\n".join(done.stdout.splitlines()[-60:])
    assert done.returncode == 0, f"root-needing upstream tests failed:\n{tail}"
    assert f"{len(e2b_upstream.ROOT_TESTS)} passed" in tail, tail
