"""``judge()``: compile once, run every test as a fresh process in one sandbox, check.

Why one sandbox and not one per test: container churn costs ~100 ms and tops out near
8 per second, while a fresh process in an already-started sandbox costs a few ms. The
agent kills every process a run leaves behind before the next run starts, so tests do
not share processes; files the program writes in its workdir do persist between the
tests of one submission (the same author's program, so nothing leaks between users).

The submission's sandbox never holds the expected output: a checker program runs in a
sandbox of its own, fed ``input.txt expected.txt output.txt``.

If a run ends its sandbox (a hung program the host had to kill with the container),
the next test leases a fresh sandbox and compiles again; the judge never marks the
remaining tests without running them.

The next test's job goes to the agent before the current test's result is read: the
agent starts it the moment the current run has ended and every process of it is gone,
so the host's round trip overlaps the runs (a death of the sandbox during a test is
that test's own doing; a queued job lost with its sandbox runs again in a fresh one).
"""

from __future__ import annotations

import inspect
import signal as signals
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack

from .._errors import CheckerError, InvalidInput, SandboxError
from .._languages import LanguageSpec, get_language
from .._models import Limits, RunResult
from .._run.program import Program
from .._sandbox_pool import SandboxPool
from .._validate import check_code, check_files, check_limits
from .checkers import (
    BUILTIN,
    EXPLAIN,
    Compare,
    Explain,
    explain_float_tolerance,
    explain_lines,
    float_tolerance,
)
from .models import (
    Checker,
    CheckerProgram,
    FloatTolerance,
    JudgeReport,
    TestCase,
    TestResult,
    Verdict,
)

MAX_TESTS = 10_000
CHECKER_FILES = ("input.txt", "expected.txt", "output.txt")


class _LeasedProgram:
    """The submission (or the checker) as a :class:`Program` in a sandbox leased from
    ``pool``. When that sandbox is gone (a run ended it) or holds a queued job for
    another input, a fresh one is leased and the source compiled again, so the remaining
    tests still run."""

    def __init__(
        self,
        pool: SandboxPool,
        spec: LanguageSpec,
        limits: Limits,
        source: str,
        files: Mapping[str, bytes] | None = None,
        args: tuple[str, ...] = (),
    ):
        self.pool = pool
        self.spec = spec
        self.limits = limits
        code = source.encode("utf-8", errors="surrogateescape")
        self.files = {**(files or {}), spec.source_file: code}
        self.args = args
        self._lease: AsyncExitStack | None = None
        self.program: Program | None = None

    async def open(self) -> RunResult | None:
        """Lease a sandbox and compile; the compiler's result, or None (interpreted)."""
        await self.aclose()
        stack = AsyncExitStack()
        self._lease = stack
        box = await stack.enter_async_context(self.pool.checkout(self.spec, self.limits))
        self.program = Program(
            box, self.spec, self.limits, files=self.files, args=self.args, exact=self.pool.exact
        )
        return await self.program.compile()

    async def run(
        self,
        stdin: bytes | None,
        *,
        files: Mapping[str, bytes] | None = None,
        args: tuple[str, ...] | None = None,
        ahead: bytes | None = None,
    ) -> RunResult:
        """A fresh process of the program (``Program.run``, ``ahead`` included); in a
        fresh sandbox, compiled again, when this one cannot take it."""
        if self.program is None or not self.program.can_run(stdin, files=files, args=args):
            compiled = await self.open()
            if compiled is not None and compiled.status != "ok":
                # the same source compiled before; now it does not: the machinery failed
                raise SandboxError(
                    f"recompiling {self.spec.name} in a fresh sandbox failed: "
                    f"{(compiled.stdout + compiled.stderr)[-500:]}"
                )
        assert self.program is not None
        return await self.program.result(stdin, files=files, args=args, ahead=ahead)

    async def aclose(self) -> None:
        lease, self._lease, self.program = self._lease, None, None
        if lease is not None:
            await lease.aclose()


