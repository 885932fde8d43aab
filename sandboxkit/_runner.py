"""Host side of a run: the job sent to the agent, the frames read back, the status;
and the one compile-then-run policy every kind of run shares.

The agent enforces the wall limit itself (it kills every process of the run and reports
``timeout``); the host keeps a backstop deadline a little later and, if the agent has not
answered by then, kills the whole container and still reports ``timeout`` with the
output read so far. Both paths keep partial output.
"""

from __future__ import annotations

import base64
import codecs
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from . import _protocol as wire
from ._container import OWN_DIR, WORKDIR, Box, Resources, encode_files
from ._errors import EngineError, SandboxError, SandboxkitError
from ._languages import LanguageSpec, language_env
from ._models import DisplayData, EndedBy, Event, EventKind, Limits, RunResult, Status

if TYPE_CHECKING:
    from ._protocol import ExitReport, RLimits, RunJob
    from ._validate import RunInput

HOST_GRACE = 3.0  # seconds the host waits past the agent's own deadline
SIGXFSZ = 25


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
        stack_mb=max(limits.stack_mb, 64),
        cpus=limits.cpus,
    )


def rlimits(limits: Limits) -> RLimits:
    return {
        "cpu": limits.cpu_seconds + 1,
        "fsize": int(limits.file_size_mb * 1024 * 1024),
        "stack": limits.stack_mb * 1024 * 1024,
        "nofile": limits.open_files,
        "core": 0,
    }


def _floor_fsize(limits: RLimits, spec: LanguageSpec) -> RLimits:
    floor = int(spec.min_file_size_mb * 1024 * 1024)
    if limits["fsize"] < floor:
        return {**limits, "fsize": floor}
    return limits


def make_job(
    spec: LanguageSpec,
    argv: tuple[str, ...],
    limits: Limits,
    *,
    files: Mapping[str, bytes] | None = None,
    stdin: bytes | None = None,
    interactive: bool = False,
    keep_processes: bool = False,
    kernel: bool = False,
    env: Mapping[str, str] | None = None,
    own: Mapping[str, bytes] | None = None,
    compiling: bool = False,
) -> RunJob:
    """The job frame for one program run (a pre-loaded Python runs the source inline).

    ``env``: the environment over the language's own (the compiler's is the language's).
    ``own`` (a session): the run keeps its source and what its compiler makes in
    ``OWN_DIR``, apart from the user's files, and these files go there; a compile step
    works in it (the workdir's headers still found through ``CPATH``), the program runs in
    the workdir from its copy there (see the agent's ``place_own``)."""
    variables = language_env(spec)
    cwd = WORKDIR
    if compiling and own is not None:
        cwd = OWN_DIR
        variables["CPATH"] = ":".join(p for p in (WORKDIR, variables.get("CPATH")) if p)
    elif not compiling:
        variables.update(env or {})
    job: RunJob = {
        "op": "run",
        "argv": list(argv),
        "python_inline": spec.preload == "python",
        "kernel": kernel,
        "files": encode_files(files or {}),
        "stdin": None if stdin is None else base64.b64encode(stdin).decode(),
        "interactive": interactive,
        "keep_processes": keep_processes,
        "time": limits.time,
        "output_bytes": limits.output_bytes,
        # CPU seconds of the whole run (every process together), enforced by the agent
        # to ~10 ms; RLIMIT_CPU (per process, whole seconds, one more) is the backstop
        "cpu_time": limits.cpu_time if limits.cpu_time is not None else limits.time,
        "rlimits": _floor_fsize(rlimits(limits), spec),
        "env": variables,
        "cwd": cwd,
    }
    if own is not None:
        job["own_dir"] = OWN_DIR
        job["own_files"] = encode_files(own)
        job["own_argc"] = 0 if compiling else len(spec.run)
    return job


BIG_JOB = 1 << 20


@dataclass(frozen=True)
class FollowUp:
    """The run a compile step carries (``RunJob.then``): the agent starts it as soon as
    the compiler ended well, with no round trip to the host in between."""

    argv: tuple[str, ...]
    limits: Limits
    stdin: bytes | None = None
    keep_processes: bool = False
    kernel: bool = False
    env: Mapping[str, str] | None = None
    own: bool = False  # the compile step placed the source in OWN_DIR (a session)


