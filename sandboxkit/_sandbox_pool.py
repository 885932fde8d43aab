"""``SandboxPool``: owns the engines (one, or a fleet), their image depot, warm pools and
their background work, and hands out sandboxes through one lease
(:meth:`SandboxPool.checkout`) that one-shot runs, sessions, ``start()`` and the judge
all use, so all of them run on fleets. ``Sandbox.run`` uses a process-wide default pool.
Images are the depot's job (``_images.depot``), removals the reaper's (``_fleet.reaper``)."""

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

from ._backends import (
    Backend,
    BridgeNetwork,
    ContainerEngine,
    EngineLike,
    NetworkPolicy,
    engine_configs,
)
from ._container import Box, Resources, Shape
from ._egress.hub import EgressHub
from ._egress.policy import Egress, EgressSettings, check_egress
from ._errors import (
    EngineError,
    InvalidInput,
    PoolClosed,
    SandboxError,
    UsageError,
)
from ._fleet.engines import EngineStatus, Fleet
from ._fleet.pool import WarmPool
from ._fleet.reaper import reap_everywhere, sweep_everywhere
from ._images.depot import Depot
from ._languages import LanguageSpec, get_language, language_env
from ._models import Event, Limits, RunResult
from ._process import Process, launch
from ._run.jobs import compile_limits, resources_for
from ._run.program import run_program
from ._run.reader import final_result
from ._stream import EventStream
from ._validate import RunInput, check_limits, prepare_run

log = logging.getLogger("sandboxkit")

GATEWAY_IMAGE_WAIT = 300.0  # seconds an engine may wait for the gateway's image
ATTEMPTS = 3  # tries of a one-shot run whose job never reached a sandbox (engine faults)

#: The OCI runtime a sandbox's container runs under: runc, or gVisor's runsc.
Runtime = Literal["runc", "runsc"]


def check_runtime(runtime: object) -> Runtime | None:
    """``None`` (the pool's), ``"runc"`` or ``"runsc"``; anything else is refused up front."""
    if runtime is None or runtime == "runc" or runtime == "runsc":
        return runtime
    raise InvalidInput(f"runtime must be 'runc' or 'runsc', not {runtime!r}")


