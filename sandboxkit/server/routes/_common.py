"""What every router shares: the service (a dependency on ``app.state``), the token
checks, and Judge0's ways of reading a request and answering an error."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import JSONResponse

from .._judge0 import ALL_FIELDS, DEFAULT_FIELDS
from .._service import Judge0Service
from .._settings import Settings


def _service(request: Request) -> Judge0Service:
    service: Judge0Service = request.app.state.service
    return service


#: a route parameter typed ``Service`` receives the application's service
Service = Annotated[Judge0Service, Depends(_service)]


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def flag(request: Request, name: str) -> bool:
    return request.query_params.get(name) == "true"


def requested_fields(request: Request) -> tuple[str, ...] | JSONResponse:
    """The attributes asked for with ``fields`` (Judge0's defaults when absent, all of
    them for ``*``), or the 400 naming the unknown ones."""
    raw = request.query_params.get("fields")
    if raw is None or raw.strip() == "":
        return DEFAULT_FIELDS
    names = [f.strip() for f in raw.split(",") if f.strip()]
    if "*" in names:
        return ALL_FIELDS
    invalid = [f for f in names if f not in ALL_FIELDS]
    if invalid:
        return error(400, f"invalid fields: [{', '.join(invalid)}]")
    return tuple(dict.fromkeys(names)) or DEFAULT_FIELDS


def authenticated(request: Request, settings: Settings) -> bool:
    """The request carries the auth token (Judge0's AUTHN), or none is set."""
    if settings.auth_token is None:
        return True
    given = request.headers.get("x-auth-token") or request.query_params.get("X-Auth-Token", "")
    return hmac.compare_digest(given.encode(), settings.auth_token.encode())


def authorized(request: Request, settings: Settings) -> bool:
    """The request's user may list and delete submissions (Judge0's AUTHZ); nobody may
    when no authz token is set."""
    if settings.authz_token is None:
        return False
    given = request.headers.get("x-auth-user") or request.query_params.get("X-Auth-User", "")
    return hmac.compare_digest(given.encode(), settings.authz_token.encode())
