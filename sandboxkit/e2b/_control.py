"""E2B's control plane (``E2B_API_URL``) as the ``e2b`` SDK calls it: create, get, list,
kill, set timeout, connect, pause, metrics; errors in E2B's ``{"code", "message"}`` shape."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .._errors import InvalidInput, SandboxkitError
from .._models import SandboxMetrics
from ._registry import MAX_TIMEOUT, Entry, Full, Registry

ENVD_VERSION = "0.5.7"  # the envd API we speak: raw (octet-stream) uploads, default user
CLIENT_ID = "sandboxkit"
CPU_COUNT, MEMORY_MB, DISK_MB = 1, 512, 1024
METRICS_KEPT = 720  # a sandbox's measured metrics kept for time-range queries


def error(code: int, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=code)


def _moment(epoch: float) -> datetime:
    """An epoch time as E2B shows it: to the microsecond (a sandbox's own ``startedAt``
    given back as ``startedAfter`` must find it)."""
    return datetime.fromtimestamp(epoch, timezone.utc)


def _iso(epoch: float) -> str:
    return _moment(epoch).isoformat().replace("+00:00", "Z")


def _created(entry: Entry) -> dict[str, Any]:
    return {
        "templateID": entry.template,
        "sandboxID": entry.sandbox_id,
        "clientID": CLIENT_ID,
        "envdVersion": ENVD_VERSION,
        "alias": entry.template,
        "domain": None,
    }


def _with_token(entry: Entry) -> dict[str, Any]:
    """What create, connect and get-info answer: the sandbox and, when it is secure, the
    envd access token the SDK then sends on every envd request."""
    body = _created(entry)
    if entry.access_token is not None:
        body["envdAccessToken"] = entry.access_token
    return body


def _metric(m: SandboxMetrics) -> dict[str, Any]:
    return {
        "timestamp": _iso(m.timestamp),
        "timestampUnix": int(m.timestamp),
        "cpuCount": max(1, round(m.cpu_count)),
        "cpuUsedPct": m.cpu_percent,
        "memUsed": m.memory_used,
        "memTotal": m.memory_total,
        "memCache": m.memory_cache,
        "diskUsed": m.disk_used,
        "diskTotal": m.disk_total,
    }


def _listed(entry: Entry) -> dict[str, Any]:
    import time

    end = entry.end_at if entry.session is not None else time.time() + entry.end_at
    return {
        **_created(entry),
        "startedAt": _iso(entry.started_at),
        "endAt": _iso(end),
        "cpuCount": CPU_COUNT,
        "memoryMB": MEMORY_MB,
        "diskSizeMB": DISK_MB,
        "state": entry.state,
        "metadata": entry.metadata,
    }


def _detail(entry: Entry) -> dict[str, Any]:
    body = _listed(entry)
    if entry.access_token is not None:
        body["envdAccessToken"] = entry.access_token
    if entry.allow_internet_access is not None:
        body["allowInternetAccess"] = entry.allow_internet_access
    return body


def _timeout(value: object, default: float = 300) -> float | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        return None
    return float(min(value, MAX_TIMEOUT))


def _strings(value: object) -> dict[str, str] | None:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return None
    return dict(value)


def control_router(registry: Registry) -> APIRouter:
    router = APIRouter()

    def find(sandbox_id: str) -> Entry | JSONResponse:
        entry = registry.get(sandbox_id)
        if entry is None:
            return error(404, f"sandbox {sandbox_id} not found")
        return entry

    @router.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @router.post("/sandboxes")
    @router.post("/v2/sandboxes")
    async def create(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return error(400, "the body must be JSON")
        if not isinstance(body, dict):
            return error(400, "the body must be a JSON object")
        template = body.get("templateID")
        if not isinstance(template, str) or template not in registry.templates:
            return error(404, f"template '{template}' not found")
        timeout = _timeout(body.get("timeout"))
        metadata, envs = _strings(body.get("metadata")), _strings(body.get("envVars"))
        if timeout is None:
            return error(400, "timeout must be a positive number of seconds")
        if metadata is None or envs is None:
            return error(400, "metadata and envVars must map strings to strings")
        allow = body.get("allow_internet_access", body.get("allowInternetAccess"))
        network = body.get("network")
        # E2B 2.x secures every sandbox (its SDK no longer sends the field); older SDKs
        # may ask for an open one with secure=false
        secure = body.get("secure") is not False
        try:
            entry = await registry.create(
                template,
                timeout,
                metadata,
                envs,
                allow if isinstance(allow, bool) else None,
                network if isinstance(network, dict) else None,
                secure=secure,
            )
        except Full as exc:
            return error(429, str(exc))
        except InvalidInput as exc:  # an allowOut entry that is not a domain name
            return error(400, f"network: {exc} (sandboxkit allows domain names only)")
        return JSONResponse(_with_token(entry), status_code=201)

    async def sample(entry: Entry) -> dict[str, Any] | None:
        """One metric of a running sandbox, kept in its history (E2B samples every few
        seconds; this server measures when asked). None when paused, or when it went
        away meanwhile."""
        if entry.session is None:
            return None
        try:
            measured = await entry.session.metrics()
        except SandboxkitError:
            return None
        entry.metrics.append(measured)
        del entry.metrics[:-METRICS_KEPT]
        return _metric(measured)

    @router.get("/sandboxes/metrics")
    async def list_metrics(request: Request) -> Response:
        """The latest metric of each sandbox asked for (``sandbox_ids=a,b``)."""
        wanted = [s for s in (request.query_params.get("sandbox_ids") or "").split(",") if s]
        if not wanted:
            return error(400, "sandbox_ids is required")
        found: dict[str, Any] = {}
        for sandbox_id in wanted:
            entry = registry.get(sandbox_id)
            metric = await sample(entry) if entry is not None else None
            if metric is not None:
                found[sandbox_id] = metric
        return JSONResponse({"sandboxes": found})

    @router.get("/sandboxes/{sandbox_id}/metrics")
    async def metrics(sandbox_id: str, request: Request) -> Response:
        """The sandbox's metrics from ``start`` to ``end`` (unix seconds; by default its
        whole life): those measured before, and one measured now when it is running."""
        entry = find(sandbox_id)
        if isinstance(entry, JSONResponse):
            return entry
        try:
            start, end = (_seconds(request.query_params.get(k)) for k in ("start", "end"))
        except ValueError:
            return error(400, "start and end must be unix timestamps in seconds")
        await sample(entry)
        # the bounds are whole seconds: a metric of second ``end`` is within them
        found = [
            _metric(m)
            for m in entry.metrics
            if (start is None or m.timestamp >= start) and (end is None or m.timestamp < end + 1)
        ]
        return JSONResponse(found)

    @router.get("/sandboxes/{sandbox_id}")
    async def get(sandbox_id: str) -> Response:
        entry = find(sandbox_id)
        if isinstance(entry, JSONResponse):
            return entry
        return JSONResponse(_detail(entry))

    @router.get("/sandboxes")
    @router.get("/v2/sandboxes")
    async def list_(request: Request) -> Response:
        """E2B's list: filtered by metadata, state, template (id or alias) and start
        time, sorted by start time (newest first unless ``order=asc``), paged by
        ``limit`` and the ``X-Next-Token`` of the page before."""
        params = request.query_params
        wanted = _metadata_query(params.get("metadata"))
        states = params.get("state")
        allowed = set(states.split(",")) if states else {"running", "paused"}
        order = params.get("order") or "desc"
        template = params.get("template")
        try:
            after = _instant(params.get("startedAfter"))
            limit = int(params.get("limit") or 100)
            cursor = _cursor(params.get("nextToken"))
        except ValueError as exc:
            return error(400, str(exc))
        if order not in ("asc", "desc"):
            return error(400, f"order must be 'asc' or 'desc', not {order!r}")
        if not 0 < limit <= 100:
            return error(400, "limit must be between 1 and 100")
        newest_first = order == "desc"
        entries = sorted(
            (
                e
                for e in registry.all()
                if e.state in allowed
                and all(e.metadata.get(k) == v for k, v in wanted.items())
                and (template is None or e.template == template)
                and (after is None or _moment(e.started_at) >= after)
            ),
            key=_position,
            reverse=newest_first,
        )
        if cursor is not None:  # the entries past the last one of the page before
            past = cursor
            entries = [
                e for e in entries if (_position(e) < past if newest_first else _position(e) > past)
            ]
        page = entries[:limit]
        headers = {}
        if len(entries) > limit:
            headers["x-next-token"] = _token(page[-1])
        return JSONResponse([_listed(e) for e in page], headers=headers)

    @router.delete("/sandboxes/{sandbox_id}")
    async def kill(sandbox_id: str) -> Response:
        if not await registry.kill(sandbox_id):
            return error(404, f"sandbox {sandbox_id} not found")
        return Response(status_code=204)

    @router.post("/sandboxes/{sandbox_id}/timeout")
    async def set_timeout(sandbox_id: str, request: Request) -> Response:
        entry = find(sandbox_id)
        if isinstance(entry, JSONResponse):
            return entry
        timeout = _timeout((await request.json()).get("timeout"), default=-1)
        if timeout is None:
            return error(400, "timeout must be a positive number of seconds")
        registry.set_timeout(entry, timeout)
        return Response(status_code=204)

    @router.post("/sandboxes/{sandbox_id}/pause")
    async def pause(sandbox_id: str) -> Response:
        entry = find(sandbox_id)
        if isinstance(entry, JSONResponse):
            return entry
        if entry.session is None:
            return error(409, f"sandbox {sandbox_id} is already paused")
        await registry.pause(entry)
        return Response(status_code=204)

    @router.post("/sandboxes/{sandbox_id}/connect")
    @router.post("/v2/sandboxes/{sandbox_id}/connect")
    @router.post("/sandboxes/{sandbox_id}/resume")
    async def connect(sandbox_id: str, request: Request) -> Response:
        entry = find(sandbox_id)
        if isinstance(entry, JSONResponse):
            return entry
        try:
            body = await request.json()
        except ValueError:
            body = {}
        timeout = _timeout(body.get("timeout") if isinstance(body, dict) else None)
        if timeout is None:
            return error(400, "timeout must be a positive number of seconds")
        resumed = entry.session is None
        await registry.resume(entry, timeout)
        return JSONResponse(_with_token(entry), status_code=201 if resumed else 200)

    return router


def _metadata_query(raw: str | None) -> dict[str, str]:
    """E2B's list filter: ``metadata=k1%3Dv1%26k2%3Dv2`` (a query string in a query
    parameter), or JSON from older SDKs."""
    if not raw:
        return {}
    if raw.startswith("{"):
        try:
            parsed = json.loads(raw)
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in parsed.items()} if isinstance(parsed, dict) else {}
    from urllib.parse import parse_qsl

    return dict(parse_qsl(raw, keep_blank_values=True))


def _seconds(raw: str | None) -> int | None:
    return None if raw is None or raw == "" else int(raw)


def _position(entry: Entry) -> tuple[float, str]:
    """Where a sandbox sorts: by start time, its id breaking ties."""
    return (entry.started_at, entry.sandbox_id)


def _token(entry: Entry) -> str:
    """A page's ``X-Next-Token``: the position of its last sandbox, so that the next page
    starts after it even when sandboxes came or went meanwhile (an offset would skip or
    repeat them)."""
    started_at, sandbox_id = _position(entry)
    return base64.urlsafe_b64encode(f"{started_at!r}/{sandbox_id}".encode()).decode()


def _cursor(token: str | None) -> tuple[float, str] | None:
    if not token:
        return None
    try:
        started_at, _, sandbox_id = base64.urlsafe_b64decode(token).decode().partition("/")
        return (float(started_at), sandbox_id)
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"nextToken {token!r} is not one this server gave") from None


def _instant(raw: str | None) -> datetime | None:
    """An RFC 3339 time of a query (``startedAfter``)."""
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"startedAfter {raw!r} is not an RFC 3339 date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment
