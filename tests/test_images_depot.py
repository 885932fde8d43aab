"""The image depot without an engine: which engine of a fleet has which image, copies
and builds where one is missing, the warm pools told of each outcome, and re-checks when
an engine comes back. Fake engines keep their images in a set; a copy moves the tag."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from typing import Any

import pytest

import sandboxkit as sk
from sandboxkit._backends import ContainerRecord, EngineConfig, EngineInfo, ImageRecord
from sandboxkit._fleet import engines as _fleet
from sandboxkit._fleet.engines import Fleet
from sandboxkit._images.depot import Depot
from sandboxkit._images.dockerfile import BASE_IMAGE
from sandboxkit._images.ensure import image_tag
from sandboxkit._languages import BASH, LanguageSpec


class FakeEngine:
    """An engine with an image store in memory. ``can_build``: False for an engine with
    no route to the package mirror; ``can_load``: False for one whose loads fail."""

    def __init__(self, url: str, *, store: bool = True) -> None:
        self.url = url
        self.have: set[str] = {BASE_IMAGE}
        self.can_build = True
        self.can_load = True
        self.built: list[str] = []
        self.loaded: list[str] = []
        self.has_store = store

    # the fleet's needs
    async def info(self) -> EngineInfo:
        return EngineInfo("Docker", version="test", cpus=2, memory_bytes=4 * 1024**3)

    async def ping(self, timeout: float) -> None:
        pass

    async def list_containers(self, labels: Mapping[str, str | None]) -> list[ContainerRecord]:
        return []

    async def remove(self, cid: str) -> None:
        pass

    async def close(self) -> None:
        pass

    @property
    def images(self) -> FakeEngine | None:
        return self if self.has_store else None

    # the image store
    async def image_exists(self, tag: str) -> bool:
        return tag in self.have

    async def inspect_image(self, tag: str) -> ImageRecord | None:
        return ImageRecord(tag, f"sha256:{tag}", 1000) if tag in self.have else None

    async def save_image(self, tag: str) -> AsyncIterator[bytes]:
        yield tag.encode()

    async def load_image(self, chunks: AsyncIterable[bytes]) -> None:
        tag = b"".join([c async for c in chunks]).decode()
        if not self.can_load:
            raise sk.ImageError(f"{self.url} could not load the image: disk full")
        self.loaded.append(tag)
        self.have.add(tag)

    async def pull(self, reference: str, tag: str) -> None:
        raise sk.EngineError("no registry here")

    async def build(
        self,
        tag: str,
        dockerfile: str,
        files: Mapping[str, bytes],
        on_line: Callable[[str], None] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        if not self.can_build:
            raise sk.ImageError(f"building {tag} failed: no route to the mirror", "E: ...")
        self.built.append(tag)
        self.have.add(tag)


class Pool:
    """What a warm pool hears from the depot."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, str]] = []

    def image_ready(self, url: str) -> None:
        self.heard.append(("ready", url))

    def image_failed(self, url: str, exc: BaseException) -> None:
        self.heard.append(("failed", url))

    def image_gone(self, url: str) -> None:
        self.heard.append(("gone", url))


def fresh_spec() -> LanguageSpec:
    """A spec of its own per test: build times measured for one tag steer the build-or-
    copy choice of that tag in this process."""
    return BASH.extend(f"bash-depot-{secrets.token_hex(4)}")


async def fleet_of(n: int, **engines: Any) -> tuple[Fleet, list[FakeEngine]]:
    fleet = Fleet([EngineConfig(f"unix:///fake{i}.sock") for i in range(n)], "p")
    fakes = [FakeEngine(m.url, **engines) for m in fleet.members]
    for member, fake in zip(fleet.members, fakes, strict=True):
        member.unwatched = fake  # type: ignore[assignment]
    await fleet.connect()
    return fleet, fakes


