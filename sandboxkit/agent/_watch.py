"""Watching paths for changes (``Sandbox.watch``): inotify, read whenever the agent waits.

Each watch has an inotify instance of its own (libc's ``inotify_init1`` through ctypes:
the agent uses the standard library only), whose descriptor sits in the agent's
selector, between jobs and during runs, as a background process's output does (see
``_bg``). What it reports is kept in a bounded list of numbered changes; the host polls
``watch_read`` with the last number it saw. A recursive watch adds every directory
below the path, and each one made later (reporting what was made in it before its
watch was added). A watch ends when the host stops it or the sandbox ends.

The path is resolved as every file job resolves it (``_files.split``: relative means
the workdir, no ``..``) and no symlink on the way is followed, nor the path itself.
"""

from __future__ import annotations

import os
import selectors
import stat
import struct

from . import _files
from ._files import Refused

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

OPS = ("watch_start", "watch_read", "watch_stop")
MAX_WATCHES = 16  # open at once in a sandbox (each is an inotify instance)
MAX_DIRS = 4096  # directories one recursive watch follows at most
KEEP = 10000  # changes kept per watch until read (the oldest dropped past it)
READ_MAX = 2000  # changes sent in one reply at most

IN_MODIFY, IN_ATTRIB, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x4, 0x40, 0x80
IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_MOVE_SELF = 0x100, 0x200, 0x400, 0x800
IN_Q_OVERFLOW, IN_IGNORED, IN_ONLYDIR, IN_DONT_FOLLOW = 0x4000, 0x8000, 0x1000000, 0x2000000
IN_ISDIR = 0x40000000
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000
MASK = (
    IN_MODIFY | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
)
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)

_libc: Any = None


def _inotify() -> Any:
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.inotify_add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
    return _libc


def _check(result: int, what: str) -> int:
    if result < 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return int(result)


class Watch:
    def __init__(self, wid: int, shown: str, real: str, recursive: bool, is_dir: bool) -> None:
        self.id, self.shown, self.real = wid, shown, real
        self.recursive, self.is_dir = recursive, is_dir
        self.fd = _check(_inotify().inotify_init1(IN_NONBLOCK | IN_CLOEXEC), "inotify_init1")
        self.dirs: dict[int, str] = {}  # watch descriptor -> its path below ``real`` ("": it)
        self.changes: list[tuple[int, str, str]] = []  # (number, kind, path as shown)
        self.seq = 0
        self.dropped = False
        self.ended = False  # the watched path itself went away

    def add(self, rel: str) -> None:
        """Watch the directory ``rel`` (below the watched path; "" for itself)."""
        if len(self.dirs) >= MAX_DIRS:
            self.dropped = True
            return
        path = os.path.join(self.real, rel) if rel else self.real
        mask = MASK | IN_DONT_FOLLOW | (IN_ONLYDIR if self.is_dir else 0)
        wd = _inotify().inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            if rel:  # gone again, or not ours to read: not followed
                return
            _check(wd, f"watch {self.shown!r}")
        self.dirs[wd] = rel

    def add_tree(self, rel: str, report: bool) -> None:
        """Watch ``rel`` and every directory below it (never through a link); ``report``:
        say each entry found there as created (it was made before its watch was)."""
        self.add(rel)
        try:
            with os.scandir(os.path.join(self.real, rel) if rel else self.real) as it:
                entries = list(it)
        except OSError:
            return
        for entry in entries:
            sub = os.path.join(rel, entry.name) if rel else entry.name
            if report:
                self.note("created", sub)
            try:
                if entry.is_dir(follow_symlinks=False):
                    self.add_tree(sub, report)
            except OSError:
                pass

    def shown_path(self, rel: str) -> str:
        if not rel:
            return self.shown
        return rel if self.shown in ("", ".") else f"{self.shown.rstrip('/')}/{rel}"

    def note(self, kind: str, rel: str) -> None:
        path = self.shown_path(rel)
        last = self.changes[-1] if self.changes else None
        if kind == "modified" and last is not None and last[1:] == (kind, path):
            return  # one write(2) after another: one change until it is read
        self.seq += 1
        self.changes.append((self.seq, kind, path))
        if len(self.changes) > KEEP:
            del self.changes[0]
            self.dropped = True

    def pump(self) -> None:
        """Read what inotify has (the selector's callback)."""
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                return
            if not data:
                return
            self._take(data)

    def _take(self, data: bytes) -> None:
        at = 0
        while at + _EVENT.size <= len(data):
            wd, mask, _cookie, size = _EVENT.unpack_from(data, at)
            raw = data[at + _EVENT.size : at + _EVENT.size + size].rstrip(b"\0")
            at += _EVENT.size + size
            if mask & IN_Q_OVERFLOW:
                self.dropped = True
                continue
            base = self.dirs.get(wd)
            if base is None:
                continue
            if mask & IN_IGNORED:
                self.dirs.pop(wd, None)
                continue
            name = os.fsdecode(raw)
            rel = os.path.join(base, name) if base and name else (name or base)
            if mask & (IN_DELETE_SELF | IN_MOVE_SELF):
                if not base:  # the watched path itself: its end
                    self.note("removed", "")
                    self.ended = True
                continue  # a subdirectory's: its parent's watch says it
            if mask & (IN_CREATE | IN_MOVED_TO):
                self.note("created", rel)
                if self.recursive and mask & IN_ISDIR:
                    self.add_tree(rel, report=True)
            elif mask & (IN_DELETE | IN_MOVED_FROM):
                self.note("removed", rel)
            elif mask & IN_MODIFY and not mask & IN_ISDIR:
                self.note("modified", rel)

    def close(self) -> None:
        os.close(self.fd)


