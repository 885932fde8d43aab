"""Every removal of sandboxkit's containers, through one bounded, shielded routine.

- :func:`remove`: one container, by id or name (a sandbox that did not go by itself, a
  create cancelled mid-request). Every other removal here goes through it.
- :func:`reap`: containers whose owning process is gone (``sandboxkit reap``, a pool's
  first use, an engine re-admitted to a fleet).
- :func:`sweep`: every container of one pool (a pool closing; an engine re-admitted,
  since the pool dropped all it had there).
- :func:`remove_owned`: every container of this process, or of one of its pools, on
  engines it may no longer be connected to (the default pool's exit clean-up).

Every container carries ``org.sandboxkit.owner = host:pid:start-ticks``
(:func:`.labels.owner_identity`). The start time (in clock ticks since boot, from
``/proc/PID/stat``) makes the identity survive PID reuse: a new process that happens to
get the same PID has another start time, so its predecessor's containers still read as
orphaned. Containers of live owners, and of owners on another host (whose liveness this
machine cannot judge), are never reaped.

Most orphans vanish by themselves: containers are created with ``AutoRemove`` and
``StdinOnce``, so when the owner dies its attach connection closes, the agent sees
end-of-file and exits, and the engine removes the container. The reaper catches the rest
(an owner killed between create and attach, an engine that was busy, a container whose
agent is wedged), and it is cheap enough (one list call) to run whenever a pool starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import anyio

from .._backends import ContainerEngine, EngineConfig, connect
from .._errors import SandboxkitError
from .labels import (
    LABEL_MANAGED,
    LABEL_OWNER,
    LABEL_PAUSABLE,
    LABEL_POOL,
    held_orphaned,
    owner_alive,
    owner_identity,
)

log = logging.getLogger("sandboxkit")

REMOVE_TIMEOUT = 15.0  # seconds one removal may take
AT_ONCE = 4  # removals in flight per engine: it serialises them anyway
REAP_TIMEOUT = 10.0  # seconds a pool's start-up reap may take per engine
OWNED_SETTLE = 5.0  # seconds the exit clean-up keeps looking for late arrivals


async def remove(
    engine: ContainerEngine, cid: str, *, timeout: float = REMOVE_TIMEOUT
) -> Exception | None:
    """Kill and remove container ``cid`` (an id or a name; one already gone is fine).

    Shielded: a caller cancelled meanwhile (by a cancel scope, or by ``Task.cancel``,
    which an anyio shield does not stop) waits for the removal to end before its
    cancellation goes on. Bounded by ``timeout``. Returns what failed, or None; never
    raises it (the caller decides whether to log it: a later reap or sweep catches what
    this missed)."""
    removal = asyncio.ensure_future(_bounded_remove(engine, cid, timeout))
    try:
        return await asyncio.shield(removal)
    except asyncio.CancelledError:
        # an anyio scope keeps cancelling a task inside it until it leaves: shield the wait
        with anyio.CancelScope(shield=True):
            await asyncio.wait({removal})  # bounded by ``timeout`` itself
        raise


async def _bounded_remove(engine: ContainerEngine, cid: str, timeout: float) -> Exception | None:
    try:
        with anyio.fail_after(timeout):
            await engine.remove(cid)
    except TimeoutError:
        return TimeoutError(f"the engine did not remove {cid[:12]} within {timeout:.0f}s")
    except Exception as exc:  # noqa: BLE001 - handed to the caller
        return exc
    return None


async def _remove_all(engine: ContainerEngine, cids: Iterable[str]) -> dict[str, Exception | None]:
    """:func:`remove` each of ``cids``, a few at a time (a big backlog must not open
    hundreds of connections); what failed, per container."""
    gate = asyncio.Semaphore(AT_ONCE)

    async def one(cid: str) -> Exception | None:
        async with gate:
            return await remove(engine, cid)

    wanted = list(cids)
    outcomes = await asyncio.gather(*(one(cid) for cid in wanted))
    return dict(zip(wanted, outcomes, strict=True))


# ---------------------------------------------------------------------- orphans
@dataclass
class ReapReport:
    """What one pass found: containers removed, kept (live owner), and failures."""

    removed: list[str] = field(default_factory=list)
    kept: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def orphaned(labels: Mapping[str, str], name: str = "") -> bool:
    """Whether a managed container's owner is gone (pure: reads only ``/proc``)."""
    if labels.get(LABEL_PAUSABLE):  # its holder is in its name (see labels.held_name)
        return held_orphaned(name)
    owner = labels.get(LABEL_OWNER)
    if not owner:
        return False  # not ours to judge: made by something that did not say who owns it
    return not owner_alive(owner)


