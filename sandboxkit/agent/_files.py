"""File jobs anywhere in the box: write, read, list, stat, mkdir, rename, remove.

A relative path means the workdir; an absolute one the container's filesystem (under
:data:`FS_ROOT`: ``/`` in a sandbox, a host test's own directory elsewhere). What "no
escape" means here: **no symlink is followed at any component** of the path the caller
names. Every directory on the way is checked with ``lstat`` and opened with
``O_NOFOLLOW`` relative to its parent; a symlink on the way, or as the target of a read
or a write, is refused as ``invalid_path`` (``stat`` and ``list`` report a link as a
``symlink`` entry with its ``target``, so a caller can ask for that path itself). Devices,
FIFOs and sockets are never opened. Everything else is what the sandbox user may do: the
agent runs as that user, so the kernel's answer (``EACCES``, ``EROFS``...) is the answer.

A refusal is a reply ``{"ok": false, "reason": ..., "error": ...}`` with one of
:data:`REASONS` as the reason a program can act on.
"""

from __future__ import annotations

import base64
import errno
import os
import stat

from . import _procs
from ._host import CHUNK, reply, write_all

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Literal

    from .._protocol import FileEntryWire, FileJob, RunJob

MAX_ENTRIES = 10000
OPS = ("write", "read", "list", "stat", "mkdir", "rename", "remove", "usage")
REASONS = (
    "not_found",
    "is_directory",
    "not_directory",
    "permission_denied",
    "exists",
    "too_large",
    "invalid_path",
    "io_error",
)
# where absolute paths lead: the container's root; a host test's agent (--workdir) sets
# its own directory here, so that a test never writes to the machine's /etc
FS_ROOT = "/"

_ERRNO_REASONS = {
    errno.ENOENT: "not_found",
    errno.EISDIR: "is_directory",
    errno.ENOTDIR: "not_directory",
    errno.EACCES: "permission_denied",
    errno.EPERM: "permission_denied",
    errno.EROFS: "permission_denied",
    errno.EBUSY: "permission_denied",  # a mount point
    errno.EEXIST: "exists",
    errno.ENOTEMPTY: "exists",
    errno.EFBIG: "too_large",
    errno.ENOSPC: "too_large",
    errno.EDQUOT: "too_large",
    errno.ELOOP: "invalid_path",
    errno.ENAMETOOLONG: "invalid_path",
    errno.ENXIO: "invalid_path",  # a FIFO with no reader, a device without its driver
    errno.EINVAL: "invalid_path",
}


