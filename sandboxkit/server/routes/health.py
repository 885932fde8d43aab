"""What the store and the workers say now: Judge0's ``/statistics`` and ``/workers``,
and ``/metrics`` for Prometheus."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from .._judge0 import STATUSES, VERSION
from .._metrics import CONTENT_TYPE
from .._requests import archived_languages, available_languages, now
from ._common import Service

router = APIRouter()


@router.get("/statistics")
async def statistics(service: Service) -> dict[str, Any]:
    stats = await service.store.statistics()
    langs = {**available_languages(), **{i: ("", n) for i, n in archived_languages().items()}}
    return {
        "now": now(),
        "submissions": {"total": stats["total"], "today": stats["today"]},
        "languages": [
            {"language": {"id": lid, "name": langs.get(lid, ("", str(lid)))[1]}, "count": n}
            for lid, n in stats["languages"]
        ],
        "statuses": [
            {"status": {"id": sid, "name": STATUSES.get(sid, str(sid))}, "count": n}
            for sid, n in stats["statuses"]
        ],
        "database": {
            "size_pretty": f"{stats['size'] / 1024:.0f} kB",
            "size_in_bytes": stats["size"],
        },
    }


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
