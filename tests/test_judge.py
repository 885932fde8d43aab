"""The autojudge: verdicts on real Docker, checkers (pure and sandboxed), bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import sandboxkit as sk
from sandboxkit._judge import checkers as _checkers

# ---------------------------------------------------------------- pure checkers


def test_tokens_checker_ignores_whitespace() -> None:
    assert _checkers.tokens("1 2\n3\n", "1\n2   3")
    assert not _checkers.tokens("1 2 3", "1 2")
    assert not _checkers.tokens("abc", "ABC")


def test_exact_checker() -> None:
    assert _checkers.exact("3\n", "3\n")
    assert not _checkers.exact("3\n", "3")
    assert not _checkers.exact("3\n", "3 \n")


def test_lines_checker_ignores_trailing_space_and_blank_lines() -> None:
    assert _checkers.lines("a b\nc\n", "a b  \nc\n\n\n")
    assert _checkers.lines("a\r\nb", "a\nb\n")
    assert not _checkers.lines("a b\nc", "a  b\nc")  # inner spacing matters
    assert not _checkers.lines("a\nb", "a\n\nb")  # inner blank lines matter


def test_float_tolerance_checker() -> None:
    eq = _checkers.float_tolerance(1e-6)
    assert eq("0.333333333", "0.3333335")  # absolute
    assert eq("1000000000", "1000000000.5")  # relative
    assert not eq("1.0", "1.001")
    assert eq("yes 1.5", "yes 1.5000001")
    assert not eq("yes 1.5", "no 1.5")
    assert not eq("1 2", "1")
    assert eq("nan inf", "nan inf")
    assert not eq("inf", "-inf")


def test_lines_checker_rules_as_documented() -> None:
    # the examples of its docstring
    assert _checkers.lines("a b\nc\n", "a b  \r\nc")
    assert not _checkers.lines("a b\nc\n", "a  b\nc")
    assert not _checkers.lines("a b\nc\n", "a b\n\nc")
    assert not _checkers.lines("a", " a")  # leading whitespace counts
    assert not _checkers.lines("A", "a")
    assert _checkers.lines("a\tb\t\n", b"a\tb")
    doc = _checkers.lines.__doc__ or ""
    assert "trailing" in doc.lower() and "\\r\\n" in doc and "leading whitespace" in doc


# ---------------------------------------------------------------- explanations (pure)


def test_each_builtin_checker_explains_the_first_difference() -> None:
    assert _checkers.explain_tokens("1 2 3\n4\n", "1 2 3\n5\n") == (
        "token 4 (line 2 of the output): expected '4', got '5'"
    )
    assert _checkers.explain_tokens("1 2\n3\n", "1 2 3") == ""  # equal as tokens
    assert _checkers.explain_tokens("1 2\n3\n", "1 2 4") == (
        "token 3 (line 1 of the output, line 2 of the expected output): expected '3', got '4'"
    )
    assert "ends after 2 tokens; expected 3" in _checkers.explain_tokens("1 2 3", "1 2")
    assert "the first extra is '9'" in _checkers.explain_tokens("1 2", "1 2\n9")
    assert _checkers.explain_lines("a\nb\nc\n", "a\nb  \nd\n") == "line 3: expected 'c', got 'd'"
    assert _checkers.explain_lines("a\nb\n", "a\n") == (
        "line 2: expected 'b', got nothing (the output has 1 line)"
    )
    assert _checkers.explain_lines("a\n", "a\r\n\n\n") == ""
    assert _checkers.explain_exact("3\n", "3") == (
        "the output does not end with a newline; the expected output does"
    )
    assert _checkers.explain_exact("3\n", "3 \n") == "line 1: expected '3', got '3 '"
    assert _checkers.explain_exact("3\n", "3\r\n") == "line 1: expected '3', got '3\\r'"
    explain = _checkers.explain_float_tolerance(1e-6)
    assert explain("0.5 1", "0.52 1") == (
        "token 1 (line 1 of the output): expected '0.5', got '0.52' (off by 0.02, more than 1e-06)"
    )
    assert explain("0.5 1", "0.5000001 1") == ""


def test_a_long_line_is_cut_around_its_first_difference() -> None:
    want = "x" * 500 + "A" + "y" * 500
    got = "x" * 500 + "B" + "y" * 500
    text = _checkers.explain_lines(want, got)
    assert text.startswith("line 1, column 501: expected …'")
    assert "A" in text and "B" in text and len(text) < 200


def test_explanations_match_their_checkers() -> None:
    cases = [("1 2\n", "1  2"), ("a\n", "a \n"), ("x", "y"), ("1\n2", "1\n2\n3"), ("", "")]
    for expected, output in cases:
        for name, check in _checkers.BUILTIN.items():
            said = _checkers.EXPLAIN[name](expected, output)
            assert (said == "") == check(expected, output), (name, expected, output, said)


def test_float_tolerance_model() -> None:
    assert sk.FloatTolerance(1e-3).tolerance == 1e-3
    assert sk.FloatTolerance().tolerance == 1e-6
    with pytest.raises(sk.InvalidInput):
        sk.FloatTolerance(-1.0)


# ---------------------------------------------------------------- bad input (no Docker)


async def test_bad_input_fails_before_any_container() -> None:
    ok = [sk.TestCase(input="", expected="")]
    with pytest.raises(sk.UnknownLanguage):
        await sk.judge("x", language="cobol-85", tests=ok)
    with pytest.raises(sk.InvalidInput):
        await sk.judge("x", tests="1 2")  # type: ignore[arg-type]
    with pytest.raises(sk.InvalidInput):
        await sk.judge("x", tests=[42])  # type: ignore[list-item]
    with pytest.raises(sk.InvalidInput):
        await sk.judge("x", tests=ok, checker="fuzzy")  # type: ignore[arg-type]
    with pytest.raises(sk.InvalidInput):
        await sk.judge(b"x", tests=ok)  # type: ignore[arg-type]
    with pytest.raises(sk.InvalidInput):
        sk.TestCase(input=5)  # type: ignore[arg-type]
    with pytest.raises(sk.InvalidInput, match="at least one"):
        await sk.judge("print(1)", tests=[])  # no tests is not an accepted submission


# ---------------------------------------------------------------- python verdicts

AB = "a, b = map(int, input().split())\nprint(a + b)\n"

BRANCHY_PY = """
import sys
what = sys.stdin.readline().strip()
if what == "ok":
    print(42)
