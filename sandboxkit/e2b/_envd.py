"""envd, the in-sandbox daemon the ``e2b`` SDK talks to (``E2B_SANDBOX_URL``): the Connect
RPC services ``process.Process`` and ``filesystem.Filesystem`` and the HTTP routes
``/files`` and ``/health``. One address serves every sandbox: the SDK names the sandbox
in the ``E2b-Sandbox-Id`` header of each request.

The Connect services are served by ``connectrpc``'s ASGI application with the message
classes generated from envd's protos that ship in the ``e2b`` package (so both Connect
encodings, binary and JSON, work as the SDK chooses), and this module's implementations
map each call onto the session's ``Sandbox`` methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import secrets
import signal as signals
from collections.abc import AsyncIterator
from typing import Any, Literal

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from e2b.envd.filesystem import filesystem_pb as fs
from e2b.envd.process import process_pb as pb
from protobuf import Oneof
from protobuf.wkt.google.protobuf.timestamp_pb import Timestamp

from .._background import BackgroundProcess, Terminal
from .._errors import InvalidInput, SandboxError, SandboxFileError
from .._models import FileEntry
from .._sandbox import Sandbox
from ._access import ROOT_ENV, ROOT_HOME, as_user
from ._registry import Entry, Registry
from ._templates import E2B_HOME as E2B_HOME  # the interpreter names it from here
from ._watchers import Watcher, event_of

SANDBOX_HEADER = "e2b-sandbox-id"
# E2B's user home and default cwd: every template's image names the sandbox's uid
# ``user`` with this home, a tmpfs of the box's own kept by pause (see _templates)
HOME = E2B_HOME

_FILE_ERRORS = {
    "not_found": Code.NOT_FOUND,
    "exists": Code.ALREADY_EXISTS,
    "permission_denied": Code.PERMISSION_DENIED,
    "invalid_path": Code.INVALID_ARGUMENT,
    "not_a_directory": Code.INVALID_ARGUMENT,
    "is_directory": Code.INVALID_ARGUMENT,
}


def sandbox_of(registry: Registry, sandbox_id: str | None) -> tuple[Entry, Sandbox]:
    entry = registry.get(sandbox_id or "")
    if entry is None or entry.session is None:
        # E2B's proxy answers a missing sandbox with "not found" (the SDK's wording test)
        raise ConnectError(Code.NOT_FOUND, f"The sandbox {sandbox_id} was not found")
    return entry, entry.session


def _session(registry: Registry, ctx: RequestContext[Any, Any]) -> tuple[Entry, Sandbox]:
    return sandbox_of(registry, ctx.request_headers.get(SANDBOX_HEADER))


@contextlib.asynccontextmanager
async def _sandbox_gone() -> AsyncIterator[None]:
    """A stream whose sandbox was killed (or paused) under it ends as envd's would when
    its box goes away: an error the SDK reports, not a server fault."""
    try:
        yield
    except SandboxError as exc:
        raise ConnectError(Code.UNAVAILABLE, f"the sandbox went away: {exc}") from None
    except SandboxFileError as exc:  # the process or watched path went away meanwhile
        raise file_error(exc) from None


def file_error(exc: SandboxFileError | InvalidInput) -> ConnectError:
    if isinstance(exc, InvalidInput):
        return ConnectError(Code.INVALID_ARGUMENT, str(exc))
    return ConnectError(_FILE_ERRORS.get(exc.reason, Code.UNKNOWN), str(exc))


def box_path(path: str) -> str:
    """E2B paths: absolute, or relative to the user's home; sandboxkit's absolute paths
    are the box's, so a relative one is made absolute against the home."""
    if not path:
        return HOME
    return posixpath.normpath(path if path.startswith("/") else posixpath.join(HOME, path))


# ---------------------------------------------------------------------- filesystem
_TYPES = {
    "file": fs.FileType.FILE,
    "dir": fs.FileType.DIRECTORY,
    "symlink": fs.FileType.SYMLINK,
}


def e2b_path(path: str) -> str:
    """A box path as E2B names it: the home's files under ``/home/user``."""
    if path == HOME or path.startswith(HOME + "/"):
        return E2B_HOME + path[len(HOME) :]
    return path


