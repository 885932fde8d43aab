"""Which engine of a fleet has which image, and bringing images where they are missing.

A :class:`Depot` serves one :class:`~._fleet.Fleet`. For each language a pool uses it
finds the image's tag, makes sure one engine at least has it (built there when none
does), then brings it to every other engine that is up, in the background: copied
(``docker save`` → ``docker load``, one export fanned out) from an engine that has it,
or built there, whichever :func:`~._images.choose_method` expects to be faster, the
other way when the first fails. The warm pools of that image hear of each engine's
outcome (``image_ready``, ``image_failed``) and start sandboxes there only once it is
there. An engine back from an outage is checked before it serves again (its images may
have gone with its data) and receives what it lacks.

An engine without an image store of its own (:attr:`~._backends.ContainerEngine.images`
is None: its sandboxes fetch images themselves) counts as holding every image.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

import anyio

from .._backends import ImageStore
from .._errors import EngineError, ImageError, SandboxkitError
from .._fleet.engines import Fleet, Member
from .._languages import LanguageSpec
from .ensure import choose_method, ensure_image, image_tag, transfer

log = logging.getLogger("sandboxkit")

CLOSE_TIMEOUT = 10.0  # seconds closing waits for the copies and builds it cancels


class ImageUser(Protocol):
    """A warm pool, as the depot tells it where its image is."""

    def image_ready(self, url: str) -> None:
        """The image arrived on engine ``url``."""

    def image_failed(self, url: str, exc: BaseException) -> None:
        """The image could not reach engine ``url`` (``exc`` says why)."""

    def image_gone(self, url: str) -> None:
        """Engine ``url`` came back without the image (it is being brought again)."""


def _local_first(member: Member) -> bool:
    """Sort key: a local engine first (no TLS to pay for on the way out)."""
    return not member.url.startswith("unix://")


class Depot:
    """The images of one fleet's pools (see the module docstring)."""

    def __init__(self, fleet: Fleet, on_line: Callable[[str], None] | None = None) -> None:
        self.fleet = fleet
        self.on_line = on_line  # each line of a build, or of a copy's progress
        self._tags: dict[str, str] = {}  # language -> its image's tag
        self._specs: dict[str, LanguageSpec] = {}  # tag -> the spec it is built from
        self._have: dict[tuple[str, str], bool] = {}  # (engine, tag) -> the image is there
        self._failures: dict[tuple[str, str], BaseException] = {}  # could not get there
        self._arrivals: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._users: dict[str, list[ImageUser]] = {}  # tag -> the warm pools of it
        self._computed: dict[str, tuple[LanguageSpec, str]] = {}  # language -> (spec, tag)
        self._closed = False

    # ------------------------------------------------------------------ queries
    def has(self, url: str, tag: str) -> bool:
        """Whether ``tag`` is known to be on engine ``url``."""
        return bool(self._have.get((url, tag)))

    def subscribe(self, tag: str, user: ImageUser) -> None:
        """Tell ``user`` where ``tag`` arrives or fails from now on (failures known
        already at once: they came before the user did)."""
        self._users.setdefault(tag, []).append(user)
        for (url, failed_tag), exc in list(self._failures.items()):
            if failed_tag == tag:
                user.image_failed(url, exc)

    # ------------------------------------------------------------------ images
    async def image_for(self, spec: LanguageSpec) -> str:
        """The tag of ``spec``'s image, on one engine at least (built there if no engine
        has it); the other engines receive it in the background. The fleet must be
        connected."""
        tag = self._tags.get(spec.name)
        if tag is not None:
            return tag
        if not self.fleet.watched:
            member = self.fleet.members[0]
            store = member.engine.images
            if store is None:
                tag = await image_tag(spec)
            else:
                tag = await ensure_image(store, spec, self.on_line)
            self._have[(member.url, tag)] = True
        else:
            tag = await image_tag(spec)
            up = self.fleet.up
            present = await asyncio.gather(*(self._present(m, tag) for m in up))
            if not any(present):
                await self._build_somewhere(spec, tag, up)
        self._tags[spec.name] = tag
        self._specs[tag] = spec
        self._spread(tag, spec)
        return tag

    async def installed(self, spec: LanguageSpec) -> bool:
        """Whether an engine that is up holds ``spec``'s image now (asked, not cached:
        an image may have been built or removed behind the pool's back)."""
        tag = await self._tag_of(spec)
        for member in self.fleet.up or self.fleet.members[:1]:
            store = member.engine.images
            if store is None or await store.image_exists(tag):
                return True
        return False

    async def remove(self, spec: LanguageSpec) -> None:
        """Remove ``spec``'s image from every engine that is up and holds it (the engine
        refuses while a sandbox uses it: that error is raised)."""
        tag = await self._tag_of(spec)
        for member in self.fleet.up or self.fleet.members[:1]:
            store = member.engine.images
            if store is not None and await store.image_exists(tag):
                await store.remove_image(tag)
            self._have.pop((member.url, tag), None)
        self._tags.pop(spec.name, None)

    async def _tag_of(self, spec: LanguageSpec) -> str:
        """``spec``'s tag, computed once per spec (a pip spec's reads the CA bundle)."""
        known = self._computed.get(spec.name)
        if known is None or known[0] != spec:
            known = self._computed[spec.name] = (spec, await image_tag(spec))
        return known[1]

    async def everywhere(self) -> None:
        """Wait until every image in use is on every engine that is up; an engine an
        image could not reach raises (naming it)."""
        tasks = {t for t in self._arrivals.values() if not t.done()}
        if tasks:
            await asyncio.gather(*tasks)
        for (url, _tag), exc in self._failures.items():
            member = self.fleet.by_url.get(url)
            if member is not None and member.up:
                raise exc

    async def _present(self, member: Member, tag: str) -> bool:
        key = (member.url, tag)
        if not self._have.get(key):
            store = member.engine.images
            self._have[key] = store is None or await store.image_exists(tag)
        return self._have[key]

    def _stores(self, members: list[Member], *, but: Member | None = None) -> list[ImageStore]:
        """The image stores of ``members`` (less ``but``; those without one are left out)."""
        return [store for m in members if m is not but and (store := m.engine.images) is not None]

    async def _build_somewhere(self, spec: LanguageSpec, tag: str, up: list[Member]) -> None:
        """No engine has ``tag``: build it on the first that can (local engines first)."""
        failures: list[str] = []
        for member in sorted(up, key=_local_first):
            store = member.engine.images
            if store is None:
                continue  # counted as present: never here
            try:
                await ensure_image(store, spec, self.on_line, sources=self._stores(up, but=member))
            except (ImageError, EngineError) as exc:
                failures.append(f"{member.url}: {str(exc).splitlines()[0]}")
                continue
            self._have[(member.url, tag)] = True
            return
        raise ImageError(f"no engine of this pool could build {tag}: " + "; ".join(failures))

    def _arrived(self, url: str, tag: str, failure: BaseException | None) -> None:
        if failure is None:
            self._have[(url, tag)] = True
            self._failures.pop((url, tag), None)
        else:
            self._failures[(url, tag)] = failure
        for user in self._users.get(tag, ()):
            if failure is None:
                user.image_ready(url)
            else:
                user.image_failed(url, failure)

    def _spread(self, tag: str, spec: LanguageSpec) -> None:
        """Bring ``tag`` to every engine that is up and lacks it, in the background."""
        if self._closed:
            return
        lacking = [
            m
            for m in self.fleet.up
            if not self._have.get((m.url, tag))
            and ((m.url, tag) not in self._arrivals or self._arrivals[(m.url, tag)].done())
        ]
        if not lacking:
            return
        task = asyncio.get_running_loop().create_task(
            self._bring(tag, spec, lacking), name=f"sandboxkit-images-{tag}"
        )
        for m in lacking:
            self._arrivals[(m.url, tag)] = task

    async def _bring(self, tag: str, spec: LanguageSpec, targets: list[Member]) -> None:
        """Copy ``tag`` to ``targets`` from an engine that has it (one export for all),
        or build it there, whichever is expected to be faster; the other way when the
        first fails. Each engine's outcome reaches the warm pools."""
        holders = sorted(
            (m for m in self.fleet.up if self._have.get((m.url, tag))), key=_local_first
        )
        stores = self._stores(holders)
        source = stores[0] if stores else None
        size: int | None = None
        if source is not None:
            with contextlib.suppress(SandboxkitError):
                record = await source.inspect_image(tag)
                size = record.size if record else None
        by_copy = [
            m
            for m in targets
            if m.engine.images is not None
            and choose_method(tag, size, have_source=source is not None) == "copy"
        ]
        failures: dict[str, BaseException | None] = {}
        if source is not None and by_copy:
            try:
                failures.update(await transfer(tag, source, self._stores(by_copy), self.on_line))
            except SandboxkitError as exc:
                failures.update({m.url: exc for m in by_copy})
        for m in targets:
            if m.url in failures and failures[m.url] is None:
                self._arrived(m.url, tag, None)
                continue
            self._arrived(m.url, tag, await self._build_or_copy(m, tag, spec, source, failures))

    async def _build_or_copy(
        self,
        member: Member,
        tag: str,
        spec: LanguageSpec,
        source: ImageStore | None,
        copies: dict[str, BaseException | None],
    ) -> BaseException | None:
        """Build ``tag`` on ``member`` (its copy failed, or a build was expected to be
        faster); when that fails and no copy was tried, copy after all. What failed, or
        None when the image is there."""
        store = member.engine.images
        if store is None:
            return None  # it fetches its images itself
        copy_failure = copies.get(member.url)
        try:
            await ensure_image(
                store, spec, self.on_line, sources=self._stores(self.fleet.up, but=member)
            )
        except SandboxkitError as exc:
            if member.url not in copies and source is not None:
                # built first and failed (no route to the mirror?): copy after all
                try:
                    copy_failure = (await transfer(tag, source, [store], self.on_line))[member.url]
                except SandboxkitError as again:
                    copy_failure = again
                if copy_failure is None:
                    return None
            how = f"copying it failed ({copy_failure}); " if copy_failure else ""
            failure = ImageError(
                f"the image {tag} could not reach the engine at {member.url}: {how}"
                f"building it there failed ({str(exc).splitlines()[0]})"
            )
            log.warning("sandboxkit: %s", failure)
            return failure
        return None

    # ------------------------------------------------------------------ the fleet
    def engine_down(self, url: str) -> None:
        """Nothing to do: what the engine holds is checked when it comes back."""

    def engine_up(self, url: str) -> None:
        """``url`` serves again: bring it what it lacks."""
        for tag, spec in self._specs.items():
            if not self._have.get((url, tag)):
                self._spread(tag, spec)

    async def readmitted(self, member: Member) -> None:
        """Before an engine is marked up again: are its images still there? (Asked of
        the engine itself: the fleet still counts it down.)"""
        store = member.unwatched.images
        if store is None:
            return
        for tag in list(self._specs):
            present = await store.image_exists(tag)
            self._have[(member.url, tag)] = present
            if not present:
                for user in self._users.get(tag, ()):
                    user.image_gone(member.url)

    async def aclose(self) -> None:
        """Stop every copy and build under way; shielded and bounded."""
        self._closed = True
        with anyio.CancelScope(shield=True):
            for task in self._arrivals.values():
                task.cancel()
            with anyio.move_on_after(CLOSE_TIMEOUT):
                await asyncio.gather(*self._arrivals.values(), return_exceptions=True)
