"""Shared fixtures. Tests marked ``docker`` need a running engine: they fail (not skip)
when it is missing, since CI brings one up and a silent skip would hide a broken setup."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator

import pytest

import sandboxkit as sk
from sandboxkit._labels import LABEL_POOL


@pytest.fixture(scope="session")
async def pool() -> AsyncIterator[sk.SandboxPool]:
    """One warm Python pool shared by the Docker tests of a run."""
    async with sk.SandboxPool(languages=["python"], size=2) as p:
        yield p


def containers_of_pool(pool_id: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={LABEL_POOL}={pool_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def running_container_ids() -> set[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--no-trunc"], capture_output=True, text=True, check=True
    )
    return set(out.stdout.split())
