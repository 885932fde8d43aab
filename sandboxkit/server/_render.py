"""A stored submission as Judge0 renders it: the fields asked for, decimals as strings,
text as UTF-8 or base64 (exact bytes either way)."""

from __future__ import annotations

import base64
from typing import Any

from ._judge0 import DECIMAL_FIELDS, STATUSES, TEXT_FIELDS
from ._requests import archived_languages, available_languages
from ._submission import Submission

NOT_UTF8 = (
    "some attributes for this submission cannot be converted to UTF-8, use base64_encoded=true"
)


class NotUtf8(Exception):
    """A text attribute holds bytes that are not UTF-8 and the client asked for text."""


def _encode(value: str, b64: bool) -> str:
    """A stored text field for the answer. Stored text keeps exact bytes (invalid UTF-8
    as surrogate escapes): base64 gives those bytes back; plain text only when they are
    UTF-8 (else Judge0's 400, raised as NotUtf8)."""
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # another lone surrogate, sent as JSON text
        raw = value.encode("utf-8", "replace")
    if b64:
        return base64.b64encode(raw).decode()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise NotUtf8 from None


def serialize(record: Submission, fields: tuple[str, ...], b64: bool) -> dict[str, Any]:
    """A submission as Judge0 renders it (decimals as strings, text maybe base64)."""
    langs = {**available_languages(), **{i: ("", n) for i, n in archived_languages().items()}}
    out: dict[str, Any] = {}
    for name in fields:
        if name == "status":
            sid = record.status_id
            out[name] = {"id": sid, "description": STATUSES[sid]}
        elif name == "language":
            lid = record.language_id
            out[name] = {"id": lid, "name": langs.get(lid, ("", str(lid)))[1]}
        elif name in TEXT_FIELDS:
            value = getattr(record, name)
            out[name] = _encode(value, b64) if value else None
        elif name in DECIMAL_FIELDS:
            value = getattr(record, name)
            out[name] = (
                None
                if value is None
                else (f"{value:.3f}" if name in ("time", "wall_time") else str(float(value)))
            )
        else:
            out[name] = getattr(record, name)
    return out