elif what == "wrong":
    print(41)
elif what == "crash":
    raise SystemExit(3)
elif what == "loop":
    while True:
        pass
elif what == "hog":
    chunks = []
    while True:
        chunks.append(bytearray(16 * 1024 * 1024))
elif what == "flood":
    sys.stdout.write("x" * 20000)
"""


@pytest.mark.docker
async def test_python_ab_accepted(pool: sk.SandboxPool) -> None:
    tests = [sk.TestCase(input=f"{i} {i * 3}\n", expected=f"{i * 4}\n") for i in range(5)]
    report = await sk.judge(AB, tests=tests, pool=pool)
    assert report.verdict == "AC"
    assert [t.verdict for t in report.tests] == ["AC"] * 5
    assert report.passed == 5 and report.total_tests == 5
    first = report.tests[0]
    assert first.stdout == "0\n" and first.exit_code == 0 and first.signal is None
    assert first.time is not None and first.time >= 0
    assert first.wall > 0 and first.memory_mb is not None and first.memory_mb > 0


@pytest.mark.docker
async def test_python_every_verdict_in_one_sandbox(pool: sk.SandboxPool) -> None:
    names = ["ok", "wrong", "crash", "loop", "ok", "hog", "flood", "ok"]
    tests = [sk.TestCase(input=n + "\n", expected="42\n", name=n) for n in names]
    limits = sk.Limits(time=1.5, memory_mb=96, output_bytes=1000)
    report = await sk.judge(BRANCHY_PY, tests=tests, limits=limits, pool=pool)
    got = [t.verdict for t in report.tests]
    assert got == ["AC", "WA", "RE", "TLE", "AC", "MLE", "OLE", "AC"], report
    assert report.verdict == "WA"  # the first non-AC in test order
    assert report.tests[2].exit_code == 3
    assert report.tests[6].truncated and len(report.tests[6].stdout) == 1000
    assert [t.name for t in report.tests] == names


@pytest.mark.docker
async def test_stop_on_failure(pool: sk.SandboxPool) -> None:
    tests = [
        sk.TestCase(input="ok\n", expected="42"),
        sk.TestCase(input="crash\n", expected="42"),
        sk.TestCase(input="ok\n", expected="42"),
    ]
    report = await sk.judge(BRANCHY_PY, tests=tests, stop_on_failure=True, pool=pool)
    assert report.verdict == "RE"
    assert [t.verdict for t in report.tests] == ["AC", "RE"]
    assert report.total_tests == 3


@pytest.mark.docker
async def test_each_test_is_a_fresh_process(pool: sk.SandboxPool) -> None:
    # a program that deletes its own source and leaves a background process behind:
    # the next test still runs and finds no leftover
    code = (
        "import os, subprocess, sys\n"
        "def cmdline(p):\n"
        "    try:\n"
        "        return open(f'/proc/{p}/cmdline', 'rb').read()\n"
        "    except OSError:\n"
        "        return b''\n"
        "print(any(cmdline(p).startswith(b'sleep') for p in os.listdir('/proc') if p.isdigit()))\n"
        "subprocess.Popen(['sleep', '60'])\n"
        "os.remove(__file__)\n"
    )
    tests = [sk.TestCase(input="", expected=None) for _ in range(3)]
    report = await sk.judge(code, tests=tests, pool=pool)
    assert report.verdict == "AC", report
    # the sleeper of the previous test is gone (the agent may have forked the next
    # test's child beside this one: that is no leftover)
    assert [t.stdout for t in report.tests] == ["False\n"] * 3


# ---------------------------------------------------------------- checkers end to end


@pytest.mark.docker
async def test_builtin_checkers_through_judge(pool: sk.SandboxPool) -> None:
    code = "print('1   2 ')\nprint()\n"
    case = [sk.TestCase(input="", expected="1 2\n")]
    assert (await sk.judge(code, tests=case, pool=pool)).verdict == "AC"
    assert (await sk.judge(code, tests=case, checker="exact", pool=pool)).verdict == "WA"
    assert (await sk.judge(code, tests=case, checker="lines", pool=pool)).verdict == "WA"
    spaced = [sk.TestCase(input="", expected="1   2\n")]
    assert (await sk.judge(code, tests=spaced, checker="lines", pool=pool)).verdict == "AC"
    pi = [sk.TestCase(input="", expected="3.14159265")]
    prog = "print(3.1415927)"
    assert (
        await sk.judge(prog, tests=pi, checker=sk.FloatTolerance(1e-6), pool=pool)
    ).verdict == "AC"
    far = await sk.judge(prog, tests=pi, checker=sk.FloatTolerance(1e-9), pool=pool)
    assert far.verdict == "WA"
    assert far.tests[0].explanation == (
        "token 1 (line 1 of the output): expected '3.14159265', got '3.1415927' "
        "(off by 5e-08, more than 1e-09)"
    )
    exact = await sk.judge(code, tests=case, checker="exact", pool=pool)
    assert exact.tests[0].explanation == "line 1: expected '1 2', got '1   2 '"
    lines = await sk.judge(code, tests=case, checker="lines", pool=pool)
    assert lines.tests[0].explanation == "line 1: expected '1 2', got '1   2'"


@pytest.mark.docker
async def test_callable_checkers(pool: sk.SandboxPool) -> None:
    seen: list[tuple[str, str, str]] = []

    def any_divisor(inp: str, expected: str, output: str) -> bool:
        seen.append((inp, expected, output))
        n, d = int(inp), int(output)
        return 1 < d < n and n % d == 0

    async def async_never(inp: str, expected: str, output: str) -> bool:
        return False

    code = "n = int(input())\nprint(next(d for d in range(2, n) if n % d == 0))\n"
    tests = [sk.TestCase(input="91\n", expected="7 or 13"), sk.TestCase(input="15\n", expected="")]
    report = await sk.judge(code, tests=tests, checker=any_divisor, pool=pool)
    assert report.verdict == "AC"
    assert seen[0] == ("91\n", "7 or 13", "7\n")
    report = await sk.judge(code, tests=tests, checker=async_never, pool=pool)
    assert [t.verdict for t in report.tests] == ["WA", "WA"]
    assert report.tests[0].explanation.startswith("rejected by the checker; ")
    assert "line 1: expected '7 or 13', got '7'" in report.tests[0].explanation

    def says_why(inp: str, expected: str, output: str) -> tuple[bool, str]:
        return output.strip() == "13", f"{output.strip()} is a divisor, but not the largest"

    report = await sk.judge(code, tests=tests[:1], checker=says_why, pool=pool)
    (test,) = report.tests
    assert test.verdict == "WA"
    assert test.checker_message == test.explanation == "7 is a divisor, but not the largest"


CHECKER_PY = """
import sys
inp, exp, out = (open(p).read() for p in sys.argv[1:4])
a, b = map(int, inp.split())
got = out.split()
if len(got) != 1:
    print("expected one number, got", len(got)); sys.exit(2)
