"""Make sure an image exists: the base (pulled, bootstrapped offline, or copied from
another engine) and per-language images built from their generated Dockerfiles, or
copied (``docker save`` → ``docker load``, streamed) from an engine of the fleet that
has them, whichever is faster. Each tag is built once per engine and process, even when
many callers ask at the same time.

Why copying usually wins (measured on this machine, docs/scale.md): a copy moves the
image at ~60 MB/s (the Python image, 332 MB: ~5.5 s when the base is there, ~8 s when
not), while a build runs apt over the network and then the toolchain's own set-up
(tens of seconds to minutes), and cannot run at all on a host with no route out. The
choice is made per image from what this process has measured: the build time of that
tag here, and the copy rate so far (:class:`Costs`)."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .._backends import ImageStore
from .._backends.advice import engine_up_script
from .._errors import ImageError, SandboxkitError
from .._fleet.labels import LABEL_LANGUAGE, LABEL_MANAGED
from .._languages import LanguageSpec
from .dockerfile import BASE_IMAGE, BASE_SUITE, BuildContext, base_image, build_context

SUITE = BASE_SUITE  # the suite the host's apt sources are searched for (its mirror)


def registry_base(suite: str) -> str:
    """The registry image standing in for a bootstrapped base where one can be pulled."""
    return f"debian:{suite}-slim"


log = logging.getLogger("sandboxkit")

_locks: dict[tuple[int, str, str], asyncio.Lock] = {}


# --------------------------------------------------------------------- progress
BuildKind = Literal["start", "step", "line", "done", "failed"]

# Languages whose image takes a minute or more to build from the base (measured by
# scripts/setup.sh on a 2-core machine with a nearby Debian mirror: python-data 198 s,
# octave 136, ocaml 82, rust 70, kotlin 64, php 58, haskell 57, objective-c 50, go 47; the
# JDK languages share a large JDK layer). The others took 10-40 s (bash 12, c 24, cpp 34).
# A distant mirror makes either slower.
_LARGE_TOOLCHAINS = frozenset(
    {
        "python-data", "octave", "ocaml", "rust", "kotlin", "php", "haskell", "objective-c",
        "go", "java", "scala", "clojure", "groovy",
    }
)  # fmt: skip
BASE = "base"  # BuildProgress.language of the base image
STILL_BUILDING_EVERY = 20.0  # seconds between "still building" log lines within one step


def build_estimate(language: str) -> str:
    """Roughly how long the first build of ``language``'s image takes (words)."""
    if language == BASE:
        return "about 1-3 minutes"
    if language in _LARGE_TOOLCHAINS:
        return "about 1-5 minutes"
    return "about 10 s to 2 minutes"


@dataclass(frozen=True)
class BuildProgress:
    """One moment of an image being built because a run needed it.

    ``kind``: ``start`` (``text`` says why), ``step`` (a ``Step n/m`` line of the build),
    ``line`` (any other line of its output), ``done`` or ``failed`` (``text``: the error).
    ``elapsed`` counts seconds from the start.
    """

    kind: BuildKind
    language: str
    tag: str
    engine: str
    text: str = ""
    elapsed: float = 0.0
    estimate: str = ""


BuildHook = Callable[[BuildProgress], None]
_hook: BuildHook | None = None


@contextlib.contextmanager
def build_hook(hook: BuildHook | None) -> Iterator[None]:
    """Send the progress of images built on first use to ``hook`` inside the block,
    instead of logging it (the CLI shows a status line with it)."""
    global _hook
    before, _hook = _hook, hook
    try:
        yield
    finally:
        _hook = before