def entry_info(entry: FileEntry, target: FileEntry | None = None) -> fs.EntryInfo:
    """envd's entry; a symlink as envd shows it when ``target`` (what it points to) is
    given: the target's type, and the target's absolute path."""
    seconds = int(entry.mtime)
    kind = target.type if target is not None else entry.type
    return fs.EntryInfo(
        name=posixpath.basename(entry.path.rstrip("/")) or "/",
        type=_TYPES.get(kind, fs.FileType.UNSPECIFIED),
        path=e2b_path(entry.path),
        size=entry.size,
        mode=entry.mode,
        permissions=_permissions(entry),
        owner="user",
        group="user",
        modified_time=Timestamp(seconds=seconds, nanos=int((entry.mtime - seconds) * 1e9)),
        symlink_target=e2b_path(target.path) if target is not None else entry.target,
        is_symlink=entry.type == "symlink",
    )


def _permissions(entry: FileEntry) -> str:
    kind = {"dir": "d", "symlink": "L"}.get(entry.type, "-")
    bits = "".join(ch if entry.mode & (1 << (8 - i)) else "-" for i, ch in enumerate("rwxrwxrwx"))
    return kind + bits


class FilesystemService:
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    async def _stat(self, sb: Sandbox, path: str) -> FileEntry:
        try:
            return await sb.stat(path)
        except (SandboxFileError, InvalidInput) as exc:
            raise file_error(exc) from None

    async def _info(self, sb: Sandbox, entry: FileEntry) -> fs.EntryInfo:
        """An entry as envd reports it: a symlink followed (one step) to its target."""
        if entry.type != "symlink" or not entry.target:
            return entry_info(entry)
        where = entry.path if entry.path.startswith("/") else box_path(entry.path)
        target = posixpath.normpath(posixpath.join(posixpath.dirname(where), entry.target))
        try:
            return entry_info(entry, await sb.stat(target))
        except (SandboxFileError, InvalidInput):  # dangling: the link itself
            return entry_info(entry)

    async def _directory(self, sb: Sandbox, path: str) -> None:
        """envd watches directories only: a file (or nothing) there is an error."""
        if (await self._stat(sb, path)).type != "dir":
            raise ConnectError(Code.INVALID_ARGUMENT, f"path {path} not a directory")

    async def stat(self, request: fs.StatRequest, ctx: RequestContext[Any, Any]) -> fs.StatResponse:
        _, sb = _session(self._registry, ctx)
        entry = await self._stat(sb, box_path(request.path))
        return fs.StatResponse(entry=await self._info(sb, entry))

    async def make_dir(
        self, request: fs.MakeDirRequest, ctx: RequestContext[Any, Any]
    ) -> fs.MakeDirResponse:
        _, sb = _session(self._registry, ctx)
        path = box_path(request.path)
        try:
            await sb.stat(path)
        except SandboxFileError as exc:
            if exc.reason != "not_found":
                raise file_error(exc) from None
        else:
            raise ConnectError(Code.ALREADY_EXISTS, f"{request.path} already exists")
        try:
            await sb.make_dir(path)
        except (SandboxFileError, InvalidInput) as exc:
            raise file_error(exc) from None
        return fs.MakeDirResponse(entry=entry_info(await self._stat(sb, path)))

    async def move(self, request: fs.MoveRequest, ctx: RequestContext[Any, Any]) -> fs.MoveResponse:
        _, sb = _session(self._registry, ctx)
        dst = box_path(request.destination)
        try:
            await sb.rename(box_path(request.source), dst, overwrite=True)
        except (SandboxFileError, InvalidInput) as exc:
            raise file_error(exc) from None
        return fs.MoveResponse(entry=entry_info(await self._stat(sb, dst)))

    async def list_dir(
        self, request: fs.ListDirRequest, ctx: RequestContext[Any, Any]
    ) -> fs.ListDirResponse:
        _, sb = _session(self._registry, ctx)
        try:
            entries = await sb.list_files(box_path(request.path), depth=max(1, request.depth))
        except (SandboxFileError, InvalidInput) as exc:
            raise file_error(exc) from None
        # envd walks a directory in lexical order
        entries = sorted(entries, key=lambda e: e.path)
        return fs.ListDirResponse(entries=[await self._info(sb, e) for e in entries])

    async def remove(
        self, request: fs.RemoveRequest, ctx: RequestContext[Any, Any]
    ) -> fs.RemoveResponse:
        _, sb = _session(self._registry, ctx)
        try:
            await sb.remove(box_path(request.path))
        except SandboxFileError as exc:
            if exc.reason != "not_found":  # envd's remove of nothing succeeds (os.RemoveAll)
                raise file_error(exc) from None
        except InvalidInput as exc:
            raise file_error(exc) from None
        return fs.RemoveResponse()

    async def watch_dir(
        self, request: fs.WatchDirRequest, ctx: RequestContext[Any, Any]
    ) -> AsyncIterator[fs.WatchDirResponse]:
        _, sb = _session(self._registry, ctx)
        path = box_path(request.path)
        await self._directory(sb, path)
        try:
            watch = await sb.watch(path, recursive=request.recursive).start()
        except (SandboxFileError, InvalidInput) as exc:
            raise file_error(exc) from None
        async with _sandbox_gone(), watch:  # stopped in the box when the client goes away
            started = fs.WatchDirResponse.StartEvent()
            start: Oneof[Literal["start"], fs.WatchDirResponse.StartEvent] = Oneof("start", started)
            yield fs.WatchDirResponse(event=start)
            async for change in watch:
                seen: Oneof[Literal["filesystem"], fs.FilesystemEvent]
                seen = Oneof("filesystem", event_of(path, change))
                yield fs.WatchDirResponse(event=seen)

    async def create_watcher(
        self, request: fs.CreateWatcherRequest, ctx: RequestContext[Any, Any]
    ) -> fs.CreateWatcherResponse:
        entry, sb = _session(self._registry, ctx)
        await self._directory(sb, box_path(request.path))
        try:
            watch = sb.watch(box_path(request.path), recursive=request.recursive)
            watcher = await Watcher(watch).start()
        except (SandboxFileError, InvalidInput) as exc:
            raise file_error(exc) from None
        watcher_id = secrets.token_hex(8)
        entry.watchers[watcher_id] = watcher
        return fs.CreateWatcherResponse(watcher_id=watcher_id)

    def _watcher(self, ctx: RequestContext[Any, Any], watcher_id: str) -> tuple[Entry, Watcher]:
        entry, _ = _session(self._registry, ctx)
        watcher = entry.watchers.get(watcher_id)
        if watcher is None:
            raise ConnectError(Code.NOT_FOUND, f"watcher with id {watcher_id} not found")
        return entry, watcher

    async def get_watcher_events(
        self, request: fs.GetWatcherEventsRequest, ctx: RequestContext[Any, Any]
    ) -> fs.GetWatcherEventsResponse:
        _, watcher = self._watcher(ctx, request.watcher_id)
        return fs.GetWatcherEventsResponse(events=await watcher.take())

    async def remove_watcher(
        self, request: fs.RemoveWatcherRequest, ctx: RequestContext[Any, Any]
    ) -> fs.RemoveWatcherResponse:
        entry, watcher = self._watcher(ctx, request.watcher_id)
        entry.watchers.pop(request.watcher_id, None)
        await watcher.stop()
        return fs.RemoveWatcherResponse()


