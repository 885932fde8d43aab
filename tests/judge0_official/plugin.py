"""A pytest plugin that runs the official ``judge0`` client's own test suite (from its
sdist, unchanged) against ``sandboxkit serve``.

- ``ce_client`` points at our server (``SANDBOXKIT_JUDGE0_URL``, on loopback);
- the cloud clients' fixtures skip, and so do the tests that resolve the package's
  implicit cloud clients (they would call ce.judge0.com);
- a guard refuses, before any name lookup, every HTTP request and every socket lookup
  that is not for loopback: nothing this suite does can leave the machine.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import judge0
import pytest

CLOUD_FIXTURES = (
    "atd_ce_client",
    "atd_extra_ce_client",
    "rapid_ce_client",
    "rapid_extra_ce_client",
    "judge0_cloud_ce_client",
    "judge0_cloud_extra_ce_client",
)
# tests that resolve judge0.JUDGE0_IMPLICIT_*_CLIENT, i.e. the cloud
CLOUD_TESTS = (
    "test_resolve_client_with_flavor",
    "test_resolve_client_no_common_client_for_submissions",
    "test_resolve_client_common_ce_client",
    "test_resolve_client_common_extra_ce_client",
)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.name.split("[")[0] in CLOUD_TESTS:
            item.add_marker(pytest.mark.skip(reason="uses a Judge0 cloud client"))


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    send = httpx.HTTPTransport.handle_request
    lookup = socket.getaddrinfo

    def guarded_send(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        if request.url.host not in LOOPBACK:
            raise httpx.ConnectError(f"refused by the test guard: {request.url.host}")
        return send(self, request)

    def guarded_lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in (*LOOPBACK, None):
            raise OSError(f"refused by the test guard: {host}")
        return lookup(host, *args, **kwargs)

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", guarded_send)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_lookup)
    yield


@pytest.fixture
def ce_client() -> judge0.Client:
    url = os.environ["SANDBOXKIT_JUDGE0_URL"]
    return judge0.Client(url, {}, retry_strategy=judge0.MaxWaitTime(300))


def _cloud() -> None:
    pytest.skip("a Judge0 cloud client: not reachable from here")


for _name in CLOUD_FIXTURES:
    globals()[_name] = pytest.fixture(name=_name)(_cloud)