class _Report:
    """Tells about one build: to the caller's ``on_line`` (every line, as before), else
    to the hook, else to the log at WARNING. A caller that passes ``on_line`` shows the
    build itself: the hook is not called and the log gets INFO lines only."""

    def __init__(
        self,
        language: str,
        tag: str,
        engine: str,
        on_line: Callable[[str], None] | None,
    ) -> None:
        self.language = language
        self.tag = tag
        self.engine = engine
        self.on_line = on_line
        self.level = logging.INFO if on_line is not None else logging.WARNING
        self.started = time.monotonic()
        self.said = self.started
        self.step = ""

    def _event(self, kind: BuildKind, text: str = "") -> None:
        hook = _hook
        if hook is None or self.on_line is not None:
            return
        elapsed = time.monotonic() - self.started
        estimate = build_estimate(self.language)
        hook(BuildProgress(kind, self.language, self.tag, self.engine, text, elapsed, estimate))

    def _log(self, message: str, *args: object) -> None:
        # with a hook, the hook is what the user sees: the log keeps INFO lines
        level = logging.INFO if _hook is not None else self.level
        log.log(level, "sandboxkit: " + message, *args)
        self.said = time.monotonic()

    def start(self, why: str) -> None:
        self.started = self.said = time.monotonic()
        self._event("start", why)
        if self.language == BASE:
            what, ahead = "the base image", "sudo sandboxkit images bootstrap"
        else:
            what, ahead = f"{self.language!r}", f"sandboxkit images build {self.language}"
        self._log(
            "building image %s for %s on %s: %s; this takes %s, once (do it ahead with `%s`)",
            self.tag,
            what,
            self.engine,
            why,
            build_estimate(self.language),
            ahead,
        )

    def line(self, text: str) -> None:
        if self.on_line is not None:
            self.on_line(text)
        text = text.strip()
        if not text:
            return
        elapsed = time.monotonic() - self.started
        if text.startswith("Step "):
            self.step = text
            self._event("step", text)
            self._log("building %s (%.0f s): %s", self.tag, elapsed, _short(text))
            return
        self._event("line", text)
        log.debug("sandboxkit: building %s: %s", self.tag, text)
        if time.monotonic() - self.said >= STILL_BUILDING_EVERY:
            self._log(
                "still building %s (%.0f s, %s): %s",
                self.tag,
                elapsed,
                self.step.split(":", 1)[0].strip().lower() or "starting",
                _short(text),
            )

    def done(self) -> None:
        self._event("done")
        self._log("built %s in %.0f s", self.tag, time.monotonic() - self.started)

    def failed(self, error: str) -> None:
        self._event("failed", error)
        # the ImageError raised next says what to do; this marks the end of the progress
        log.log(
            logging.INFO if _hook is not None else self.level,
            "sandboxkit: building %s failed after %.0f s",
            self.tag,
            time.monotonic() - self.started,
        )


