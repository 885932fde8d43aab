"""The compile step's policy: the limits it runs in, widening them for a compiler that
ran out of room, fitting the sandbox back to the run's own limits, and what a compile
says to the user. One policy for one-shot runs, sessions, ``start()`` and the judge."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .._container import Box, Resources
from .._errors import EngineError
from .._languages import LanguageSpec
from .._models import Event, Limits, RunResult
from .jobs import FollowUp, compile_limits, encode_job, resources_for
from .reader import execute, final_result

if TYPE_CHECKING:
    from .._protocol import ExitReport


def _covers(have: Resources, wanted: Resources) -> bool:
    return have.memory_mb >= wanted.memory_mb and have.pids >= wanted.pids


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


def compiler_output(compiled: RunResult | None) -> Event | None:
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
