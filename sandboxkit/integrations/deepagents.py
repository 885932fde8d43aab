"""LangChain deepagents: :class:`SandboxkitBackend`, a ``BaseSandbox`` over a sandboxkit
session (``create_deep_agent(..., backend=SandboxkitBackend())``).

Written against deepagents 0.7 (``BaseSandbox`` needs ``execute``, ``upload_files``,
``download_files`` and ``id``; ``ls``/``read``/``write``/``edit``/``grep``/``glob`` are
built by the base class on ``execute``). Commands run with bash in one session (files
persist between calls), stderr merged into stdout in order, as deepagents expects.
Paths are the sandbox's: absolute under ``/work`` (the workdir), or relative to it.
"""

from __future__ import annotations

import secrets
from types import TracebackType

from deepagents.backends.protocol import (
    ExecuteResponse,
    FileDownloadResponse,
    FileUploadResponse,
)
from deepagents.backends.sandbox import BaseSandbox

from .._errors import InvalidInput, SandboxFileError
from .._models import Limits, RunResult
from .._sandbox import Sandbox
from .._sandbox_pool import SandboxPool
from ._loop import LoopThread

WORKDIR = "/work"


def workdir_path(path: str) -> str | None:
    """``path`` relative to the workdir, or None when it lies outside it."""
    if path.startswith("/"):
        if path == WORKDIR:
            return "."
        if not path.startswith(WORKDIR + "/"):
            return None
        path = path[len(WORKDIR) + 1 :]
    return path or None


class SandboxkitBackend(BaseSandbox):
    """A deepagents sandbox backend: one sandboxkit session (bash by default).

    Args:
        language: the session's language; its image must have ``bash`` and
            ``python3`` (deepagents' read/edit helpers are Python scripts); ``"bash"``
            and ``"python"`` both do.
        limits: default limits of each command (``timeout`` overrides the wall time).
        pool: the :class:`~sandboxkit.SandboxPool` to take the session from.
    """

    def __init__(
        self,
        language: str = "bash",
        *,
        limits: Limits | None = None,
        pool: SandboxPool | None = None,
    ) -> None:
        self._loop = LoopThread("sandboxkit-deepagents")
        self._default_pool = pool is None
        self.limits = limits or Limits()
        self.sandbox = Sandbox(language, limits=self.limits, pool=pool)
        self._id = f"sandboxkit-{secrets.token_hex(6)}"
        self._loop.call(self.sandbox.open())
        self._bash = self.sandbox.language == "bash"

    @property
    def id(self) -> str:
        return self._id

    # ------------------------------------------------------------------ execute
    def _limits(self, timeout: int | None) -> Limits:
        if timeout is None:
            return self.limits
        if timeout <= 0:
            raise InvalidInput("timeout must be a positive number of seconds")
        return self.limits.model_copy(update={"time": float(timeout)})

    def _source(self, command: str) -> str:
        if self._bash:
            return "exec 2>&1\n" + command
        return (  # a Python session: the command through bash
            "import subprocess, sys\n"
            f"r = subprocess.run(['bash', '-c', {command!r}], stderr=subprocess.STDOUT)\n"
            "sys.exit(r.returncode)\n"
        )

    @staticmethod
    def _response(result: RunResult) -> ExecuteResponse:
        output = result.stdout + result.stderr
        if result.status == "timeout":
            output += "\n[sandboxkit: the command timed out]"
        elif result.status == "oom":
            output += "\n[sandboxkit: the command ran out of memory]"
        exit_code = result.exit_code
        if exit_code is None and result.signal is not None:
            exit_code = 128 + result.signal
        return ExecuteResponse(output=output, exit_code=exit_code, truncated=result.truncated)

    def execute(self, command: str, *, timeout: int | None = None) -> ExecuteResponse:
        result = self._loop.call(
            self.sandbox.run(self._source(command), limits=self._limits(timeout))
        )
        return self._response(result)

    async def aexecute(self, command: str, *, timeout: int | None = None) -> ExecuteResponse:
        result = await self._loop.acall(
            self.sandbox.run(self._source(command), limits=self._limits(timeout))
        )
        return self._response(result)

    # ------------------------------------------------------------------ files
    async def _upload(self, files: list[tuple[str, bytes]]) -> list[FileUploadResponse]:
        out = []
        for path, data in files:
            rel = workdir_path(path)
            if rel is None or rel == ".":
                out.append(FileUploadResponse(path=path, error="invalid_path"))
                continue
            try:
                await self.sandbox.write_file(rel, data)
                out.append(FileUploadResponse(path=path, error=None))
            except InvalidInput:
                out.append(FileUploadResponse(path=path, error="invalid_path"))
            except SandboxFileError as exc:
                out.append(FileUploadResponse(path=path, error=_file_error(exc)))
        return out

    async def _download(self, paths: list[str]) -> list[FileDownloadResponse]:
        out = []
        for path in paths:
            rel = workdir_path(path)
            if rel is None:
                out.append(FileDownloadResponse(path=path, content=None, error="invalid_path"))
                continue
            try:
                data = await self.sandbox.read_file(rel)
                out.append(FileDownloadResponse(path=path, content=data, error=None))
            except InvalidInput:
                out.append(FileDownloadResponse(path=path, content=None, error="invalid_path"))
            except SandboxFileError as exc:
                err = _file_error(exc)
                out.append(FileDownloadResponse(path=path, content=None, error=err))
        return out

    def upload_files(self, files: list[tuple[str, bytes]]) -> list[FileUploadResponse]:
        return self._loop.call(self._upload(files))

    async def aupload_files(self, files: list[tuple[str, bytes]]) -> list[FileUploadResponse]:
        return await self._loop.acall(self._upload(files))

    def download_files(self, paths: list[str]) -> list[FileDownloadResponse]:
        return self._loop.call(self._download(paths))

    async def adownload_files(self, paths: list[str]) -> list[FileDownloadResponse]:
        return await self._loop.acall(self._download(paths))

    # ------------------------------------------------------------------ life cycle
    def close(self) -> None:
        """Close the session and this backend's loop."""
        self._loop.close_session(self.sandbox, default_pool=self._default_pool)

    def __enter__(self) -> SandboxkitBackend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _file_error(exc: SandboxFileError) -> str:
    text = str(exc).lower()
    if "not found" in text or "no such" in text or "missing" in text:
        return "file_not_found"
    if "directory" in text:
        return "is_directory"
    if "permission" in text:
        return "permission_denied"
    return str(exc)
