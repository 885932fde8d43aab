"""Make sure an image exists: the base (pulled, or bootstrapped offline) and per-language
images built from their generated Dockerfiles. Each tag is built once per process, even
when many callers ask at the same time."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable

from ._backends import Backend
from ._dockerfile import BASE_IMAGE, BuildContext, build_context
from ._errors import ImageError
from ._labels import LABEL_LANGUAGE, LABEL_MANAGED
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
    engine: Backend, tag: str = BASE_IMAGE, on_line: Callable[[str], None] | None = None
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
        raise ImageError(
            "bootstrapping the base image needs root: `sudo sandboxkit images bootstrap`"
        )
    work = tempfile.mkdtemp(prefix="sandboxkit-rootfs-")
    try:
        root = os.path.join(work, "rootfs")
        say(f"debootstrap --variant=minbase {SUITE} from {mirror}")
        code, log = await _run("debootstrap", "--variant=minbase", SUITE, root, mirror)
        if code != 0:
            raise ImageError(f"debootstrap failed (exit {code})", log[-3000:])
        # the image has no apt sources of its own beyond the mirror it came from
        await asyncio.to_thread(
            _write_text, os.path.join(root, "etc/apt/sources.list"), f"deb {mirror} {SUITE} main\n"
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


async def _try_pull(engine: Backend, tag: str) -> bool:
    try:
        await asyncio.wait_for(engine.pull(REGISTRY_BASE, tag), 60)
        return True
    except Exception:  # noqa: BLE001 - no registry: bootstrap instead
        return False


async def ensure_base(
    engine: Backend,
    tag: str = BASE_IMAGE,
    on_line: Callable[[str], None] | None = None,
    *,
    allow_pull: bool | None = None,
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
    engine: Backend, spec: LanguageSpec, on_line: Callable[[str], None] | None = None
) -> str:
    """The tag of ``spec``'s image, building it (and the base) only when missing.

    Callers asking for the same tag at the same time wait for one build. A failed build
    raises ImageError carrying the tail of the build log.
    """
    ctx = await asyncio.to_thread(context_for, spec) if spec.pip_packages else build_context(spec)
    async with _lock(ctx.tag):
        if await engine.image_exists(ctx.tag):
            return ctx.tag
        await ensure_base(engine, on_line=on_line)
        try:
            await engine.build(
                ctx.tag,
                ctx.dockerfile,
                ctx.files,
                on_line,
                labels={LABEL_MANAGED: "1", LABEL_LANGUAGE: spec.name},
            )
        except ImageError as exc:
            first = str(exc).split("\n", 1)[0]
            raise ImageError(
                f"{first}. The {spec.name!r} spec's packages or setup steps failed to "
                "install: fix them (see the build log below) and build again",
                exc.log_tail,
            ) from exc
    return ctx.tag
