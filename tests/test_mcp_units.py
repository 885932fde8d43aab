"""The MCP server's pure parts: caps and clamping, the session registry, result content,
the HTTP bind rule and the bearer check. No Docker."""

from __future__ import annotations

import base64
from typing import Any

import pytest

pytest.importorskip("mcp")

from sandboxkit import DisplayData, RunResult
from sandboxkit.mcp import Caps, ToolInputError
from sandboxkit.mcp._content import file_result, image_type, summary, tool_result
from sandboxkit.mcp._registry import SessionRegistry
from sandboxkit.mcp._transports import BearerAuth, check_bind, is_loopback


def test_timeouts_are_clamped_and_nonsense_refused() -> None:
    caps = Caps(default_timeout=3, max_timeout=5, memory_mb=128, output_bytes=1000)
    assert caps.limits(None).time == 3
    assert caps.limits(2).time == 2
    assert caps.limits(3600).time == 5
    limits = caps.limits(1)
    assert (limits.memory_mb, limits.output_bytes) == (128, 1000)
    for bad in (0, -1, float("nan"), float("inf"), True, "3"):
        with pytest.raises(ToolInputError):
            caps.limits(bad)  # type: ignore[arg-type]


def test_default_timeout_never_exceeds_the_cap() -> None:
    caps = Caps(default_timeout=30, max_timeout=5)
    assert caps.limits(None).time == 5
    assert caps.lowered(None) is None and caps.lowered(5) is None
    assert (
        caps.lowered(7.5)
        == "timeout 7.5 s is over this server's cap: the run had 5 s (--max-timeout)"
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_registry_caps_owners_and_idle() -> None:
    clock = Clock()
    reg: SessionRegistry[str] = SessionRegistry(
        Caps(sessions_per_client=2, max_sessions=3, idle_timeout=10), clock
    )
    reg.reserve("a")
    a1 = reg.add("a", "python", "sb1")
    reg.reserve("a")
    reg.add("a", "python", "sb2")
    with pytest.raises(ToolInputError, match="2 open sessions"):
        reg.reserve("a")
    reg.reserve("b")
    reg.release("b")  # an open that failed gives its room back
    reg.reserve("b")
    reg.add("b", "bash", "sb3")
    with pytest.raises(ToolInputError, match="maximum of 3"):
        reg.reserve("c")
    # another client's session is as unknown as a wrong id
    with pytest.raises(ToolInputError, match="no open session"):
        reg.get("b", a1.session_id)
    assert reg.get("a", a1.session_id).sandbox == "sb1"
    assert len(a1.session_id) >= 16 and len({e.session_id for e in reg.pop_all()}) == 3

    reg.reserve("a")
    e1 = reg.add("a", "python", "x")
    reg.reserve("a")
    e2 = reg.add("a", "python", "y")
    clock.now = 8
    reg.get("a", e2.session_id)  # used: its idle time starts again
    clock.now = 15
    assert [e.sandbox for e in reg.pop_idle()] == ["x"]
    assert reg.pop_client("a")[0].session_id == e2.session_id
    assert len(reg) == 0
    with pytest.raises(ToolInputError):
        reg.pop("a", e1.session_id)


PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nrest").decode()


def test_result_content_text_images_and_is_error() -> None:
    ok = RunResult(
        status="ok",
        exit_code=0,
        stdout="hi\n",
        outputs=(
            DisplayData(data={"image/png": PNG, "text/plain": "<Figure>"}),
            DisplayData(kind="result", data={"text/html": "<table/>", "text/plain": "df"}),
            DisplayData(data={"text/markdown": "**b**", "text/plain": "b"}),
        ),
    )
    res = tool_result(ok)
    assert res.is_error is False
    kinds = [c.type for c in res.content]
    assert kinds == ["text", "image", "text"]  # the result's text was already printed
    assert res.content[1].mime_type == "image/png" and res.content[1].data == PNG
    assert "**b**" in res.content[2].text
    assert res.structured_content is None  # with a figure: the content blocks only
    plain = tool_result(RunResult(status="ok", stdout="hi\n"))
    assert plain.structured_content is not None
    assert plain.structured_content["stdout"] == "hi\n"

    failed = tool_result(RunResult(status="timeout", signal=9, stderr="slow"))
    assert failed.is_error is True
    text = failed.content[0].text
    assert "status: timeout" in text and "signal 9" in text and "slow" in text
    assert "(no output)" in summary(RunResult(status="ok"))
    assert "truncated" in summary(RunResult(status="output_limit", truncated=True))
    reset = tool_result(RunResult(status="timeout", state_lost=True))
    assert "state was reset" in reset.content[0].text
    assert reset.structured_content is not None and reset.structured_content["state_lost"]
    assert "reset" not in summary(RunResult(status="ok"))


def test_http_binds_loopback_unless_given_a_token() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "secret")
    with pytest.raises(ValueError, match="bearer token"):
        check_bind("0.0.0.0", None)


