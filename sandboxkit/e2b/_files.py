"""envd's HTTP file routes: ``GET /files?path=`` (download) and ``POST /files`` (upload,
raw ``application/octet-stream`` or multipart with each part named by its path)."""

from __future__ import annotations

import gzip
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .._errors import InvalidInput, SandboxFileError
from ._envd import SANDBOX_HEADER, box_path, e2b_path
from ._registry import Registry

_STATUS = {"not_found": 404, "permission_denied": 403, "is_directory": 400, "invalid_path": 400}


def _error(code: int, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=code)


def files_router(registry: Registry) -> APIRouter:
    router = APIRouter()

    def session(request: Request) -> Any:
        entry = registry.get(request.headers.get(SANDBOX_HEADER) or "")
        if entry is None or entry.session is None:
            return None
        return entry.session

    @router.get("/health")
    async def health(request: Request) -> Response:
        # the SDK's probe: 502 "... was not found" is how E2B's proxy says it is gone
        if session(request) is None:
            return _error(502, "The sandbox was not found")
        return Response(status_code=204)

    @router.get("/files")
    async def download(request: Request) -> Response:
        sb = session(request)
        if sb is None:
            return _error(502, "The sandbox was not found")
        path = box_path(request.query_params.get("path") or "")
        try:
            data = await sb.read_file(path)
        except SandboxFileError as exc:
            return _error(_STATUS.get(exc.reason, 500), str(exc))
        except InvalidInput as exc:
            return _error(400, str(exc))
        return Response(data, media_type="application/octet-stream")

    @router.post("/files")
    async def upload(request: Request) -> Response:
        sb = session(request)
        if sb is None:
            return _error(502, "The sandbox was not found")
        files: list[tuple[str, bytes]] = []
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form()
            for _, part in form.multi_items():
                if isinstance(part, str):
                    continue
                name = request.query_params.get("path") or part.filename or ""
                files.append((name, await part.read()))
        else:
            body = await request.body()
            if request.headers.get("content-encoding", "").lower() == "gzip":
                try:  # the SDK's `gzip=True` upload: the body compressed whole
                    body = gzip.decompress(body)
                except (OSError, EOFError) as exc:
                    return _error(400, f"the gzip body could not be read: {exc}")
            files.append((request.query_params.get("path") or "", body))
        written = []
        for name, data in files:
            path = box_path(name)
            try:
                await sb.write_file(path, data)
            except SandboxFileError as exc:
                return _error(_STATUS.get(exc.reason, 500), str(exc))
            except InvalidInput as exc:
                return _error(400, str(exc))
            name = path.rsplit("/", 1)[-1]
            written.append({"name": name, "type": "file", "path": e2b_path(path)})
        return JSONResponse(written)

    return router
