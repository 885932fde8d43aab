"""Where snapshots live on the host: one directory each, under the snapshot directory.

``SANDBOXKIT_SNAPSHOT_DIR``, else ``$XDG_DATA_HOME/sandboxkit/snapshots``, else
``~/.local/share/sandboxkit/snapshots``. A snapshot ``snap-<hex>`` is a directory with
``meta.json`` (the :class:`Snapshot`, the tar's size and SHA-256, and where its memory
is kept when it has memory) and ``files.tar`` (the writable places, packed by the
agent). It is written under a temporary name and renamed when complete, so a snapshot
that is listed is whole; a ``files.tar`` that no longer matches its recorded digest is
``corrupt``. Pure: files only, no engine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import Field

from .._errors import InvalidInput, SnapshotError
from .._models import Frozen, Limits

FORMAT = 1
META = "meta.json"
FILES = "files.tar"
_ID = re.compile(r"^snap-[0-9a-f]{20}$")
MB = 1024 * 1024
DEFAULT_MAX_MB = 2048  # one snapshot's files (SANDBOXKIT_SNAPSHOT_MAX_MB)
DEFAULT_STORE_MB = 20480  # every snapshot together (SANDBOXKIT_SNAPSHOT_STORE_MB)


class Snapshot(Frozen):
    """A paused sandbox, as ``Sandbox.pause()`` saved it (see ``Sandbox.resume``)."""

    id: str
    language: str
    runtime: str = Field(description="the OCI runtime the box ran under")
    has_memory: bool = Field(
        description="processes and a keep_state interpreter come back on resume (else files only)"
    )
    size_bytes: int = Field(description="the snapshot's files on the host (its tar)")
    memory_bytes: int = Field(0, description="its checkpoint on the engine (0: none or unseen)")
    created_at: datetime
    limits: Limits
    keep_state: bool = False
    keep_processes: bool = False
    root: bool = Field(False, description="a root=True session's (see Sandbox)")


@dataclass(frozen=True)
class Memory:
    """Where a snapshot's memory is: a stopped container with its checkpoint."""

    engine: str  # the engine's URL
    container: str  # its id
    checkpoint: str  # the checkpoint's name
    memory_bytes: int = 0


@dataclass(frozen=True)
class Record:
    snapshot: Snapshot
    files_sha256: str
    memory: Memory | None
    path: Path

    @property
    def files(self) -> Path:
        return self.path / FILES


def snapshot_dir() -> Path:
    explicit = os.environ.get("SANDBOXKIT_SNAPSHOT_DIR")
    if explicit:
        return Path(explicit)
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(data) / "sandboxkit" / "snapshots"


def _mb_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number of MB, not {raw!r}") from None
    return max(value, 1)


def max_snapshot_bytes() -> int:
    return _mb_env("SANDBOXKIT_SNAPSHOT_MAX_MB", DEFAULT_MAX_MB) * MB


def max_store_bytes() -> int:
    return _mb_env("SANDBOXKIT_SNAPSHOT_STORE_MB", DEFAULT_STORE_MB) * MB


def new_id() -> str:
    return "snap-" + uuid.uuid4().hex[:20]


def check_id(snapshot_id: object) -> str:
    """A snapshot id as ``pause`` makes them (``snap-`` and 20 hex digits)."""
    if isinstance(snapshot_id, Snapshot):
        return snapshot_id.id
    if not isinstance(snapshot_id, str) or not _ID.match(snapshot_id):
        raise InvalidInput(f"not a snapshot id: {snapshot_id!r} (they look like snap-1a2b...)")
    return snapshot_id


def _dump(record: Snapshot, sha256: str, memory: Memory | None) -> bytes:
    meta: dict[str, Any] = {
        "format": FORMAT,
        "snapshot": record.model_dump(mode="json"),
        "files_sha256": sha256,
        "memory": None if memory is None else vars(memory),
    }
    return json.dumps(meta, indent=1).encode()