async def test_bearer_auth_middleware() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    guarded = BearerAuth(app, "tok")
    await guarded({"type": "http", "headers": [(b"authorization", b"Bearer no")]}, None, send)
    assert sent[0]["status"] == 401 and not seen
    await guarded({"type": "http", "headers": []}, None, send)
    assert not seen
    await guarded({"type": "http", "headers": [(b"authorization", b"Bearer tok")]}, None, send)
    await guarded({"type": "lifespan"}, None, send)
    assert seen == ["http", "lifespan"]


async def test_tool_schemas_are_exactly_the_contract() -> None:
    from sandboxkit.mcp import SandboxkitMCP

    app = SandboxkitMCP()
    tools = {t.name: t.input_schema for t in await app.server.list_tools()}
    assert set(tools) == {
        "run_code",
        "create_session",
        "run_in_session",
        "write_file",
        "read_file",
        "list_files",
        "close_session",
        "list_languages",
    }
    run = tools["run_code"]["properties"]
    assert list(run) == ["code", "language", "stdin", "timeout", "env", "args"]
    assert list(tools["run_in_session"]["properties"])[-2:] == ["env", "args"]
    assert run["language"]["default"] == "python" and run["timeout"]["default"] is None
    assert tools["run_in_session"]["required"] == ["session_id", "code"]
    assert tools["write_file"]["properties"]["encoding"] == {
        "default": "utf-8",
        "enum": ["utf-8", "base64"],
        "title": "Encoding",
        "type": "string",
    }
    assert tools["list_files"]["properties"]["path"]["default"] == "."
    assert tools["list_languages"]["properties"] == {}


def test_a_file_read_is_an_image_when_it_is_one() -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    res = file_result("out/plot.png", png)
    assert [c.type for c in res.content] == ["text", "image"]
    assert res.content[1].mime_type == "image/png"
    assert base64.b64decode(res.content[1].data) == png
    assert "out/plot.png" in res.content[0].text and res.structured_content is None
    assert image_type(b"\xff\xd8\xff\xe0....") == "image/jpeg"
    assert image_type(b"GIF89a...") == "image/gif"
    assert image_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    text = file_result("a.txt", "héllo".encode())
    assert text.content[0].text == "héllo" and text.structured_content["encoding"] == "utf-8"
    blob = file_result("b.bin", bytes(range(256)))
    assert blob.content[0].text.startswith("base64:")
    assert base64.b64decode(blob.structured_content["content"]) == bytes(range(256))


def test_the_model_is_told_the_network_as_it_is() -> None:
    import sandboxkit as sk
    from sandboxkit.mcp._server import instructions

    assert "no network" in instructions(None)
    told = instructions(sk.Egress(allow=["pypi.org", "*.example.com"]))
    assert "no network" not in told and "pypi.org, *.example.com" in told
