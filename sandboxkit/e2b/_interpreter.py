"""The code interpreter's HTTP API (port 49999 behind ``E2b-Sandbox-Port``) as
``e2b-code-interpreter`` calls it.

``POST /execute`` answers newline-delimited JSON (``stdout``/``stderr``/``result``/
``error``/``number_of_executions``/``end_of_execution``), each line flushed as it happens:
stdout and stderr while the cell runs, its results and error when it ends. ``/contexts``
creates, lists, restarts and removes contexts.

A Python context is a namespace of the session's one ``keep_state`` kernel: the default
context is the kernel's own, every other one a dictionary kept in the kernel (its cells
run with ``exec`` in it), so contexts are independent without one interpreter each. A
bash context runs each cell as ``bash -c`` in the sandbox (a background command of the
session): output streamed, no shell state kept between cells. A JavaScript context is a
node process of its own (:mod:`._javascript`), started at its first cell.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
import secrets
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from .._background import BackgroundProcess
from .._errors import SandboxError
from .._models import DisplayData, RunResult
from .._sandbox import Sandbox
from ._envd import E2B_HOME, SANDBOX_HEADER, box_path
from ._javascript import Kernel, KernelLost, run_cell
from ._registry import Entry, Registry

RESULT_NAME = "__e2b_result__"
MAX_CELL = 3600.0  # seconds: sandboxkit's ceiling on one run
PARTIAL_WAIT = 0.05  # seconds a partial line of output waits for the rest of its line
PRELUDE = (Path(__file__).parent / "_prelude.py").read_text(encoding="utf-8")
MAIN = "application/x-e2b-main"  # the prelude's mark on a cell's last expression
SHOW_MAIN = "getattr(__import__('sys'), '_e2b_main', display)"  # display: no prelude
CONTEXTS = "_e2b_contexts"  # the attribute of ``sys`` (in the kernel) holding contexts
TRACEBACK = "Traceback (most recent call last):"
# the languages E2B's SDK names, onto the ones served here
LANGUAGES = {
    "python": "python",
    "py": "python",
    "javascript": "javascript",
    "js": "javascript",
    "bash": "bash",
    "sh": "bash",
}
OFFERED = "python, javascript and bash"
DEFAULTS = ("python", "javascript", "bash")  # the contexts every sandbox has
SHELL_LINE = re.compile(r"^(\s*)!(.*)$")

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
    "e2b/chart": "chart",  # the prelude's chart data of a matplotlib figure
    "e2b/data": "data",  # ...and a pandas DataFrame's columns
}


# ---------------------------------------------------------------------------- cells
def shell_escapes(code: str) -> str:
    """IPython's ``!cmd`` lines as a shell run by the cell (its output on the cell's)."""
    if "!" not in code:
        return code
    lines = []
    for line in code.splitlines():
        match = SHELL_LINE.match(line)
        if match and not match.group(2).startswith("="):
            indent, command = match.groups()
            # what the cell printed before goes first; the value is None (not shown)
            run = f"__import__('subprocess').call({command!r}, shell=True)"
            line = f"{indent}(__import__('sys').stdout.flush(), {run}, None)[2]"
        lines.append(line)
    return "\n".join(lines) + "\n"


def parsable(code: str) -> str:
    """The cell as Python can parse it: IPython's leniencies applied (shell escapes,
    a common indentation of every line removed). Left as it is when it still does not
    parse, so the kernel reports its SyntaxError."""
    for candidate in (code, textwrap.dedent(code)):
        candidate = shell_escapes(candidate)
        try:
            ast.parse(candidate)
        except SyntaxError:
            continue
        return candidate
    return code


def as_cell(code: str) -> str:
    """The cell with its last expression shown as Jupyter's ``execute_result`` (a
    ``display`` output here) rather than printed to stdout, as sandboxkit's kernel
    does: E2B returns it as the main result."""
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
        f"if {RESULT_NAME} is not None:\n    {SHOW_MAIN}({RESULT_NAME})\n"
        f"del {RESULT_NAME}\n"
    )


def in_context(cell: str, context_id: str) -> str:
    """``cell`` run in the namespace of an extra context, kept in the kernel's ``sys``
    (one expression: nothing is left in the default context's namespace)."""
    namespace = (
        f"__import__('sys').__dict__.setdefault({CONTEXTS!r}, {{}})"
        f".setdefault({context_id!r}, {{'__name__': '__main__'}})"
    )
    return f"exec(compile({cell!r}, '<cell>', 'exec'), {namespace})\n"


def with_setup(cell: str, cwd: str) -> str:
    """The cell after one line of set-up, run in a namespace of its own: E2B's additions
    to the kernel (:mod:`._prelude`) the first time a kernel runs a cell, and the move to
    the context's directory (contexts share the kernel's process; a directory it may not
    enter is left as it is)."""
    setup = (
        "import sys, os\n"
        "if not hasattr(sys, '_e2b_main'):\n"
        f"    exec({PRELUDE!r}, {{'__name__': '_e2b_prelude'}})\n"
        f"try: os.chdir({cwd!r})\n"
        "except OSError: pass\n"
    )
    return f"exec({setup!r}, {{}})\n{cell}"


def restore_env(own: dict[str, str], sandbox: dict[str, str]) -> str:
    """A cell putting the kernel's environment back after one execution's variables:
    the sandbox's own values where it has them, else removed."""
    back = {name: sandbox.get(name) for name in own}
    return (
        f"for __k, __v in {back!r}.items():\n"
        "    __import__('os').environ.pop(__k, None) if __v is None "
        "else __import__('os').environ.__setitem__(__k, __v)\n"
        "del __k, __v\n"
    )


# -------------------------------------------------------------------------- output
def line(body: dict[str, Any]) -> bytes:
    return (json.dumps(body) + "\n").encode()


def _text(value: str) -> str:
    # E2B's server shows a string result without its quotes
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def result_line(output: DisplayData) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "result", "is_main_result": MAIN in output.data}
    extra: dict[str, str] = {}
    for mime, value in output.data.items():
        name = _MIME_FIELDS.get(mime)
        if mime == MAIN:
            continue
        if name in ("json", "chart", "data"):
            body[name] = json.loads(value)
        elif name == "text":
            body["text"] = _text(value)
        elif name is not None:
            body[name] = value
        else:
            extra[mime] = value
    if extra:
        body["extra"] = extra
    return body


