"""What the Piston routes stand on: the sandbox pools, the installed runtimes, the job
slots and the rate limiter; and running one job to Piston's answer.

Everything runs through sandboxkit's public surface: a job is ``Sandbox.stream`` (or
``Sandbox.start`` on the WebSocket) over the wing's :class:`SandboxPool`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .._errors import InvalidInput, SandboxkitError, UnknownLanguage
from .._languages import LanguageSpec, get_language, languages
from .._models import Event, RunResult
from .._sandbox import Sandbox
from .._sandbox_pool import SandboxPool
from ._catalogue import piston_name
from ._job import Job, JobError
from ._ratelimit import RateLimiter
from ._result import compile_succeeded, failed_stage, response, split_compiler_output, stage
from ._runtimes import Catalog, Runtime
from ._settings import PistonSettings

log = logging.getLogger("sandboxkit.piston")


class PackageError(Exception):
    """A packages request Piston answers with an error: ``status`` and ``{message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class PistonService:
    """The pools, runtimes, job slots and rate limiter behind the Piston routes.

    ``pool``: a :class:`SandboxPool` to run in (left open); else one is made from the
    settings' warm languages (warmed as a pool never opened is: at each language's first
    run) and closed with the service."""

    def __init__(self, settings: PistonSettings, pool: SandboxPool | None = None) -> None:
        self.settings = settings
        self._given = pool
        self._pool = pool
        self._probe: SandboxPool | None = None
        self._catalog: Catalog | None = None
        self.slots = asyncio.Semaphore(settings.max_concurrent_jobs)
        self.limiter = RateLimiter(settings.rate_limit_ms) if settings.rate_limit_ms else None

    async def start(self) -> None:
        """Make the pools, unopened: the engine is first asked at the first request, so
        a Judge0 API node with no engine of its own (``--workers 0``) starts as before."""
        pool = self._given or SandboxPool(
            languages=self.settings.warm_languages, size=self.settings.pool_size
        )
        probe = SandboxPool(languages=(), size=0)
        self._pool, self._probe = pool, probe
        self._catalog = Catalog(pool, probe)

    async def stop(self) -> None:
        if self._probe is not None:
            await self._probe.aclose()
        if self._given is None and self._pool is not None:
            await self._pool.aclose()

    @property
    def pool(self) -> SandboxPool:
        if self._pool is None:
            raise RuntimeError("the Piston service is not started")
        return self._pool

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            raise RuntimeError("the Piston service is not started")
        return self._catalog

    async def runtimes(self) -> list[Runtime]:
        return await self.catalog.runtimes()

    # ------------------------------------------------------------------ execute
    async def execute(self, job: Job) -> dict[str, Any]:
        """Run ``job`` to Piston's answer. A program's failure is a stage status; a
        failure of sandboxkit or the engine is status ``XX`` (Piston's internal error)."""
        rt = job.runtime
        compiled = rt.spec.compiled
        events: list[Event] = []
        result: RunResult | None = None
        async with self.slots:
            try:
                async with Sandbox.stream(
                    job.code,
                    language=rt.spec.name,
                    stdin=job.stdin,
                    files=job.files,
                    limits=job.limits,
                    args=job.args,
                    pool=self.pool,
                ) as stream:
                    async for event in stream:
                        if event.kind == "exit":
                            result = event.result
                        else:
                            events.append(event)
            except InvalidInput as exc:  # files or arguments sandboxkit refuses
                raise JobError(str(exc)) from None
            except SandboxkitError as exc:
                log.warning("%s-%s could not run: %s", rt.language, rt.version, exc)
                result = None
                failure = failed_stage(str(exc))
                return response(
                    rt.language, str(rt.version), failure, failure if compiled else None
                )
        if result is None:
            failure = failed_stage("the run ended without a result")
            return response(rt.language, str(rt.version), failure, failure if compiled else None)
        if result.status == "compile_error":
            said = stage(result, result.stderr, None, stdout="", stderr=result.stderr)
            return response(rt.language, str(rt.version), said, said)
        warnings, own = split_compiler_output(events, result) if compiled else ("", events)
        run = stage(result, "".join(e.data for e in own), job.limits.output_bytes)
        return response(
            rt.language, str(rt.version), run, compile_succeeded(warnings) if compiled else None
        )

    # ------------------------------------------------------------------ packages
    async def packages(self) -> list[dict[str, Any]]:
        """Every language as a package: installed when its image is on the engine (its
        version then the toolchain's; unknown, null, until it is built)."""
        installed = {s.name for s in await self.catalog.installed_specs()}
        rows = []
        for spec in languages():
            version = await self.catalog.version(spec) if spec.name in installed else None
            rows.append(
                {
                    "language": spec.name,
                    "language_version": None if version is None else str(version),
                    "installed": spec.name in installed,
                }
            )
        return rows

    def _package(self, body: object) -> tuple[LanguageSpec, str]:
        if not self.settings.manage_packages:
            raise PackageError(
                403,
                "installing and removing packages (language images) is turned off here; "
                "the operator turns it on with `sandboxkit serve --piston-manage-packages` "
                "or builds images with `sandboxkit images build LANGUAGE`",
            )
        language = body.get("language") if isinstance(body, dict) else None
        version = body.get("version") if isinstance(body, dict) else None
        spec = _spec_named(language) if isinstance(language, str) else None
        if spec is None:
            raise PackageError(404, f"Requested package {language}-{version} does not exist")
        return spec, str(version)

    async def install(self, body: object) -> dict[str, Any]:
        """Build the language's image (the one version there is: its toolchain's)."""
        spec, _ = self._package(body)
        if await self.catalog.installed(spec):
            raise PackageError(500, "Already installed")
        try:
            await self.pool.image_for(spec)
            self.catalog.forget(spec)
            version = await self.catalog.version(spec)
        except SandboxkitError as exc:
            raise PackageError(500, str(exc)) from None
        return {"language": spec.name, "version": str(version)}

    async def uninstall(self, body: object) -> dict[str, Any]:
        """Remove the language's image (refused by the engine while a sandbox uses it)."""
        spec, _ = self._package(body)
        if not await self.catalog.installed(spec):
            raise PackageError(500, "Package is not installed")
        try:
            version = await self.catalog.version(spec)
            await self.pool.remove_image(spec.name)
        except SandboxkitError as exc:
            raise PackageError(500, str(exc)) from None
        finally:
            self.catalog.forget(spec)
        return {"language": spec.name, "version": str(version)}


def _spec_named(name: str) -> LanguageSpec | None:
    """The language a package request names: sandboxkit's name or alias, or Piston's."""
    try:
        return get_language(name)
    except UnknownLanguage:
        pass
    for spec in languages():
        piston = piston_name(spec)
        if name == piston.language or name in piston.aliases:
            return spec
    return None
