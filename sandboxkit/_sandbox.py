"""``Sandbox``: one-shot runs (``Sandbox.run``/``stream``/``start`` on the class) and
sessions (``async with Sandbox(...) as sb``: one container kept for several runs).

Why a descriptor: ``Sandbox.run(code)`` and ``sb.run(code)`` are the two forms the
contract promises, with different parameters (a session's language is fixed). The
descriptor's overloaded ``__get__`` gives each form its own real signature, so a user's
type checker sees ``language=`` on the class and flags it on a session."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, aclosing
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, Generic, Literal, TypeVar, overload

import anyio
from typing_extensions import Never, ParamSpec

from ._container import Box
from ._default import default_pool
from ._egress.policy import Egress, check_egress
from ._errors import InvalidInput, SandboxError, SandboxFileError, UsageError
from ._languages import get_language
from ._models import Event, FileEntry, Limits, RunResult
from ._process import Process, launch
from ._run.program import run_program
from ._run.reader import final_result
from ._sandbox_pool import Lifecycle, Runtime, SandboxPool, check_runtime, with_usage
from ._stream import EventStream
from ._transfer import collect_local, store_local
from ._validate import (
    MAX_FILES,
    MAX_FILES_BYTES,
    RunInput,
    check_args,
    check_env,
    check_files,
    check_limits,
    check_path,
    prepare_run,
)

if TYPE_CHECKING:
    from ._protocol import Reply

ClassP = ParamSpec("ClassP")
ClassR = TypeVar("ClassR")
SessionP = ParamSpec("SessionP")
SessionR = TypeVar("SessionR")
Done = TypeVar("Done")

MAX_READ_BYTES = 64 * 1024 * 1024


class _ClassOrInstance(Generic[ClassP, ClassR, SessionP, SessionR]):
    """``Sandbox.run(...)`` is a one-shot run; ``sandbox.run(...)`` runs in the session."""

    def __init__(
        self,
        on_class: Callable[ClassP, ClassR],
        on_instance: Callable[Concatenate[Sandbox, SessionP], SessionR],
    ) -> None:
        self._on_class = on_class
        self._on_instance = on_instance
        self.__doc__ = on_class.__doc__
        self.__wrapped__ = on_class  # inspect.signature (help, pdoc): the one-shot form

    def __call__(self, *args: ClassP.args, **kwargs: ClassP.kwargs) -> ClassR:
        # only tools that read the class dict call it (documentation): the one-shot form
        return self._on_class(*args, **kwargs)

    def __set_name__(self, owner: type[Any], name: str) -> None:
        # the one-shot function answers to its public name: in help(), in a TypeError
        # for a misspelled keyword (Python takes that name from the code object)
        qualname = f"{owner.__name__}.{name}"
        fn: Any = self._on_class
        fn.__name__, fn.__qualname__ = name, qualname
        if hasattr(fn.__code__, "co_qualname"):  # 3.11+
            fn.__code__ = fn.__code__.replace(co_name=name, co_qualname=qualname)
        else:  # pragma: no cover - 3.10 reads __qualname__
            fn.__code__ = fn.__code__.replace(co_name=name)

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Callable[ClassP, ClassR]: ...
    @overload
    def __get__(self, obj: Sandbox, owner: type[Any]) -> Callable[SessionP, SessionR]: ...
    def __get__(
        self, obj: Sandbox | None, owner: type[Any]
    ) -> Callable[ClassP, ClassR] | Callable[SessionP, SessionR]:
        if obj is None:
            return self._on_class
        return functools.partial(self._on_instance, obj)


def _check_oneshot(
    language: str, env: object, args: object, runtime: object, network: object = None
) -> None:
    """Bad input fails before the default pool (and any engine work) is touched; the
    rest (code, files, stdin, limits) the pool checks before it takes a sandbox."""
    get_language(language)
    check_env(env), check_args(args)
    check_runtime(runtime)
    if network != "pool":
        check_egress(network)


async def _oneshot_run(
    code: str,
    *,
    language: str = "python",
    stdin: str | bytes | None = None,
    files: Mapping[str, bytes] | None = None,
    limits: Limits | None = None,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] | None = None,
    pool: SandboxPool | None = None,
    runtime: Runtime | None = None,
    network: Egress | Literal["pool"] | None = "pool",
) -> RunResult:
    """Run ``code`` in a fresh sandbox from the (default) pool and return its result.

    ``env``: variables over the language's own; ``args``: the program's command-line
    arguments. ``network``: an :class:`Egress` policy (the names the code may reach),
    or None for none (default: the pool's; none for the default pool). Python's output
    is block-buffered as ``python3 main.py`` into a pipe (a
    program killed at its time limit loses what it had not flushed; ``stream`` and
    sessions run Python unbuffered)."""
    _check_oneshot(language, env, args, runtime, network)
    target = pool or await default_pool()
    return await target.run(
        code,
        language=language,
        stdin=stdin,
        files=files,
        limits=limits,
        env=env,
        args=args,
        runtime=runtime,
        network=network,
    )


def _oneshot_stream(
    code: str,
    *,
    language: str = "python",
    stdin: str | bytes | None = None,
    files: Mapping[str, bytes] | None = None,
    limits: Limits | None = None,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] | None = None,
    pool: SandboxPool | None = None,
    runtime: Runtime | None = None,
    network: Egress | Literal["pool"] | None = "pool",
) -> EventStream:
    """Run ``code`` once: ``stdout``/``stderr`` chunks as written, then ``exit``.

    ``async with Sandbox.stream(code) as events: async for ev in events: ...`` frees the
    sandbox when the block ends; plain ``async for`` works too. A compile error's
    diagnostics come as ``stderr`` events; Python runs unbuffered."""
    _check_oneshot(language, env, args, runtime, network)

    async def events() -> AsyncGenerator[Event, None]:
        target = pool or await default_pool()
        inner = target.stream(
            code,
            language=language,
            stdin=stdin,
            files=files,
            limits=limits,
            env=env,
            args=args,
            runtime=runtime,
            network=network,
        )
        async with inner:
            async for event in inner:
                yield event

    return EventStream(events())


async def _oneshot_start(
    code: str,
    *,
    language: str = "python",
    stdin: str | bytes | None = None,
    files: Mapping[str, bytes] | None = None,
    limits: Limits | None = None,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] | None = None,
    pool: SandboxPool | None = None,
    runtime: Runtime | None = None,
    network: Egress | Literal["pool"] | None = "pool",
) -> Process:
    """Start ``code`` in a fresh sandbox with its stdin open (``async with`` the result)."""
    _check_oneshot(language, env, args, runtime, network)
    target = pool or await default_pool()
    return await target.start(
        code,
        language=language,
        stdin=stdin,
        files=files,
        limits=limits,
        env=env,
        args=args,
        runtime=runtime,
        network=network,
    )


def _refuse(unexpected: Mapping[str, object], language: str, method: str) -> None:
    """Keywords a session call does not take: ``language`` says why, others as Python."""
    for name, value in unexpected.items():
        if name == "language":
            if value == language:
                continue
            raise InvalidInput(
                f"this session runs {language}; a session's language is fixed, open "
                f"another Sandbox(language={value!r}) for it"
            )
        raise TypeError(f"Sandbox.{method}() got an unexpected keyword argument {name!r}")


class Sandbox:
    """A session: one sandbox kept for several runs; files persist between them.

    ::

        async with Sandbox(language="python") as sb:
            await sb.write_file("in.csv", b"a,b\\n1,2\\n")
            result = await sb.run("print(open('in.csv').read())")

    On the class, ``Sandbox.run``/``stream``/``start`` are one-shot runs in a fresh
    sandbox each. A session is opened once (``async with`` or :meth:`open`) and done
    after :meth:`aclose`.

    Args:
        language: the session's language, fixed for its life.
        limits: default limits of its runs (``disk_mb`` is fixed for the session).
        pool: the :class:`SandboxPool` to take the sandbox from (default: the
            process-wide one).
        keep_processes: leave processes a run started running into the next run
            (by default they are stopped when a run ends).
        keep_state: (Python) keep one interpreter between runs, as a notebook kernel
            does: variables, imports, and tasks of its event loop persist, a run's last
            expression is printed, and top-level ``await`` works (a run that awaits runs
            on one event loop kept for the session). ``sys.exit(n)``/``exit()`` end the
            run with status ``n`` and keep the interpreter. When the interpreter itself
            ends (the run hit a limit: timeout, OOM; ``os._exit``; a crash; the sandbox
            lost), everything it held is gone and the next run starts a fresh one:
            ``RunResult.state_lost`` says so, once, on the first result that can: the
            run during which it ended, or the next run when it ended between runs (or
            during a run whose stream was abandoned).
        idle_timeout: seconds without use after which the sandbox is reclaimed
            (default 600 s; ``None``: never).
        runtime: the OCI runtime, ``"runc"`` or ``"runsc"`` (default: the pool's).
        network: an :class:`Egress` policy: the host names its code may reach (default:
            the pool's, none for the default pool). :meth:`set_network` changes it while
            the session runs; a session opened with no policy has no network to change
            (open it with ``network=sk.Egress()``, which allows nothing, to add one later).
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
        network: Egress | Literal["pool"] | None = "pool",
    ) -> None:
        self.spec = get_language(language)
        self.network = network if network == "pool" else check_egress(network)
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
        self._state = Lifecycle.NEW
        self._lease: AsyncExitStack | None = None
        self._box: Box | None = None
        self._lock = asyncio.Lock()
        self._idle_handle: asyncio.TimerHandle | None = None
        self._reclaim_task: asyncio.Task[None] | None = None
        self._last_used = time.monotonic()
        self._reclaimed = False

    @property
    def language(self) -> str:
        return self.spec.name

    # ------------------------------------------------------------------ life cycle
    async def open(self) -> Sandbox:
        """Take a sandbox for this session; returns the session itself."""
        if self._state is not Lifecycle.NEW:
            done = "was already opened" if self._state is Lifecycle.OPEN else "is closed"
            raise UsageError(
                f"this Sandbox {done}; a session is opened once (create a new Sandbox for another)"
            )
        self._state = Lifecycle.OPEN
        pool = self._pool or await default_pool()
        self._pool = pool
        lease = AsyncExitStack()
        try:
            self._box = await lease.enter_async_context(
                pool.checkout(self.spec, self.limits, self.runtime, network=self.network)
            )
        except BaseException:
            self._state = Lifecycle.CLOSED
            raise
        self._lease = lease
        self._touch()
        return self

    async def __aenter__(self) -> Sandbox:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Give the sandbox back (it is destroyed); shielded. Closing twice is fine."""
        self._state = Lifecycle.CLOSED
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        lease, self._lease, self._box = self._lease, None, None
        if lease is not None:
            with anyio.CancelScope(shield=True):
                await lease.aclose()

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
            if self._reclaimed:
                why = (
                    f"was reclaimed after {self.idle_timeout or 0:g} s idle, with its files "
                    "and state; open a new one, and pass Sandbox(..., idle_timeout=SECONDS) "
                    "to keep a session longer (None: until it is closed)"
                )
            elif self._state is Lifecycle.CLOSED:
                why = "is closed; open a new one (`async with Sandbox(...)`)"
            else:
                why = "is not open; use `async with Sandbox(...)` or `await sb.open()`"
            raise SandboxError(f"this session {why}")
        if not self._box.alive:
            raise SandboxError("this session's sandbox has ended (killed after a timeout?)")
        return self._box

    # ------------------------------------------------------------------ runs
    async def _run(
        self,
        /,
        code: str,
        *,
        stdin: str | bytes | None = None,
        files: Mapping[str, bytes] | None = None,
        limits: Limits | None = None,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] | None = None,
        **unexpected: Never,
    ) -> RunResult:
        """Run ``code`` in this session and return its result."""
        _refuse(unexpected, self.language, "run")
        job = self._prepare(code, stdin, files, limits, env, args)
        return await final_result(self._events(job))

    def _stream(
        self,
        /,
        code: str,
        *,
        stdin: str | bytes | None = None,
        files: Mapping[str, bytes] | None = None,
        limits: Limits | None = None,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] | None = None,
        **unexpected: Never,
    ) -> EventStream:
        """Run ``code`` in this session, streaming its events (``async with`` it)."""
        _refuse(unexpected, self.language, "stream")
        return EventStream(self._events(self._prepare(code, stdin, files, limits, env, args)))

    async def _events(self, job: RunInput) -> AsyncGenerator[Event, None]:
        async with self._lock:
            box = self._live_box()
            events = run_program(
                box,
                self.spec,
                job,
                keep_processes=self.keep_processes,
                kernel=self.keep_state,
                salvage=True,
            )
            try:
                # closed before the lock is let go: an abandoned run is over when the
                # next one starts (killed, read to its end, the sandbox kept)
                async with aclosing(events):
                    async for event in events:
                        yield await with_usage(box, event)
            finally:
                self._touch()

    async def set_network(self, network: Egress | None) -> None:
        """Change what this session's sandbox may reach, while it runs: in force when
        this returns (within a second); connections already open to a name no longer
        allowed are cut. None: nothing at all (DNS and every connection refused)."""
        policy = check_egress(network)
        # not under the session's lock: a change must reach a run in progress (only the
        # gateway is told; the sandbox itself is not touched)
        box = self._live_box()
        if box.egress is None:
            raise UsageError(
                "this session's sandbox has no egress network to change: open it with "
                "Sandbox(..., network=sk.Egress(...)) (sk.Egress() allows nothing)"
            )
        await box.egress.set_policy(policy)
        self._touch()

    def _prepare(
        self,
        code: object,
        stdin: object,
        files: Mapping[str, bytes] | None,
        limits: object,
        env: object,
        args: object,
    ) -> RunInput:
        # a session's source is its own (apart from the user's files, which may share its
        # name); its output is watched as it goes
        job = prepare_run(
            self.spec.source_file,
            code,
            stdin,
            files,
            limits,
            self.limits,
            env=env,
            args=args,
            own_source=True,
            live=True,
        )
        if job.limits.disk_mb != self.limits.disk_mb:
            raise InvalidInput("disk_mb is fixed for a session; set it in Sandbox(limits=...)")
        return job

    async def _start(
        self,
        /,
        code: str,
        *,
        stdin: str | bytes | None = None,
        files: Mapping[str, bytes] | None = None,
        limits: Limits | None = None,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] | None = None,
        **unexpected: Never,
    ) -> Process:
        """Start ``code`` in this session with stdin open; the session waits for it."""
        _refuse(unexpected, self.language, "start")
        job = self._prepare(code, stdin, files, limits, env, args)
        await self._lock.acquire()
        try:
            box = self._live_box()
        except BaseException:
            self._lock.release()
            raise

        async def done() -> None:
            self._lock.release()
            self._touch()

        return await launch(
            box,
            lambda sent: run_program(
                box,
                self.spec,
                job,
                interactive=True,
                keep_processes=self.keep_processes,
                kernel=self.keep_state,
                on_sent=sent,
                salvage=True,
            ),
            on_close=done,
        )

    run = _ClassOrInstance(_oneshot_run, _run)
    stream = _ClassOrInstance(_oneshot_stream, _stream)
    start = _ClassOrInstance(_oneshot_start, _start)

    # ------------------------------------------------------------------ files
    async def _on_box(self, operation: Callable[[Box], Awaitable[Done]]) -> Done:
        """A file operation on the session's sandbox, never during one of its runs."""
        async with self._lock:
            done = await operation(self._live_box())
            self._touch()
        return done

    async def write_file(self, path: str, data: bytes | str, *, executable: bool = False) -> None:
        """Write ``data`` to ``path`` (relative to the workdir), creating directories."""
        clean = check_files({check_path(path): data})
        ((rel, content),) = clean.items()
        mode = 0o755 if executable else 0o644
        reply = await self._on_box(lambda box: box.write_file(rel, content, mode))
        _refused_unless_ok(reply, "write", path)

    async def read_file(self, path: str, *, max_bytes: int = MAX_READ_BYTES) -> bytes:
        """The bytes of a regular file in the workdir (symlinks and devices refused);
        ``SandboxFileError`` when it is missing, not a regular file or too large."""
        rel = check_path(path)
        reply, data = await self._on_box(lambda box: box.read_file(rel, max_bytes))
        _refused_unless_ok(reply, "read", path)
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
            e for e in await self.list_files() if e.type == "file" and e.path.startswith(prefix)
        ]
        if len(wanted) > MAX_FILES:
            raise InvalidInput(f"{src!r} holds more than {MAX_FILES} files")
        files: dict[str, bytes] = {}
        total = 0
        for entry in wanted:
            data = await self.read_file(entry.path)
            total += len(data)
            if total > MAX_FILES_BYTES:
                raise InvalidInput(f"{src!r} holds more than {MAX_FILES_BYTES} bytes")
            files[entry.path[len(prefix) :]] = data
        return await asyncio.to_thread(store_local, local_dir, files)

    async def list_files(self, path: str = ".") -> list[FileEntry]:
        """Every entry under ``path`` (a directory of the workdir; default the whole
        workdir): its path relative to the workdir, type (file/dir/symlink/other), size.
        ``SandboxFileError`` when ``path`` is missing or not a directory."""
        rel = None if path in (".", "") else check_path(path)
        reply = await self._on_box(lambda box: box.list_files(rel))
        _refused_unless_ok(reply, "list", path)
        return [
            FileEntry(path=str(e["path"]), type=e["type"], size=int(e.get("size") or 0))
            for e in reply.get("entries", [])
        ]


def _refused_unless_ok(reply: Reply, operation: str, path: str) -> None:
    """The agent's refusal of a file operation, as the error the user can act on."""
    if not reply.get("ok"):
        raise SandboxFileError(operation, path, str(reply.get("error") or "refused"))
