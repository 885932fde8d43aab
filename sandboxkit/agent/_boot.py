"""The agent's start: out of the program's uid, the launcher or the zygote, the channel
to the host, then the serve loop (``_serve``).

The zygote (``_zygote``) is forked before the rest of the agent is imported: it holds
only what a spare needs to become a Python program, so each spare it clones has that
much less to copy at its fork, to fault in as it runs and to tear down at its exit.
"""

from __future__ import annotations

import _signal as signal  # type: ignore[import-not-found]  # see _procs
import os
import sys

from .._protocol import CHANNEL_PATH, ENV_RUN_NAMES
from . import _display, _privs
from ._procs import SHIELDED, set_dumpable

WORKDIR = "/work"
PRESTART_FILE = "/opt/sandboxkit/prestart.json"
LAUNCHER_FILE = "/opt/sandboxkit/launch"  # compiled into images with a C compiler (_launch)


def main(argv: list[str] | None = None) -> None:
    """Start the agent. For tests on a host only: ``--workdir DIR`` replaces ``/work``,
    ``--channel PATH`` the mounted socket's path."""
    args = sys.argv[1:] if argv is None else argv
    options = dict(zip(args[::2], args[1::2]))
    if len(args) % 2 or not set(options) <= {"--workdir", "--channel"}:
        sys.exit("usage: agent [--workdir DIR] [--channel PATH]")
    workdir = options.get("--workdir", WORKDIR)
    if "--workdir" in options:
        # a host test's agent: its display files beside the test's own directory
        _display.DIR = workdir.rstrip("/") + ".display"
    if os.getpid() != 1:
        # kill(-1) from anywhere but PID 1 of a PID namespace would hit the whole machine
        sys.exit("sandboxkit agent: refusing to run outside a container (must be PID 1)")
    # first of all: out of the program's uid, keeping only what supervising takes
    _privs.take_nproc()
    run_env = _take_run_env()
    launcher = None
    if os.access(LAUNCHER_FILE, os.X_OK):
        from ._launch import Launcher

        launcher = Launcher.start(workdir)  # as uid 0: it separates itself as the agent does
    _privs.separate(workdir)
    set_dumpable(False)  # a second wall behind the uids: user code out of /proc/1
    # A second wall behind the uids (and the only one where the engine granted no
    # capability, see _privs): Linux drops signals PID 1 has no handler for, but Python
    # installs one for SIGINT, and gVisor does not protect an init at all: ignore every
    # signal that can be ignored (runs get the defaults back).
    for sig in SHIELDED:
        try:
            signal.signal(sig, signal.SIG_IGN)
        except (OSError, ValueError):
            pass
    zygote = None
    if launcher is None:  # where the launcher starts the programs, no spare is made
        from ._zygote import Zygote

        zygote = Zygote.start(workdir, run_env)
    from . import _files, _host, _inline
    from ._serve import Agent

    if "--workdir" in options:  # absolute paths stay inside the test's own directory
        _files.FS_ROOT = os.path.dirname(os.path.abspath(workdir.rstrip("/")))
    # before anything else is forked: no other process may ever hold the channel
    _host.open_channel(options.get("--channel", CHANNEL_PATH))
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError:
        pass
    prestart = None
    if os.path.exists(PRESTART_FILE):
        from ._prestart import launch  # images with a pre-started runtime only

        prestart = launch
    _inline.warm_compiler()
    _inline.forget_agent()  # every module is loaded: from here on, programs must not see them
    Agent(workdir, run_env, launcher, zygote).serve(prestart)


def _take_run_env() -> dict[str, str] | None:
    """The language's environment (:data:`ENV_RUN_NAMES`), the variable taken out."""
    names = os.environ.pop(ENV_RUN_NAMES, None)
    if names is None:
        return None
    return {n: os.environ[n] for n in names.split(",") if n in os.environ}
