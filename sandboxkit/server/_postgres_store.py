"""The fleet store: submissions, their queue and the workers' heartbeats in PostgreSQL
(asyncpg, a connection pool), shared by every API node and worker.

Why ``SELECT … FOR UPDATE SKIP LOCKED`` with leases rather than a queue library
(procrastinate, pgqueuer): the submission row *is* the job. Judge0's contract reads
the job's state (In Queue, Processing, the result) from the same row that is claimed,
so a second table of jobs would have to be kept in step with it, transactionally, by
hand; and the guarantees we need — a renewable lease, a fencing token that refuses a
stale worker's write, exactly one final result — are three short statements here,
where the libraries give at-least-once jobs whose results live elsewhere.

Wake-ups use LISTEN/NOTIFY on a connection of its own (a new submission wakes idle
workers; a finished one wakes ``wait=true`` requests); every wait also polls, so a
notification lost while the database restarts costs a poll interval, never a result.
Every statement is retried through connection failures for a bounded time; each one
is safe to repeat (inserts are keyed by token, finishes fenced by the attempt).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from ._store import (
    Admission,
    Claim,
    QueueFull,
    StoreUnavailable,
    TooManyInFlight,
    WorkerBeat,
    statistics_since,
)
from ._submission import Outcome, Submission
from ._wakeups import Wakeups

log = logging.getLogger("sandboxkit.server.postgres")
T = TypeVar("T")

# pg_advisory_xact_lock keys: the one-key space for migrations (one node at a time);
# the two-key space (another, by PostgreSQL's rules) for admission, in the functions
_SCHEMA_LOCK = 0x5B0C_7A11
QUEUED, FINISHED = "sandboxkit_queued", "sandboxkit_finished"

# Each entry upgrades the schema by one version; never edit one that has shipped.
MIGRATIONS = (
    """
    CREATE TABLE submissions (
        seq BIGSERIAL PRIMARY KEY,
        token TEXT NOT NULL UNIQUE,
        status_id INTEGER NOT NULL,
        language_id INTEGER NOT NULL,
        client TEXT NOT NULL DEFAULT '',
        attempt INTEGER NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_until TIMESTAMPTZ,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        data TEXT NOT NULL
    );
    CREATE INDEX submissions_unfinished ON submissions (seq) WHERE status_id IN (1, 2);
    CREATE INDEX submissions_client ON submissions (client) WHERE status_id IN (1, 2);
    -- one round trip per submission: the caps, the insert and the wake-up together
    -- (returns 0 stored, 1 queue full, 2 the client's cap; a repeat of a stored insert
    -- is 0). The queue cap takes one lock: concurrent inserts would all see room.
    CREATE FUNCTION sandboxkit_submit(
        p_tokens TEXT[], p_languages INTEGER[], p_data TEXT[], p_client TEXT,
        p_max_queue INTEGER, p_max_in_flight INTEGER
    ) RETURNS INTEGER LANGUAGE plpgsql AS $$
    DECLARE
        n INTEGER := cardinality(p_tokens);
        refused INTEGER := 0;
    BEGIN
        IF p_max_in_flight > 0 THEN
            PERFORM pg_advisory_xact_lock(1, hashtext(p_client));
            IF (SELECT count(*) FROM submissions
                WHERE client = p_client AND status_id IN (1, 2)) + n > p_max_in_flight THEN
                refused := 2;
            END IF;
        END IF;
        IF refused = 0 AND p_max_queue > 0 THEN
            PERFORM pg_advisory_xact_lock(2, 0);
            IF (SELECT count(*) FROM submissions WHERE status_id = 1) + n > p_max_queue THEN
                refused := 1;
            END IF;
        END IF;
        IF refused <> 0 THEN
            IF (SELECT count(*) FROM submissions WHERE token = ANY(p_tokens)) = n THEN
                RETURN 0;  -- a retry of an insert that committed
            END IF;
            RETURN refused;
        END IF;
        INSERT INTO submissions (token, status_id, language_id, client, data)
        SELECT t, 1, l, p_client, d FROM unnest(p_tokens, p_languages, p_data) AS u(t, l, d)
        ON CONFLICT (token) DO NOTHING;
        PERFORM pg_notify('sandboxkit_queued', '');
        RETURN 0;
    END $$;
    -- the fenced final write (and its wake-up) in one round trip; true when it landed
    -- now or already had (a repeat of our own finish)
    CREATE FUNCTION sandboxkit_finish(
        p_token TEXT, p_attempt INTEGER, p_owner TEXT, p_status INTEGER, p_data TEXT
    ) RETURNS BOOLEAN LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE submissions SET status_id = p_status, data = p_data, lease_until = NULL
        WHERE token = p_token AND attempt = p_attempt AND lease_owner = p_owner
            AND status_id = 2;
        IF FOUND THEN
            PERFORM pg_notify('sandboxkit_finished', p_token);
            RETURN true;
        END IF;
        RETURN EXISTS (SELECT 1 FROM submissions WHERE token = p_token
            AND attempt = p_attempt AND lease_owner = p_owner AND status_id NOT IN (1, 2));
    END $$;
    CREATE TABLE workers (
        name TEXT PRIMARY KEY,
        concurrency INTEGER NOT NULL,
        working INTEGER NOT NULL,
        judged BIGINT NOT NULL DEFAULT 0,
        failed BIGINT NOT NULL DEFAULT 0,
        beat_until TIMESTAMPTZ NOT NULL
    );
    """,
)


def _transient(exc: BaseException) -> bool:
    """A failure that a retry on a new connection can cure (the server restarting,
    the connection cut), not one the statement itself caused."""
    return isinstance(
        exc,
        (
            asyncpg.PostgresConnectionError,
            asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, starting up
            asyncpg.exceptions.InternalClientError,
            asyncpg.exceptions.ConnectionDoesNotExistError,
            asyncpg.exceptions.TooManyConnectionsError,
            OSError,
            asyncio.TimeoutError,
        ),
    ) or (isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc))


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """The pool's reset on release, skipped: it is one more round trip per statement,
    and ours leave no session state behind (no LISTEN, cursors, settings or session
    locks; the advisory locks are transaction-scoped)."""


async def migrate(conn: asyncpg.Connection) -> int:
    """Bring the schema to the newest version; safe when many processes start at once
    (an advisory lock serializes them; each applies only what is missing)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS sandboxkit_schema "
            "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        version = int(
            await conn.fetchval("SELECT coalesce(max(version), 0) FROM sandboxkit_schema")
        )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await conn.execute(script)
            await conn.execute("INSERT INTO sandboxkit_schema (version) VALUES ($1)", number)
        return len(MIGRATIONS)


