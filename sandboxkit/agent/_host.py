"""The agent's one channel to the host.

Frames go out on descriptor 1 (the attach stream) and come in on descriptor 0, or, when
the host mounted a socket at :data:`~sandboxkit._protocol.CHANNEL_PATH`, both ways over
that socket: the engine's relay (dockerd, the shim) then carries nothing on a run's path.
Only this process holds the channel; user programs write into pipes the agent reads and
frames (every other descriptor is closed in a child), so nothing they print can forge a
frame.
"""

from __future__ import annotations

import json
import os
import select
import stat  # os's own import: free

from .._protocol import CHANNEL_PATH, REPLY, pack

CHUNK = 65536
# the host's input and the frames' way out: stdin/stdout, or one socket for both
IN, OUT = 0, 1


def open_channel(path: str = CHANNEL_PATH) -> bool:
    """Connect to the host's socket when one is mounted; False: stay on stdin/stdout.
    Without one, the path is the image's empty mount point (``_layout.mount_points``)."""
    global IN, OUT
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return False
    except OSError:
        return False
    import _socket  # the C module: `socket` would import enum, selectors' friends...

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:  # the host cannot be reached this way: say so, use stdio
        sock.close()
        os.write(2, f"sandboxkit agent: no direct channel ({exc}); using stdio\n".encode())
        return False
    # a bare descriptor: a forked child closes it by number, and no socket object is
    # left for its garbage collector to close a reused descriptor with
    IN = OUT = sock.detach()
    os.set_blocking(OUT, False)
    return True


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data``, waiting on a non-blocking descriptor when it is full."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
            continue
        view = view[n:]


def send_raw(frames: bytes) -> None:
    """Packed frames, as they are, to the host."""
    write_all(OUT, frames)


def send(kind: bytes, payload: bytes = b"") -> None:
    send_raw(pack(kind, payload))


def send_json(kind: bytes, obj: object) -> None:
    send(kind, json.dumps(obj).encode())


def reply(header: object, data: bytes = b"") -> None:
    """The answer to a file job: a JSON header, a NUL, then raw data."""
    send(REPLY, json.dumps(header).encode() + b"\0" + data)
