"""The direct channel on a real engine (sandboxkit/_channel.py): a local sandbox's frames
go over a mounted Unix socket, nothing in the sandbox can connect to it, and each way it
can fail falls back to the attach stream with the run unchanged."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator

import anyio
import pytest

import sandboxkit as sk
from sandboxkit import _channel
from sandboxkit import _protocol as wire

pytestmark = pytest.mark.docker

PROBE = f"""
import os, socket, sys
data = sys.stdin.buffer.read()
sys.stdout.buffer.write(data[::-1])
s = socket.socket(socket.AF_UNIX)
try:
    s.connect({wire.CHANNEL_PATH!r})
    print("connected", file=sys.stderr)
except OSError as exc:
    print(type(exc).__name__, exc.errno, file=sys.stderr)
print("mounted", os.path.exists({wire.CHANNEL_PATH!r}), file=sys.stderr)
"""

STDIN = bytes(range(256)) * 4096  # 1 MiB, every byte value, in and out


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_channel, "_refused", set())
    monkeypatch.delenv("SANDBOXKIT_CHANNEL", raising=False)


@contextlib.asynccontextmanager
async def fresh_session() -> AsyncIterator[sk.Sandbox]:
    """A session from a pool of its own, made under the test's settings."""
    async with (
        sk.SandboxPool(languages=["python"], size=1) as pool,
        sk.Sandbox(language="python", pool=pool) as sb,
    ):
        yield sb


@pytest.fixture
async def session() -> AsyncIterator[sk.Sandbox]:
    async with fresh_session() as sb:
        yield sb


async def probe(sb: sk.Sandbox) -> list[str]:
    r = await sb.run(PROBE, stdin=STDIN, limits=sk.Limits(output_bytes=2 << 20))
    assert r.status == "ok", r.stderr
    assert r.stdout_bytes == STDIN[::-1]  # byte-exact both ways, whatever the channel
    return r.stderr.split("\n")


async def test_a_local_sandbox_uses_the_channel_and_nothing_inside_can_connect(
    session: sk.Sandbox,
) -> None:
    for _ in range(2):  # and not after a first run either
        lines = await probe(session)
        assert lines[0] == "ConnectionRefusedError 111" and lines[1] == "mounted True"
    leftovers = [p for p in os.listdir(_channel._channel_dir()) if p.endswith(".sock")]
    box = session._box  # type: ignore[attr-defined]
    assert isinstance(box._stream, _channel.ChannelStream)
    assert len(leftovers) <= 2  # only sandboxes still starting have a listening socket


async def test_turned_off_the_sandbox_has_no_socket_at_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SANDBOXKIT_CHANNEL", "attach")
    async with fresh_session() as sb:
        lines = await probe(sb)
    assert lines[0] == "FileNotFoundError 2" and lines[1] == "mounted False"


async def test_an_engine_that_cannot_mount_it_makes_the_sandbox_without(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened = _channel.Listener.open

    async def vanishing() -> _channel.Listener:  # the engine will not find the file
        listener = await opened()
        os.unlink(listener.path)
        return listener

    monkeypatch.setattr(_channel.Listener, "open", staticmethod(vanishing))
    async with fresh_session() as sb:
        lines = await probe(sb)
    assert lines[0] == "FileNotFoundError 2" and lines[1] == "mounted False"
    assert _channel._refused  # and the engine is not offered one again


async def test_an_agent_that_cannot_connect_speaks_over_the_attach_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened = _channel.Listener.open

    async def deaf() -> _channel.Listener:  # the file stays, nothing listens on it
        listener = await opened()
        await listener._listener.aclose()
        return listener

    monkeypatch.setattr(_channel.Listener, "open", staticmethod(deaf))
    async with fresh_session() as sb:
        lines = await probe(sb)
        box = sb._box  # type: ignore[attr-defined]
        assert not isinstance(box._stream, _channel.ChannelStream)
        assert b"no direct channel" in box.agent_stderr
    assert lines[1] == "mounted True" and "Refused" in lines[0]
    assert _channel._refused


async def test_closing_ends_the_container_over_the_channel(session: sk.Sandbox) -> None:
    box = session._box  # type: ignore[attr-defined]
    engine, cid = box.engine, box.cid
    await box.destroy()
    with anyio.fail_after(10):
        while await engine.inspect(cid) is not None:
            await anyio.sleep(0.05)


async def test_an_accept_cancelled_as_the_agent_connects_leaves_the_loop_clean() -> None:
    # a pool closing cancels the start of a replacement sandbox; when that lands in the
    # loop turn that sees the agent connect, the readiness callback must not resolve a
    # cancelled future ("Exception in callback Future.set_result ... InvalidStateError",
    # printed after `sandboxkit run`'s output). No engine needed: a socket of our own.
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    listener = await _channel.Listener.open()
    client = socket.socket(socket.AF_UNIX)
    try:
        accepting = asyncio.ensure_future(listener.accept())
        for _ in range(5):
            await asyncio.sleep(0)  # it waits for the connection now
        assert not accepting.done()
        client.connect(listener.path)  # readable from the next select on
        loop.call_soon(accepting.cancel)  # runs in that turn, before the reader's callback
        with pytest.raises(asyncio.CancelledError):
            await accepting
        for _ in range(3):
            await asyncio.sleep(0)
    finally:
        client.close()
        await listener.aclose()
        loop.set_exception_handler(None)
    assert errors == []
