"""The labels every sandboxkit container and image carries, and who owns a container.

Pure (standard library only, reads ``/proc``): the reaper, the pool and the tests use
these without a connection to any engine.
"""

from __future__ import annotations

import os

LABEL_PREFIX = "org.sandboxkit"
LABEL_MANAGED = f"{LABEL_PREFIX}.managed"
LABEL_OWNER = f"{LABEL_PREFIX}.owner"
LABEL_POOL = f"{LABEL_PREFIX}.pool"
LABEL_VERSION = f"{LABEL_PREFIX}.version"
LABEL_LANGUAGE = f"{LABEL_PREFIX}.language"  # on images: the spec an image was built from


def _start_ticks(pid: int) -> str | None:
    """When ``pid`` started, in clock ticks since boot (``/proc/PID/stat`` field 22)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner_identity() -> str:
    """This process, in a form that survives PID reuse: ``host:pid:start-ticks``."""
    pid = os.getpid()
    return f"{os.uname().nodename}:{pid}:{_start_ticks(pid) or '0'}"


def owner_alive(owner: str) -> bool:
    """Whether the process named by ``owner_identity()`` still runs on this host."""
    try:
        host, pid_s, start = owner.rsplit(":", 2)
        pid = int(pid_s)
    except ValueError:
        return False
    if host != os.uname().nodename:
        return True  # another machine's container: never ours to judge
    return _start_ticks(pid) == start
