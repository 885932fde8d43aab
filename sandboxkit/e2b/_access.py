"""envd's access token, as envd checks it: a ``secure`` sandbox (every one E2B 2.x's SDK
creates) answers only requests carrying its token in ``X-Access-Token``; its file URLs
may carry a signature instead (``sandbox.download_url``/``upload_url``: no header, a
``signature`` of the path, operation, user and token, optionally with an expiry).

Refusals are envd's: 401 with ``{"code": 401, "message": ...}``. A sandbox created with
``secure=False`` (older SDKs) has no token and accepts any request, as envd does.

And who a command runs as: the SDK names its ``user`` in HTTP Basic; "root" is uid 0 where
the server allows it (``Sandbox(root=True)``), E2B's permission error elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from ._registry import Entry, Registry

TOKEN_HEADER = b"x-access-token"
UNAUTHORIZED = (
    "unauthorized access, please provide a valid access token or method signing if supported"
)
# envd's routes that a signature may open instead of the header: the file routes
SIGNED_ROUTES = {("GET", "/files"): "read", ("POST", "/files"): "write"}
# reached without any token: envd's health probe; the code interpreter's context routes,
# which the e2b-code-interpreter SDK calls without the token (it sends it to /execute)
OPEN_ROUTES = {("GET", "/health")}
INTERPRETER_OPEN_PREFIX = "/contexts"


def user_of(authorization: str | None) -> str | None:
    """The user an envd request names (the SDK's ``user=``): HTTP Basic's user name,
    no password. None: the default user."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


def signature(path: str, operation: str, user: str, token: str, expiration: int | None) -> str:
    """envd's v1 file signature: base64 (unpadded) of the SHA-256 of
    ``path:operation:user:token[:expiration]``."""
    parts = [path, operation, user, token] + ([str(expiration)] if expiration is not None else [])
    digest = hashlib.sha256(":".join(parts).encode()).digest()
    return "v1_" + base64.b64encode(digest).rstrip(b"=").decode("ascii")


def signed_by(
    entries: Iterable[Entry], method: str, path: str, query: Mapping[str, str]
) -> Entry | None:
    """The sandbox whose token signed this file URL (None: no sandbox's did).

    A URL from ``sandbox.download_url``/``upload_url`` is opened by any HTTP client, which
    sends no ``E2b-Sandbox-Id`` header; on E2B the sandbox is the URL's host. Here one
    address serves every sandbox, so the signature names it: it is keyed by the sandbox's
    secret token, which only that sandbox's creator holds. The expiry is not checked here
    (an expired URL still names its sandbox, which then refuses it as envd does)."""
    operation = SIGNED_ROUTES.get((method, path))
    signed = query.get("signature")
    if operation is None or signed is None:
        return None
    raw_expiry = query.get("signature_expiration")
    try:
        expiration = int(raw_expiry) if raw_expiry is not None else None
    except ValueError:
        return None
    file_path, user = query.get("path", ""), query.get("username", "")
    for entry in entries:
        token = entry.access_token
        if token is not None and _same(
            signed, signature(file_path, operation, user, token, expiration)
        ):
            return entry
    return None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def refusal(
    token: str | None,
    method: str,
    path: str,
    headers: Mapping[bytes, bytes],
    query: Mapping[str, str],
    *,
    interpreter: bool = False,
) -> str | None:
    """Why this request may not reach a sandbox whose token is ``token`` (None: it may)."""
    if token is None:
        return None
    given = headers.get(TOKEN_HEADER, b"").decode("latin-1")
    if given and _same(given, token):
        return None
    if interpreter:
        return None if path.startswith(INTERPRETER_OPEN_PREFIX) else UNAUTHORIZED
    if (method, path) in OPEN_ROUTES:
        return None
    operation = SIGNED_ROUTES.get((method, path))
    if operation is None:
        return UNAUTHORIZED
    if given:
        return "access token present in header but does not match"
    signed = query.get("signature")
    if signed is None:
        return "missing signature query parameter"
    raw_expiry = query.get("signature_expiration")
    try:
        expiration = int(raw_expiry) if raw_expiry is not None else None
    except ValueError:
        return "invalid signature"
    expected = signature(
        query.get("path", ""), operation, query.get("username", ""), token, expiration
    )
    if not _same(signed, expected):
        return "invalid signature"
    if expiration is not None and expiration < time.time():
        return "signature is already expired"
    return None


# ---------------------------------------------------------------------- users
ROOT_HOME = "/root"
ROOT_ENV = {"HOME": ROOT_HOME, "USER": "root"}


def as_user(
    registry: Registry, entry: Entry, ctx: RequestContext[Any, Any]
) -> Literal["root"] | None:
    """The SDK's ``user=`` (HTTP Basic's name): "root" runs as uid 0 where this server
    allows it (gVisor, userns-remap: see Registry.root_refusal), else E2B's permission
    error saying why; any other name is the sandbox's user."""
    if user_of(ctx.request_headers.get("authorization")) != "root":
        return None
    if not entry.root:
        why = registry.root_refusal or "this sandbox was made without root"
        raise ConnectError(Code.PERMISSION_DENIED, why)
    return "root"
