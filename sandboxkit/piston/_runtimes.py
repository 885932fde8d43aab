"""The runtimes a Piston client sees: sandboxkit's languages whose image is installed,
named as Piston names them, with their toolchain's version; and Piston's way of picking
one for a request (the newest whose name or alias and version match).

Installed means the language's image is on the engine (``sandboxkit images build``
installs one; so does ``POST /api/v2/packages`` when the operator allows it). Versions
are read once per language from a sandbox of its image and kept.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .._errors import SandboxkitError
from .._languages import LanguageSpec, languages
from .._sandbox_pool import SandboxPool
from ._catalogue import piston_name, semver_of
from ._semver import Version, parse_version, satisfies

log = logging.getLogger("sandboxkit.piston")

REFRESH_SECONDS = 30.0  # how long the installed set is trusted before the engine is asked
VERSION_PROBES = 4  # sandboxes started at once to read toolchain versions


@dataclass(frozen=True)
class Runtime:
    """One runtime as ``GET /api/v2/runtimes`` shows it, and the language that runs it."""

    language: str
    version: Version
    aliases: tuple[str, ...]
    runtime: str | None
    spec: LanguageSpec

    def row(self) -> dict[str, object]:
        row: dict[str, object] = {
            "language": self.language,
            "version": str(self.version),
            "aliases": list(self.aliases),
        }
        if self.runtime is not None:
            row["runtime"] = self.runtime
        return row


def find_runtime(runtimes: Sequence[Runtime], language: str, selector: str) -> Runtime | None:
    """The newest runtime named ``language`` (or with it as an alias) whose version is
    within ``selector``, as Piston's ``get_latest_runtime_matching_language_version``."""
    matching = [
        rt
        for rt in runtimes
        if (rt.language == language or language in rt.aliases) and satisfies(rt.version, selector)
    ]
    return max(matching, key=lambda rt: rt.version, default=None)


class Catalog:
    """Which languages are installed on ``pool``'s engine, and their versions.

    ``probe`` starts the sandbox a version is read from: a pool of its own that keeps
    none warm, so asking for forty versions does not leave forty sandboxes running."""

    def __init__(self, pool: SandboxPool, probe: SandboxPool) -> None:
        self._pool = pool
        self._probe = probe
        self._versions: dict[str, Version] = {}
        self._installed: list[LanguageSpec] = []
        self._checked = -REFRESH_SECONDS
        self._lock = asyncio.Lock()
        self._gate = asyncio.Semaphore(VERSION_PROBES)

    async def installed(self, spec: LanguageSpec) -> bool:
        return await self._pool.has_image(spec.name)

    async def version(self, spec: LanguageSpec) -> Version:
        """The toolchain version of ``spec``'s image (its first read starts a sandbox)."""
        known = self._versions.get(spec.name)
        if known is None:
            async with self._gate:
                line = await self._probe.toolchain_version(spec.name)
            known = parse_version(semver_of(line, spec.name)) or Version(0, 0, 0)
            self._versions[spec.name] = known
        return known

    def forget(self, spec: LanguageSpec) -> None:
        """``spec``'s image was built or removed here: ask the engine again."""
        self._versions.pop(spec.name, None)
        self._checked = -REFRESH_SECONDS

    async def installed_specs(self) -> list[LanguageSpec]:
        async with self._lock:
            if time.monotonic() - self._checked >= REFRESH_SECONDS:
                specs = languages()
                present = await asyncio.gather(*(self.installed(s) for s in specs))
                self._installed = [s for s, yes in zip(specs, present, strict=True) if yes]
                self._checked = time.monotonic()
            return list(self._installed)

    async def runtimes(self) -> list[Runtime]:
        """Every installed language as a runtime, in sandboxkit's order (by name). One
        whose sandbox cannot start to tell its version is left out (and logged)."""
        specs = await self.installed_specs()
        versions = await asyncio.gather(*(self.version(s) for s in specs), return_exceptions=True)
        out = []
        for spec, version in zip(specs, versions, strict=True):
            if isinstance(version, BaseException):
                if not isinstance(version, SandboxkitError):
                    raise version
                log.warning("piston: %s is left out of the runtimes: %s", spec.name, version)
                continue
            name = piston_name(spec)
            out.append(Runtime(name.language, version, name.aliases, name.runtime, spec))
        return out
