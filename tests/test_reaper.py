"""The reaper without an engine: the one removal routine (bounded, shielded, never
raising), orphans of dead owners only, and sweeps by label that wait for late arrivals."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

import anyio
import pytest

import sandboxkit as sk
from sandboxkit._backends import ContainerRecord
from sandboxkit._fleet import reaper as _reaper
from sandboxkit._fleet.labels import LABEL_MANAGED, LABEL_OWNER, LABEL_POOL, owner_identity


class FakeEngine:
    """Containers in a list; ``hang``/``refuse`` make removals stall or fail."""

    url = "fake://"

    def __init__(self, *containers: ContainerRecord) -> None:
        self.containers = list(containers)
        self.removed: list[str] = []
        self.hang = 0.0
        self.refuse: set[str] = set()

    async def list_containers(self, labels: Mapping[str, str | None]) -> list[ContainerRecord]:
        return [
            c
            for c in self.containers
            if all(k in c.labels and v in (None, c.labels[k]) for k, v in labels.items())
        ]

    async def remove(self, cid: str) -> None:
        await asyncio.sleep(self.hang)
        if cid in self.refuse:
            raise sk.EngineError(f"Docker engine refused to remove a container: {cid}")
        self.removed.append(cid)
        self.containers = [c for c in self.containers if c.id != cid]


def owned(cid: str, owner: str, pool: str = "p") -> ContainerRecord:
    return ContainerRecord(cid, {LABEL_MANAGED: "1", LABEL_OWNER: owner, LABEL_POOL: pool})


DEAD = f"{os.uname().nodename}:{os.getpid()}:1"  # this pid, another start time: gone


async def test_one_removal_says_what_failed_instead_of_raising() -> None:
    engine = FakeEngine(owned("a", DEAD), owned("b", DEAD))
    engine.refuse = {"b"}
    assert await _reaper.remove(engine, "a") is None  # type: ignore[arg-type]
    failure = await _reaper.remove(engine, "b")  # type: ignore[arg-type]
    assert isinstance(failure, sk.EngineError) and engine.removed == ["a"]
    engine.hang = 10.0
    late = await _reaper.remove(engine, "a", timeout=0.05)  # type: ignore[arg-type]
    assert isinstance(late, TimeoutError) and "within" in str(late)


async def test_a_removal_under_way_ends_although_its_caller_is_cancelled() -> None:
    engine = FakeEngine(owned("a", DEAD), owned("b", DEAD))
    engine.hang = 0.1
    task = asyncio.create_task(_reaper.remove(engine, "a"))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    task.cancel()  # as a pool's close or the loop's shutdown cancels its tasks
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.removed == ["a"]  # shielded: done, then the cancellation
    with anyio.move_on_after(0.01) as scope:  # as a bounded clean-up around it
        await _reaper.remove(engine, "b")  # type: ignore[arg-type]
    assert scope.cancelled_caught and engine.removed == ["a", "b"]


async def test_reap_removes_dead_owners_only_and_reports_failures() -> None:
    engine = FakeEngine(
        owned("dead1", DEAD),
        owned("dead2", DEAD),
        owned("mine", owner_identity()),
        owned("elsewhere", "another-host:1:1"),
        ContainerRecord("unowned", {LABEL_MANAGED: "1"}),
    )
    dry = await _reaper.reap(engine, dry_run=True)  # type: ignore[arg-type]
    assert (sorted(dry.removed), dry.kept, engine.removed) == (["dead1", "dead2"], 3, [])
    engine.refuse = {"dead2"}
    report = await _reaper.reap(engine)  # type: ignore[arg-type]
    assert report.removed == ["dead1"] and report.kept == 3
    assert list(report.failed) == ["dead2"] and "refused" in report.failed["dead2"]


async def test_a_sweep_with_settle_catches_a_create_that_lands_late() -> None:
    engine = FakeEngine(owned("a", DEAD, pool="p1"), owned("other", DEAD, pool="p2"))

    async def land() -> None:
        await asyncio.sleep(0.1)  # a create cancelled mid-request lands after all
        engine.containers.append(owned("late", DEAD, pool="p1"))

    landing = asyncio.create_task(land())
    assert await _reaper.sweep(engine, "p1", settle=2.0) == 2  # type: ignore[arg-type]
    await landing
    assert sorted(engine.removed) == ["a", "late"]
    assert [c.id for c in engine.containers] == ["other"]  # another pool's stays
