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
# a box that can be paused with its memory (Sandbox.pause under gVisor): it has no owner
# label (labels cannot change, and a paused box outlives its maker); its name says who
# holds it now: HELD_PREFIX + token + the holder's tag while one runs it, PAUSED_PREFIX +
# the snapshot id while it is paused (kept until the snapshot is deleted)
LABEL_PAUSABLE = f"{LABEL_PREFIX}.pausable"
HELD_PREFIX = "sandboxkit-held-"
PAUSED_PREFIX = "sandboxkit-paused-"


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


def _host_hash(host: str) -> str:
    import zlib

    return f"{zlib.crc32(host.encode()):08x}"


def held_name(token: str) -> str:
    """The name of a pausable box run by this process: ``token``, then who holds it."""
    host, pid, start = owner_identity().rsplit(":", 2)
    return f"{HELD_PREFIX}{token}-{pid}-{start}-{_host_hash(host)}"


def held_orphaned(name: str) -> bool:
    """Whether a pausable box's holder (in its ``held_name``) is gone from this host; a
    paused one (or another host's) is never orphaned."""
    if not name.startswith(HELD_PREFIX):
        return False
    fields = name[len(HELD_PREFIX) :].rsplit("-", 3)
    if len(fields) != 4:
        return False
    host = os.uname().nodename
    _token, pid, start, tag = fields
    if tag != _host_hash(host):
        return False
    return not owner_alive(f"{host}:{pid}:{start}")
