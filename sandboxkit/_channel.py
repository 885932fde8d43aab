"""A direct channel to a sandbox's agent: one Unix socket instead of the engine's relay.

Over the attach stream every frame passes through two more processes each way (dockerd
and the container's shim), 1-2 ms a hop on a busy machine, and they compete with the
program for the CPU. A sandbox on this machine (its engine reached over a local socket,
a runtime that shares the host's kernel) can take a shorter way: before the container
is made, the host listens on a fresh socket in a private directory and the engine mounts
that one file read-only at ``CHANNEL_PATH``. The agent connects once, as PID 1, before
anything else runs in the container; the host accepts that one connection, then closes
its listener and removes the file, so no program can ever connect again (the mount
stays, refusing). The socket is then the container's only channel for frames; the
attach stream stays open beside it for what only it can do: tell the agent the host is
gone (its end), carry the agent's own stderr, and show the container's end.

Each way it can fail falls back to the attach stream on its own: no socket can be made
here (a temporary directory too deep for a socket's path) and the box is made without
one; an engine that cannot mount the file (it sees another filesystem) refuses the
create and the box is made without it; an agent that cannot connect (a security module
denies it) says ready over stdout. After either of the last two the engine is not
offered a channel again. ``SANDBOXKIT_CHANNEL=attach`` turns the
channel off (benchmarks compare both ways in one run).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import socket
import tempfile
import uuid
import zlib

import anyio
import anyio.abc

from ._backends import STREAM_STDERR, STREAM_STDOUT, AttachedStream, ContainerEngine
from ._errors import SandboxError
from ._fleet.labels import owner_alive, owner_identity

# runtimes whose containers share the host's kernel, so a mounted socket connects
DIRECT_RUNTIMES = frozenset({"runc", "crun"})
CHUNK = 1 << 16  # bytes read from the channel at a time
DRAIN = 2.0  # after the channel ended, how long the agent's last stderr is awaited
_refused: set[str] = set()  # engines (by URL) a channel did not work with
_PREFIX = "sandboxkit-channels-"
_dir: tuple[int, str] | None = None  # (the process that made it, its path)


def wanted(engine: ContainerEngine, runtime: str) -> bool:
    """Whether a new sandbox of ``engine`` under ``runtime`` should get a channel."""
    return (
        engine.local_paths
        and runtime in DIRECT_RUNTIMES
        and engine.url not in _refused
        and os.environ.get("SANDBOXKIT_CHANNEL", "direct") != "attach"
    )


def refuse(engine: ContainerEngine) -> None:
    """A channel did not work with ``engine``: its sandboxes use the attach stream."""
    _refused.add(engine.url)


def _channel_dir() -> str:
    """This process's directory for listening sockets (0700: no other user reaches them;
    a container sees only its own socket, mounted as a file). Its name carries its
    owner, so what a killed process left (it ran no atexit) is removed by the next."""
    global _dir
    # a forked child makes its own: its exit must not remove its parent's sockets
    if _dir is None or _dir[0] != os.getpid() or not os.path.isdir(_dir[1]):
        parent = tempfile.gettempdir()
        with contextlib.suppress(OSError):
            sweep(parent)
        _dir = (os.getpid(), tempfile.mkdtemp(prefix=_PREFIX + _owner_tag(), dir=parent))
        atexit.register(_remove_dir, *_dir)
    return _dir[1]


def _owner_tag(owner: str | None = None) -> str:
    """``PID-START-HOSTHASH-`` of ``owner`` (an ``owner_identity()``; default: this
    process); the host as a hash keeps a socket's path short."""
    host, pid, start = (owner or owner_identity()).rsplit(":", 2)
    return f"{pid}-{start}-{_host_hash(host)}-"


def _host_hash(host: str) -> str:
    return f"{zlib.crc32(host.encode()):08x}"


