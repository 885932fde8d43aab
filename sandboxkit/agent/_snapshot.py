"""Pack and unpack the sandbox's writable places as one tar stream (``Sandbox.pause``).

``pack`` walks each place (``/work``, ``/tmp``...) without following a symlink and sends
a PAX tar in reply frames of :data:`PIECE` bytes: regular files, directories (empty ones
too), symlinks and hard links, with their modes and mtimes. FIFOs, sockets and devices
are skipped (a file job refuses them too) and counted. User processes are stopped
(SIGSTOP) while it reads, so the tar is one moment of the box, and continued after.

``unpack`` reads such a tar from the host's input frames (STDIN, then CLOSE_STDIN) and
recreates every entry beneath its place, again without following any symlink on the way:
a tar that names a path outside the places, or an entry of another type, is refused.
Directory modes are set last (deepest first), so a read-only directory still gets its
files.
"""

from __future__ import annotations

import os
import signal
import stat

from . import _host
from ._files import _parts
from ._host import reply

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._run import Inbox

OPS = ("pack", "unpack", "checkpoint")
POLL = 0.02  # seconds between reads of the host's input while a restore may come
NONCE = ""  # the last checkpoint's name (see serve)
PIECE = 1 << 20  # bytes of tar per reply frame
_SKIPPED_SHOWN = 20  # skipped paths named in the reply


class TooLarge(Exception):
    """The tar grew past the job's ``max_bytes``."""


class _Sink:
    """A write-only file for tarfile: pieces go to the host as reply frames."""

    def __init__(self, max_bytes: int) -> None:
        self.buf = bytearray()
        self.total = 0
        self.max_bytes = max_bytes
        self.done = False

    def write(self, data: bytes) -> int:
        if self.done:
            return len(data)  # a tar given up on: its stream's late flush goes nowhere
        self.total += len(data)
        if self.total > self.max_bytes:
            raise TooLarge(f"the snapshot grew past its cap of {self.max_bytes} bytes")
        self.buf += data
        while len(self.buf) >= PIECE:
            self._send(bytes(self.buf[:PIECE]))
            del self.buf[:PIECE]
        return len(data)

    def flush(self) -> None:
        if self.buf:
            self._send(bytes(self.buf))
            self.buf.clear()

    @staticmethod
    def _send(piece: bytes) -> None:
        reply({"ok": True, "more": True}, piece)


def _member_name(place: str, rel: str) -> str:
    top = place.strip("/")
    return top if rel in ("", ".") else f"{top}/{rel}"


def _readable(name: str, dirfd: int, mode: int, want: int) -> bool:
    """Give the owner ``want`` (read, and search for a directory) when it lacks it, so a
    ``chmod 000`` entry is still packed; True when the mode was changed (to put back)."""
    if stat.S_IMODE(mode) & want == want:
        return False
    try:
        os.chmod(name, stat.S_IMODE(mode) | want, dir_fd=dirfd)
    except OSError:
        return False
    return True


def pack(places: list[str], max_bytes: int) -> dict[str, Any]:
    """Send ``places`` as a tar (reply frames marked ``more``); the summary to reply."""
    import tarfile

    sink = _Sink(max_bytes)
    skipped: list[str] = []
    files = 0
    restore_modes: list[tuple[str, int]] = []  # absolute paths whose mode was widened
    seen: dict[tuple[int, int], str] = {}  # (dev, inode) of multi-link files -> first name
    tar = tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT)  # type: ignore[call-overload]
    try:
        for place in places:
            try:
                top = os.lstat(place)
            except OSError:
                continue
            if not stat.S_ISDIR(top.st_mode):
                continue
            tar.addfile(_info(tarfile, _member_name(place, ""), top))
            for here, dirs, names, dirfd in os.fwalk(place, follow_symlinks=False):
                rel_here = os.path.relpath(here, place)
                for name in sorted(dirs) + sorted(names):
                    try:
                        st = os.lstat(name, dir_fd=dirfd)
                    except OSError:
                        continue
                    rel = name if rel_here == "." else f"{rel_here}/{name}"
                    member = _member_name(place, rel)
                    info = _info(tarfile, member, st)
                    if stat.S_ISDIR(st.st_mode):
                        if _readable(name, dirfd, st.st_mode, 0o700):
                            restore_modes.append((os.path.join(here, name), st.st_mode))
                        tar.addfile(info)
                    elif stat.S_ISLNK(st.st_mode):
                        info.type = tarfile.SYMTYPE
                        info.linkname = os.readlink(name, dir_fd=dirfd)
                        tar.addfile(info)
                    elif stat.S_ISREG(st.st_mode):
                        key = (st.st_dev, st.st_ino)
                        if st.st_nlink > 1 and key in seen:
                            info.type = tarfile.LNKTYPE
                            info.linkname = seen[key]
                            info.size = 0
                            tar.addfile(info)
                            continue
                        if st.st_nlink > 1:
                            seen[key] = member
                        _add_file(tar, info, name, dirfd, st.st_mode)
                        files += 1
                    else:
                        skipped.append("/" + member)
    except BaseException as exc:
        sink.done = True
        if isinstance(exc, TooLarge):
            return {"ok": False, "error": str(exc), "reason": "too_large"}
        raise
    finally:
        for path, mode in reversed(restore_modes):
            try:
                os.chmod(path, stat.S_IMODE(mode))
            except OSError:
                pass
    try:
        tar.close()
        sink.flush()
    except TooLarge as exc:
        return {"ok": False, "error": str(exc), "reason": "too_large"}
    finally:
        sink.done = True
    return {
        "ok": True,
        "bytes": sink.total,
        "files": files,
        "skipped": skipped[:_SKIPPED_SHOWN],
        "skipped_count": len(skipped),
    }


