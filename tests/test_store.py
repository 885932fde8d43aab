"""The server's stores, SQLite and PostgreSQL, against one contract: the queue's
leases and fencing (a stale worker's write is refused, each token ends once),
admission caps, heartbeats, migrations. PostgreSQL cases run on a real server
(``postgres_url``, started by ``scripts/postgres.sh``), a fresh database each."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from sandboxkit.server._requests import now
from sandboxkit.server._sqlite_store import SqliteStore
from sandboxkit.server._store import (
    Admission,
    QueueFull,
    Store,
    TooManyInFlight,
    WorkerBeat,
)
from sandboxkit.server._submission import Outcome, Submission

asyncpg = pytest.importorskip("asyncpg")


def record(**extra: Any) -> Submission:
    fields: dict[str, Any] = {"created_at": "2026-12-01T00:00:00.000Z", **extra}
    return Submission(token=str(uuid.uuid4()), language_id=71, **fields)


async def fresh_database(server_url: str) -> str:
    """A new empty database on the server ``server_url`` points at."""
    name = "t_" + secrets.token_hex(6)
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return server_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        made: Store = SqliteStore(tmp_path / "s.sqlite3")
    else:
        from sandboxkit.server._postgres_store import PostgresStore

        made = PostgresStore(await fresh_database(request.getfixturevalue("postgres_url")))
    await made.open()
    try:
        yield made
    finally:
        await made.close()


async def test_claims_oldest_first_once_each(store: Store) -> None:
    first, second = record(), record()
    await store.insert([first, second], Admission())
    a = await store.claim("w1", 30)
    b = await store.claim("w2", 30)
    assert a is not None and b is not None
    assert (a.token, b.token) == (first.token, second.token)
    assert a.record == replace(first, status_id=2)  # as stored, now Processing
    assert await store.claim("w3", 30) is None
    seen = await store.get_many([first.token])
    assert seen[first.token].status_id == 2  # Processing while claimed


async def test_concurrent_claims_never_share_a_submission(store: Store) -> None:
    records = [record() for _ in range(12)]
    await store.insert(records, Admission())
    claims = await asyncio.gather(*(store.claim(f"w{i}", 30) for i in range(20)))
    tokens = [c.token for c in claims if c is not None]
    assert sorted(tokens) == sorted(r.token for r in records)


async def test_expired_lease_moves_on_and_the_stale_write_is_refused(store: Store) -> None:
    mine = record()
    await store.insert([mine], Admission())
    stale = await store.claim("slow", 1.0)
    assert stale is not None and await store.renew(stale, 1.0)
    await asyncio.sleep(1.2)  # the lease runs out: the slow worker stalled
    fresh = await store.claim("quick", 30)
    assert fresh is not None and fresh.token == mine.token and fresh.attempt == stale.attempt + 1
    assert not await store.renew(stale, 30)
    assert not await store.finish(stale, Outcome(status_id=4, stdout="stale"))
    assert await store.finish(fresh, Outcome(status_id=3, stdout="fresh"))
    assert await store.finish(fresh, Outcome(status_id=3, stdout="fresh"))  # a repeat: its own
    assert not await store.finish(stale, Outcome(status_id=4, stdout="late"))
    final = (await store.get_many([mine.token]))[mine.token]
    assert final == mine.finished(Outcome(status_id=3, stdout="fresh"))
    assert await store.claim("other", 30) is None  # finished: never claimed again


async def test_released_submission_is_claimable_at_once(store: Store) -> None:
    mine = record()
    await store.insert([mine], Admission())
    held = await store.claim("stopping", 60)
    assert held is not None
    assert await store.claim("other", 60) is None
    await store.release(held)
    again = await store.claim("other", 60)
    assert again is not None and again.token == mine.token
    assert not await store.finish(held, Outcome(status_id=3))


async def test_queue_cap_and_per_client_cap(store: Store) -> None:
    await store.insert([record(), record()], Admission(max_queue=2))
    with pytest.raises(QueueFull):
        await store.insert([record()], Admission(max_queue=2))
    assert sum((await store.counts_by_status()).values()) == 2

    alice = Admission(client="alice", max_in_flight=2)
    await store.insert([record(), record()], alice)
    with pytest.raises(TooManyInFlight, match="limit 2"):
        await store.insert([record()], alice)
    await store.insert([record()], Admission(client="bob", max_in_flight=2))  # bob unaffected
    # alice's work finishing frees her share
    done = 0
    while (claim := await store.claim("w", 30)) is not None:
        await store.finish(claim, Outcome(status_id=3))
        done += 1
    assert done == 5
    await store.insert([record()], alice)


async def test_insert_is_idempotent_by_token(store: Store) -> None:
    mine = record()
    await store.insert([mine], Admission(max_queue=1))
    await store.insert([mine], Admission(max_queue=1))  # a retry after a lost answer
    assert (await store.counts_by_status()) == {1: 1}


async def test_heartbeats_expire(store: Store) -> None:
    await store.heartbeat(WorkerBeat("a", 2, 1), ttl=30)
    await store.heartbeat(WorkerBeat("b", 3, 0), ttl=0.5)
    assert sorted(b.name for b in await store.workers()) == ["a", "b"]
    await asyncio.sleep(0.8)
    assert [(b.name, b.concurrency, b.working) for b in await store.workers()] == [("a", 2, 1)]
    await store.forget_worker("a")
    assert await store.workers() == []


async def test_wait_finished_wakes_on_the_result(store: Store) -> None:
    mine = record()
    await store.insert([mine], Admission())
    claim = await store.claim("w", 30)
    assert claim is not None
    with store.wakeups.watch(mine.token) as finished:
        waiter = asyncio.create_task(finished.wait())
        await asyncio.sleep(0.2)
        assert not waiter.done()
        await store.finish(claim, Outcome(status_id=3))
        await asyncio.wait_for(waiter, 5)  # woken by the finish (PostgreSQL: its NOTIFY)


async def test_sqlite_file_of_the_previous_release_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE submissions (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
        "token TEXT NOT NULL UNIQUE, status_id INTEGER NOT NULL, data TEXT NOT NULL)"
    )
    queued, done = record(), record(status_id=3, stdout="7\n")
    for r in (done, queued):
        old.execute(
            "INSERT INTO submissions (token, status_id, data) VALUES (?, ?, ?)",
            (r.token, r.status_id, r.dumps()),
        )
    old.commit()
    old.close()
    store = SqliteStore(path)
    await store.open()
    try:
        got = await store.get_many([done.token])
        assert got[done.token] == done
        claim = await store.claim("w", 30)
        assert claim is not None and claim.token == queued.token
    finally:
        await store.close()


async def test_postgres_migrations_are_safe_when_nodes_start_together(
    postgres_url: str,
) -> None:
    from sandboxkit.server._postgres_store import MIGRATIONS, PostgresStore

    url = await fresh_database(postgres_url)
    stores = [PostgresStore(url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        conn = await asyncpg.connect(url)
        try:
            versions = [r[0] for r in await conn.fetch("SELECT version FROM sandboxkit_schema")]
        finally:
            await conn.close()
        assert sorted(versions) == list(range(1, len(MIGRATIONS) + 1))
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_caps_hold_under_concurrent_inserts(store: Store) -> None:
    async def submit(client: str, cap: Admission) -> bool:
        try:
            await store.insert([record()], cap)
        except (QueueFull, TooManyInFlight):
            return False
        return True

    stored = await asyncio.gather(*(submit(f"c{i}", Admission(max_queue=5)) for i in range(30)))
    assert sum(stored) == 5 and (await store.counts_by_status()) == {1: 5}
    one = Admission(client="same", max_in_flight=3)
    stored = await asyncio.gather(*(submit("same", one) for _ in range(20)))
    assert sum(stored) == 3


async def test_statistics_count_by_day(store: Store) -> None:
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    made = [record(created_at=now()) for _ in range(2)]
    await store.insert(made, Admission())
    stats = await store.statistics()
    assert stats["total"] == 2 and stats["days"] == {today: 2}
    assert stats["languages"] == [(71, 2)] and stats["statuses"] == [(1, 2)]
    assert stats["size"] > 0
