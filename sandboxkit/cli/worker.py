"""``sandboxkit worker``: judge submissions of a PostgreSQL-backed ``sandboxkit serve``
fleet on the engines given (the ``server`` and ``postgres`` extras, imported when the
command runs)."""

from __future__ import annotations

import asyncio

import typer

from .._egress.policy import Egress
from .._errors import InvalidInput, SandboxkitError
from ._common import (
    AllowNetworkOpt,
    LogFormatChoice,
    LogFormatOpt,
    NetworkAllowOpt,
    console,
    log_format_of,
    needs_extra,
    require_postgres_driver,
)
from .fleet import EngineOpt, FleetOpt, TlsOpt, engines_from


def worker(
    db: str = typer.Option(
        ...,
        "--db",
        envvar="SANDBOXKIT_DB",
        help="the fleet's store: postgresql://USER@HOST:PORT/DB",
    ),
    engine: EngineOpt = None,
    fleet: FleetOpt = None,
    tls_dir: TlsOpt = None,
    concurrency: int = typer.Option(
        2,
        "--concurrency",
        min=1,
        max=256,
        help="submissions judged at once (at most the pool's capacity)",
    ),
    lease_seconds: float = typer.Option(
        10.0, "--lease-seconds", min=1.0, help="hold on a submission between renewals"
    ),
    name: str | None = typer.Option(None, "--name", help="this worker's name (default host:pid)"),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", help="serve /metrics on 127.0.0.1:PORT"
    ),
    warm: list[str] = typer.Option(["python"], "--warm", help="languages kept warm"),
    pool_size: int = typer.Option(
        1, "--pool-size", min=0, max=64, help="warm sandboxes per language"
    ),
    exact: bool = typer.Option(
        False, "--exact", help="interpreted programs by their real command (as `serve --exact`)"
    ),
    grace: float = typer.Option(
        60.0, "--grace", min=0.0, help="seconds to finish held submissions on SIGTERM"
    ),
    allow_network: AllowNetworkOpt = False,
    network_allow: NetworkAllowOpt = None,
    log_level: str = typer.Option("info", "--log-level"),
    log_format: LogFormatOpt = LogFormatChoice.text,
) -> None:
    """Judge submissions from a fleet's PostgreSQL store until SIGTERM.

    Without --allow-network, enable_network submissions run with no network."""
    with needs_extra("server", "sandboxkit worker"):
        from ..server import configure_logging, run_worker
    require_postgres_driver(db, "sandboxkit worker")
    explicit = engine or fleet is not None
    configs = engines_from(engine, fleet, tls_dir) if explicit else None
    configure_logging(log_format_of(log_format), log_level)
    try:
        network = Egress(allow=network_allow) if network_allow else None
    except InvalidInput as exc:
        raise typer.BadParameter(str(exc), param_hint="--network-allow") from None
    if network is not None and not allow_network:
        raise typer.BadParameter("needs --allow-network", param_hint="--network-allow")
    try:
        asyncio.run(
            run_worker(
                db,
                engines=configs,
                concurrency=concurrency,
                lease_seconds=lease_seconds,
                name=name,
                metrics_port=metrics_port,
                warm_languages=tuple(warm),
                pool_size=pool_size,
                exact=exact,
                grace=grace,
                allow_network=allow_network,
                network=network,
            )
        )
    except SandboxkitError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)


__all__ = ["register"]
