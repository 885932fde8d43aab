"""A box's writable places to a tar on the host and back, through its agent.

Engine-neutral: the agent packs and unpacks (``agent/_snapshot.py``) over the box's own
channel, so it works for tmpfs places (which an engine's archive API does not see in a
running container, and under gVisor cannot see at all) and on any engine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import anyio

from .. import _protocol as wire
from .._container import Box
from .._errors import SandboxError, SnapshotError
from .._languages.spec import BASE_ENV
from .._layout import WORKDIR
from .store import MB, Record, Writer, read_pieces

# Every place a sandbox may write that a snapshot keeps, in one list: the workdir, /tmp
# and the sandbox user's home (its tmpfs, the HOME every program gets).
SNAPSHOT_PLACES: tuple[str, ...] = (WORKDIR, "/tmp", BASE_ENV["HOME"])


def places_of(box: Box) -> list[str]:
    """``box``'s places: its home is its language's (see ``_layout.home_of``)."""
    return [p if p != BASE_ENV["HOME"] else box.home for p in SNAPSHOT_PLACES]


async def pack(
    box: Box, writer: Writer, max_bytes: int, *, freeze: bool = True
) -> dict[str, object]:
    """Stream the box's places into ``writer``; the agent's summary (files, skipped)."""
    job = {"op": "pack", "places": places_of(box), "max_bytes": max_bytes, "freeze": freeze}
    await box.send_json(wire.JOB, job)
    while True:
        kind, payload = await box.recv()
        if kind == wire.FAULT:
            raise SandboxError(f"sandbox agent fault: {payload.decode(errors='replace')}")
        if kind != wire.REPLY:
            raise SandboxError(f"unexpected frame {kind!r} from the sandbox agent")
        raw, _, data = payload.partition(b"\0")
        header = json.loads(raw)
        if header.get("more"):
            await anyio.to_thread.run_sync(writer.write, data)
            continue
        if not header.get("ok"):
            if header.get("reason") == "too_large":
                raise SnapshotError(
                    f"the sandbox's files are too large to snapshot: {header.get('error')} "
                    "(SANDBOXKIT_SNAPSHOT_MAX_MB raises the cap)",
                    "too_large",
                )
            raise SandboxError(f"packing the sandbox's files failed: {header.get('error')}")
        return dict(header)


async def unpack(box: Box, record: Record) -> dict[str, object]:
    """Recreate ``record``'s files in ``box`` (a fresh one); its summary."""
    await box.send_json(wire.JOB, {"op": "unpack", "places": places_of(box)})
    pieces: Iterator[bytes] = read_pieces(record, MB)
    while piece := await anyio.to_thread.run_sync(next, pieces, b""):
        await box.send(wire.STDIN, piece)
    await box.send(wire.CLOSE_STDIN)
    kind, payload = await box.recv()
    if kind != wire.REPLY:
        raise SandboxError(f"unexpected frame {kind!r} from the sandbox agent")
    header = json.loads(payload.partition(b"\0")[0])
    if not header.get("ok"):
        raise SnapshotError(
            f"snapshot {record.snapshot.id} could not be restored: {header.get('error')}",
            "corrupt",
            record.snapshot.id,
        )
    return dict(header)
