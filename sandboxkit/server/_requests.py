"""Validating a submission request the way Judge0 (Rails) does: every problem is
collected as ``{field: [message, ...]}`` and answered with 422, never an exception."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime, timezone
from typing import Any

from .._languages import REGISTRY
from ._judge0 import CONFIG, IN_QUEUE, LANGUAGES

Errors = dict[str, list[str]]

# (field, default key in CONFIG, max key in CONFIG, integer?)
_NUMERIC = (
    ("cpu_time_limit", "cpu_time_limit", "max_cpu_time_limit", False),
    ("cpu_extra_time", "cpu_extra_time", "max_cpu_extra_time", False),
    ("wall_time_limit", "wall_time_limit", "max_wall_time_limit", False),
    ("memory_limit", "memory_limit", "max_memory_limit", True),
    ("stack_limit", "stack_limit", "max_stack_limit", True),
    (
        "max_processes_and_or_threads",
        "max_processes_and_or_threads",
        "max_max_processes_and_or_threads",
        True,
    ),
    ("max_file_size", "max_file_size", "max_max_file_size", True),
    ("number_of_runs", "number_of_runs", "max_number_of_runs", True),
)
_NOT_ALLOWED = {
    "compiler_options": "setting compiler options is not allowed",
    "command_line_arguments": "setting command line arguments is not allowed",
    "additional_files": "additional files are not allowed",
    "callback_url": "callbacks are not allowed",
}
_BOOLEANS = (
    "enable_per_process_and_thread_time_limit",
    "enable_per_process_and_thread_memory_limit",
    "enable_network",
)


def now() -> str:
    """Judge0's timestamp format (UTC, milliseconds, ``Z``)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def available_languages() -> dict[int, tuple[str, str]]:
    """The Judge0 ids whose language is registered here."""
    names = set(REGISTRY.names())
    return {i: v for i, v in LANGUAGES.items() if v[0] in names}


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
    value: Any, field: str, maximum: float, integer: bool, errors: Errors
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
    if value <= 0:
        errors.setdefault(field, []).append("must be greater than 0")
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


def parse_submission(
    body: Any, *, b64: bool, max_source_bytes: int, max_io_bytes: int
) -> tuple[dict[str, Any] | None, Errors]:
    """A new submission record (queued) from a request body, or the field errors."""
    errors: Errors = {}
    if not isinstance(body, dict):
        return None, {"submission": ["must be a JSON object"]}
    source = _text(body.get("source_code"), "source_code", b64, errors)
    if source is not None and not source.strip() and "source_code" not in errors:
        source = None
    if source is None and "source_code" not in errors:
        errors["source_code"] = ["can't be blank"]
    elif source is not None and len(source.encode("utf-8", "surrogateescape")) > max_source_bytes:
        errors["source_code"] = [f"is too long (maximum is {max_source_bytes} bytes)"]

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
        if language_id is None or language_id not in available_languages():
            errors["language_id"] = [f"language with id {raw_lang} doesn't exist"]

    stdin = _text(body.get("stdin"), "stdin", b64, errors)
    expected = _text(body.get("expected_output"), "expected_output", b64, errors)
    for name, value in (("stdin", stdin), ("expected_output", expected)):
        if value is not None and len(value.encode("utf-8", "surrogateescape")) > max_io_bytes:
            errors[name] = [f"is too long (maximum is {max_io_bytes} bytes)"]

    record: dict[str, Any] = {}
    for field, default_key, max_key, integer in _NUMERIC:
        value = body.get(field)
        if value is None:
            record[field] = CONFIG[default_key]
        else:
            record[field] = _number(value, field, CONFIG[max_key], integer, errors)
    for field, message in _NOT_ALLOWED.items():
        value = body.get(field)
        if value not in (None, ""):
            errors.setdefault(field, []).append(message)
        record[field] = None
    for field in _BOOLEANS:
        value = body.get(field)
        if value not in (None, False, "false"):
            errors.setdefault(field, []).append("this option cannot be enabled")
        record[field] = False
    redirect = body.get("redirect_stderr_to_stdout")
    if redirect not in (None, True, False, "true", "false"):
        errors.setdefault("redirect_stderr_to_stdout", []).append("must be true or false")
    record["redirect_stderr_to_stdout"] = redirect in (True, "true")

    if errors:
        return None, errors
    record.update(
        token=str(uuid.uuid4()),
        source_code=source,
        language_id=language_id,
        stdin=stdin,
        expected_output=expected,
        status_id=IN_QUEUE,
        created_at=now(),
        finished_at=None,
        stdout=None,
        stderr=None,
        compile_output=None,
        message=None,
        exit_code=None,
        exit_signal=None,
        time=None,
        wall_time=None,
        memory=None,
    )
    return record, {}
