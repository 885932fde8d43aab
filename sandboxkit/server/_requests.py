"""Validating a submission request the way Judge0 (Rails) does: every problem is
collected as ``{field: [message, ...]}`` and answered with 422, never an exception."""

from __future__ import annotations

import base64
import binascii
import io
import shlex
import uuid
import zipfile
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from .._languages import REGISTRY
from ._judge0 import CONFIG, LANGUAGES, MULTI_FILE, UNAVAILABLE
from ._submission import Submission

Errors = dict[str, list[str]]

# (field, default key in CONFIG, max key in CONFIG, integer?, minimum, minimum allowed?)
# Judge0 CE 1.13.1's ranges: memory at least 2048 KB, wall time at least 1 s.
_NUMERIC = (
    ("cpu_time_limit", "cpu_time_limit", "max_cpu_time_limit", False, 0, True),
    ("cpu_extra_time", "cpu_extra_time", "max_cpu_extra_time", False, 0, True),
    ("wall_time_limit", "wall_time_limit", "max_wall_time_limit", False, 1, True),
    ("memory_limit", "memory_limit", "max_memory_limit", True, 2048, True),
    ("stack_limit", "stack_limit", "max_stack_limit", True, 0, True),
    (
        "max_processes_and_or_threads",
        "max_processes_and_or_threads",
        "max_max_processes_and_or_threads",
        True,
        1,
        True,
    ),
    ("max_file_size", "max_file_size", "max_max_file_size", True, 0, True),
    ("number_of_runs", "number_of_runs", "max_number_of_runs", True, 1, True),
)
_BOOLEANS = (
    "enable_per_process_and_thread_time_limit",
    "enable_per_process_and_thread_memory_limit",
    "redirect_stderr_to_stdout",
    "enable_network",
)
MAX_OPTIONS = 512  # compiler_options and command_line_arguments, characters


def now() -> str:
    """Judge0's timestamp format (UTC, milliseconds, ``Z``)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def available_languages() -> dict[int, tuple[str, str]]:
    """The Judge0 ids whose language is registered here."""
    names = set(REGISTRY.names())
    return {i: v for i, v in LANGUAGES.items() if v[0] in names}


def archived_languages() -> dict[int, str]:
    """Judge0 ids answered as archived: no toolchain here (or its spec unregistered)."""
    names = set(REGISTRY.names())
    out = {i: name for i, (name, _why) in UNAVAILABLE.items()}
    out.update({i: v[1] for i, v in LANGUAGES.items() if v[0] not in names})
    return out


def _text(value: Any, field: str, b64: bool, errors: Errors) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not b64:
            return str(value)
        errors.setdefault(field, []).append("must be a string")
        return None
    if not b64:
        return value
    try:
        raw = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        errors.setdefault(field, []).append("is not valid base64")
        return None
    return raw.decode("utf-8", errors="surrogateescape")


def _number(
    value: Any,
    field: str,
    maximum: float,
    integer: bool,
    errors: Errors,
    minimum: float = 0,
    inclusive: bool = False,
) -> float | int | None:
    if isinstance(value, bool):
        errors.setdefault(field, []).append("is not a number")
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            errors.setdefault(field, []).append("is not a number")
            return None
    if not isinstance(value, (int, float)) or value != value:
        errors.setdefault(field, []).append("is not a number")
        return None
    if value < minimum or (value == minimum and not inclusive):
        errors.setdefault(field, []).append(
            f"must be greater than {'or equal to ' if inclusive else ''}{minimum}"
        )
        return None
    if value > maximum:
        errors.setdefault(field, []).append(f"must be less than or equal to {maximum}")
        return None
    if integer:
        if value != int(value):
            errors.setdefault(field, []).append("must be an integer")
            return None
        return int(value)
    return float(value)


def _boolean(value: Any, field: str, errors: Errors) -> bool:
    if value in (None, False, "false", "0", 0, ""):
        return False
    if value in (True, "true", "1", 1):
        return True
    errors.setdefault(field, []).append("must be true or false")
    return False


def _options(value: Any, field: str, errors: Errors) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        errors.setdefault(field, []).append("must be a string")
        return None
    if len(value) > MAX_OPTIONS:
        errors.setdefault(field, []).append(f"is too long (maximum is {MAX_OPTIONS} characters)")
        return None
    try:
        shlex.split(value)
    except ValueError as exc:
        errors.setdefault(field, []).append(f"cannot be split into arguments: {exc}")
        return None
    return value


def _url(value: Any, errors: Errors) -> str | None:
    if value in (None, ""):
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        errors.setdefault("callback_url", []).append("is not a valid url")
        return None
    return str(value)


def unzip_files(data: bytes, max_bytes: int) -> dict[str, bytes]:
    """The files of a zip (Judge0's ``additional_files``); ValueError if it is not one,
    is too big once extracted, or names a path outside the workdir."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = [i for i in archive.infolist() if not i.is_dir()]
        if sum(i.file_size for i in infos) > max_bytes:
            raise ValueError(f"extracted size is over {max_bytes // 1024} KB")
        files: dict[str, bytes] = {}
        for info in infos:
            name = info.filename
            parts = PurePosixPath(name).parts
            if not parts or name.startswith("/") or ".." in parts or "\0" in name:
                raise ValueError(f"file name {name!r} is outside the working directory")
            files[name] = archive.read(info)
            if len(files[name]) > info.file_size:
                raise ValueError("the archive lies about its sizes")
        return files
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, RuntimeError) as exc:
        raise ValueError(f"is not a valid zip archive ({exc})") from None