def _run_verdict(result: RunResult) -> Verdict | None:
    """The verdict a run earns by itself; None when it ran cleanly (checker decides)."""
    if result.status == "timeout":
        return "TLE"
    if result.status == "oom":
        return "MLE"
    if result.status == "output_limit" or result.truncated:
        return "OLE"
    if result.status == "compile_error":
        return "CE"
    if result.status == "error":
        return "RE"
    return None


def _explain_run(run: RunResult, verdict: Verdict, limits: Limits) -> str:
    """Why a run earned ``verdict`` by itself (TLE, MLE, OLE, RE), in a line."""
    if verdict == "TLE":
        if run.ended_by == "cpu_time":
            cpu = limits.cpu_time if limits.cpu_time is not None else limits.time
            return f"used more than its {cpu:g} s of CPU time"
        return f"ran past its {limits.time:g} s wall-clock limit"
    if verdict == "MLE":
        return f"ran out of its {limits.memory_mb} MB of memory"
    if verdict == "OLE":
        return f"wrote more than {limits.output_bytes} bytes to an output stream"
    if verdict != "RE":
        return ""
    if run.signal:
        try:
            name = f" ({signals.Signals(run.signal).name})"
        except ValueError:
            name = ""
        why = f"killed by signal {run.signal}{name}"
    else:
        why = f"exit code {run.exit_code}"
    last = next((line.strip() for line in reversed(run.stderr.splitlines()) if line.strip()), "")
    if last:
        why += ": " + (last if len(last) <= 120 else last[:119] + "…")
    return why


def _explainer_for(checker: object) -> Explain:
    """How a rejection by ``checker`` is explained (a custom checker without a message
    of its own: the first line that differs from the expected output, as a hint)."""
    if checker is None:
        return EXPLAIN["tokens"]
    if isinstance(checker, str) and checker in EXPLAIN:
        return EXPLAIN[checker]
    if isinstance(checker, FloatTolerance):
        return explain_float_tolerance(checker.tolerance)
    return explain_lines


def _rejected_by_checker(message: str, expected: str | bytes, output: bytes) -> str:
    if message:
        return message if len(message) <= 300 else message[:299] + "…"
    hint = explain_lines(expected, output)
    return "rejected by the checker" + (
        f"; the first difference from the expected output: {hint}" if hint else ""
    )


def _compare_for(checker: object) -> Compare | None:
    if checker is None:
        return BUILTIN["tokens"]
    if isinstance(checker, str):
        try:
            return BUILTIN[checker]
        except KeyError:
            raise InvalidInput(
                f"unknown checker {checker!r}; use one of {sorted(BUILTIN)}, "
                "sandboxkit.FloatTolerance(eps), a CheckerProgram or a callable"
            ) from None
    if isinstance(checker, FloatTolerance):
        return float_tolerance(checker.tolerance)
    if isinstance(checker, CheckerProgram) or callable(checker):
        return None
    raise InvalidInput(
        f"checker must be a name, FloatTolerance, CheckerProgram or callable, "
        f"not {type(checker).__name__}"
    )


def _check_tests(tests: object) -> list[TestCase]:
    if isinstance(tests, (str, bytes)) or not isinstance(tests, Sequence):
        raise InvalidInput("tests must be a list of sandboxkit.TestCase")
    if len(tests) > MAX_TESTS:
        raise InvalidInput(f"at most {MAX_TESTS} tests per judge() call")
    if not tests:
        raise InvalidInput(
            "tests is empty: give at least one sandboxkit.TestCase (with no tests every "
            "program would be accepted)"
        )
    out: list[TestCase] = []
    for i, t in enumerate(tests):
        if isinstance(t, TestCase):
            out.append(t)
        elif isinstance(t, dict):
            out.append(TestCase(**t))
        else:
            raise InvalidInput(f"tests[{i}] must be a sandboxkit.TestCase, not {type(t).__name__}")
    return out