def sweep(parent: str) -> int:
    """Remove this user's channel directories in ``parent`` whose owner process is gone
    (on this host: a directory from another machine's or namespace's name is left); how
    many."""
    host = os.uname().nodename
    ours = _host_hash(host)
    removed = 0
    for entry in os.scandir(parent):
        fields = entry.name[len(_PREFIX) :].split("-") if entry.name.startswith(_PREFIX) else []
        if len(fields) < 4 or fields[2] != ours:
            continue
        if not entry.is_dir(follow_symlinks=False) or entry.stat().st_uid != os.getuid():
            continue
        if owner_alive(f"{host}:{fields[0]}:{fields[1]}"):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed += 1
    return removed


def _remove_dir(owner: int, path: str) -> None:
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)


class Listener:
    """The host's end of one sandbox's channel, until its agent connects."""

    def __init__(self, path: str, listener: anyio.abc.SocketListener) -> None:
        self.path = path
        self._listener = listener

    @classmethod
    async def open(cls) -> Listener:
        path = os.path.join(_channel_dir(), uuid.uuid4().hex + ".sock")
        # 0666: the agent runs as the sandbox's uid; the directory keeps others out
        return cls(path, await anyio.create_unix_listener(path, mode=0o666))

    async def take(self, engine: ContainerEngine, attached: AttachedStream) -> AttachedStream:
        """The agent's way of talking: the channel once it connected, or ``attached``
        when it spoke there first (it could not connect: ``engine`` is not offered a
        channel again). Closes the listener."""
        early: list[tuple[int, bytes]] = []  # the agent's stderr while it connected
        found: dict[str, object] = {}
        try:
            async with anyio.create_task_group() as tg:

                async def accept() -> None:
                    try:
                        found["sock"] = await self.accept()
                    except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                        return  # no channel after all: the agent speaks on stdout
                    tg.cancel_scope.cancel()

                async def watch() -> None:
                    try:
                        while (chunk := await attached.read()) is not None:
                            if chunk[0] != STREAM_STDERR:
                                found["chunk"] = chunk
                                break
                            early.append(chunk)
                    except Exception as exc:  # noqa: BLE001 - raised below, not in a group
                        found["error"] = exc
                    found.setdefault("chunk", None)
                    tg.cancel_scope.cancel()

                tg.start_soon(accept)
                tg.start_soon(watch)
        finally:
            await self.aclose()
        sock = found.get("sock")
        error = found.get("error")
        if isinstance(error, Exception) and not isinstance(sock, anyio.abc.SocketStream):
            raise error
        if isinstance(sock, anyio.abc.SocketStream):
            if found.get("chunk") is not None:  # the agent cannot write both: a fault
                await sock.aclose()
                raise SandboxError("the sandbox agent wrote frames outside its channel")
            return ChannelStream(sock, attached, early)
        chunk = found.get("chunk")
        if not isinstance(chunk, tuple):  # the agent died before either: not a refusal
            return Prefixed(attached, early, ended=True)
        refuse(engine)
        return Prefixed(attached, [*early, chunk])

    async def accept(self) -> anyio.abc.SocketStream:
        """The agent's connection, once it made it. The wait is this module's own (see
        :class:`ChannelStream`); anyio's ``accept`` then finds the connection there."""
        raw: socket.socket = self._listener.extra(anyio.abc.SocketAttribute.raw_socket)  # noqa: S610 - anyio's, not Django's
        if raw.fileno() < 0:
            raise anyio.ClosedResourceError  # as anyio's accept says it
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(raw, _resolve, ready)
        try:
            await ready
        finally:
            loop.remove_reader(raw)
        return await self._listener.accept()

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self._listener.aclose()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # cancelled in the turn the selector saw the socket ready
        future.set_result(None)


