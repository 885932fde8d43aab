"""Server-side caps of the MCP server (from ``sandboxkit mcp`` flags): what a client may
ask for. Pure: limits are clamped here, sessions counted in ``_registry``."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from .._models import Limits


class ToolInputError(ValueError):
    """A tool's arguments were refused (the message goes back to the model as a tool
    error, ``isError`` true)."""


class Caps(BaseModel):
    """What one MCP server allows its clients."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default_timeout: float = Field(10.0, gt=0, le=3600, description="a run's wall seconds")
    max_timeout: float = Field(60.0, gt=0, le=3600, description="larger timeouts are clamped")
    memory_mb: int = Field(256, ge=16, le=65536, description="memory of every sandbox")
    output_bytes: int = Field(
        100_000, ge=1, le=64_000_000, description="stdout/stderr bytes kept per stream"
    )
    sessions_per_client: int = Field(4, ge=0, le=1024)
    max_sessions: int = Field(16, ge=0, le=4096, description="sessions of all clients")
    idle_timeout: float = Field(
        600.0, gt=0, description="seconds a session may sit unused before it is closed"
    )

    def limits(self, timeout: float | None) -> Limits:
        """The limits of one run: ``timeout`` clamped to ``max_timeout``; nonsense refused."""
        if timeout is None:
            wall = min(self.default_timeout, self.max_timeout)
        else:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise ToolInputError("timeout must be a number of seconds")
            if not math.isfinite(timeout) or timeout <= 0:
                raise ToolInputError(f"timeout must be a positive number of seconds, not {timeout}")
            wall = min(float(timeout), self.max_timeout)
        return Limits(time=wall, memory_mb=self.memory_mb, output_bytes=self.output_bytes)

    def lowered(self, timeout: float | None) -> str | None:
        """What the model is told when its ``timeout`` is over the cap (None: it is not)."""
        if timeout is None or isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            return None
        if timeout <= self.max_timeout:
            return None
        return (
            f"timeout {timeout:g} s is over this server's cap: the run had "
            f"{self.max_timeout:g} s (--max-timeout)"
        )