class _ImageWatch:
    """Waits for an image to reach one engine (or fail to), as the depot tells it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.done = asyncio.Event()
        self.why = f" in {GATEWAY_IMAGE_WAIT:.0f} s"

    def image_ready(self, url: str) -> None:
        if url == self.url:
            self.done.set()

    def image_failed(self, url: str, exc: BaseException) -> None:
        if url == self.url:
            self.why = f": {exc}"
            self.done.set()

    def image_gone(self, url: str) -> None:
        pass


class Lifecycle(enum.Enum):
    """A pool's or a session's: opened once, closed for good (httpx's ClientState)."""

    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


DEFAULT_REUSES = 100  # runs per container with ``reuse=True``


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
        size: idle sandboxes kept started per language at rest (0: start one per run).
            While runs come faster than containers are made (a loop of runs, a burst),
            the pool keeps more idle ones ready, doubling up to ``max_size`` and the
            engines' capacity, and steps back to ``size`` once demand has been quiet
            for 15 s (docs/fast-path.md).
        max_size: most sandboxes per language at once, idle and busy; a run beyond it
            waits up to ``acquire_timeout``. ``None`` (the default): the engines'
            capacity (4 per CPU, at most one per 512 MB of memory, or each engine's
            configured ``capacity``), and at least ``max(2 * size, size + 4)``.
        acquire_timeout: seconds a run waits for a free sandbox before ``PoolTimeout``.
        limits: the default :class:`Limits` of runs that give none.
        runtime: the OCI runtime of its containers: ``"runc"``, or ``"runsc"`` (gVisor).
        network: what sandboxes may reach: nothing (the default: only ``lo``), an
            :class:`Egress` policy (the names it allows, through an egress gateway on
            each engine; a run, a session or ``set_network`` may give another), or
            ``True``: the engine's whole bridge (an operator's opt-in, as Judge0's
            ``enable_network``).
        egress_resolvers: the resolver addresses the egress gateway asks (default
            ``SANDBOXKIT_EGRESS_RESOLVERS``, else the host's resolv.conf).
        egress_allow_private: address ranges (CIDR) an allowed name may resolve to
            although private (default ``SANDBOXKIT_EGRESS_ALLOW_PRIVATE``, else none).
        max_idle_age: seconds an idle sandbox is kept before it is replaced.
        reuse: one-shot runs (``run``, ``stream``) may share a container one after
            another: after a run that ended, its sandbox is scrubbed (every process but
            the agent killed, every writable place emptied, IPC objects removed, the
            agent's limits put back) and serves the next run; one that cannot be made
            clean is destroyed. ``True`` serves up to 100 runs per container, an int that
            many. Off by default: a fresh container per run (docs/security.md).
        exact: run interpreted programs by their real command (``python3 main.py``,
            ``node main.js``) instead of in the pre-loaded or pre-started runtime: a
            fresh ``sys.modules``, hash seed and ``/proc/self/cmdline``, for the few
            graders that need them more than the milliseconds (docs/fast-path.md). The
            default of this pool's runs and judges; ``run``/``stream``/``start`` take
            ``exact=`` per run.
        docker_url: the engine (``unix://``, or ``tcp://`` with TLS from
            ``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH``; default ``DOCKER_HOST`` or the
            local socket).
        engines: several engines for one pool (a fleet): URLs or :class:`EngineConfig`
            (remote engines over mutual TLS). ``size`` and ``max_size`` are then totals,
            spread by each engine's capacity; an engine that stops answering is marked
            down within seconds, its share moves to the others, and it is re-admitted
            when it answers again (:meth:`engine_status`). ``None``: one engine, as
            ``docker_url`` says.
        on_build_line: called with each line of image build output (and of images
            copied between engines).
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
        network: bool | Egress | None = None,
        max_idle_age: float = 300.0,
        reuse: bool | int = False,
        exact: bool = False,
        docker_url: str | None = None,
        engines: Sequence[EngineLike] | None = None,
        on_build_line: Callable[[str], None] | None = None,
        egress_resolvers: Sequence[str] | str | None = None,
        egress_allow_private: Sequence[str] | str | None = None,
    ) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or size > 256:
            raise InvalidInput(f"size must be an int from 0 to 256, not {size!r}")
        if max_size is not None and (
            not isinstance(max_size, int)
            or isinstance(max_size, bool)
            or max_size < max(size, 1)
            or max_size > 1024
        ):
            raise InvalidInput(f"max_size must be an int >= size and >= 1, not {max_size!r}")
        if not acquire_timeout > 0:
            raise InvalidInput("acquire_timeout must be > 0")
        if not isinstance(reuse, (bool, int)) or (not isinstance(reuse, bool) and reuse < 1):
            raise InvalidInput(f"reuse must be a bool or an int >= 1, not {reuse!r}")
        if check_runtime(runtime) is None:
            raise InvalidInput("runtime must be 'runc' or 'runsc'")
        self.languages = [get_language(name).name for name in languages]
        self.size = size
        self._max_size = max_size  # None: from the engines' capacity (see max_size)
        self.acquire_timeout = acquire_timeout
        self.limits = check_limits(limits)
        self.runtime: Runtime = runtime
        self.network: NetworkPolicy = BridgeNetwork() if network is True else None
        #: the default egress policy of its runs and sessions (None: no network)
        self.egress: Egress | None = None if isinstance(network, bool) else check_egress(network)
        self.egress_settings = EgressSettings.from_env(egress_resolvers, egress_allow_private)
        self._hub: EgressHub | None = None
        self.max_idle_age = max_idle_age
        # runs one sandbox serves in a one-shot run's lease (1: a fresh one every run)
        self.max_uses = DEFAULT_REUSES if reuse is True else max(1, int(reuse))
        if not isinstance(exact, bool):
            raise InvalidInput(f"exact must be True or False, not {exact!r}")
        self.exact = exact
        self.pool_id = secrets.token_hex(4)
        self.fleet = Fleet(engine_configs(engines, docker_url), self.pool_id)
        self.depot = Depot(self.fleet, on_build_line)
        # an engine back from an outage: its images are checked before it serves again;
        # once up, its warm pools take their share and the depot brings what it lacks
        self.fleet.on_readmit = self.depot.readmitted
        self.fleet.listeners += [self, self.depot]
        #: the first engine (the only one outside fleets)
        self.engine: Backend = self.fleet.members[0].engine
        self._pools: dict[Shape, WarmPool] = {}
        self._lock = asyncio.Lock()
        self._connect_lock = asyncio.Lock()
        self._state = Lifecycle.NEW
        self._reaped = False  # orphans of crashed owners are removed once, at first use

    # ------------------------------------------------------------------ life cycle
    async def open(self) -> SandboxPool:
        """Build missing images and warm every language's pool; the first failure
        raises (and closes the pool). Returns the pool itself."""
        if self._state is Lifecycle.OPEN:
            raise UsageError("this SandboxPool is already open; open it once")
        if self._state is Lifecycle.CLOSED:
            raise PoolClosed("this SandboxPool is closed; create a new one")
        self._state = Lifecycle.OPEN
        try:
            await self._connect()  # an unreachable engine fails here, with what to do
            for name in self.languages:
                await self._warm_pool(get_language(name), self.limits)
            await self.depot.everywhere()
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
        if self._state is Lifecycle.CLOSED:
            return
        self._state = Lifecycle.CLOSED
        with anyio.CancelScope(shield=True):
            await self.depot.aclose()
            pools = list(self._pools.values())
            # a create cancelled mid-request may land after the close: look a little longer
            creating = any(p.health()["starting"] for p in pools)
            await asyncio.gather(*(p.aclose() for p in pools), return_exceptions=True)
            if self._hub is not None:  # after the sandboxes: their networks are gone
                await self._hub.aclose()
            # last resort: anything still labelled with this pool's id, on every engine
            # that is up (a down one is swept when it comes back, or reaped later)
            with anyio.move_on_after(15):
                await sweep_everywhere(
                    [m.unwatched for m in self.fleet.up],
                    self.pool_id,
                    settle=3.0 if creating else 0.0,
                )
            await self.fleet.aclose()

    @property
    def max_size(self) -> int:
        """Most sandboxes per language at once: as given, or (``None``) the engines'
        capacity, at least ``max(2 * size, size + 4)`` (capacity is known once the
        engines answered: before, that floor)."""
        if self._max_size is not None:
            return self._max_size
        return min(1024, max(2 * self.size, self.size + 4, self.capacity))

    @property
    def capacity(self) -> int:
        """Sandboxes the engines can hold at once: each engine's configured
        ``capacity``, else what its CPUs and memory allow (4 per CPU, at most one per
        512 MB), summed over the engines. What a warm pool may grow to under load."""
        return sum(max(1, int(m.host.capacity or m.host.weight)) for m in self.fleet.members)

    @property
    def closed(self) -> bool:
        return self._state is Lifecycle.CLOSED

    def health(self) -> dict[str, dict[str, int]]:
        """Counts per warm pool (idle, starting, busy, size, and ``want``: the idle
        ones it keeps ready now, ``size`` or more under load), keyed by image and shape."""
        return {
            f"{s.image}@{s.runtime}/{s.disk_mb}m" + ("+egress" if s.network is self._hub else ""): (
                p.health()
            )
            for s, p in self._pools.items()
        }

    async def engine_status(self) -> list[EngineStatus]:
        """One entry per engine, in the order given: ``url``, ``state`` (``"up"`` or
        ``"down"``), its sandboxes (``idle``, ``busy``, ``starting``), ``capacity``,
        ``weight``, ``since``, and ``error`` (why it is down). An engine that is not
        watched (a pool of one, or one not yet opened) is probed now, within seconds."""
        counts: dict[str, dict[str, int]] = {}
        for pool in self._pools.values():
            for url, c in pool.per_engine().items():
                mine = counts.setdefault(url, {"idle": 0, "busy": 0, "starting": 0})
                for key in mine:
                    mine[key] += c[key]
        if self.fleet.watched and self._state is Lifecycle.OPEN and self.fleet.connected:
            return self.fleet.status(counts)
        return await self.fleet.probed_status(counts)

    # ------------------------------------------------------------------ engines
    async def _connect(self) -> None:
        """First contact with the engines (once): config errors and no engine at all
        raise; unreachable members of a fleet start down."""
        async with self._connect_lock:
            await self.fleet.connect()

    def engine_down(self, url: str) -> None:
        for pool in list(self._pools.values()):
            pool.engine_down(url)

    def engine_up(self, url: str) -> None:
        for pool in list(self._pools.values()):
            pool.engine_up(url)

    def _dead_idle(self, url: str) -> None:
        member = self.fleet.by_url.get(url)
        if member is not None:
            self.fleet.suspect(member)

    # ------------------------------------------------------------------ images
    async def has_image(self, language: str) -> bool:
        """Whether ``language``'s image is on an engine now (nothing is built)."""
        await self._connect()
        return await self.depot.installed(get_language(language))

    async def remove_image(self, language: str) -> None:
        """Remove ``language``'s image from the engines (its next use builds it again).
        An engine refuses while a sandbox of it runs: EngineError says so."""
        await self._connect()
        await self.depot.remove(get_language(language))

    # ------------------------------------------------------------------ internals
    async def image_for(self, spec: LanguageSpec) -> str:
        """The tag of ``spec``'s image, on one engine at least (built there if no engine
        has it); the depot brings it to the other engines in the background."""
        await self._connect()
        return await self.depot.image_for(spec)

    @property
    def egress_hub(self) -> EgressHub | None:
        """The pool's egress, once a sandbox with a policy was asked for."""
        return self._hub

    @property
    def hub(self) -> EgressHub:
        """The pool's egress (its gateways start on first use)."""
        if self._hub is None:
            self._hub = EgressHub(self.pool_id, self.egress_settings, self._gateway_image)
            self._hub.default_policy = self.egress
        return self._hub

    async def _gateway_image(self, engine: ContainerEngine) -> str:
        """Any image with python3 runs the gateway: the Python language's, which the
        depot builds and brings to every engine like any other (waited for on a fleet's
        engine it has not reached yet)."""
        tag = await self.depot.image_for(get_language("python"))
        if not self.depot.has(engine.url, tag):
            watch = _ImageWatch(engine.url)
            self.depot.subscribe(tag, watch)
            with anyio.move_on_after(GATEWAY_IMAGE_WAIT):
                if not self.depot.has(engine.url, tag):
                    await watch.done.wait()
            if not self.depot.has(engine.url, tag):
                raise EngineError(
                    f"the image {tag} (the egress gateway's) did not reach {engine.url}"
                    f"{watch.why}; build it there: sandboxkit images build python"
                )
        return tag

    def _shape(
        self,
        tag: str,
        limits: Limits,
        spec: LanguageSpec,
        runtime: Runtime | None = None,
        egress: bool = False,
        writable_root: bool = False,
    ) -> Shape:
        runtime = runtime or self.runtime
        fixed = (
            self._container_resources(spec, limits)
            if any(m.unwatched.limits_fixed(runtime) for m in self.fleet.members)
            else None
        )
        return Shape(
            image=tag,
            runtime=runtime,
            disk_mb=limits.disk_mb,
            network=self.hub if egress else self.network,
            fixed=fixed,
            writable_root=writable_root,
        )

    async def _warm_pool(
        self,
        spec: LanguageSpec,
        limits: Limits,
        runtime: Runtime | None = None,
        egress: bool | None = None,
        writable_root: bool = False,
    ) -> WarmPool:
        if self.closed:
            raise PoolClosed("this SandboxPool is closed; create a new one")
        await self._connect()
        if not self._reaped:
            self._reaped = True
            # sandboxes of crashed owners: one list call per engine when there are none
            await reap_everywhere([m.engine for m in self.fleet.up])
        tag = await self.depot.image_for(spec)
        if egress is None:
            egress = self.egress is not None
        shape = self._shape(tag, limits, spec, runtime, egress, writable_root)
        async with self._lock:
            if self.closed:  # closed while the image was being prepared
                raise PoolClosed("this SandboxPool is closed; create a new one")
            pool = self._pools.get(shape)
            if pool is None:
                # warm pools for the pool's own limits; other disk sizes start on demand
                # (egress sandboxes too, once asked for: their networks made ahead)
                own = self._shape(tag, self.limits, spec, None, egress, writable_root)
                size = self.size if shape == own else 0
                # the run's own room: a compile fits in it or widens it (_run.policy)
                create_for = shape.fixed or resources_for(self.limits)
                pool = WarmPool(
                    self.fleet.members,
                    shape,
                    create_for,
                    language_env(spec),
                    self.pool_id,
                    size=size,
                    max_size=self.max_size,
                    grow_to=self.capacity,
                    max_idle_age=self.max_idle_age,
                    max_uses=self.max_uses,
                    ready=lambda url: self.depot.has(url, tag),
                    on_dead_idle=self._dead_idle,
                )
                self.depot.subscribe(tag, pool)
                self._pools[shape] = pool
        return pool

    @staticmethod
    def _container_resources(spec: LanguageSpec, limits: Limits) -> Resources:
        """What a container is made with: room for the compile step when there is one."""
        return resources_for(compile_limits(spec, limits) if spec.compiled else limits)

    @asynccontextmanager
    async def checkout(
        self,
        spec: LanguageSpec,
        limits: Limits,
        runtime: Runtime | None = None,
        *,
        avoid: frozenset[str] = frozenset(),
        network: Egress | Literal["pool"] | None = "pool",
        writable_root: bool = False,
    ) -> AsyncIterator[Box]:
        """The one lease: a warm sandbox for the caller alone, destroyed (and replaced)
        when the block ends. Every run, session, ``start()`` and judge goes through it.
        ``avoid``: engines (URLs) to take from only when no other has a sandbox.
        ``network``: its egress policy (``"pool"``: the pool's own). ``writable_root``:
        its root filesystem its own to write (a root session's; none warm ahead)."""
        policy = self.egress if network == "pool" else check_egress(network)
        if policy is not None and self.network is not None:
            raise InvalidInput("this pool gives its sandboxes the whole bridge: no Egress policy")
        pool = await self._warm_pool(
            spec,
            limits,
            check_runtime(runtime),
            egress=policy is not None,
            writable_root=writable_root,
        )
        box = await pool.acquire(self.acquire_timeout, avoid)
        try:
            if box.egress is not None and policy is not None and box.egress.policy != policy:
                await box.egress.set_policy(policy)
            yield box
        finally:
            with anyio.CancelScope(shield=True):
                await pool.release(box, reuse=box.reusable)

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
        env: Mapping[str, str] | None = None,
        args: Sequence[str] | None = None,
        runtime: Runtime | None = None,
        exact: bool | None = None,
        network: Egress | Literal["pool"] | None = "pool",
    ) -> RunResult:
        """Run ``code`` once in a fresh sandbox; the user's failures are statuses.

        ``env``: variables over the language's own; ``args``: the program's arguments
        (``sys.argv[1:]``). ``runtime`` overrides the pool's for this run (``"runsc"``:
        gVisor). ``network``: an :class:`Egress` policy for this run, or None for no
        network (default: the pool's). Python's output is block-buffered, as
        ``python3 main.py`` into a pipe: what a program killed at its time limit had not
        flushed is lost (``stream`` shows it as it is printed)."""
        spec = get_language(language)
        job = self._prepare(spec, code, stdin, files, limits, env, args, exact)
        policy = self._policy(network)
        return await final_result(self._events(spec, job, check_runtime(runtime), policy))

    def _prepare(
        self,
        spec: LanguageSpec,
        code: object,
        stdin: object,
        files: Mapping[str, bytes] | None,
        limits: object,
        env: object,
        args: object,
        exact: bool | None,
        *,
        live: bool = False,
    ) -> RunInput:
        """A one-shot run's checked input, with the pool's defaults (limits, exact mode)."""
        return prepare_run(
            spec.source_file,
            code,
            stdin,
            files,
            limits,
            self.limits,
            env=env,
            args=args,
            live=live,
            exact=self.exact if exact is None else exact,
        )

    def _policy(self, network: object) -> Egress | None:
        """A run's egress policy (``"pool"``: the pool's); bad input fails here."""
        return self.egress if network == "pool" else check_egress(network)

    def stream(
        self,
        code: str,
        *,
        language: str = "python",
        stdin: str | bytes | None = None,
        files: Mapping[str, bytes] | None = None,
        limits: Limits | None = None,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] | None = None,
        runtime: Runtime | None = None,
        exact: bool | None = None,
        network: Egress | Literal["pool"] | None = "pool",
    ) -> EventStream:
        """Run ``code`` once, yielding output chunks as written, then the ``exit`` event
        (Python unbuffered: each ``print`` as it happens). Use as
        ``async with pool.stream(...) as events`` to free the sandbox on exit."""
        spec = get_language(language)  # bad input fails here, not at the first event
        job = self._prepare(spec, code, stdin, files, limits, env, args, exact, live=True)
        policy = self._policy(network)
        return EventStream(self._events(spec, job, check_runtime(runtime), policy))

    async def _events(
        self,
        spec: LanguageSpec,
        job: RunInput,
        runtime: Runtime | None,
        policy: Egress | None = None,
    ) -> AsyncGenerator[Event, None]:
        avoid: set[str] = set()
        for attempt in range(ATTEMPTS):
            async with self.checkout(
                spec, job.limits, runtime, avoid=frozenset(avoid), network=policy
            ) as box:
                events = run_program(box, spec, job)
                delivered = False
                async with aclosing(events):  # a consumer leaving early stops the run now
                    try:
                        async for event in events:
                            delivered = True
                            yield await with_usage(box, event)
                        # the run ended and its sandbox waits for a job: in reuse mode
                        # it may be scrubbed and serve another run (not one with its own
                        # egress network: its policy and counts were the run's)
                        box.reusable = self.max_uses > 1 and box.egress is None
                        return
                    except (SandboxError, EngineError) as exc:
                        # the job never reached this sandbox (its engine died under it,
                        # or the sandbox did): nothing ran, so another sandbox may run it
                        if delivered or box.frames_sent or attempt == ATTEMPTS - 1:
                            raise
                        url = box.engine.url
                        log.info("sandboxkit: %s before the job reached it (%s); again", url, exc)
                        avoid.add(url)
                        member = self.fleet.by_url.get(url)
                        if member is not None:
                            self.fleet.suspect(member, exc)

    async def start(
        self,
        code: str,
        *,
        language: str = "python",
        stdin: str | bytes | None = None,
        files: Mapping[str, bytes] | None = None,
        limits: Limits | None = None,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] | None = None,
        runtime: Runtime | None = None,
        exact: bool | None = None,
        network: Egress | Literal["pool"] | None = "pool",
    ) -> Process:
        """Start ``code`` in a fresh sandbox with stdin open; use as ``async with``."""
        spec = get_language(language)
        job = self._prepare(spec, code, stdin, files, limits, env, args, exact, live=True)
        policy = self._policy(network)
        lease = AsyncExitStack()
        box = await lease.enter_async_context(
            self.checkout(spec, job.limits, check_runtime(runtime), network=policy)
        )
        return await launch(
            box,
            lambda sent: run_program(box, spec, job, interactive=True, on_sent=sent),
            on_close=lease.aclose,
        )


async def with_usage(box: Box, event: Event) -> Event:
    """A run's ``exit`` event with what its sandbox did through the egress gateway."""
    if event.kind != "exit" or box.egress is None or event.result is None:
        return event
    try:
        usage = await box.egress.usage()
    except SandboxError as exc:
        log.warning("sandboxkit: no egress counts for this run: %s", exc)
        return event
    return event.model_copy(update={"result": event.result.model_copy(update={"network": usage})})
