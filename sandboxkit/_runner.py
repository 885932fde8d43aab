"""Host side of a run: the job sent to the agent, the frames read back, the verdict.

The agent enforces the wall limit itself (it kills every process of the run and reports
``timeout``); the host keeps a backstop deadline a little later and, if the agent has not
answered by then, kills the whole container and still reports ``timeout`` with the
output read so far. Both paths keep partial output.
"""

from __future__ import annotations

import codecs
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from . import _protocol as wire
from ._container import Box, Resources, encode_files
from ._errors import EngineError, SandboxError, SandboxkitError
from ._languages import LanguageSpec, language_env
from ._models import Event, Limits, RunResult, Status

HOST_GRACE = 3.0  # seconds the host waits past the agent's own deadline


def resources_for(limits: Limits) -> Resources:
    return Resources(memory_mb=limits.memory_mb, pids=limits.pids, cpus=limits.cpus)


def compile_limits(spec: LanguageSpec, limits: Limits) -> Limits:
    """Limits of a compile step: the compiler may need more than the program it builds."""
    return Limits(
        time=spec.compile_time,
        memory_mb=max(limits.memory_mb, spec.compile_memory_mb),
        pids=max(limits.pids, spec.compile_pids),
        output_bytes=max(limits.output_bytes, 1_000_000),
        disk_mb=limits.disk_mb,
        file_size_mb=max(limits.file_size_mb, 256),
        cpus=limits.cpus,
    )


def rlimits(limits: Limits) -> dict[str, int]:
    return {
        "cpu": limits.cpu_seconds,
        "fsize": limits.file_size_mb * 1024 * 1024,
        "nofile": limits.open_files,
        "core": 0,
    }


def run_job(
    spec: LanguageSpec,
    argv: tuple[str, ...],
    limits: Limits,
    *,
    files: Mapping[str, bytes] | None = None,
    stdin: bytes | None = None,
    interactive: bool = False,
    keep_processes: bool = False,
    inline_python: bool = False,
    kernel: bool = False,
) -> dict[str, Any]:
    """The job frame for one program run."""
    return {
        "op": "run",
        "argv": list(argv),
        "python_inline": inline_python,
        "kernel": kernel,
        "files": encode_files(files or {}),
        "stdin": None if stdin is None else encode_files({"s": stdin})["s"],
        "interactive": interactive,
        "keep_processes": keep_processes,
        "time": limits.time,
        "output_bytes": limits.output_bytes,
        "rlimits": rlimits(limits),
        "env": language_env(spec),
        "cwd": "/work",
    }


@dataclass
class _Collected:
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)


BIG_JOB = 1 << 20


def _job_size(job: Mapping[str, Any]) -> int:
    files = job.get("files") or {}
    return sum(len(v) for v in files.values()) + len(job.get("stdin") or "")


async def encode_job(job: Mapping[str, Any]) -> bytes:
    """The job frame's payload; a large one is encoded off the event loop."""
    if _job_size(job) < BIG_JOB:
        return json.dumps(job).encode()
    return await anyio.to_thread.run_sync(lambda: json.dumps(job).encode())


