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

import posixpath
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

from .._background import BackgroundProcess
from .._container import WORKDIR
from .._errors import InvalidInput, SandboxFileError
from .._models import FileEntry
from .._sandbox import Sandbox
from ._registry import Entry, Registry

SANDBOX_HEADER = "e2b-sandbox-id"
E2B_HOME = "/home/user"  # E2B's user home and default cwd...
HOME = WORKDIR  # ...is the session's workdir here (the sandbox user's own, kept by pause)

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


def file_error(exc: SandboxFileError | InvalidInput) -> ConnectError:
    if isinstance(exc, InvalidInput):
        return ConnectError(Code.INVALID_ARGUMENT, str(exc))
    return ConnectError(_FILE_ERRORS.get(exc.reason, Code.UNKNOWN), str(exc))


def box_path(path: str) -> str:
    """E2B paths: absolute, or relative to the user's home; sandboxkit's absolute paths
    are the box's, so a relative one is made absolute against the home."""
    if not path:
        return HOME
    where = posixpath.normpath(path if path.startswith("/") else posixpath.join(HOME, path))
    if where == E2B_HOME or where.startswith(E2B_HOME + "/"):
        where = HOME + where[len(E2B_HOME) :]
    return where


# ---------------------------------------------------------------------- filesystem
_TYPES = {
    "file": fs.FileType.FILE,
    "dir": fs.FileType.DIRECTORY,
    "symlink": fs.FileType.SYMLINK,
}


def entry_info(entry: FileEntry) -> fs.EntryInfo:
    seconds = int(entry.mtime)
    return fs.EntryInfo(
        name=posixpath.basename(entry.path.rstrip("/")) or "/",
        type=_TYPES.get(entry.type, fs.FileType.UNSPECIFIED),
        path=entry.path,
        size=entry.size,
        mode=entry.mode,
        permissions=_permissions(entry),
        owner="user",
        group="user",
        modified_time=Timestamp(seconds=seconds, nanos=int((entry.mtime - seconds) * 1e9)),
        symlink_target=entry.target,
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

    async def stat(self, request: fs.StatRequest, ctx: RequestContext[Any, Any]) -> fs.StatResponse:
        _, sb = _session(self._registry, ctx)
        return fs.StatResponse(entry=entry_info(await self._stat(sb, box_path(request.path))))

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
        return fs.ListDirResponse(entries=[entry_info(e) for e in entries])

    async def remove(
        self, request: fs.RemoveRequest, ctx: RequestContext[Any, Any]
    ) -> fs.RemoveResponse:
        _, sb = _session(self._registry, ctx)
        try:
            await sb.remove(box_path(request.path))
        except (SandboxFileError, InvalidInput) as exc:
            raise file_error(exc) from None
        return fs.RemoveResponse()

    def watch_dir(
        self, request: fs.WatchDirRequest, ctx: RequestContext[Any, Any]
    ) -> AsyncIterator[fs.WatchDirResponse]:
        raise ConnectError(Code.UNIMPLEMENTED, "watching a directory is not supported yet")

    async def create_watcher(
        self, request: fs.CreateWatcherRequest, ctx: RequestContext[Any, Any]
    ) -> fs.CreateWatcherResponse:
        raise ConnectError(Code.UNIMPLEMENTED, "watching a directory is not supported yet")

    async def get_watcher_events(
        self, request: fs.GetWatcherEventsRequest, ctx: RequestContext[Any, Any]
    ) -> fs.GetWatcherEventsResponse:
        raise ConnectError(Code.UNIMPLEMENTED, "watching a directory is not supported yet")

    async def remove_watcher(
        self, request: fs.RemoveWatcherRequest, ctx: RequestContext[Any, Any]
    ) -> fs.RemoveWatcherResponse:
        raise ConnectError(Code.UNIMPLEMENTED, "watching a directory is not supported yet")


# ---------------------------------------------------------------------- process
def _start_event(pid: int) -> pb.ProcessEvent:
    start: Oneof[Literal["start"], pb.ProcessEvent.StartEvent]
    start = Oneof("start", pb.ProcessEvent.StartEvent(pid=pid))
    return pb.ProcessEvent(event=start)


async def _events(proc: Any) -> AsyncIterator[pb.ProcessEvent]:
    """A background process's output as envd's events, flushed as it is read."""
    async for event in proc:
        if event.kind in ("stdout", "stderr"):
            data = pb.ProcessEvent.DataEvent(output=Oneof(event.kind, event.data_bytes or b""))
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
        env = {**entry.envs, **dict(config.envs)}
        cwd = box_path(config.cwd) if config.cwd else HOME
        try:
            proc = await sb.start(argv, env=env, cwd=cwd)
        except (SandboxFileError, InvalidInput) as exc:
            raise file_error(exc) from None
        assert isinstance(proc, BackgroundProcess)  # a session's start() is one
        yield pb.StartResponse(event=_start_event(proc.pid))
        async for event in _events(proc):
            yield pb.StartResponse(event=event)

    async def connect(
        self, request: pb.ConnectRequest, ctx: RequestContext[Any, Any]
    ) -> AsyncIterator[pb.ConnectResponse]:
        _, sb = _session(self._registry, ctx)
        pid = _pid(request.process)
        try:
            proc = await sb.connect(pid)
        except SandboxFileError:
            raise ConnectError(Code.NOT_FOUND, f"process with pid {pid} not found") from None
        yield pb.ConnectResponse(event=_start_event(pid))
        async for event in _events(proc):
            yield pb.ConnectResponse(event=event)

    async def update(
        self, request: pb.UpdateRequest, ctx: RequestContext[Any, Any]
    ) -> pb.UpdateResponse:
        raise ConnectError(Code.UNIMPLEMENTED, "terminals are not supported yet")

    async def stream_input(
        self, request: AsyncIterator[pb.StreamInputRequest], ctx: RequestContext[Any, Any]
    ) -> pb.StreamInputResponse:
        raise ConnectError(Code.UNIMPLEMENTED, "streamed input is not supported yet")

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
