"""Submissions kept in SQLite (stdlib ``sqlite3``), so a restart loses none.

One connection, used from worker threads under a lock (``anyio.to_thread``), so the
event loop never blocks on disk. A submission is one row: its token, its status id
(to find unfinished work after a restart) and its attributes as JSON.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio.to_thread


def now_date() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    token TEXT NOT NULL UNIQUE,
    status_id INTEGER NOT NULL,
    data TEXT NOT NULL
)
"""


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    # ---- sync core (runs in a worker thread)
    def _insert(self, records: Sequence[dict[str, Any]]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO submissions (token, status_id, data) VALUES (?, ?, ?)",
                    [(r["token"], r["status_id"], json.dumps(r)) for r in records],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _update(self, token: str, changes: dict[str, Any]) -> None:
        with self._lock:
            row = self._db.execute(
                "SELECT data FROM submissions WHERE token = ?", (token,)
            ).fetchone()
            if row is None:
                return
            data = json.loads(row[0])
            data.update(changes)
            self._db.execute(
                "UPDATE submissions SET status_id = ?, data = ? WHERE token = ?",
                (data["status_id"], json.dumps(data), token),
            )

    def _get_many(self, tokens: Sequence[str]) -> dict[str, dict[str, Any]]:
        with self._lock:
            marks = ",".join("?" * len(tokens))
            rows = self._db.execute(
                f"SELECT token, data FROM submissions WHERE token IN ({marks})",  # noqa: S608
                tuple(tokens),
            ).fetchall()
        return {t: json.loads(d) for t, d in rows}

    def _unfinished(self) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT token FROM submissions WHERE status_id IN (1, 2) ORDER BY seq"
            ).fetchall()
        return [r[0] for r in rows]

    def _page(self, page: int, per_page: int) -> tuple[list[dict[str, Any]], int]:
        with self._lock:
            total = self._db.execute("SELECT COUNT(*) FROM submissions").fetchone()[0]
            rows = self._db.execute(
                "SELECT data FROM submissions ORDER BY seq DESC LIMIT ? OFFSET ?",
                (per_page, (page - 1) * per_page),
            ).fetchall()
        return [json.loads(r[0]) for r in rows], int(total)

    def _delete(self, token: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM submissions WHERE token = ?", (token,))

    def _statistics(self) -> dict[str, Any]:
        with self._lock:
            rows = self._db.execute("SELECT status_id, data FROM submissions").fetchall()
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            size = self._db.execute("PRAGMA page_size").fetchone()[0]
        today = now_date()
        languages: dict[int, int] = {}
        statuses: dict[int, int] = {}
        in_day = 0
        for status_id, data in rows:
            record = json.loads(data)
            languages[record["language_id"]] = languages.get(record["language_id"], 0) + 1
            statuses[status_id] = statuses.get(status_id, 0) + 1
            in_day += str(record.get("created_at", "")).startswith(today)
        return {
            "total": len(rows),
            "today": in_day,
            "languages": sorted(languages.items(), key=lambda kv: -kv[1]),
            "statuses": sorted(statuses.items()),
            "size": int(pages) * int(size),
        }

    # ---- async face
    async def page(self, page: int, per_page: int) -> tuple[list[dict[str, Any]], int]:
        return await anyio.to_thread.run_sync(self._page, page, per_page)

    async def delete(self, token: str) -> None:
        await anyio.to_thread.run_sync(self._delete, token)

    async def statistics(self) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(self._statistics)

    async def insert(self, records: Sequence[dict[str, Any]]) -> None:
        await anyio.to_thread.run_sync(self._insert, records)

    async def update(self, token: str, changes: dict[str, Any]) -> None:
        await anyio.to_thread.run_sync(self._update, token, changes)

    async def get(self, token: str) -> dict[str, Any] | None:
        return (await self.get_many([token])).get(token)

    async def get_many(self, tokens: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not tokens:
            return {}
        return await anyio.to_thread.run_sync(self._get_many, list(tokens))

    async def unfinished(self) -> list[str]:
        return await anyio.to_thread.run_sync(self._unfinished)

    def close(self) -> None:
        with self._lock:
            self._db.close()
