"""The MCP server: sandboxkit's runs, sessions and files as MCP tools, on the official
``mcp`` SDK (v2, ``MCPServer``).

One :class:`SandboxkitMCP` owns a :class:`~sandboxkit.SandboxPool` and the sessions of
its clients. A client is one MCP connection (the stdio process, or one streamable-HTTP
session): its sessions are closed when the connection ends (the SDK unwinds the
connection's exit stack) or when they sit unused past ``Caps.idle_timeout``.

A failure of the user's program (error, timeout, oom, flood) is a normal tool result
with ``isError`` true; refused arguments (a path escape, a cap, an unknown session) are
tool errors too. Output streams while a run goes, as progress notifications (when the
client asked for progress) and log messages.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import warnings
from collections.abc import AsyncIterator
from typing import Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult

from .._egress.policy import Egress
from .._errors import SandboxFileError, SandboxkitError
from .._languages import get_language, languages
from .._models import Event, RunResult
from .._sandbox import Sandbox
from .._sandbox_pool import SandboxPool
from .._validate import check_path
from .._version import __version__
from ._caps import Caps, ToolInputError
from ._content import error_result, file_result, text_result, tool_result
from ._registry import SessionRegistry

log = logging.getLogger("sandboxkit.mcp")


def instructions(network: Egress | None) -> str:
    """What the model is told first: the sandboxes' network as it is (none, or the
    operator's allowed names), so it neither tries nor gives up in vain."""
    if network is None:
        reach = "isolated sandboxes with no network"
    else:
        reach = "isolated sandboxes that reach only these host names over HTTP(S): " + ", ".join(
            network.allow
        )
    return (
        f"Run code in {reach}. run_code runs a snippet in a fresh "
        "sandbox; create_session keeps one sandbox (and, for Python, its variables) across "
        "run_in_session calls, with files read and written by write_file/read_file/list_files. "
        "Figures shown with matplotlib's plt.show() come back as images."
    )


MAX_READ = 8 * 1024 * 1024  # bytes read_file returns at most


def _client_of(ctx: Context[Any, Any]) -> tuple[str, Any]:
    """Who is calling: a key per MCP connection, and the connection (for its teardown)."""
    session = ctx.request_context.session
    conn = getattr(session, "_connection", None)  # the SDK keeps it private on the session
    if conn is None:
        return "default", None
    session_id = getattr(conn, "session_id", None)
    return (f"http:{session_id}" if session_id else f"conn:{id(conn)}"), conn