def _check_strings(values: object, what: str) -> tuple[str, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise InvalidInput(f"{what} must be a list of str")
    if not all(isinstance(v, str) and "\0" not in v for v in values):
        raise InvalidInput(f"{what} must be a list of str without NUL characters")
    return tuple(values)


def _as_bytes(data: str | bytes) -> bytes:
    return data if isinstance(data, bytes) else data.encode("utf-8", errors="surrogateescape")


def _as_text(data: str | bytes) -> str:
    return data if isinstance(data, str) else data.decode("utf-8", errors="replace")


async def judge(
    source: str,
    *,
    language: str | LanguageSpec = "python",
    tests: Sequence[TestCase],
    limits: Limits | None = None,
    checker: Checker | None = None,
    stop_on_failure: bool = False,
    pool: SandboxPool | None = None,
    files: Mapping[str, bytes] | None = None,
    args: Sequence[str] = (),
    compiler_options: Sequence[str] = (),
) -> JudgeReport:
    """Compile ``source`` once and run it on every test, each as a fresh process.

    ::

        report = await sk.judge(src, language="cpp",
                                tests=[sk.TestCase(input="1 2\\n", expected="3\\n")],
                                limits=sk.Limits(time=1.0, memory_mb=256))
        report.verdict  # "AC" | "WA" | "TLE" | "MLE" | "RE" | "CE" | "OLE"

    ``checker``: ``"tokens"`` (default), ``"exact"``, ``"lines"`` (rules in
    ``sandboxkit._judge.checkers.lines``: trailing whitespace of each line and trailing blank
    lines ignored), ``FloatTolerance(eps)``, a callable ``(input, expected, output) ->
    bool`` or ``-> (bool, message)`` (may be async), or a sandboxed ``CheckerProgram``.
    The submission's failures are verdicts; an exception means sandboxkit, the engine
    or the checker failed. Each test that is not accepted says why in its
    ``explanation`` (a WA: the first difference, ``line 3: expected '42', got '41'``).

    ``tests`` must hold at least one test (``InvalidInput`` otherwise). ``limits``
    default to the pool's (the default pool's: ``Limits()``, 10 s of wall-clock time
    per test); ``sandboxkit judge`` uses the same default.

    ``files``: more files in the workdir beside the source (headers, data, modules);
    ``args``: command-line arguments of every run; ``compiler_options``: added to the
    language's compile command (same image). ``language`` may be a ``LanguageSpec``.
    """
    code = check_code(source)
    spec = language if isinstance(language, LanguageSpec) else get_language(language)
    extra = check_files(files)
    argv = _check_strings(args, "args")
    options = _check_strings(compiler_options, "compiler_options")
    if options:
        if spec.compile is None:
            raise InvalidInput(f"{spec.name} has no compile step: compiler_options need one")
        spec = spec.with_compile_options(options)
    cases = _check_tests(tests)
    compare = _compare_for(checker)
    explain = _explainer_for(checker)
    if not isinstance(stop_on_failure, bool):
        raise InvalidInput("stop_on_failure must be a bool")
    if pool is None:
        from .._default import default_pool

        pool = await default_pool()
    lim = check_limits(limits) if limits is not None else pool.limits

    program = _LeasedProgram(pool, spec, lim, code, extra, argv)
    checker_prog: _LeasedProgram | None = None
    try:
        compiled = await program.open()
        if compiled is not None and compiled.status != "ok":
            return JudgeReport(
                verdict="CE",
                language=spec.name,
                total_tests=len(cases),
                compile_output=compiled.stdout + compiled.stderr,
                compile_time=compiled.duration,
            )
        if isinstance(checker, CheckerProgram):
            checker_prog = await _open_checker(pool, checker)
        results: list[TestResult] = []
        for index, case in enumerate(cases):
            following = cases[index + 1] if index + 1 < len(cases) else None
            ahead = _as_bytes(following.input) if following is not None else None
            run = await program.run(_as_bytes(case.input), ahead=ahead)
            verdict = _run_verdict(run)
            message = explanation = ""
            if verdict is not None:
                explanation = _explain_run(run, verdict, lim)
            elif case.expected is None:
                verdict = "AC"
            elif compare is not None:
                verdict = "AC" if compare(case.expected, run.stdout_bytes) else "WA"
                if verdict == "WA":
                    explanation = explain(case.expected, run.stdout_bytes)
            else:
                if checker_prog is not None:
                    verdict, message = await _program_check(checker_prog, index, case, run)
                else:
                    verdict, message = await _callable_check(checker, case, run)
                if verdict == "WA":
                    explanation = _rejected_by_checker(message, case.expected, run.stdout_bytes)
            results.append(
                TestResult(
                    index=index,
                    name=case.name,
                    verdict=verdict,
                    time=run.cpu_time,
                    wall=run.duration,
                    memory_mb=run.memory_mb,
                    exit_code=run.exit_code,
                    signal=run.signal,
                    stdout=run.stdout,
                    stderr=run.stderr,
                    stdout_bytes=run.stdout_bytes,
                    stderr_bytes=run.stderr_bytes,
                    truncated=run.truncated,
                    checker_message=message,
                    explanation=explanation,
                )
            )
            if stop_on_failure and verdict != "AC":
                break
        overall: Verdict = next((r.verdict for r in results if r.verdict != "AC"), "AC")
        return JudgeReport(
            verdict=overall,
            tests=tuple(results),
            language=spec.name,
            total_tests=len(cases),
            compile_output=(compiled.stdout + compiled.stderr) if compiled else "",
            compile_time=compiled.duration if compiled else None,
        )
    finally:
        await program.aclose()
        if checker_prog is not None:
            await checker_prog.aclose()


async def _open_checker(pool: SandboxPool, checker: CheckerProgram) -> _LeasedProgram:
    prog = _LeasedProgram(
        pool, get_language(checker.language), checker.limits, check_code(checker.source)
    )
    try:
        compiled = await prog.open()
    except BaseException:
        await prog.aclose()
        raise
    if compiled is not None and compiled.status != "ok":
        await prog.aclose()
        raise CheckerError(
            "the checker program does not compile; fix it and judge again:\n"
            + (compiled.stdout + compiled.stderr)[-2000:]
        )
    return prog


async def _program_check(
    prog: _LeasedProgram, index: int, case: TestCase, run: RunResult
) -> tuple[Verdict, str]:
    files = {
        "input.txt": _as_bytes(case.input),
        "expected.txt": _as_bytes(case.expected or ""),
        "output.txt": run.stdout_bytes,
    }
    res = await prog.run(None, files=files, args=CHECKER_FILES)
    message = (res.stdout + res.stderr).strip()
    if res.status == "ok":
        return "AC", message
    if res.status == "error" and res.exit_code in (1, 2):
        return "WA", message
    raise CheckerError(
        f"the checker program failed on test {index} (status {res.status}, exit code "
        f"{res.exit_code}, signal {res.signal}); testlib's exit 3 means the checker itself "
        f"found a problem. Its output: {message[-1000:]}"
    )


async def _callable_check(checker: object, case: TestCase, run: RunResult) -> tuple[Verdict, str]:
    """The verdict of a checker function, and the message it gave (``(ok, message)``)."""
    assert callable(checker)
    outcome = checker(_as_text(case.input), _as_text(case.expected or ""), run.stdout)
    if inspect.isawaitable(outcome):
        outcome = await outcome
    message = ""
    if isinstance(outcome, tuple) and len(outcome) == 2 and isinstance(outcome[1], str):
        outcome, message = outcome
    return ("AC" if outcome else "WA"), message
