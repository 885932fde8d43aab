"""``sandboxkit serve``: the Judge0-compatible HTTP API and Piston's v2 API (the
``server`` extra, imported only when the command runs, so the rest of the command line
works without it)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

from .._egress.policy import Egress
from .._errors import SandboxkitError
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


def _piston(name: str, what: str, default: int | str) -> Any:
    """An option setting Piston's ``name``, also read from Piston's own variable
    (``PISTON_RUN_TIMEOUT``...): a Piston deployment's environment carries over."""
    return typer.Option(
        None,
        f"--piston-{name.replace('_', '-')}",
        envvar=f"PISTON_{name.upper()}",
        show_default=False,
        help=f"Piston's {name}: {what}  [default: {default}]",
    )


def _overrides(raw: str | None) -> dict[str, Any] | None:
    """PISTON_LIMIT_OVERRIDES: a JSON object of languages to limits."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise typer.BadParameter(f"--piston-limit-overrides is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise typer.BadParameter("--piston-limit-overrides must be a JSON object")
    return value


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
    exact: bool = typer.Option(
        False,
        "--exact",
        help="run interpreted programs by their real command (python3 script.py), not "
        "the pre-loaded runtime: a fresh sys.modules and hash seed, some ms slower",
    ),
    allow_network: AllowNetworkOpt = False,
    network_allow: NetworkAllowOpt = None,
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
    piston: bool = typer.Option(
        True, "--piston/--no-piston", help="serve Piston's v2 API at /api/v2 as well"
    ),
    piston_run_timeout: int | None = _piston("run_timeout", "run stage wall time, ms", 3000),
    piston_compile_timeout: int | None = _piston(
        "compile_timeout", "compile stage wall time, ms (checked, see docs/piston.md)", 10000
    ),
    piston_run_cpu_time: int | None = _piston("run_cpu_time", "run stage CPU time, ms", 3000),
    piston_compile_cpu_time: int | None = _piston(
        "compile_cpu_time", "compile stage CPU time, ms (checked)", 10000
    ),
    piston_run_memory_limit: int | None = _piston(
        "run_memory_limit", "run stage memory, bytes; -1: --piston-no-limit-memory-mb", -1
    ),
    piston_compile_memory_limit: int | None = _piston(
        "compile_memory_limit", "compile stage memory, bytes (checked)", -1
    ),
    piston_output_max_size: int | None = _piston(
        "output_max_size", "bytes of stdout and of stderr kept; more ends the stage", 1024
    ),
    piston_max_process_count: int | None = _piston(
        "max_process_count", "processes and threads of a stage", 64
    ),
    piston_max_open_files: int | None = _piston("max_open_files", "open files of a stage", 2048),
    piston_max_file_size: int | None = _piston(
        "max_file_size", "largest file a stage writes, bytes", 10_000_000
    ),
    piston_max_concurrent_jobs: int | None = _piston(
        "max_concurrent_jobs", "jobs run at once; others wait", 64
    ),
    piston_limit_overrides: str | None = _piston(
        "limit_overrides", 'per language, as JSON: {"c++": {"run_timeout": 5000}}', "{}"
    ),
    piston_no_limit_memory_mb: int | None = typer.Option(
        None,
        "--piston-no-limit-memory-mb",
        help="memory of a stage whose limit is -1 (Piston's no limit)  [default: 512]",
    ),
    piston_rate_limit: int = typer.Option(
        0,
        "--piston-rate-limit",
        min=0,
        help="one execute per client address per this many ms, more answered 429 "
        "(Piston's public instance: 200); 0: off",
    ),
    piston_manage_packages: bool = typer.Option(
        False,
        "--piston-manage-packages",
        help="POST/DELETE /api/v2/packages build and remove language images",
    ),
) -> None:
    """Serve an HTTP API compatible with Judge0 CE 1.13.1, and Piston's v2 API at /api/v2."""
    with needs_extra("server", "sandboxkit serve"):
        import uvicorn  # noqa: F401  # imported by run_server; checked here, before binding

        from ..piston import PistonSettings
        from ..server import Settings
        from ..server import serve as run_server
    from ..server._store import is_postgres_url

    if not db:
        db = str(default_db())
    require_postgres_driver(db, "sandboxkit serve")
    if not is_postgres_url(db):
        typer.echo(f"sandboxkit serve: submissions are kept in {Path(db).resolve()}", err=True)

    piston_settings = None
    if piston:
        given = {
            "run_timeout": piston_run_timeout,
            "compile_timeout": piston_compile_timeout,
            "run_cpu_time": piston_run_cpu_time,
            "compile_cpu_time": piston_compile_cpu_time,
            "run_memory_limit": piston_run_memory_limit,
            "compile_memory_limit": piston_compile_memory_limit,
            "output_max_size": piston_output_max_size,
            "max_process_count": piston_max_process_count,
            "max_open_files": piston_max_open_files,
            "max_file_size": piston_max_file_size,
            "max_concurrent_jobs": piston_max_concurrent_jobs,
            "limit_overrides": _overrides(piston_limit_overrides),
            "no_limit_memory_mb": piston_no_limit_memory_mb,
        }
        try:
            piston_settings = PistonSettings(
                **{k: v for k, v in given.items() if v is not None},
                rate_limit_ms=piston_rate_limit,
                manage_packages=piston_manage_packages,
                warm_languages=tuple(warm),
                pool_size=pool_size,
            )
        except ValueError as exc:  # pydantic's, naming the setting
            raise typer.BadParameter(str(exc)) from None

    settings = Settings(
        db=db,
        auth_token=auth_token or None,
        workers=workers,
        warm_languages=tuple(warm),
        pool_size=pool_size,
        exact=exact,
        authz_token=authz_token or None,
        allow_network=allow_network,
        network=Egress(allow=network_allow) if network_allow else None,
        enable_submission_delete=enable_submission_delete,
        cors_origins=tuple(cors_origin),
        max_queue_size=max_queue_size,
        max_in_flight_per_user=max_in_flight_per_user,
        lease_seconds=lease_seconds,
        piston=piston_settings,
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
