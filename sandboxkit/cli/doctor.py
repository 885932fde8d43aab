"""``sandboxkit doctor``: is everything a run needs here, and what to do if not.

With several engines (``--engine``, ``--fleet``, ``SANDBOXKIT_FLEET``) every engine is
checked: reachable (and its TLS accepted), API version, runtimes, cgroups (on this host's
engine: the memory cgroups its kernel keeps after their removal), the base and language
images."""

from __future__ import annotations

import shutil
from typing import Any

import anyio
import typer
from rich.markup import escape
from rich.table import Table

from .._backends import Backend, EngineConfig
from .._backends.advice import PERMISSION, how_to_get_gvisor, how_to_reach, how_to_start
from .._backends.cgroups import HOW_TO_RELEASE, MANY_DYING, dying_memory_cgroups
from .._backends.config import scheme_of
from .._errors import EngineUnavailable, InvalidInput, SandboxkitError
from .._images.dockerfile import BASE_IMAGE, build_context
from .._images.ensure import debian_mirror
from .._languages import REGISTRY, get_language
from ._common import console, run_async
from .fleet import EngineOpt, FleetOpt, TlsOpt, each_engine, engines_from

Row = tuple[str, str, str]


def _unreachable(config: EngineConfig, exc: SandboxkitError) -> Row:
    """The engine row of an engine that did not answer: what failed, and once (not in the
    error's text as well) what to do, without sending the user to `sandboxkit doctor`."""
    if not isinstance(exc, EngineUnavailable):
        return ("engine", f"[red]unreachable[/red] ({escape(str(exc))})", "")
    advice = exc.advice
    if advice and advice != PERMISSION:
        remote = config.url.startswith(("tcp://", "http://", "https://", "ssh://"))
        advice = how_to_reach(doctor=True) if remote else how_to_start(doctor=True)
    return ("engine", f"[red]unreachable[/red] ({escape(exc.problem)})", escape(advice))


async def _check_engine(
    config: EngineConfig, engine: Backend, many: bool
) -> tuple[bool, list[Row]]:
    """The rows of one engine and whether it can run sandboxes."""
    rows: list[Row] = []
    try:
        info = await engine.info()
    except SandboxkitError as exc:
        rows.append(_unreachable(config, exc))
        return False, rows
    tls = " over mutual TLS" if config.tls else ""
    rows.append(("engine", f"{info.product} {info.version} (API {info.api_version}){tls}", ""))
    rows.append(("cgroup", f"v{info.cgroup_version or '?'} ({info.cgroup_driver or '?'})", ""))
    rows.append(("cpus, memory", f"{info.cpus}, {info.memory_bytes / 1024**3:.1f} GiB", ""))
    gvisor = "runsc" in info.runtimes
    rows.append(("runtimes", ", ".join(info.runtimes), "" if gvisor else how_to_get_gvisor()))
    rows.append(
        (
            "user namespaces",
            "on (userns-remap)" if info.user_namespaces else "off",
            ""
            if info.user_namespaces
            else 'optional, a wall more under runc: "userns-remap" in dockerd\'s '
            "daemon.json (docs/security.md)",
        )
    )
    # Sandbox(root=True): uid 0 in a box only where it is not the host's (docs/security.md)
    where = [w for w, ok in (("runc", info.user_namespaces), ("runsc", gvisor)) if ok]
    rows.append(
        (
            "root sessions",
            f"under {' and '.join(where)}" if where else "off",
            "" if where else "Sandbox(root=True) needs gVisor (runsc) or userns-remap",
        )
    )
    if scheme_of(config.url) == "unix":  # the engine's host is this one: its kernel tells
        rows.append(await _dying_cgroups())
    base = await engine.image_exists(BASE_IMAGE)
    fix_base = (
        "a pool copies it from an engine that has it"
        if many
        else "sudo sandboxkit images bootstrap"
    )
    rows.append(
        ("base image", BASE_IMAGE if base else "[yellow]missing[/yellow]", "" if base else fix_base)
    )
    for name in REGISTRY.names():
        tag = build_context(get_language(name)).tag
        present = await engine.image_exists(tag)
        fix = (
            "copied there by a pool that uses it"
            if many
            else f"sandboxkit images build {name} (or first run)"
        )
        rows.append((f"image {name}", tag if present else "not there yet", "" if present else fix))
    return base or many, rows


async def _dying_cgroups() -> Row:
    """The memory cgroups this host's kernel keeps after their containers are gone."""
    dying = await anyio.to_thread.run_sync(dying_memory_cgroups)
    if dying is None:
        return ("dying cgroups", "not told by this host", "")
    if dying < MANY_DYING:
        return ("dying cgroups", str(dying), "")
    return (
        "dying cgroups",
        f"[yellow]{dying}[/yellow] memory cgroups kept after removal",
        f"thousands slow every new container: {HOW_TO_RELEASE}",
    )


def doctor(
    engine: EngineOpt = None,
    fleet: FleetOpt = None,
    tls_dir: TlsOpt = None,
) -> None:
    """Check every engine (reachable, TLS, API, runtimes, cgroups, images) and this
    machine (Debian mirror, debootstrap); say how to fix each problem."""
    try:
        configs = engines_from(engine, fleet, tls_dir)
    except InvalidInput as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    many = len(configs) > 1

    async def go() -> list[Any]:
        return await each_engine(configs, lambda c, e: _check_engine(c, e, many))

    results = run_async(go())
    ok = True
    for config, result in zip(configs, results, strict=True):
        table = Table("check", "state", "what to do", title=config.url if many else None)
        if isinstance(result, SandboxkitError):
            table.add_row(*_unreachable(config, result))
            ok = False
        else:
            fine, rows = result
            ok &= fine
            for row in rows:
                table.add_row(*row)
        console.print(table)
    host = Table("check", "state", "what to do", title="this machine" if many else None)
    mirror = debian_mirror()
    host.add_row(
        "debian mirror",
        mirror or "[yellow]none found[/yellow]",
        "" if mirror else "set SANDBOXKIT_DEBIAN_MIRROR",
    )
    has_debootstrap = shutil.which("debootstrap") is not None
    host.add_row(
        "debootstrap",
        "yes" if has_debootstrap else "no",
        "" if has_debootstrap else "apt-get install debootstrap",
    )
    console.print(host)
    if not ok:
        raise typer.Exit(1)


__all__ = ["doctor"]
