"""Input checks that run before any container is touched."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
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


def check_box_path(path: object) -> str:
    """A path in a session's box: relative (to the workdir) or absolute, normalised
    (``//`` and ``.`` dropped); ``..`` is refused, not resolved (the agent follows no
    symlink, so ``..`` could only mislead)."""
    if isinstance(path, str) and path.startswith("/"):
        if "\0" in path:
            raise InvalidPath(f"file path {path!r} contains a NUL byte")
        if path.strip("/") == "":
            return "/"
        return "/" + check_path(path.lstrip("/"))
    return check_path(path)


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
        return Limits.model_validate(dict(limits))  # InvalidInput: one line per wrong field
    raise InvalidInput(f"limits must be sandboxkit.Limits, not {type(limits).__name__}")


MAX_ENV_BYTES = 128 * 1024  # environment and arguments each; far below the kernel's cap
MAX_ARGS = 1000


def check_env(env: object) -> dict[str, str]:
    """Variables for the program, over the language's own (``PATH`` and ``HOME`` too)."""
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        raise InvalidInput(f"env must be a mapping of str -> str, not {type(env).__name__}")
    out: dict[str, str] = {}
    for name, value in env.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidInput(f"env entries must be str -> str, got {name!r}: {value!r}")
        if not name or "=" in name or "\0" in name:
            raise InvalidInput(f"env name {name!r} must be non-empty, without '=' or NUL")
        if "\0" in value:
            raise InvalidInput(f"env value of {name!r} contains a NUL byte")
        out[name] = value
    if sum(len(_utf8(k + v, "env")) + 2 for k, v in out.items()) > MAX_ENV_BYTES:
        raise InvalidInput(f"env is over the {MAX_ENV_BYTES}-byte cap")
    return out


def check_args(args: object) -> tuple[str, ...]:
    """Command-line arguments given to the program after its own (``sys.argv[1:]``)."""
    if args is None:
        return ()
    if isinstance(args, (str, bytes)) or not isinstance(args, (list, tuple)):
        raise InvalidInput(f"args must be a list of str, not {type(args).__name__}")
    if len(args) > MAX_ARGS:
        raise InvalidInput(f"at most {MAX_ARGS} args")
    for arg in args:
        if not isinstance(arg, str):
            raise InvalidInput(f"args must be str, got {arg!r}")
        if "\0" in arg:
            raise InvalidInput(f"argument {arg[:40]!r} contains a NUL byte")
    if sum(len(_utf8(a, "args")) + 1 for a in args) > MAX_ENV_BYTES:
        raise InvalidInput(f"args are over the {MAX_ENV_BYTES}-byte cap")
    return tuple(args)


@dataclass(frozen=True)
class RunInput:
    """A run's checked input: the files to place in the workdir, stdin, limits, the
    program's environment and arguments, and ``own``: the source file kept apart from
    the workdir (a session's), or None when it is among ``files`` (a one-shot run's)."""

    files: dict[str, bytes]
    stdin: bytes | None
    limits: Limits
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    own: dict[str, bytes] | None = None
    live: bool = False  # watched as it goes (a stream, a session): no output held back
    exact: bool = False  # by the real command, not a pre-loaded or pre-started runtime


def prepare_run(
    source_file: str,
    code: object,
    stdin: object,
    files: Mapping[str, Any] | None,
    limits: object,
    default_limits: Limits,
    *,
    env: object = None,
    args: object = None,
    own_source: bool = False,
    live: bool = False,
    exact: bool = False,
) -> RunInput:
    """Check everything a run is given, before any container is touched.

    ``own_source`` (sessions): the source goes apart from the workdir, so the user's
    files may have its name; otherwise (a fresh sandbox) it is written among them."""
    text = check_code(code)
    data = check_stdin(stdin)
    all_files = check_files(files)
    lim = check_limits(limits) if limits is not None else default_limits
    variables, arguments = check_env(env), check_args(args)
    source = _utf8(text, "code")
    own = {source_file: source} if own_source else None
    if own is None:
        if source_file in all_files or any(p.startswith(source_file + "/") for p in all_files):
            raise InvalidInput(f"files may not replace the source file {source_file!r}")
        all_files[source_file] = source
    size = sum(len(d) for d in all_files.values()) + len(data or b"")
    size += len(source) if own is not None else 0
    if size > MAX_FILES_BYTES:
        raise InvalidInput(
            f"code, files and stdin add up to {size} bytes, over the {MAX_FILES_BYTES}-byte cap"
        )
    if size - len(data or b"") > lim.disk_mb * 1024 * 1024:
        raise InvalidInput(
            f"the files do not fit the {lim.disk_mb} MB workdir; raise Limits(disk_mb=...)"
        )
    if not isinstance(exact, bool):
        raise InvalidInput(f"exact must be True or False, not {exact!r}")
    return RunInput(all_files, data, lim, variables, arguments, own, live, exact)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps a server on this machine (servers that run code
    refuse anything else without a token)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