# ---------------------------------------------------------------------- process
def _start_event(pid: int) -> pb.ProcessEvent:
    start: Oneof[Literal["start"], pb.ProcessEvent.StartEvent]
    start = Oneof("start", pb.ProcessEvent.StartEvent(pid=pid))
    return pb.ProcessEvent(event=start)


async def _events(proc: Any, pty: bool = False) -> AsyncIterator[pb.ProcessEvent]:
    """A background process's output as envd's events, flushed as it is read (a
    terminal's screen is envd's ``pty`` output)."""
    async with _sandbox_gone():
        async for event in _output(proc, pty):
            yield event


async def _output(proc: Any, pty: bool) -> AsyncIterator[pb.ProcessEvent]:
    async for event in proc:
        if event.kind in ("stdout", "stderr"):
            raw = event.data_bytes or b""
            output: Oneof[Literal["stdout", "stderr", "pty"], bytes]
            output = Oneof("pty" if pty else event.kind, raw)
            data = pb.ProcessEvent.DataEvent(output=output)  # type: ignore[arg-type]
            chunk: Oneof[Literal["data"], pb.ProcessEvent.DataEvent] = Oneof("data", data)
            yield pb.ProcessEvent(event=chunk)
        elif event.kind == "exit" and event.result is not None:
            result = event.result
            code = result.exit_code if result.exit_code is not None else -1
            status = (
                f"signal: {signals.Signals(result.signal).name.lower()[3:]}"
                if result.signal
                else f"exit status {code}"
            )
            end = pb.ProcessEvent.EndEvent(exit_code=code, exited=True, status=status)
            ended: Oneof[Literal["end"], pb.ProcessEvent.EndEvent] = Oneof("end", end)
            yield pb.ProcessEvent(event=ended)