async def encode_job(
    spec: LanguageSpec,
    argv: tuple[str, ...],
    limits: Limits,
    *,
    files: Mapping[str, bytes] | None = None,
    stdin: bytes | None = None,
    then: FollowUp | None = None,
    env: Mapping[str, str] | None = None,
    own: Mapping[str, bytes] | None = None,
    **options: bool,
) -> bytes:
    """:func:`make_job` as the frame's payload; a large one is built off the event loop
    (base64 and JSON of megabytes would stall every other run)."""

    def build() -> bytes:
        job = make_job(spec, argv, limits, files=files, stdin=stdin, env=env, own=own, **options)
        if then is not None:
            job["then"] = make_job(
                spec,
                then.argv,
                then.limits,
                stdin=then.stdin,
                keep_processes=then.keep_processes,
                kernel=then.kernel,
                env=then.env,
                own={} if then.own else None,
            )
        return json.dumps(job).encode()

    size = sum(len(v) for v in (files or {}).values()) + len(stdin or b"")
    size += sum(len(v) for v in (own or {}).values())
    size += len(then.stdin or b"") if then is not None else 0
    if size < BIG_JOB:
        return build()
    return await anyio.to_thread.run_sync(build)


async def final_result(events: AsyncIterator[Event]) -> RunResult:
    """Drain a run's events and return the result its ``exit`` event carries."""
    result: RunResult | None = None
    async for event in events:
        if event.kind == "exit":
            result = event.result
    if result is None:
        raise SandboxError("the run ended without a result")
    return result


def ended_by(exit_info: ExitReport) -> EndedBy | None:
    """Which limit ended the run, from the agent's exit report (OOM first, as status)."""
    if exit_info.get("oom_kills", 0) > 0:
        return "memory"
    reason = exit_info.get("reason")
    if reason == "timeout":
        return "wall_time"
    if reason == "cpu_timeout":
        return "cpu_time"
    if reason == "output_limit":
        return "output"
    if exit_info.get("signal") == SIGXFSZ:
        return "file_size"
    return None


def status_of(exit_info: ExitReport) -> Status:
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


class _Output:
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
    output: _Output,
    language: str,
    engine: str | None,
    *,
    status_on_failure: Status | None = None,
) -> RunResult:
    """The result of a run from the agent's exit report and the output kept."""
    status = status_of(exit_info)
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
        ended_by=ended_by(exit_info),
        outputs=tuple(output.outputs),
        state_lost=bool(exit_info.get("state_lost")),
    )


async def execute(
    box: Box,
    job: bytes | None,
    limits: Limits,
    language: str,
    *,
    status_on_failure: Status | None = None,
    on_sent: Callable[[], None] | None = None,
    salvage: bool = False,
    on_exit: Callable[[ExitReport], None] | None = None,
    kernel: bool = False,
) -> AsyncGenerator[Event, None]:
    """Send ``job`` (from :func:`encode_job`) to ``box``; yield output, then ``exit``.
    ``job`` None: the agent has it already (the follow-up of the compile step it ran).

    ``status_on_failure`` turns a failing exit into another status (``compile_error``).
    If the backstop deadline passes, the box is destroyed and the run reports timeout.
    If the consumer stops early (break, cancel), the program is stopped: with
    ``salvage`` (sessions) by killing it and reading its run to the end, so the box stays
    usable; otherwise, or if that fails, by destroying the box.

    ``kernel``: the run is a session kernel's cell, so a box lost with it loses the
    session's state (``state_lost``). A loss the agent reported for a run nobody read to
    its end (abandoned, then drained) is carried by the box to the next result.
    """
    output = _Output(limits.output_bytes)
    engine = box.engine.url
    started = time.monotonic()
    finished = False
    sent = False
    try:
        if job is not None:
            await box.send(wire.JOB, job)
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
        note = b"sandboxkit: the sandbox ended during the run (its supervisor was killed)\n"
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
                ended_by="memory" if oom else None,
                exit_code=None,
                signal=9 if oom else None,
                stdout_bytes=output.stdout,
                stderr_bytes=output.stderr + note,
                truncated=output.truncated,
                duration=time.monotonic() - started,
                language=language,
                engine=engine,
                state_lost=kernel,
            ),
        )
    finally:
        # the consumer left mid-run (break, cancel, error): nothing may keep running
        if not finished and not (salvage and sent and await _stop_and_drain(box)):
            await box.destroy()


SALVAGE_TIMEOUT = 5.0


async def _stop_and_drain(box: Box) -> bool:
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