class SandboxkitMCP:
    """The server's state: the pool, the caps, the clients' sessions. ``async with``."""

    def __init__(
        self,
        caps: Caps | None = None,
        *,
        warm: tuple[str, ...] = ("python",),
        pool_size: int = 1,
        pool: SandboxPool | None = None,
        network: Egress | None = None,
    ) -> None:
        self.caps = caps or Caps()
        self.network = network
        # network: the operator's egress policy for every run and session (none by default)
        self.pool = pool or SandboxPool(languages=list(warm), size=pool_size, network=network)
        self._own_pool = pool is None
        self.sessions: SessionRegistry[Sandbox] = SessionRegistry(self.caps)
        self._reaper: asyncio.Task[None] | None = None
        self.server = self._build()

    async def __aenter__(self) -> SandboxkitMCP:
        if self._own_pool:
            await self.pool.open()
        self._reaper = asyncio.create_task(self._reap_idle())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await self._close(self.sessions.pop_all())
        if self._own_pool:
            await self.pool.aclose()

    # ------------------------------------------------------------------ sessions
    async def _close(self, entries: list[Any]) -> None:
        for entry in entries:
            try:
                await asyncio.shield(entry.sandbox.aclose())
            except (SandboxkitError, OSError) as exc:  # pragma: no cover - logged only
                log.warning("closing session %s: %s", entry.session_id, exc)

    async def close_client(self, client: str) -> None:
        """The client went away: its sessions go too."""
        await self._close(self.sessions.pop_client(client))

    async def _reap_idle(self) -> None:
        period = max(0.05, min(self.caps.idle_timeout / 4, 30.0))
        while True:
            await asyncio.sleep(period)
            await self._close(self.sessions.pop_idle())

    def _client(self, ctx: Context[Any, Any]) -> str:
        client, conn = _client_of(ctx)
        if conn is not None and not conn.state.get("sandboxkit_teardown"):
            conn.state["sandboxkit_teardown"] = True
            conn.exit_stack.push_async_callback(self.close_client, client)
        return client

    # ------------------------------------------------------------------ running
    async def _stream(self, events: Any, ctx: Context[Any, Any]) -> RunResult:
        """Drain a run's events, forwarding output as it comes; the final result."""
        result: RunResult | None = None
        sent = 0
        async with events:
            async for event in events:
                if event.kind == "exit":
                    result = event.result
                elif event.data:
                    sent += 1
                    await _notify(ctx, event, sent)
        if result is None:  # pragma: no cover - the runner always ends with exit
            raise SandboxkitError("the run ended without a result")
        return result

    async def run_code(
        self,
        ctx: Context[Any, Any],
        code: str,
        language: str,
        stdin: str | None,
        timeout: float | None,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> CallToolResult:
        spec = get_language(language)
        limits = self.caps.limits(timeout)
        events = self.pool.stream(
            code, language=spec.name, stdin=stdin, limits=limits, env=env, args=args
        )
        return tool_result(await self._stream(events, ctx), self.caps.lowered(timeout))

    async def create_session(self, ctx: Context[Any, Any], language: str) -> CallToolResult:
        spec = get_language(language)
        client = self._client(ctx)
        self.sessions.reserve(client)
        try:
            sandbox = Sandbox(
                spec.name,
                pool=self.pool,
                limits=self.caps.limits(None),
                keep_state=spec.preload == "python",
                idle_timeout=None,  # the registry's idle timeout closes it
            )
            await sandbox.open()
        except BaseException:
            self.sessions.release(client)
            raise
        entry = self.sessions.add(client, spec.name, sandbox)
        return text_result(
            f'{{"session_id": "{entry.session_id}"}}',
            {"session_id": entry.session_id, "language": spec.name},
        )

    async def run_in_session(
        self,
        ctx: Context[Any, Any],
        session_id: str,
        code: str,
        stdin: str | None,
        timeout: float | None,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> CallToolResult:
        entry = self.sessions.get(self._client(ctx), session_id)
        limits = self.caps.limits(timeout)
        events = entry.sandbox.stream(code, stdin=stdin, limits=limits, env=env, args=args)
        return tool_result(await self._stream(events, ctx), self.caps.lowered(timeout))

    async def write_file(
        self, ctx: Context[Any, Any], session_id: str, path: str, content: str, encoding: str
    ) -> CallToolResult:
        entry = self.sessions.get(self._client(ctx), session_id)
        if encoding == "base64":
            try:
                data = base64.b64decode(content, validate=True)
            except (binascii.Error, ValueError):
                raise ToolInputError("content is not valid base64") from None
        elif encoding == "utf-8":
            data = content.encode("utf-8", "surrogatepass")
        else:
            raise ToolInputError("encoding must be 'utf-8' or 'base64'")
        # the tools' promise is the session's workdir (the Python API reaches the whole box)
        await entry.sandbox.write_file(check_path(path), data)
        return text_result(f"wrote {len(data)} bytes to {path}", {"path": path, "size": len(data)})

    async def read_file(self, ctx: Context[Any, Any], session_id: str, path: str) -> CallToolResult:
        entry = self.sessions.get(self._client(ctx), session_id)
        data = await entry.sandbox.read_file(check_path(path), max_bytes=MAX_READ)
        return file_result(path, data)

    async def list_files(
        self, ctx: Context[Any, Any], session_id: str, path: str
    ) -> CallToolResult:
        entry = self.sessions.get(self._client(ctx), session_id)
        prefix = "" if path in (".", "", "./") else check_path(path).rstrip("/") + "/"
        entries = [
            e
            for e in await entry.sandbox.list_files()
            if not prefix or e.path.startswith(prefix) or e.path + "/" == prefix
        ]
        lines = [f"{e.type}\t{e.size}\t{e.path}" for e in entries] or ["(no files)"]
        return text_result(
            "\n".join(lines), {"entries": [e.model_dump(mode="json") for e in entries]}
        )

    async def close_session(self, ctx: Context[Any, Any], session_id: str) -> CallToolResult:
        entry = self.sessions.pop(self._client(ctx), session_id)
        await self._close([entry])
        return text_result(f"closed session {session_id}", {"closed": session_id})

    def list_languages(self) -> CallToolResult:
        rows: list[dict[str, Any]] = []
        lines: list[str] = []
        for spec in languages():
            name = spec.name
            state = spec.preload == "python"
            rows.append({"name": name, "aliases": list(spec.aliases), "keeps_state": state})
            extra = f" (aliases: {', '.join(spec.aliases)})" if spec.aliases else ""
            lines.append(name + extra + (" — sessions keep state" if state else ""))
        return text_result("\n".join(lines), {"languages": rows})

    # ------------------------------------------------------------------ the tools
    def _build(self) -> MCPServer[Any]:
        server: MCPServer[Any] = MCPServer(
            name="sandboxkit", version=__version__, instructions=instructions(self.network)
        )
        app = self

        @server.tool(
            description="Run code in a fresh, isolated sandbox ("
            + ("no network" if self.network is None else "only the allowed host names")
            + "). env: "
            "environment variables; args: the program's arguments; timeout: seconds "
            "(lowered to the server's cap, the result says so)."
        )
        async def run_code(
            code: str,
            ctx: Context[Any, Any],
            language: str = "python",
            stdin: str | None = None,
            timeout: float | None = None,
            env: dict[str, str] | None = None,
            args: list[str] | None = None,
        ) -> CallToolResult:
            return await _guard(app.run_code(ctx, code, language, stdin, timeout, env, args))

        @server.tool(
            description="Open a sandbox kept across calls; Python sessions keep their "
            'variables and imports between runs. Returns {"session_id": ...}.'
        )
        async def create_session(
            ctx: Context[Any, Any], language: str = "python"
        ) -> CallToolResult:
            return await _guard(app.create_session(ctx, language))

        @server.tool(description="Run code in a session (its files and state persist).")
        async def run_in_session(
            session_id: str,
            code: str,
            ctx: Context[Any, Any],
            stdin: str | None = None,
            timeout: float | None = None,
            env: dict[str, str] | None = None,
            args: list[str] | None = None,
        ) -> CallToolResult:
            return await _guard(
                app.run_in_session(ctx, session_id, code, stdin, timeout, env, args)
            )

        @server.tool(description="Write a file in a session's workdir (base64 for binary).")
        async def write_file(
            session_id: str,
            path: str,
            content: str,
            ctx: Context[Any, Any],
            encoding: Literal["utf-8", "base64"] = "utf-8",
        ) -> CallToolResult:
            return await _guard(app.write_file(ctx, session_id, path, content, encoding))

        @server.tool(
            description="Read a file of a session's workdir: its text; an image (PNG, "
            "JPEG, GIF, WebP) as an image you can see; other binary as 'base64:...'."
        )
        async def read_file(session_id: str, path: str, ctx: Context[Any, Any]) -> CallToolResult:
            return await _guard(app.read_file(ctx, session_id, path))

        @server.tool(description="List the files under a path of a session's workdir.")
        async def list_files(
            session_id: str, ctx: Context[Any, Any], path: str = "."
        ) -> CallToolResult:
            return await _guard(app.list_files(ctx, session_id, path))

        @server.tool(description="Close a session and destroy its sandbox.")
        async def close_session(session_id: str, ctx: Context[Any, Any]) -> CallToolResult:
            return await _guard(app.close_session(ctx, session_id))

        @server.tool(description="The languages code can be run in.")
        async def list_languages() -> CallToolResult:
            return app.list_languages()

        return server


async def _guard(call: Any) -> CallToolResult:
    """A refused argument or a sandbox failure: a tool error the model can read."""
    try:
        result: CallToolResult = await call
    except ToolInputError as exc:
        return error_result(f"error: {exc}")
    except SandboxFileError as exc:
        return error_result(f"file error: {exc}")
    except SandboxkitError as exc:
        return error_result(f"{type(exc).__name__}: {exc}")
    return result


async def _notify(ctx: Context[Any, Any], event: Event, n: int) -> None:
    """One chunk of output, as it is written: a progress notification (shown by clients
    that asked for progress) and a log message. Best effort: never fails the run."""
    try:
        await ctx.report_progress(n, None, f"{event.kind}: {event.data}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            await ctx.log("info", event.data, logger_name=event.kind)
    except Exception as exc:  # noqa: BLE001 - a notification lost is not a failed run
        log.debug("notification dropped: %s", exc)


@contextlib.asynccontextmanager
async def serving(
    caps: Caps | None = None, *, warm: tuple[str, ...] = ("python",), pool_size: int = 1
) -> AsyncIterator[SandboxkitMCP]:
    async with SandboxkitMCP(caps, warm=warm, pool_size=pool_size) as app:
        yield app
