"""The local host's memory cgroups as the kernel counts them: how many it keeps after
their removal ("dying" ones).

A removed cgroup stays in the kernel while a page of the page cache is still charged to
it. Thousands of them slow what every new container does (cgroup v1 and Docker 20.10
here measured half the speed after two test runs had left ~1,750); dropping the clean
caches lets them go. sandboxkit's sandboxes leave about none (``_layout.mount_points``);
other containers and builds on the same host can. Under cgroup v2 the kernel counts every
dying cgroup of the hierarchy (they are the same cgroups for every controller).
``sandboxkit doctor`` shows the count where the engine is local, and the benchmarks
print it beside their figures.
"""

from __future__ import annotations

import os
from pathlib import Path

# Where doctor warns: ~430 of them measured nothing beside none (run_all.py, one sitting
# each), ~1,750 had halved this machine's speed
MANY_DYING = 1000
HOW_TO_RELEASE = "sync && echo 1 > /proc/sys/vm/drop_caches (as root) lets them go"


def dying_memory_cgroups(
    root: Path = Path("/sys/fs/cgroup"), table: Path = Path("/proc/cgroups")
) -> int | None:
    """The memory cgroups removed but still kept by the kernel, or None where this host
    does not tell (not Linux, no memory controller, nothing readable)."""
    try:
        if (root / "cgroup.controllers").exists():  # v2: the kernel counts them itself
            for line in (root / "cgroup.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "nr_dying_descendants":
                    return int(value)
            return None
        if not (root / "memory").is_dir():
            return None
        # v1: the kernel's count of the memory hierarchy's cgroups, dying ones included,
        # less the ones still there to see (each a directory, the root's own among them)
        counted = _memory_row(table.read_text())
        if counted is None:
            return None
        alive = sum(1 for _ in os.walk(root / "memory"))
        return max(0, counted - alive)
    except (OSError, ValueError):
        return None


def _memory_row(text: str) -> int | None:
    """``num_cgroups`` of the memory controller in ``/proc/cgroups``."""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[0] == "memory":
            return int(fields[2])
    return None


__all__ = ["HOW_TO_RELEASE", "MANY_DYING", "dying_memory_cgroups"]