def error_line(traceback: str, fallback: str) -> dict[str, Any]:
    """Python's traceback as E2B's error: name, value, traceback."""
    lines = traceback.strip().splitlines()
    last = lines[-1] if lines else fallback
    name, sep, value = last.partition(": ")
    if not sep and not name.isidentifier():
        name, value = "Error", last
    return {"type": "error", "name": name.strip(), "value": value, "traceback": traceback}


def _log(kind: str, text: str) -> bytes:
    return line({"type": kind, "text": text, "timestamp": time.time()})


class Lines:
    """Output passed on in whole lines, as Jupyter's streams do (``print`` writes its
    text and its newline apart). A partial line waits for its end, for the cell's, or
    (a progress bar, a prompt) goes with the next output once it has waited
    :data:`PARTIAL_WAIT`."""

    def __init__(self) -> None:
        self.partial = ""
        self.since = 0.0

    def feed(self, text: str) -> str:
        now = time.monotonic()
        waited = bool(self.partial) and now - self.since >= PARTIAL_WAIT
        text, self.partial = self.partial + text, ""
        cut = len(text) if waited else text.rfind("\n") + 1
        text, self.partial = text[:cut], text[cut:]
        if self.partial:
            self.since = now
        return text

    def rest(self) -> str:
        text, self.partial = self.partial, ""
        return text


class Stderr:
    """A cell's stderr, streamed, except a traceback: from its first line on it is held
    until the cell ends, then it is the error (a failed cell) or stderr after all."""

    def __init__(self) -> None:
        self.held = ""

    def feed(self, text: str) -> str:
        """What of ``text`` to send now."""
        if self.held:
            self.held += text
            return ""
        at = text.find(TRACEBACK)
        if at < 0 and text.startswith('  File "'):  # a SyntaxError has no header
            at = 0
        if at < 0:
            return text
        self.held = text[at:]
        return text[:at]


# ------------------------------------------------------------------------ contexts
@dataclass
class Context:
    id: str
    language: str
    cwd: str
    executions: int = 0
    kernel: Kernel | None = None  # a JavaScript context's node process, once started
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one cell at a time

    def json(self) -> dict[str, str]:
        return {"id": self.id, "language": self.language, "cwd": self.cwd}


@dataclass
class Contexts:
    """One sandbox's contexts: the default one of each language first."""

    by_id: dict[str, Context] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for language in DEFAULTS:
            self.by_id[language] = Context(language, language, E2B_HOME)

    def default(self, language: str) -> Context:
        return self.by_id[language]


