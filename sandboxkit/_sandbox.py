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
import signal as signals
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, aclosing
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, Generic, Literal, TypeVar, overload

import anyio
from typing_extensions import Never, ParamSpec

from ._backends import ContainerStats
from ._background import BackgroundProcess, Terminal
from ._background import refused as _refused_reply
from ._container import Box
from ._default import default_pool
from ._egress.policy import Egress, check_egress
from ._errors import InvalidInput, SandboxError, SandboxFileError, SandboxkitError, UsageError
from ._languages import get_language, language_env
from ._layout import WORKDIR
from ._models import Event, FileEntry, Limits, ProcessInfo, RunResult, SandboxMetrics
from ._process import Process, launch
from ._run.jobs import rlimits
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
    check_box_path,
    check_env,
    check_files,
    check_limits,
    check_path,
    prepare_run,
)
from ._watch import Watch

if TYPE_CHECKING:
    from ._protocol import Reply
    from ._snapshot.store import Snapshot

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
    exact: bool | None = None,
    network: Egress | Literal["pool"] | None = "pool",
) -> RunResult:
    """Run ``code`` in a fresh sandbox from the (default) pool and return its result.

    ``env``: variables over the language's own; ``args``: the program's command-line
    arguments. ``network``: an :class:`Egress` policy (the names the code may reach),
    or None for none (default: the pool's; none for the default pool). Python's output
    is block-buffered as ``python3 main.py`` into a pipe (a
    program killed at its time limit loses what it had not flushed; ``stream`` and
    sessions run Python unbuffered). ``exact``: by the real command, not the pre-loaded
    runtime (default: the pool's; see ``SandboxPool``)."""
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
        exact=exact,
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
    exact: bool | None = None,
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
            exact=exact,
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
    exact: bool | None = None,
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
        exact=exact,
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


ROOT_REFUSED = (
    "root=True: uid 0 in a sandbox under runc is uid 0 of the host's kernel (the first "
    "step of every container escape), and the engine {engine} does not remap it "
    "(no userns-remap). Run the session under gVisor (runtime='runsc', or a pool with "
    "runtime='runsc'), or give the engine userns-remap (see `sandboxkit doctor`)"
)


