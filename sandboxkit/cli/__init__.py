"""The ``sandboxkit`` command line (typer; the ``cli`` extra). Each command group lives
in its own module. The console script enters through ``sandboxkit._cli_entry``, which
names the extra to install when typer is missing."""

from __future__ import annotations

import typer

from . import doctor, e2b, fleet, images, judge, mcp, reap, run, serve, worker

app = typer.Typer(
    name="sandboxkit",
    help="Run untrusted code in hardened Docker sandboxes.",
    no_args_is_help=True,
    add_completion=False,
    # plain help: rich's panels cut long option names at 80 columns and print a <bool>
    # type beside every flag
    rich_markup_mode=None,
)
app.add_typer(images.app, name="images")
app.command("run")(run.run)
app.command("doctor", short_help="Check the engines and this machine; say what to fix.")(
    doctor.doctor
)
judge.register(app)
serve.register(app)  # the server's packages are imported when `serve` runs
reap.register(app)
mcp.register(app)  # the mcp extra is imported when `mcp` runs
fleet.register(app)
worker.register(app)  # the server and postgres extras are imported when it runs
e2b.register(app)  # the e2b extra is imported when `e2b` runs

__all__ = ["app"]
