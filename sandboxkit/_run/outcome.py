"""How a run ended, decided once from the agent's exit report: its ``status`` and the
limit that ended it (``ended_by``), so the two can never disagree."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from .._models import EndedBy, Status

if TYPE_CHECKING:
    from .._protocol import ExitReport

SIGXFSZ = 25  # a write past RLIMIT_FSIZE


class Outcome(NamedTuple):
    status: Status
    ended_by: EndedBy | None


def outcome(report: ExitReport) -> Outcome:
    """Status and ``ended_by`` of a run. An OOM kill first: it explains the other
    symptoms (a killed process, a run that then went past its time)."""
    if report.get("oom_kills", 0) > 0:
        return Outcome("oom", "memory")
    reason = report.get("reason")
    if reason == "output_limit":
        return Outcome("output_limit", "output")
    if reason == "timeout":
        return Outcome("timeout", "wall_time")
    if reason == "cpu_timeout":
        return Outcome("timeout", "cpu_time")
    if report.get("signal") == SIGXFSZ:
        return Outcome("error", "file_size")
    if report.get("exit_code") == 0 and report.get("signal") is None:
        return Outcome("ok", None)
    return Outcome("error", None)