# --------------------------------------------------------------------------- the policy
# One compile-then-run policy for one-shot runs, sessions, start() and the judge.


def _covers(have: Resources, wanted: Resources) -> bool:
    return have.memory_mb >= wanted.memory_mb and have.pids >= wanted.pids


async def compile_source(
    box: Box,
    spec: LanguageSpec,
    limits: Limits,
    files: Mapping[str, bytes],
    *,
    salvage: bool = False,
) -> RunResult | None:
    """:func:`compile_and_follow` with nothing to follow: the compiler's result."""
    compiled, _followed = await compile_and_follow(box, spec, limits, files, salvage=salvage)
    return compiled


async def compile_and_follow(
    box: Box,
    spec: LanguageSpec,
    limits: Limits,
    files: Mapping[str, bytes],
    *,
    salvage: bool = False,
    then: FollowUp | None = None,
    own: Mapping[str, bytes] | None = None,
) -> tuple[RunResult | None, bool]:
    """Compile in ``box`` with the compile step's limits: the compiler's result, status
    ``ok`` or ``compile_error``; ``None`` for a language with no compile step.

    No engine round trip in the common case: the sandbox is made with the run's own
    memory and pids limits, and the compiler runs in them first (a hello-world, or a
    judge's typical submission, compiles in far less). Only when the compiler actually
    ran out of room (the container's OOM kill or pids-limit counters moved) is the sandbox
    widened to the compile step's allowance with ``docker update`` and the compile run
    again; :func:`fit_run_limits` narrows it back for the run.

    ``then``: the run to start right after a compile that ends well, when the sandbox
    already has that run's limits (nothing to change between the two steps); the second
    value says whether the agent started it (its frames follow; read them with
    ``execute(box, None, ...)``).

    A compiler that fails, times out or blows its memory is a compile error; all it
    printed is diagnostics, reported in stderr (tsc writes to stdout)."""
    if spec.compile is None:
        return None, False
    build_limits = compile_limits(spec, limits)
    room = resources_for(build_limits)
    fixed = box.shape.fixed is not None
    narrow = not fixed and not _covers(box.resources, room)
    if then is not None and not (fixed or (narrow and box.resources == resources_for(limits))):
        then = None  # the run needs other limits than the compile has: the host sets them
    if not narrow:
        await box.set_resources(room)
    ends: list[ExitReport] = []
    compiled = await _compile_once(box, spec, build_limits, files, salvage, ends, then, own)
    if narrow and compiled.status != "ok" and ends and _ran_out(ends[-1]):
        await box.set_resources(room)
        compiled = await _compile_once(box, spec, build_limits, files, salvage, ends, None, own)
    if compiled.status == "ok":
        return compiled, bool(ends and ends[-1].get("then_started"))
    diagnostics = compiled.stderr_bytes + compiled.stdout_bytes
    if compiled.status in ("timeout", "oom"):
        what = (
            f"its {build_limits.time:g} s time limit"
            if compiled.status == "timeout"
            else f"its {build_limits.memory_mb} MB memory limit"
        )
        diagnostics += f"\nsandboxkit: compilation stopped: it exceeded {what}\n".encode()
    kept = compiled.model_dump(exclude={"stdout", "stderr", "stdout_bytes", "stderr_bytes"})
    return RunResult(**{**kept, "status": "compile_error", "stderr_bytes": diagnostics}), False


def _ran_out(report: ExitReport) -> bool:
    """Whether a step hit the container's memory or pids limit."""
    return report.get("oom_kills", 0) > 0 or report.get("pids_max_hits", 0) > 0


async def _compile_once(
    box: Box,
    spec: LanguageSpec,
    build_limits: Limits,
    files: Mapping[str, bytes],
    salvage: bool,
    ends: list[ExitReport],
    then: FollowUp | None = None,
    own: Mapping[str, bytes] | None = None,
) -> RunResult:
    assert spec.compile is not None
    job = await encode_job(
        spec, spec.compile, build_limits, files=files, then=then, own=own, compiling=True
    )
    return await final_result(
        execute(
            box,
            job,
            build_limits,
            spec.name,
            status_on_failure="compile_error",
            salvage=salvage,
            on_exit=ends.append,
        )
    )


