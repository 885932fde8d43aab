"""The MCP server driven by the official ``mcp`` client (``ClientSession``) over stdio and
streamable HTTP, against real sandboxes."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

mcp = pytest.importorskip("mcp")
from mcp.client.session import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

pytestmark = pytest.mark.docker

TOOLS = {
    "run_code": {"code", "language", "stdin", "timeout", "env", "args"},
    "create_session": {"language"},
    "run_in_session": {"session_id", "code", "stdin", "timeout", "env", "args"},
    "write_file": {"session_id", "path", "content", "encoding"},
    "read_file": {"session_id", "path"},
    "list_files": {"session_id", "path"},
    "close_session": {"session_id"},
    "list_languages": set(),
}
SERVER_ARGS = ["--max-timeout", "5", "--max-output", "200000", "--sessions-per-client", "3"]
PNG = b"\x89PNG\r\n\x1a\n"


def _server_cmd(*extra: str) -> list[str]:
    return [sys.executable, "-m", "sandboxkit", "mcp", *SERVER_ARGS, *extra]


@asynccontextmanager
async def stdio_session(*extra: str, **kwargs: Any) -> AsyncIterator[ClientSession]:
    cmd = _server_cmd(*extra)
    params = StdioServerParameters(command=cmd[0], args=cmd[1:], env=dict(os.environ))
    with open(os.devnull, "w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write, **kwargs) as session,
        ):
            await session.initialize()
            yield session


def _text(result: Any) -> str:
    return "\n".join(c.text for c in result.content if c.type == "text")


def _images(result: Any) -> list[Any]:
    return [c for c in result.content if c.type == "image"]


async def call(session: ClientSession, tool: str, **args: Any) -> Any:
    with anyio.fail_after(150):
        return await session.call_tool(tool, args)


def _exists(container: str) -> bool:
    out = subprocess.run(["docker", "ps", "-aq", "--no-trunc"], capture_output=True, text=True)
    return any(cid.startswith(container) for cid in out.stdout.split())


async def _gone(container: str, timeout: float = 30) -> bool:
    with anyio.move_on_after(timeout):
        while _exists(container):
            await anyio.sleep(0.2)
    return not _exists(container)


# the container's own id, from the engine's bind mounts (/etc/hostname and the like)
CONTAINER_ID = (
    "import re; print(re.search(r'containers/([0-9a-f]{64})/', "
    "open('/proc/self/mountinfo').read()).group(1))"
)


async def session_container(s: ClientSession, sid: str) -> str:
    r = await call(s, "run_in_session", session_id=sid, code=CONTAINER_ID)
    container = r.structured_content["stdout"].strip()
    assert container and _exists(container)
    return container


async def test_tools_listed_with_their_schemas() -> None:
    async with stdio_session() as s:
        listed = (await s.list_tools()).tools
        got = {t.name: set(t.input_schema["properties"]) for t in listed}
        assert got == TOOLS
        run_code = next(t for t in listed if t.name == "run_code")
        assert run_code.input_schema["required"] == ["code"]
        props = run_code.input_schema["properties"]
        assert props["language"]["default"] == "python"
        write = next(t for t in listed if t.name == "write_file")
        assert write.input_schema["properties"]["encoding"]["enum"] == ["utf-8", "base64"]
        langs = await call(s, "list_languages")
        names = {r["name"] for r in langs.structured_content["languages"]}
        assert {"python", "python-data", "bash", "c"} <= names


async def test_run_code_languages_stdin_failures_and_bounds() -> None:
    progress: list[str] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with stdio_session() as s:
        r = await s.call_tool("run_code", {"code": "print(6 * 7)"}, progress_callback=on_progress)
        assert not r.is_error and "42" in _text(r) and "status: ok" in _text(r)
        assert r.structured_content["stdout"] == "42\n"
        assert any("42" in m for m in progress)  # output streamed while it ran

        r = await call(s, "run_code", code="read x; echo got-$x", language="bash", stdin="7\n")
        assert not r.is_error and "got-7" in _text(r)
        r = await call(
            s, "run_code", code='#include <stdio.h>\nint main(){puts("from-c");}', language="c"
        )
        assert not r.is_error and "from-c" in _text(r)

        r = await call(s, "run_code", code="raise SystemExit('boom')")
        assert r.is_error and "status: error" in _text(r) and "boom" in _text(r)
        r = await call(s, "run_code", code="int main(){ nope }", language="c")
        assert r.is_error and "compile_error" in _text(r)

        started = time.monotonic()
        r = await call(s, "run_code", code="while True: pass", timeout=1)
        assert r.is_error and "status: timeout" in _text(r)
        assert time.monotonic() - started < 30  # bounded: the run was stopped
        r = await call(s, "run_code", code="import time; time.sleep(30)", timeout=3600)
        assert r.is_error and r.structured_content["status"] == "timeout"
        assert r.structured_content["duration"] < 10  # clamped to the server's 5 s cap
        assert r.structured_content["note"] == (
            "timeout 3600 s is over this server's cap: the run had 5 s (--max-timeout)"
        )
        assert _text(r).startswith("note: timeout 3600 s is over this server's cap")
        r = await call(s, "run_code", code="print(1)", timeout=2)
        assert "note" not in r.structured_content

        code = "import os, sys\nprint(sys.argv[1:], os.environ['WHO'])"
        r = await call(s, "run_code", code=code, env={"WHO": "model"}, args=["-n", "1"])
        assert r.structured_content["stdout"] == "['-n', '1'] model\n", _text(r)
        r = await call(s, "run_code", code="print(1)", env={"A=B": "x"})
        assert r.is_error and "InvalidInput" in _text(r)

        r = await call(s, "run_code", code="import sys\nwhile True: sys.stdout.write('x' * 9999)")
        assert r.is_error and r.structured_content["truncated"]
        assert len(r.structured_content["stdout"]) <= 200000  # the server's output cap

        r = await call(s, "run_code", code="print(1)", language="no-such-language")
        assert r.is_error and "unknown language" in _text(r)
        r = await call(s, "run_code", code="print(1)", timeout=-1)
        assert r.is_error and "timeout" in _text(r)


async def test_plot_comes_back_as_png_image() -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3], [1, 4, 9])\n"
        "plt.title('squares')\n"
        "plt.show()\n"
        "print('shown')\n"
    )
    # matplotlib's import takes seconds on a loaded machine: a generous timeout
    async with stdio_session("--max-timeout", "120", "--timeout", "120") as s:
        r = await call(s, "run_code", code=code, language="python-data")
        assert not r.is_error, _text(r)
        images = _images(r)
        assert len(images) == 1 and images[0].mime_type == "image/png"
        assert base64.b64decode(images[0].data).startswith(PNG)

        sid = (await call(s, "create_session", language="python-data")).structured_content[
            "session_id"
        ]
        r = await call(
            s,
            "run_in_session",
            session_id=sid,
            code="import pandas as pd\ndf = pd.DataFrame({'a': [1, 2]})\ndf",
        )
        assert not r.is_error and "a" in r.structured_content["stdout"]
        r = await call(
            s,
            "run_in_session",
            session_id=sid,
            code="from PIL import Image\nImage.new('RGB', (4, 4), 'red')",
        )
        images = _images(r)
        assert len(images) == 1 and base64.b64decode(images[0].data).startswith(PNG)


async def test_sessions_state_files_and_path_escapes() -> None:
    async with stdio_session() as s:
        created = await call(s, "create_session")
        assert not created.is_error
        sid = created.structured_content["session_id"]
        assert sid in _text(created)

        await call(s, "run_in_session", session_id=sid, code="x = 20")
        r = await call(s, "run_in_session", session_id=sid, code="x += 1\nprint(x * 2)")
        assert "42" in r.structured_content["stdout"]
        r = await call(s, "run_in_session", session_id=sid, code="print(input())", stdin="hi\n")
        assert r.structured_content["stdout"] == "hi\n"

        r = await call(s, "write_file", session_id=sid, path="d/in.txt", content="héllo")
        assert not r.is_error
        blob = bytes(range(256))
        r = await call(
            s,
            "write_file",
            session_id=sid,
            path="blob.bin",
            content=base64.b64encode(blob).decode(),
            encoding="base64",
        )
        assert not r.is_error
        r = await call(s, "read_file", session_id=sid, path="d/in.txt")
        assert _text(r) == "héllo"
        r = await call(s, "read_file", session_id=sid, path="blob.bin")
        assert r.structured_content["encoding"] == "base64"
        assert base64.b64decode(r.structured_content["content"]) == blob
        png = PNG + blob
        r = await call(
            s,
            "write_file",
            session_id=sid,
            path="plot.png",
            content=base64.b64encode(png).decode(),
            encoding="base64",
        )
        r = await call(s, "read_file", session_id=sid, path="plot.png")
        images = [c for c in r.content if c.type == "image"]
        assert len(images) == 1 and images[0].mime_type == "image/png", r.content
        assert base64.b64decode(images[0].data) == png
        r = await call(
            s, "run_in_session", session_id=sid, code="print(open('blob.bin','rb').read()[255])"
        )
        assert r.structured_content["stdout"] == "255\n"

        r = await call(s, "list_files", session_id=sid)
        paths = {e["path"] for e in r.structured_content["entries"]}
        assert {"d/in.txt", "blob.bin"} <= paths
        r = await call(s, "list_files", session_id=sid, path="d")
        under = {e["path"] for e in r.structured_content["entries"]}
        assert "d/in.txt" in under and "blob.bin" not in under

        for bad in ("../etc/passwd", "/etc/passwd", "d/../../x"):
            r = await call(s, "read_file", session_id=sid, path=bad)
            assert r.is_error, bad
            r = await call(s, "write_file", session_id=sid, path=bad, content="x")
            assert r.is_error, bad
        r = await call(s, "read_file", session_id=sid, path="missing.txt")
        assert r.is_error

        r = await call(s, "run_in_session", session_id=sid, code="while True: pass", timeout=1)
        assert r.is_error and r.structured_content["status"] == "timeout"
        r = await call(s, "run_in_session", session_id=sid, code="print('alive')")
        assert r.structured_content["stdout"] == "alive\n"  # the session survived it

        others = [(await call(s, "create_session")).structured_content for _ in range(2)]
        r = await call(s, "create_session")
        assert r.is_error and "3 open sessions" in _text(r)  # --sessions-per-client 3
        r = await call(s, "close_session", session_id=sid)
        assert not r.is_error
        r = await call(s, "run_in_session", session_id=sid, code="print(1)")
        assert r.is_error and "no open session" in _text(r)
        for o in others:
            await call(s, "close_session", session_id=o["session_id"])


async def test_concurrent_calls() -> None:
    async with stdio_session() as s:
        sid = (await call(s, "create_session")).structured_content["session_id"]
        results: dict[int, Any] = {}

        async def one(i: int) -> None:
            results[i] = await call(s, "run_code", code=f"print({i} * {i})")

        async def in_session(i: int) -> None:
            results[100 + i] = await call(
                s, "run_in_session", session_id=sid, code=f"print('s{i}')"
            )

        async with anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(one, i)
                tg.start_soon(in_session, i)
        for i in range(4):
            assert results[i].structured_content["stdout"] == f"{i * i}\n"
            assert results[100 + i].structured_content["stdout"] == f"s{i}\n"


async def test_disconnected_stdio_client_sessions_are_gone() -> None:
    async with stdio_session() as s:
        sid = (await call(s, "create_session")).structured_content["session_id"]
        container = await session_container(s, sid)
    # the client hung up: the server closed its sessions and ended
    assert await _gone(container)


# ---------------------------------------------------------------------- streamable HTTP
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def http_server() -> Any:
    port = _free_port()
    token = "test-token-123"
    proc = subprocess.Popen(
        [
            *_server_cmd("--transport", "http", "--port", str(port), "--auth-token", token),
            *("--max-timeout", "120"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/mcp", token
    proc.terminate()
    proc.wait(timeout=30)


@asynccontextmanager
async def http_session(url: str, token: str | None) -> AsyncIterator[ClientSession]:
    import httpx2

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as client,
        streamable_http_client(url, http_client=client) as (read, write, *_),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def test_http_tools_plot_session_and_disconnect(http_server: Any) -> None:
    url, token = http_server
    async with http_session(url, token) as s:
        assert {t.name for t in (await s.list_tools()).tools} == set(TOOLS)
        r = await call(s, "run_code", code="print('over http')")
        assert r.structured_content["stdout"] == "over http\n"
        r = await call(
            s,
            "run_code",
            language="python-data",
            code="import matplotlib.pyplot as plt\nplt.bar([1, 2], [3, 4])\nplt.show()",
            timeout=120,
        )
        assert [i.mime_type for i in _images(r)] == ["image/png"]
        r = await call(s, "run_code", code="import time; time.sleep(60)", timeout=1)
        assert r.is_error and r.structured_content["status"] == "timeout"
        sid = (await call(s, "create_session")).structured_content["session_id"]
        await call(s, "run_in_session", session_id=sid, code="y = 5")
        r = await call(s, "run_in_session", session_id=sid, code="print(y + 1)")
        assert r.structured_content["stdout"] == "6\n"
        container = await session_container(s, sid)
    # the client closed its MCP session (DELETE): the server closed its sandbox sessions
    async with http_session(url, token) as s2:
        r = await call(s2, "run_in_session", session_id=sid, code="print(y)")
        assert r.is_error and "no open session" in _text(r)
    assert await _gone(container)


async def test_http_needs_the_token(http_server: Any) -> None:
    import httpx2

    url, _token = http_server
    async with httpx2.AsyncClient() as client:
        resp = await client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert resp.status_code == 401
        resp = await client.post(
            url,
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={"Authorization": "Bearer wrong"},
        )
        assert resp.status_code == 401


async def test_idle_sessions_are_closed() -> None:
    async with stdio_session("--idle-timeout", "1") as s:
        sid = (await call(s, "create_session")).structured_content["session_id"]
        container = await session_container(s, sid)
        assert await _gone(container)  # nobody used it: the server closed it
        r = await call(s, "run_in_session", session_id=sid, code="print(1)")
        assert r.is_error and "no open session" in _text(r)
