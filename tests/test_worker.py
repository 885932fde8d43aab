"""``run_worker`` (what ``sandboxkit worker`` runs) in this process, on a real
PostgreSQL and the local engine named explicitly, as a fleet of one: it judges what is
queued, heartbeats its concurrency lowered to the engines' capacity, hands back what it
holds when stopped, and leaves no sandbox."""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

import pytest
from conftest import running_container_ids

import sandboxkit as sk
from sandboxkit._fleet.labels import LABEL_OWNER, LABEL_POOL, owner_identity
from sandboxkit.server import run_worker
from sandboxkit.server._requests import parse_submission
from sandboxkit.server._store import Admission
from sandboxkit.server._submission import Submission

pytestmark = pytest.mark.docker
pytest.importorskip("asyncpg")


def submission(source: str, **fields: Any) -> Submission:
    record, errors = parse_submission(
        {"source_code": source, "language_id": 71, **fields},
        b64=False,
        max_source_bytes=1 << 20,
        max_io_bytes=1 << 20,
    )
    assert record is not None, errors
    return record


def my_containers() -> dict[str, str]:
    """This process's containers (other suites may be running): id → pool id."""
    out = subprocess.run(
        [
            "docker",
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            f"label={LABEL_OWNER}={owner_identity()}",
            "--format",
            f'{{{{.ID}}}} {{{{.Label "{LABEL_POOL}"}}}}',
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)


def my_pools() -> set[str]:
    return set(my_containers().values())


async def final(store: Any, tokens: list[str], timeout: float = 120) -> dict[str, Submission]:
    deadline = time.monotonic() + timeout
    while True:
        got = await store.get_many(tokens)
        if all(got[t].status_id > 2 for t in tokens) or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.1)


async def test_worker_judges_on_the_engines_given_within_their_capacity(
    pg_db_url: str,
) -> None:
    from sandboxkit.server._postgres_store import PostgresStore

    before = running_container_ids()
    # pools of this process that outlive the test (the session's shared pool, the
    # default pool) replace their idle sandboxes as they age: theirs are not the worker's
    others = my_pools()

    store = PostgresStore(pg_db_url)
    await store.open()
    stop = asyncio.Event()
    engine = sk.EngineConfig("unix:///var/run/docker.sock", capacity=1)
    task = asyncio.create_task(
        run_worker(pg_db_url, engines=[engine], concurrency=4, name="solo", stop=stop, grace=0.5)
    )
    try:
        ok = submission("print(input())", stdin="7", expected_output="7")
        wrong = submission("print(8)", expected_output="7")
        await store.insert([ok, wrong], Admission())
        got = await final(store, [ok.token, wrong.token])
        assert got[ok.token].status_id == 3 and got[ok.token].stdout == "7\n"
        assert got[wrong.token].status_id == 4
        beats = await store.workers()
        assert [(b.name, b.concurrency) for b in beats] == [("solo", 1)]  # clamped to 1

        # stopped while judging a long one: it goes back to the queue at once
        slow = submission("import time; time.sleep(15)", wall_time_limit=20, cpu_time_limit=5)
        await store.insert([slow], Admission())
        deadline = time.monotonic() + 60
        while (await store.get_many([slow.token]))[slow.token].status_id != 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
    finally:
        stop.set()
    await asyncio.wait_for(task, 30)  # past the 0.5 s grace it hands the slow one back
    try:
        again = await store.claim("next", 30)
        assert again is not None and again.token == slow.token and again.attempt == 2
        assert await store.workers() == []  # it said goodbye
    finally:
        await store.close()
    leftover: dict[str, str] = {}
    for _ in range(25):  # the pool waited for late creates: none may come now
        leftover = {cid: pool for cid, pool in my_containers().items() if cid not in before}
        leftover = {cid: pool for cid, pool in leftover.items() if pool not in others}
        if not leftover:
            break
        await asyncio.sleep(0.2)
    assert not leftover
