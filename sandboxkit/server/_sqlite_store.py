"""The embedded store: submissions in SQLite (stdlib ``sqlite3``), so a restart loses
none; one process judges them, so the queue's wake-ups are in-process events.

One connection, used from worker threads under a lock (``anyio.to_thread``), so the
event loop never blocks on disk. Schema versions are counted in ``PRAGMA user_version``
and applied at open: a file written by an older release is upgraded in place.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from ._judge0 import IN_QUEUE, PROCESSING
from ._store import (
    UNFINISHED,
    Admission,
    Claim,
    QueueFull,
    TooManyInFlight,
    WorkerBeat,
    statistics_since,
)
from ._submission import Outcome, Submission
from ._wakeups import Wakeups

T = TypeVar("T")

# Each entry upgrades the schema by one version; never edit one that has shipped.
_MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS submissions (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        token TEXT NOT NULL UNIQUE,
        status_id INTEGER NOT NULL,
        data TEXT NOT NULL
    )
    """,
    """
    ALTER TABLE submissions ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE submissions ADD COLUMN lease_owner TEXT;
    ALTER TABLE submissions ADD COLUMN lease_until REAL;
    ALTER TABLE submissions ADD COLUMN client TEXT NOT NULL DEFAULT '';
    CREATE INDEX IF NOT EXISTS submissions_unfinished ON submissions (seq)
        WHERE status_id IN (1, 2);
    """,
)


class SqliteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()
        self._wakeups = Wakeups()
        self._beats: dict[str, tuple[float, WorkerBeat]] = {}

    def _migrate(self) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # one process migrates; others wait
            try:
                version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
                for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
                    for statement in filter(str.strip, script.split(";")):
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version = {number}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(fn, *args)

    async def open(self) -> None:
        # one process owns the file: a lease held at open is a previous run's, and
        # that run is gone, so its submissions go back to the queue now
        def release_all() -> None:
            with self._lock:
                self._db.execute("UPDATE submissions SET lease_until = NULL WHERE status_id = 2")

        await self._call(release_all)

    async def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- sync core (runs in a worker thread, under the lock)
    def _insert(self, records: Sequence[Submission], admission: Admission) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                marks = ",".join("?" * len(records))
                (present,) = self._db.execute(
                    f"SELECT COUNT(*) FROM submissions WHERE token IN ({marks})",  # noqa: S608
                    tuple(r.token for r in records),
                ).fetchone()
                if present == len(records):  # a retry of an insert that committed
                    self._db.execute("COMMIT")
                    return
                if admission.max_in_flight:
                    (mine,) = self._db.execute(
                        "SELECT COUNT(*) FROM submissions WHERE client = ? AND status_id IN (1, 2)",
                        (admission.client,),
                    ).fetchone()
                    if mine + len(records) > admission.max_in_flight:
                        raise TooManyInFlight(admission.max_in_flight)
                if admission.max_queue:
                    (depth,) = self._db.execute(
                        "SELECT COUNT(*) FROM submissions WHERE status_id = 1"
                    ).fetchone()
                    if depth + len(records) > admission.max_queue:
                        raise QueueFull
                self._db.executemany(
                    "INSERT OR IGNORE INTO submissions (token, status_id, data, client) "
                    "VALUES (?, ?, ?, ?)",
                    [(r.token, IN_QUEUE, r.dumps(), admission.client) for r in records],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _get_many(self, tokens: Sequence[str]) -> dict[str, Submission]:
        with self._lock:
            marks = ",".join("?" * len(tokens))
            rows = self._db.execute(
                f"SELECT token, status_id, data FROM submissions WHERE token IN ({marks})",  # noqa: S608
                tuple(tokens),
            ).fetchall()
        return {t: Submission.loads(d, s) for t, s, d in rows}

    def _page(self, page: int, per_page: int) -> tuple[list[Submission], int]:
        with self._lock:
            total = self._db.execute("SELECT COUNT(*) FROM submissions").fetchone()[0]
            rows = self._db.execute(
                "SELECT status_id, data FROM submissions ORDER BY seq DESC LIMIT ? OFFSET ?",
                (per_page, (page - 1) * per_page),
            ).fetchall()
        return [Submission.loads(d, s) for s, d in rows], int(total)

    def _delete(self, token: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM submissions WHERE token = ?", (token,))

    def _counts(self) -> dict[int, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT status_id, COUNT(*) FROM submissions GROUP BY status_id"
            ).fetchall()
        return {int(s): int(n) for s, n in rows}

    def _statistics(self) -> dict[str, Any]:
        with self._lock:
            rows = self._db.execute("SELECT status_id, data FROM submissions").fetchall()
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            size = self._db.execute("PRAGMA page_size").fetchone()[0]
        since = statistics_since()
        languages: dict[int, int] = {}
        statuses: dict[int, int] = {}
        days: dict[str, int] = {}
        for status_id, data in rows:
            record = json.loads(data)
            languages[record["language_id"]] = languages.get(record["language_id"], 0) + 1
            statuses[status_id] = statuses.get(status_id, 0) + 1
            day = str(record.get("created_at", ""))[:10]  # UTC, as every created_at here
            if day >= since:
                days[day] = days.get(day, 0) + 1
        return {
            "total": len(rows),
            "days": days,
            "languages": sorted(languages.items(), key=lambda kv: -kv[1]),
            "statuses": sorted(statuses.items()),
            "size": int(pages) * int(size),
        }

    def _claim(self, owner: str, lease: float) -> Claim | None:
        now = time.time()
        with self._lock:
            row = self._db.execute(
                "SELECT seq, token, attempt, data FROM submissions "
                "WHERE status_id IN (1, 2) AND (lease_until IS NULL OR lease_until < ?) "
                "ORDER BY seq LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return None
            seq, token, attempt, data = row
            self._db.execute(
                "UPDATE submissions SET status_id = ?, attempt = ?, lease_owner = ?, "
                "lease_until = ? WHERE seq = ?",
                (PROCESSING, attempt + 1, owner, now + lease, seq),
            )
        return Claim(token, attempt + 1, owner, Submission.loads(data, PROCESSING))

    def _renew(self, claim: Claim, lease: float) -> bool:
        with self._lock:
            cursor = self._db.execute(
                "UPDATE submissions SET lease_until = ? WHERE token = ? AND attempt = ? "
                "AND lease_owner = ? AND status_id = 2",
                (time.time() + lease, claim.token, claim.attempt, claim.owner),
            )
        return cursor.rowcount == 1

    def _finish(self, claim: Claim, outcome: Outcome) -> bool:
        record = claim.record.finished(outcome)
        with self._lock:
            cursor = self._db.execute(
                "UPDATE submissions SET status_id = ?, data = ?, lease_until = NULL "
                "WHERE token = ? AND attempt = ? AND lease_owner = ? AND status_id = 2",
                (
                    record.status_id,
                    record.dumps(),
                    claim.token,
                    claim.attempt,
                    claim.owner,
                ),
            )
            if cursor.rowcount == 1:
                return True
            # refused, unless our own write landed already (a repeated finish)
            row = self._db.execute(
                "SELECT status_id, attempt, lease_owner FROM submissions WHERE token = ?",
                (claim.token,),
            ).fetchone()
        return bool(
            row is not None
            and row[0] not in UNFINISHED
            and (row[1], row[2]) == (claim.attempt, claim.owner)
        )

    # ---- async face
    async def insert(self, records: Sequence[Submission], admission: Admission) -> None:
        if records:
            await self._call(self._insert, records, admission)
            self._wakeups.queued()

    async def get_many(self, tokens: Sequence[str]) -> dict[str, Submission]:
        if not tokens:
            return {}
        return await self._call(self._get_many, list(tokens))

    async def page(self, page: int, per_page: int) -> tuple[list[Submission], int]:
        return await self._call(self._page, page, per_page)

    async def delete(self, token: str) -> None:
        await self._call(self._delete, token)

    async def statistics(self) -> dict[str, Any]:
        return await self._call(self._statistics)

    async def counts_by_status(self) -> dict[int, int]:
        return await self._call(self._counts)

    async def claim(self, owner: str, lease: float) -> Claim | None:
        return await self._call(self._claim, owner, lease)

    async def renew(self, claim: Claim, lease: float) -> bool:
        return await self._call(self._renew, claim, lease)

    async def finish(self, claim: Claim, outcome: Outcome) -> bool:
        done = await self._call(self._finish, claim, outcome)
        self._wakeups.finished(claim.token)
        return done

    async def release(self, claim: Claim) -> None:
        def run() -> None:
            with self._lock:
                self._db.execute(
                    "UPDATE submissions SET lease_until = NULL WHERE token = ? AND attempt = ? "
                    "AND lease_owner = ? AND status_id = 2",
                    (claim.token, claim.attempt, claim.owner),
                )

        await self._call(run)
        self._wakeups.queued()

    @property
    def wakeups(self) -> Wakeups:
        return self._wakeups

    async def heartbeat(self, beat: WorkerBeat, ttl: float) -> None:
        self._beats[beat.name] = (time.monotonic() + ttl, beat)

    async def forget_worker(self, name: str) -> None:
        self._beats.pop(name, None)

    async def workers(self) -> list[WorkerBeat]:
        now = time.monotonic()
        return [beat for until, beat in self._beats.values() if until > now]
