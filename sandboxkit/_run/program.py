"""``Program``: one program in one sandbox, compiled once and run as many times as asked,
each run a fresh process; the next run's job can wait with the agent ahead of time.

Every kind of run goes through it: a one-shot run, a session's run and ``start()`` are a
program run once (:func:`run_program`; the run rides along with its compile step), and
the judge runs one program per test, each next test queued ahead.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing
from typing import TYPE_CHECKING

from .._container import Box
from .._errors import SandboxError
from .._languages import LanguageSpec
from .._models import Event, Limits, RunResult
from .jobs import FollowUp, encode_job
from .policy import compile_and_follow, compiler_output, fit_run_limits
from .reader import execute, final_result, stop_and_drain

if TYPE_CHECKING:
    from .._validate import RunInput

# what tells one run from another: its stdin, its own files, its arguments
_RunInput = tuple[bytes | None, dict[str, bytes], tuple[str, ...] | None]


def _input_of(
    stdin: bytes | None, files: Mapping[str, bytes] | None, args: tuple[str, ...] | None
) -> _RunInput:
    return stdin, dict(files or {}), args


class Program:
    """A program in ``box``: ``files`` (its source among them, or apart in ``own`` for a
    session, see ``make_job``), built on its first run or by :meth:`compile`, then run.

    A compiled language's sources go into the build once; an interpreted program's go
    with every run, so a run that rewrote or deleted them cannot change the next one.
    ``args``, ``env``, ``keep_processes``, ``kernel`` hold for every run; ``salvage``
    (sessions): a run abandoned midway is killed and read to its end, the box kept.
    """

    def __init__(
        self,
        box: Box,
        spec: LanguageSpec,
        limits: Limits,
        *,
        files: Mapping[str, bytes] | None = None,
        own: Mapping[str, bytes] | None = None,
        args: tuple[str, ...] = (),
        env: Mapping[str, str] | None = None,
        keep_processes: bool = False,
        kernel: bool = False,
        salvage: bool = False,
        exact: bool = False,
    ) -> None:
        self.box = box
        self.spec = spec
        self.limits = limits
        self.files = dict(files or {})
        self.own = None if own is None else dict(own)
        self.args = args
        self.env = env
        self.keep_processes = keep_processes
        self.kernel = kernel
        self.salvage = salvage
        self.exact = exact  # the program by its real command (see SandboxPool's ``exact``)
        self._built = spec.compile is None
        self._fitted = False
        # the input of the run whose job the agent holds already (``run(ahead=...)``)
        self._queued: _RunInput | None = None

    async def compile(self) -> RunResult | None:
        """Build now, ahead of the runs, and give the sandbox the runs' limits: the
        compiler's result (``None``: nothing to build). A sandbox that cannot take the
        runs' limits after a good build means the machinery failed: ``SandboxError``."""
        compiled: RunResult | None = None
        if not self._built:
            compiled, _ = await compile_and_follow(
                self.box, self.spec, self.limits, self.files, salvage=self.salvage, own=self.own
            )
            if compiled is not None and compiled.status != "ok":
                return compiled
            self._built = True
        unfit = await self._fit()
        if unfit is not None:
            raise SandboxError(unfit.stderr)
        return compiled

    def can_run(
        self,
        stdin: bytes | None,
        *,
        files: Mapping[str, bytes] | None = None,
        args: tuple[str, ...] | None = None,
    ) -> bool:
        """Whether a run of this input can go here: the sandbox lives, and the job the
        agent holds (if any) is this run's, not another's (a job cannot be taken back)."""
        if not self.box.alive:
            return False
        return self._queued is None or self._queued == _input_of(stdin, files, args)

    async def result(
        self,
        stdin: bytes | None = None,
        *,
        files: Mapping[str, bytes] | None = None,
        args: tuple[str, ...] | None = None,
        ahead: bytes | None = None,
    ) -> RunResult:
        """:meth:`run` to its end: the run's result."""
        return await final_result(self.run(stdin, files=files, args=args, ahead=ahead))

    async def run(
        self,
        stdin: bytes | None = None,
        *,
        files: Mapping[str, bytes] | None = None,
        args: tuple[str, ...] | None = None,
        ahead: bytes | None = None,
        interactive: bool = False,
        on_sent: Callable[[], None] | None = None,
    ) -> AsyncGenerator[Event, None]:
        """One run (a fresh process): output events, then ``exit``. The first run of a
        program not yet built compiles it, streaming the compiler's output first; a
        compile error is that run's result.

        ``files``: more files for this run; ``args``: this run's arguments instead of
        the program's. ``ahead``: the stdin of the next run (same files and arguments),
        whose job goes to the agent right behind this one's: the agent starts it the
        moment this run has ended and every process of it is gone, so the host's round
        trip overlaps the runs; the next call, with that input, reads its result.
        ``interactive``: stdin stays open (``Process``); ``on_sent``: called once the
        job is with the agent.
        """
        this = _input_of(stdin, files, args)
        queued, self._queued = self._queued, None
        if queued is not None and (queued != this or not self.box.alive):
            await self.box.destroy()
            raise SandboxError(
                "this sandbox held a queued run for another input (or ended); it was dropped"
            )
        argv = self.spec.run + (self.args if args is None else args)
        job: bytes | None = None  # None: the agent has it (queued ahead, or the follow-up)
        if queued is None:
            followed = False
            if not self._built:
                # a run with its input given up front rides along with the compile step
                rides = not (interactive or files or ahead is not None)
                then = self._follow_up(argv, stdin) if rides else None
                compiled, followed = await compile_and_follow(
                    self.box,
                    self.spec,
                    self.limits,
                    self.files,
                    salvage=self.salvage,
                    then=then,
                    own=self.own,
                )
                said = compiler_output(compiled)
                if said is not None:
                    try:
                        yield said
                    except BaseException:
                        # the consumer left at the compiler's output: a program the agent
                        # already runs (the follow-up) is stopped as execute() would stop it
                        if followed and not (self.salvage and await stop_and_drain(self.box)):
                            await self.box.destroy()
                        raise
                if compiled is not None and compiled.status != "ok":
                    yield Event(kind="exit", result=compiled)
                    return
                self._built = True
            if not followed:
                unfit = await self._fit()
                if unfit is not None:
                    yield Event(kind="exit", result=unfit)
                    return
                job = await self._job(argv, stdin, files, interactive)
        next_job = None if ahead is None else await self._job(argv, ahead, files)
        events = execute(
            self.box,
            job,
            self.limits,
            self.spec.name,
            queue=next_job,
            on_sent=on_sent,
            salvage=self.salvage,
            kernel=self.kernel,
        )
        if ahead is not None:
            self._queued = _input_of(ahead, files, args)
        ended = False
        try:
            async with aclosing(events):
                async for event in events:
                    ended = event.kind == "exit"
                    yield event
        except BaseException:
            if self._queued is not None and not ended:
                # the queued job waits behind a run nobody read to its end: nothing may
                # start it unseen (a salvaged box would run it next)
                self._queued = None
                await self.box.destroy()
            raise

    def _follow_up(self, argv: tuple[str, ...], stdin: bytes | None) -> FollowUp:
        return FollowUp(
            argv,
            self.limits,
            stdin,
            self.keep_processes,
            self.kernel,
            self.env,
            own=self.own is not None,
        )

    async def _fit(self) -> RunResult | None:
        """Give the sandbox the runs' own limits once (after a compile step's wider ones);
        the ``oom`` result when it already holds more than they allow."""
        if self._fitted:
            return None
        unfit = await fit_run_limits(self.box, self.spec, self.limits)
        self._fitted = unfit is None
        return unfit

    async def _job(
        self,
        argv: tuple[str, ...],
        stdin: bytes | None,
        files: Mapping[str, bytes] | None,
        interactive: bool = False,
    ) -> bytes:
        if self.spec.compile is None:
            run_files = {**self.files, **(files or {})}
            own = self.own
        else:  # the sources went into the build: the program runs from what it made
            run_files = dict(files or {})
            own = None if self.own is None else {}
        return await encode_job(
            self.spec,
            argv,
            self.limits,
            files=run_files,
            stdin=stdin,
            env=self.env,
            own=own,
            interactive=interactive,
            keep_processes=self.keep_processes,
            kernel=self.kernel,
            exact=self.exact,
        )


def run_program(
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
    """One run of ``job`` in ``box`` (a :class:`Program` run once): compile if the
    language needs it, then run; yields events. A run watched as it goes (``job.live``)
    gets the language's ``live_env``."""
    env = {**spec.live_env, **job.env} if job.live else job.env
    program = Program(
        box,
        spec,
        job.limits,
        files=job.files,
        own=job.own,
        args=job.args,
        env=env,
        keep_processes=keep_processes,
        kernel=kernel,
        salvage=salvage,
        exact=job.exact,
    )
    return program.run(job.stdin, interactive=interactive, on_sent=on_sent)
