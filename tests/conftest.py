"""Shared fixtures. Tests marked ``docker`` need a running engine: they fail (not skip)
when it is missing, since CI brings one up and a silent skip would hide a broken setup."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

import sandboxkit as sk
from sandboxkit._fleet.labels import LABEL_LANGUAGE, LABEL_POOL
from sandboxkit._languages import REGISTRY, LanguageSpec

if TYPE_CHECKING:  # imported by the fixtures: it needs httpx, not in the core install
    from pg_fleet import Postgres


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


def images_of(language: str) -> list[str]:
    """Ids of the images built for ``language`` (by the label every build sets)."""
    out = subprocess.run(
        ["docker", "images", "-q", "--filter", f"label={LABEL_LANGUAGE}={language}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted(set(out.stdout.split()))


@contextlib.contextmanager
def scratch_language(spec: LanguageSpec) -> Iterator[LanguageSpec]:
    """A language a test makes up: registered for the block only, and every image built
    for it removed at the end. Left behind, they showed in ``sandboxkit images list`` as
    a user's own ("custom") and the name stayed registered for the rest of the run."""
    before = REGISTRY._specs.get(spec.name)
    REGISTRY._specs[spec.name] = spec
    try:
        yield spec
    finally:
        if before is None:
            REGISTRY._specs.pop(spec.name, None)
        else:
            REGISTRY._specs[spec.name] = before
        ids = images_of(spec.name)
        if ids:
            subprocess.run(["docker", "image", "rm", "-f", *ids], capture_output=True, check=False)


def running_container_ids() -> set[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--no-trunc"], capture_output=True, text=True, check=True
    )
    return set(out.stdout.split())


# ---------------------------------------------------------------- PostgreSQL fleet
@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Postgres]:
    """One PostgreSQL cluster (scripts/postgres.sh) for the run, in a folder of its own
    under /tmp (open to the server's user) on a free port; stopped at the end."""
    from pg_fleet import Postgres

    folder = tempfile.mkdtemp(prefix="sandboxkit-pg-")
    cluster = Postgres(folder)
    try:
        cluster.start()
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(pg_cluster: Postgres) -> str:
    """postgresql://sandboxkit@127.0.0.1:PORT/sandboxkit of the run's cluster."""
    return pg_cluster.url


@pytest.fixture
async def pg_db_url(pg_cluster: Postgres, postgres_url: str) -> AsyncIterator[str]:
    """A new empty database for this test alone (dropped after it), as a URL. The
    cluster is started again first if a test crashed it and failed before restarting."""
    if not pg_cluster.running():
        pg_cluster.start()
    url = await pg_cluster.create_database()
    try:
        yield url
    finally:
        if pg_cluster.running():
            await pg_cluster.drop_database(url)
