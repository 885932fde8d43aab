"""Every example in examples/ runs to completion in a fresh interpreter and leaves nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sandboxkit._fleet.labels import LABEL_OWNER

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.py"))
pytestmark = pytest.mark.docker


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path: Path) -> None:
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip()


def test_no_container_outlives_its_process() -> None:
    code = (
        "import asyncio, os, sandboxkit as sk\n"
        "from sandboxkit._fleet.labels import owner_identity\n"
        "async def main():\n"
        "    r = await sk.Sandbox.run('print(1)')\n"
        "    print(owner_identity())\n"
        "asyncio.run(main())\n"  # no aclose(): the exit hook must clean up
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    owner = proc.stdout.strip().splitlines()[-1]
    left = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={LABEL_OWNER}={owner}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert left == []