class PostgresStore:
    def __init__(self, url: str, *, retry_for: float = 30.0, pool_size: int = 10) -> None:
        self.url = url
        self.retry_for = retry_for
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncio.Task[None] | None = None
        self._wakeups = Wakeups()

    # ---- life cycle
    async def open(self) -> None:
        async def connect() -> None:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self._pool_size,
                command_timeout=30,
                reset=_keep_session,
            )

        await self._retrying(connect)
        await self._with_conn(migrate)
        self._listener = asyncio.create_task(self._listen())

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._pool is not None:
            await asyncio.wait_for(self._pool.close(), 10)

    async def _retrying(self, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(_transient),
                stop=stop_after_delay(self.retry_for),
                wait=wait_exponential(multiplier=0.05, max=1.0),
                reraise=True,
            ):
                with attempt:
                    return await fn()
        except Exception as exc:
            if _transient(exc):
                raise StoreUnavailable(
                    f"PostgreSQL did not answer for {self.retry_for:.0f} s: {exc}"
                ) from exc
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _with_conn(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        async def once() -> T:
            assert self._pool is not None, "open() the store first"
            async with self._pool.acquire() as conn:
                return await fn(conn)

        return await self._retrying(once)

    async def _listen(self) -> None:
        """Hold a LISTEN connection; after each loss, reconnect and wake every waiter
        (a notification may have been missed while it was down)."""
        delay = 0.1
        while True:
            lost = asyncio.Event()

            def on_lost(_conn: object, lost: asyncio.Event = lost) -> None:
                lost.set()

            try:
                conn = await asyncpg.connect(self.url, timeout=5)
            except Exception as exc:  # noqa: BLE001 - down: try again, slower
                log.debug("listener connect failed: %s", exc)
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)
                continue
            delay = 0.1
            try:
                conn.add_termination_listener(on_lost)
                await conn.add_listener(QUEUED, lambda *_a: self._wakeups.queued())
                await conn.add_listener(FINISHED, self._on_finished)
                self._wakeups.everyone()
                await lost.wait()
            except Exception as exc:  # noqa: BLE001 - lost: reconnect
                log.debug("listener lost: %s", exc)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 2)

    def _on_finished(self, _conn: object, _pid: int, _channel: str, token: object) -> None:
        self._wakeups.finished(str(token))

    @property
    def wakeups(self) -> Wakeups:
        return self._wakeups

    # ---- submissions
    async def insert(self, records: Sequence[Submission], admission: Admission) -> None:
        if not records:
            return

        async def run(conn: asyncpg.Connection) -> int:
            return int(
                await conn.fetchval(
                    "SELECT sandboxkit_submit($1, $2, $3, $4, $5, $6)",
                    [r.token for r in records],
                    [r.language_id for r in records],
                    [r.dumps() for r in records],
                    admission.client,
                    admission.max_queue,
                    admission.max_in_flight,
                )
            )

        refused = await self._with_conn(run)
        if refused == 1:
            raise QueueFull
        if refused == 2:
            raise TooManyInFlight(admission.max_in_flight)

    async def get_many(self, tokens: Sequence[str]) -> dict[str, Submission]:
        if not tokens:
            return {}

        async def run(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return list(
                await conn.fetch(
                    "SELECT token, status_id, data FROM submissions WHERE token = ANY($1::text[])",
                    list(tokens),
                )
            )

        rows = await self._with_conn(run)
        return {r["token"]: Submission.loads(r["data"], r["status_id"]) for r in rows}

    async def page(self, page: int, per_page: int) -> tuple[list[Submission], int]:
        async def run(conn: asyncpg.Connection) -> tuple[list[asyncpg.Record], int]:
            total = await conn.fetchval("SELECT count(*) FROM submissions")
            rows = await conn.fetch(
                "SELECT status_id, data FROM submissions ORDER BY seq DESC LIMIT $1 OFFSET $2",
                per_page,
                (page - 1) * per_page,
            )
            return list(rows), int(total)

        rows, total = await self._with_conn(run)
        return [Submission.loads(r["data"], r["status_id"]) for r in rows], total

    async def delete(self, token: str) -> None:
        async def run(conn: asyncpg.Connection) -> None:
            await conn.execute("DELETE FROM submissions WHERE token = $1", token)

        await self._with_conn(run)

    async def counts_by_status(self) -> dict[int, int]:
        async def run(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return list(
                await conn.fetch("SELECT status_id, count(*) AS n FROM submissions GROUP BY 1")
            )

        return {int(r["status_id"]): int(r["n"]) for r in await self._with_conn(run)}

    async def statistics(self) -> dict[str, Any]:
        async def run(conn: asyncpg.Connection) -> dict[str, Any]:
            total = await conn.fetchval("SELECT count(*) FROM submissions")
            days = await conn.fetch(
                "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, "
                "count(*) AS n FROM submissions "
                "WHERE created_at >= ($1::text)::date::timestamp AT TIME ZONE 'UTC' GROUP BY 1",
                statistics_since(),
            )
            languages = await conn.fetch(
                "SELECT language_id, count(*) AS n FROM submissions GROUP BY 1 ORDER BY 2 DESC"
            )
            statuses = await conn.fetch(
                "SELECT status_id, count(*) AS n FROM submissions GROUP BY 1 ORDER BY 1"
            )
            size = await conn.fetchval("SELECT pg_database_size(current_database())")
            return {
                "total": int(total),
                "days": {str(r["day"]): int(r["n"]) for r in days},
                "languages": [(int(r["language_id"]), int(r["n"])) for r in languages],
                "statuses": [(int(r["status_id"]), int(r["n"])) for r in statuses],
                "size": int(size),
            }

        return await self._with_conn(run)

    # ---- the queue
    async def claim(self, owner: str, lease: float) -> Claim | None:
        async def run(conn: asyncpg.Connection) -> asyncpg.Record | None:
            row: asyncpg.Record | None = await conn.fetchrow(
                """
                WITH next AS (
                    SELECT seq FROM submissions
                    WHERE status_id IN (1, 2) AND (lease_until IS NULL OR lease_until < now())
                    ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED
                )
                UPDATE submissions s
                SET status_id = 2, attempt = s.attempt + 1, lease_owner = $1,
                    lease_until = now() + make_interval(secs => $2)
                FROM next WHERE s.seq = next.seq
                RETURNING s.token, s.attempt, s.data
                """,
                owner,
                float(lease),
            )
            return row

        row = await self._with_conn(run)
        if row is None:
            return None
        return Claim(row["token"], row["attempt"], owner, Submission.loads(row["data"], 2))

    async def renew(self, claim: Claim, lease: float) -> bool:
        async def run(conn: asyncpg.Connection) -> str:
            return str(
                await conn.execute(
                    "UPDATE submissions SET lease_until = now() + make_interval(secs => $4) "
                    "WHERE token = $1 AND attempt = $2 AND lease_owner = $3 AND status_id = 2",
                    claim.token,
                    claim.attempt,
                    claim.owner,
                    float(lease),
                )
            )

        return await self._with_conn(run) == "UPDATE 1"

    async def finish(self, claim: Claim, outcome: Outcome) -> bool:
        record = claim.record.finished(outcome)

        async def run(conn: asyncpg.Connection) -> bool:
            return bool(
                await conn.fetchval(
                    "SELECT sandboxkit_finish($1, $2, $3, $4, $5)",
                    claim.token,
                    claim.attempt,
                    claim.owner,
                    record.status_id,
                    record.dumps(),
                )
            )

        return await self._with_conn(run)

    async def release(self, claim: Claim) -> None:
        async def run(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "UPDATE submissions SET lease_until = NULL "
                "WHERE token = $1 AND attempt = $2 AND lease_owner = $3 AND status_id = 2",
                claim.token,
                claim.attempt,
                claim.owner,
            )
            await conn.execute("SELECT pg_notify($1, '')", QUEUED)

        await self._with_conn(run)

    # ---- heartbeats
    async def heartbeat(self, beat: WorkerBeat, ttl: float) -> None:
        async def run(conn: asyncpg.Connection) -> None:
            await conn.execute(
                """
                INSERT INTO workers (name, concurrency, working, judged, failed, beat_until)
                VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
                ON CONFLICT (name) DO UPDATE SET concurrency = $2, working = $3,
                    judged = $4, failed = $5, beat_until = now() + make_interval(secs => $6)
                """,
                beat.name,
                beat.concurrency,
                beat.working,
                beat.judged,
                beat.failed,
                float(ttl),
            )

        await self._with_conn(run)

    async def forget_worker(self, name: str) -> None:
        async def run(conn: asyncpg.Connection) -> None:
            await conn.execute("DELETE FROM workers WHERE name = $1", name)

        await self._with_conn(run)

    async def workers(self) -> list[WorkerBeat]:
        async def run(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return list(
                await conn.fetch(
                    "SELECT name, concurrency, working, judged, failed FROM workers "
                    "WHERE beat_until > now() ORDER BY name"
                )
            )

        return [
            WorkerBeat(r["name"], r["concurrency"], r["working"], r["judged"], r["failed"])
            for r in await self._with_conn(run)
        ]
