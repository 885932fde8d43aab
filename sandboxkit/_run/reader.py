"""A run's frames read back from the agent: output events as they come, then one
``exit`` event with the ``RunResult``.

The agent enforces the wall limit itself (it kills every process of the run and reports
``timeout``); the host keeps a backstop deadline a little later and, if the agent has not
answered by then, kills the whole container and still reports ``timeout`` with the
output read so far. Both paths keep partial output.
"""

from __future__ import annotations

import codecs
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TYPE_CHECKING

import anyio

from .. import _protocol as wire
from .._container import Box
from .._errors import EngineError, SandboxError, SandboxkitError
from .._models import DisplayData, Event, EventKind, Limits, RunResult, Status
from .outcome import outcome

if TYPE_CHECKING:
    from .._protocol import ExitReport

HOST_GRACE = 3.0  # seconds the host waits past the agent's own deadline
SALVAGE_TIMEOUT = 5.0
LOST_NOTE = b"sandboxkit: the sandbox ended during the run (its supervisor was killed)\n"


class OutputBuffer:
    """The output of one run as it arrives: kept up to the cap, decoded incrementally."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.raw = {wire.STDOUT: bytearray(), wire.STDERR: bytearray()}
        self.truncated = False
        self.outputs: list[DisplayData] = []
        self._outputs_size = 0
        self._decoders = {
            kind: codecs.getincrementaldecoder("utf-8")(errors="replace") for kind in self.raw
        }

    def add(self, kind: bytes, payload: bytes) -> Event | None:
        buf = self.raw[kind]
        room = self.keep - len(buf)
        if room < len(payload):
            self.truncated = True
            payload = payload[: max(room, 0)]
        if not payload:
            return None
        buf += payload
        return Event(
            kind=_EVENT_KIND[kind], data=self._decoders[kind].decode(payload), data_bytes=payload
        )

    def add_display(self, payload: bytes) -> None:
        """One rich output (DISPLAY frame), kept while all of them fit in the cap; a
        malformed one (the program can write anything there) is dropped."""
        self._outputs_size += len(payload)
        if self._outputs_size > self.keep:
            self.truncated = True
            return
        try:
            wire_output = json.loads(payload)
            self.outputs.append(DisplayData(kind=wire_output["kind"], data=wire_output["data"]))
        except (ValueError, KeyError, TypeError, SandboxkitError):
            pass

    def tails(self) -> list[Event]:
        """Text still held by the decoders (a character cut by the end of the output)."""
        out = []
        for kind, decoder in self._decoders.items():
            tail = decoder.decode(b"", final=True)
            if tail:
                out.append(Event(kind=_EVENT_KIND[kind], data=tail))
        return out

    @property
    def stdout(self) -> bytes:
        return bytes(self.raw[wire.STDOUT])

    @property
    def stderr(self) -> bytes:
        return bytes(self.raw[wire.STDERR])


_EVENT_KIND: dict[bytes, EventKind] = {wire.STDOUT: "stdout", wire.STDERR: "stderr"}


def result_of(
    exit_info: ExitReport,
    output: OutputBuffer,
    language: str,
    engine: str | None,
    *,
    status_on_failure: Status | None = None,
) -> RunResult:
    """The result of a run from the agent's exit report and the output kept."""
    status, ended_by = outcome(exit_info)
    if status == "error" and status_on_failure is not None:
        status = status_on_failure
    rss = exit_info.get("max_rss_kb")
    return RunResult(
        status=status,
        exit_code=exit_info.get("exit_code"),
        signal=exit_info.get("signal"),
        stdout_bytes=output.stdout,
        stderr_bytes=output.stderr,
        truncated=bool(
            output.truncated
            or exit_info.get("truncated_stdout")
            or exit_info.get("truncated_stderr")
            or exit_info.get("truncated_outputs")
        ),
        duration=float(exit_info.get("wall") or 0.0),
        cpu_time=exit_info.get("cpu"),
        memory_mb=round(rss / 1024, 2) if rss else None,
        language=language,
        engine=engine,
        ended_by=ended_by,
        outputs=tuple(output.outputs),
        state_lost=bool(exit_info.get("state_lost")),
    )


async def final_result(events: AsyncIterator[Event]) -> RunResult:
    """Drain a run's events and return the result its ``exit`` event carries."""
    result: RunResult | None = None
    async for event in events:
        if event.kind == "exit":
            result = event.result
    if result is None:
        raise SandboxError("the run ended without a result")
    return result


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