class Watches:
    def __init__(self, sel: selectors.BaseSelector, workdir: str) -> None:
        self.sel, self.workdir = sel, workdir
        self.watches: dict[int, Watch] = {}
        self.next_id = 0

    def start(self, job: Any) -> dict[str, Any]:
        path = str(job.get("path") or ".")
        root, parts = _files.split(self.workdir, path)
        if parts:
            dirfd = _files.parent_fd(root, parts)  # refuses a link on the way
            try:
                st = os.lstat(parts[-1], dir_fd=dirfd)
            finally:
                os.close(dirfd)
        else:
            st = os.stat(root)
        if stat.S_ISLNK(st.st_mode):
            raise Refused("invalid_path", f"{path!r} is a symlink (not followed)")
        if len(self.watches) >= MAX_WATCHES:
            raise Refused(
                "too_large",
                f"{MAX_WATCHES} watches are open in this sandbox already; close one "
                "(`async with sb.watch(...)`, or aclose() the iterator) first",
            )
        is_dir = stat.S_ISDIR(st.st_mode)
        real = os.path.join(root, *parts)
        shown = _files.shown(path, parts) if parts else path.rstrip("/") or "/"
        self.next_id += 1
        watch = Watch(self.next_id, shown, real, bool(job.get("recursive")) and is_dir, is_dir)
        try:
            if watch.recursive:
                watch.add_tree("", report=False)
            else:
                watch.add("")
        except BaseException:
            watch.close()
            raise
        self.sel.register(watch.fd, selectors.EVENT_READ, watch.pump)
        self.watches[watch.id] = watch
        return {"ok": True, "id": watch.id}

    def _get(self, job: Any) -> Watch:
        watch = self.watches.get(int(job.get("id") or 0))
        if watch is None:
            raise Refused("not_found", f"no watch {job.get('id')!r} (stopped?)")
        return watch

    def read(self, job: Any) -> dict[str, Any]:
        watch = self._get(job)
        watch.pump()
        after = int(job.get("after") or 0)
        out = [list(c) for c in watch.changes if c[0] > after][:READ_MAX]
        # what was read is no longer kept: the host has it
        watch.changes = [c for c in watch.changes if c[0] > after]
        return {
            "ok": True,
            "changes": out,
            "next": out[-1][0] if out else after,
            "dropped": watch.dropped,
            "ended": watch.ended and len(out) == len(watch.changes),
        }

    def stop(self, job: Any) -> dict[str, Any]:
        watch = self.watches.pop(int(job.get("id") or 0), None)
        if watch is not None:
            try:
                self.sel.unregister(watch.fd)
            except (KeyError, ValueError):
                pass
            watch.close()
        return {"ok": True}

    def serve(self, job: Any) -> dict[str, Any]:
        op = job["op"]
        if op == "watch_start":
            return self.start(job)
        if op == "watch_read":
            return self.read(job)
        return self.stop(job)
