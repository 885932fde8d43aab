"""``Sandbox``: one-shot runs (``Sandbox.run``/``Sandbox.stream`` on the class) and
sessions (``async with Sandbox(...) as sb``: one container kept for several runs)."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar, overload

import anyio

from ._container import Box
from ._default import default_pool
from ._errors import InvalidInput, SandboxError
from ._languages import get_language
from ._models import Event, Limits, RunResult
from ._pool import WarmPool
from ._process import Process
from ._runner import final_result
from ._sandbox_pool import Runtime, SandboxPool, check_runtime, run_program
from ._transfer import collect_local, store_local
from ._validate import (
    MAX_FILES,
    MAX_FILES_BYTES,
    RunInput,
    check_files,
    check_limits,
    check_path,
    prepare_run,
)

R = TypeVar("R")

MAX_READ_BYTES = 64 * 1024 * 1024


class _ClassOrInstance(Generic[R]):
    """``Sandbox.run(...)`` is a one-shot run; ``sandbox.run(...)`` runs in the session."""

    def __init__(self, on_class: Callable[..., R], on_instance: Callable[..., R]) -> None:
        self._on_class = on_class
        self._on_instance = on_instance
        functools.update_wrapper(self, on_class)  # type: ignore[arg-type]

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Callable[..., R]: ...
    @overload
    def __get__(self, obj: object, owner: type[Any]) -> Callable[..., R]: ...
    def __get__(self, obj: object | None, owner: type[Any]) -> Callable[..., R]:
        if obj is None:
            return self._on_class
        return functools.partial(self._on_instance, obj)


async def _oneshot_run(
    code: str,
    *,
    language: str = "python",
    stdin: str | bytes | None = None,
    files: Mapping[str, bytes] | None = None,
    limits: Limits | None = None,
    pool: SandboxPool | None = None,
    runtime: Runtime | None = None,
) -> RunResult:
    """Run ``code`` in a fresh sandbox from the (default) pool and return its result."""
    get_language(language)  # bad input fails before any engine work
    check_runtime(runtime)
    target = pool or await default_pool()
    return await target.run(
        code, language=language, stdin=stdin, files=files, limits=limits, runtime=runtime
    )


async def _oneshot_stream(
    code: str,
    *,
    language: str = "python",
    stdin: str | bytes | None = None,
    files: Mapping[str, bytes] | None = None,
    limits: Limits | None = None,
    pool: SandboxPool | None = None,
    runtime: Runtime | None = None,
) -> AsyncGenerator[Event, None]:
    """Run ``code`` once; yield ``stdout``/``stderr`` chunks as written, then ``exit``."""
    get_language(language)
    check_runtime(runtime)
    target = pool or await default_pool()
    events = target.stream(
        code, language=language, stdin=stdin, files=files, limits=limits, runtime=runtime
    )
    async with aclosing(events):
        async for event in events:
            yield event


async def _oneshot_start(
    code: str,
    *,
    language: str = "python",
    stdin: str | bytes | None = None,
    files: Mapping[str, bytes] | None = None,
    limits: Limits | None = None,
    pool: SandboxPool | None = None,
    runtime: Runtime | None = None,
) -> Process:
    """Start ``code`` in a fresh sandbox with its stdin open (``async with`` the result)."""
    get_language(language)
    check_runtime(runtime)
    target = pool or await default_pool()
    return await target.start(
        code, language=language, stdin=stdin, files=files, limits=limits, runtime=runtime
    )


class Sandbox:
    """A session: one sandbox kept for several runs; files persist between them.

    ::

        async with Sandbox(language="python") as sb:
            await sb.write_file("in.csv", b"a,b\\n1,2\\n")
            result = await sb.run("print(open('in.csv').read())")

    Processes a run leaves behind are stopped before the next run unless
    ``keep_processes=True``. An idle session is reclaimed after ``idle_timeout`` seconds.
    ``keep_state=True`` (Python) keeps one interpreter between runs, as a notebook kernel
    does: variables and imports persist, and a run's last expression is printed. A run
    that times out or exits restarts the kernel with a fresh state.
    """

    def __init__(
        self,
        language: str = "python",
        *,
        limits: Limits | None = None,
        pool: SandboxPool | None = None,
        keep_processes: bool = False,
        keep_state: bool = False,
        idle_timeout: float | None = 600.0,
        runtime: Runtime | None = None,
    ) -> None:
        self.spec = get_language(language)
        if keep_state and self.spec.preload != "python":
            raise InvalidInput("keep_state is available for Python sessions only")
        self.keep_state = keep_state
        self.runtime = check_runtime(runtime)
        self.limits = check_limits(limits)
        self.keep_processes = keep_processes
        if idle_timeout is not None and not idle_timeout > 0:
            raise InvalidInput("idle_timeout must be > 0 or None")
        self.idle_timeout = idle_timeout
        self._pool = pool
        self._box: Box | None = None
        self._warm: WarmPool | None = None
        self._lock = asyncio.Lock()
        self._idle_handle: asyncio.TimerHandle | None = None
        self._reclaim_task: asyncio.Task[None] | None = None
        self._last_used = time.monotonic()
        self._reclaimed = False

    run = _ClassOrInstance(_oneshot_run, lambda self, *a, **k: self._run(*a, **k))
    start = _ClassOrInstance(_oneshot_start, lambda self, *a, **k: self._start(*a, **k))
    stream = _ClassOrInstance(_oneshot_stream, lambda self, *a, **k: self._stream(*a, **k))

    # ------------------------------------------------------------------ life cycle
    async def __aenter__(self) -> Sandbox:
        pool = self._pool or await default_pool()
        self._pool = pool
        self._warm = await pool._warm_pool(self.spec, self.limits, self.runtime)
        self._box = await self._warm.acquire(pool.acquire_timeout)
        pool._sessions.add(self._box)
        self._touch()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        box, self._box = self._box, None
        if box is not None and self._warm is not None and self._pool is not None:
            self._pool._sessions.discard(box)
            with anyio.CancelScope(shield=True):
                await self._warm.release(box)

    def _touch(self) -> None:
        self._last_used = time.monotonic()
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        if self.idle_timeout is not None:
            loop = asyncio.get_running_loop()
            self._idle_handle = loop.call_later(self.idle_timeout, self._reclaim)

    def _reclaim(self) -> None:
        self._reclaim_task = asyncio.get_running_loop().create_task(self._reclaim_if_idle())

    async def _reclaim_if_idle(self) -> None:
        # under the lock, so a run that started meanwhile finishes first and counts as use
        async with self._lock:
            idle_for = time.monotonic() - self._last_used
            if self._box is None or self.idle_timeout is None or idle_for < self.idle_timeout:
                return
            self._reclaimed = True
            await self.aclose()

    def _live_box(self) -> Box:
        if self._box is None:
            why = "reclaimed after being idle" if self._reclaimed else "not open"
            raise SandboxError(f"this session is {why}; use `async with Sandbox(...)`")
        if not self._box.alive:
            raise SandboxError("this session's sandbox has ended (killed after a timeout?)")
        return self._box

    # ------------------------------------------------------------------ runs
    async def _run(
        self,
        code: str,
        *,
        stdin: str | bytes | None = None,
        files: Mapping[str, bytes] | None = None,
        limits: Limits | None = None,
    ) -> RunResult:
        return await final_result(self._stream(code, stdin=stdin, files=files, limits=limits))

    async def _stream(
        self,
        code: str,
        *,
        stdin: str | bytes | None = None,
        files: Mapping[str, bytes] | None = None,
        limits: Limits | None = None,
    ) -> AsyncGenerator[Event, None]:
        job = self._prepare(code, stdin, files, limits)
        async with self._lock:
            box = self._live_box()
            events = run_program(
                box,
                self.spec,
                job.limits,
                job.files,
                job.stdin,
                keep_processes=self.keep_processes,
                keep_state=self.keep_state,
                salvage=True,
            )
            try:
                # closed before the lock is let go: an abandoned run is over when the
                # next one starts (killed, read to its end, the sandbox kept)
                async with aclosing(events):
                    async for event in events:
                        yield event
            finally:
                self._touch()

    def _prepare(
        self, code: object, stdin: object, files: Mapping[str, bytes] | None, limits: object
    ) -> RunInput:
        job = prepare_run(self.spec.source_file, code, stdin, files, limits, self.limits)
        if job.limits.disk_mb != self.limits.disk_mb:
            raise InvalidInput("disk_mb is fixed for a session; set it in Sandbox(limits=...)")
        return job

    async def _start(
        self,
        code: str,
        *,
        stdin: str | bytes | None = None,
        files: Mapping[str, bytes] | None = None,
        limits: Limits | None = None,
    ) -> Process:
        """Start ``code`` in this session with stdin open; the session waits for it."""
        job = self._prepare(code, stdin, files, limits)
        await self._lock.acquire()
        try:
            box = self._live_box()
        except BaseException:
            self._lock.release()
            raise

        async def done() -> None:
            self._lock.release()
            self._touch()

        proc = Process(box, on_close=done)
        try:
            await proc._begin(
                lambda sent: run_program(
                    box,
                    self.spec,
                    job.limits,
                    job.files,
                    job.stdin,
                    interactive=True,
                    keep_processes=self.keep_processes,
                    keep_state=self.keep_state,
                    on_sent=sent,
                    salvage=True,
                )
            )
        except BaseException:
            await proc.aclose()  # stops the run and calls done(), releasing the lock
            raise
        return proc

    # ------------------------------------------------------------------ files
    async def write_file(self, path: str, data: bytes | str, *, executable: bool = False) -> None:
        """Write ``data`` to ``path`` (relative to the workdir), creating directories."""
        clean = check_files({check_path(path): data})
        async with self._lock:
            box = self._live_box()
            ((rel, content),) = clean.items()
            import base64

            reply, _ = await box.call(
                {
                    "op": "write",
                    "path": rel,
                    "data": base64.b64encode(content).decode(),
                    "mode": 0o755 if executable else 0o644,
                }
            )
            self._touch()
        if not reply.get("ok"):
            raise InvalidInput(f"cannot write {path!r}: {reply.get('error')}")

    async def read_file(self, path: str, *, max_bytes: int = MAX_READ_BYTES) -> bytes:
        """The bytes of a regular file in the workdir (symlinks and devices refused)."""
        rel = check_path(path)
        async with self._lock:
            box = self._live_box()
            reply, data = await box.call({"op": "read", "path": rel, "max_bytes": max_bytes})
            self._touch()
        if not reply.get("ok"):
            raise InvalidInput(f"cannot read {path!r}: {reply.get('error')}")
        return data

    async def write_dir(self, local_dir: str | os.PathLike[str], dest: str = ".") -> int:
        """Copy the regular files under a host directory into ``dest`` in the workdir."""
        files = await asyncio.to_thread(collect_local, local_dir)
        prefix = "" if dest in (".", "") else check_path(dest) + "/"
        for rel, data in files.items():
            await self.write_file(prefix + rel, data)
        return len(files)

    async def read_dir(self, src: str, local_dir: str | os.PathLike[str]) -> list[Path]:
        """Copy the regular files under ``src`` (``"."``: the whole workdir) to the host.

        Symlinks, FIFOs and devices in the sandbox are skipped; names are checked so that
        nothing lands outside ``local_dir``; counts and sizes are capped.
        """
        prefix = "" if src in (".", "") else check_path(src) + "/"
        wanted = [
            e
            for e in await self.list_files()
            if e["type"] == "file" and str(e["path"]).startswith(prefix)
        ]
        if len(wanted) > MAX_FILES:
            raise InvalidInput(f"{src!r} holds more than {MAX_FILES} files")
        files: dict[str, bytes] = {}
        total = 0
        for entry in wanted:
            data = await self.read_file(str(entry["path"]))
            total += len(data)
            if total > MAX_FILES_BYTES:
                raise InvalidInput(f"{src!r} holds more than {MAX_FILES_BYTES} bytes")
            files[str(entry["path"])[len(prefix) :]] = data
        return await asyncio.to_thread(store_local, local_dir, files)

    async def list_files(self) -> list[dict[str, Any]]:
        """Entries under the workdir: ``path``, ``type`` (file/dir/symlink/other), ``size``."""
        async with self._lock:
            box = self._live_box()
            reply, _ = await box.call({"op": "list"})
            self._touch()
        return list(reply.get("entries", []))
