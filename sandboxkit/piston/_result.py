"""A stage's outcome in Piston's shape: what its ``job.js`` builds from isolate's report.

``status`` and ``message`` are isolate's (``RE`` "Exited with error status 1", ``SG``
"Caught fatal signal 11", ``TO`` "Time limit exceeded" for CPU time and "... (wall
clock)" for wall time, ``XX`` for an internal error) or Piston's own for output past
``output_max_size`` (``OL`` "stdout length exceeded", ``EL`` "stderr length exceeded"),
and a stage ended by a limit reports ``signal: "SIGKILL"``, as Piston does. A stage ended
by its memory limit is killed by the kernel: ``SG`` with signal 9, as under isolate's
cgroup. Times are milliseconds; memory is peak resident memory in Piston's unit
(kilobytes x 1000).

Pure: no engine, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._models import Event, RunResult
from ._catalogue import SIGNALS

SIGKILL = 9


@dataclass(frozen=True)
class Ending:
    """How a stage ended, as Piston reports it."""

    status: str | None
    message: str | None
    code: int | None
    signal: str | None


def ending(result: RunResult, output_cap: int | None) -> Ending:
    """``result``'s ending in Piston's terms. ``output_cap``: the bytes kept per stream
    past which Piston ends a stage (None: not counted, as on the WebSocket)."""
    if output_cap is not None and result.truncated:
        if len(result.stdout_bytes) >= output_cap:
            return Ending("OL", "stdout length exceeded", None, "SIGKILL")
        if len(result.stderr_bytes) >= output_cap:
            return Ending("EL", "stderr length exceeded", None, "SIGKILL")
    if result.ended_by == "wall_time":
        return Ending("TO", "Time limit exceeded (wall clock)", None, "SIGKILL")
    if result.ended_by == "cpu_time":
        return Ending("TO", "Time limit exceeded", None, "SIGKILL")
    if result.status == "oom" or result.ended_by == "memory":
        return Ending("SG", f"Caught fatal signal {SIGKILL}", None, SIGNALS[SIGKILL])
    if result.signal is not None:
        return Ending(
            "SG", f"Caught fatal signal {result.signal}", None, SIGNALS.get(result.signal)
        )
    if result.exit_code == 0:
        return Ending(None, None, 0, None)
    if result.exit_code is not None:
        return Ending("RE", f"Exited with error status {result.exit_code}", result.exit_code, None)
    return Ending("XX", "the sandbox ended the stage without an exit status", None, None)


def stage(
    result: RunResult,
    output: str,
    output_cap: int | None,
    *,
    stdout: str | None = None,
    stderr: str | None = None,
) -> dict[str, Any]:
    """One stage (``run`` or ``compile``) as Piston's response holds it, keys in its
    order. ``output``: stdout and stderr as they came; ``stdout``/``stderr`` replace the
    result's (a compile step's text, which the result keeps in its stderr)."""
    end = ending(result, output_cap)
    memory_kb = round(result.memory_mb * 1024) if result.memory_mb is not None else None
    return {
        "signal": end.signal,
        "stdout": result.stdout if stdout is None else stdout,
        "stderr": result.stderr if stderr is None else stderr,
        "code": end.code,
        "output": output,
        "memory": memory_kb * 1000 if memory_kb is not None else None,
        "message": end.message,
        "status": end.status,
        "cpu_time": round(result.cpu_time * 1000) if result.cpu_time is not None else None,
        "wall_time": round(result.duration * 1000),
    }


def failed_stage(message: str) -> dict[str, Any]:
    """A stage that sandboxkit or the engine could not run: Piston's internal error."""
    return {
        "signal": None,
        "stdout": "",
        "stderr": "",
        "code": None,
        "output": "",
        "memory": None,
        "message": message,
        "status": "XX",
        "cpu_time": None,
        "wall_time": None,
    }


def compile_succeeded(warnings: str) -> dict[str, Any]:
    """A compile step that ended well, known only by what it printed: a run follows it
    in the same sandbox without reporting its own times (they are unknown: null)."""
    return {
        "signal": None,
        "stdout": "",
        "stderr": warnings,
        "code": 0,
        "output": warnings,
        "memory": None,
        "message": None,
        "status": None,
        "cpu_time": None,
        "wall_time": None,
    }


def split_compiler_output(events: list[Event], result: RunResult) -> tuple[str, list[Event]]:
    """The compiler's output (warnings) and the program's own events.

    A compiled run streams the compiler's output first, as one ``stderr`` event, and
    keeps only the program's own stderr in its result: the stderr streamed beyond the
    result's is the compiler's, and it is that first event."""
    streamed = sum(len(e.data_bytes) for e in events if e.kind == "stderr")
    extra = streamed - len(result.stderr_bytes)
    if extra > 0 and events and events[0].kind == "stderr" and len(events[0].data_bytes) == extra:
        return events[0].data, events[1:]
    return "", events


def response(
    language: str,
    version: str,
    run: dict[str, Any],
    compiled: dict[str, Any] | None,
) -> dict[str, Any]:
    """Piston's answer to an execute: ``compile`` only for a compiled language, and a
    compile that failed stands for the run too (Piston's backward compatibility)."""
    body: dict[str, Any] = {}
    if compiled is not None:
        body["compile"] = compiled
    body.update(run=run, language=language, version=version)
    return body