class ChannelStream:
    """An :class:`~sandboxkit._backends.AttachedStream` whose frames go over a channel;
    the attach stream beside it gives the agent's stderr once the channel ended.

    Reads and writes go to the raw socket, with waits of its own: anyio's Unix sockets
    on asyncio wait on a future the selector's callback resolves unconditionally, so a
    cancellation landing in the loop turn the socket became ready (a pool closing while
    a sandbox starts, a run's deadline as its output arrives) made the loop print
    "Exception in callback Future.set_result ... InvalidStateError". One read and one
    write at a time, as anyio's (another at once raises); :meth:`close` wakes both.
    """

    def __init__(
        self,
        sock: anyio.abc.SocketStream,
        attached: AttachedStream,
        early: list[tuple[int, bytes]],
    ) -> None:
        self._sock = sock
        self._raw: socket.socket = sock.extra(anyio.abc.SocketAttribute.raw_socket)  # noqa: S610 - anyio's, not Django's
        self._fd = self._raw.fileno()
        self._attached = attached
        self._early = early
        self._ended = False
        self._closed = False
        self._waits: dict[bool, asyncio.Future[None]] = {}  # write? -> its wait

    async def _ready(self, *, write: bool) -> None:
        """Until the socket can be written (``write``) or read, or :meth:`close`."""
        if write in self._waits:
            raise anyio.BusyResourceError("writing to" if write else "reading from")
        if self._closed:
            return  # the next call on the socket says so
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        # by its number: asyncio looks a socket object up with a KeyError whose message
        # formats the socket's repr, on every wait (~20 us a read)
        (loop.add_writer if write else loop.add_reader)(self._fd, _resolve, ready)
        self._waits[write] = ready
        try:
            await ready
        finally:
            del self._waits[write]
            if not self._closed:  # close() took the registration off already
                (loop.remove_writer if write else loop.remove_reader)(self._fd)

    async def write(self, data: bytes) -> None:
        """Send ``data`` whole (an OSError once the agent or this end is gone)."""
        await asyncio.sleep(0)  # a checkpoint, as every socket call of anyio's
        view = memoryview(data)
        while view:
            try:
                view = view[self._raw.send(view) :]
            except BlockingIOError:
                await self._ready(write=True)

    async def read(self) -> tuple[int, bytes] | None:
        if self._early:
            return self._early.pop(0)
        if not self._ended:
            await asyncio.sleep(0)  # a checkpoint, as every socket call of anyio's
            while True:
                try:
                    data = self._raw.recv(CHUNK)
                except BlockingIOError:
                    await self._ready(write=False)
                    continue
                except OSError:
                    data = b""
                if data:
                    return STREAM_STDOUT, data
                self._ended = True
                break
        # the agent is gone: its last words, if any, went to its stderr
        with anyio.move_on_after(DRAIN), contextlib.suppress(Exception):
            while (chunk := await self._attached.read()) is not None:
                if chunk[0] == STREAM_STDERR:
                    return chunk
        return None

    async def close(self) -> None:
        self._ended = True
        if not self._closed:
            self._closed = True
            loop = asyncio.get_running_loop()
            for write, ready in self._waits.items():  # before the socket is gone
                (loop.remove_writer if write else loop.remove_reader)(self._fd)
                _resolve(ready)
        try:
            with contextlib.suppress(Exception):
                await self._sock.aclose()
        finally:  # even cancelled (a loop shutting down cancels every task): no leak
            await self._attached.close()

    @property
    def at_eof(self) -> bool:
        if self._early:
            return False
        if self._ended:
            return True
        try:  # a peek tells a live agent (nothing to read yet) from a closed socket
            return self._raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return self._attached.at_eof  # the container ended (the socket follows)
        except OSError:
            return True


class Prefixed:
    """``attached`` with chunks already taken from it put back in front (and its end,
    when that was taken too: ``ended``)."""

    def __init__(
        self, attached: AttachedStream, taken: list[tuple[int, bytes]], *, ended: bool = False
    ) -> None:
        self._attached = attached
        self._taken = taken
        self._ended = ended

    async def write(self, data: bytes) -> None:
        await self._attached.write(data)

    async def read(self) -> tuple[int, bytes] | None:
        if self._taken:
            return self._taken.pop(0)
        if self._ended:
            return None
        return await self._attached.read()

    async def close(self) -> None:
        await self._attached.close()

    @property
    def at_eof(self) -> bool:
        return not self._taken and (self._ended or self._attached.at_eof)
