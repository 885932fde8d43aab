"""Judge0's submissions: create (one, or a batch), read (one, a batch, a page), delete.

A submission is stored (In Queue) before the answer says 201; ``wait=true`` holds the
answer until a worker has stored its result (or ``wait_timeout`` passes).
"""

from __future__ import annotations

import math
import re
from json import JSONDecodeError
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .._judge0 import CONFIG, STATUSES
from .._render import serialize
from .._requests import Errors, parse_submission
from .._service import Judge0Service
from .._settings import Settings
from .._store import UNFINISHED, QueueFull, TooManyInFlight
from .._submission import Submission
from ._common import Service, authorized, error, flag, requested_fields

router = APIRouter()

PER_PAGE = 20  # Judge0's Submission.per_page
MAX_OFFSET = 2**63 - 1  # the largest offset will_paginate takes (SQL's bigint)
_RUBY_INTEGER = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+(?:_[0-9]+)*)")


def ruby_to_i(value: str | None, default: int) -> int:
    """A query parameter as Judge0 reads it (``params[:page].try(:to_i) || default``):
    Ruby's ``String#to_i`` takes the leading integer and is 0 when there is none."""
    if value is None:
        return default
    match = _RUBY_INTEGER.match(value)
    return int(match.group(1).replace("_", "")) if match else 0


async def _body(request: Request) -> Any:
    """The request's JSON or form body, or the 400 refusing it."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if kind == "application/x-www-form-urlencoded":
        try:
            return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            return error(400, "request body must be UTF-8")
    try:
        return await request.json()
    except (JSONDecodeError, UnicodeDecodeError, ValueError):
        return error(400, "request body must be JSON")


def _parse(body: Any, b64: bool, cfg: Settings) -> tuple[Submission | None, Errors]:
    return parse_submission(
        body,
        b64=b64,
        max_source_bytes=cfg.max_source_bytes,
        max_io_bytes=cfg.max_io_bytes,
        allow_network=cfg.allow_network,
    )


async def _store_new(
    service: Judge0Service, request: Request, records: list[Submission]
) -> Response | None:
    """Store ``records`` (durably: 201 follows), or the answer refusing them. The client
    the caps count for is its ``X-Auth-User``, else its address."""
    client = request.headers.get("x-auth-user") or (request.client.host if request.client else "")
    try:
        await service.submit(records, client)
    except QueueFull:
        return error(503, "queue is full")
    except TooManyInFlight as exc:
        return error(429, str(exc))
    return None


def _batch_too_big(count: int) -> JSONResponse | None:
    limit = CONFIG["max_submission_batch_size"]
    if count > limit:
        return error(
            400, f"number of submissions in a batch should be less than or equal to {limit}"
        )
    return None


@router.post("/submissions")
async def create(request: Request, service: Service) -> Response:
    fields = requested_fields(request)
    if isinstance(fields, JSONResponse):
        return fields
    body = await _body(request)
    if isinstance(body, JSONResponse):
        return body
    b64 = flag(request, "base64_encoded")
    record, errors = _parse(body, b64, service.settings)
    if record is None:
        return JSONResponse(errors, status_code=422)
    refused = await _store_new(service, request, [record])
    if refused is not None:
        return refused
    if not flag(request, "wait"):
        return JSONResponse({"token": record.token}, status_code=201)
    done = await service.wait_final(record.token)
    return JSONResponse(serialize(done or record, fields, b64), status_code=201)


@router.get("/submissions")
async def index(request: Request, service: Service) -> Response:
    if not authorized(request, service.settings):
        return Response(status_code=403)
    fields = requested_fields(request)
    if isinstance(fields, JSONResponse):
        return fields
    page = ruby_to_i(request.query_params.get("page"), 1)
    per_page = ruby_to_i(request.query_params.get("per_page"), PER_PAGE)
    if page <= 0:
        return error(400, f"invalid page: {page}")
    if per_page <= 0:  # Judge0 refuses a negative one; 0 divides by zero in will_paginate
        return error(400, f"invalid per_page: {per_page}")
    offset = (page - 1) * per_page
    if offset > MAX_OFFSET:  # will_paginate's InvalidPage, which Rails answers 404
        return error(404, f"invalid offset: {offset}")
    records, total = await service.store.page(page, min(per_page, MAX_OFFSET))
    # will_paginate's arithmetic: an empty list is one page
    pages = max(1, math.ceil(total / per_page))
    b64 = flag(request, "base64_encoded")
    return JSONResponse(
        {
            "submissions": [serialize(r, fields, b64) for r in records],
            "meta": {
                "current_page": page,
                "next_page": page + 1 if page < pages else None,
                "prev_page": page - 1 if page > 1 else None,
                "total_pages": pages,
                "total_count": total,
            },
        }
    )


# the batch routes come before /submissions/{token}, which would take "batch"
@router.post("/submissions/batch")
async def create_batch(request: Request, service: Service) -> Response:
    body = await _body(request)
    if isinstance(body, JSONResponse):
        return body
    items = body.get("submissions") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        return error(400, "there should be at least one submission in a batch")
    too_big = _batch_too_big(len(items))
    if too_big is not None:
        return too_big
    b64 = flag(request, "base64_encoded")
    answer: list[dict[str, Any]] = []
    good: list[Submission] = []
    for item in items:
        record, errors = _parse(item, b64, service.settings)
        if record is None:
            answer.append(errors)
        else:
            good.append(record)
            answer.append({"token": record.token})
    refused = await _store_new(service, request, good)
    if refused is not None:
        return refused
    return JSONResponse(answer, status_code=201 if good else 422)


@router.get("/submissions/batch")
async def show_batch(request: Request, service: Service) -> Response:
    fields = requested_fields(request)
    if isinstance(fields, JSONResponse):
        return fields
    raw = request.headers.get("tokens") or request.query_params.get("tokens") or ""
    tokens = [t.strip() for t in raw.split(",") if t.strip()]
    if not tokens:
        return error(400, "there should be at least one submission in a batch")
    too_big = _batch_too_big(len(tokens))
    if too_big is not None:
        return too_big
    found = await service.store.get_many(tokens)
    b64 = flag(request, "base64_encoded")
    return JSONResponse(
        {"submissions": [serialize(found[t], fields, b64) if t in found else None for t in tokens]}
    )


async def _one(
    token: str, request: Request, service: Judge0Service
) -> tuple[Submission, tuple[str, ...]] | Response:
    """The stored submission and the fields asked for, or the error answer."""
    fields = requested_fields(request)
    if isinstance(fields, JSONResponse):
        return fields
    record = (await service.store.get_many([token])).get(token)
    if record is None:
        return error(404, f"submission with token {token} not found")
    return record, fields


@router.get("/submissions/{token}")
async def show(token: str, request: Request, service: Service) -> Response:
    found = await _one(token, request, service)
    if isinstance(found, Response):
        return found
    record, fields = found
    return JSONResponse(serialize(record, fields, flag(request, "base64_encoded")))


@router.delete("/submissions/{token}")
async def destroy(token: str, request: Request, service: Service) -> Response:
    if not authorized(request, service.settings):
        return Response(status_code=403)
    if not service.settings.enable_submission_delete:
        return error(400, "delete not allowed")
    found = await _one(token, request, service)
    if isinstance(found, Response):
        return found
    record, fields = found
    sid = record.status_id
    if sid in UNFINISHED:
        return error(
            400,
            f"submission cannot be deleted because its status is {sid} ({STATUSES[sid]})",
        )
    await service.store.delete(token)
    return JSONResponse(serialize(record, fields, True))
