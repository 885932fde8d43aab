"""The E2B server's sandboxes: each one a sandboxkit session (``sk.Sandbox``) kept by id,
with what E2B tracks beside it (template, metadata, env vars, end time, paused state).

A sandbox past its end time is killed, as E2B does: a sweeper task looks twice a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import anyio

from .._background import Terminal
from .._default import default_pool
from .._egress import Egress
from .._errors import InvalidInput
from .._models import SandboxMetrics
from .._sandbox import Sandbox, check_root_allowed
from .._sandbox_pool import SandboxPool
from ._templates import Template, resolve
from ._watchers import Watcher

SWEEP_EVERY = 0.5  # seconds between looks for sandboxes past their end time
MAX_TIMEOUT = 24 * 3600  # E2B's own ceiling on a sandbox's life (Pro tier)


@dataclass
class Entry:
    """One E2B sandbox: its session (``None`` while paused) and E2B's fields."""

    sandbox_id: str
    template: str
    session: Sandbox | None
    started_at: float
    end_at: float
    metadata: dict[str, str] = field(default_factory=dict)
    envs: dict[str, str] = field(default_factory=dict)
    # stored and reported; egress by domain is wired in by the egress work (see docs/e2b.md)
    allow_internet_access: bool | None = None
    network: dict[str, Any] | None = None
    snapshot_id: str | None = None  # set while paused
    root: bool = False  # its session runs user="root" commands as uid 0 (see Registry.root)
    # envd's access token of a ``secure`` sandbox (E2B 2.x: every one the SDK creates):
    # its envd and interpreter routes refuse a request without it (see _access)
    access_token: str | None = None
    # the terminals (``sandbox.pty``) by pid, and the polled watchers
    # (``files.watch_dir`` of the sync SDK) by id: they go with the sandbox
    terminals: dict[int, Terminal] = field(default_factory=dict)
    watchers: dict[str, Watcher] = field(default_factory=dict)
    # its metrics measured so far, oldest first (``get_metrics(start, end)`` reads them)
    metrics: list[SandboxMetrics] = field(default_factory=list)

    @property
    def state(self) -> str:
        return "paused" if self.session is None else "running"

    def live(self) -> Sandbox:
        if self.session is None:
            raise LookupError(self.sandbox_id)
        return self.session


def egress_of(allow_internet_access: bool | None, network: dict[str, Any] | None) -> Egress | None:
    """sandboxkit's egress policy for E2B's create fields: ``network.allowOut`` names the
    domains the sandbox may reach (``denyOut``'s names are refused among them). E2B's
    default, the whole internet, is not offered (docs/e2b.md): without ``allowOut`` a
    sandbox has no network, as every sandboxkit sandbox by default. InvalidInput for an
    entry that is not a domain name (E2B's CIDRs and addresses)."""
    allow = (network or {}).get("allowOut") or []
    if allow_internet_access is False or not allow:
        return None
    deny = (network or {}).get("denyOut") or []
    return Egress(allow=list(allow), deny=[d for d in deny if _is_name(d)])


def _is_name(entry: object) -> bool:
    """A domain (not an address or a CIDR: E2B's deny lists hold those too)."""
    text = str(entry)
    return "/" not in text and not text.replace(".", "").replace(":", "").isdigit()


class Full(Exception):
    """More sandboxes than ``--max-sandboxes``."""


