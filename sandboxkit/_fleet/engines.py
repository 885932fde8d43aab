"""The engines of one pool, their health, and what happens when one dies or comes back.

A :class:`Fleet` holds one :class:`Member` per engine. With two engines or more, each
member is watched:

- **Detection.** A bounded health probe (``GET /_ping``) every second; a failed call
  through the member's backend, or an idle sandbox whose stream ended, probes at once. A
  refused or broken connection marks the engine down on the spot (a killed dockerd closes
  its sockets at once); probes that time out (a partitioned host answers nothing) mark it
  down after :data:`TIMEOUTS_TO_DOWN` in a row.
- **Down.** Listeners (the warm pools) drop the engine's idle sandboxes, end the streams
  of its busy ones (their runs end with ``EngineError``, never a wrong result) and move
  its share of the warm pool to the others. Calls through its backend fail at once with
  ``EngineUnavailable`` instead of waiting on a dead host.
- **Back.** A down engine is probed with backoff; when it answers, this pool's leftovers
  there are removed (its sandboxes were all dropped; the engine may still hold them),
  crashed owners' orphans are reaped, its images are checked, and only then is it marked
  up and given its share again.

One engine alone is not watched: there is nowhere to fail over to, and a pool of one
behaves exactly as before (failed starts back off; the next call tries again).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, Literal, Protocol

import anyio
from pydantic import Field

from .._backends import (
    Backend,
    ContainerEngine,
    EngineConfig,
    EngineInfo,
    ImageStore,
    NetworkStore,
    connect,
)
from .._errors import EngineError, EngineUnavailable, SandboxkitError
from .._models import Frozen
from .placement import Host
from .reaper import reap, sweep

log = logging.getLogger("sandboxkit")

#: Whether an engine serves: ``"up"``, or ``"down"`` (probed with backoff until it answers).
EngineState = Literal["up", "down"]

PROBE_INTERVAL = 1.0  # seconds between health probes of an engine that is up
PROBE_TIMEOUT = 2.0  # seconds a probe may take
TIMEOUTS_TO_DOWN = 2  # probes in a row that time out before an engine is marked down
BACKOFF_FIRST = 0.25  # seconds before the first probe of a down engine
BACKOFF_MAX = 3.0  # most seconds between probes of a down engine
CONTACT_TIMEOUT = 20.0  # seconds the first contact with an engine may take
READMIT_TIMEOUT = 60.0  # seconds the clean-up before re-admission may take
SANDBOXES_PER_CPU = 4  # derived capacity weight: sandboxes per CPU of an engine ...
MB_PER_SANDBOX = 512  # ... and per this much of its memory, whichever is fewer


class EngineStatus(Frozen):
    """One engine of a pool, as :meth:`SandboxPool.engine_status` reports it."""

    url: str = Field(description="the engine's address: its identity in the fleet")
    state: EngineState = Field(description='"up" (serving) or "down" (probed until it answers)')
    idle: int = Field(0, description="warm sandboxes waiting there, every language")
    busy: int = Field(0, description="sandboxes running a run or held by a session there")
    starting: int = Field(0, description="sandboxes being started there")
    capacity: int | None = Field(None, description="most sandboxes there (None: no cap)")
    weight: float = Field(1.0, description="its share of the warm pool, relative to the others")
    since: float = Field(description="when it entered this state (epoch seconds)")
    error: str | None = Field(None, description="why it is down, or the last failure")
    version: str | None = Field(None, description="the engine's version, when known")
    downs: int = Field(0, description="times it was marked down since the pool opened")


class Listener(Protocol):
    """What the fleet tells its warm pools."""

    def engine_down(self, url: str) -> None: ...

    def engine_up(self, url: str) -> None: ...


def derived_weight(info: EngineInfo) -> float:
    """An engine's weight from its ``info``: sandboxes its CPUs and memory could hold."""
    cpus = max(1, info.cpus)
    mem_mb = info.memory_bytes // (1024 * 1024)
    by_memory = mem_mb // MB_PER_SANDBOX if mem_mb else cpus * SANDBOXES_PER_CPU
    return float(max(1, min(cpus * SANDBOXES_PER_CPU, by_memory)))