async def fit_run_limits(box: Box, spec: LanguageSpec, limits: Limits) -> RunResult | None:
    """Give ``box`` the run's own limits. ``None`` when done, else the ``oom`` result:
    lowering memory fails when the sandbox already holds more (files in /work and /tmp
    count as memory), so the run cannot fit in what it asked for."""
    try:
        await box.set_resources(resources_for(limits))
    except EngineError as exc:
        if limits.memory_mb >= box.resources.memory_mb:
            raise
        return RunResult(
            status="oom",
            stderr=(
                f"sandboxkit: this sandbox already holds more than {limits.memory_mb} MB "
                "(files in /work and /tmp count as memory); free some or ask for more\n"
                f"({exc})\n"
            ),
            language=spec.name,
            engine=box.engine.url,
        )
    return None


async def run_step(
    box: Box,
    spec: LanguageSpec,
    limits: Limits,
    *,
    files: Mapping[str, bytes] | None = None,
    stdin: bytes | None = None,
    args: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
    own: Mapping[str, bytes] | None = None,
    interactive: bool = False,
    keep_processes: bool = False,
    kernel: bool = False,
    on_sent: Callable[[], None] | None = None,
    salvage: bool = False,
) -> AsyncGenerator[Event, None]:
    """Run the (compiled) program once in ``box``, which already has the run's limits."""
    job = await encode_job(
        spec,
        spec.run + args,
        limits,
        files=files,
        stdin=stdin,
        env=env,
        own=own,
        interactive=interactive,
        keep_processes=keep_processes,
        kernel=kernel,
    )
    events = execute(box, job, limits, spec.name, on_sent=on_sent, salvage=salvage, kernel=kernel)
    async with aclosing(events):
        async for event in events:
            yield event


def _compiler_output(compiled: RunResult | None) -> Event | None:
    """The compiler's output as one ``stderr`` event, streamed before the program's.

    On a compile error it is the result's stderr exactly (the diagnostics). On a compile
    that succeeded (warnings) it is streamed only: the run's result keeps the program's
    own stderr, as a run of ``gcc && ./main`` split in two would."""
    if compiled is None:
        return None
    said = compiled.stderr_bytes
    if compiled.status == "ok":
        said += compiled.stdout_bytes  # tsc and the like warn on stdout
    if not said:
        return None
    return Event(kind="stderr", data=said.decode(errors="replace"), data_bytes=said)


async def run_program(
    box: Box,
    spec: LanguageSpec,
    job: RunInput,
    *,
    interactive: bool = False,
    keep_processes: bool = False,
    kernel: bool = False,
    on_sent: Callable[[], None] | None = None,
    salvage: bool = False,
) -> AsyncGenerator[Event, None]:
    """Compile (if the language needs it), then run, in ``box``; yields events.

    ``salvage`` (sessions): a run abandoned midway is killed and the box kept. A run
    with its input given up front rides along with the compile step (``FollowUp``).
    A run watched as it goes (``job.live``) gets the language's ``live_env``.
    """
    limits, files, own = job.limits, job.files, job.own
    env = {**spec.live_env, **job.env} if job.live else job.env
    then = None
    if not interactive:
        argv = spec.run + job.args
        then = FollowUp(argv, limits, job.stdin, keep_processes, kernel, env, own is not None)
    failed, followed = await compile_and_follow(
        box, spec, limits, files, salvage=salvage, then=then, own=own
    )
    said = _compiler_output(failed)
    if said is not None:
        try:
            yield said
        except BaseException:
            # the consumer left at the compiler's output: a program the agent already
            # runs (the follow-up) is stopped as execute() would stop it
            if followed and not (salvage and await _stop_and_drain(box)):
                await box.destroy()
            raise
    if followed:  # the agent runs the program already: read its frames
        events = execute(
            box, None, limits, spec.name, on_sent=on_sent, salvage=salvage, kernel=kernel
        )
    else:
        if failed is not None and failed.status == "ok":
            files = {}  # the sources went into the build
            own = {} if own is not None else None
            failed = None
        if failed is None:
            failed = await fit_run_limits(box, spec, limits)
        if failed is not None:
            yield Event(kind="exit", result=failed)
            return
        events = run_step(
            box,
            spec,
            limits,
            files=files,
            stdin=job.stdin,
            args=job.args,
            env=env,
            own=own,
            interactive=interactive,
            keep_processes=keep_processes,
            kernel=kernel,
            on_sent=on_sent,
            salvage=salvage,
        )
    async with aclosing(events):
        async for event in events:
            yield event
