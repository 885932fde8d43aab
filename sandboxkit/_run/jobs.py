"""The job a run sends to the agent: its command, files, stdin, limits and environment,
and the run a compile step carries along (``FollowUp``)."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from .._container import Resources, encode_files
from .._languages import LanguageSpec, language_env
from .._layout import OWN_DIR, WORKDIR
from .._models import Limits

if TYPE_CHECKING:
    from typing import TypedDict

    from .._protocol import RLimits, RunJob

    # Limits.process_memory_mb: RLIMIT_AS rides in a job's rlimits like the others, which
    # the agent applies by name (agent/_procs.apply_job). Declared here, not in RLimits,
    # because the wire module's bytes are hashed into every image tag.
    _AddressSpace = TypedDict("_AddressSpace", {"as": int}, total=False)

    class ProcessRLimits(RLimits, _AddressSpace):
        pass


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


def rlimits(limits: Limits) -> ProcessRLimits:
    out: ProcessRLimits = {
        "cpu": limits.cpu_seconds + 1,
        "fsize": int(limits.file_size_mb * 1024 * 1024),
        "stack": limits.stack_mb * 1024 * 1024,
        "nofile": limits.open_files,
        "core": 0,
    }
    # the per-process limits (Judge0's enable_per_process_and_thread_*: isolate's --time
    # without cgroup timing, and --mem)
    if limits.process_cpu_time is not None:
        out["cpu"] = min(out["cpu"], math.ceil(limits.process_cpu_time))
    if limits.process_memory_mb is not None:
        out["as"] = int(limits.process_memory_mb * 1024 * 1024)
    return out


def _floor_fsize(limits: ProcessRLimits, spec: LanguageSpec) -> ProcessRLimits:
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
    exact: bool = False,
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
        # exact mode: the real command (``python3 main.py``), not the pre-loaded one
        "python_inline": spec.preload == "python" and not exact,
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
    if limits.cpu_time is None and limits.process_cpu_time is not None:
        # each process's CPU alone: the run's total is left to the wall limit, and the
        # agent then takes a kill at RLIMIT_CPU (the per-process limit) for a cpu_timeout
        del job["cpu_time"]
    if exact:
        job["exact"] = True  # the agent's pre-started runtime is not used for it
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
