"""Input checks that run before any container is touched."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import InvalidInput, InvalidPath
from ._models import Limits

MAX_FILES = 1000
MAX_FILES_BYTES = 64 * 1024 * 1024
MAX_CODE_BYTES = 16 * 1024 * 1024


def check_path(path: object) -> str:
    """A relative path inside the workdir, normalised; anything else is InvalidPath."""
    if not isinstance(path, str):
        raise InvalidPath(f"file path must be a str, not {type(path).__name__}")
    if not path or not path.strip():
        raise InvalidPath("file path is empty")
    if "\0" in path:
        raise InvalidPath(f"file path {path!r} contains a NUL byte")
    if path.startswith("/"):
        raise InvalidPath(f"file path {path!r} is absolute; give a path relative to the workdir")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        raise InvalidPath(f"file path {path!r} names the workdir itself")
    if ".." in parts:
        raise InvalidPath(f"file path {path!r} escapes the workdir ('..')")
    try:
        # names read back from a sandbox may carry undecodable bytes (surrogateescape)
        sizes = [len(p.encode("utf-8", "surrogateescape")) for p in parts]
    except UnicodeEncodeError:
        raise InvalidPath(f"file path {path[:80]!r} is not valid text") from None
    if any(size > 255 for size in sizes) or sum(sizes) + len(sizes) > 4096:
        raise InvalidPath(f"file path {path[:80]!r}... is too long")
    return "/".join(parts)


def check_files(files: Mapping[str, Any] | None) -> dict[str, bytes]:
    if files is None:
        return {}
    if not isinstance(files, Mapping):
        raise InvalidInput("files must be a mapping of relative path -> bytes")
    if len(files) > MAX_FILES:
        raise InvalidInput(f"at most {MAX_FILES} files per run")
    out: dict[str, bytes] = {}
    total = 0
    for path, data in files.items():
        clean = check_path(path)
        if isinstance(data, str):
            data = data.encode()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidInput(f"content of {path!r} must be bytes, not {type(data).__name__}")
        data = bytes(data)
        total += len(data)
        if clean in out:
            raise InvalidInput(f"file {path!r} given twice")
        out[clean] = data
    # a path cannot be both a file and a directory holding other files
    names = set(out)
    for clean in out:
        parts = clean.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in names:
                raise InvalidInput(
                    f"{'/'.join(parts[:i])!r} is given as a file and as a directory of {clean!r}"
                )
    if total > MAX_FILES_BYTES:
        raise InvalidInput(f"files add up to {total} bytes, over the {MAX_FILES_BYTES}-byte cap")
    return out


def check_code(code: object) -> str:
    if not isinstance(code, str):
        raise InvalidInput(f"code must be a str, not {type(code).__name__}")
    if len(_utf8(code, "code")) > MAX_CODE_BYTES:
        raise InvalidInput(f"code is over the {MAX_CODE_BYTES}-byte cap")
    return code


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{what} is not valid text (lone surrogate at {exc.start})") from None


def check_stdin(stdin: object) -> bytes | None:
    if stdin is None:
        return None
    if isinstance(stdin, str):
        data = _utf8(stdin, "stdin")
    elif isinstance(stdin, (bytes, bytearray, memoryview)):
        data = bytes(stdin)
    else:
        raise InvalidInput(f"stdin must be str or bytes, not {type(stdin).__name__}")
    if len(data) > MAX_FILES_BYTES:
        raise InvalidInput(f"stdin is over the {MAX_FILES_BYTES}-byte cap")
    return data


def check_limits(limits: object) -> Limits:
    if limits is None:
        return Limits()
    if isinstance(limits, Limits):
        return limits
    if isinstance(limits, Mapping):
        try:
            return Limits.model_validate(dict(limits))
        except ValueError as exc:
            raise InvalidInput(f"invalid limits: {exc}") from exc
    raise InvalidInput(f"limits must be sandboxkit.Limits, not {type(limits).__name__}")


@dataclass(frozen=True)
class RunInput:
    """A run's checked input: the files to place (the source among them), stdin, limits."""

    files: dict[str, bytes]
    stdin: bytes | None
    limits: Limits


def prepare_run(
    source_file: str,
    code: object,
    stdin: object,
    files: Mapping[str, Any] | None,
    limits: object,
    default_limits: Limits,
) -> RunInput:
    """Check everything a run is given, before any container is touched."""
    text = check_code(code)
    data = check_stdin(stdin)
    all_files = check_files(files)
    lim = check_limits(limits) if limits is not None else default_limits
    if source_file in all_files or any(p.startswith(source_file + "/") for p in all_files):
        raise InvalidInput(f"files may not replace the source file {source_file!r}")
    all_files[source_file] = _utf8(text, "code")
    size = sum(len(d) for d in all_files.values()) + len(data or b"")
    if size > MAX_FILES_BYTES:
        raise InvalidInput(
            f"code, files and stdin add up to {size} bytes, over the {MAX_FILES_BYTES}-byte cap"
        )
    if size - len(data or b"") > lim.disk_mb * 1024 * 1024:
        raise InvalidInput(
            f"the files do not fit the {lim.disk_mb} MB workdir; raise Limits(disk_mb=...)"
        )
    return RunInput(all_files, data, lim)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps a server on this machine (servers that run code
    refuse anything else without a token)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
