"""The FastAPI application: Judge0's routes over a store and its workers.

A submission is stored (In Queue) before the answer says 201; workers — in this process
(``workers`` > 0) or in ``sandboxkit worker`` processes sharing a PostgreSQL store —
claim it, judge it in a sandbox and store the result. Any node answers for any token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import os
import platform
import shlex
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from json import JSONDecodeError
from typing import Any
from urllib.parse import parse_qsl

import anyio
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from .._errors import InvalidInput
from .._languages import get_language
from .._sandbox_pool import SandboxPool
from .._version import __version__
from ._judge0 import ALL_FIELDS, CONFIG, DEFAULT_FIELDS, MULTI_FILE, STATUSES, VERSION
from ._judging import CallbackPolicy, Judging
from ._metrics import CONTENT_TYPE, Metrics
from ._render import NOT_UTF8, NotUtf8, serialize
from ._requests import archived_languages, available_languages, now, parse_submission
from ._store import (
    UNFINISHED,
    Admission,
    QueueFull,
    Store,
    StoreUnavailable,
    TooManyInFlight,
    is_postgres_url,
    open_store,
)
from ._submission import Submission
from ._worker import Worker

log = logging.getLogger("sandboxkit.server")


@dataclass
class Settings:
    """How the server runs, with Judge0's names where Judge0 has the setting.

    ``db``: a SQLite file (one process judges), or a ``postgresql://`` URL (a fleet:
    API nodes and ``sandboxkit worker`` processes on many hosts share it).
    ``workers``: submissions this process judges at once; 0 makes an API-only node
    (PostgreSQL only: someone else must judge).
    ``auth_token`` (Judge0's AUTHN_TOKEN): when set, every request must carry it in the
    ``X-Auth-Token`` header or query parameter (required beyond loopback).
    ``authz_token`` (AUTHZ_TOKEN): ``X-Auth-User`` value that unlocks the listing and
    deletion of submissions; unset, nobody is authorized (403), as in Judge0.
    ``allow_network``: honour ``enable_network`` (the sandbox then gets a bridge network
    of its own: it can reach what the engine's bridge reaches); off, it is a 422.
    ``cors_origins``: CORS allowed origins (Judge0's ALLOW_ORIGIN, ``*`` by default).
    ``max_queue_size`` (MAX_QUEUE_SIZE): In Queue submissions past which a new one is
    answered 503. ``max_in_flight_per_user``: submissions one client (its
    ``X-Auth-User``, else its address) may have queued or being judged; past it, 429
    (0: no cap). ``lease_seconds``: how long a worker holds a submission between
    renewals. ``wait_timeout``: the longest a ``wait=true`` request is held.
    """

    db: str = "sandboxkit-judge0.sqlite3"
    auth_token: str | None = None
    authz_token: str | None = None
    allow_network: bool = False
    enable_submission_delete: bool = False
    cors_origins: tuple[str, ...] = ("*",)
    callback_tries: int = 3
    callback_timeout: float = 5.0
    workers: int = 2
    warm_languages: tuple[str, ...] = ("python",)
    pool_size: int = 1
    max_source_bytes: int = 512 * 1024
    max_io_bytes: int = 16 * 1024 * 1024
    max_request_bytes: int = 64 * 1024 * 1024
    max_queue_size: int = int(CONFIG["max_queue_size"])
    max_in_flight_per_user: int = 0
    lease_seconds: float = 10.0
    wait_timeout: float = 300.0
    pool: SandboxPool | None = field(default=None, repr=False)  # an existing one, not closed


class Judge0Service:
    """The store behind the routes, and this process's workers (if any)."""

    def __init__(self, settings: Settings) -> None:
        if settings.workers < 0:
            raise InvalidInput("workers must be >= 0")
        if settings.workers == 0 and not is_postgres_url(settings.db):
            raise InvalidInput(
                "workers=0 (an API-only node) needs a shared PostgreSQL store "
                "(--db postgresql://...) that `sandboxkit worker` processes judge from"
            )
        self.settings = settings
        self.store: Store = open_store(settings.db)
        self.metrics = Metrics()
        self.worker: Worker | None = None
        self.judging: Judging | None = None

    async def start(self) -> None:
        await self.store.open()
        if self.settings.workers == 0:
            return
        cfg = self.settings
        self.judging = Judging(
            cfg.pool
            if cfg.pool is not None
            else SandboxPool(languages=cfg.warm_languages, size=cfg.pool_size),
            owned=cfg.pool is None,
            callbacks=CallbackPolicy(cfg.callback_tries, cfg.callback_timeout),
        )
        try:
            await self.judging.open()
        except BaseException:
            await self.store.close()
            raise
        self.worker = Worker(
            self.store,
            self.judging,
            concurrency=cfg.workers,
            lease=cfg.lease_seconds,
            metrics=self.metrics,
        )
        self.worker.start()

    async def stop(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
        if self.judging is not None:
            await self.judging.close()
        await self.store.close()

    async def wait_final(self, token: str) -> Submission | None:
        """The record once it is final, polling the store (woken by its notifications),
        or as it stands after ``wait_timeout``."""
        deadline = time.monotonic() + self.settings.wait_timeout
        with self.store.wakeups.watch(token) as finished:
            while True:
                finished.clear()  # before the read: a finish after it sets it again
                found = (await self.store.get_many([token])).get(token)
                left = deadline - time.monotonic()
                if found is None or found.status_id not in UNFINISHED or left <= 0:
                    return found
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(finished.wait(), min(1.0, left))


access_log = logging.getLogger("sandboxkit.access")


def _access(request: Request, status: int) -> None:
    """One line per request (uvicorn's own access log is off), with the token as a
    field when the path names one."""
    path = request.url.path
    parts = path.split("/")
    extra = {"status": status, "method": request.method}
    if len(parts) == 3 and parts[1] == "submissions" and parts[2] != "batch":
        extra["token"] = parts[2]
    access_log.info("%s %s %d", request.method, path, status, extra=extra)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name) == "true"


def _requested_fields(request: Request) -> tuple[str, ...] | JSONResponse:
    raw = request.query_params.get("fields")
    if raw is None or raw.strip() == "":
        return DEFAULT_FIELDS
    names = [f.strip() for f in raw.split(",") if f.strip()]
    if "*" in names:
        return ALL_FIELDS
    invalid = [f for f in names if f not in ALL_FIELDS]
    if invalid:
        return _error(400, f"invalid fields: [{', '.join(invalid)}]")
    return tuple(dict.fromkeys(names)) or DEFAULT_FIELDS


def _config(cfg: Settings) -> dict[str, Any]:
    return {
        **CONFIG,
        "enable_submission_delete": cfg.enable_submission_delete,
        "max_queue_size": cfg.max_queue_size,
        "enable_network": False,
        "allow_enable_network": cfg.allow_network,
        "callbacks_max_tries": cfg.callback_tries,
        "callbacks_timeout": cfg.callback_timeout,
    }


def _language_row(lid: int, *, details: bool) -> dict[str, Any] | None:
    """A language as Judge0's serializer shows it; None for an unknown id."""
    langs, archived = available_languages(), archived_languages()
    if lid in langs:
        spec = get_language(langs[lid][0])
        row: dict[str, Any] = {"id": lid, "name": langs[lid][1], "is_archived": False}
        if details:
            multi = lid == MULTI_FILE
            row.update(
                source_file=None if multi else spec.source_file,
                compile_cmd=(None if multi or spec.compile is None else shlex.join(spec.compile)),
                run_cmd=None if multi else shlex.join(spec.run),
            )
        return row
    if lid in archived:
        row = {"id": lid, "name": archived[lid], "is_archived": True}
        if details:
            row.update(source_file=None, compile_cmd=None, run_cmd=None)
        return row
    return None


def create_app(settings: Settings | None = None) -> FastAPI:
    """The Judge0-compatible application (serve it with uvicorn)."""
    cfg = settings or Settings()
    service = Judge0Service(cfg)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="sandboxkit (Judge0 CE compatible)",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.service = service

    def _authenticated(request: Request) -> bool:
        if cfg.auth_token is None:
            return True
        given = request.headers.get("x-auth-token") or request.query_params.get("X-Auth-Token", "")
        return hmac.compare_digest(given.encode(), cfg.auth_token.encode())

    def _authorized(request: Request) -> bool:
        if cfg.authz_token is None:
            return False
        given = request.headers.get("x-auth-user") or request.query_params.get("X-Auth-User", "")
        return hmac.compare_digest(given.encode(), cfg.authz_token.encode())

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        if not _authenticated(request):
            return Response(status_code=401)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > cfg.max_request_bytes:
            return _error(413, f"request body over {cfg.max_request_bytes} bytes")
        try:
            response: Response = await call_next(request)
        except NotUtf8:
            response = _error(400, NOT_UTF8)
        _access(request, response.status_code)
        return response

    # outermost: preflights and every answer (401s too) carry CORS headers, as Judge0's
    # rack-cors does
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(cfg.cors_origins),
        allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD"],
        allow_headers=["*"],
        expose_headers=["*"],
        max_age=86400,
    )

    @app.exception_handler(NotUtf8)
    async def not_utf8(request: Request, exc: NotUtf8) -> JSONResponse:
        return _error(400, NOT_UTF8)

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        log.warning("store unavailable on %s: %s", request.url.path, exc)
        return _error(503, "the database is unavailable; try again")

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return _error(500, f"internal error: {type(exc).__name__}")

    # ------------------------------------------------------------ system and configuration
    @app.get("/about")
    async def about() -> dict[str, Any]:
        return {
            "version": VERSION,
            "homepage": None,
            "source_code": None,
            "maintainer": f"sandboxkit {__version__}",
        }

    @app.get("/version")
    async def version() -> PlainTextResponse:
        return PlainTextResponse(VERSION)

    @app.get("/isolate")
    async def isolate() -> PlainTextResponse:
        return PlainTextResponse(
            f"sandboxkit {__version__}: no isolate; every submission runs in a Docker "
            "container of its own (no network, read-only root, cgroup limits)\n"
        )

    @app.get("/license")
    async def license_text() -> PlainTextResponse:
        return PlainTextResponse(
            f"sandboxkit {__version__}, a Judge0 CE {VERSION} compatible API. "
            "Judge0 is a trademark of its authors; this server shares none of its code.\n"
        )

    @app.get("/config_info")
    async def config_info() -> dict[str, Any]:
        return _config(cfg)

    @app.get("/system_info")
    async def system_info() -> dict[str, Any]:
        info: dict[str, Any] = {
            "Architecture": platform.machine(),
            "CPU(s)": str(os.cpu_count() or 1),
            "Model name": platform.processor() or platform.machine(),
            "Kernel": platform.release(),
        }
        try:
            text = await anyio.Path("/proc/meminfo").read_text()
            meminfo = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
            info["Mem"] = meminfo.get("MemTotal", "").strip()
            info["Swap"] = meminfo.get("SwapTotal", "").strip()
        except OSError:
            pass
        return info

    @app.get("/statistics")
    async def statistics() -> dict[str, Any]:
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

    @app.get("/workers")
    async def workers() -> list[dict[str, Any]]:
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

    @app.get("/metrics")
    async def metrics() -> Response:
        await service.metrics.refresh(service.store)
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    @app.post("/authenticate")
    async def authenticate() -> Response:
        return Response(status_code=200)  # the guard answered 401 already if it must

    @app.post("/authorize")
    async def authorize(request: Request) -> Response:
        return Response(status_code=200 if _authorized(request) else 403)

    # ------------------------------------------------------------ statuses and languages
    @app.get("/statuses")
    async def statuses() -> list[dict[str, Any]]:
        return [{"id": i, "description": d} for i, d in STATUSES.items()]

    @app.get("/languages")
    async def languages() -> list[dict[str, Any]]:
        langs = available_languages()
        return [{"id": i, "name": langs[i][1]} for i in sorted(langs, key=lambda i: langs[i][1])]

    @app.get("/languages/all")
    async def all_languages() -> list[dict[str, Any]]:
        ids = {*available_languages(), *archived_languages()}
        rows = [_language_row(i, details=False) for i in ids]
        return sorted((r for r in rows if r is not None), key=lambda r: str(r["name"]))

    @app.get("/languages/{language_id}")
    async def language(language_id: str) -> JSONResponse:
        row = _language_row(int(language_id), details=True) if language_id.isdigit() else None
        if row is None:
            return _error(404, f"language with id {language_id} doesn't exist")
        return JSONResponse(row)

    # ------------------------------------------------------------ submissions
    async def _body(request: Request) -> Any:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        raw = await request.body()
        if kind == "application/x-www-form-urlencoded":
            try:
                return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
            except UnicodeDecodeError:
                return _error(400, "request body must be UTF-8")
        try:
            return await request.json()
        except (JSONDecodeError, UnicodeDecodeError, ValueError):
            return _error(400, "request body must be JSON")

    def _parse(body: Any, b64: bool) -> tuple[Submission | None, dict[str, list[str]]]:
        return parse_submission(
            body,
            b64=b64,
            max_source_bytes=cfg.max_source_bytes,
            max_io_bytes=cfg.max_io_bytes,
            allow_network=cfg.allow_network,
        )

    def _admission(request: Request) -> Admission:
        client = request.headers.get("x-auth-user") or (
            request.client.host if request.client else ""
        )
        return Admission(
            client=client,
            max_queue=cfg.max_queue_size,
            max_in_flight=cfg.max_in_flight_per_user,
        )

    async def _store_new(request: Request, records: list[Submission]) -> Response | None:
        """Store ``records`` (durably: 201 follows), or the answer refusing them."""
        admission = _admission(request)
        try:
            await service.store.insert(records, admission)
        except QueueFull:
            return _error(503, "queue is full")
        except TooManyInFlight as exc:
            return _error(429, str(exc))
        for record in records:
            log.info(
                "%s: stored (language %s)",
                record.token,
                record.language_id,
                extra={"token": record.token, "client": admission.client},
            )
        return None

    @app.post("/submissions")
    async def create(request: Request) -> Response:
        fields = _requested_fields(request)
        if isinstance(fields, JSONResponse):
            return fields
        body = await _body(request)
        if isinstance(body, JSONResponse):
            return body
        b64 = _flag(request, "base64_encoded")
        record, errors = _parse(body, b64)
        if record is None:
            return JSONResponse(errors, status_code=422)
        refused = await _store_new(request, [record])
        if refused is not None:
            return refused
        token = record.token
        if not _flag(request, "wait"):
            return JSONResponse({"token": token}, status_code=201)
        done = await service.wait_final(token)
        return JSONResponse(serialize(done or record, fields, b64), status_code=201)

    @app.get("/submissions")
    async def index(request: Request) -> Response:
        if not _authorized(request):
            return Response(status_code=403)
        fields = _requested_fields(request)
        if isinstance(fields, JSONResponse):
            return fields
        try:
            page = max(1, int(request.query_params.get("page", "1")))
            per_page = max(1, min(100, int(request.query_params.get("per_page", "20"))))
        except ValueError:
            return _error(400, "page and per_page must be integers")
        records, total = await service.store.page(page, per_page)
        pages = max(1, math.ceil(total / per_page)) if total else 0
        b64 = _flag(request, "base64_encoded")
        return JSONResponse(
            {
                "submissions": [serialize(r, fields, b64) for r in records],
                "meta": {
                    "current_page": page,
                    "next_page": page + 1 if page < pages else None,
                    "prev_page": page - 1 if page > 1 else None,
                    "total_pages": pages,
                    "total_count": total,
                },
            }
        )

    @app.post("/submissions/batch")
    async def create_batch(request: Request) -> Response:
        body = await _body(request)
        if isinstance(body, JSONResponse):
            return body
        items = body.get("submissions") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return _error(400, "there should be at least one submission in a batch")
        limit = CONFIG["max_submission_batch_size"]
        if len(items) > limit:
            return _error(
                400, f"number of submissions in a batch should be less than or equal to {limit}"
            )
        b64 = _flag(request, "base64_encoded")
        answer: list[dict[str, Any]] = []
        good: list[Submission] = []
        for item in items:
            record, errors = _parse(item, b64)
            if record is None:
                answer.append(errors)
            else:
                good.append(record)
                answer.append({"token": record.token})
        refused = await _store_new(request, good)
        if refused is not None:
            return refused
        return JSONResponse(answer, status_code=201 if good else 422)

    @app.get("/submissions/batch")
    async def show_batch(request: Request) -> Response:
        fields = _requested_fields(request)
        if isinstance(fields, JSONResponse):
            return fields
        raw = request.headers.get("tokens") or request.query_params.get("tokens") or ""
        tokens = [t.strip() for t in raw.split(",") if t.strip()]
        if not tokens:
            return _error(400, "there should be at least one submission in a batch")
        limit = CONFIG["max_submission_batch_size"]
        if len(tokens) > limit:
            return _error(
                400, f"number of submissions in a batch should be less than or equal to {limit}"
            )
        found = await service.store.get_many(tokens)
        b64 = _flag(request, "base64_encoded")
        return JSONResponse(
            {
                "submissions": [
                    serialize(found[t], fields, b64) if t in found else None for t in tokens
                ]
            }
        )

    async def _one(token: str, request: Request) -> tuple[Submission, tuple[str, ...]] | Response:
        """The stored submission and the fields asked for, or the error answer."""
        fields = _requested_fields(request)
        if isinstance(fields, JSONResponse):
            return fields
        record = (await service.store.get_many([token])).get(token)
        if record is None:
            return _error(404, f"submission with token {token} not found")
        return record, fields

    @app.get("/submissions/{token}")
    async def show(token: str, request: Request) -> Response:
        found = await _one(token, request)
        if isinstance(found, Response):
            return found
        record, fields = found
        return JSONResponse(serialize(record, fields, _flag(request, "base64_encoded")))

    @app.delete("/submissions/{token}")
    async def destroy(token: str, request: Request) -> Response:
        if not _authorized(request):
            return Response(status_code=403)
        if not cfg.enable_submission_delete:
            return _error(400, "delete not allowed")
        found = await _one(token, request)
        if isinstance(found, Response):
            return found
        record, fields = found
        sid = record.status_id
        if sid in (1, 2):
            return _error(
                400,
                f"submission cannot be deleted because its status is {sid} ({STATUSES[sid]})",
            )
        await service.store.delete(token)
        return JSONResponse(serialize(record, fields, True))

    return app
