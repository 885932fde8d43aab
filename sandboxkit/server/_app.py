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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from json import JSONDecodeError
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from .._errors import SandboxkitError
from .._judge import judge
from .._judge_models import JudgeReport, TestCase
from .._models import Limits
from .._sandbox_pool import SandboxPool
from .._version import __version__
from ._judge0 import (
    ALL_FIELDS,
    CONFIG,
    DECIMAL_FIELDS,
    DEFAULT_FIELDS,
    PROCESSING,
    STATUSES,
    TEXT_FIELDS,
    VERSION,
    result_fields,
)
from ._requests import available_languages, now, parse_submission
from ._store import Store

log = logging.getLogger("sandboxkit.server")


@dataclass
class Settings:
    """How the server runs. ``auth_token``: when set, every request must carry it in
    ``X-Auth-Token`` (required when the server is bound beyond loopback)."""

    db_path: str = "sandboxkit-judge0.sqlite3"
    auth_token: str | None = None
    workers: int = 2
    warm_languages: tuple[str, ...] = ("python",)
    pool_size: int = 1
    max_source_bytes: int = 512 * 1024
    max_io_bytes: int = 16 * 1024 * 1024
    max_request_bytes: int = 64 * 1024 * 1024
    pool: SandboxPool | None = field(default=None, repr=False)  # an existing one, not closed


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name) == "true"


def _requested_fields(request: Request) -> tuple[str, ...] | JSONResponse:
    raw = request.query_params.get("fields")
    if raw is None or raw.strip() == "":
        return DEFAULT_FIELDS
    if raw.strip() == "*":
        return ALL_FIELDS
    names = [f.strip() for f in raw.split(",") if f.strip()]
    invalid = [f for f in names if f not in ALL_FIELDS]
    if invalid:
        return _error(400, f"invalid fields: [{', '.join(invalid)}]")
    return tuple(names) or DEFAULT_FIELDS


def _encode(value: str, b64: bool) -> str:
    """A stored text field for the answer. Stored text keeps exact bytes (invalid UTF-8
    as surrogate escapes): base64 gives those bytes back, plain text their UTF-8 view."""
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # another lone surrogate, sent as JSON text
        raw = value.encode("utf-8", "replace")
    return base64.b64encode(raw).decode() if b64 else raw.decode("utf-8", "replace")


def serialize(record: dict[str, Any], fields: tuple[str, ...], b64: bool) -> dict[str, Any]:
    """A stored record as Judge0 renders it (decimals as strings, text maybe base64)."""
    langs = available_languages()
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


class Judge0Service:
    """The queue, the workers and the sandbox pool behind the routes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(settings.db_path)
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.slots = asyncio.Semaphore(max(1, settings.workers))
        self.pool: SandboxPool | None = settings.pool
        self._own_pool = settings.pool is None
        self._tasks: list[asyncio.Task[None]] = []

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
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._own_pool and self.pool is not None:
            await self.pool.aclose()
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
            await self.store.update(token, {"status_id": PROCESSING})
            changes = await self._judge(record)
            changes["finished_at"] = now()
            await self.store.update(token, changes)

    async def _judge(self, record: dict[str, Any]) -> dict[str, Any]:
        language = available_languages().get(record["language_id"], ("",))[0]
        if not language:
            return result_fields(None, record, f"language {record['language_id']} is gone")
        limits = Limits(
            time=float(record["wall_time_limit"]),
            cpu_time=float(record["cpu_time_limit"]) + float(record["cpu_extra_time"]),
            memory_mb=max(16, math.ceil(int(record["memory_limit"]) / 1024)),
            pids=min(4096, max(8, int(record["max_processes_and_or_threads"]))),
            file_size_mb=max(1, math.ceil(int(record["max_file_size"]) / 1024)),
            output_bytes=int(record["max_file_size"]) * 1024,
        )
        test = TestCase(input=record.get("stdin") or "", expected=record.get("expected_output"))
        report: JudgeReport | None = None
        error: str | None = None
        try:
            assert self.pool is not None
            report = await judge(
                record["source_code"],
                language=language,
                tests=[test],
                limits=limits,
                checker="lines",
                pool=self.pool,
            )
        except SandboxkitError as exc:
            error = str(exc)
            log.warning("internal error judging %s: %s", record["token"], exc)
        except Exception as exc:  # a bug: report Internal Error, never leave it Processing
            error = f"{type(exc).__name__}: {exc}"
            log.exception("bug while judging %s", record["token"])
        return result_fields(report, record, error)


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

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        if cfg.auth_token is not None:
            given = request.headers.get("x-auth-token", "")
            if not hmac.compare_digest(given.encode(), cfg.auth_token.encode()):
                return Response(status_code=401)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > cfg.max_request_bytes:
            return _error(413, f"request body over {cfg.max_request_bytes} bytes")
        response: Response = await call_next(request)
        return response

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return _error(500, f"internal error: {type(exc).__name__}")

    @app.get("/about")
    async def about() -> dict[str, Any]:
        return {
            "version": VERSION,
            "homepage": None,
            "source_code": None,
            "maintainer": f"sandboxkit {__version__}",
        }

    @app.get("/config_info")
    async def config_info() -> dict[str, Any]:
        return CONFIG

    @app.get("/statuses")
    async def statuses() -> list[dict[str, Any]]:
        return [{"id": i, "description": d} for i, d in STATUSES.items()]

    @app.get("/languages")
    async def languages() -> list[dict[str, Any]]:
        langs = available_languages()
        return [{"id": i, "name": langs[i][1]} for i in sorted(langs, key=lambda i: langs[i][1])]

    @app.get("/languages/{language_id}")
    async def language(language_id: str) -> JSONResponse:
        from .._languages import get_language

        langs = available_languages()
        lid = int(language_id) if language_id.isdigit() else -1
        if lid not in langs:
            return _error(404, f"language with id {language_id} doesn't exist")
        spec = get_language(langs[lid][0])
        return JSONResponse(
            {
                "id": lid,
                "name": langs[lid][1],
                "is_archived": False,
                "source_file": spec.source_file,
                "compile_cmd": " ".join(spec.compile) if spec.compile else None,
                "run_cmd": " ".join(spec.run),
            }
        )

    async def _body(request: Request) -> Any:
        try:
            return await request.json()
        except (JSONDecodeError, UnicodeDecodeError, ValueError):
            return _error(400, "request body must be JSON")

    @app.post("/submissions")
    async def create(request: Request) -> Response:
        fields = _requested_fields(request)
        if isinstance(fields, JSONResponse):
            return fields
        body = await _body(request)
        if isinstance(body, JSONResponse):
            return body
        b64 = _flag(request, "base64_encoded")
        record, errors = parse_submission(
            body, b64=b64, max_source_bytes=cfg.max_source_bytes, max_io_bytes=cfg.max_io_bytes
        )
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
            record, errors = parse_submission(
                item, b64=b64, max_source_bytes=cfg.max_source_bytes, max_io_bytes=cfg.max_io_bytes
            )
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

    @app.get("/submissions/{token}")
    async def show(token: str, request: Request) -> Response:
        fields = _requested_fields(request)
        if isinstance(fields, JSONResponse):
            return fields
        record = await service.store.get(token)
        if record is None:
            return _error(404, f"submission with token {token} not found")
        return JSONResponse(serialize(record, fields, _flag(request, "base64_encoded")))

    return app