def is_config_error(exc: BaseException) -> bool:
    """An engine that answered but refused us (TLS, API): a setting to fix, not a host
    to wait for."""
    return isinstance(exc, EngineError) and not isinstance(exc, EngineUnavailable)


class Member:
    """One engine of a fleet: the engine (its calls watched: a failure marks it suspect),
    the same engine unwatched (the watcher's own probes), placement host and health."""

    def __init__(self, fleet: Fleet, config: EngineConfig) -> None:
        self.fleet = fleet
        self.config = config
        self.unwatched: Backend = connect(config)
        # typed as the protocols it serves (it forwards each of their calls, watched)
        self.engine: Backend = WatchedBackend(self)
        self.host = Host(config.url, weight=float(config.capacity or 1), capacity=config.capacity)
        self.state: EngineState = "up"
        self.since = time.time()
        self.error: str | None = None
        self.version: str | None = None
        self.downs = 0
        self.contacted = False
        self._wake = asyncio.Event()
        self._timeouts = 0

    @property
    def url(self) -> str:
        return self.config.url

    @property
    def up(self) -> bool:
        return self.state == "up"

    def __repr__(self) -> str:
        return f"Member({self.url!r}, {self.state})"

    def learn(self, info: EngineInfo) -> None:
        """Weight from the engine's CPUs and memory, unless a capacity was given; its
        version for the status."""
        if self.config.capacity is None:
            self.host.weight = derived_weight(info)
        self.version = info.version or self.version

    def down_error(self) -> EngineUnavailable:
        return EngineUnavailable(
            f"the Docker engine at {self.url} is down ({self.error or 'not answering'}); "
            "the pool probes it and re-admits it when it answers"
        )


