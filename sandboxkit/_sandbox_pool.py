"""``SandboxPool``: owns the engine connection, images, warm pools and their background
work, and hands out sandboxes through one lease (:meth:`SandboxPool.checkout`) that
one-shot runs, sessions, ``start()`` and the judge all use. ``Sandbox.run`` uses a
process-wide default pool."""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, aclosing, asynccontextmanager
from types import TracebackType
from typing import Literal

import anyio

from ._backends import connect
from ._container import Box, Resources, Shape
from ._errors import InvalidInput, PoolClosed, SandboxkitError, UsageError
from ._images import ensure_image
from ._labels import LABEL_POOL
from ._languages import LanguageSpec, get_language, language_env
from ._models import Event, Limits, RunResult
from ._pool import WarmPool
from ._process import Process, launch
from ._reaper import reap
from ._runner import compile_limits, final_result, resources_for, run_program
from ._stream import EventStream
from ._validate import check_limits, prepare_run

log = logging.getLogger("sandboxkit")

#: The OCI runtime a sandbox's container runs under: runc, or gVisor's runsc.
Runtime = Literal["runc", "runsc"]


def check_runtime(runtime: object) -> Runtime | None:
    """``None`` (the pool's), ``"runc"`` or ``"runsc"``; anything else is refused up front."""
    if runtime is None or runtime == "runc" or runtime == "runsc":
        return runtime
    raise InvalidInput(f"runtime must be 'runc' or 'runsc', not {runtime!r}")


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class SandboxPool:
    """Warm sandboxes for some languages, and everything needed to run code in them.

    ::

        async with SandboxPool(languages=["python"], size=4) as pool:
            result = await pool.run("print(1)")

    ``async with`` (or :meth:`open` … :meth:`aclose`) builds missing images and waits
    for the warm sandboxes; a pool that is never opened still works, warming each
    language on its first run. A pool is opened once; after :meth:`aclose` it is done.

    Args:
        languages: languages to warm when the pool opens (others warm on first use).
        size: idle sandboxes kept started per language (0: start one per run).
        max_size: most sandboxes per language at once, idle and busy (default
            ``max(2 * size, size + 4)``); a run beyond it waits up to ``acquire_timeout``.
        acquire_timeout: seconds a run waits for a free sandbox before ``PoolTimeout``.
        limits: the default :class:`Limits` of runs that give none.
        runtime: the OCI runtime of its containers: ``"runc"``, or ``"runsc"`` (gVisor).
        network: give sandboxes a bridge network (off by default: only ``lo``).
        max_idle_age: seconds an idle sandbox is kept before it is replaced.
        docker_url: the engine (``unix://``/``tcp://``; default ``DOCKER_HOST`` or the
            local socket).
        on_build_line: called with each line of image build output.
    """

    def __init__(
        self,
        languages: Sequence[str] = ("python",),
        *,
        size: int = 2,
        max_size: int | None = None,
        acquire_timeout: float = 60.0,
        limits: Limits | None = None,
        runtime: Runtime = "runc",
        network: bool = False,
        max_idle_age: float = 300.0,
        docker_url: str | None = None,
        on_build_line: Callable[[str], None] | None = None,
    ) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or size > 256:
            raise InvalidInput(f"size must be an int from 0 to 256, not {size!r}")
        if max_size is None:
            max_size = max(2 * size, size + 4)
        if not isinstance(max_size, int) or max_size < max(size, 1) or max_size > 1024:
            raise InvalidInput(f"max_size must be an int >= size and >= 1, not {max_size!r}")
        if not acquire_timeout > 0:
            raise InvalidInput("acquire_timeout must be > 0")
        if check_runtime(runtime) is None:
            raise InvalidInput("runtime must be 'runc' or 'runsc'")
        self.languages = [get_language(name).name for name in languages]
        self.size = size
        self.max_size = max_size
        self.acquire_timeout = acquire_timeout
        self.limits = check_limits(limits)
        self.runtime: Runtime = runtime
        self.network = network
        self.max_idle_age = max_idle_age
        self.engine = connect(docker_url)
        self.pool_id = secrets.token_hex(4)
        self._on_build_line = on_build_line
        self._pools: dict[Shape, WarmPool] = {}
        self._tags: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self._state = _State.NEW
        self._reaped = False  # orphans of crashed owners are removed once, at first use

    # ------------------------------------------------------------------ life cycle
    async def open(self) -> SandboxPool:
        """Build missing images and warm every language's pool; the first failure
        raises (and closes the pool). Returns the pool itself."""
        if self._state is _State.OPEN:
            raise UsageError("this SandboxPool is already open; open it once")
        if self._state is _State.CLOSED:
            raise PoolClosed("this SandboxPool is closed; create a new one")
        self._state = _State.OPEN
        try:
            await self.engine.info()  # an unreachable engine fails here, with what to do
            for name in self.languages:
                await self._warm_pool(get_language(name), self.limits)
            await asyncio.gather(*(p.warm_up() for p in self._pools.values()))
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aenter__(self) -> SandboxPool:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Destroy every sandbox this pool made; shielded from cancellation, bounded.
        Closing twice is fine."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        with anyio.CancelScope(shield=True):
            pools = list(self._pools.values())
            await asyncio.gather(*(p.aclose() for p in pools), return_exceptions=True)
            with anyio.move_on_after(15):
                await self._sweep()
            await self.engine.close()

    async def _sweep(self) -> None:
        """Last resort: remove anything still labelled with this pool's id."""
        try:
            for c in await self.engine.list_containers({LABEL_POOL: self.pool_id}):
                await self.engine.remove(str(c["Id"]))
        except SandboxkitError:
            pass

    @property
    def closed(self) -> bool:
        return self._state is _State.CLOSED

    def health(self) -> dict[str, dict[str, int]]:
        """Counts per warm pool (idle, starting, busy, size), keyed by image and shape."""
        return {f"{s.image}@{s.runtime}/{s.disk_mb}m": p.health() for s, p in self._pools.items()}

    # ------------------------------------------------------------------ internals
    async def image_for(self, spec: LanguageSpec) -> str:
        """The tag of ``spec``'s image, built first if it is missing."""
        tag = self._tags.get(spec.name)
        if tag is None:
            tag = await ensure_image(self.engine, spec, self._on_build_line)
            self._tags[spec.name] = tag
        return tag

    def _shape(
        self, tag: str, limits: Limits, spec: LanguageSpec, runtime: Runtime | None = None
    ) -> Shape:
        runtime = runtime or self.runtime
        fixed = self._container_resources(spec, limits) if runtime == "runsc" else None
        return Shape(
            image=tag,
            runtime=runtime,
            disk_mb=limits.disk_mb,
            network=self.network,
            fixed=fixed,
        )

    async def _warm_pool(
        self, spec: LanguageSpec, limits: Limits, runtime: Runtime | None = None
    ) -> WarmPool:
        if self.closed:
            raise PoolClosed("this SandboxPool is closed; create a new one")
        if not self._reaped:
            self._reaped = True
            await self._reap_orphans()
        tag = await self.image_for(spec)
        shape = self._shape(tag, limits, spec, runtime)
        async with self._lock:
            if self.closed:  # closed while the image was being prepared
                raise PoolClosed("this SandboxPool is closed; create a new one")
            pool = self._pools.get(shape)
            if pool is None:
                # warm pools for the pool's own limits; other disk sizes start on demand
                size = self.size if shape == self._shape(tag, self.limits, spec) else 0
                # the run's own room: a compile fits in it or widens it (_runner.compile_source)
                create_for = shape.fixed or resources_for(self.limits)
                pool = WarmPool(
                    self.engine,
                    shape,
                    create_for,
                    language_env(spec),
                    self.pool_id,
                    size=size,
                    max_size=self.max_size,
                    max_idle_age=self.max_idle_age,
                )
                self._pools[shape] = pool
        return pool

    async def _reap_orphans(self) -> None:
        """Remove sandboxes of crashed owners (one list call when there are none)."""
        with anyio.move_on_after(10):
            try:
                await reap(self.engine)
            except SandboxkitError as exc:
                log.warning("sandboxkit: reaping orphaned sandboxes failed: %s", exc)

    @staticmethod
    def _container_resources(spec: LanguageSpec, limits: Limits) -> Resources:
        """What a container is made with: room for the compile step when there is one."""
        return resources_for(compile_limits(spec, limits) if spec.compiled else limits)

    @asynccontextmanager
    async def checkout(
        self, spec: LanguageSpec, limits: Limits, runtime: Runtime | None = None
    ) -> AsyncIterator[Box]:
        """The one lease: a warm sandbox for the caller alone, destroyed (and replaced)
        when the block ends. Every run, session, ``start()`` and judge goes through it."""
        pool = await self._warm_pool(spec, limits, check_runtime(runtime))
        box = await pool.acquire(self.acquire_timeout)
        try:
            yield box
        finally:
            with anyio.CancelScope(shield=True):
                await pool.release(box)

    async def toolchain_version(self, language: str) -> str:
        """The version line of ``language``'s toolchain (``python3 --version`` and the
        like), read in its image when it was built and reported by a started sandbox."""
        spec = get_language(language)
        warm = await self._warm_pool(spec, self.limits)
        if warm.toolchain is None:  # no sandbox started yet: start one (it records it)
            async with self.checkout(spec, self.limits):
                pass
        return warm.toolchain or "unknown"

    # ------------------------------------------------------------------ runs
    async def run(
        self,
        code: str,
        *,
        language: str = "python",
        stdin: str | bytes | None = None,
        files: Mapping[str, bytes] | None = None,
        limits: Limits | None = None,
        runtime: Runtime | None = None,
    ) -> RunResult:
        """Run ``code`` once in a fresh sandbox; the user's failures are statuses.

        ``runtime`` overrides the pool's for this run (``"runsc"``: gVisor)."""
        return await final_result(
            self._events(code, language, stdin, files, limits, check_runtime(runtime))
        )

    def stream(
        self,
        code: str,
        *,
        language: str = "python",
        stdin: str | bytes | None = None,
        files: Mapping[str, bytes] | None = None,
        limits: Limits | None = None,
        runtime: Runtime | None = None,
    ) -> EventStream:
        """Run ``code`` once, yielding output chunks as written, then the ``exit`` event.
        Use as ``async with pool.stream(...) as events`` to free the sandbox on exit."""
        get_language(language)  # bad input fails here, not at the first event
        return EventStream(
            self._events(code, language, stdin, files, limits, check_runtime(runtime))
        )

    async def _events(
        self,
        code: str,
        language: str,
        stdin: str | bytes | None,
        files: Mapping[str, bytes] | None,
        limits: Limits | None,
        runtime: Runtime | None,
    ) -> AsyncGenerator[Event, None]:
        spec = get_language(language)
        job = prepare_run(spec.source_file, code, stdin, files, limits, self.limits)
        async with self.checkout(spec, job.limits, runtime) as box:
            events = run_program(box, spec, job.limits, job.files, job.stdin)
            async with aclosing(events):  # a consumer leaving early stops the run now
                async for event in events:
                    yield event

    async def start(
        self,
        code: str,
        *,
        language: str = "python",
        stdin: str | bytes | None = None,
        files: Mapping[str, bytes] | None = None,
        limits: Limits | None = None,
        runtime: Runtime | None = None,
    ) -> Process:
        """Start ``code`` in a fresh sandbox with stdin open; use as ``async with``."""
        spec = get_language(language)
        job = prepare_run(spec.source_file, code, stdin, files, limits, self.limits)
        lease = AsyncExitStack()
        box = await lease.enter_async_context(
            self.checkout(spec, job.limits, check_runtime(runtime))
        )
        return await launch(
            box,
            lambda sent: run_program(
                box, spec, job.limits, job.files, job.stdin, interactive=True, on_sent=sent
            ),
            on_close=lease.aclose,
        )
