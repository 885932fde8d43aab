"""Host memory held by one idle warm container (cgroup v1 or v2, runc).

Two views: the container's memory cgroup usage (what the kernel charges to it: the
agent, its page cache and tmpfs) and the proportional set size (PSS) of the host
processes that exist for it (the agent, PID 1 inside, and its containerd-shim). PSS
splits shared pages (the shim's binary, the interpreter's libraries) between sharers,
so summing it over containers does not double count.
"""

from __future__ import annotations

import contextlib
import os


def _pss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _cgroup_usage(cid: str, pid: int) -> int | None:
    candidates = [
        f"/sys/fs/cgroup/memory/docker/{cid}/memory.usage_in_bytes",
        f"/sys/fs/cgroup/memory/system.slice/docker-{cid}.scope/memory.usage_in_bytes",
        f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/memory.current",
        f"/sys/fs/cgroup/docker/{cid}/memory.current",
    ]
    with contextlib.suppress(OSError), open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrl, path = line.strip().split(":", 2)
            if ctrl == "memory":
                candidates.insert(0, f"/sys/fs/cgroup/memory{path}/memory.usage_in_bytes")
            elif ctrl == "":
                candidates.append(f"/sys/fs/cgroup{path}/memory.current")
    for path in candidates:
        with contextlib.suppress(OSError, ValueError), open(path) as f:
            return int(f.read())
    return None


def container_memory(cid: str, pid: int) -> dict[str, float | None]:
    """MiB charged to container ``cid``'s cgroup, and PSS of its agent (``pid``, on this
    host) + its shim."""
    agent = _pss_kb(pid) if pid else None
    shim_pid = _ppid(pid) if pid else None
    shim = _pss_kb(shim_pid) if shim_pid and "shim" in _comm(shim_pid) else None
    usage = _cgroup_usage(cid, pid) if pid else None
    return {
        "cgroup_mib": usage / 2**20 if usage is not None else None,
        "agent_pss_mib": agent / 1024 if agent is not None else None,
        "shim_pss_mib": shim / 1024 if shim is not None else None,
    }


def visible() -> bool:
    """Whether this process sees the engine's processes (same host, same PID namespace)."""
    return os.path.exists("/proc/1/smaps_rollup")