class Refused(ValueError):
    """A file job refused with a reason from :data:`REASONS` (a ValueError: a bad path,
    as the snapshot unpacking and the older callers take it)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def reason_of(exc: BaseException) -> str:
    if isinstance(exc, Refused):
        return exc.reason
    if isinstance(exc, OSError) and exc.errno is not None:
        return _ERRNO_REASONS.get(exc.errno, "io_error")
    return "invalid_path" if isinstance(exc, ValueError) else "io_error"


# ---------------------------------------------------------------------- paths
def split(workdir: str, path: str) -> tuple[str, list[str]]:
    """``(the directory it starts from, its components)``; ``..`` and NUL refused."""
    if not isinstance(path, str) or not path or "\0" in path:
        raise Refused("invalid_path", f"invalid path {path!r}")
    root = workdir
    if path.startswith("/"):
        root = FS_ROOT
        if FS_ROOT != "/":
            base = FS_ROOT.rstrip("/")
            if path != base and not path.startswith(base + "/"):
                raise Refused("invalid_path", f"{path!r} is outside this agent's root")
            path = path[len(base) :]
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Refused("invalid_path", f"path {path!r} escapes the workdir ('..')")
    return root, parts


def shown(path: str, parts: list[str]) -> str:
    """How a path is reported back: absolute as asked, relative to the workdir if not."""
    if path.startswith("/"):
        return FS_ROOT.rstrip("/") + "/" + "/".join(parts)
    return "/".join(parts)


def _parts(rel: str) -> list[str]:
    """A workdir path's components (a run's own files: relative only)."""
    if not rel or rel.startswith("/"):
        raise Refused("invalid_path", f"invalid path {rel!r}")
    _root, parts = split("/", rel)
    if not parts:
        raise Refused("invalid_path", f"path {rel!r} names the directory itself")
    return parts


def _step(dirfd: int, part: str, create: bool) -> int:
    """The directory ``part`` of ``dirfd`` (made when ``create``), never through a link."""
    if create:
        try:
            os.mkdir(part, 0o755, dir_fd=dirfd)
        except FileExistsError:
            pass
    st = os.lstat(part, dir_fd=dirfd)
    if stat.S_ISLNK(st.st_mode):
        raise Refused("invalid_path", f"{part!r} on the way is a symlink (not followed)")
    if not stat.S_ISDIR(st.st_mode):
        raise Refused("not_directory", f"{part!r} on the way is not a directory")
    # O_PATH: a directory the user may cross but not list (mode 0711) is still crossed
    return os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dirfd)


def parent_fd(root: str, parts: list[str], create: bool = False) -> int:
    """A descriptor of the directory holding ``parts[-1]`` (``root`` itself if none)."""
    dirfd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            nxt = _step(dirfd, part, create)
            os.close(dirfd)
            dirfd = nxt
    except BaseException:
        os.close(dirfd)
        raise
    return dirfd


def _lstat(dirfd: int, name: str) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=dirfd)
    except FileNotFoundError:
        return None


def _refuse_special(st: os.stat_result, what: str) -> None:
    """A link, a directory, a FIFO, a device, a socket: never opened as a file."""
    if stat.S_ISREG(st.st_mode):
        return
    if stat.S_ISDIR(st.st_mode):
        raise Refused("is_directory", f"{what!r} is a directory")
    if stat.S_ISLNK(st.st_mode):
        raise Refused("invalid_path", f"{what!r} is a symlink (not followed)")
    raise Refused("invalid_path", f"{what!r} is not a regular file (a FIFO, device or socket)")


# ---------------------------------------------------------------------- the run's own files
def _open_beneath(root: str, rel: str, flags: int, mode: int = 0o644, replace: bool = False) -> int:
    """Open a workdir path without following any symlink on the way (no escape)."""
    parts = _parts(rel)
    dirfd = parent_fd(root, parts, create=bool(flags & os.O_CREAT))
    try:
        if replace:
            # a run's own files: a symlink, FIFO, device or directory the user's code left
            # where they go is replaced, never followed or opened
            st = _lstat(dirfd, parts[-1])
            if st is not None and stat.S_ISDIR(st.st_mode):
                import shutil

                # fd-based, no symlink followed (dir_fd: Python 3.11, as in every image)
                shutil.rmtree(parts[-1], dir_fd=dirfd)  # type: ignore[call-arg]
            elif st is not None and not stat.S_ISREG(st.st_mode):
                os.unlink(parts[-1], dir_fd=dirfd)
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_NONBLOCK, mode, dir_fd=dirfd)
    finally:
        os.close(dirfd)


def write_file(root: str, rel: str, data: bytes, mode: int = 0o644, replace: bool = False) -> None:
    """A run's file in the workdir (or ``own_dir``): links and FIFOs there are replaced."""
    fd = _open_beneath(root, rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode, replace)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Refused("invalid_path", f"{rel!r} is not a regular file")
        write_all(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- file jobs
def write(workdir: str, path: str, data: bytes, mode: int = 0o644, parents: bool = True) -> None:
    root, parts = split(workdir, path)
    if not parts:
        raise Refused("is_directory", f"{path!r} is a directory")
    dirfd = parent_fd(root, parts, create=parents)
    try:
        st = _lstat(dirfd, parts[-1])
        if st is not None:
            _refuse_special(st, path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK
        fd = os.open(parts[-1], flags, mode, dir_fd=dirfd)
    finally:
        os.close(dirfd)
    try:
        _refuse_special(os.fstat(fd), path)  # swapped since the lstat: refused still
        write_all(fd, data)
        try:
            os.fchmod(fd, mode)
        except PermissionError:  # someone else's file the user may write: its mode stays
            pass
    finally:
        os.close(fd)


def read(workdir: str, path: str, max_bytes: int) -> bytes:
    root, parts = split(workdir, path)
    if not parts:
        raise Refused("is_directory", f"{path!r} is a directory")
    dirfd = parent_fd(root, parts)
    try:
        st = _lstat(dirfd, parts[-1])
        if st is None:
            raise Refused("not_found", f"{path!r} does not exist")
        _refuse_special(st, path)
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dirfd)
    finally:
        os.close(dirfd)
    try:
        st = os.fstat(fd)
        _refuse_special(st, path)
        if st.st_size > max_bytes:
            raise Refused(
                "too_large", f"{path!r} is {st.st_size} bytes, over the {max_bytes}-byte cap"
            )
        chunks = []
        total = 0
        while True:
            chunk = os.read(fd, CHUNK)
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:
                raise Refused("too_large", f"{path!r} grew past the {max_bytes}-byte cap")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _kind(mode: int) -> Literal["file", "dir", "symlink", "other"]:
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "symlink" if stat.S_ISLNK(mode) else "other"


def entry(path: str, st: os.stat_result, dirfd: int, name: str) -> FileEntryWire:
    out: FileEntryWire = {
        "path": path,
        "type": _kind(st.st_mode),
        "size": st.st_size,
        "mode": stat.S_IMODE(st.st_mode),
        "mtime": st.st_mtime,
    }
    if stat.S_ISLNK(st.st_mode):
        try:
            out["target"] = os.readlink(name, dir_fd=dirfd)
        except (OSError, ValueError):
            pass
    return out


def stat_path(workdir: str, path: str) -> FileEntryWire:
    root, parts = split(workdir, path)
    if not parts:
        fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
        try:
            return entry(shown(path, parts) or ".", os.fstat(fd), fd, ".")
        finally:
            os.close(fd)
    dirfd = parent_fd(root, parts)
    try:
        return entry(shown(path, parts), os.lstat(parts[-1], dir_fd=dirfd), dirfd, parts[-1])
    finally:
        os.close(dirfd)


def open_dir(workdir: str, path: str) -> tuple[int, list[str]]:
    """A listable descriptor of the directory ``path`` (never through a link)."""
    root, parts = split(workdir, path)
    if not parts:
        return os.open(root, os.O_RDONLY | os.O_DIRECTORY), parts
    dirfd = parent_fd(root, parts)
    try:
        st = os.lstat(parts[-1], dir_fd=dirfd)
        if stat.S_ISLNK(st.st_mode):
            raise Refused("invalid_path", f"{path!r} is a symlink (not followed)")
        if not stat.S_ISDIR(st.st_mode):
            raise Refused("not_directory", f"{path!r} is not a directory")
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
        return os.open(parts[-1], flags, dir_fd=dirfd), parts
    finally:
        os.close(dirfd)


def list_files(
    root: str, rel: str = ".", max_entries: int = MAX_ENTRIES, depth: int | None = None
) -> list[FileEntryWire]:
    """Every entry under the directory ``rel`` down to ``depth`` levels (None: all),
    symlinks listed, never followed; paths as :func:`shown` reports them."""
    top, parts = open_dir(root, rel or ".")
    prefix = shown(rel or ".", parts)
    prefix = prefix + "/" if prefix and prefix != "/" else prefix
    entries: list[FileEntryWire] = []
    try:
        for here, dirs, files, dirfd in os.fwalk(".", dir_fd=top, follow_symlinks=False):
            level = 0 if here == "." else here.count("/")
            for name in sorted(dirs) + sorted(files):
                try:
                    st = os.lstat(name, dir_fd=dirfd)
                except OSError:
                    continue
                path = prefix + os.path.normpath(os.path.join(here, name))
                entries.append(entry(path, st, dirfd, name))
                if len(entries) >= max_entries:
                    return entries
            if depth is not None and level + 1 >= depth:
                dirs.clear()  # fwalk is top-down: nothing below this level is entered
    finally:
        os.close(top)
    return entries


def make_dir(workdir: str, path: str, parents: bool = True) -> None:
    root, parts = split(workdir, path)
    if not parts:
        if parents:
            return
        raise Refused("exists", f"{path!r} exists")
    dirfd = parent_fd(root, parts, create=parents)
    try:
        try:
            os.mkdir(parts[-1], 0o755, dir_fd=dirfd)
        except FileExistsError:
            st = os.lstat(parts[-1], dir_fd=dirfd)
            if not (parents and stat.S_ISDIR(st.st_mode)):
                raise
    finally:
        os.close(dirfd)


def remove(workdir: str, path: str) -> None:
    """A file, a link (not what it points to) or a whole tree (fd-based, no link followed)."""
    root, parts = split(workdir, path)
    if not parts:
        raise Refused("invalid_path", f"{path!r} is a root; remove what is in it instead")
    dirfd = parent_fd(root, parts)
    try:
        st = os.lstat(parts[-1], dir_fd=dirfd)
        if stat.S_ISDIR(st.st_mode):
            import shutil

            errors: list[BaseException] = []
            shutil.rmtree(  # type: ignore[call-arg]
                parts[-1], dir_fd=dirfd, onerror=lambda *a: errors.append(a[2][1])
            )
            if errors:
                raise errors[0]
        else:
            os.unlink(parts[-1], dir_fd=dirfd)
    finally:
        os.close(dirfd)


def _copy(sfd: int, sname: str, dfd: int, dname: str) -> None:
    """Copy a tree between filesystems (a rename from /tmp to the workdir), links as links."""
    st = os.lstat(sname, dir_fd=sfd)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(sname, dir_fd=sfd), dname, dir_fd=dfd)
    elif stat.S_ISDIR(st.st_mode):
        os.mkdir(dname, stat.S_IMODE(st.st_mode) | 0o700, dir_fd=dfd)
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
        sub_s = os.open(sname, flags, dir_fd=sfd)
        sub_d = os.open(dname, flags, dir_fd=dfd)
        try:
            for name in os.listdir(sub_s):
                _copy(sub_s, name, sub_d, name)
            os.fchmod(sub_d, stat.S_IMODE(st.st_mode))
        finally:
            os.close(sub_s)
            os.close(sub_d)
    elif stat.S_ISREG(st.st_mode):
        src = os.open(sname, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=sfd)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            dst = os.open(dname, flags, stat.S_IMODE(st.st_mode), dir_fd=dfd)
            try:
                while chunk := os.read(src, CHUNK):
                    write_all(dst, chunk)
            finally:
                os.close(dst)
        finally:
            os.close(src)
    else:
        raise Refused("invalid_path", f"{sname!r} is a FIFO, device or socket")


