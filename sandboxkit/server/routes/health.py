"""What the store and the workers say now: Judge0's ``/statistics`` and ``/workers``,
and ``/metrics`` for Prometheus."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .._judge0 import STATUSES, VERSION
from .._metrics import CONTENT_TYPE
from .._requests import archived_languages, available_languages
from .._store import STATISTICS_DAYS
from ._common import Service, flag

router = APIRouter()

STATISTICS_CACHE = timedelta(minutes=10)  # Judge0's @@cache_duration


def rails_time(moment: datetime) -> str:
    """A time as Rails renders a ``DateTime`` in JSON: milliseconds and the offset
    (``2024-04-01T09:30:00.123+00:00``)."""
    return moment.isoformat(timespec="milliseconds")


def pg_size_pretty(size: int) -> str:
    """PostgreSQL's ``pg_size_pretty``: bytes below 10 kB, then the largest unit that
    keeps the number below 20 kB's worth, half rounded up."""
    if size < 10 * 1024:
        return f"{size} bytes"
    size //= 1 << 9  # one extra bit for rounding
    for unit in ("kB", "MB", "GB"):
        if size < 20 * 1024 - 1:
            return f"{(size + 1) // 2} {unit}"
        size //= 1 << 10
    return f"{(size + 1) // 2} TB"


def statistics_document(stats: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Judge0's ``/statistics`` (info_controller.rb) from the store's counts: submissions
    in all, today and on each of the 30 days before (newest first), by language and by
    status (most first), and the database's size."""
    names = {**available_languages(), **{i: ("", n) for i, n in archived_languages().items()}}
    today = now.date()
    days: dict[str, int] = stats["days"]

    def count(day: date) -> int:
        return days.get(day.isoformat(), 0)

    return {
        "created_at": rails_time(now),
        "cached_until": rails_time(now + STATISTICS_CACHE),
        "submissions": {
            "total": stats["total"],
            "today": count(today),
            "last_30_days": {
                (today - timedelta(days=back)).isoformat(): count(today - timedelta(days=back))
                for back in range(1, STATISTICS_DAYS + 1)
            },
        },
        "languages": [
            {"language": {"id": lid, "name": names.get(lid, ("", None))[1]}, "count": n}
            for lid, n in sorted(stats["languages"], key=lambda pair: (-pair[1], pair[0]))
        ],
        "statuses": [
            {"status": {"id": sid, "name": STATUSES.get(sid)}, "count": n}
            for sid, n in sorted(stats["statuses"], key=lambda pair: (-pair[1], pair[0]))
        ],
        "database": {
            "size_pretty": pg_size_pretty(stats["size"]),
            "size_in_bytes": stats["size"],
        },
    }


@router.get("/statistics")
async def statistics(request: Request, service: Service) -> dict[str, Any]:
    """Cached for 10 minutes, as Judge0 does; ``invalidate_cache=true`` counts afresh."""
    if flag(request, "invalidate_cache"):
        service.statistics = None
    cached = service.statistics
    if cached is None or cached[0] <= time.monotonic():
        document = statistics_document(await service.store.statistics(), datetime.now(timezone.utc))
        cached = service.statistics = (
            time.monotonic() + STATISTICS_CACHE.total_seconds(),
            document,
        )
    return cached[1]


@router.get("/workers")
async def workers(service: Service) -> list[dict[str, Any]]:
    """Judge0's shape, from the heartbeats of every worker sharing the store."""
    beats = await service.store.workers()
    counts = await service.store.counts_by_status()
    available = sum(b.concurrency for b in beats)
    working = min(available, sum(b.working for b in beats))
    return [
        {
            "queue": VERSION,
            "size": counts.get(1, 0),
            "available": available,
            "idle": available - working,
            "working": working,
            "paused": 0,
            "failed": sum(b.failed for b in beats),
        }
    ]


@router.get("/metrics")
async def metrics(service: Service) -> Response:
    await service.metrics.refresh(service.store)
    return Response(service.metrics.render(), media_type=CONTENT_TYPE)
