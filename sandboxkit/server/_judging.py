"""Judging one stored submission: Judge0's fields in, Judge0's result fields out, in a
sandbox of our pools; and the callback PUT once a result is stored. Used by every
worker, in-process (``sandboxkit serve``) or alone (``sandboxkit worker``)."""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import shlex
from dataclasses import dataclass

import httpx

from .._egress.policy import Egress
from .._errors import SandboxkitError
from .._judge.judge import judge
from .._judge.models import JudgeReport, TestCase
from .._languages import LanguageSpec, get_language
from .._models import Limits
from .._sandbox_pool import SandboxPool
from ._judge0 import CONFIG, DEFAULT_FIELDS, MULTI_FILE
from ._render import NotUtf8, serialize
from ._requests import available_languages, unzip_files
from ._submission import Outcome, Submission
from ._verdict import outcome_of

log = logging.getLogger("sandboxkit.server")


def _limits(record: Submission) -> Limits:
    """Judge0's limits as ours. CPU: killed past limit + extra, reported TLE past the
    limit; memory and file size in KB; at least what a sandbox needs.

    The per-process flags follow isolate_job.rb: with
    ``enable_per_process_and_thread_memory_limit`` the memory limit is each process's
    address space (isolate's ``-m``, RLIMIT_AS) and no group limit is set there (here the
    sandbox keeps ``max_memory_limit`` as a bound); with
    ``enable_per_process_and_thread_time_limit`` the CPU limit is each process's (no
    cgroup timing), the run as a whole bounded by the wall limit. A CPU limit of 0 is
    isolate's "no limit"."""
    cpu_limit = float(record.cpu_time_limit)
    per_process_time = record.enable_per_process_and_thread_time_limit and cpu_limit > 0
    whole_run_cpu: float | None = None
    if cpu_limit > 0 and not per_process_time:
        whole_run_cpu = cpu_limit + float(record.cpu_extra_time)
    memory_kb = int(record.memory_limit)
    box_kb = memory_kb
    if record.enable_per_process_and_thread_memory_limit:
        box_kb = max(memory_kb, int(CONFIG["max_memory_limit"]))
    max_file_kb = max(1, int(record.max_file_size))
    return Limits(
        time=float(record.wall_time_limit),
        cpu_time=whole_run_cpu,
        process_cpu_time=cpu_limit if per_process_time else None,
        memory_mb=max(16, math.ceil(box_kb / 1024)),
        process_memory_mb=(
            memory_kb / 1024 if record.enable_per_process_and_thread_memory_limit else None
        ),
        stack_mb=max(1, math.ceil(int(record.stack_limit) / 1024)),
        pids=min(4096, max(8, int(record.max_processes_and_or_threads))),
        file_size_mb=max_file_kb / 1024,
        output_bytes=max_file_kb * 1024,
    )


# isolate_job.rb's names for a multi-file program's scripts, in the order it looks
COMPILE_SCRIPTS = ("compile.sh", "compile")
RUN_SCRIPTS = ("run.sh", "run")


def project_program(
    spec: LanguageSpec, files: dict[str, bytes]
) -> tuple[LanguageSpec, str, dict[str, bytes]] | None:
    """Judge0's multi-file program (language 89) as a spec, its source and its files.

    As isolate_job.rb does for a project: the archive's ``compile.sh`` (else ``compile``),
    if there is one, runs first as ``/bin/bash NAME``; then ``/bin/bash run.sh`` (else
    ``run``; ``run.sh`` when there is neither, which bash answers with 127). Neither gets
    compiler options or arguments. One file of the archive stands as the spec's source
    (the run script, else the compile script, else any top-level file), so every file is
    written as the archive has it. None when there is no such file: nothing can run, and
    bash's 127 is the answer."""
    compile_script = next((name for name in COMPILE_SCRIPTS if name in files), None)
    run_script = next((name for name in RUN_SCRIPTS if name in files), None)
    plain = [name for name in files if "/" not in name and not name.startswith(".")]
    source_file = run_script or compile_script or (plain[0] if plain else None)
    if source_file is None:
        return None
    rest = dict(files)
    source = rest.pop(source_file).decode("utf-8", "surrogateescape")
    project = spec.model_copy(
        update={
            "source_file": source_file,
            "compile": None if compile_script is None else ("/bin/bash", compile_script),
            "run": ("/bin/bash", run_script or RUN_SCRIPTS[0]),
        }
    )
    return project, source, rest


NO_RUN_SCRIPT = Outcome(
    status_id=11,
    stderr=f"/bin/bash: {RUN_SCRIPTS[0]}: No such file or directory\n",
    exit_code=127,
    message="Exited with error status 127",
)


