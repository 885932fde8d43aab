"""File jobs under the workdir: write, read, list. No symlink is ever followed.

Paths are relative to the workdir; every directory on the way is opened with
``O_NOFOLLOW`` relative to its parent, so a link the user's code planted cannot lead a
write or a read outside.
"""

from __future__ import annotations

import base64
import os
import stat

from ._host import CHUNK, reply, write_all

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal

    from .._protocol import FileEntryWire, FileJob, RunJob

MAX_ENTRIES = 10000
OPS = ("write", "read", "list")


def _parts(rel: str) -> list[str]:
    if not rel or "\0" in rel or rel.startswith("/"):
        raise ValueError(f"invalid path {rel!r}")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise ValueError(f"path {rel!r} escapes the workdir")
    return parts


def _open_beneath(root: str, rel: str, flags: int, mode: int = 0o644, replace: bool = False) -> int:
    """Open a workdir path without following any symlink on the way (no escape)."""
    parts = _parts(rel)
    dirfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            if flags & os.O_CREAT:
                try:
                    os.mkdir(part, 0o755, dir_fd=dirfd)
                except FileExistsError:
                    pass
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dirfd)
            os.close(dirfd)
            dirfd = nxt
        if replace:
            # a run's own files: a symlink, FIFO, device or directory the user's code left
            # where they go is replaced, never followed or opened
            try:
                st = os.lstat(parts[-1], dir_fd=dirfd)
                if stat.S_ISDIR(st.st_mode):
                    import shutil

                    # fd-based, no symlink followed (dir_fd: Python 3.11, as in every image)
                    shutil.rmtree(parts[-1], dir_fd=dirfd)  # type: ignore[call-arg]
                elif not stat.S_ISREG(st.st_mode):
                    os.unlink(parts[-1], dir_fd=dirfd)
            except FileNotFoundError:
                pass
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_NONBLOCK, mode, dir_fd=dirfd)
    finally:
        os.close(dirfd)


def write_file(root: str, rel: str, data: bytes, mode: int = 0o644, replace: bool = False) -> None:
    fd = _open_beneath(root, rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode, replace)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{rel!r} is not a regular file")
        write_all(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def read_file(root: str, rel: str, max_bytes: int) -> bytes:
    fd = _open_beneath(root, rel, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{rel!r} is not a regular file")
        if st.st_size > max_bytes:
            raise ValueError(f"{rel!r} is {st.st_size} bytes, over the {max_bytes}-byte cap")
        chunks = []
        total = 0
        while True:
            chunk = os.read(fd, CHUNK)
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:
                raise ValueError(f"{rel!r} grew past the {max_bytes}-byte cap")
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


def list_files(root: str, rel: str = ".", max_entries: int = MAX_ENTRIES) -> list[FileEntryWire]:
    """Every entry under ``rel`` (a directory of the workdir, reached without following
    a symlink), with paths relative to the workdir."""
    if rel in ("", "."):
        top = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        prefix = ""
    else:
        top = _open_beneath(root, rel, os.O_RDONLY | os.O_DIRECTORY)
        prefix = "/".join(_parts(rel)) + "/"
    entries: list[FileEntryWire] = []
    try:
        for here, dirs, files, dirfd in os.fwalk(".", dir_fd=top, follow_symlinks=False):
            for name in sorted(dirs) + sorted(files):
                try:
                    st = os.lstat(name, dir_fd=dirfd)
                except OSError:
                    continue
                path = prefix + os.path.normpath(os.path.join(here, name))
                entries.append({"path": path, "type": _kind(st.st_mode), "size": st.st_size})
                if len(entries) >= max_entries:
                    return entries
    finally:
        os.close(top)
    return entries


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


def serve(root: str, job: FileJob) -> None:
    """Carry out one file job and reply; a refused path or a failed call is ``ok: false``."""
    try:
        if job["op"] == "write":
            write_file(root, job["path"], base64.b64decode(job["data"]), int(job["mode"]))
            reply({"ok": True})
        elif job["op"] == "read":
            reply({"ok": True}, read_file(root, job["path"], int(job["max_bytes"])))
        else:
            reply({"ok": True, "entries": list_files(root, str(job.get("path") or "."))})
    except (OSError, ValueError) as exc:
        reply({"ok": False, "error": str(exc)})