async def execute(
    box: Box,
    job: bytes | None,
    limits: Limits,
    language: str,
    *,
    queue: bytes | None = None,
    status_on_failure: Status | None = None,
    on_sent: Callable[[], None] | None = None,
    salvage: bool = False,
    on_exit: Callable[[ExitReport], None] | None = None,
    kernel: bool = False,
) -> AsyncGenerator[Event, None]:
    """Send ``job`` (from ``encode_job``) to ``box``; yield output, then ``exit``.
    ``job`` None: the agent has it already (the follow-up of the compile step it ran, or
    a job queued ahead). ``queue``: the next run's job, sent right behind this one; the
    agent holds it and starts it once this run has ended and every process of it is gone.

    ``status_on_failure`` turns a failing exit into another status (``compile_error``).
    If the backstop deadline passes, the box is destroyed and the run reports timeout.
    If the consumer stops early (break, cancel), the program is stopped: with
    ``salvage`` (sessions) by killing it and reading its run to the end, so the box stays
    usable; otherwise, or if that fails, by destroying the box.

    ``kernel``: the run is a session kernel's cell, so a box lost with it loses the
    session's state (``state_lost``). A loss the agent reported for a run nobody read to
    its end (abandoned, then drained) is carried by the box to the next result.
    """
    output = OutputBuffer(limits.output_bytes)
    engine = box.engine.url
    started = time.monotonic()
    finished = False
    sent = False
    try:
        if job is not None:
            await box.send(wire.JOB, job)
        if queue is not None:
            await box.send(wire.JOB, queue)
        sent = True
        if on_sent is not None:
            on_sent()
        # the clock starts once the job is with the agent: uploading files is not run time
        started = time.monotonic()
        deadline = started + limits.time + HOST_GRACE
        exit_info: ExitReport | None = None
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
                    "state_lost": kernel,
                }
            elif kind in _EVENT_KIND:
                event = output.add(kind, payload)
                if event is not None:
                    yield event
            elif kind == wire.DISPLAY:
                output.add_display(payload)
            elif kind == wire.EXIT:
                exit_info = json.loads(payload)
                if on_exit is not None:
                    on_exit(exit_info)
            elif kind == wire.FAULT:
                raise SandboxError(f"sandbox agent fault: {payload.decode(errors='replace')}")
            else:
                raise SandboxError(f"unexpected frame {kind!r} from the sandbox agent")
        for event in output.tails():
            yield event
        if box.unseen_state_loss:
            box.unseen_state_loss = False
            exit_info = {**exit_info, "state_lost": True}
        result = result_of(exit_info, output, language, engine, status_on_failure=status_on_failure)
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
        oom = False
        with anyio.move_on_after(5):
            try:
                since = time.time() - (time.monotonic() - started)
                oom = await box.engine.had_oom(box.cid, since)
            except SandboxkitError:
                pass
        lost: ExitReport = {
            "exit_code": None,
            "signal": 9 if oom else None,
            "oom_kills": int(oom),
            "wall": time.monotonic() - started,
            "state_lost": kernel,
        }
        output.raw[wire.STDERR] += LOST_NOTE  # said beyond the cap: it is sandboxkit's
        result = result_of(lost, output, language, engine, status_on_failure=status_on_failure)
        yield Event(kind="exit", result=result)
    finally:
        # the consumer left mid-run (break, cancel, error): nothing may keep running
        if not finished and not (salvage and sent and await stop_and_drain(box)):
            await box.destroy()


async def stop_and_drain(box: Box) -> bool:
    """Kill the running program and read its run to the end; whether the box survived.
    A session state lost in that run (the kill reaches the kernel) is noted on the box:
    the next result says it, as nobody reads this one."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(SALVAGE_TIMEOUT):
        try:
            await box.send(wire.KILL)
            while True:
                kind, payload = await box.recv()
                if kind == wire.EXIT:
                    report = json.loads(payload)
                    if report.get("state_lost"):
                        box.unseen_state_loss = True
                    if report.get("then_started"):
                        continue  # a compile step's run followed it: the kill reaches that
                if kind in (wire.EXIT, wire.FAULT):
                    return box.alive
        except SandboxError:
            return False
    return False