# --------------------------------------------------------------------------- runs
async def _python_cell(
    session: Sandbox, context: Context, code: str, env: dict[str, str], seconds: float
) -> AsyncIterator[bytes]:
    cell = as_cell(parsable(code))
    if context.id != "python":
        cell = in_context(cell, context.id)
    cell = with_setup(cell, box_path(context.cwd))
    stdout, stderr_lines, stderr = Lines(), Lines(), Stderr()
    result: RunResult | None = None
    limits = session.limits.model_copy(update={"time": seconds})
    async with session.stream(cell, env=env or None, limits=limits) as events:
        async for event in events:
            if event.kind == "stdout":
                out = stdout.feed(event.data)
                if out:
                    yield _log("stdout", out)
            elif event.kind == "stderr":
                now = stderr.feed(stderr_lines.feed(event.data))
                if now:
                    yield _log("stderr", now)
            elif event.kind == "exit":
                result = event.result
    if result is None:
        raise SandboxError("the cell ended without a result")
    if out := stdout.rest():
        yield _log("stdout", out)
    if now := stderr.feed(stderr_lines.rest()):
        yield _log("stderr", now)
    failed = result.status != "ok"
    if stderr.held and not failed:
        yield _log("stderr", stderr.held)
    for output in result.outputs:
        yield line(result_line(output))
    if failed:
        if stderr.held:
            yield line(error_line(stderr.held, result.status))
        else:
            yield line(
                {
                    "type": "error",
                    "name": result.status,
                    "value": f"the cell ended: {result.status}",
                    "traceback": result.stderr,
                }
            )


async def _bash_cell(
    session: Sandbox, context: Context, code: str, env: dict[str, str], seconds: float
) -> AsyncIterator[bytes]:
    proc = await session.start(["bash", "-c", code], env=env, cwd=box_path(context.cwd))
    assert isinstance(proc, BackgroundProcess)  # a session's argv start is one
    result: RunResult | None = None
    lines = {"stdout": Lines(), "stderr": Lines()}
    async for event in proc:
        if event.kind in lines:
            if text := lines[event.kind].feed(event.data):
                yield _log(event.kind, text)
        elif event.kind == "exit":
            result = event.result
    for kind, rest in lines.items():
        if text := rest.rest():
            yield _log(kind, text)
    if result is not None and result.exit_code != 0:
        code_or_signal = result.exit_code if result.exit_code is not None else result.signal
        yield line(
            {
                "type": "error",
                "name": "CalledProcessError",
                "value": f"bash exited with status {code_or_signal}",
                "traceback": "",
            }
        )


async def _js_cell(
    session: Sandbox,
    context: Context,
    code: str,
    env: dict[str, str],
    seconds: float,
    *,
    sandbox_env: dict[str, str],
) -> AsyncIterator[bytes]:
    async with context.lock:
        for attempt in range(2):
            if context.kernel is None:
                context.kernel = await Kernel.start(session, box_path(context.cwd), sandbox_env)
            kernel = context.kernel
            try:
                token, reader = await kernel.submit(code, env)
                break
            except KernelLost:  # gone before the cell went in (a sandbox resumed): anew
                context.kernel = None
                if attempt:
                    raise SandboxError("the JavaScript kernel could not be started") from None
        lines = {"stdout": Lines(), "stderr": Lines()}
        completed = False
        try:
            async for item in run_cell(kernel, token, reader, seconds):
                kind = item["type"]
                if kind in lines:
                    if text := lines[kind].feed(item["text"]):
                        yield _log(kind, text)
                    continue
                for stream, rest in lines.items():  # the cell's output is all in
                    if text := rest.rest():
                        yield _log(stream, text)
                if kind == "gone":
                    context.kernel = None
                else:
                    yield line(item)
            for stream, rest in lines.items():
                if text := rest.rest():
                    yield _log(stream, text)
            completed = True
        finally:
            if not completed and context.kernel is kernel:
                context.kernel = None  # run_cell stops it: the next cell starts another


# a context's cell: session, context, code, env, seconds -> E2B's lines
Cell = Callable[[Sandbox, Context, str, dict[str, str], float], AsyncIterator[bytes]]


