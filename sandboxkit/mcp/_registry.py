"""Sessions of the MCP server's clients: who owns which, how many, idle since when.

Pure state (the sandboxes are opened and closed by ``_server``): a client may only use
its own sessions, the counts are capped, and the ids are unguessable.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ._caps import Caps, ToolInputError

T = TypeVar("T")


@dataclass
class Entry(Generic[T]):
    session_id: str
    client: str
    language: str
    sandbox: T
    last_used: float = field(default_factory=time.monotonic)


class SessionRegistry(Generic[T]):
    """Sessions by id, each owned by one client (a connection)."""

    def __init__(self, caps: Caps, clock: Callable[[], float] = time.monotonic) -> None:
        self.caps = caps
        self.clock = clock
        self._entries: dict[str, Entry[T]] = {}
        self._reserved: dict[str, int] = {}  # client -> sessions being opened

    def __len__(self) -> int:
        return len(self._entries)

    def count(self, client: str) -> int:
        own = sum(1 for e in self._entries.values() if e.client == client)
        return own + self._reserved.get(client, 0)

    def reserve(self, client: str) -> None:
        """Claim room for one new session of ``client``, or refuse with the cap hit."""
        if self.count(client) >= self.caps.sessions_per_client:
            raise ToolInputError(
                f"this client already has {self.caps.sessions_per_client} open sessions "
                "(the server's cap); close one with close_session first"
            )
        if len(self._entries) + sum(self._reserved.values()) >= self.caps.max_sessions:
            raise ToolInputError(
                f"the server has its maximum of {self.caps.max_sessions} sessions open; "
                "close one or retry later"
            )
        self._reserved[client] = self._reserved.get(client, 0) + 1

    def release(self, client: str) -> None:
        """Give back a reservation (the session could not be opened, or was added)."""
        left = self._reserved.get(client, 0) - 1
        if left > 0:
            self._reserved[client] = left
        else:
            self._reserved.pop(client, None)

    def add(self, client: str, language: str, sandbox: T) -> Entry[T]:
        self.release(client)
        entry = Entry(secrets.token_urlsafe(12), client, language, sandbox, self.clock())
        self._entries[entry.session_id] = entry
        return entry

    def get(self, client: str, session_id: str) -> Entry[T]:
        """The client's own session (another client's is as unknown as a wrong id)."""
        entry = self._entries.get(session_id) if isinstance(session_id, str) else None
        if entry is None or entry.client != client:
            raise ToolInputError(
                f"no open session {session_id!r}: it was closed, idled out, or never "
                "existed; open one with create_session"
            )
        entry.last_used = self.clock()
        return entry

    def pop(self, client: str, session_id: str) -> Entry[T]:
        entry = self.get(client, session_id)
        del self._entries[session_id]
        return entry

    def pop_client(self, client: str) -> list[Entry[T]]:
        """Every session of a client that went away."""
        gone = [e for e in self._entries.values() if e.client == client]
        for e in gone:
            del self._entries[e.session_id]
        return gone

    def pop_idle(self) -> list[Entry[T]]:
        """Every session unused for longer than the idle timeout."""
        cutoff = self.clock() - self.caps.idle_timeout
        gone = [e for e in self._entries.values() if e.last_used < cutoff]
        for e in gone:
            del self._entries[e.session_id]
        return gone

    def pop_all(self) -> list[Entry[T]]:
        gone = list(self._entries.values())
        self._entries.clear()
        return gone

    def sessions(self, client: str) -> list[Entry[T]]:
        return [e for e in self._entries.values() if e.client == client]
