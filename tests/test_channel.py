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
import os, socket, stat, sys
data = sys.stdin.buffer.read()
sys.stdout.buffer.write(data[::-1])
s = socket.socket(socket.AF_UNIX)
try:
    s.connect({wire.CHANNEL_PATH!r})
    print("connected", file=sys.stderr)
except OSError as exc:
    print(type(exc).__name__, exc.errno, file=sys.stderr)
# without a channel the path is the image's empty mount point, a file (_layout.py)
print("socket", stat.S_ISSOCK(os.stat({wire.CHANNEL_PATH!r}).st_mode), file=sys.stderr)
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
        assert lines[0] == "ConnectionRefusedError 111" and lines[1] == "socket True"
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
        # the empty mount point is no socket: the agent does not try it, nor say so
        assert b"no direct channel" not in sb._box.agent_stderr  # type: ignore[attr-defined]
    assert lines[0] == "PermissionError 13" and lines[1] == "socket False"  # root's file


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
    assert lines[0] == "PermissionError 13" and lines[1] == "socket False"  # root's file
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
    assert lines[1] == "socket True" and "Refused" in lines[0]
    assert _channel._refused


async def test_closing_ends_the_container_over_the_channel(session: sk.Sandbox) -> None:
    box = session._box  # type: ignore[attr-defined]
    engine, cid = box.engine, box.cid
    await box.destroy()
    with anyio.fail_after(10):
        while await engine.inspect(cid) is not None:
            await anyio.sleep(0.05)


class _NoAttach:
    """An attach stream with nothing on it (the channel's own tests)."""

    async def write(self, data: bytes) -> None:
        raise AssertionError("written to the attach stream")

    async def read(self) -> tuple[int, bytes] | None:
        return None

    async def close(self) -> None:
        pass

    @property
    def at_eof(self) -> bool:
        return True


@contextlib.asynccontextmanager
async def loop_errors() -> AsyncIterator[list[dict[str, object]]]:
    """What the running loop's exception handler is given inside the block."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        yield errors
    finally:
        loop.set_exception_handler(None)


async def cancel_as_it_becomes_ready(task: asyncio.Task[object], make_ready: object) -> None:
    """Cancel ``task`` (waiting on a socket) in the loop turn that sees the socket ready:
    ``make_ready()`` readies it now, the cancel is queued before the selector's callback."""
    for _ in range(5):
        await asyncio.sleep(0)  # it waits on the socket now
    assert not task.done()
    make_ready()  # type: ignore[operator]
    asyncio.get_running_loop().call_soon(task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(3):
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def connected() -> AsyncIterator[tuple[_channel.ChannelStream, socket.socket]]:
    """A channel (the host's end) and the agent's end of it, over a real socket."""
    listener = await _channel.Listener.open()
    agent = socket.socket(socket.AF_UNIX)
    try:
        agent.connect(listener.path)
        sock = await listener.accept()
    finally:
        await listener.aclose()
    channel = _channel.ChannelStream(sock, _NoAttach(), [])
    try:
        yield channel, agent
    finally:
        agent.close()
        await channel.close()


# A pool closing cancels the start of a replacement sandbox, a run's deadline cancels
# its read: when that lands in the loop turn the socket became ready, the selector's
# callback must not resolve a cancelled future ("Exception in callback
# Future.set_result ... InvalidStateError", printed after `sandboxkit run`'s output).
# No engine needed: sockets of our own.


async def test_an_accept_cancelled_as_the_agent_connects_leaves_the_loop_clean() -> None:
    listener = await _channel.Listener.open()
    agent = socket.socket(socket.AF_UNIX)
    try:
        async with loop_errors() as errors:
            accepting = asyncio.ensure_future(listener.accept())
            await cancel_as_it_becomes_ready(accepting, lambda: agent.connect(listener.path))
    finally:
        agent.close()
        await listener.aclose()
    assert errors == []


async def test_a_read_cancelled_as_a_frame_arrives_keeps_the_frame_and_the_loop_clean() -> None:
    async with connected() as (channel, agent), loop_errors() as errors:
        reading = asyncio.ensure_future(channel.read())
        await cancel_as_it_becomes_ready(reading, lambda: agent.send(b"frame"))
        assert await channel.read() == (_channel.STREAM_STDOUT, b"frame")
    assert errors == []


async def test_a_write_cancelled_as_the_socket_drains_leaves_the_loop_clean() -> None:
    async with connected() as (channel, agent), loop_errors() as errors:
        agent.setblocking(False)
        writing = asyncio.ensure_future(channel.write(b"x" * (16 << 20)))  # past the buffers

        def drain() -> None:
            with contextlib.suppress(BlockingIOError):
                while agent.recv(1 << 20):
                    pass

        await cancel_as_it_becomes_ready(writing, drain)
    assert errors == []


async def test_closing_wakes_a_pending_read_and_write() -> None:
    async with connected() as (channel, agent):
        reading = asyncio.ensure_future(channel.read())
        writing = asyncio.ensure_future(channel.write(b"x" * (16 << 20)))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not reading.done() and not writing.done()
        await channel.close()
        assert await asyncio.wait_for(reading, 5) is None  # ended (no attach stream)
        with pytest.raises((OSError, anyio.ClosedResourceError)):
            await asyncio.wait_for(writing, 5)
        assert channel.at_eof
        del agent