def rename(workdir: str, src: str, dst: str, overwrite: bool = False) -> None:
    sroot, sparts = split(workdir, src)
    droot, dparts = split(workdir, dst)
    if not sparts or not dparts:
        raise Refused("invalid_path", "a root cannot be renamed, nor replaced")
    sfd = parent_fd(sroot, sparts)
    try:
        dfd = parent_fd(droot, dparts, create=True)
        try:
            os.lstat(sparts[-1], dir_fd=sfd)  # missing: not_found before anything else
            if not overwrite and _lstat(dfd, dparts[-1]) is not None:
                raise Refused("exists", f"{dst!r} exists (pass overwrite=True to replace it)")
            try:
                os.rename(sparts[-1], dparts[-1], src_dir_fd=sfd, dst_dir_fd=dfd)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                # another filesystem (each of /tmp, the workdir and the home is one)
                if overwrite and _lstat(dfd, dparts[-1]) is not None:
                    remove_at(dfd, dparts[-1])
                _copy(sfd, sparts[-1], dfd, dparts[-1])
                remove_at(sfd, sparts[-1])
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def remove_at(dirfd: int, name: str) -> None:
    if stat.S_ISDIR(os.lstat(name, dir_fd=dirfd).st_mode):
        import shutil

        shutil.rmtree(name, dir_fd=dirfd)  # type: ignore[call-arg]
    else:
        os.unlink(name, dir_fd=dirfd)