if int(got[0]) != a + b:
    print("wrong sum", got[0]); sys.exit(1)
if exp.strip() == "fail":
    print("bad test data"); sys.exit(3)
print("ok")
"""


@pytest.mark.docker
async def test_checker_program_is_sandboxed_and_testlib_style(pool: sk.SandboxPool) -> None:
    checker = sk.CheckerProgram(source=CHECKER_PY, language="python")
    wrong = "a, b = map(int, input().split())\nprint(a + b + (a == 2))\n"
    tests = [sk.TestCase(input="1 2\n", expected="3"), sk.TestCase(input="2 2\n", expected="4")]
    report = await sk.judge(wrong, tests=tests, checker=checker, pool=pool)
    assert [t.verdict for t in report.tests] == ["AC", "WA"]
    assert report.tests[0].checker_message == "ok"
    assert report.tests[1].checker_message == "wrong sum 5"
    assert (report.tests[0].explanation, report.tests[1].explanation) == ("", "wrong sum 5")
    # the submission's sandbox never holds the expected output
    peek = "import os\nprint(sorted(os.listdir('.')))\n"
    seen = await sk.judge(
        peek,
        tests=[sk.TestCase(input="1 2", expected="x")],
        checker=lambda i, e, o: "expected" not in o,
        pool=pool,
    )
    assert seen.verdict == "AC", seen.tests[0].stdout
    with pytest.raises(sk.CheckerError, match="exit code 3"):
        await sk.judge(
            AB, tests=[sk.TestCase(input="1 2", expected="fail")], checker=checker, pool=pool
        )
    with pytest.raises(sk.CheckerError, match="does not compile"):
        await sk.judge(
            AB,
            tests=tests,
            pool=pool,
            checker=sk.CheckerProgram(source="int main( {", language="cpp"),
        )


# ---------------------------------------------------------------- C++ (compiled once)

BRANCHY_CPP = r"""
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <vector>
int main() {
    char what[32] = {0};
    if (scanf("%31s", what) != 1) return 5;
    long long a, b;
    if (!strcmp(what, "ok")) { scanf("%lld %lld", &a, &b); printf("%lld\n", a + b); }
    else if (!strcmp(what, "wrong")) printf("-1\n");
    else if (!strcmp(what, "segv")) { volatile int *p = nullptr; *p = 1; }
    else if (!strcmp(what, "loop")) { volatile unsigned long x = 0; for (;;) x++; }
    else if (!strcmp(what, "hog")) {
        std::vector<char*> v;
        for (;;) { char *c = (char*)malloc(1 << 24); memset(c, 1, 1 << 24); v.push_back(c); }
    }
    else if (!strcmp(what, "flood")) {
        for (int i = 0; i < 100000; i++) fputs("0123456789", stdout);
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
async def cpp_pool() -> AsyncIterator[sk.SandboxPool]:
    async with sk.SandboxPool(languages=["cpp"], size=1) as p:
        yield p


@pytest.mark.docker
async def test_cpp_compiled_once_every_verdict(cpp_pool: sk.SandboxPool) -> None:
    names = ["ok", "wrong", "segv", "loop", "ok", "hog", "flood", "ok"]
    tests = [sk.TestCase(input=f"{n} 20 22\n", expected="42\n", name=n) for n in names]
    limits = sk.Limits(time=1.0, memory_mb=64, output_bytes=10_000)
    report = await sk.judge(BRANCHY_CPP, language="cpp", tests=tests, limits=limits, pool=cpp_pool)
    assert [t.verdict for t in report.tests] == [
        "AC",
        "WA",
        "RE",
        "TLE",
        "AC",
        "MLE",
        "OLE",
        "AC",
    ], report
    assert report.verdict == "WA"
    assert report.tests[2].signal == 11
    assert report.compile_time is not None and report.compile_time > 0


@pytest.mark.docker
async def test_cpp_compile_error(cpp_pool: sk.SandboxPool) -> None:
    report = await sk.judge(
        "int main() { return undeclared; }",
        language="cpp",
        tests=[sk.TestCase(input="", expected="")],
        pool=cpp_pool,
    )
    assert report.verdict == "CE"
    assert report.tests == ()
    assert "undeclared" in report.compile_output


# ---------------------------------------------------------------- the command line


@pytest.mark.docker
def test_cli_judge_prints_a_verdict_table(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sandboxkit.cli import app

    for name, inp, out in (("1", "1 2", "3"), ("2", "5 5", "10"), ("10", "2 2", "5")):
        (tmp_path / f"{name}.in").write_text(inp + "\n")
        (tmp_path / f"{name}.out").write_text(out + "\n")
    src = tmp_path / "ab.py"
    src.write_text(AB)
    result = CliRunner().invoke(app, ["judge", str(src), "--tests", str(tmp_path)])
    assert result.exit_code == 1, result.output  # test 10 expects a wrong sum
    assert "WA (2/3 passed)" in result.output
    rows = [ln for ln in result.output.splitlines() if "│" in ln and ("AC" in ln or "WA" in ln)]
    assert [ln.split()[1] for ln in rows] == ["1", "2", "10"]  # natural order
    # below the table: why test 10 failed
    assert "10 WA: token 1 (line 1 of the output): expected '5', got '4'" in result.output


def test_cli_judge_default_limits_are_the_sdks() -> None:
    from typer.main import get_command

    from sandboxkit.cli import app

    params = {p.name: p for p in get_command(app).commands["judge"].params}  # type: ignore[attr-defined]
    assert params["time"].default == sk.Limits().time == 10.0
    assert params["memory"].default == sk.Limits().memory_mb


@pytest.mark.docker
async def test_a_sandbox_that_ends_mid_judge_is_replaced_and_recompiled(
    cpp_pool: sk.SandboxPool,
) -> None:
    # what happens after the host had to kill a hung sandbox: the next test leases a
    # fresh one and compiles again, instead of failing the rest
    from sandboxkit._judge.judge import _LeasedProgram

    prog = _LeasedProgram(cpp_pool, sk.get_language("cpp"), sk.Limits(time=2.0), BRANCHY_CPP)
    try:
        compiled = await prog.open()
        assert compiled is not None and compiled.status == "ok"
        assert prog.program is not None
        first = prog.program.box
        assert (await prog.run(b"ok 1 2\n")).stdout == "3\n"
        await first.destroy()
        again = await prog.run(b"ok 2 2\n")
        assert again.stdout == "4\n" and prog.program.box is not first
    finally:
        await prog.aclose()


# ---------------------------------------------------------------- the next test's job, ahead
@pytest.mark.docker
async def test_a_queued_test_lost_with_its_sandbox_runs_again_in_a_fresh_one(
    cpp_pool: sk.SandboxPool,
) -> None:
    from sandboxkit._judge.judge import _LeasedProgram

    prog = _LeasedProgram(cpp_pool, sk.get_language("cpp"), sk.Limits(time=2.0), BRANCHY_CPP)
    try:
        await prog.open()
        assert prog.program is not None
        first = prog.program.box
        r = await prog.run(b"ok 1 2\n", ahead=b"ok 2 2\n")
        assert r.stdout == "3\n" and first.frames_sent == 3  # compile, this run, the next
        await first.destroy()  # the queued job goes with it
        again = await prog.run(b"ok 2 2\n", ahead=b"ok 3 3\n")
        second = prog.program.box
        assert again.stdout == "4\n" and second is not first
        # a call for another input than the queued one: that sandbox is dropped (its
        # queued job with it), not misread
        other = await prog.run(b"ok 5 5\n")
        assert other.stdout == "10\n" and second.closed and prog.program.box is not second
    finally:
        await prog.aclose()


@pytest.mark.docker
async def test_a_program_that_kills_its_supervisor_does_not_cost_the_next_test(
    pool: sk.SandboxPool,
) -> None:
    code = (
        "import resource, sys, time\n"
        "if sys.stdin.read().strip() == 'kill':\n"
        "    resource.prlimit(1, resource.RLIMIT_CPU, (0, 0))\n"
        "    t = time.time()\n"
        "    while time.time() - t < 2:\n        pass\n"
        "print(42)\n"
    )
    tests = [sk.TestCase(input=i, expected="42\n") for i in ("ok", "kill", "ok", "ok")]
    report = await sk.judge(code, tests=tests, pool=pool, limits=sk.Limits(time=10))
    got = [t.verdict for t in report.tests]
    assert got[1] in ("AC", "RE") and [got[0], *got[2:]] == ["AC", "AC", "AC"], report