def _additional_files(value: Any, errors: Errors) -> str | None:
    """Always base64 (whatever ``base64_encoded`` says), as in Judge0."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        errors.setdefault("additional_files", []).append("must be a base64 string")
        return None
    try:
        raw = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        errors.setdefault("additional_files", []).append("is not valid base64")
        return None
    try:
        unzip_files(raw, int(CONFIG["max_extract_size"]) * 1024)
    except ValueError as exc:
        errors.setdefault("additional_files", []).append(str(exc))
        return None
    return base64.b64encode(raw).decode()


def parse_submission(
    body: Any,
    *,
    b64: bool,
    max_source_bytes: int,
    max_io_bytes: int,
    allow_network: bool = False,
) -> tuple[Submission | None, Errors]:
    """A new submission (queued) from a request body, or the field errors."""
    errors: Errors = {}
    if not isinstance(body, dict):
        return None, {"submission": ["must be a JSON object"]}

    language_id: int | None = None
    raw_lang = body.get("language_id")
    if raw_lang is None or raw_lang == "":
        errors["language_id"] = ["can't be blank"]
    else:
        try:
            language_id = int(raw_lang)
            if isinstance(raw_lang, bool) or (
                isinstance(raw_lang, float) and raw_lang != language_id
            ):
                raise ValueError
        except (TypeError, ValueError):
            language_id = None
        if language_id is not None and language_id in archived_languages():
            errors["language_id"] = [
                f"language with id {language_id} is archived and cannot be used anymore"
            ]
        elif language_id is None or language_id not in available_languages():
            errors["language_id"] = [f"language with id {raw_lang} doesn't exist"]
    multi_file = language_id == MULTI_FILE

    # Judge0's model: source_code present, except for a multi-file program, where it must
    # be blank (its program is all in additional_files)
    source = _text(body.get("source_code"), "source_code", b64, errors)
    if source is not None and not source.strip() and "source_code" not in errors:
        source = None
    if multi_file and source is not None:
        errors["source_code"] = ["must be blank"]
    elif source is None and "source_code" not in errors and not multi_file:
        errors["source_code"] = ["can't be blank"]
    elif source is not None and len(source.encode("utf-8", "surrogateescape")) > max_source_bytes:
        errors["source_code"] = [f"is too long (maximum is {max_source_bytes} bytes)"]

    stdin = _text(body.get("stdin"), "stdin", b64, errors)
    expected = _text(body.get("expected_output"), "expected_output", b64, errors)
    for name, value in (("stdin", stdin), ("expected_output", expected)):
        if value is not None and len(value.encode("utf-8", "surrogateescape")) > max_io_bytes:
            errors[name] = [f"is too long (maximum is {max_io_bytes} bytes)"]

    options: dict[str, Any] = {}  # the limits and options, checked
    for field, default_key, max_key, integer, minimum, inclusive in _NUMERIC:
        value = body.get(field)
        if value is None or value == "":
            options[field] = CONFIG[default_key]
        else:
            options[field] = _number(
                value, field, CONFIG[max_key], integer, errors, minimum, inclusive
            )
    for field in _BOOLEANS:
        options[field] = _boolean(body.get(field), field, errors)
    if options["enable_network"] and not allow_network:
        errors.setdefault("enable_network", []).append("enabling network is not allowed")

    options["compiler_options"] = _options(body.get("compiler_options"), "compiler_options", errors)
    if options["compiler_options"] and language_id in available_languages():
        spec = REGISTRY.get(LANGUAGES[language_id][0])
        if spec.compile is None or multi_file:
            errors.setdefault("compiler_options", []).append(
                "setting compiler options is only allowed for compiled languages"
            )
    options["command_line_arguments"] = _options(
        body.get("command_line_arguments"), "command_line_arguments", errors
    )
    options["callback_url"] = _url(body.get("callback_url"), errors)
    options["additional_files"] = _additional_files(body.get("additional_files"), errors)
    if multi_file and options["additional_files"] is None and "additional_files" not in errors:
        errors["additional_files"] = ["can't be blank"]

    if errors or language_id is None:  # no language id is an error already
        return None, errors
    submission = Submission(
        token=str(uuid.uuid4()),
        source_code=source,
        language_id=language_id,
        stdin=stdin,
        expected_output=expected,
        created_at=now(),
        **options,
    )
    return submission, {}