@dataclass
class CallbackPolicy:
    tries: int = 3
    timeout: float = 5.0


class Judging:
    """The sandbox pools a worker judges in, and the callbacks it owes."""

    def __init__(
        self,
        pool: SandboxPool,
        *,
        owned: bool = False,
        callbacks: CallbackPolicy | None = None,
        network: Egress | None = None,
        allow_network: bool = True,
    ) -> None:
        #: ``owned``: opened by :meth:`open` and closed by :meth:`close`; else the
        #: caller's, already open, left open
        self.pool = pool
        #: what an ``enable_network`` submission may reach: the operator's egress policy,
        #: or (None) the engine's whole bridge
        self.network = network
        #: False: ``enable_network`` is not honoured here (a worker not told to): such a
        #: submission runs with no network, as every other
        self.allow_network = allow_network
        self.owned = owned
        self.network_pool: SandboxPool | None = None
        self.callbacks = callbacks or CallbackPolicy()
        self._pending: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        if self.owned:
            # warms it (a missing engine or image fails start-up); closes itself on failure
            await self.pool.open()

    async def close(self) -> None:
        for task in self._pending:
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        if self.owned:
            await self.pool.aclose()
        if self.network_pool is not None:
            await self.network_pool.aclose()

    def call_back(self, record: Submission) -> None:
        """PUT ``record`` (stored, final) to its callback_url in the background."""
        if not record.callback_url:
            return
        task = asyncio.create_task(self._callback(record.callback_url, record))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _callback(self, url: str, record: Submission) -> None:
        """PUT the result to the submission's callback_url, as Judge0 does (its default
        fields, base64-encoded), retried with backoff; the result stays stored either way."""
        token = {"token": record.token}
        try:
            payload = serialize(record, DEFAULT_FIELDS, True)
        except NotUtf8:  # cannot happen in base64 mode; kept for the type checker
            return
        delay = 0.5
        async with httpx.AsyncClient(timeout=self.callbacks.timeout) as http:
            for attempt in range(1, max(1, self.callbacks.tries) + 1):
                try:
                    response = await http.put(url, json=payload)
                    if response.status_code < 400:
                        return
                    log.warning("callback %s answered %s", url, response.status_code, extra=token)
                except httpx.HTTPError as exc:
                    log.warning("callback %s failed (try %d): %s", url, attempt, exc, extra=token)
                await asyncio.sleep(delay)
                delay *= 2

    async def _pool_for(self, record: Submission) -> SandboxPool:
        if not record.enable_network or not self.allow_network:
            return self.pool
        if self.network_pool is None:
            network: Egress | bool = self.network if self.network is not None else True
            # on the same engines as the pool (a worker's --engine/--fleet): each engine
            # gets its own egress gateway
            engines = [member.config for member in self.pool.fleet.members]
            self.network_pool = await SandboxPool(
                languages=(), size=0, network=network, engines=engines
            ).open()
        return self.network_pool

    async def judge(self, record: Submission) -> Outcome:
        """The outcome of judging ``record``. Never raises for the engine or sandboxkit
        failing: that is Judge0's Internal Error."""
        language = available_languages().get(record.language_id, ("",))[0]
        if not language:
            return outcome_of(None, record, f"language {record.language_id} is gone")
        spec: LanguageSpec = get_language(language)
        files: dict[str, bytes] = {}
        if record.additional_files:
            files = unzip_files(
                base64.b64decode(record.additional_files),
                int(CONFIG["max_extract_size"]) * 1024,
            )
        source = record.source_code or ""
        args = shlex.split(record.command_line_arguments or "")
        if record.language_id == MULTI_FILE:
            program = project_program(spec, files)
            if program is None:
                return NO_RUN_SCRIPT
            spec, source, files = program
            args = []
        options = shlex.split(record.compiler_options or "")
        runs = max(1, int(record.number_of_runs or 1))
        stdin = (record.stdin or "").encode("utf-8", "surrogateescape")
        report: JudgeReport | None = None
        error: str | None = None
        token = {"token": record.token}
        try:
            report = await judge(
                source,
                language=spec.with_compile_options(tuple(options)),
                tests=[TestCase(input=stdin)] * runs,
                limits=_limits(record),
                stop_on_failure=True,
                pool=await self._pool_for(record),
                files=files,
                args=args,
            )
        except SandboxkitError as exc:
            error = str(exc)
            log.warning("internal error judging %s: %s", record.token, exc, extra=token)
        except Exception as exc:  # a bug: report Internal Error, never leave it Processing
            error = f"{type(exc).__name__}: {exc}"
            log.exception("bug while judging %s", record.token, extra=token)
        return outcome_of(report, record, error)
