"""A Piston request read into a job: the checks of Piston's ``get_job`` (api/src/api/v2.js)
in its order and with its messages, its defaults and caps, its files (the first UTF-8 one
is the program, the others lie beside it), and the sandbox limits they come to.

Pure: no engine, no I/O. A bad request raises :class:`JobError`, answered 400.
"""

from __future__ import annotations

import base64
import binascii
import math
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from .._models import Limits
from ._runtimes import Runtime, find_runtime
from ._settings import PistonSettings

ENCODINGS = ("base64", "hex", "utf8")
MAX_SECONDS = 3600.0  # the longest wall or CPU time a sandbox takes
MB = 1024 * 1024


class JobError(Exception):
    """The request cannot run; the message is Piston's (answered 400 ``{message}``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Job:
    """What to run: the runtime, the program (the first UTF-8 file), the files beside
    it, stdin and arguments, and the run stage's limits."""

    runtime: Runtime
    code: str
    files: dict[str, bytes]
    stdin: str
    args: tuple[str, ...]
    limits: Limits


def _is_number(value: object) -> TypeGuard[float]:
    """A JSON number (JavaScript's ``typeof value === 'number'``; not a boolean)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_limits(body: Mapping[str, Any], language: str, cfg: PistonSettings) -> None:
    """Piston's checks of the six stage limits: a number, within the configured cap
    (a cap <= 0 is none), not negative. A value that is 0 or absent is not checked."""
    for constraint in ("memory_limit", "timeout", "cpu_time"):
        for stage in ("compile", "run"):
            name = f"{stage}_{constraint}"
            value = body.get(name)
            if not value:
                continue
            if not _is_number(value):
                raise JobError(f"If specified, {name} must be a number")
            cap = cfg.limit(language, name)
            if cap <= 0:
                continue
            if value > cap:
                raise JobError(f"{name} cannot exceed the configured limit of {cap}")
            if value < 0:
                raise JobError(f"{name} must be non-negative")


def _decode(content: str, encoding: str) -> bytes:
    """File content as Node's ``Buffer.from(content, encoding)`` reads it: base64 in
    either alphabet with or without padding, hex up to the first bad pair."""
    if encoding == "base64":
        standard = content.replace("-", "+").replace("_", "/")
        cleaned = "".join(c for c in standard if c.isascii() and (c.isalnum() or c in "+/"))
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4))
    if encoding == "hex":
        out = bytearray()
        for i in range(0, len(content) - 1, 2):
            try:
                out += binascii.unhexlify(content[i : i + 2])
            except (binascii.Error, ValueError):
                break
        return bytes(out)
    return content.encode("utf-8", "replace")


def _file_name(raw: object, index: int) -> str:
    """The file's path in the job's directory, Piston's default name for a nameless
    one; a path leaving the directory is refused (Piston's own words)."""
    name = raw if isinstance(raw, str) and raw else f"file{index}.code"
    # Node's path.join keeps a leading "/" inside the directory
    clean = posixpath.normpath(name.lstrip("/") or ".")
    if clean == ".." or clean.startswith("../"):
        raise JobError(f'File path "{name}" tries to escape parent directory: {clean}')
    return clean


def _seconds(value: object, configured: int) -> float:
    """A stage time given in ms, in seconds: the request's when it gives one, else the
    configured one (which may be <= 0: no limit, so the longest a sandbox takes)."""
    ms = float(value) if _is_number(value) and value > 0 else float(configured)
    if ms <= 0:
        return MAX_SECONDS
    return min(MAX_SECONDS, max(0.001, ms / 1000))


def run_limits(
    body: Mapping[str, Any], language: str, cfg: PistonSettings, *, live: bool = False
) -> Limits:
    """The sandbox limits of the run stage. ``live`` (the WebSocket): output is not
    capped by ``output_max_size``, as Piston streams it without counting."""
    asked = body.get("run_memory_limit")
    memory = asked if _is_number(asked) and asked else cfg.limit(language, "run_memory_limit")
    memory_mb = (
        cfg.no_limit_memory_mb if memory <= 0 else min(65536, max(16, math.ceil(memory / MB)))
    )
    file_size = cfg.limit(language, "max_file_size")
    output = cfg.limit(language, "output_max_size")
    defaults = Limits()
    return Limits(
        time=_seconds(body.get("run_timeout"), cfg.limit(language, "run_timeout")),
        cpu_time=_seconds(body.get("run_cpu_time"), cfg.limit(language, "run_cpu_time")),
        memory_mb=memory_mb,
        pids=min(4096, max(8, cfg.limit(language, "max_process_count"))),
        open_files=min(65536, max(16, cfg.limit(language, "max_open_files"))),
        file_size_mb=min(4096.0, file_size / MB) if file_size > 0 else defaults.file_size_mb,
        output_bytes=defaults.output_bytes if live else min(64_000_000, max(1, output)),
    )


def _files(raw: Sequence[Any]) -> list[tuple[str, bytes, bool]]:
    """(name, content, is a program file) of each file, in order; later ones of the
    same name replace earlier ones, as Piston writes them in turn."""
    out: list[tuple[str, bytes, bool]] = []
    for i, file in enumerate(raw):
        encoding = file.get("encoding")
        encoding = encoding if encoding in ENCODINGS else "utf8"
        content = _decode(file["content"], encoding)
        out.append((_file_name(file.get("name"), i), content, encoding == "utf8"))
    return out


def check_request(body: object) -> tuple[str, str, list[dict[str, Any]]]:
    """Piston's first checks, those needing no runtime: the language, version and files
    (each with its content) a request names."""
    if not isinstance(body, dict):
        raise JobError("language is required as a string")
    language, version, files = body.get("language"), body.get("version"), body.get("files")
    if not language or not isinstance(language, str):
        raise JobError("language is required as a string")
    if not version or not isinstance(version, str):
        raise JobError("version is required as a string")
    if not isinstance(files, list):
        raise JobError("files is required as an array")
    for i, file in enumerate(files):
        if not isinstance(file, dict) or not isinstance(file.get("content"), str):
            raise JobError(f"files[{i}].content is required as a string")
    return language, version, files


def parse_job(
    body: object, runtimes: Sequence[Runtime], cfg: PistonSettings, *, live: bool = False
) -> Job:
    """``body`` (a decoded JSON request) as a job, or :class:`JobError` with Piston's
    message. ``live``: for the WebSocket, whose stdin comes as it runs."""
    language, version, files = check_request(body)
    assert isinstance(body, dict)  # checked: mypy does not follow it through the call
    runtime = find_runtime(runtimes, language, version)
    if runtime is None:
        raise JobError(f"{language}-{version} runtime is unknown")
    if not any(not f.get("encoding") or f.get("encoding") == "utf8" for f in files):
        raise JobError("files must include at least one utf8 encoded file")
    _check_limits(body, runtime.language, cfg)

    stdin = body.get("stdin")
    stdin = "" if stdin is None else stdin
    if not isinstance(stdin, str):
        raise JobError("stdin must be a string")
    if not stdin.endswith("\n"):
        stdin += "\n"  # Piston ends stdin with a newline
    args = body.get("args")
    args = [] if args is None else args
    if not isinstance(args, list) or not all(isinstance(a, str) or _is_number(a) for a in args):
        raise JobError("args must be an array of strings")

    decoded = _files(files)
    main_name, main, _ = next(f for f in decoded if f[2])
    beside = {name: content for name, content, _ in decoded if name != main_name}
    source = runtime.spec.source_file
    if source in beside:
        raise JobError(
            f'files: "{source}" is where this server writes the program ({main_name}); '
            "rename that other file"
        )
    return Job(
        runtime=runtime,
        code=main.decode("utf-8", "replace"),
        files=beside,
        stdin=stdin,
        args=tuple(a if isinstance(a, str) else _js_number(a) for a in args),
        limits=run_limits(body, runtime.language, cfg, live=live),
    )


def _js_number(value: float) -> str:
    """A number as JavaScript writes it (``1`` not ``1.0``), as Node passes it on."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
