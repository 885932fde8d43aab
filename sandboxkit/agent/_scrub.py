"""Making a used sandbox as new for the next run (a pool's reuse mode).

Every process but the agent is killed and reaped; every writable place (the tmpfs
mounts: the workdir, the agent's own dir, ``/tmp``, ``/dev/shm``, a home; POSIX message
queues) is emptied and given back its first mode; the IPC namespace's System V objects
are removed; the agent's own limits, niceness and CPU affinity, which a program of the
same uid may change, are put back. What cannot be put back (a hard limit lowered, a
niceness raised: an unprivileged process cannot undo either) makes the sandbox unclean:
the host then destroys it instead of serving another run with it.
"""

from __future__ import annotations

import os
import resource
import shutil
import stat

from ._procs import kill_and_reap, others

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# writable file systems a program can leave something in; /dev itself (a tmpfs only root
# may write) and the masks under /proc and /sys are not the program's
_WRITABLE_TYPES = ("tmpfs", "mqueue")
_NOT_THE_PROGRAMS = ("/dev", "/proc", "/sys")
_LIMITS = tuple(
    getattr(resource, name) for name in sorted(dir(resource)) if name.startswith("RLIMIT_")
)
# System V IPC: (the /proc/sysvipc table, the libc call removing one, its id column)
_IPC_TABLES = (("shm", "shmctl"), ("sem", "semctl"), ("msg", "msgctl"))
_IPC_RMID = 0


def writable_places(mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Mount points of the writable tmpfs and mqueue mounts the program could write."""
    places: list[str] = []
    with open(mountinfo) as f:
        for line in f:
            fields, _, rest = line.partition(" - ")
            parts, fstype = fields.split(), rest.split()[0] if rest else ""
            point, options = parts[4].replace("\\040", " "), parts[5].split(",")
            if fstype not in _WRITABLE_TYPES or "rw" not in options:
                continue
            if point in _NOT_THE_PROGRAMS or point.startswith(("/proc/", "/sys/")):
                continue
            places.append(point)
    return places


class Baseline:
    """What the agent was like before any program ran: put back by :func:`scrub`."""

    def __init__(self) -> None:
        self.limits = {r: resource.getrlimit(r) for r in _LIMITS}
        self.nice = os.getpriority(os.PRIO_PROCESS, 0)
        self.affinity = os.sched_getaffinity(0)
        self.modes: dict[str, int] = {}
        for place in writable_places():
            try:
                self.modes[place] = stat.S_IMODE(os.lstat(place).st_mode)
            except OSError:
                pass


def _empty(place: str) -> list[str]:
    """Remove everything under ``place`` (never following a link); what stayed."""
    try:
        if os.lstat(place).st_uid == os.geteuid():
            os.chmod(place, 0o700)  # a program may have taken its own rwx away
        names = os.listdir(place)
    except FileNotFoundError:
        return []
    except OSError as exc:
        return [f"{place}: {exc.strerror}"]
    left: list[str] = []
    for name in names:
        path = os.path.join(place, name)
        try:
            if stat.S_ISDIR(os.lstat(path).st_mode):
                _open_up(path)
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except OSError as exc:
            left.append(f"{path}: {exc.strerror}")
    return left


def _open_up(top: str) -> None:
    """Give every directory under ``top`` its owner's rwx back (a program's chmod 000
    would stop the removal); links are not followed."""
    os.chmod(top, 0o700)
    for root, dirs, _files in os.walk(top, followlinks=False):
        for d in dirs:
            path = os.path.join(root, d)
            if not os.path.islink(path):
                try:
                    os.chmod(path, 0o700)
                except OSError:
                    pass


def _remove_ipc() -> list[str]:
    """Remove the System V shared memory, semaphores and message queues (the sandbox's
    IPC namespace is its own: every one of them is the program's)."""
    tables = {}
    for table, call in _IPC_TABLES:
        try:
            with open(f"/proc/sysvipc/{table}") as f:
                ids = [int(line.split()[1]) for line in f.readlines()[1:] if line.strip()]
        except (OSError, ValueError, IndexError):
            continue
        if ids:
            tables[call] = ids
    if not tables:
        return []
    import ctypes  # only when there is something to remove: it costs ~5 ms to import

    libc = ctypes.CDLL(None, use_errno=True)
    left: list[str] = []
    for call, ids in tables.items():
        for ipc_id in ids:
            args = (ipc_id, 0, _IPC_RMID) if call == "semctl" else (ipc_id, _IPC_RMID, None)
            if getattr(libc, call)(*args) != 0:
                left.append(f"{call} {ipc_id}: errno {ctypes.get_errno()}")
    return left


def _restore(baseline: Baseline) -> list[str]:
    """Put the agent's own limits, niceness and affinity back; what could not be."""
    wrong: list[str] = []
    for r, (soft, hard) in baseline.limits.items():
        now = resource.getrlimit(r)
        if now == (soft, hard):
            continue
        try:
            resource.setrlimit(r, (soft, hard))
        except (OSError, ValueError):
            wrong.append(f"rlimit {r} is {now}, was {(soft, hard)}")
    if os.getpriority(os.PRIO_PROCESS, 0) != baseline.nice:
        wrong.append("the agent's niceness was raised")
    if os.sched_getaffinity(0) != baseline.affinity:
        try:
            os.sched_setaffinity(0, baseline.affinity)
        except OSError:
            wrong.append("the agent's CPU affinity was changed")
    return wrong


def scrub(baseline: Baseline) -> dict[str, Any]:
    """Everything a run left, gone; ``clean`` false (with ``left``) when something stays."""
    kill_and_reap()
    left = [f"process {pid}" for pid in others(everything=True)]
    for place in writable_places():
        left += _empty(place)
        mode = baseline.modes.get(place)
        if mode is None:
            left.append(f"{place}: a writable mount that was not there at start")
            continue
        try:
            if stat.S_IMODE(os.lstat(place).st_mode) != mode:
                os.chmod(place, mode)
        except OSError as exc:
            left.append(f"{place}: {exc.strerror}")
    left += _remove_ipc()
    left += _restore(baseline)
    return {"ok": True, "clean": not left, "leftovers": left[:20]}
