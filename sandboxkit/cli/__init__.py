"""The ``sandboxkit`` command line (typer). Each command group lives in its own module."""

from __future__ import annotations

import typer

from . import doctor, images, run

app = typer.Typer(
    name="sandboxkit",
    help="Run untrusted code in hardened Docker sandboxes.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(images.app, name="images")
app.command("run")(run.run)
app.command("doctor")(doctor.doctor)

for _optional in ("judge", "serve", "reap"):
    try:
        _module = __import__(f"{__name__}.{_optional}", fromlist=["register"])
    except ImportError:
        continue
    _module.register(app)

__all__ = ["app"]