class Registry:
    def __init__(
        self,
        pool: SandboxPool | None = None,
        max_sandboxes: int = 64,
        templates: dict[str, Template] | None = None,
    ) -> None:
        self._pool = pool
        self.templates = templates if templates is not None else resolve()
        # why user="root" is refused on this server (None: its sandboxes allow it):
        # known once the pool's engines are (see start)
        self.root_refusal: str | None = "the server has not started"
        self.max_sandboxes = max_sandboxes
        self._entries: dict[str, Entry] = {}
        self._sweeper: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> None:
        """Start the sweeper; find whether this server's sandboxes may run root
        commands: under gVisor or userns-remap (sandboxkit never runs uid 0 under
        plain runc, where it is the host's uid 0)."""
        pool = self._pool or await default_pool()
        try:
            await check_root_allowed(pool, pool.runtime)
        except InvalidInput as exc:
            self.root_refusal = (
                f"user 'root' is not available on this server: {exc}. Start the server "
                "with `sandboxkit e2b --runtime runsc`, or run commands as 'user'"
            )
        else:
            self.root_refusal = None
        self._sweeper = asyncio.create_task(self._sweep())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        with anyio.CancelScope(shield=True):
            for sandbox_id in list(self._entries):
                await self.kill(sandbox_id)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            now = time.time()
            for entry in list(self._entries.values()):
                # a paused sandbox does not age, as on E2B
                if entry.session is not None and entry.end_at <= now:
                    await self.kill(entry.sandbox_id)

    # ------------------------------------------------------------------ operations
    def get(self, sandbox_id: str) -> Entry | None:
        return self._entries.get(sandbox_id)

    def all(self) -> list[Entry]:
        return list(self._entries.values())

    async def create(
        self,
        template: str,
        timeout: float,
        metadata: dict[str, str],
        envs: dict[str, str],
        allow_internet_access: bool | None,
        network: dict[str, Any] | None,
        secure: bool = True,
    ) -> Entry:
        if len(self._entries) >= self.max_sandboxes:
            raise Full(f"at most {self.max_sandboxes} sandboxes at once")
        spec = self.templates[template]
        session = Sandbox(
            spec.language,
            pool=self._pool,
            keep_state=spec.keep_state,
            idle_timeout=None,
            root=self.root_refusal is None,
            network=egress_of(allow_internet_access, network),
        )
        await session.open()
        now = time.time()
        sandbox_id = "i" + secrets.token_hex(10)
        entry = Entry(
            sandbox_id=sandbox_id,
            template=template,
            session=session,
            started_at=now,
            end_at=now + timeout,
            metadata=metadata,
            envs=envs,
            allow_internet_access=allow_internet_access,
            network=network,
            access_token=secrets.token_urlsafe(24) if secure else None,
            root=self.root_refusal is None,
        )
        self._entries[sandbox_id] = entry
        return entry

    async def kill(self, sandbox_id: str) -> bool:
        entry = self._entries.pop(sandbox_id, None)
        if entry is None:
            return False
        for watcher in entry.watchers.values():
            await watcher.stop()
        entry.watchers.clear()
        entry.terminals.clear()
        if entry.session is not None:
            await entry.session.aclose()
        if entry.snapshot_id is not None:
            from .._snapshot.session import delete_snapshot

            with contextlib.suppress(Exception):
                await delete_snapshot(entry.snapshot_id)
        return True

    def set_timeout(self, entry: Entry, timeout: float) -> None:
        entry.end_at = time.time() + timeout

    async def pause(self, entry: Entry) -> None:
        session = entry.live()
        for watcher in entry.watchers.values():
            await watcher.stop()
        entry.watchers.clear()
        entry.terminals.clear()  # a pause without memory ends them; resumed, they are new
        snapshot = await session.pause()
        entry.snapshot_id, entry.session = snapshot.id, None
        entry.end_at = entry.end_at - time.time()  # kept as the time left while paused

    async def resume(self, entry: Entry, timeout: float) -> None:
        if entry.session is not None:
            entry.end_at = max(entry.end_at, time.time() + timeout)
            return
        assert entry.snapshot_id is not None
        session = await Sandbox.resume(entry.snapshot_id, pool=self._pool, idle_timeout=None)
        entry.root = entry.root and session.root
        # its end and its session together, with no await between: while paused, end_at
        # holds the time left, which the sweeper would read as long past
        entry.end_at, entry.session = time.time() + timeout, session
        snapshot_id, entry.snapshot_id = entry.snapshot_id, None
        from .._snapshot.session import delete_snapshot

        with contextlib.suppress(Exception):
            await delete_snapshot(snapshot_id)