async def check_root_allowed(pool: SandboxPool, runtime: str) -> None:
    """Refuse a root session unless uid 0 in its box is not the host's: gVisor's own
    kernel, or an engine that remaps uids (every engine of the pool: the box may be
    placed on any of them)."""
    if runtime == "runsc":
        return
    await pool._connect()
    if not pool.fleet.members:
        raise InvalidInput(ROOT_REFUSED.format(engine="(none)"))
    for member in pool.fleet.members:
        try:
            remapped = (await member.unwatched.info()).user_namespaces
        except SandboxkitError:
            remapped = False
        if not remapped:
            raise InvalidInput(ROOT_REFUSED.format(engine=member.url))


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
        root: let background commands and terminals run as uid 0 in the box
            (``start(..., user="root")``, ``terminal(..., user="root")``), to install
            packages and the like; its root filesystem is then writable (the container's
            own layer, gone with it; the image is untouched). Only where uid 0 in the box
            is not the host's: under gVisor (``runtime="runsc"``) or on an engine with
            ``userns-remap``; elsewhere :meth:`open` refuses it (``InvalidInput``). The
            program holds no capability even as uid 0.
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
        root: bool = False,
    ) -> None:
        self.spec = get_language(language)
        if not isinstance(root, bool):
            raise InvalidInput(f"root must be True or False, not {root!r}")
        self.root = root
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
        self._paused_as: str | None = None  # the snapshot pause() made of it
        self._opened_for_you = False  # made open by resume()/fork(): `async with` takes it
        self._cpu_sample: tuple[str, float, int] | None = None  # metrics(): box, clock, CPU ns

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
            if self.root:
                await check_root_allowed(pool, self.runtime or pool.runtime)
            from ._snapshot.memory import open_pausable

            # under gVisor with the engine's checkpoint API: a box whose memory pause() keeps
            # (one without a network: one with a policy or a bridge takes a warm one)
            offline = self.network is None or (
                self.network == "pool" and pool.egress is None and pool.network is None
            )
            box = await open_pausable(self, pool) if offline else None
            if box is not None:
                lease.push_async_callback(box.destroy)
                self._box = box
            else:
                self._box = await lease.enter_async_context(
                    pool.checkout(
                        self.spec,
                        self.limits,
                        self.runtime,
                        network=self.network,
                        writable_root=self.root,
                    )
                )
        except BaseException:
            self._state = Lifecycle.CLOSED
            raise
        self._lease = lease
        self._touch()
        return self

    async def _adopt(self, box: Box, pool: SandboxPool) -> None:
        """Open this session on ``box`` (resumed from its checkpoint), not the pool's."""
        lease = AsyncExitStack()
        lease.push_async_callback(box.destroy)
        self._state, self._pool, self._lease, self._box = Lifecycle.OPEN, pool, lease, box
        self._opened_for_you = True
        self._touch()

    async def __aenter__(self) -> Sandbox:
        if self._opened_for_you and self._state is Lifecycle.OPEN:
            self._opened_for_you = False
            return self
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
            if self._paused_as is not None:
                why = (
                    f"is paused as snapshot {self._paused_as}; resume it with "
                    f"`await sandboxkit.Sandbox.resume({self._paused_as!r})`"
                )
            elif self._reclaimed:
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
        code: str | Sequence[str],
        *,
        stdin: str | bytes | None = None,
        files: Mapping[str, bytes] | None = None,
        limits: Limits | None = None,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] | None = None,
        shell: bool = False,
        cwd: str | None = None,
        user: Literal["root"] | None = None,
        **unexpected: Never,
    ) -> Process | BackgroundProcess:
        """Start ``code`` in this session with stdin open; the session waits for it.

        With ``shell=True`` (``code`` a command line for ``/bin/sh -c``) or ``code`` a
        list (an argv), the command starts in the background instead and this returns
        at once: a :class:`BackgroundProcess` (its ``pid``), which runs on across runs
        and file calls, in ``cwd`` (default: the workdir) with ``env`` over the
        language's variables, until it ends, :meth:`kill` ends it or the session closes.
        ``user="root"``: as uid 0, in a session opened with ``root=True``.
        """
        _refuse(unexpected, self.language, "start")
        if shell or not isinstance(code, str):
            if stdin is not None or files is not None or args is not None or limits is not None:
                raise InvalidInput(
                    "a background command takes env= and cwd=; write files first with "
                    "write_file, send input with proc.write"
                )
            return await self._start_background(code, shell=shell, env=env, cwd=cwd, user=user)
        if user is not None:
            raise InvalidInput("user= is for background commands (shell=True, or an argv list)")
        if cwd is not None:
            raise InvalidInput("cwd= is for background commands (shell=True, or an argv list)")
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
        """Write ``data`` to ``path``, creating directories: relative to the workdir, or
        absolute anywhere the sandbox user may write (``/tmp``, ``$HOME``...).
        ``SandboxFileError`` (``reason``: permission_denied, is_directory, invalid_path
        for a symlink on the way...) when it cannot."""
        where = check_box_path(path)
        if where.startswith("/"):
            content = data.encode() if isinstance(data, str) else data
            if not isinstance(content, (bytes, bytearray, memoryview)):
                raise InvalidInput(f"content of {path!r} must be bytes, not {type(data).__name__}")
            content = bytes(content)
            if len(content) > MAX_FILES_BYTES:
                raise InvalidInput(f"{path!r} is over {MAX_FILES_BYTES} bytes")
        else:
            ((where, content),) = check_files({where: data}).items()
        mode = 0o755 if executable else 0o644
        reply = await self._on_box(lambda box: box.write_file(where, content, mode))
        _refused_unless_ok(reply, "write", path)

    async def read_file(self, path: str, *, max_bytes: int = MAX_READ_BYTES) -> bytes:
        """The bytes of a regular file (relative: in the workdir; absolute: anywhere the
        sandbox user may read); ``SandboxFileError`` when it is missing, not a regular
        file (symlinks are not followed, devices and FIFOs refused) or too large."""
        where = check_box_path(path)
        reply, data = await self._on_box(lambda box: box.read_file(where, max_bytes))
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

    async def list_files(self, path: str = ".", *, depth: int | None = None) -> list[FileEntry]:
        """Every entry under the directory ``path`` (default: the whole workdir), ``depth``
        levels down (``1``: its own entries; None: all), symlinks listed, not followed.
        Paths are relative to the workdir for a relative ``path``, absolute for an
        absolute one. ``SandboxFileError`` when ``path`` is missing or not a directory."""
        if depth is not None and (
            isinstance(depth, bool) or not isinstance(depth, int) or depth < 1
        ):
            raise InvalidInput("depth must be a whole number >= 1, or None (all)")
        where = None if path in (".", "") else check_box_path(path)
        reply = await self._on_box(lambda box: box.list_files(where, depth))
        _refused_unless_ok(reply, "list", path)
        return [_entry(e) for e in reply.get("entries", [])]

    # ------------------------------------------------------------------ the whole box
    # Files anywhere, background processes and terminals (issue 27): relative paths mean
    # the workdir, absolute ones the box's filesystem (no symlink followed on the way).
    async def _job(self, job: Mapping[str, object]) -> tuple[Reply, bytes]:
        return await self._on_box(lambda box: box.call(job))

    async def stat(self, path: str) -> FileEntry:
        """What is at ``path`` (a symlink is reported as one, with its ``target``);
        ``SandboxFileError`` (``not_found``...) when nothing is."""
        where = check_box_path(path)
        reply, _ = await self._job({"op": "stat", "path": where})
        _refused_unless_ok(reply, "stat", path)
        return _entry(reply["entries"][0])

    async def make_dir(self, path: str, *, parents: bool = True) -> None:
        """Make the directory ``path`` (with ``parents``, as ``mkdir -p``: its missing
        parents too, and no error when it exists)."""
        where = check_box_path(path)
        reply, _ = await self._job({"op": "mkdir", "path": where, "parents": bool(parents)})
        _refused_unless_ok(reply, "make the directory", path)

    async def rename(self, src: str, dst: str, *, overwrite: bool = False) -> None:
        """Move ``src`` to ``dst`` (across filesystems too: /tmp, the workdir and the
        home are each one); ``exists`` unless ``overwrite`` when ``dst`` exists."""
        job = {
            "op": "rename",
            "path": check_box_path(src),
            "dst": check_box_path(dst),
            "overwrite": bool(overwrite),
        }
        reply, _ = await self._job(job)
        _refused_unless_ok(reply, "rename", src)

    async def remove(self, path: str) -> None:
        """Remove a file, a symlink (not what it names) or a whole directory tree."""
        where = check_box_path(path)
        reply, _ = await self._job({"op": "remove", "path": where})
        _refused_unless_ok(reply, "remove", path)

    def _bg_env(self, env: Mapping[str, str] | None, extra: Mapping[str, str]) -> dict[str, str]:
        return {**language_env(self.spec), **extra, **check_env(env)}

    async def _start_background(
        self,
        command: str | Sequence[str],
        *,
        shell: bool,
        env: Mapping[str, str] | None,
        cwd: str | None,
        pty: tuple[int, int] | None = None,
        extra_env: Mapping[str, str] | None = None,
        user: Literal["root"] | None = None,
    ) -> BackgroundProcess:
        if user is not None and user != "root":
            raise InvalidInput(f"user must be 'root' or None (the sandbox's user), not {user!r}")
        if user == "root" and not self.root:
            raise InvalidInput(
                "user='root' needs a session opened with root=True (under gVisor, or on "
                "an engine with userns-remap)"
            )
        if isinstance(command, str):
            if not command.strip():
                raise InvalidInput("the command is empty")
            argv = ["/bin/sh", "-c", command] if shell else [command]
        else:
            argv = [str(a) for a in command]
            if not argv or shell:
                raise InvalidInput("give a command line with shell=True, or an argv list")
        where = WORKDIR if cwd is None else check_box_path(cwd)
        if not where.startswith("/"):
            where = f"{WORKDIR}/{where}"
        limits = dict(rlimits(self.limits))
        limits.pop("cpu", None)  # a server runs for as long as it is wanted
        job: dict[str, object] = {
            "op": "proc_start",
            "argv": argv,
            "env": self._bg_env(env, extra_env or {}),
            "cwd": where,
            "rlimits": limits,
        }
        if pty is not None:
            job["pty"] = {"cols": pty[0], "rows": pty[1]}
        if user == "root":
            job["root"] = True
        reply, _ = await self._job(job)
        _refused_unless_ok(reply, "start", " ".join(argv))
        kind = Terminal if pty is not None else BackgroundProcess
        return kind(self._job, self.kill, int(reply["pid"]))

    def watch(self, path: str = ".", *, recursive: bool = False) -> Watch:
        """Changes under ``path`` (a directory: its entries, all levels down with
        ``recursive``; a file: itself) as an async iterator of :class:`FileChange`
        (``created``, ``modified``, ``removed``), seen by inotify in the box::

            async with sb.watch("/tmp/out", recursive=True) as changes:
                async for change in changes: ...

        ``async with`` starts the watch on entering (every later change is seen) and
        stops it on leaving; a bare ``async for`` starts it at its first step. It ends
        when the path itself is removed, it is closed, or the session ends. No symlink
        is followed. ``SandboxFileError`` (``not_found``...) when ``path`` cannot be
        watched."""
        if not isinstance(recursive, bool):
            raise InvalidInput("recursive must be True or False")
        where = "." if path in (".", "") else check_box_path(path)
        return Watch(self._job, self._watchable, where, recursive)

    def _watchable(self) -> bool:
        return self._box is not None and self._box.alive

    async def processes(self) -> list[ProcessInfo]:
        """The session's processes (not sandboxkit's own): background ones, what they
        started, and whatever a run left running (``keep_processes``)."""
        reply, _ = await self._job({"op": "proc_list"})
        _refused_unless_ok(reply, "list", "processes")
        return [ProcessInfo.model_validate(p) for p in reply.get("processes", [])]

    async def metrics(self) -> SandboxMetrics:
        """The session's use of its limits now: CPU over the time since the previous
        call (the first: since the sandbox started), memory as the kernel charges its
        cgroup, and the disk of its writable places (workdir, home, /tmp). The agent
        reads the cgroup in the box (no engine call); where the box sees none (gVisor)
        the Docker engine's stats stand in (up to a second: its collector's tick), and
        on another engine CPU and memory used read 0."""
        from ._snapshot.memory import docker_of

        box = self._live_box()
        reply, _ = await self._job({"op": "usage", "paths": [WORKDIR, box.home, "/tmp"]})
        _refused_unless_ok(reply, "measure", "the sandbox's disk")
        places = reply.get("usage", [])
        stats = _stats_of(reply.get("cgroup"))
        if stats is None:  # the box sees no cgroup (gVisor): the engine's account of it
            engine = docker_of(box.engine)
            stats = await engine.stats(box.cid) if engine is not None else None
        clock, cpus = time.monotonic(), box.resources.cpus
        cpu_ns = stats.cpu_ns if stats is not None else 0
        last = self._cpu_sample
        since, before = (last[1], last[2]) if last and last[0] == box.cid else (box.created, 0)
        self._cpu_sample = (box.cid, clock, cpu_ns)
        wall_ns = max(clock - since, 1e-3) * 1e9 * cpus
        limit = box.resources.memory_mb * 1024 * 1024
        return SandboxMetrics(
            cpu_count=cpus,
            cpu_percent=round(min(100.0, max(0.0, 100.0 * (cpu_ns - before) / wall_ns)), 2),
            memory_used=stats.memory_used if stats is not None else 0,
            memory_cache=stats.memory_cache if stats is not None else 0,
            # the engine's figure is the host's memory where the cgroup has no limit
            memory_total=min(stats.memory_limit, limit) if stats and stats.memory_limit else limit,
            disk_used=sum(int(p["used"]) for p in places),
            disk_total=sum(int(p["total"]) for p in places),
            timestamp=time.time(),
        )

    async def kill(self, pid: int, signal: int = signals.SIGTERM, *, grace: float = 3.0) -> None:
        """Send ``signal`` to process ``pid`` and its whole tree (a background process's:
        everything in its session). When the signal is not SIGKILL, whatever is left
        after ``grace`` seconds (a process that traps SIGTERM) gets SIGKILL."""
        if isinstance(pid, bool) or not isinstance(pid, int) or pid < 1:
            raise InvalidInput("pid must be a process id (an int >= 1)")
        reply, _ = await self._job({"op": "proc_signal", "pid": pid, "signal": int(signal)})
        _refused_reply(reply, "signal", str(pid))
        deadline = time.monotonic() + (0.0 if signal == signals.SIGKILL else grace)
        while reply.get("left") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            reply, _ = await self._job({"op": "proc_signal", "pid": pid, "signal": 0})
            if not reply.get("ok"):
                return  # gone
        if reply.get("left") and signal != signals.SIGKILL:
            await self._job({"op": "proc_signal", "pid": pid, "signal": int(signals.SIGKILL)})

    async def connect(self, pid: int) -> BackgroundProcess:
        """A handle on a background process started earlier (by pid: from another handle,
        ``processes()``, another task): its output from now on, its stdin."""
        reply, _ = await self._job({"op": "proc_read", "pid": int(pid), "peek": True})
        _refused_reply(reply, "connect to", str(pid))
        return BackgroundProcess(self._job, self.kill, int(pid), after=int(reply.get("next") or 0))

    async def terminal(
        self,
        cols: int = 80,
        rows: int = 24,
        *,
        command: str | Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        user: Literal["root"] | None = None,
    ) -> Terminal:
        """A shell (``bash``, else ``sh``; or ``command``) on a pseudo-terminal of
        ``cols`` x ``rows``: write keys, read the screen's bytes, resize, kill.
        ``user="root"``: as uid 0, in a session opened with ``root=True``."""
        for name, value in (("cols", cols), ("rows", rows)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
                raise InvalidInput(f"{name} must be a whole number from 1 to 1000")
        shell = ["/bin/sh", "-c", "command -v bash >/dev/null && exec bash -i || exec sh -i"]
        argv: str | Sequence[str] = shell if command is None else command
        term = await self._start_background(
            argv,
            shell=isinstance(argv, str),
            env=env,
            cwd=cwd,
            pty=(cols, rows),
            extra_env={"TERM": "xterm-256color"},
            user=user,
        )
        assert isinstance(term, Terminal)
        return term

    # ------------------------------------------------------------------ snapshots
    async def pause(self) -> Snapshot:
        """Save this session and stop its sandbox: nothing of it runs or holds memory.

        Its files (workdir, ``/tmp``, home) are kept exactly; its memory (processes, a
        ``keep_state`` interpreter) too where ``Snapshot.has_memory`` says so (gVisor on
        an engine with the checkpoint API). The session is closed; bring it back with
        :meth:`resume` (from any process, later), delete it with
        ``sandboxkit.delete_snapshot``."""
        from ._snapshot.session import pause

        return await pause(self)

    @classmethod
    async def resume(
        cls,
        snapshot: str | Snapshot,
        *,
        pool: SandboxPool | None = None,
        idle_timeout: float | None = 600.0,
    ) -> Sandbox:
        """An open session back from a snapshot (``async with await Sandbox.resume(id)``).

        ``SnapshotError`` when the snapshot is missing (``not_found``) or damaged
        (``corrupt``). A snapshot with memory resumes its processes once (its
        checkpoint is used up); its files can be resumed any number of times."""
        from ._snapshot.session import resume

        return await resume(snapshot, pool=pool, idle_timeout=idle_timeout)

    async def fork(self) -> Sandbox:
        """A new open session with a copy of this one's files and settings; both go
        their own way (``async with await sb.fork() as copy``). Memory is not copied."""
        from ._snapshot.session import fork

        return await fork(self)


def _stats_of(account: Mapping[str, int] | None) -> ContainerStats | None:
    if not account:
        return None
    return ContainerStats(
        cpu_ns=int(account.get("cpu_ns", 0)),
        memory_used=int(account.get("memory_used", 0)),
        memory_cache=int(account.get("memory_cache", 0)),
        memory_limit=int(account.get("memory_limit", 0)),
    )


def _entry(e: Mapping[str, Any]) -> FileEntry:
    return FileEntry(
        path=str(e["path"]),
        type=e["type"],
        size=int(e.get("size") or 0),
        mode=int(e.get("mode") or 0),
        mtime=float(e.get("mtime") or 0.0),
        target=e.get("target"),
    )


def _refused_unless_ok(reply: Reply, operation: str, path: str) -> None:
    """The agent's refusal of a file operation, as the error the user can act on."""
    if not reply.get("ok"):
        reason = str(reply.get("reason") or "io_error")
        raise SandboxFileError(operation, path, reason, str(reply.get("error") or ""))