async def test_one_engine_builds_what_it_lacks_once() -> None:
    fleet, [engine] = await fleet_of(1)
    depot = Depot(fleet)
    try:
        spec = fresh_spec()
        tag = await depot.image_for(spec)
        assert tag == await image_tag(spec) and engine.built == [tag]
        assert depot.has(engine.url, tag)
        assert await depot.image_for(spec) == tag and engine.built == [tag]  # once
    finally:
        await depot.aclose()
        await fleet.aclose()


async def test_an_image_on_one_engine_is_copied_to_the_others_and_pools_hear_it() -> None:
    fleet, (a, b, c) = await fleet_of(3)
    depot = Depot(fleet)
    try:
        spec = fresh_spec()
        tag = await image_tag(spec)
        a.have.add(tag)
        assert await depot.image_for(spec) == tag  # there already: nothing built
        pool = Pool()
        depot.subscribe(tag, pool)
        await depot.everywhere()
        assert (b.loaded, c.loaded) == ([tag], [tag])  # one export, fanned out
        assert a.built == b.built == c.built == []
        assert sorted(pool.heard) == [("ready", b.url), ("ready", c.url)]
        assert all(depot.has(e.url, tag) for e in (a, b, c))
    finally:
        await depot.aclose()
        await fleet.aclose()


async def test_no_engine_has_it_so_one_builds_and_the_others_receive_a_copy() -> None:
    fleet, (a, b) = await fleet_of(2)
    a.can_build = False  # no route to the mirror: the next engine builds
    depot = Depot(fleet)
    try:
        tag = await depot.image_for(fresh_spec())
        await depot.everywhere()
        assert (a.built, b.built, a.loaded) == ([], [tag], [tag])
    finally:
        await depot.aclose()
        await fleet.aclose()


async def test_an_engine_the_image_cannot_reach_is_named_even_to_late_pools() -> None:
    fleet, (a, b) = await fleet_of(2)
    b.can_load = b.can_build = False
    depot = Depot(fleet)
    try:
        spec = fresh_spec()
        a.have.add(await image_tag(spec))
        tag = await depot.image_for(spec)
        with pytest.raises(sk.ImageError, match=rf"could not reach the engine at {b.url}"):
            await depot.everywhere()
        late = Pool()
        depot.subscribe(tag, late)  # a warm pool made after the failure hears it too
        assert late.heard == [("failed", b.url)] and not depot.has(b.url, tag)
    finally:
        await depot.aclose()
        await fleet.aclose()


async def test_an_engine_back_without_its_images_is_told_to_pools_then_refilled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_fleet, "PROBE_INTERVAL", 0.05)
    fleet, (a, b) = await fleet_of(2)
    depot = Depot(fleet)
    fleet.listeners.append(depot)
    try:
        spec = fresh_spec()
        a.have.add(await image_tag(spec))
        tag = await depot.image_for(spec)
        await depot.everywhere()
        pool = Pool()
        depot.subscribe(tag, pool)
        b.have.discard(tag)  # the engine lost its data while it was away
        fleet.mark_down(fleet.members[1], "test")
        await depot.readmitted(fleet.members[1])
        assert pool.heard == [("gone", b.url)] and not depot.has(b.url, tag)
        fleet.mark_up(fleet.members[1])  # the depot, a listener, brings it again
        await depot.everywhere()
        assert pool.heard == [("gone", b.url), ("ready", b.url)] and tag in b.have
    finally:
        await depot.aclose()
        await fleet.aclose()


async def test_an_engine_without_an_image_store_counts_as_holding_every_image() -> None:
    fleet, (a, b) = await fleet_of(2)
    b.has_store = False  # its sandboxes fetch their images themselves (a cluster)
    depot = Depot(fleet)
    try:
        tag = await depot.image_for(fresh_spec())
        await depot.everywhere()
        assert a.built == [tag] and b.built == b.loaded == []
        assert depot.has(b.url, tag)
    finally:
        await depot.aclose()
        await fleet.aclose()
