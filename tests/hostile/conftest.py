"""Fixtures of the hostile suite: a pool of its own (its invariants count containers)."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator

import pytest

import sandboxkit as sk

from ._invariants import settle


@pytest.fixture(scope="session", params=["fresh", "reuse"])
async def hostile_pool(request: pytest.FixtureRequest) -> AsyncIterator[sk.SandboxPool]:
    """The suite twice: a fresh container per run, then the reuse mode, where each
    program's canary often runs in the container the program used, scrubbed."""
    async with sk.SandboxPool(languages=["python"], size=2, reuse=request.param == "reuse") as p:
        yield p
        await settle(p)  # the suite's last program left nothing behind either


def runsc_available() -> bool:
    """gVisor is usable here: the engine knows runsc and a container starts under it."""
    try:
        out = subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "--runtime",
                "runsc",
                "--network",
                "none",
                "sandboxkit/base:bookworm",
                "true",
            ],
            capture_output=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


@pytest.fixture(scope="session", params=["runc", "runsc"])
async def any_runtime_pool(request: pytest.FixtureRequest) -> AsyncIterator[sk.SandboxPool]:
    """A pool per runtime, for the subset of the suite run under gVisor too."""
    runtime = request.param
    if runtime == "runsc" and not runsc_available():
        pytest.skip("runsc (gVisor) is not installed in this Docker engine")
    async with sk.SandboxPool(languages=["python"], size=1, runtime=runtime) as p:
        yield p
        await settle(p)
