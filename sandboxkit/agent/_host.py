"""The agent's one channel to the host: frames written on descriptor 1 (the attach stream).

Only this process holds descriptor 1; user programs write into pipes the agent reads and
frames, so nothing they print can forge a frame.
"""

from __future__ import annotations

import json
import os
import select

from .._protocol import REPLY, pack

CHUNK = 65536


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


def send(kind: bytes, payload: bytes = b"") -> None:
    write_all(1, pack(kind, payload))


def send_json(kind: bytes, obj: object) -> None:
    send(kind, json.dumps(obj).encode())


def reply(header: object, data: bytes = b"") -> None:
    """The answer to a file job: a JSON header, a NUL, then raw data."""
    send(REPLY, json.dumps(header).encode() + b"\0" + data)
