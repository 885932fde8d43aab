"""The ``sandboxkit`` console script. It works on the core install too: when an extra's
package is missing it names the extra to install and exits 1, not with a traceback.

Standard library only at module level; the typer application is imported inside
``main``. Only the absence of an extra's own packages is turned into the message: any
other ImportError is a bug and propagates.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

#: extra -> top-level packages it installs (and that its code imports)
EXTRAS: dict[str, frozenset[str]] = {
    "cli": frozenset({"typer", "click", "rich"}),
    "server": frozenset(
        {"fastapi", "starlette", "uvicorn", "httpx", "prometheus_client", "pythonjsonlogger"}
    ),
    "postgres": frozenset({"asyncpg"}),
    "mcp": frozenset({"mcp", "mcp_types", "uvicorn", "starlette"}),
    "e2b": frozenset({"e2b", "connectrpc", "protobuf", "fastapi", "starlette", "uvicorn"}),
}


def missing_extra(exc: ImportError, extra: str) -> bool:
    """True when ``exc`` says a package of ``extra`` is not installed."""
    name = getattr(exc, "name", None) or ""
    return isinstance(exc, ModuleNotFoundError) and name.partition(".")[0] in EXTRAS[extra]


def install_hint(extra: str, what: str) -> str:
    return f"{what} needs the {extra!r} extra: pip install 'sandboxkit[{extra}]'"


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line; without the ``cli`` extra, say how to get it (exit 1)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        from .cli import app
    except ImportError as exc:
        if not missing_extra(exc, "cli"):
            raise
        # `serve` needs the server extra, which brings the cli one with it
        extra = "server" if args[:1] == ["serve"] else "cli"
        print(install_hint(extra, "the sandboxkit command"), file=sys.stderr)
        raise SystemExit(1) from None
    app(args=args, prog_name="sandboxkit")
