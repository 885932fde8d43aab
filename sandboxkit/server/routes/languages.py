"""Judge0's statuses and languages: the catalogue a client reads before it submits."""

from __future__ import annotations

import shlex
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..._languages import get_language
from .._judge0 import MULTI_FILE, STATUSES
from .._requests import archived_languages, available_languages
from ._common import error

router = APIRouter()


def language_row(lid: int, *, details: bool) -> dict[str, Any] | None:
    """A language as Judge0's serializer shows it; None for an unknown id."""
    langs, archived = available_languages(), archived_languages()
    if lid in langs:
        spec = get_language(langs[lid][0])
        row: dict[str, Any] = {"id": lid, "name": langs[lid][1], "is_archived": False}
        if details:
            multi = lid == MULTI_FILE
            row.update(
                source_file=None if multi else spec.source_file,
                compile_cmd=(None if multi or spec.compile is None else shlex.join(spec.compile)),
                run_cmd=None if multi else shlex.join(spec.run),
            )
        return row
    if lid in archived:
        row = {"id": lid, "name": archived[lid], "is_archived": True}
        if details:
            row.update(source_file=None, compile_cmd=None, run_cmd=None)
        return row
    return None


@router.get("/statuses")
async def statuses() -> list[dict[str, Any]]:
    return [{"id": i, "description": d} for i, d in STATUSES.items()]


@router.get("/languages")
async def languages() -> list[dict[str, Any]]:
    langs = available_languages()
    return [{"id": i, "name": langs[i][1]} for i in sorted(langs, key=lambda i: langs[i][1])]


@router.get("/languages/all")  # before /languages/{language_id}, which would take "all"
async def all_languages() -> list[dict[str, Any]]:
    ids = {*available_languages(), *archived_languages()}
    rows = [language_row(i, details=False) for i in ids]
    return sorted((r for r in rows if r is not None), key=lambda r: str(r["name"]))


@router.get("/languages/{language_id}")
async def language(language_id: str) -> JSONResponse:
    row = language_row(int(language_id), details=True) if language_id.isdigit() else None
    if row is None:
        return error(404, f"language with id {language_id} doesn't exist")
    return JSONResponse(row)
