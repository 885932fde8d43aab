"""Crash-proof cleanup: remove sandboxes whose owning process is gone.

Every container carries ``org.sandboxkit.owner = host:pid:start-ticks``
(:func:`._labels.owner_identity`). The start time (in clock ticks since boot, from
``/proc/PID/stat``) makes the identity survive PID reuse: a new process that happens to
get the same PID has another start time, so its predecessor's containers still read as
orphaned. Containers of live owners, and of owners on another host (whose liveness this
machine cannot judge), are never touched.

Most orphans vanish by themselves: containers are created with ``AutoRemove`` and
``StdinOnce``, so when the owner dies its attach connection closes, the agent sees
end-of-file and exits, and the engine removes the container. The reaper catches the rest
(an owner killed between create and attach, an engine that was busy, a container whose
agent is wedged), and it is cheap enough (one list call) to run whenever a pool starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from ._backends import ContainerEngine
from ._labels import LABEL_MANAGED, LABEL_OWNER, owner_alive

log = logging.getLogger("sandboxkit")


@dataclass
class ReapReport:
    """What one pass found: containers removed, kept (live owner), and failures."""

    removed: list[str] = field(default_factory=list)
    kept: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def orphaned(labels: Mapping[str, str]) -> bool:
    """Whether a managed container's owner is gone (pure: reads only ``/proc``)."""
    owner = labels.get(LABEL_OWNER)
    if not owner:
        return False  # not ours to judge: made by something that did not say who owns it
    return not owner_alive(owner)


async def reap(engine: ContainerEngine, *, dry_run: bool = False) -> ReapReport:
    """Remove every sandboxkit container whose owning process no longer runs here."""
    report = ReapReport()
    doomed: list[str] = []
    for c in await engine.list_containers({LABEL_MANAGED: None}):
        if orphaned(c.labels):
            doomed.append(c.id)
        else:
            report.kept += 1
    if dry_run:
        report.removed = doomed
        return report

    async def remove(cid: str) -> None:
        try:
            await engine.remove(cid)
        except Exception as exc:  # noqa: BLE001 - collected, reported; the next pass retries
            report.failed[cid] = str(exc)
        else:
            report.removed.append(cid)

    # a few at a time: the engine serialises removals anyway, and a big backlog
    # should not open hundreds of connections
    sem = asyncio.Semaphore(4)

    async def bounded(cid: str) -> None:
        async with sem:
            await remove(cid)

    await asyncio.gather(*(bounded(cid) for cid in doomed))
    if report.removed:
        log.info("sandboxkit: removed %d orphaned sandbox(es)", len(report.removed))
    return report
