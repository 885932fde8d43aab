"""The code interpreter's HTTP API (port 49999 behind ``E2b-Sandbox-Port``) as
``e2b-code-interpreter`` calls it: ``POST /execute`` answers newline-delimited JSON
(``stdout``/``stderr``/``result``/``error``/``number_of_executions``/``end_of_execution``)
and ``/contexts`` lists the one Python context: the session's ``keep_state`` kernel.
"""

from __future__ import annotations

import ast
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from .._models import DisplayData, RunResult
from ._envd import HOME, SANDBOX_HEADER
from ._registry import Registry

DEFAULT_CONTEXT = "default"
RESULT_NAME = "__e2b_result__"

# E2B's result fields by MIME type
_MIME_FIELDS = {
    "text/plain": "text",
    "text/html": "html",
    "text/markdown": "markdown",
    "image/svg+xml": "svg",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "application/pdf": "pdf",
    "text/latex": "latex",
    "application/json": "json",
    "application/javascript": "javascript",
}


def as_cell(code: str) -> str:
    """The cell with its last expression shown as Jupyter's ``execute_result`` (a
    ``display`` output here) rather than printed to stdout, as sandboxkit's kernel
    does: E2B returns it as the main result. Code that does not parse is left as it
    is, so the kernel reports its SyntaxError."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        return code
    last = tree.body[-1]
    lines = code.splitlines(keepends=True)
    head = "".join(lines[: last.lineno - 1]) + lines[last.lineno - 1][: last.col_offset]
    expr = ast.get_source_segment(code, last.value) or ""
    return (
        f"{head}{RESULT_NAME} = ({expr})\n"
        f"if {RESULT_NAME} is not None:\n    display({RESULT_NAME})\n"
        f"del {RESULT_NAME}\n"
    )


def _result(output: DisplayData, main: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "result", "is_main_result": main}
    extra: dict[str, str] = {}
    for mime, value in output.data.items():
        field = _MIME_FIELDS.get(mime)
        if field == "json":
            body["json"] = json.loads(value)
        elif field is not None:
            body[field] = value
        else:
            extra[mime] = value
    if extra:
        body["extra"] = extra
    return body


def _error(stderr: str) -> dict[str, Any]:
    """Python's traceback on stderr as E2B's error: name, value, traceback."""
    last = stderr.strip().splitlines()[-1] if stderr.strip() else "Error"
    name, _, value = last.partition(": ")
    return {"type": "error", "name": name.strip(), "value": value, "traceback": stderr}


def lines_of(result: RunResult, count: int) -> list[dict[str, Any]]:
    now = time.time()
    out: list[dict[str, Any]] = []
    failed = result.status != "ok"
    stderr = result.stderr
    if failed and "Traceback (most recent call last)" in stderr:
        at = stderr.index("Traceback (most recent call last)")
        stderr, traceback = stderr[:at], stderr[at:]
    else:
        traceback = stderr if failed else ""
    if result.stdout:
        out.append({"type": "stdout", "text": result.stdout, "timestamp": now})
    if stderr:
        out.append({"type": "stderr", "text": stderr, "timestamp": now})
    outputs = list(result.outputs)
    for i, output in enumerate(outputs):
        # the last display of a cell whose last expression was shown is its main result
        out.append(_result(output, main=i == len(outputs) - 1 and output.kind != "result"))
    if failed:
        if traceback:
            out.append(_error(traceback))
        else:
            out.append(
                {
                    "type": "error",
                    "name": result.status,
                    "value": f"the run ended: {result.status}",
                    "traceback": "",
                }
            )
    out.append({"type": "number_of_executions", "execution_count": count})
    out.append({"type": "end_of_execution"})
    return out


def interpreter_router(registry: Registry) -> APIRouter:
    router = APIRouter()
    counts: dict[str, int] = {}

    def error(code: int, message: str) -> JSONResponse:
        return JSONResponse({"code": code, "message": message}, status_code=code)

    @router.post("/execute")
    async def execute(request: Request) -> Response:
        sandbox_id = request.headers.get(SANDBOX_HEADER) or ""
        entry = registry.get(sandbox_id)
        if entry is None or entry.session is None:
            return error(502, f"The sandbox {sandbox_id} was not found")
        body = await request.json()
        language = body.get("language") or "python"
        if language != "python":
            return error(400, f"language {language!r} is not supported yet (python only)")
        if not entry.session.keep_state:
            return error(404, "this sandbox has no code interpreter: use code-interpreter-v1")
        code = body.get("code")
        if not isinstance(code, str):
            return error(400, "code must be a string")
        env = {**entry.envs, **(body.get("env_vars") or {})}
        session = entry.session

        async def stream() -> AsyncIterator[bytes]:
            result = await session.run(as_cell(code), env=env or None)
            counts[sandbox_id] = counts.get(sandbox_id, 0) + 1
            for line in lines_of(result, counts[sandbox_id]):
                yield (json.dumps(line) + "\n").encode()

        return StreamingResponse(stream(), media_type="application/x-ndjson")

    @router.post("/contexts")
    async def create_context(request: Request) -> Response:
        return JSONResponse({"id": DEFAULT_CONTEXT, "language": "python", "cwd": HOME})

    @router.get("/contexts")
    async def list_contexts() -> Response:
        return JSONResponse([{"id": DEFAULT_CONTEXT, "language": "python", "cwd": HOME}])

    return router