def _info(tarfile: Any, name: str, st: os.stat_result) -> Any:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = st.st_mtime
    info.type = tarfile.DIRTYPE if stat.S_ISDIR(st.st_mode) else tarfile.REGTYPE
    info.size = st.st_size if stat.S_ISREG(st.st_mode) else 0
    return info


def _add_file(tar: Any, info: Any, name: str, dirfd: int, mode: int) -> None:
    """The file's bytes, as many as its size said (a file that shrank meanwhile is
    padded with zeros, one that grew is cut: the tar stays well-formed)."""
    widened = False
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dirfd)
    except PermissionError:
        widened = _readable(name, dirfd, mode, 0o400)
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dirfd)
    try:
        tar.addfile(info, _Exact(fd, info.size))
    finally:
        os.close(fd)
        if widened:
            try:
                os.chmod(name, stat.S_IMODE(mode), dir_fd=dirfd)
            except OSError:
                pass


class _Exact:
    """Reads exactly ``size`` bytes from ``fd`` (zeros past a premature end)."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        if n <= 0:
            return b""
        data = os.read(self.fd, n) or b"\0" * n
        self.left -= len(data)
        return data


def freeze(stop: bool) -> None:
    """Stop (or continue) every process but this one: a consistent tar of a live box."""
    try:
        os.kill(-1, signal.SIGSTOP if stop else signal.SIGCONT)
    except OSError:
        pass  # no other process


# ---------------------------------------------------------------------- unpack
class _Source:
    """A read-only file for tarfile over the host's STDIN frames for this job."""

    def __init__(self, agent: Any, inbox: Inbox) -> None:
        self.agent = agent
        self.inbox = inbox
        self.buf = bytearray()

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self.buf) < n) and self._more():
            pass
        if n < 0:
            n = len(self.buf)
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def _more(self) -> bool:
        """Move the next input frame into the buffer; False at the end of the input."""
        while not self.inbox.stdin:
            if self.inbox.close_stdin or self.inbox.kill:
                return False
            if self.agent.stdin_eof:
                raise OSError("the host hung up while sending the snapshot")
            for key, _events in self.agent.sel.select(None):
                key.data()
        self.buf += self.inbox.stdin.pop(0)
        return True


def _parent(place: str, parts: list[str]) -> int:
    """The directory holding ``parts[-1]`` beneath ``place``, opened without following a
    symlink; missing directories on the way are made."""
    dirfd = os.open(place, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            try:
                os.mkdir(part, 0o755, dir_fd=dirfd)
            except FileExistsError:
                pass
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dirfd)
            os.close(dirfd)
            dirfd = nxt
    except BaseException:
        os.close(dirfd)
        raise
    return dirfd


def _clear(name: str, dirfd: int, keep_dir: bool) -> None:
    """Make room for a new entry: what is there goes (a directory only if not kept)."""
    try:
        st = os.lstat(name, dir_fd=dirfd)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return
        import shutil

        shutil.rmtree(name, dir_fd=dirfd)  # type: ignore[call-arg]
    else:
        os.unlink(name, dir_fd=dirfd)


def _split(name: str, places: list[str]) -> tuple[str, list[str]]:
    """(place, parts beneath it) of a member's name; ValueError outside every place."""
    for place in places:
        top = place.strip("/")
        if name == top:
            return place, []
        if name.startswith(top + "/"):
            return place, _parts(name[len(top) + 1 :])
    raise ValueError(f"the snapshot names {name!r}, outside {', '.join(places)}")


