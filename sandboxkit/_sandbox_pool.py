"""``SandboxPool``: the runtime object that owns the engine connection, images, warm
pools and background work. ``Sandbox.run`` uses a process-wide default one."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import aclosing, asynccontextmanager
from types import TracebackType
from typing import Literal

import anyio

from ._backends import connect
from ._container import Box, Resources, Shape
from ._errors import EngineError, InvalidInput, PoolClosed, SandboxkitError
from ._images import ensure_image
from ._labels import LABEL_POOL
from ._languages import LanguageSpec, get_language, language_env
from ._models import Event, Limits, RunResult
from ._pool import WarmPool
from ._process import Process
from ._reaper import reap
from ._runner import build_job, compile_limits, execute, final_result, resources_for
from ._validate import check_limits, prepare_run

log = logging.getLogger("sandboxkit")

Runtime = Literal["runc", "runsc"]


def check_runtime(runtime: object) -> Runtime | None:
    """``None`` (the pool's), ``"runc"`` or ``"runsc"``; anything else is refused up front."""
    if runtime is None or runtime == "runc" or runtime == "runsc":
        return runtime
    raise InvalidInput(f"runtime must be 'runc' or 'runsc', not {runtime!r}")


class SandboxPool:
    """Warm sandboxes for some languages, and everything needed to run code in them.

    ::

        async with SandboxPool(languages=["python"], size=4) as pool:
            result = await pool.run("print(1)")
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
        check_runtime(runtime)
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
        self._closed = False
        self._sessions: set[Box] = set()
        self._reaped = False  # orphans of crashed owners are removed once, at first use

    # ------------------------------------------------------------------ life cycle
    async def __aenter__(self) -> SandboxPool:
        try:
            await self.warm_up()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def warm_up(self) -> None:
        """Build missing images and warm every language's pool; first failure raises."""
        await self.engine.info()  # an unreachable engine fails here, with what to do
        for name in self.languages:
            await self._warm_pool(get_language(name), self.limits)
        await asyncio.gather(*(p.warm_up() for p in self._pools.values()))

    async def aclose(self) -> None:
        """Destroy every sandbox this pool made; shielded from cancellation, bounded."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            pools = list(self._pools.values())
            await asyncio.gather(*(p.aclose() for p in pools), return_exceptions=True)
            sessions = list(self._sessions)
            await asyncio.gather(*(b.destroy() for b in sessions), return_exceptions=True)
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
        return self._closed

    def health(self) -> dict[str, dict[str, int]]:
        return {f"{s.image}@{s.runtime}/{s.disk_mb}m": p.health() for s, p in self._pools.items()}

    # ------------------------------------------------------------------ internals
    async def image_for(self, spec: LanguageSpec) -> str:
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
        if self._closed:
            raise PoolClosed("this SandboxPool is closed; create a new one")
        if not self._reaped:
            self._reaped = True
            await self._reap_orphans()
        tag = await self.image_for(spec)
        shape = self._shape(tag, limits, spec, runtime)
        async with self._lock:
            if self._closed:  # closed while the image was being prepared
                raise PoolClosed("this SandboxPool is closed; create a new one")
            pool = self._pools.get(shape)
            if pool is None:
                # warm pools for the pool's own limits; other disk sizes start on demand
                size = self.size if shape == self._shape(tag, self.limits, spec) else 0
                create_for = shape.fixed or self._container_resources(spec, self.limits)
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
    async def lease(
        self, spec: LanguageSpec, limits: Limits, runtime: Runtime | None = None
    ) -> AsyncIterator[Box]:
        """A warm sandbox for the caller alone; destroyed (and replaced) afterwards."""
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
            await warm.release(await warm.acquire(self.acquire_timeout))
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
            self.stream(
                code, language=language, stdin=stdin, files=files, limits=limits, runtime=runtime
            )
        )

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
        return await start_process(
            self,
            code,
            language=language,
            stdin=stdin,
            files=files,
            limits=limits,
            runtime=runtime,
        )

    async def stream(
        self,
        code: str,
        *,
        language: str = "python",
        stdin: str | bytes | None = None,
        files: Mapping[str, bytes] | None = None,
        limits: Limits | None = None,
        runtime: Runtime | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Run ``code`` once, yielding output chunks as written, then the ``exit`` event."""
        spec = get_language(language)
        job = prepare_run(spec.source_file, code, stdin, files, limits, self.limits)
        async with self.lease(spec, job.limits, check_runtime(runtime)) as box:
            events = run_program(box, spec, job.limits, job.files, job.stdin)
            async with aclosing(events):  # a consumer leaving early stops the run now
                async for event in events:
                    yield event


async def start_process(
    pool: SandboxPool,
    code: str,
    *,
    language: str = "python",
    stdin: str | bytes | None = None,
    files: Mapping[str, bytes] | None = None,
    limits: Limits | None = None,
    runtime: Runtime | None = None,
) -> Process:
    """A one-shot run with its stdin kept open; the sandbox is freed when it closes."""
    spec = get_language(language)
    job = prepare_run(spec.source_file, code, stdin, files, limits, pool.limits)
    warm = await pool._warm_pool(spec, job.limits, check_runtime(runtime))
    box = await warm.acquire(pool.acquire_timeout)
    proc = Process(box, on_close=lambda: warm.release(box))
    try:
        await proc._begin(
            lambda sent: run_program(
                box, spec, job.limits, job.files, job.stdin, interactive=True, on_sent=sent
            )
        )
    except BaseException:
        await proc.aclose()  # stops the run and releases the sandbox (cancelled, failed)
        raise
    return proc


async def run_program(
    box: Box,
    spec: LanguageSpec,
    limits: Limits,
    files: dict[str, bytes],
    stdin: bytes | None,
    *,
    interactive: bool = False,
    keep_processes: bool = False,
    keep_state: bool = False,
    on_sent: Callable[[], None] | None = None,
    salvage: bool = False,
) -> AsyncGenerator[Event, None]:
    """Compile (if the language needs it) and run, in ``box``; yields events.

    ``salvage`` (sessions): a run abandoned midway is killed and the box kept.
    """
    if spec.compile is not None:
        build_limits = compile_limits(spec, limits)
        await box.set_resources(resources_for(build_limits))
        job = await build_job(spec, spec.compile, build_limits, files=files)
        compiled = await final_result(
            execute(
                box,
                job,
                build_limits,
                spec.name,
                status_on_failure="compile_error",
                salvage=salvage,
            )
        )
        if compiled.status != "ok":
            # a compiler that fails, times out or blows its memory is a compile error;
            # all it printed is diagnostics, reported in stderr (tsc writes to stdout)
            diagnostics = compiled.stderr + compiled.stdout
            if compiled.status in ("timeout", "oom"):
                what = (
                    f"its {build_limits.time:g} s time limit"
                    if compiled.status == "timeout"
                    else f"its {build_limits.memory_mb} MB memory limit"
                )
                diagnostics += f"\nsandboxkit: compilation stopped: it exceeded {what}\n"
            yield Event(
                kind="exit",
                result=compiled.model_copy(
                    update={"status": "compile_error", "stdout": "", "stderr": diagnostics}
                ),
            )
            return
        files = {}
    try:
        await box.set_resources(resources_for(limits))
    except EngineError as exc:
        if limits.memory_mb >= box.resources.memory_mb:
            raise
        # lowering the limit fails when the sandbox already holds more (files in /work
        # and /tmp count as memory): the run cannot fit in what it asked for
        yield Event(
            kind="exit",
            result=RunResult(
                status="oom",
                stderr=(
                    f"sandboxkit: this sandbox already holds more than {limits.memory_mb} MB "
                    "(files in /work and /tmp count as memory); free some or ask for more\n"
                    f"({exc})\n"
                ),
                language=spec.name,
            ),
        )
        return
    job = await build_job(
        spec,
        spec.run,
        limits,
        files=files,
        stdin=stdin,
        interactive=interactive,
        keep_processes=keep_processes,
        inline_python=spec.preload == "python",
        kernel=keep_state,
    )
    events = execute(box, job, limits, spec.name, on_sent=on_sent, salvage=salvage)
    async with aclosing(events):
        async for event in events:
            yield event
