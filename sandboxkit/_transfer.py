"""Whole directories between the host and a sandbox's workdir, with caps, and without
ever letting a name from the sandbox place a file outside the host directory chosen."""

from __future__ import annotations

import os
from pathlib import Path

from ._errors import InvalidInput, InvalidPath
from ._validate import MAX_FILES, MAX_FILES_BYTES, check_path


def collect_local(root: str | os.PathLike[str]) -> dict[str, bytes]:
    """Regular files under ``root`` (relative path → bytes). Symlinks and devices are
    skipped, so nothing outside ``root`` is read. Blocking: call it in a thread."""
    base = Path(root)
    if not base.is_dir():
        raise InvalidInput(f"{base} is not a directory")
    files: dict[str, bytes] = {}
    total = 0
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not os.path.islink(os.path.join(dirpath, d)))
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            rel = os.path.relpath(full, base).replace(os.sep, "/")
            with open(full, "rb") as f:
                data = f.read(MAX_FILES_BYTES + 1)
            total += len(data)
            if len(files) >= MAX_FILES or total > MAX_FILES_BYTES:
                raise InvalidInput(
                    f"{base} holds more than {MAX_FILES} files or {MAX_FILES_BYTES} bytes"
                )
            files[check_path(rel)] = data
    return files


def store_local(root: str | os.PathLike[str], files: dict[str, bytes]) -> list[Path]:
    """Write sandbox files under ``root``; a name that would land outside it is refused.
    Blocking: call it in a thread."""
    base = Path(root)
    base.mkdir(parents=True, exist_ok=True)
    real_base = base.resolve()
    written: list[Path] = []
    for rel, data in files.items():
        target = base / check_path(rel)
        parent = target.parent
        parent.mkdir(parents=True, exist_ok=True)
        if not parent.resolve().is_relative_to(real_base) or target.is_symlink():
            raise InvalidPath(f"{rel!r} would be written outside {base}")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        written.append(target)
    return written
