"""What the server keeps and how work is handed out: the ``Store`` protocol.

Two stores implement it: SQLite (one process: the API judges in-process) and
PostgreSQL (a fleet: API nodes and workers on many hosts share one database). The
queue lives in the store itself: a submission is a row; a worker *claims* it with a
lease it renews while judging, and *finishes* it with a write that is refused when the
lease was lost (the claim's ``attempt`` is a fencing token), so a worker that died or
stalled can never overwrite the result of the one that took over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from ._judge0 import IN_QUEUE, PROCESSING
from ._submission import Outcome, Submission
from ._wakeups import Wakeups

UNFINISHED = (IN_QUEUE, PROCESSING)
STATISTICS_DAYS = 30  # Judge0's /statistics counts the submissions of the last 30 days


def statistics_since() -> str:
    """The first day (UTC, ``YYYY-MM-DD``) that ``Store.statistics`` counts by day."""
    return (datetime.now(timezone.utc) - timedelta(days=STATISTICS_DAYS)).strftime("%Y-%m-%d")


class QueueFull(Exception):
    """Judge0's MAX_QUEUE_SIZE reached (answered 503)."""


class TooManyInFlight(Exception):
    """One client has its cap of submissions in queue or being judged (answered 429)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"too many submissions in queue or being judged for this user (limit {limit}): "
            "wait for some to finish"
        )


class StoreUnavailable(Exception):
    """The database did not answer within the retry budget (answered 503)."""


@dataclass(frozen=True)
class Claim:
    """A submission a worker holds: the record, and the lease's fencing token."""

    token: str
    attempt: int
    owner: str
    record: Submission


@dataclass(frozen=True)
class WorkerBeat:
    """One worker's heartbeat: what ``GET /workers`` and ``/metrics`` count."""

    name: str
    concurrency: int
    working: int
    judged: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Admission:
    """Who submits and the caps that apply (``0`` disables one)."""

    client: str = ""
    max_queue: int = 0
    max_in_flight: int = 0


class Store(Protocol):
    """Submissions, the queue over them, and the workers' heartbeats."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    # ---- submissions (API nodes)
    async def insert(self, records: Sequence[Submission], admission: Admission) -> None:
        """Store ``records`` (In Queue) atomically; raises QueueFull or TooManyInFlight
        and stores none when a cap would be passed. Returns once they are durable."""

    async def get_many(self, tokens: Sequence[str]) -> dict[str, Submission]: ...
    async def page(self, page: int, per_page: int) -> tuple[list[Submission], int]: ...
    async def delete(self, token: str) -> None: ...
    async def statistics(self) -> dict[str, Any]:
        """``total``; ``days``: UTC day (``YYYY-MM-DD``) -> submissions created that day,
        from :func:`statistics_since` on; ``languages`` and ``statuses``: (id, count)
        pairs; ``size``: the database's bytes."""

    async def counts_by_status(self) -> dict[int, int]: ...
    @property
    def wakeups(self) -> Wakeups:
        """Events the store sets: new work queued, a submission finished."""

    # ---- the queue (workers)
    async def claim(self, owner: str, lease: float) -> Claim | None:
        """The oldest submission in queue (or whose lease expired), now Processing and
        held by ``owner`` for ``lease`` seconds; None when there is none."""

    async def renew(self, claim: Claim, lease: float) -> bool:
        """Extend the lease; False when it was lost (another worker took it over)."""

    async def finish(self, claim: Claim, outcome: Outcome) -> bool:
        """Store the claimed submission with its outcome; False (nothing written) when
        the lease was lost."""

    async def release(self, claim: Claim) -> None:
        """Give the submission back to the queue at once (this worker is stopping)."""

    async def heartbeat(self, beat: WorkerBeat, ttl: float) -> None: ...
    async def forget_worker(self, name: str) -> None: ...
    async def workers(self) -> list[WorkerBeat]:
        """The workers whose heartbeat is fresh."""


def is_postgres_url(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def open_store(db: str) -> Store:
    """The store ``db`` names: a ``postgresql://`` URL, else a SQLite file."""
    if is_postgres_url(db):
        from ._postgres_store import PostgresStore  # the [postgres] extra

        return PostgresStore(db)
    from ._sqlite_store import SqliteStore

    return SqliteStore(db)
