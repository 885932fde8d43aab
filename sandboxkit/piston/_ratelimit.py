"""Per-client rate limiting as Piston's public instance did it: one execute per client
every ``interval`` (emkc.org: 200 ms), others answered 429 with its message.

Pure (the clock is passed in); opt-in (``PistonSettings.rate_limit_ms``).
"""

from __future__ import annotations


class RateLimiter:
    """Admits one request per ``interval_ms`` per client key (its address).

    A refused request does not push the client's next slot back: a client retrying in a
    tight loop gets through as soon as its interval has passed."""

    def __init__(self, interval_ms: int) -> None:
        self.interval = interval_ms / 1000
        self.message = f"Requests limited to 1 per {interval_ms}ms"
        self._last: dict[str, float] = {}

    def admit(self, client: str, now: float) -> bool:
        last = self._last.get(client)
        if last is not None and now - last < self.interval:
            return False
        self._last[client] = now
        if len(self._last) > 10_000:  # forget clients whose interval has passed
            self._last = {k: t for k, t in self._last.items() if now - t < self.interval}
        return True