async def build_job(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """``run_job`` off the event loop when its files and stdin are large (base64 work)."""
    files = kwargs.get("files") or {}
    size = sum(len(v) for v in files.values()) + len(kwargs.get("stdin") or b"")
    if size < BIG_JOB:
        return run_job(*args, **kwargs)
    return await anyio.to_thread.run_sync(lambda: run_job(*args, **kwargs))


async def final_result(events: AsyncIterator[Event]) -> RunResult:
    """Drain a run's events and return the result its ``exit`` event carries."""
    result: RunResult | None = None
    async for event in events:
        if event.kind == "exit":
            result = event.result
    if result is None:
        raise SandboxError("the run ended without a result")
    return result


def verdict(exit_info: Mapping[str, Any]) -> Status:
    """Status from the agent's exit report. OOM first: it explains the other symptoms."""
    if exit_info.get("oom_kills", 0) > 0:
        return "oom"
    reason = exit_info.get("reason")
    if reason == "output_limit":
        return "output_limit"
    if reason in ("timeout", "cpu_timeout"):
        return "timeout"
    if exit_info.get("exit_code") == 0 and exit_info.get("signal") is None:
        return "ok"
    return "error"


async def _raise_if_engine_down(box: Box, cause: BaseException) -> None:
    """A container lost mid-run: EngineError if the engine itself stopped answering."""
    try:
        with anyio.fail_after(5):
            await box.engine.info()
    except (SandboxkitError, TimeoutError) as exc:
        raise EngineError(
            f"the Docker engine went away during the run ({exc}); the run was lost. "
            "Retry once the engine is back (`sandboxkit doctor` checks it)."
        ) from cause


def _text(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", errors="replace")


async def execute(
    box: Box,
    job: dict[str, Any],
    limits: Limits,
    language: str,
    *,
    status_on_failure: Status | None = None,
    on_sent: Callable[[], None] | None = None,
    salvage: bool = False,
) -> AsyncGenerator[Event, None]:
    """Send ``job`` to ``box`` and yield output events, then the ``exit`` event.

    ``status_on_failure`` turns a failing exit into another status (``compile_error``).
    If the backstop deadline passes, the box is destroyed and the run reports timeout.
    If the consumer stops early (break, cancel), the program is stopped: with
    ``salvage`` (sessions) by killing it and reading its run to the end, so the box stays
    usable; otherwise, or if that fails, by destroying the box.
    """
    keep = limits.output_bytes
    got = _Collected()
    decoders = {
        wire.STDOUT: codecs.getincrementaldecoder("utf-8")(errors="replace"),
        wire.STDERR: codecs.getincrementaldecoder("utf-8")(errors="replace"),
    }
    host_truncated = False
    started = time.monotonic()
    finished = False
    sent = False
    try:
        await box.send(wire.JOB, await encode_job(job))
        sent = True
        if on_sent is not None:
            on_sent()
        # the clock starts once the job is with the agent: uploading files is not run time
        started = time.monotonic()
        deadline = started + limits.time + HOST_GRACE
        exit_info: dict[str, Any] | None = None
        while exit_info is None:
            remaining = deadline - time.monotonic()
            kind: bytes | None = None
            payload = b""
            if remaining > 0:
                with anyio.move_on_after(remaining):
                    kind, payload = await box.recv()
            if kind is None:
                # the agent did not end the run in time: kill the container from here
                await box.destroy()
                exit_info = {
                    "reason": "timeout",
                    "exit_code": None,
                    "signal": 9,
                    "wall": time.monotonic() - started,
                }
                break
            if kind in (wire.STDOUT, wire.STDERR):
                buf = got.stdout if kind == wire.STDOUT else got.stderr
                room = keep - len(buf)
                if room < len(payload):
                    host_truncated = True
                    payload = payload[: max(room, 0)]
                if payload:
                    buf += payload
                    text = decoders[kind].decode(payload)
                    if text:
                        yield Event(kind="stdout" if kind == wire.STDOUT else "stderr", data=text)
            elif kind == wire.EXIT:
                exit_info = json.loads(payload)
            elif kind == wire.FAULT:
                raise SandboxError(f"sandbox agent fault: {payload.decode(errors='replace')}")
            else:
                raise SandboxError(f"unexpected frame {kind!r} from the sandbox agent")
        for k, dec in decoders.items():
            tail = dec.decode(b"", final=True)
            if tail:
                yield Event(kind="stdout" if k == wire.STDOUT else "stderr", data=tail)
        status = verdict(exit_info)
        if status == "error" and status_on_failure is not None:
            status = status_on_failure
        rss = exit_info.get("max_rss_kb")
        result = RunResult(
            status=status,
            exit_code=exit_info.get("exit_code"),
            signal=exit_info.get("signal"),
            stdout=_text(got.stdout),
            stderr=_text(got.stderr),
            truncated=bool(
                host_truncated
                or exit_info.get("truncated_stdout")
                or exit_info.get("truncated_stderr")
            ),
            duration=float(exit_info.get("wall") or 0.0),
            cpu_time=exit_info.get("cpu"),
            memory_mb=round(rss / 1024, 2) if rss else None,
            language=language,
        )
        finished = True
        yield Event(kind="exit", result=result)
    except SandboxError as exc:
        finished = True
        if box.closed:
            # sandboxkit itself closed it (pool closed, session reclaimed): not the user
            raise SandboxError(
                "the sandbox was closed by sandboxkit during the run "
                "(its pool or session was closed)"
            ) from exc
        gone = sent and not box.alive
        await box.destroy()
        if not gone:
            raise
        await _raise_if_engine_down(box, exc)
        # The engine is fine, yet the container ended mid-run. Only the user's program can
        # reach its supervisor (same uid: prlimit, signals), so this is the program's
        # failure, reported as a status like any other crash, never as an exception.
        note = "sandboxkit: the sandbox ended during the run (its supervisor was killed)\n"
        oom = False
        with anyio.move_on_after(5):
            try:
                since = time.time() - (time.monotonic() - started)
                oom = await box.engine.had_oom(box.cid, since)
            except SandboxkitError:
                pass
        lost: Status = "oom" if oom else status_on_failure or "error"
        yield Event(
            kind="exit",
            result=RunResult(
                status=lost,
                exit_code=None,
                signal=9 if oom else None,
                stdout=_text(got.stdout),
                stderr=_text(got.stderr) + note,
                truncated=host_truncated,
                duration=time.monotonic() - started,
                language=language,
            ),
        )
    finally:
        # the consumer left mid-run (break, cancel, error): nothing may keep running
        if not finished and not (salvage and sent and await _stop_and_drain(box)):
            await box.destroy()


SALVAGE_TIMEOUT = 5.0


async def _stop_and_drain(box: Box) -> bool:
    """Kill the running program and read its run to the end; whether the box survived."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(SALVAGE_TIMEOUT):
        try:
            await box.send(wire.KILL)
            while True:
                kind, _payload = await box.recv()
                if kind in (wire.EXIT, wire.FAULT):
                    return box.alive
        except SandboxError:
            return False
    return False
