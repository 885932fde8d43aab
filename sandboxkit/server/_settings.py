"""How the Judge0 server runs: :class:`Settings`, with Judge0's names where Judge0 has
the setting."""

from __future__ import annotations

from dataclasses import dataclass, field

from .._egress.policy import Egress
from .._sandbox_pool import SandboxPool
from ..piston import PistonSettings
from ._judge0 import CONFIG


@dataclass
class Settings:
    """How the server runs, with Judge0's names where Judge0 has the setting.

    ``db``: a SQLite file (one process judges), or a ``postgresql://`` URL (a fleet:
    API nodes and ``sandboxkit worker`` processes on many hosts share it).
    ``workers``: submissions this process judges at once; 0 makes an API-only node
    (PostgreSQL only: someone else must judge).
    ``auth_token`` (Judge0's AUTHN_TOKEN): when set, every request must carry it in the
    ``X-Auth-Token`` header or query parameter (required beyond loopback).
    ``authz_token`` (AUTHZ_TOKEN): ``X-Auth-User`` value that unlocks the listing and
    deletion of submissions; unset, nobody is authorized (403), as in Judge0.
    ``allow_network``: honour ``enable_network``; off, it is a 422. ``network``: what
    such a submission may reach, an :class:`~sandboxkit.Egress` policy (the names it
    allows, through the egress gateway); None gives it the engine's whole bridge.
    ``cors_origins``: CORS allowed origins (Judge0's ALLOW_ORIGIN, ``*`` by default).
    ``max_queue_size`` (MAX_QUEUE_SIZE): In Queue submissions past which a new one is
    answered 503. ``max_in_flight_per_user``: submissions one client (its
    ``X-Auth-User``, else its address) may have queued or being judged; past it, 429
    (0: no cap). ``lease_seconds``: how long a worker holds a submission between
    renewals. ``wait_timeout``: the longest a ``wait=true`` request is held.
    ``piston``: Piston's v2 API at ``/api/v2`` with these settings (None: not served).
    ``exact``: run interpreted submissions by their real command (``python3 script.py``)
    instead of the pre-loaded runtime, as Judge0's isolate does (``SandboxPool(exact=)``).
    """

    db: str = "sandboxkit-judge0.sqlite3"
    auth_token: str | None = None
    authz_token: str | None = None
    allow_network: bool = False
    network: Egress | None = None
    enable_submission_delete: bool = False
    cors_origins: tuple[str, ...] = ("*",)
    callback_tries: int = 3
    callback_timeout: float = 5.0
    workers: int = 2
    warm_languages: tuple[str, ...] = ("python",)
    pool_size: int = 1
    exact: bool = False
    max_source_bytes: int = 512 * 1024
    max_io_bytes: int = 16 * 1024 * 1024
    max_request_bytes: int = 64 * 1024 * 1024
    max_queue_size: int = int(CONFIG["max_queue_size"])
    max_in_flight_per_user: int = 0
    lease_seconds: float = 10.0
    wait_timeout: float = 300.0
    piston: PistonSettings | None = field(default_factory=PistonSettings)
    pool: SandboxPool | None = field(default=None, repr=False)  # an existing one, not closed
