"""Judge0's authentication and authorization checks."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ._common import Service, authorized

router = APIRouter()


@router.post("/authenticate")
async def authenticate() -> Response:
    return Response(status_code=200)  # the guard answered 401 already if it must


@router.post("/authorize")
async def authorize(request: Request, service: Service) -> Response:
    return Response(status_code=200 if authorized(request, service.settings) else 403)