async def _until_deadline(
    ctx: RequestContext[Any, Any], events: AsyncIterator[pb.ProcessEvent]
) -> AsyncIterator[pb.ProcessEvent]:
    """A stream ended by the client's deadline (Connect's ``connect-timeout-ms``) with
    envd's ``deadline_exceeded``, which the SDK reports as a timeout; the process runs on
    (``connect`` finds it again)."""
    left = ctx.timeout_ms
    if left is None:
        async for event in events:
            yield event
        return
    deadline = asyncio.get_running_loop().time() + left / 1000
    iterator = aiter(events)
    try:
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                event = await asyncio.wait_for(anext(iterator), max(remaining, 0))
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise ConnectError(
                    Code.DEADLINE_EXCEEDED, "the request's deadline passed"
                ) from None
            yield event
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


def _pid(selector: pb.ProcessSelector | None) -> int:
    if selector is None or selector.selector is None or selector.selector.field != "pid":
        raise ConnectError(Code.INVALID_ARGUMENT, "select the process by pid (tags: not yet)")
    return int(selector.selector.value)


class ProcessService:
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    async def list(self, request: pb.ListRequest, ctx: RequestContext[Any, Any]) -> pb.ListResponse:
        _, sb = _session(self._registry, ctx)
        infos = [
            pb.ProcessInfo(
                config=pb.ProcessConfig(cmd=p.cmd[0] if p.cmd else "", args=p.cmd[1:]),
                pid=p.pid,
            )
            for p in await sb.processes()
            if p.background and p.started is not None
        ]
        return pb.ListResponse(processes=infos)

    async def start(
        self, request: pb.StartRequest, ctx: RequestContext[Any, Any]
    ) -> AsyncIterator[pb.StartResponse]:
        entry, sb = _session(self._registry, ctx)
        config = request.process or pb.ProcessConfig()
        argv = [config.cmd, *config.args]
        user = as_user(self._registry, entry, ctx)
        env = {**(ROOT_ENV if user else {}), **entry.envs, **dict(config.envs)}
        cwd = box_path(config.cwd) if config.cwd else (ROOT_HOME if user else HOME)
        size = request.pty.size if request.pty is not None else None
        try:
            if request.pty is not None:
                cols, rows = (size.cols, size.rows) if size is not None else (80, 24)
                proc: BackgroundProcess = await sb.terminal(
                    cols, rows, command=argv, env=env, cwd=cwd, user=user
                )
            else:
                started = await sb.start(argv, env=env, cwd=cwd, user=user)
                assert isinstance(started, BackgroundProcess)  # a session's start() is one
                proc = started
        except (SandboxFileError, InvalidInput) as exc:
            raise file_error(exc) from None
        if isinstance(proc, Terminal):
            entry.terminals[proc.pid] = proc  # for resize, and connect's pty output
        yield pb.StartResponse(event=_start_event(proc.pid))
        events = _events(proc, pty=isinstance(proc, Terminal))
        async for event in _until_deadline(ctx, events):
            yield pb.StartResponse(event=event)
        entry.terminals.pop(proc.pid, None)

    async def connect(
        self, request: pb.ConnectRequest, ctx: RequestContext[Any, Any]
    ) -> AsyncIterator[pb.ConnectResponse]:
        entry, sb = _session(self._registry, ctx)
        pid = _pid(request.process)
        try:
            proc = await sb.connect(pid)
        except SandboxFileError:
            raise ConnectError(Code.NOT_FOUND, f"process with pid {pid} not found") from None
        yield pb.ConnectResponse(event=_start_event(pid))
        async for event in _until_deadline(ctx, _events(proc, pty=pid in entry.terminals)):
            yield pb.ConnectResponse(event=event)

    async def update(
        self, request: pb.UpdateRequest, ctx: RequestContext[Any, Any]
    ) -> pb.UpdateResponse:
        entry, _ = _session(self._registry, ctx)
        pid = _pid(request.process)
        term = entry.terminals.get(pid)
        if term is None:
            raise ConnectError(Code.NOT_FOUND, f"terminal with pid {pid} not found")
        size = request.pty.size if request.pty is not None else None
        if size is not None:
            try:
                await term.resize(size.cols, size.rows)
            except SandboxFileError:
                entry.terminals.pop(pid, None)  # it ended
                raise ConnectError(Code.NOT_FOUND, f"terminal with pid {pid} not found") from None
        return pb.UpdateResponse()

    async def stream_input(
        self, request: AsyncIterator[pb.StreamInputRequest], ctx: RequestContext[Any, Any]
    ) -> pb.StreamInputResponse:
        """A start naming the process, then its input as it comes (stdin or a
        terminal's keys alike: both are the process's input here)."""
        _, sb = _session(self._registry, ctx)
        proc: BackgroundProcess | None = None
        async for message in request:
            event = message.event
            if event is None or event.field == "keepalive":
                continue
            if event.field == "start":
                pid = _pid(event.value.process)
                try:
                    proc = await sb.connect(pid)
                except SandboxFileError:
                    msg = f"process with pid {pid} not found"
                    raise ConnectError(Code.NOT_FOUND, msg) from None
                continue
            if proc is None:
                raise ConnectError(Code.INVALID_ARGUMENT, "the input stream must start first")
            given = event.value.input
            raw = b"" if given is None or given.input is None else bytes(given.input.value)
            try:
                await proc.write(raw)
            except SandboxFileError as exc:
                raise file_error(exc) from None
        return pb.StreamInputResponse()

    async def send_input(
        self, request: pb.SendInputRequest, ctx: RequestContext[Any, Any]
    ) -> pb.SendInputResponse:
        _, sb = _session(self._registry, ctx)
        pid = _pid(request.process)
        data = request.input
        raw = b"" if data is None or data.input is None else bytes(data.input.value)
        try:
            proc = await sb.connect(pid)
            await proc.write(raw)
        except SandboxFileError:
            raise ConnectError(Code.NOT_FOUND, f"process with pid {pid} not found") from None
        return pb.SendInputResponse()

    async def send_signal(
        self, request: pb.SendSignalRequest, ctx: RequestContext[Any, Any]
    ) -> pb.SendSignalResponse:
        _, sb = _session(self._registry, ctx)
        pid = _pid(request.process)
        if not any(p.pid == pid for p in await sb.processes()):
            raise ConnectError(Code.NOT_FOUND, f"process with pid {pid} not found")
        signal = signals.SIGKILL if request.signal == pb.Signal.SIGKILL else signals.SIGTERM
        await sb.kill(pid, signal)
        return pb.SendSignalResponse()

    async def close_stdin(
        self, request: pb.CloseStdinRequest, ctx: RequestContext[Any, Any]
    ) -> pb.CloseStdinResponse:
        _, sb = _session(self._registry, ctx)
        pid = _pid(request.process)
        try:
            proc = await sb.connect(pid)
            await proc.close_stdin()
        except SandboxFileError:
            raise ConnectError(Code.NOT_FOUND, f"process with pid {pid} not found") from None
        return pb.CloseStdinResponse()
