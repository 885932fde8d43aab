"""What to tell a user whose engine does not answer, fitted to how sandboxkit was
installed and to this machine.

A source checkout has ``scripts/engine-up.sh`` (installs docker.io, runsc and
debootstrap from the distribution and starts dockerd); a wheel from pip has no
``scripts/``, so its users get the commands themselves. ``sandboxkit doctor`` shows the
same advice without sending the user to ``sandboxkit doctor``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[2]  # the repository root, in a source checkout


def engine_up_script() -> str | None:
    """How to name ``scripts/engine-up.sh`` of the checkout sandboxkit runs from (relative
    when under the current directory), or None for an installed wheel."""
    script = _CHECKOUT / "scripts" / "engine-up.sh"
    if not script.is_file():
        return None
    try:
        rel = os.path.relpath(script)
    except ValueError:  # another drive (Windows)
        return str(script)
    return str(script) if rel.startswith("..") else rel


def how_to_start(*, doctor: bool = False) -> str:
    """What to do when no local engine answers: the checkout's script, else the commands
    that install or start dockerd here; then DOCKER_HOST. ``doctor``: the advice is shown
    by ``sandboxkit doctor`` itself, which does not point to itself."""
    script = engine_up_script()
    if script is not None:
        first = (
            f"Start one with `sudo bash {script}` (installs docker.io from your "
            "distribution and starts dockerd)"
        )
    elif shutil.which("dockerd") is None:
        first = (
            "Install and start one: `sudo apt-get install docker.io && sudo systemctl "
            "start docker` on Debian/Ubuntu (elsewhere: Docker Engine from your "
            "distribution's packages)"
        )
    else:
        first = (
            "dockerd is installed: start it with `sudo systemctl start docker` "
            "(without systemd: `sudo dockerd &`)"
        )
    host = os.environ.get("DOCKER_HOST")
    then = (
        f"or check DOCKER_HOST (set to {host})"
        if host
        else "or point DOCKER_HOST at a running engine"
    )
    text = f"{first}, {then}."
    if not doctor:
        text += " `sandboxkit doctor` checks the engine, its runtimes and the images."
    return text


def how_to_reach(*, doctor: bool = False) -> str:
    """What to do when a remote engine does not answer."""
    text = (
        "Check that dockerd runs on that host and listens on that address (for TLS: dockerd "
        "-H tcp://0.0.0.0:2376 --tlsverify --tlscacert ca.pem --tlscert server-cert.pem "
        "--tlskey server-key.pem) and that this machine can reach it"
    )
    return text + ("." if doctor else "; `sandboxkit doctor --engine URL` checks it.")


PERMISSION = (
    "This user may not use the engine's socket: run as root, or add the user to the "
    "`docker` group (`sudo usermod -aG docker $USER`, then log in again)."
)


def how_to_get_gvisor() -> str:
    """Where runsc (gVisor) comes from, for ``doctor``'s optional row."""
    script = engine_up_script()
    if script is not None:
        return f"optional (gVisor): `sudo bash {script}` installs and registers runsc"
    return (
        "optional (gVisor): `sudo apt-get install runsc`, add it to /etc/docker/daemon.json "
        '("runtimes": {"runsc": {"path": "/usr/bin/runsc"}}) and restart dockerd'
    )