def _short(text: str, width: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _lock(tag: str, engine: str = "") -> asyncio.Lock:
    """One lock per (event loop, engine, tag): one build of a tag per engine at a time."""
    key = (id(asyncio.get_running_loop()), engine, tag)
    lock = _locks.get(key)
    if lock is None:
        lock = _locks[key] = asyncio.Lock()
    return lock


def _read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def debian_mirror(sources_dir: str = "/etc/apt") -> str | None:
    """The Debian mirror this machine's apt uses for ``bookworm`` (never hard-coded).

    ``SANDBOXKIT_DEBIAN_MIRROR`` overrides it.
    """
    override = os.environ.get("SANDBOXKIT_DEBIAN_MIRROR")
    if override:
        return override
    candidates: list[tuple[str, list[str]]] = []
    one_line = [
        f"{sources_dir}/sources.list",
        *sorted(glob.glob(f"{sources_dir}/sources.list.d/*.list")),
    ]
    for path in one_line:
        text = _read_text(path)
        if text is None:
            continue
        for line in text.splitlines():
            parts = line.split("#", 1)[0].split()
            if len(parts) >= 3 and parts[0] == "deb":
                rest = [p for p in parts[1:] if not p.startswith("[")]
                if len(rest) >= 2:
                    candidates.append((rest[0], [rest[1]]))
    for path in sorted(glob.glob(f"{sources_dir}/sources.list.d/*.sources")):
        text = _read_text(path)
        if text is None:
            continue
        for stanza in text.split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split():
                for uri in fields.get("uris", "").split():
                    candidates.append((uri, fields.get("suites", "").split()))
    for uri, suites in candidates:
        if SUITE in suites:
            return uri.rstrip("/")
    return None


SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def _pip_config_cert() -> str | None:
    """pip's configured ``cert`` (``pip config get global.cert``), if pip is here."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.cert"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    value = out.stdout.strip()
    return value if out.returncode == 0 and value else None


def build_ca_bundle() -> bytes | None:
    """The CA bundle pip trusts inside image builds, or None.

    HTTPS from a build may pass a proxy whose CA the host trusts and a fresh image does
    not. In order: ``SANDBOXKIT_BUILD_CA`` (a path; ``none`` turns this off), then pip's
    own setting (``PIP_CERT``, ``pip config get global.cert``), then the system bundle.
    Used only for specs with pip packages, and only in a throw-away builder stage.
    """
    explicit = os.environ.get("SANDBOXKIT_BUILD_CA")
    if explicit is not None and explicit.strip().lower() in ("", "none", "0", "off"):
        return None
    candidates = (
        [explicit]
        if explicit
        else [
            os.environ.get("PIP_CERT"),
            _pip_config_cert(),
            SYSTEM_CA_BUNDLE,
        ]
    )
    for path in candidates:
        if not path:
            continue
        try:
            with open(os.path.expanduser(path), "rb") as f:
                return f.read()
        except OSError as exc:
            if explicit:
                raise ImageError(
                    f"SANDBOXKIT_BUILD_CA={explicit!r} cannot be read ({exc.strerror}); "
                    "point it at a PEM CA bundle, or set it to 'none'"
                ) from None
    return None


def context_for(spec: LanguageSpec) -> BuildContext:
    """The build context (and so the tag) of ``spec`` on this machine."""
    ca = build_ca_bundle() if spec.pip_packages else None
    return build_context(spec, ca_bundle=ca)


def _write_text(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


async def _run(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


async def bootstrap_base(
    engine: ImageStore,
    tag: str = BASE_IMAGE,
    on_line: Callable[[str], None] | None = None,
    *,
    suite: str = BASE_SUITE,
) -> None:
    """Build the base image from the host's Debian mirror: debootstrap minbase + import.

    Another ``suite`` comes from the same mirror: a Debian mirror carries every release
    it serves (a language whose toolchain only another release packages)."""
    say = on_line or (lambda _line: None)
    mirror = debian_mirror()
    if mirror is None:
        raise ImageError(
            f"no Debian '{SUITE}' mirror found in /etc/apt sources; set "
            "SANDBOXKIT_DEBIAN_MIRROR to a Debian mirror URL and run "
            "`sandboxkit images bootstrap` again"
        )
    if shutil.which("debootstrap") is None:
        script = engine_up_script()
        also = f" (or `sudo bash {script}`)" if script else ""
        raise ImageError(
            f"debootstrap is not installed: `sudo apt-get install debootstrap`{also}, "
            "then `sandboxkit images bootstrap`"
        )
    if os.geteuid() != 0:
        raise ImageError(
            "bootstrapping the base image needs root: `sudo sandboxkit images bootstrap`"
        )
    work = tempfile.mkdtemp(prefix="sandboxkit-rootfs-")
    try:
        root = os.path.join(work, "rootfs")
        say(f"debootstrap --variant=minbase {suite} from {mirror}")
        code, log = await _run("debootstrap", "--variant=minbase", suite, root, mirror)
        if code != 0:
            raise ImageError(f"debootstrap failed (exit {code})", log[-3000:])
        # the image has no apt sources of its own beyond the mirror it came from
        await asyncio.to_thread(
            _write_text, os.path.join(root, "etc/apt/sources.list"), f"deb {mirror} {suite} main\n"
        )
        tar_path = os.path.join(work, "rootfs.tar")
        say("packing the root filesystem")
        code, log = await _run("tar", "--numeric-owner", "-C", root, "-cf", tar_path, ".")
        if code != 0:
            raise ImageError(f"packing the base root filesystem failed (exit {code})", log[-3000:])
        say(f"importing as {tag}")
        await engine.import_rootfs(tag, tar_path)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)


async def _try_pull(engine: ImageStore, tag: str, suite: str) -> bool:
    try:
        await asyncio.wait_for(engine.pull(registry_base(suite), tag), 60)
        return True
    except Exception:  # noqa: BLE001 - no registry: bootstrap instead
        return False


async def ensure_base(
    engine: ImageStore,
    tag: str = BASE_IMAGE,
    on_line: Callable[[str], None] | None = None,
    *,
    allow_pull: bool | None = None,
    sources: Sequence[ImageStore] = (),
    suite: str = BASE_SUITE,
) -> None:
    """The base image on ``engine``: present, else copied from one of ``sources`` that
    has it, else pulled from a registry, else bootstrapped from the Debian mirror."""
    async with _lock(tag, engine.url):
        if await engine.image_exists(tag):
            return
        for source in sources:
            if source.url == engine.url:
                continue
            with contextlib.suppress(SandboxkitError):
                if await source.image_exists(tag):
                    failed = (await transfer(tag, source, [engine], on_line)).get(engine.url)
                    if failed is None:
                        return
                    log.warning("sandboxkit: copying %s to %s failed: %s", tag, engine.url, failed)
        if allow_pull is None:
            allow_pull = os.environ.get("SANDBOXKIT_NO_PULL", "") == ""
        report = _Report(BASE, tag, engine.url, on_line)
        how = f"pulling {registry_base(suite)}, else " if allow_pull else ""
        report.start(f"it is missing: {how}bootstrapping it from the Debian mirror")
        if allow_pull and await _try_pull(engine, tag, suite):
            report.done()
            return
        try:
            await bootstrap_base(engine, tag, report.line, suite=suite)
        except ImageError as exc:
            report.failed(str(exc).split("\n", 1)[0])
            raise
        report.done()


async def image_tag(spec: LanguageSpec) -> str:
    """The content-hash tag of ``spec``'s image on this machine (no engine involved)."""
    ctx = await asyncio.to_thread(context_for, spec) if spec.pip_packages else build_context(spec)
    return ctx.tag


async def ensure_image(
    engine: ImageStore,
    spec: LanguageSpec,
    on_line: Callable[[str], None] | None = None,
    *,
    sources: Sequence[ImageStore] = (),
) -> str:
    """The tag of ``spec``'s image, building it (and the base) only when missing.

    Callers asking for the same tag at the same time wait for one build. A failed build
    raises ImageError carrying the tail of the build log. ``sources`` are other engines
    a missing base may be copied from.
    """
    ctx = await asyncio.to_thread(context_for, spec) if spec.pip_packages else build_context(spec)
    async with _lock(ctx.tag, engine.url):
        if await engine.image_exists(ctx.tag):
            return ctx.tag
        await ensure_base(
            engine,
            base_image(spec.suite),
            on_line=on_line,
            sources=sources,
            suite=spec.suite,
        )
        report = _Report(spec.name, ctx.tag, engine.url, on_line)
        report.start(f"first use of {spec.name!r} on this engine")
        started = time.monotonic()
        try:
            await engine.build(
                ctx.tag,
                ctx.dockerfile,
                ctx.files,
                report.line,
                labels={LABEL_MANAGED: "1", LABEL_LANGUAGE: spec.name},
            )
        except ImageError as exc:
            first = str(exc).split("\n", 1)[0]
            report.failed(first)
            raise ImageError(
                f"{first}. The {spec.name!r} spec's packages or setup steps failed to "
                f"install on {engine.url}: fix them (see the build log below) and build "
                "again; an engine with no route to the package mirror can only receive "
                "images from another engine of the fleet",
                exc.log_tail,
            ) from exc
        COSTS.record_build(ctx.tag, time.monotonic() - started)
        report.done()
    return ctx.tag


# --------------------------------------------------------------------------- fleets
TRANSFER_PRIOR = 60e6  # bytes/s of a copy before one is measured (measured here: ~60 MB/s)
_QUEUE_CHUNKS = 8  # chunks buffered per receiving engine: the slowest one paces the copy

Method = Literal["copy", "build"]


@dataclass
class Costs:
    """What bringing images has cost in this process: the basis of build-or-copy."""

    copy_rate: float | None = None  # bytes/s, moving average of the copies measured
    build_seconds: dict[str, float] = field(default_factory=dict)  # tag -> its build here
    copies: int = 0

    def record_copy(self, size: int, seconds: float) -> None:
        if size <= 0 or seconds <= 0:
            return
        rate = size / seconds
        self.copy_rate = rate if self.copy_rate is None else 0.7 * self.copy_rate + 0.3 * rate
        self.copies += 1

    def record_build(self, tag: str, seconds: float) -> None:
        self.build_seconds[tag] = seconds

    def estimate_copy(self, size: int) -> float:
        return size / (self.copy_rate or TRANSFER_PRIOR)


COSTS = Costs()


def choose_method(tag: str, size: int | None, *, have_source: bool, costs: Costs = COSTS) -> Method:
    """Copy or build ``tag`` (``size`` bytes) for an engine that lacks it. Pure.

    No engine has it: build. Otherwise copy, unless this process has built that tag
    faster than a copy of its size is expected to take: a build that was never measured
    here is not expected to win (every built-in language builds slower than it copies,
    docs/scale.md), and an engine without a route to the package mirror cannot build.
    """
    if not have_source:
        return "build"
    built = costs.build_seconds.get(tag)
    if built is None or size is None:
        return "copy"
    return "copy" if costs.estimate_copy(size) <= built else "build"


async def transfer(
    tag: str,
    source: ImageStore,
    targets: Sequence[ImageStore],
    on_line: Callable[[str], None] | None = None,
) -> dict[str, BaseException | None]:
    """Copy ``tag`` from ``source`` to every one of ``targets`` with one export: the
    tarball is streamed (never stored) and fanned out to each engine's load. Returns,
    per target URL, None (the image is there) or what failed; one failing target does
    not stop the others."""
    say = on_line or (lambda _line: None)
    record = await source.inspect_image(tag)
    size = record.size if record else 0
    queues: dict[str, asyncio.Queue[bytes | None]] = {
        t.url: asyncio.Queue(maxsize=_QUEUE_CHUNKS) for t in targets
    }

    async def chunks(url: str) -> AsyncIterator[bytes]:
        queue = queues[url]
        while (chunk := await queue.get()) is not None:
            yield chunk

    for t in targets:
        say(f"{t.url}: copying {tag} from {source.url} ({size / 1e6:.0f} MB)")
    started = time.monotonic()
    loads = {
        t.url: asyncio.get_running_loop().create_task(
            t.load_image(chunks(t.url)), name=f"sandboxkit-load-{t.url}"
        )
        for t in targets
    }

    async def put(url: str, item: bytes | None) -> None:
        load = loads[url]
        if load.done():
            return
        putting = asyncio.ensure_future(queues[url].put(item))
        await asyncio.wait({putting, load}, return_when=asyncio.FIRST_COMPLETED)
        if not putting.done():  # the load ended (failed): nobody reads this queue any more
            putting.cancel()

    outcome: dict[str, BaseException | None] = {}
    try:
        async for chunk in source.save_image(tag):
            if all(load.done() for load in loads.values()):
                break
            for url in queues:
                await put(url, chunk)
        for url in queues:
            await put(url, None)
    except Exception as exc:  # noqa: BLE001 - the export failed: every target failed
        for url, load in loads.items():
            load.cancel()
            outcome[url] = ImageError(f"exporting {tag} from {source.url} failed: {exc}")
    except BaseException:
        # cancelled (a pool closing): the loads would wait for chunks that never come
        for load in loads.values():
            load.cancel()
        raise
    finally:
        results = await asyncio.gather(*loads.values(), return_exceptions=True)
    seconds = time.monotonic() - started
    for (url, _load), result in zip(loads.items(), results, strict=False):
        if url in outcome:
            continue
        if isinstance(result, BaseException):
            outcome[url] = ImageError(f"loading {tag} into {url} failed: {result}")
            continue
        target = next(t for t in targets if t.url == url)
        if not await target.image_exists(tag):
            outcome[url] = ImageError(f"{url} loaded the export of {tag} but has no {tag}")
            continue
        outcome[url] = None
        say(f"{url}: {tag} arrived in {seconds:.1f} s")
    if any(v is None for v in outcome.values()):
        COSTS.record_copy(size, seconds)
    return outcome
