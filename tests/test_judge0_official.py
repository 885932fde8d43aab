"""The official ``judge0`` client's own test suite, unchanged (from its sdist, fetched by
``scripts/setup.sh`` into ``.cache/judge0-sdist``), run against ``sandboxkit serve``.

Its cloud tests skip (see ``tests/judge0_official/plugin.py``, which also refuses every
connection that is not to loopback); every other test must pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

import pytest
from judge0_server import Server

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parent.parent
SDIST = ROOT / ".cache" / "judge0-sdist" / f"judge0-{version('judge0')}.tar.gz"


def test_official_client_suite_passes(tmp_path: Path) -> None:
    assert SDIST.exists(), (
        f"{SDIST} is missing: scripts/setup.sh downloads it "
        f"(pip download judge0=={version('judge0')} --no-deps --no-binary :all:)"
    )
    with tarfile.open(SDIST) as tar:
        tar.extractall(tmp_path, filter="data")
    suite = tmp_path / f"judge0-{version('judge0')}" / "tests"
    server = Server(tmp_path / "subs.sqlite3")
    try:
        env = {
            **os.environ,
            "SANDBOXKIT_JUDGE0_URL": server.url,
            "PYTHONPATH": str(ROOT / "tests" / "judge0_official"),
        }
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-p",
                "plugin",
                "-rs",
                str(suite),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
    finally:
        server.stop()
    tail = run.stdout[-4000:] + run.stderr[-2000:]
    assert run.returncode == 0, tail
    assert " passed" in run.stdout and " failed" not in run.stdout, tail
