"""OpenAI Agents SDK: :class:`SandboxkitSandboxClient`, a sandbox client whose sessions
are sandboxkit sessions (``SandboxAgent`` + ``SandboxRunConfig(client=...)``, or
``await client.create(options=SandboxkitClientOptions())`` directly).

Written against openai-agents 0.24 (``agents.sandbox``: ``BaseSandboxClient`` with
``create``/``delete``/``resume``/``deserialize_session_state``; ``BaseSandboxSession``
with ``_exec_internal``, ``read``, ``write``, ``running``, ``persist_workspace`` and
``hydrate_workspace``; the SDK builds ``ls``/``mkdir``/``rm``/patches on ``exec``).

The workspace root is the sandbox's workdir, ``/work`` (the manifest's default root
``/workspace`` is mapped to it: the rest of the filesystem is read-only). A session
cannot be resumed in another process (the sandbox belongs to its pool): ``resume``
starts a fresh one and hydrates it from the state's snapshot, as the SDK allows.
"""

from __future__ import annotations

import io
import shlex
import tarfile
from pathlib import Path, PurePosixPath
from typing import Literal

from agents.sandbox.errors import ExecTimeoutError, WorkspaceReadNotFoundError
from agents.sandbox.manifest import Manifest
from agents.sandbox.session.base_sandbox_session import BaseSandboxSession
from agents.sandbox.session.sandbox_client import BaseSandboxClient, BaseSandboxClientOptions
from agents.sandbox.session.sandbox_session import SandboxSession
from agents.sandbox.session.sandbox_session_state import SandboxSessionState
from agents.sandbox.snapshot import SnapshotBase, SnapshotSpec, resolve_snapshot
from agents.sandbox.types import ExecResult, User

from .._errors import InvalidInput, SandboxFileError
from .._layout import WORKDIR
from .._models import Limits
from .._sandbox import Sandbox
from .._sandbox_pool import SandboxPool

_SDK_DEFAULT_ROOT = "/workspace"


class SandboxkitClientOptions(BaseSandboxClientOptions):
    """Options of one sandboxkit sandbox: its language (image) and default limits."""

    type: Literal["sandboxkit"] = "sandboxkit"
    language: str = "bash"
    time: float = 60.0
    memory_mb: int = 256


class SandboxkitSessionState(SandboxSessionState):
    type: Literal["sandboxkit"] = "sandboxkit"
    language: str = "bash"
    time: float = 60.0
    memory_mb: int = 256


def _relative(path: Path | str, root: str) -> str:
    """A workspace path (absolute under the root, or relative to it) as workdir-relative."""
    p = PurePosixPath(str(path))
    if p.is_absolute():
        try:
            p = p.relative_to(root)
        except ValueError:
            raise InvalidInput(f"{path} is outside the sandbox workspace {root}") from None
    return str(p)


class SandboxkitSandboxSession(BaseSandboxSession):
    """One sandboxkit session as the Agents SDK's sandbox session."""

    state: SandboxkitSessionState

    def __init__(self, *, state: SandboxkitSessionState, pool: SandboxPool | None) -> None:
        self.state = state
        self._pool = pool
        self._sandbox: Sandbox | None = None

    def _limits(self, timeout: float | None) -> Limits:
        return Limits(
            time=timeout if timeout and timeout > 0 else self.state.time,
            memory_mb=self.state.memory_mb,
        )

    async def _box(self) -> Sandbox:
        if self._sandbox is None:
            sandbox = Sandbox(
                self.state.language, pool=self._pool, limits=self._limits(None), idle_timeout=None
            )
            await sandbox.open()
            self._sandbox = sandbox
        return self._sandbox

    async def _prepare_backend_workspace(self) -> None:
        await self._box()

    async def _exec_internal(
        self, *command: str | Path, timeout: float | None = None
    ) -> ExecResult:
        sandbox = await self._box()
        script = shlex.join(str(c) for c in command)
        if self.state.language != "bash":
            script = (
                "import subprocess, sys\n"
                f"sys.exit(subprocess.run({script!r}, shell=True).returncode)\n"
            )
        result = await sandbox.run(script, limits=self._limits(timeout))
        if result.status == "timeout":
            raise ExecTimeoutError(command=list(command), timeout_s=timeout)
        exit_code = result.exit_code
        if exit_code is None:
            exit_code = 128 + (result.signal or 9)
        return ExecResult(
            stdout=result.stdout_bytes, stderr=result.stderr_bytes, exit_code=exit_code
        )

    async def read(self, path: Path, *, user: str | User | None = None) -> io.IOBase:
        sandbox = await self._box()
        rel = _relative(path, self.state.manifest.root)
        try:
            return io.BytesIO(await sandbox.read_file(rel))
        except SandboxFileError as exc:
            raise WorkspaceReadNotFoundError(path=Path(str(path)), cause=exc) from exc

    async def write(self, path: Path, data: io.IOBase, *, user: str | User | None = None) -> None:
        sandbox = await self._box()
        payload = data.read()
        if isinstance(payload, str):
            payload = payload.encode()
        await sandbox.write_file(_relative(path, self.state.manifest.root), bytes(payload))

    async def running(self) -> bool:
        return self._sandbox is not None

    async def persist_workspace(self) -> io.IOBase:
        """The workspace as a tar stream with workspace-relative member names."""
        sandbox = await self._box()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for entry in await sandbox.list_files():
                if entry.type == "dir":
                    info = tarfile.TarInfo(entry.path)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
                elif entry.type == "file":
                    data = await sandbox.read_file(entry.path)
                    info = tarfile.TarInfo(entry.path)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        buf.seek(0)
        return buf

    async def hydrate_workspace(self, data: io.IOBase) -> None:
        sandbox = await self._box()
        raw = data.read()
        with tarfile.open(
            fileobj=io.BytesIO(raw if isinstance(raw, bytes) else raw.encode())
        ) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    f = tar.extractfile(member)
                    if f is not None:
                        await sandbox.write_file(member.name, f.read())

    async def _shutdown_backend(self) -> None:
        if self._sandbox is not None:
            sandbox, self._sandbox = self._sandbox, None
            await sandbox.aclose()

    async def shutdown(self) -> None:
        try:
            await super().shutdown()
        finally:
            await self._shutdown_backend()


class SandboxkitSandboxClient(BaseSandboxClient[SandboxkitClientOptions]):
    """Creates Agents SDK sandbox sessions backed by sandboxkit sessions.

    Args:
        pool: the :class:`~sandboxkit.SandboxPool` sessions come from (default: the
            process-wide one of the running event loop).
    """

    backend_id = "sandboxkit"
    supports_default_options = True

    def __init__(self, pool: SandboxPool | None = None) -> None:
        self.pool = pool

    async def create(
        self,
        *,
        snapshot: SnapshotSpec | SnapshotBase | None = None,
        manifest: Manifest | None = None,
        options: SandboxkitClientOptions | None = None,
    ) -> SandboxSession:
        opts = options if options is not None else SandboxkitClientOptions()
        manifest = manifest if manifest is not None else Manifest()
        self._validate_manifest_for_create(manifest)
        if manifest.root == _SDK_DEFAULT_ROOT:
            manifest = manifest.model_copy(update={"root": WORKDIR}, deep=True)
        if manifest.root != WORKDIR:
            raise InvalidInput(f"the sandbox workspace root is {WORKDIR}, not {manifest.root}")
        state = SandboxkitSessionState(
            manifest=manifest,
            snapshot=resolve_snapshot(snapshot, "sandboxkit"),
            language=opts.language,
            time=opts.time,
            memory_mb=opts.memory_mb,
        )
        inner = SandboxkitSandboxSession(state=state, pool=self.pool)
        return self._wrap_session(inner)

    async def delete(self, session: SandboxSession) -> SandboxSession:
        inner = session._inner
        if isinstance(inner, SandboxkitSandboxSession):
            await inner._shutdown_backend()
        return session

    async def resume(self, state: SandboxSessionState) -> SandboxSession:
        if not isinstance(state, SandboxkitSessionState):
            raise TypeError("SandboxkitSandboxClient.resume expects a SandboxkitSessionState")
        return self._wrap_session(SandboxkitSandboxSession(state=state, pool=self.pool))

    def deserialize_session_state(self, payload: dict[str, object]) -> SandboxSessionState:
        return self._deserialize_session_state_payload(payload, SandboxkitSessionState)