def load(snapshot_id: str, root: Path | None = None) -> Record:
    """The record of ``snapshot_id``; SnapshotError ``not_found`` or ``corrupt``."""
    sid = check_id(snapshot_id)
    path = (root or snapshot_dir()) / sid
    try:
        raw = (path / META).read_bytes()
    except FileNotFoundError:
        raise SnapshotError(
            f"no snapshot {sid} in {path.parent} (deleted, or kept in another "
            "SANDBOXKIT_SNAPSHOT_DIR?)",
            "not_found",
            sid,
        ) from None
    try:
        meta = json.loads(raw)
        snapshot = Snapshot.model_validate(meta["snapshot"])
        memory = Memory(**meta["memory"]) if meta.get("memory") else None
        sha = str(meta["files_sha256"])
        if meta.get("format") != FORMAT or snapshot.id != sid:
            raise ValueError("another format or id")
    except (ValueError, KeyError, TypeError, InvalidInput) as exc:
        raise SnapshotError(
            f"snapshot {sid} is corrupt: its {META} cannot be read ({exc}); delete it",
            "corrupt",
            sid,
        ) from None
    return Record(snapshot, sha, memory, path)


def verify(record: Record) -> None:
    """SnapshotError ``corrupt`` when ``files.tar`` is missing or not what was saved."""
    sid = record.snapshot.id
    digest = hashlib.sha256()
    try:
        with open(record.files, "rb") as f:
            while piece := f.read(MB):
                digest.update(piece)
    except OSError as exc:
        raise SnapshotError(
            f"snapshot {sid} is corrupt: its files cannot be read ({exc}); delete it",
            "corrupt",
            sid,
        ) from None
    if digest.hexdigest() != record.files_sha256:
        raise SnapshotError(
            f"snapshot {sid} is corrupt: its files changed since it was saved; delete it",
            "corrupt",
            sid,
        )


def read_pieces(record: Record, size: int = MB) -> Iterator[bytes]:
    with open(record.files, "rb") as f:
        while piece := f.read(size):
            yield piece


def all_records(root: Path | None = None) -> list[Record]:
    """Every readable snapshot, oldest first (a corrupt one is left out: delete it by id)."""
    base = root or snapshot_dir()
    found: list[Record] = []
    with contextlib.suppress(FileNotFoundError):
        for entry in base.iterdir():
            if _ID.match(entry.name):
                with contextlib.suppress(SnapshotError):
                    found.append(load(entry.name, base))
    return sorted(found, key=lambda r: r.snapshot.created_at)


def used_bytes(root: Path | None = None) -> int:
    base = root or snapshot_dir()
    total = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in base.iterdir():
            with contextlib.suppress(OSError):
                total += (entry / FILES).stat().st_size
    return total


def remove(snapshot_id: str, root: Path | None = None) -> bool:
    """Remove the snapshot's directory; False when there was none."""
    path = (root or snapshot_dir()) / check_id(snapshot_id)
    if not path.exists():
        return False
    shutil.rmtree(path)
    return True


def rewrite(record: Record) -> None:
    """Replace a snapshot's ``meta.json`` (its memory used up), atomically."""
    tmp = record.path / (META + ".new")
    tmp.write_bytes(_dump(record.snapshot, record.files_sha256, record.memory))
    os.replace(tmp, record.path / META)


class Writer:
    """A snapshot being written: ``files.tar`` piece by piece, then :meth:`commit`."""

    def __init__(self, root: Path | None = None, snapshot_id: str | None = None) -> None:
        self.root = root or snapshot_dir()
        self.id = snapshot_id or new_id()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.partial = self.root / f".{self.id}.partial"
        self.partial.mkdir(mode=0o700)
        self._file: BinaryIO | None = open(self.partial / FILES, "wb")  # noqa: SIM115 - closed in commit/discard
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, piece: bytes) -> None:
        assert self._file is not None
        self._file.write(piece)
        self._digest.update(piece)
        self.size += len(piece)

    def commit(self, snapshot: Snapshot, memory: Memory | None) -> Record:
        assert self._file is not None
        self._file.close()
        self._file = None
        (self.partial / META).write_bytes(_dump(snapshot, self._digest.hexdigest(), memory))
        final = self.root / self.id
        os.rename(self.partial, final)
        return Record(snapshot, self._digest.hexdigest(), memory, final)

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        shutil.rmtree(self.partial, ignore_errors=True)