def place_own(job: RunJob) -> None:
    """A session run's own files (its source; ``own_files``) go to ``own_dir``, apart
    from the user's files in the workdir, and the first ``own_argc`` words of its argv
    that name an entry there (``main.py``, ``./main``, ``.`` of ``-cp .``) point to it, so
    the program runs in the workdir from its own copy. A Python script imports from the
    workdir as if it lay there (``path0``)."""
    own = job.get("own_dir")
    if not own:
        return
    for rel, b64 in (job.get("own_files") or {}).items():
        write_file(own, rel, base64.b64decode(b64), replace=True)
    argv = [str(a) for a in job["argv"]]
    for i in range(min(int(job.get("own_argc") or 0), len(argv))):
        word = argv[i]
        if i == 0 and "/" not in word:
            continue  # a command name, looked up on PATH
        if not word.startswith("/") and not word.startswith("-"):
            path = os.path.normpath(os.path.join(own, word))
            if (path == own or path.startswith(own + "/")) and os.path.lexists(path):
                argv[i] = path
                if i == 1 and job.get("python_inline"):
                    job["path0"] = str(job.get("cwd") or "")
    job["argv"] = argv


def usage(paths: list[str]) -> list[dict[str, Any]]:
    """Bytes used and total of each filesystem at ``paths`` (the box's tmpfs places):
    what the box may still write, as ``df`` says it."""
    found = []
    for path in paths:
        try:
            st = os.statvfs(path)
        except OSError:
            continue
        total = st.f_blocks * st.f_frsize
        found.append({"path": path, "used": total - st.f_bfree * st.f_frsize, "total": total})
    return found


