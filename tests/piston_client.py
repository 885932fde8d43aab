"""Piston's official Node client (``piston-client`` from npm, unmodified): installed into
the project's ignored cache (``.cache/piston-client``) on first use, and run through
``tests/piston/client.mjs`` against a server. ``scripts/setup.sh`` runs this module to
install it ahead; the tests install it themselves when it is missing."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLIENT_DIR = ROOT / ".cache" / "piston-client"
DRIVER = ROOT / "tests" / "piston" / "client.mjs"
VERSION = "1.0.2"  # the only release of piston-client


def ensure_client() -> Path:
    """The directory holding piston-client's node_modules, installed with npm if missing."""
    if (CLIENT_DIR / "node_modules" / "piston-client" / "index.js").exists():
        return CLIENT_DIR
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is missing: scripts/setup.sh installs Node.js and npm")
    subprocess.run(
        [
            npm,
            "install",
            "--prefix",
            str(CLIENT_DIR),
            "--no-save",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            f"piston-client@{VERSION}",
        ],
        check=True,
        timeout=600,
    )
    return CLIENT_DIR


def run_client(server: str, cases: list[dict[str, Any]], timeout: float = 600) -> dict[str, Any]:
    """Run ``cases`` (language, code, config) through piston-client against ``server``."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is missing: scripts/setup.sh installs Node.js and npm")
    done = subprocess.run(
        [node, str(DRIVER), str(ensure_client()), server],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the piston-client driver failed: {done.stderr[-3000:]}")
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


if __name__ == "__main__":
    print(ensure_client())
