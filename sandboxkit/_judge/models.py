"""Autojudge data: test cases and checkers in, a verdict per test and overall out.

Frozen pydantic models like those in ``_models``: nonsense in is ``InvalidInput``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Literal

from pydantic import Field, model_validator

from .._models import Frozen, Limits

Verdict = Literal["AC", "WA", "TLE", "MLE", "RE", "CE", "OLE"]

#: ``(input, expected, output) -> bool``, or ``-> (bool, message)`` to say why (either
#: may be awaitable); trusted host code. The message becomes the test's
#: ``checker_message`` and, on a rejection, its ``explanation``.
CheckerOutcome = bool | tuple[bool, str]
CheckerFunction = Callable[[str, str, str], CheckerOutcome | Awaitable[CheckerOutcome]]


class TestCase(Frozen):
    """One test: what the program reads on stdin and what it should print.

    ``expected=None`` checks nothing: the test passes when the program runs cleanly
    (Judge0 treats a submission without ``expected_output`` the same way).
    """

    __test__ = False  # not a pytest class

    input: str | bytes = Field("", description="bytes fed to the program's stdin")
    expected: str | bytes | None = Field(
        None, description="the expected output (bytes: compared exactly); None: not checked"
    )
    name: str | None = Field(None, description="a label for reports (e.g. the file stem)")


class FloatTolerance(Frozen):
    """Token comparison where numbers may differ by ``tolerance``, absolute or relative.

    ``FloatTolerance(1e-6)`` accepts 0.3333333 for 1/3 and 1000000.1 for 1e6 (relative).
    Tokens that are not both numbers must be equal as text.
    """

    tolerance: float = Field(1e-6, ge=0, le=1)

    def __init__(self, tolerance: float = 1e-6, **data: object) -> None:
        super().__init__(tolerance=tolerance, **data)

    @model_validator(mode="after")
    def _finite(self) -> FloatTolerance:
        if not math.isfinite(self.tolerance):
            raise ValueError("tolerance must be finite")
        return self


class CheckerProgram(Frozen):
    """A checker program, run sandboxed (it is untrusted too), testlib-style:
    ``checker input.txt expected.txt output.txt``; exit 0 accepts, 1 or 2 reject
    (wrong answer, presentation error), anything else means the checker itself failed
    (``CheckerError``). What it prints on stdout/stderr becomes the test's message.
    It runs in a sandbox of its own, so the submission never sees the expected output.
    """

    source: str = Field(description="the checker's source code")
    language: str = Field("cpp", description="the checker's language")
    limits: Limits = Field(
        default_factory=lambda: Limits(time=10.0, memory_mb=256),
        description="limits of one checker run",
    )


Checker = Literal["tokens", "exact", "lines"] | FloatTolerance | CheckerProgram | CheckerFunction


class TestResult(Frozen):
    """How one test went."""

    __test__ = False

    index: int = Field(description="position in the tests given, from 0")
    name: str | None = None
    verdict: Verdict
    time: float | None = Field(None, description="CPU seconds (user + system)")
    wall: float = Field(0.0, description="wall-clock seconds")
    memory_mb: float | None = Field(
        None,
        description="peak resident memory, MB (the kernel's ru_maxrss). An upper bound: a "
        "program the supervisor forks and execs counts at least the fork's copy of the "
        "supervisor (~9 MB). Memory verdicts come from the cgroup's OOM count, not this.",
    )
    exit_code: int | None = None
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_bytes: bytes = Field(b"", description="the exact bytes kept of stdout")
    stderr_bytes: bytes = Field(b"", description="the exact bytes kept of stderr")
    truncated: bool = False
    checker_message: str = Field(
        "",
        description="what a checker program printed, or the message a checker function "
        "returned with its answer",
    )
    explanation: str = Field(
        "",
        description="why the test was not accepted, in a line; empty for AC. WA: where "
        "the output first differs from the expected one, as the checker compares them "
        "(\"line 3: expected '42', got '41'\"; tokens and FloatTolerance name the token "
        "and its line; lines cut to about 60 characters around the difference), or a "
        "custom checker's message; RE: the exit code or signal and the last line of "
        "stderr; TLE, MLE, OLE: the limit that ended it",
    )

    @property
    def passed(self) -> bool:
        return self.verdict == "AC"


class JudgeReport(Frozen):
    """The outcome of judging one submission on a list of tests.

    ``verdict`` is the first non-AC verdict in test order ("AC" when all pass, "CE"
    when the source does not compile, in which case ``tests`` is empty). With
    ``stop_on_failure=True`` the tests after the first failure are not run and do not
    appear in ``tests``.
    """

    verdict: Verdict
    tests: tuple[TestResult, ...] = ()
    language: str = "python"
    compile_output: str = Field("", description="the compiler's stdout + stderr")
    compile_time: float | None = Field(None, description="wall seconds spent compiling")
    total_tests: int = Field(0, description="number of tests given")

    @property
    def passed(self) -> int:
        """How many tests were accepted."""
        return sum(1 for t in self.tests if t.verdict == "AC")

    @property
    def max_time(self) -> float:
        return max((t.time or 0.0 for t in self.tests), default=0.0)

    @property
    def max_memory_mb(self) -> float:
        return max((t.memory_mb or 0.0 for t in self.tests), default=0.0)
