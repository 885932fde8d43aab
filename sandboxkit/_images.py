"""Make sure an image exists: the base (pulled, or bootstrapped offline) and per-language
images built from their generated Dockerfiles. Each tag is built once per process, even
when many callers ask at the same time."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import tempfile
from collections.abc import Callable

from ._dockerfile import BASE_IMAGE, build_context
from ._engine import LABEL_MANAGED, Engine
from ._errors import EngineError, ImageError
from ._languages import LanguageSpec

SUITE = "bookworm"
REGISTRY_BASE = "debian:bookworm-slim"

_locks: dict[tuple[int, str], asyncio.Lock] = {}


def _lock(tag: str) -> asyncio.Lock:
    key = (id(asyncio.get_running_loop()), tag)
    lock = _locks.get(key)
    if lock is None:
        lock = _locks[key] = asyncio.Lock()
    return lock


def debian_mirror(sources_dir: str = "/etc/apt") -> str | None:
    """The Debian mirror this machine's apt uses for ``bookworm`` (never hard-coded).

    ``SANDBOXKIT_DEBIAN_MIRROR`` overrides it.
    """
    override = os.environ.get("SANDBOXKIT_DEBIAN_MIRROR")
    if override:
        return override
    candidates: list[tuple[str, list[str]]] = []
    one_line = [f"{sources_dir}/sources.list", *sorted(glob.glob(f"{sources_dir}/sources.list.d/*.list"))]
    for path in one_line:
        try:
            text = open(path).read()
        except OSError:
            continue
        for line in text.splitlines():
            parts = line.split("#", 1)[0].split()
            if len(parts) >= 3 and parts[0] == "deb":
                rest = [p for p in parts[1:] if not p.startswith("[")]
                if len(rest) >= 2:
                    candidates.append((rest[0], [rest[1]]))
    for path in sorted(glob.glob(f"{sources_dir}/sources.list.d/*.sources")):
        try:
            text = open(path).read()
        except OSError:
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


async def _run(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


async def bootstrap_base(
    engine: Engine, tag: str = BASE_IMAGE, on_line: Callable[[str], None] | None = None
) -> None:
    """Build the base image from the host's Debian mirror: debootstrap minbase + import."""
    say = on_line or (lambda _line: None)
    mirror = debian_mirror()
    if mirror is None:
        raise ImageError(
            f"no Debian '{SUITE}' mirror found in /etc/apt sources; set "
            "SANDBOXKIT_DEBIAN_MIRROR to a Debian mirror URL and run "
            "`sandboxkit images bootstrap` again"
        )
    if shutil.which("debootstrap") is None:
        raise ImageError(
            "debootstrap is not installed: `sudo apt-get install debootstrap` "
            "(or `sudo bash scripts/engine-up.sh`), then `sandboxkit images bootstrap`"
        )
    if os.geteuid() != 0:
        raise ImageError("bootstrapping the base image needs root: `sudo sandboxkit images bootstrap`")
    work = tempfile.mkdtemp(prefix="sandboxkit-rootfs-")
    try:
        root = os.path.join(work, "rootfs")
        say(f"debootstrap --variant=minbase {SUITE} from {mirror}")
        code, log = await _run("debootstrap", "--variant=minbase", SUITE, root, mirror)
        if code != 0:
            raise ImageError(f"debootstrap failed (exit {code})", log[-3000:])
        # the image has no apt sources of its own beyond the mirror it came from
        with open(os.path.join(root, "etc/apt/sources.list"), "w") as f:
            f.write(f"deb {mirror} {SUITE} main\n")
        tar_path = os.path.join(work, "rootfs.tar")
        say("packing the root filesystem")
        code, log = await _run("tar", "--numeric-owner", "-C", root, "-cf", tar_path, ".")
        if code != 0:
            raise ImageError(f"packing the base root filesystem failed (exit {code})", log[-3000:])
        say(f"importing as {tag}")
        await engine.import_rootfs(tag, tar_path)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)


async def _try_pull(engine: Engine, tag: str) -> bool:
    try:
        await asyncio.wait_for(engine.docker.images.pull(REGISTRY_BASE), 60)
        await engine.docker.images.tag(REGISTRY_BASE, tag.rpartition(":")[0], tag=tag.rpartition(":")[2])
        return True
    except Exception:  # noqa: BLE001 - no registry: bootstrap instead
        return False


async def ensure_base(
    engine: Engine, tag: str = BASE_IMAGE, on_line: Callable[[str], None] | None = None,
    *, allow_pull: bool | None = None,
) -> None:
    async with _lock(tag):
        if await engine.image_exists(tag):
            return
        if allow_pull is None:
            allow_pull = os.environ.get("SANDBOXKIT_NO_PULL", "") == ""
        if allow_pull and await _try_pull(engine, tag):
            return
        await bootstrap_base(engine, tag, on_line)


async def ensure_image(
    engine: Engine, spec: LanguageSpec, on_line: Callable[[str], None] | None = None
) -> str:
    """The tag of ``spec``'s image, building it (and the base) only when missing."""
    ctx = build_context(spec)
    async with _lock(ctx.tag):
        if await engine.image_exists(ctx.tag):
            return ctx.tag
        await ensure_base(engine, on_line=on_line)
        try:
            await engine.build(
                ctx.tag, ctx.dockerfile, ctx.files, on_line,
                labels={LABEL_MANAGED: "1", "org.sandboxkit.language": spec.name},
            )
        except EngineError:
            raise
    return ctx.tag