# ------------------------------------------------------------------------- routes
def interpreter_router(registry: Registry) -> APIRouter:
    router = APIRouter()
    sandboxes: dict[str, Contexts] = {}

    def error(code: int, message: str) -> JSONResponse:
        return JSONResponse({"code": code, "message": message}, status_code=code)

    def find(request: Request) -> tuple[Entry, Sandbox, Contexts] | JSONResponse:
        sandbox_id = request.headers.get(SANDBOX_HEADER) or ""
        entry = registry.get(sandbox_id)
        if entry is None or entry.session is None:
            return error(502, f"The sandbox {sandbox_id} was not found")
        if not entry.session.keep_state:
            return error(404, "this sandbox has no code interpreter: use code-interpreter-v1")
        for gone in [s for s in sandboxes if registry.get(s) is None]:
            del sandboxes[gone]  # contexts go with their sandbox
        return entry, entry.session, sandboxes.setdefault(sandbox_id, Contexts())

    @router.post("/execute")
    async def execute(request: Request) -> Response:
        found = find(request)
        if isinstance(found, JSONResponse):
            return found
        entry, session, contexts = found
        body = await request.json()
        code = body.get("code")
        if not isinstance(code, str):
            return error(400, "code must be a string")
        context_id = body.get("context_id")
        if context_id:
            context = contexts.by_id.get(context_id)
            if context is None:
                return error(404, f"context {context_id} not found")
        else:
            language = LANGUAGES.get(body.get("language") or "python")
            if language is None:
                return error(
                    400,
                    f"language {body.get('language')!r} is not offered here: {OFFERED} "
                    "(docs/e2b.md)",
                )
            context = contexts.default(language)
        own_env = {str(k): str(v) for k, v in (body.get("env_vars") or {}).items()}
        env = {**entry.envs, **own_env}
        cells: dict[str, Cell] = {
            "python": _python_cell,
            "bash": _bash_cell,
            "javascript": partial(_js_cell, sandbox_env=entry.envs),
        }
        run = cells[context.language]

        async def stream() -> AsyncIterator[bytes]:
            # a sandbox killed under the cell: the response breaks off (an error here,
            # after the headers went), as E2B's does when its VM goes; the SDK then
            # finds the sandbox gone and reports it killed
            # a cell may run as long as its sandbox lives (E2B's client bounds it with
            # its own timeout, 300 s by default); a session's runs stop at 10 s
            seconds = min(MAX_CELL, max(1.0, entry.end_at - time.time()))
            async for chunk in run(session, context, code, env, seconds):
                yield chunk
            if own_env and context.language == "python":
                # the kernel keeps a run's variables; E2B's are for one execution
                await session.run(restore_env(own_env, entry.envs))
            if registry.get(entry.sandbox_id) is not entry:
                raise SandboxError("the sandbox was killed while the cell ran")
            context.executions += 1
            yield line({"type": "number_of_executions", "execution_count": context.executions})
            yield line({"type": "end_of_execution"})

        return StreamingResponse(stream(), media_type="application/x-ndjson")

    @router.post("/contexts")
    async def create_context(request: Request) -> Response:
        found = find(request)
        if isinstance(found, JSONResponse):
            return found
        _entry, _session, contexts = found
        body = await request.json() if await request.body() else {}
        language = LANGUAGES.get(body.get("language") or "python")
        if language is None:
            return error(400, f"language {body.get('language')!r} is not offered here: {OFFERED}")
        context = Context(secrets.token_hex(8), language, body.get("cwd") or E2B_HOME)
        contexts.by_id[context.id] = context
        return JSONResponse(context.json())

    @router.get("/contexts")
    async def list_contexts(request: Request) -> Response:
        found = find(request)
        if isinstance(found, JSONResponse):
            return found
        return JSONResponse([c.json() for c in found[2].by_id.values()])

    async def emptied(context_id: str, request: Request) -> Response | tuple[Contexts, Context]:
        """The context named, its namespace emptied; E2B's 404 when there is none."""
        found = find(request)
        if isinstance(found, JSONResponse):
            return found
        _entry, session, contexts = found
        context = contexts.by_id.get(context_id)
        if context is None:
            return error(404, f"context {context_id} not found")
        await _forget(session, context)
        return contexts, context

    @router.delete("/contexts/{context_id}")
    async def remove_context(context_id: str, request: Request) -> Response:
        done = await emptied(context_id, request)
        if isinstance(done, Response):
            return done
        if context_id not in DEFAULTS:
            del done[0].by_id[context_id]
        return Response(status_code=204)

    @router.post("/contexts/{context_id}/restart")
    async def restart_context(context_id: str, request: Request) -> Response:
        done = await emptied(context_id, request)
        return done if isinstance(done, Response) else Response(status_code=204)

    return router


async def _forget(session: Sandbox, context: Context) -> None:
    """A Python context's namespace emptied (the default one: all but dunder names); a
    JavaScript context's kernel stopped (the next cell starts a new one)."""
    if context.language == "javascript":
        if context.kernel is not None:
            kernel, context.kernel = context.kernel, None
            await kernel.stop()
        return
    if context.language != "python":
        return
    if context.id == "python":
        cell = "[globals().pop(k) for k in list(globals()) if not k.startswith('__')]\n"
        cell = "_ = " + cell + "del _\n"
    else:
        cell = f"__import__('sys').__dict__.get({CONTEXTS!r}, {{}}).pop({context.id!r}, None)\n"
    await session.run(cell)
