"""The FastAPI application: Judge0's routes over ``sandboxkit.judge``.

A submission is stored (In Queue) before anything runs; workers take queued tokens,
mark them Processing, judge them in a sandbox and store the result. Unfinished
submissions found at start-up (the server stopped mid-run) are queued again.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import math
import os
import platform
import shlex
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from json import JSONDecodeError
from typing import Any
from urllib.parse import parse_qsl

import anyio
import httpx
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from .._errors import SandboxkitError
from .._judge import judge
from .._judge_models import JudgeReport, TestCase
from .._languages import LanguageSpec, get_language
from .._models import Limits
from .._sandbox_pool import SandboxPool
from .._version import __version__
from ._judge0 import (
    ALL_FIELDS,
    CONFIG,
    DECIMAL_FIELDS,
    DEFAULT_FIELDS,
    MULTI_FILE,
    PROCESSING,
    STATUSES,
    TEXT_FIELDS,
    VERSION,
    result_fields,
)
from ._requests import (
    archived_languages,
    available_languages,
    now,
    parse_submission,
    unzip_files,
)
from ._store import Store

log = logging.getLogger("sandboxkit.server")


@dataclass
class Settings:
    """How the server runs, with Judge0's names where Judge0 has the setting.

    ``auth_token`` (Judge0's AUTHN_TOKEN): when set, every request must carry it in the
    ``X-Auth-Token`` header or query parameter (required beyond loopback).
    ``authz_token`` (AUTHZ_TOKEN): ``X-Auth-User`` value that unlocks the listing and
    deletion of submissions; unset, nobody is authorized (403), as in Judge0.
    ``allow_network``: honour ``enable_network`` (the sandbox then gets a bridge network
    of its own: it can reach what the engine's bridge reaches); off, it is a 422.
    ``cors_origins``: CORS allowed origins (Judge0's ALLOW_ORIGIN, ``*`` by default).
    """

    db_path: str = "sandboxkit-judge0.sqlite3"
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
    pool: SandboxPool | None = field(default=None, repr=False)  # an existing one, not closed


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


NOT_UTF8 = (
    "some attributes for this submission cannot be converted to UTF-8, use base64_encoded=true"
)


class NotUtf8(Exception):
    """A text attribute holds bytes that are not UTF-8 and the client asked for text."""


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


def _encode(value: str, b64: bool) -> str:
    """A stored text field for the answer. Stored text keeps exact bytes (invalid UTF-8
    as surrogate escapes): base64 gives those bytes back; plain text only when they are
    UTF-8 (else Judge0's 400, raised as NotUtf8)."""
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # another lone surrogate, sent as JSON text
        raw = value.encode("utf-8", "replace")
    if b64:
        return base64.b64encode(raw).decode()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise NotUtf8 from None


def serialize(record: dict[str, Any], fields: tuple[str, ...], b64: bool) -> dict[str, Any]:
    """A stored record as Judge0 renders it (decimals as strings, text maybe base64)."""
    langs = {**available_languages(), **{i: ("", n) for i, n in archived_languages().items()}}
    out: dict[str, Any] = {}
    for name in fields:
        if name == "status":
            sid = record["status_id"]
            out[name] = {"id": sid, "description": STATUSES[sid]}
        elif name == "language":
            lid = record["language_id"]
            out[name] = {"id": lid, "name": langs.get(lid, ("", str(lid)))[1]}
        elif name in TEXT_FIELDS:
            value = record.get(name)
            out[name] = _encode(value, b64) if value else None
        elif name in DECIMAL_FIELDS:
            value = record.get(name)
            out[name] = (
                None
                if value is None
                else (f"{value:.3f}" if name in ("time", "wall_time") else str(float(value)))
            )
        else:
            out[name] = record.get(name)
    return out


def _limits(record: dict[str, Any]) -> Limits:
    """Judge0's limits as ours. CPU: killed past limit + extra (RLIMIT_CPU), reported
    TLE past the limit; memory and file size in KB; at least what a sandbox needs."""
    cpu = float(record["cpu_time_limit"]) + float(record["cpu_extra_time"])
    max_file_kb = max(1, int(record["max_file_size"]))
    return Limits(
        time=float(record["wall_time_limit"]),
        cpu_time=max(0.01, cpu),
        memory_mb=max(16, math.ceil(int(record["memory_limit"]) / 1024)),
        stack_mb=max(1, math.ceil(int(record["stack_limit"]) / 1024)),
        pids=min(4096, max(8, int(record["max_processes_and_or_threads"]))),
        file_size_mb=max_file_kb / 1024,
        output_bytes=max_file_kb * 1024,
    )


class Judge0Service:
    """The queue, the workers and the sandbox pools behind the routes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(settings.db_path)
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.slots = asyncio.Semaphore(max(1, settings.workers))
        self.pool: SandboxPool | None = settings.pool
        self.network_pool: SandboxPool | None = None
        self._own_pool = settings.pool is None
        self._tasks: list[asyncio.Task[None]] = []
        self._callbacks: set[asyncio.Task[None]] = set()
        self.working = 0

    async def start(self) -> None:
        if self.pool is None:
            # warms it (a missing engine or image fails start-up); closes itself on failure
            self.pool = await SandboxPool(
                languages=self.settings.warm_languages, size=self.settings.pool_size
            ).open()
        for token in await self.store.unfinished():
            self.queue.put_nowait(token)
        self._tasks = [
            asyncio.create_task(self._worker()) for _ in range(max(1, self.settings.workers))
        ]

    async def stop(self) -> None:
        for task in [*self._tasks, *self._callbacks]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._callbacks, return_exceptions=True)
        if self._own_pool and self.pool is not None:
            await self.pool.aclose()
        if self.network_pool is not None:
            await self.network_pool.aclose()
        self.store.close()

    async def _worker(self) -> None:
        while True:
            token = await self.queue.get()
            try:
                await self.process(token)
            except Exception:  # a bug here must not kill the worker
                log.exception("judging %s failed", token)

    async def process(self, token: str) -> None:
        async with self.slots:
            record = await self.store.get(token)
            if record is None or record["status_id"] not in (1, 2):
                return
            self.working += 1
            try:
                await self.store.update(token, {"status_id": PROCESSING})
                changes = await self._judge(record)
                changes["finished_at"] = now()
                await self.store.update(token, changes)
            finally:
                self.working -= 1
        if record.get("callback_url"):
            done = await self.store.get(token)
            if done is not None:
                task = asyncio.create_task(self._callback(done))
                self._callbacks.add(task)
                task.add_done_callback(self._callbacks.discard)

    async def _callback(self, record: dict[str, Any]) -> None:
        """PUT the result to the submission's callback_url, as Judge0 does (its default
        fields, base64-encoded), retried with backoff; the result stays stored either way."""
        url = record["callback_url"]
        try:
            payload = serialize(record, DEFAULT_FIELDS, True)
        except NotUtf8:  # cannot happen in base64 mode; kept for the type checker
            return
        delay = 0.5
        async with httpx.AsyncClient(timeout=self.settings.callback_timeout) as http:
            for attempt in range(1, max(1, self.settings.callback_tries) + 1):
                try:
                    response = await http.put(url, json=payload)
                    if response.status_code < 400:
                        return
                    log.warning("callback %s answered %s", url, response.status_code)
                except httpx.HTTPError as exc:
                    log.warning("callback %s failed (try %d): %s", url, attempt, exc)
                await asyncio.sleep(delay)
                delay *= 2

    async def _pool_for(self, record: dict[str, Any]) -> SandboxPool:
        if not record.get("enable_network"):
            assert self.pool is not None
            return self.pool
        if self.network_pool is None:
            self.network_pool = await SandboxPool(languages=(), size=0, network=True).open()
        return self.network_pool

    async def _judge(self, record: dict[str, Any]) -> dict[str, Any]:
        language = available_languages().get(record["language_id"], ("",))[0]
        if not language:
            return result_fields(None, record, f"language {record['language_id']} is gone")
        spec: LanguageSpec = get_language(language)
        files: dict[str, bytes] = {}
        if record.get("additional_files"):
            files = unzip_files(
                base64.b64decode(record["additional_files"]),
                int(CONFIG["max_extract_size"]) * 1024,
            )
        source = record.get("source_code") or ""
        if record["language_id"] == MULTI_FILE:
            # Judge0's multi-file program: its ``compile`` script (if any), then ``run``
            if "run" not in files:
                return {
                    "status_id": 11,
                    "stderr": "bash: run: No such file or directory\n",
                    "exit_code": 127,
                    "message": "Exited with error status 127",
                }
            source = files.pop("run").decode("utf-8", "surrogateescape")
            spec = spec.model_copy(
                update={"compile": ("bash", "compile") if "compile" in files else None}
            )
        options = shlex.split(record.get("compiler_options") or "")
        args = shlex.split(record.get("command_line_arguments") or "")
        runs = max(1, int(record.get("number_of_runs") or 1))
        stdin = (record.get("stdin") or "").encode("utf-8", "surrogateescape")
        report: JudgeReport | None = None
        error: str | None = None
        try:
            report = await judge(
                source,
                language=spec.with_compile_options(tuple(options)),
                tests=[TestCase(input=stdin)] * runs,
                limits=_limits(record),
                stop_on_failure=True,
                pool=await self._pool_for(record),
                files=files,
                args=args,
            )
        except SandboxkitError as exc:
            error = str(exc)
            log.warning("internal error judging %s: %s", record["token"], exc)
        except Exception as exc:  # a bug: report Internal Error, never leave it Processing
            error = f"{type(exc).__name__}: {exc}"
            log.exception("bug while judging %s", record["token"])
        return result_fields(report, record, error)


def _config(cfg: Settings) -> dict[str, Any]:
    return {
        **CONFIG,
        "enable_submission_delete": cfg.enable_submission_delete,
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
            return _error(400, NOT_UTF8)
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
        total = max(1, cfg.workers)
        working = min(total, service.working)
        return [
            {
                "queue": VERSION,
                "size": service.queue.qsize(),
                "available": total,
                "idle": total - working,
                "working": working,
                "paused": 0,
                "failed": 0,
            }
        ]

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

    def _parse(body: Any, b64: bool) -> tuple[dict[str, Any] | None, dict[str, list[str]]]:
        return parse_submission(
            body,
            b64=b64,
            max_source_bytes=cfg.max_source_bytes,
            max_io_bytes=cfg.max_io_bytes,
            allow_network=cfg.allow_network,
        )

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
        await service.store.insert([record])
        token = record["token"]
        if not _flag(request, "wait"):
            service.queue.put_nowait(token)
            return JSONResponse({"token": token}, status_code=201)
        await service.process(token)
        done = await service.store.get(token)
        assert done is not None
        return JSONResponse(serialize(done, fields, b64), status_code=201)

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
        good: list[dict[str, Any]] = []
        for item in items:
            record, errors = _parse(item, b64)
            if record is None:
                answer.append(errors)
            else:
                good.append(record)
                answer.append({"token": record["token"]})
        await service.store.insert(good)
        for record in good:
            service.queue.put_nowait(record["token"])
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

    async def _one(
        token: str, request: Request
    ) -> tuple[dict[str, Any], tuple[str, ...]] | Response:
        """The stored submission and the fields asked for, or the error answer."""
        fields = _requested_fields(request)
        if isinstance(fields, JSONResponse):
            return fields
        record = await service.store.get(token)
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
        sid = record["status_id"]
        if sid in (1, 2):
            return _error(
                400,
                f"submission cannot be deleted because its status is {sid} ({STATUSES[sid]})",
            )
        await service.store.delete(token)
        return JSONResponse(serialize(record, fields, True))

    return app
