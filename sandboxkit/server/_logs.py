"""Logging for the server and workers: plain text, or one JSON object per line
(``--log-format json``) whose extra fields (``token`` on every line about a
submission, ``worker``) are kept as keys, for a log pipeline to index."""

from __future__ import annotations

import logging
import sys
from typing import Literal

LogFormat = Literal["text", "json"]


def configure_logging(fmt: LogFormat, level: str) -> None:
    """Route every logger (ours and uvicorn's) to stderr in ``fmt``."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