CGROUP = "/sys/fs/cgroup"


def cgroup_account() -> dict[str, int] | None:
    """The box's own cgroup, as the kernel charges it (what the engine's stats report,
    read here at once instead of at its collector's next tick): CPU time in ns, memory
    used, of it the page cache, and the memory limit. None where the box sees no cgroup
    (gVisor shows none). Read as a run's counters are (:mod:`._procs`)."""
    v1 = _procs.cgroup_value(f"{CGROUP}/memory/memory.usage_in_bytes")
    if v1 is not None:
        stat = f"{CGROUP}/memory/memory.stat"
        return {
            "cpu_ns": _procs.cgroup_value(f"{CGROUP}/cpuacct/cpuacct.usage") or 0,
            "memory_used": v1,
            "memory_cache": _procs.cgroup_field(stat, "total_cache", "cache") or 0,
            "memory_limit": _procs.cgroup_value(f"{CGROUP}/memory/memory.limit_in_bytes") or 0,
        }
    v2 = _procs.cgroup_value(f"{CGROUP}/memory.current")
    if v2 is not None:
        return {
            "cpu_ns": (_procs.cgroup_field(f"{CGROUP}/cpu.stat", "usage_usec") or 0) * 1000,
            "memory_used": v2,
            "memory_cache": _procs.cgroup_field(f"{CGROUP}/memory.stat", "file") or 0,
            "memory_limit": _procs.cgroup_value(f"{CGROUP}/memory.max") or 0,  # "max": no limit
        }
    return None


def carry_out(workdir: str, job: Any) -> tuple[dict[str, Any], bytes]:
    """One file job: its reply and its data."""
    op = job["op"]
    path = str(job.get("path") or ".")
    if op == "write":
        data = base64.b64decode(job["data"])
        write(workdir, path, data, int(job["mode"]), bool(job.get("parents", True)))
    elif op == "read":
        return {"ok": True}, read(workdir, path, int(job["max_bytes"]))
    elif op == "list":
        depth = job.get("depth")
        found = list_files(workdir, path, depth=None if depth is None else int(depth))
        return {"ok": True, "entries": found}, b""
    elif op == "stat":
        return {"ok": True, "entries": [stat_path(workdir, path)]}, b""
    elif op == "mkdir":
        make_dir(workdir, path, bool(job.get("parents", True)))
    elif op == "rename":
        rename(workdir, path, str(job["dst"]), bool(job.get("overwrite")))
    elif op == "usage":
        measured: dict[str, Any] = {"ok": True, "usage": usage([str(p) for p in job["paths"]])}
        account = cgroup_account()
        if account is not None:
            measured["cgroup"] = account
        return measured, b""
    else:
        remove(workdir, path)
    return {"ok": True}, b""


def serve(root: str, job: FileJob) -> None:
    """Carry out one file job and reply; a refused path or a failed call is ``ok: false``
    with a ``reason`` from :data:`REASONS`."""
    try:
        answer, data = carry_out(root, job)
    except (OSError, ValueError, Refused) as exc:
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        reply({"ok": False, "reason": reason_of(exc), "error": text})
        return
    reply(answer, data)