def unpack(agent: Any, inbox: Inbox, places: list[str]) -> dict[str, Any]:
    """Recreate the entries of the tar the host sends beneath ``places``."""
    import tarfile

    source = _Source(agent, inbox)
    dir_modes: list[tuple[str, list[str], int, float]] = []
    files = 0
    try:
        with tarfile.open(fileobj=source, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                place, parts = _split(member.name, places)
                if not parts:
                    if member.isdir():
                        dir_modes.append((place, parts, member.mode, member.mtime))
                    continue
                dirfd = _parent(place, parts)
                name = parts[-1]
                try:
                    if member.isdir():
                        _clear(name, dirfd, keep_dir=True)
                        try:
                            os.mkdir(name, 0o700, dir_fd=dirfd)
                        except FileExistsError:
                            pass
                        dir_modes.append((place, parts, member.mode, member.mtime))
                    elif member.issym():
                        _clear(name, dirfd, keep_dir=False)
                        os.symlink(member.linkname, name, dir_fd=dirfd)
                        stamp = (member.mtime, member.mtime)
                        os.utime(name, stamp, dir_fd=dirfd, follow_symlinks=False)
                    elif member.islnk():
                        src_place, src_parts = _split(member.linkname, places)
                        src_dir = _parent(src_place, src_parts) if src_parts else -1
                        try:
                            if src_dir < 0:
                                raise ValueError(f"a hard link to a place: {member.linkname!r}")
                            _clear(name, dirfd, keep_dir=False)
                            os.link(
                                src_parts[-1],
                                name,
                                src_dir_fd=src_dir,
                                dst_dir_fd=dirfd,
                                follow_symlinks=False,
                            )
                        finally:
                            if src_dir >= 0:
                                os.close(src_dir)
                    elif member.isreg():
                        _clear(name, dirfd, keep_dir=False)
                        _write(tar, member, name, dirfd)
                        files += 1
                    else:
                        raise ValueError(f"the snapshot holds {member.name!r}, not a file")
                finally:
                    os.close(dirfd)
            # drain what follows the tar's end (its zero blocks), so no frame is left over
            while source.read(PIECE):
                pass
    except (OSError, ValueError, tarfile.TarError) as exc:
        while source._more():  # the rest of the input is this job's: read it away
            source.buf.clear()
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    for place, parts, mode, mtime in sorted(dir_modes, key=lambda d: -len(d[1])):
        path = os.path.join(place, *parts)
        try:
            os.chmod(path, mode, follow_symlinks=False)
        except (OSError, NotImplementedError):
            try:
                os.chmod(path, mode)
            except OSError:
                pass
        try:
            os.utime(path, (mtime, mtime))
        except OSError:
            pass
    return {"ok": True, "files": files}


def _write(tar: Any, member: Any, name: str, dirfd: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    fd = os.open(name, flags, 0o600, dir_fd=dirfd)
    try:
        data = tar.extractfile(member)
        while True:
            piece = data.read(PIECE)
            if not piece:
                break
            _host.write_all(fd, piece)
        os.fchmod(fd, member.mode)
        os.utime(fd, (member.mtime, member.mtime))
    finally:
        os.close(fd)


def await_restore(agent: Any) -> None:
    """Wait for the host's next input by reading it, not by the selector, then make the
    selector anew.

    The host checkpoints the box right after this job's reply. Under gVisor a restored
    box gets new host descriptors for its stdio, and an epoll registration made before
    the checkpoint never fires for them again (a blocking read works): so the next
    input is read by polling, and every registration is made again on a new selector.
    Without a checkpoint after all, the next job arrives the same way."""
    import selectors
    import time

    while True:
        try:
            data = os.read(_host.IN, 65536)
        except BlockingIOError:
            time.sleep(POLL)
            continue
        except OSError:
            data = b""
        break
    old = agent.sel
    agent.sel = selectors.DefaultSelector()
    for key in list(old.get_map().values()):
        agent.sel.register(key.fd, key.events, key.data)
    old.close()
    if data:
        agent.take(data)
    else:
        agent.hung_up(_host.IN)


def serve(agent: Any, job: Any, inbox: Inbox) -> None:
    """Carry out a pack, unpack or checkpoint job and reply (a pack's pieces before its
    summary)."""
    if job["op"] == "checkpoint":
        # something of this checkpoint's own in the box's memory: the engine refuses to
        # restore content byte-identical to an earlier checkpoint's (two idle boxes)
        global NONCE
        NONCE = str(job.get("nonce"))
        reply({"ok": True})
        await_restore(agent)
        return
    places = [str(p) for p in job.get("places") or []]
    if not places or any(not p.startswith("/") or ".." in p.split("/") for p in places):
        reply({"ok": False, "error": f"bad places {places!r}"})
        return
    if job["op"] == "pack":
        stop = bool(job.get("freeze", True))
        if stop:
            freeze(True)
        try:
            summary = pack(places, int(job.get("max_bytes") or 1 << 40))
        except (OSError, ValueError) as exc:
            summary = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            if stop:
                freeze(False)
        reply(summary)
    else:
        agent.inbox = inbox
        reply(unpack(agent, inbox, places))
