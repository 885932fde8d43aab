"""``sandboxkit serve``: the Judge0-compatible HTTP API (the ``server`` extra, imported
only when the command runs, so the rest of the command line works without it)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from .._errors import SandboxkitError
from ._common import (
    LogFormatChoice,
    LogFormatOpt,
    console,
    log_format_of,
    needs_extra,
    require_postgres_driver,
)

DB_NAME = "judge0.sqlite3"


def data_dir() -> Path:
    """sandboxkit's directory for a user's data: ``$XDG_DATA_HOME/sandboxkit``, else
    ``~/.local/share/sandboxkit`` (an XDG_DATA_HOME that is not absolute is ignored, as
    the XDG spec says)."""
    base = os.environ.get("XDG_DATA_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".local" / "share"
    return root / "sandboxkit"


def default_db() -> Path:
    """Where ``serve`` keeps its submissions when no ``--db`` is given (the directory
    made, private to the user): never the current directory."""
    folder = data_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder / DB_NAME


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (loopback by default)"),
    port: int = typer.Option(2358, "--port", help="TCP port (Judge0's is 2358)"),
    auth_token: str | None = typer.Option(
        None,
        "--auth-token",
        envvar="SANDBOXKIT_AUTH_TOKEN",
        help="require this X-Auth-Token on every request (mandatory beyond loopback)",
    ),
    db: str | None = typer.Option(
        None,
        "--db",
        envvar="SANDBOXKIT_DB",
        show_default=False,
        help="a SQLite file (this process judges), or postgresql://USER@HOST:PORT/DB "
        "shared by API nodes and `sandboxkit worker` processes  [default: "
        f"$XDG_DATA_HOME/sandboxkit/{DB_NAME}, else ~/.local/share/sandboxkit/{DB_NAME}]",
    ),
    workers: int = typer.Option(
        2,
        "--workers",
        min=0,
        max=64,
        help="submissions this process judges at the same time (0: API only, PostgreSQL)",
    ),
    warm: list[str] = typer.Option(
        ["python"], "--warm", help="languages kept warm (others start on demand)"
    ),
    pool_size: int = typer.Option(
        1, "--pool-size", min=0, max=64, help="warm sandboxes per language"
    ),
    authz_token: str | None = typer.Option(
        None,
        "--authz-token",
        envvar="SANDBOXKIT_AUTHZ_TOKEN",
        help="X-Auth-User value allowed to list and delete submissions (unset: nobody)",
    ),
    allow_network: bool = typer.Option(
        False,
        "--allow-network",
        help="honour enable_network: such submissions get a bridge network of their own",
    ),
    enable_submission_delete: bool = typer.Option(
        False, "--enable-submission-delete", help="allow DELETE /submissions/TOKEN"
    ),
    cors_origin: list[str] = typer.Option(
        ["*"], "--cors-origin", help="origins allowed by CORS (Judge0's default: *)"
    ),
    max_queue_size: int = typer.Option(
        100, "--max-queue-size", min=1, help="In Queue submissions past which POST is 503"
    ),
    max_in_flight_per_user: int = typer.Option(
        0,
        "--max-in-flight-per-user",
        min=0,
        help="submissions one X-Auth-User (else address) may have unfinished; past it 429 "
        "(0: no cap)",
    ),
    lease_seconds: float = typer.Option(
        10.0, "--lease-seconds", min=1.0, help="a worker's hold on a submission between renewals"
    ),
    log_level: str = typer.Option("info", "--log-level"),
    log_format: LogFormatOpt = LogFormatChoice.text,
) -> None:
    """Serve an HTTP API compatible with Judge0 CE 1.13.1."""
    with needs_extra("server", "sandboxkit serve"):
        import uvicorn  # noqa: F401  # imported by run_server; checked here, before binding

        from ..server import Settings
        from ..server import serve as run_server
    from ..server._store import is_postgres_url

    if not db:
        db = str(default_db())
    require_postgres_driver(db, "sandboxkit serve")
    if not is_postgres_url(db):
        typer.echo(f"sandboxkit serve: submissions are kept in {Path(db).resolve()}", err=True)

    settings = Settings(
        db=db,
        auth_token=auth_token or None,
        workers=workers,
        warm_languages=tuple(warm),
        pool_size=pool_size,
        authz_token=authz_token or None,
        allow_network=allow_network,
        enable_submission_delete=enable_submission_delete,
        cors_origins=tuple(cors_origin),
        max_queue_size=max_queue_size,
        max_in_flight_per_user=max_in_flight_per_user,
        lease_seconds=lease_seconds,
    )
    try:
        run_server(
            host=host,
            port=port,
            settings=settings,
            log_level=log_level,
            log_format=log_format_of(log_format),
        )
    except SandboxkitError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