async def reap(engine: ContainerEngine, *, dry_run: bool = False) -> ReapReport:
    """Remove every sandboxkit container whose owning process no longer runs here."""
    report = ReapReport()
    doomed: list[str] = []
    for c in await engine.list_containers({LABEL_MANAGED: None}):
        if orphaned(c.labels, c.name):
            doomed.append(c.id)
        else:
            report.kept += 1
    if dry_run:
        report.removed = doomed
        return report
    for cid, failure in (await _remove_all(engine, doomed)).items():
        if failure is None:
            report.removed.append(cid)
        else:
            report.failed[cid] = str(failure)
    if report.removed:
        log.info("sandboxkit: removed %d orphaned sandbox(es)", len(report.removed))
    # then the networks of egress (a sandbox's own, a gateway's uplink) of dead owners
    networks = await remove_networks(engine, {LABEL_MANAGED: None}, orphans_only=True)
    if networks:
        log.info("sandboxkit: removed %d orphaned network(s)", networks)
    return report


async def remove_networks(
    engine: ContainerEngine, labels: Mapping[str, str | None], *, orphans_only: bool = False
) -> int:
    """Remove the networks carrying ``labels`` (of dead owners only, if asked); how
    many. After their containers: a network still in use is tried once more, then left
    to the next pass. An engine without networks of its own has none to remove."""
    listing = getattr(engine, "list_networks", None)
    removing = getattr(engine, "remove_network", None)
    if listing is None or removing is None:
        return 0
    try:
        found = await listing(labels)
    except SandboxkitError as exc:
        log.warning("sandboxkit: listing networks on %s failed: %s", engine.url, exc)
        return 0
    removed = 0
    for network in found:
        if orphans_only and not orphaned(network.labels):
            continue
        for attempt in range(2):
            try:
                await removing(network.id)
            except SandboxkitError as exc:
                if attempt == 0:
                    await asyncio.sleep(0.5)  # its last container is still going
                    continue
                log.warning("sandboxkit: could not remove network %s: %s", network.name, exc)
            else:
                removed += 1
            break
    return removed


async def reap_everywhere(
    engines: Sequence[ContainerEngine], *, timeout: float = REAP_TIMEOUT
) -> None:
    """:func:`reap` on every engine at once, each bounded by ``timeout``; a failure is
    logged (the next pool's start tries again)."""

    async def one(engine: ContainerEngine) -> None:
        with anyio.move_on_after(timeout):
            try:
                await reap(engine)
            except SandboxkitError as exc:
                log.warning(
                    "sandboxkit: reaping orphaned sandboxes on %s failed: %s", engine.url, exc
                )

    await asyncio.gather(*(one(e) for e in engines))


# ---------------------------------------------------------------------- by label
async def remove_labelled(
    engine: ContainerEngine, labels: Mapping[str, str | None], *, settle: float = 0.0
) -> int:
    """Remove every container carrying ``labels`` on ``engine``, then every network;
    how many containers.

    With ``settle`` > 0, keep listing until two listings 0.2 s apart find nothing, for
    at most ``settle`` seconds: a create cancelled mid-request can still land a moment
    after the first listing."""
    removed = quiet = 0
    deadline = time.monotonic() + settle
    while True:
        found = await engine.list_containers(labels)
        outcomes = await _remove_all(engine, (c.id for c in found))
        removed += sum(1 for failure in outcomes.values() if failure is None)
        quiet = 0 if found else quiet + 1
        if settle <= 0 or quiet >= 2 or time.monotonic() >= deadline:
            await remove_networks(engine, labels)  # egress networks, once nothing is on them
            return removed
        await asyncio.sleep(0.2)


async def sweep(engine: ContainerEngine, pool_id: str, *, settle: float = 0.0) -> int:
    """Remove every container labelled with ``pool_id`` on ``engine``; how many."""
    return await remove_labelled(engine, {LABEL_POOL: pool_id}, settle=settle)


async def sweep_everywhere(
    engines: Sequence[ContainerEngine], pool_id: str, *, settle: float = 0.0
) -> None:
    """:func:`sweep` on every engine at once; an engine that fails keeps its leftovers
    (a fleet sweeps it when it is re-admitted; a reap catches the rest later)."""

    async def one(engine: ContainerEngine) -> None:
        with contextlib.suppress(SandboxkitError):
            await sweep(engine, pool_id, settle=settle)

    await asyncio.gather(*(one(e) for e in engines))


async def remove_owned(
    engines: Iterable[EngineConfig], pool_id: str | None = None, *, settle: float = OWNED_SETTLE
) -> None:
    """Remove this process's containers (of pool ``pool_id``, or all) from each of
    ``engines``, each reached on a connection of its own (the pool's may belong to an
    event loop that is gone). Bounded; an engine that is gone holds nothing."""
    labels: dict[str, str | None] = {LABEL_OWNER: owner_identity()}
    if pool_id is not None:
        labels[LABEL_POOL] = pool_id

    async def one(config: EngineConfig) -> None:
        engine = connect(config)
        try:
            with contextlib.suppress(Exception):
                with anyio.fail_after(settle + 20):
                    await remove_labelled(engine, labels, settle=settle)
        finally:
            await engine.close()

    await asyncio.gather(*(one(c) for c in engines))
