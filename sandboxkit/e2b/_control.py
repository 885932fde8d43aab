"""E2B's control plane (``E2B_API_URL``) as the ``e2b`` SDK calls it: create, get, list,
kill, set timeout, connect, pause, metrics; errors in E2B's ``{"code", "message"}`` shape."""

from __future__ import annotations

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


def error(code: int, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=code)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


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
        """One metric of a running sandbox (E2B samples every few seconds; this server
        measures when asked). None when paused, or when it went away meanwhile."""
        if entry.session is None:
            return None
        try:
            return _metric(await entry.session.metrics())
        except SandboxkitError:
            return None

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
    async def metrics(sandbox_id: str) -> Response:
        entry = find(sandbox_id)
        if isinstance(entry, JSONResponse):
            return entry
        metric = await sample(entry)
        return JSONResponse([metric] if metric is not None else [])

    @router.get("/sandboxes/{sandbox_id}")
    async def get(sandbox_id: str) -> Response:
        entry = find(sandbox_id)
        if isinstance(entry, JSONResponse):
            return entry
        return JSONResponse(_detail(entry))

    @router.get("/sandboxes")
    @router.get("/v2/sandboxes")
    async def list_(request: Request) -> Response:
        wanted = _metadata_query(request.query_params.get("metadata"))
        states = request.query_params.get("state")
        allowed = set(states.split(",")) if states else {"running", "paused"}
        entries = [
            e
            for e in sorted(registry.all(), key=lambda e: e.started_at)
            if e.state in allowed and all(e.metadata.get(k) == v for k, v in wanted.items())
        ]
        try:
            start = int(request.query_params.get("nextToken") or 0)
            limit = int(request.query_params.get("limit") or 100)
        except ValueError:
            return error(400, "nextToken and limit must be numbers")
        page = entries[start : start + max(1, limit)]
        headers = {}
        if start + len(page) < len(entries):
            headers["x-next-token"] = str(start + len(page))
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
