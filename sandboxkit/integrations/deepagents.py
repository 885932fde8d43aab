"""LangChain deepagents: :class:`SandboxkitBackend`, a ``BaseSandbox`` over a sandboxkit
session (``create_deep_agent(..., backend=SandboxkitBackend())``).

Written against deepagents 0.7 (``BaseSandbox`` needs ``execute``, ``upload_files``,
``download_files`` and ``id``; ``ls``/``read``/``write``/``edit``/``grep``/``glob`` are
built by the base class on ``execute``). Commands run with bash in one session (files
persist between calls), stderr merged into stdout in order, as deepagents expects.
Paths are absolute, as deepagents' protocol has them: anywhere in the box the sandbox
user may read or write (``/work``, the workdir and the commands' directory; ``/tmp``;
``$HOME``); a relative path is ``invalid_path``. LangChain's standard sandbox suite
(``langchain_tests.integration_tests.SandboxIntegrationTests``) passes against it.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shlex
from types import TracebackType
from typing import Literal, cast

from deepagents.backends.protocol import (
    ExecuteResponse,
    FileDownloadResponse,
    FileInfo,
    FileOperationError,
    FileUploadResponse,
    GlobResult,
    WriteResult,
)
from deepagents.backends.sandbox import BaseSandbox

from .._errors import InvalidInput, SandboxFileError
from .._layout import WORKDIR
from .._models import Limits, RunResult
from .._sandbox import Sandbox
from .._sandbox_pool import SandboxPool
from ._loop import LoopThread

# glob_paths="relative": Python's own glob in the box, relative to the root given first
_CLASSIC_GLOB = (
    "import glob, json, os, sys\n"
    "root = sys.argv[1]\n"
    "for p in sorted(glob.glob(sys.argv[2], root_dir=root, recursive=True)):\n"
    "    print(json.dumps({'path': p, 'is_dir': os.path.isdir(os.path.join(root, p))}))\n"
)
# every command: stderr into stdout, in order; ``python`` where an image has python3 only
# (deepagents' tools and agents say ``python``), for the command and the shells it starts
_PRELUDE = (
    'exec 2>&1\ncommand -v python >/dev/null || { python() { python3 "$@"; }; export -f python; }\n'
)


def workdir_path(path: str) -> str | None:
    """``path`` relative to the workdir, or None when it lies outside it (kept for
    callers of earlier versions; the backend itself takes any absolute path)."""
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
        write_existing: ``"overwrite"`` (deepagents 0.7's ``write``) or ``"refuse"``
            (an error saying the file already exists: the contract LangChain's standard
            sandbox suite, ``langchain-tests`` 1.1, still checks).
        glob_paths: ``"absolute"`` (deepagents 0.7's ``glob``: files, absolute paths,
            which its permission rules rely on) or ``"relative"``: Python's classic
            ``glob`` (files and directories, ``**`` recursive) relative to the search
            root, as ``langchain-tests`` 1.1 checks.
    """

    def __init__(
        self,
        language: str = "bash",
        *,
        limits: Limits | None = None,
        pool: SandboxPool | None = None,
        write_existing: Literal["overwrite", "refuse"] = "overwrite",
        glob_paths: Literal["absolute", "relative"] = "absolute",
    ) -> None:
        if write_existing not in ("overwrite", "refuse"):
            raise InvalidInput("write_existing must be 'overwrite' or 'refuse'")
        if glob_paths not in ("absolute", "relative"):
            raise InvalidInput("glob_paths must be 'absolute' or 'relative'")
        self.write_existing = write_existing
        self.glob_paths = glob_paths
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
            return _PRELUDE + command
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
            if not path.startswith("/"):
                out.append(FileUploadResponse(path=path, error="invalid_path"))
                continue
            try:
                await self.sandbox.write_file(path, data)
                out.append(FileUploadResponse(path=path, error=None))
            except InvalidInput:
                out.append(FileUploadResponse(path=path, error="invalid_path"))
            except SandboxFileError as exc:
                out.append(FileUploadResponse(path=path, error=_file_error(exc)))
        return out

    async def _download(self, paths: list[str]) -> list[FileDownloadResponse]:
        out = []
        for path in paths:
            if not path.startswith("/"):
                out.append(FileDownloadResponse(path=path, content=None, error="invalid_path"))
                continue
            try:
                data = await self.sandbox.read_file(path)
                out.append(FileDownloadResponse(path=path, content=data, error=None))
            except InvalidInput:
                out.append(FileDownloadResponse(path=path, content=None, error="invalid_path"))
            except SandboxFileError as exc:
                err = _file_error(exc)
                out.append(FileDownloadResponse(path=path, content=None, error=err))
        return out

    async def _exists(self, path: str) -> bool:
        try:
            await self.sandbox.stat(path)
        except (SandboxFileError, InvalidInput):
            return False
        return True

    @staticmethod
    def _already(path: str) -> WriteResult:
        return WriteResult(
            error=f"Cannot write to {path} because it already exists. Read and then make "
            "an edit, or write to a new path."
        )

    def write(self, file_path: str, content: str) -> WriteResult:
        if self.write_existing == "refuse" and self._loop.call(self._exists(file_path)):
            return self._already(file_path)
        return super().write(file_path, content)

    async def awrite(self, file_path: str, content: str) -> WriteResult:
        if self.write_existing == "refuse" and await self._loop.acall(self._exists(file_path)):
            return self._already(file_path)
        return await super().awrite(file_path, content)

    @staticmethod
    def _glob_command(pattern: str, path: str | None) -> str:
        return f"python3 -c {shlex.quote(_CLASSIC_GLOB)} {shlex.quote(path or '/')} " + shlex.quote(
            pattern
        )

    @staticmethod
    def _glob_parse(result: ExecuteResponse) -> GlobResult:
        if result.exit_code != 0:
            return GlobResult(error=f"glob failed: {result.output.strip()[-500:]}")
        matches: list[FileInfo] = []
        for line in result.output.splitlines():
            with contextlib.suppress(ValueError):
                found = json.loads(line)
                # (cast: mypy reads FileInfo's NotRequired keys as required under Python 3.10)
                info = {"path": str(found["path"]), "is_dir": bool(found["is_dir"])}
                matches.append(cast(FileInfo, info))
        return GlobResult(matches=matches)

    def glob(self, pattern: str, path: str | None = None) -> GlobResult:
        if self.glob_paths == "absolute":
            return super().glob(pattern, path)
        return self._glob_parse(self.execute(self._glob_command(pattern, path)))

    async def aglob(self, pattern: str, path: str | None = None) -> GlobResult:
        if self.glob_paths == "absolute":
            return await super().aglob(pattern, path)
        return self._glob_parse(await self.aexecute(self._glob_command(pattern, path)))

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


def _file_error(exc: SandboxFileError) -> FileOperationError:
    """deepagents' four error words for sandboxkit's reasons."""
    return _ERRORS.get(exc.reason, "invalid_path")


_ERRORS: dict[str, FileOperationError] = {
    "not_found": "file_not_found",
    "not_directory": "file_not_found",  # a file where a directory of the path should be
    "is_directory": "is_directory",
    "permission_denied": "permission_denied",
    "too_large": "permission_denied",  # the box's disk is full
}