class Fleet:
    """The engines of one SandboxPool (see the module docstring)."""

    def __init__(self, configs: Sequence[EngineConfig], pool_id: str) -> None:
        self.pool_id = pool_id
        self.members = [Member(self, c) for c in configs]
        self.by_url = {m.url: m for m in self.members}
        self.watched = len(self.members) > 1
        self.listeners: list[Listener] = []
        # checked before an engine back from an outage is marked up (its images: the
        # pool's depot, made with the fleet, sets it)
        self.on_readmit: Callable[[Member], Awaitable[None]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connected = False
        self._closed = False

    # ------------------------------------------------------------------ life cycle
    async def connect(self) -> None:
        """First contact with every engine, at once and bounded. An engine that refuses
        us (TLS, API) raises: that is a setting to fix. Engines that do not answer start
        down (re-admitted when they do), unless none answers: then that raises."""
        if self._connected:
            return
        outcomes = await asyncio.gather(
            *(self._contact(m) for m in self.members), return_exceptions=True
        )
        failures = [
            (m, o)
            for m, o in zip(self.members, outcomes, strict=True)
            if isinstance(o, BaseException)
        ]
        for _member, exc in failures:
            if not isinstance(exc, Exception):
                raise exc  # cancellation and the like
        refused = [(m, e) for m, e in failures if is_config_error(e)]
        if refused:
            if len(refused) == 1:
                raise refused[0][1]
            raise EngineError("; ".join(f"{m.url}: {e}" for m, e in refused))
        if len(failures) == len(self.members):
            if len(failures) == 1:
                raise failures[0][1]
            raise EngineUnavailable(
                "no engine of this pool answers: " + "; ".join(f"{m.url}: {e}" for m, e in failures)
            )
        for member, exc in failures:
            self.mark_down(member, str(exc))
        self._connected = True
        if self.watched:
            for member in self.members:
                self._spawn(self._watch(member), f"sandboxkit-watch-{member.url}")

    async def _contact(self, member: Member) -> None:
        with anyio.fail_after(CONTACT_TIMEOUT):
            try:
                info = await member.unwatched.info()
            except TimeoutError:
                raise EngineUnavailable(
                    f"the Docker engine at {member.url} did not answer within "
                    f"{CONTACT_TIMEOUT:.0f}s"
                ) from None
        member.learn(info)
        member.contacted = True

    async def aclose(self) -> None:
        """Stop watching and close every connection; shielded and bounded."""
        self._closed = True
        with anyio.CancelScope(shield=True):
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                with anyio.move_on_after(5):
                    await asyncio.gather(*list(self._tasks), return_exceptions=True)
            await asyncio.gather(
                *(m.unwatched.close() for m in self.members), return_exceptions=True
            )

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ state
    @property
    def up(self) -> list[Member]:
        return [m for m in self.members if m.up]

    def suspect(self, member: Member, exc: BaseException | None = None) -> None:
        """Something failed on ``member``: probe it now rather than at the next tick."""
        if self.watched and member.up and not self._closed:
            member._wake.set()

    def mark_down(self, member: Member, reason: str) -> None:
        if not member.up:
            return
        member.state = "down"
        member.since = time.time()
        member.error = reason
        member.downs += 1
        member.host.up = False
        log.warning("sandboxkit: engine %s is down: %s", member.url, reason)
        for listener in list(self.listeners):
            listener.engine_down(member.url)

    def mark_up(self, member: Member) -> None:
        if member.up:
            return
        member.state = "up"
        member.since = time.time()
        member.error = None
        member.host.up = True
        member._timeouts = 0
        log.warning("sandboxkit: engine %s is back up", member.url)
        for listener in list(self.listeners):
            listener.engine_up(member.url)

    # ------------------------------------------------------------------ the watch
    async def _probe(self, member: Member) -> str | None:
        """None when the engine answered in time, else what went wrong ("timeout"...)."""
        try:
            with anyio.fail_after(PROBE_TIMEOUT):
                await member.unwatched.ping(PROBE_TIMEOUT * 2)
        except TimeoutError:
            return "timeout"
        except SandboxkitError as exc:
            return str(exc)
        return None

    async def _watch(self, member: Member) -> None:
        """Probe ``member`` for as long as the fleet lives; mark it down and up."""
        delay = BACKOFF_FIRST
        while not self._closed:
            if member.up:
                with contextlib.suppress(TimeoutError):
                    with anyio.fail_after(PROBE_INTERVAL):
                        await member._wake.wait()
                member._wake.clear()
                problem = await self._probe(member)
                if problem is None:
                    member._timeouts = 0
                    continue
                if problem == "timeout":
                    member._timeouts += 1
                    if member._timeouts < TIMEOUTS_TO_DOWN:
                        continue
                    problem = f"{TIMEOUTS_TO_DOWN} health probes in a row got no answer"
                self.mark_down(member, problem)
                delay = BACKOFF_FIRST
            else:
                await asyncio.sleep(delay)
                delay = min(BACKOFF_MAX, delay * 2)
                if await self._probe(member) is not None:
                    continue
                try:
                    await self._readmit(member)
                except Exception as exc:  # noqa: BLE001 - stays down, probed again
                    member.error = f"answers again, but re-admitting it failed: {exc}"
                    log.warning("sandboxkit: engine %s: %s", member.url, member.error)
                    continue
                delay = BACKOFF_FIRST

    async def _readmit(self, member: Member) -> None:
        """Clean up after the engine's outage, then mark it up."""
        with anyio.fail_after(READMIT_TIMEOUT):
            member.learn(await member.unwatched.info())
            await sweep(member.unwatched, self.pool_id)
            with contextlib.suppress(SandboxkitError):
                await reap(member.unwatched)
            if self.on_readmit is not None:
                await self.on_readmit(member)
        self.mark_up(member)

    # ------------------------------------------------------------------ views
    @property
    def connected(self) -> bool:
        return self._connected

    async def probed_status(self, counts: Mapping[str, Mapping[str, int]]) -> list[EngineStatus]:
        """Like :meth:`status`, each engine probed now (bounded): for engines nobody
        watches (a pool of one, a fleet not yet opened)."""
        problems = await asyncio.gather(*(self._probe(m) for m in self.members))
        listed = self.status(counts)
        now = time.time()
        return [
            s
            if problem is None
            else s.model_copy(
                update={
                    "state": "down",
                    "error": f"no answer within {PROBE_TIMEOUT:.0f}s"
                    if problem == "timeout"
                    else problem,
                    "since": now,
                }
            )
            for s, problem in zip(listed, problems, strict=False)
        ]

    def status(self, counts: Mapping[str, Mapping[str, int]]) -> list[EngineStatus]:
        out = []
        for m in self.members:
            c = counts.get(m.url, {})
            out.append(
                EngineStatus(
                    url=m.url,
                    state=m.state,
                    idle=c.get("idle", 0),
                    busy=c.get("busy", 0),
                    starting=c.get("starting", 0),
                    capacity=m.config.capacity,
                    weight=m.host.weight,
                    since=m.since,
                    error=m.error,
                    version=m.version,
                    downs=m.downs,
                )
            )
        return out


class WatchedBackend:
    """A member's backend as the pool, its boxes and the runner see it: every call goes
    to the engine unless the fleet knows it is down (then it fails at once), and a call
    that finds the engine unreachable makes the fleet probe it now.

    It implements :class:`~._backends.ContainerEngine` and
    :class:`~._backends.ImageStore` (``Member.engine`` is typed as them) by wrapping
    each of their calls once, on first use (:meth:`__getattr__`): a new method of the
    seam needs no edit here. Only what behaves otherwise is written out.
    """

    def __init__(self, member: Member) -> None:
        self._member = member

    @property
    def url(self) -> str:
        return self._member.url

    @property
    def local_paths(self) -> bool:
        return self._member.unwatched.local_paths

    @property
    def images(self) -> ImageStore | None:
        # its image calls are watched too
        return self if self._member.unwatched.images is not None else None

    def __repr__(self) -> str:
        return f"WatchedBackend({self.url!r})"

    async def close(self) -> None:
        """Closing is never refused, even while the engine is down."""
        await self._member.unwatched.close()

    async def wait_removed(self, cid: str) -> bool:
        if not self._member.up:
            return False  # cannot be known: the caller falls back (or the sweep removes it)
        return await self._member.unwatched.wait_removed(cid)

    def __getattr__(self, name: str) -> Any:
        """The raw backend's ``name``, its calls watched (kept: found directly next time)."""
        if name not in _SEAM:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        method = getattr(self._member.unwatched, name)
        if inspect.isasyncgenfunction(method):
            wrapped: Any = self._watched_stream(name)
        elif inspect.iscoroutinefunction(method):
            wrapped = self._watched_call(name)
        else:
            return method  # plain answers (limits_fixed): nothing to watch
        setattr(self, name, wrapped)
        return wrapped

    def _watched_call(self, name: str) -> Callable[..., Awaitable[Any]]:
        member = self._member

        @functools.wraps(getattr(member.unwatched, name))
        async def call(*args: Any, **kwargs: Any) -> Any:
            if not member.up:
                raise member.down_error()
            try:
                return await getattr(member.unwatched, name)(*args, **kwargs)
            except EngineUnavailable as exc:
                member.fleet.suspect(member, exc)
                raise

        return call

    def _watched_stream(self, name: str) -> Callable[..., AsyncIterator[Any]]:
        member = self._member

        @functools.wraps(getattr(member.unwatched, name))
        async def stream(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            if not member.up:
                raise member.down_error()
            try:
                async for item in getattr(member.unwatched, name)(*args, **kwargs):
                    yield item
            except EngineUnavailable as exc:
                member.fleet.suspect(member, exc)
                raise

        return stream


def _protocol_methods(*protocols: type) -> frozenset[str]:
    """The public members the protocols declare (their own and inherited)."""
    return frozenset(
        name
        for protocol in protocols
        for klass in protocol.__mro__
        if klass not in (object, Protocol, Generic)
        for name in vars(klass)
        if not name.startswith("_")
    )


_SEAM = _protocol_methods(ContainerEngine, ImageStore, NetworkStore)
