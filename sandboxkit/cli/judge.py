"""``sandboxkit judge SOURCE --tests DIR``: judge a source file on N.in/N.out pairs."""

from __future__ import annotations

import re
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from .._default import aclose
from .._judge.judge import judge as run_judge
from .._judge.models import FloatTolerance, JudgeReport, TestCase
from .._models import Limits
from ._common import console, run_async
from .run import guess_language

_COLORS = {
    "AC": "green",
    "WA": "red",
    "TLE": "yellow",
    "MLE": "magenta",
    "RE": "red",
    "CE": "red",
    "OLE": "yellow",
}


def _natural(path: Path) -> list[object]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.stem)]


def load_tests(directory: Path) -> list[TestCase]:
    """Pairs ``NAME.in`` / ``NAME.out`` (``.ans`` also accepted), in natural order."""
    tests: list[TestCase] = []
    for inp in sorted(directory.glob("*.in"), key=_natural):
        out = next(
            (p for p in (inp.with_suffix(".out"), inp.with_suffix(".ans")) if p.exists()), None
        )
        if out is None:
            raise typer.BadParameter(f"{inp.name} has no matching .out file", param_hint="--tests")
        tests.append(
            TestCase(
                input=inp.read_bytes().decode("utf-8", "replace"),
                expected=out.read_text(errors="replace"),
                name=inp.stem,
            )
        )
    if not tests:
        raise typer.BadParameter(f"no *.in files in {directory}", param_hint="--tests")
    return tests


def render(report: JudgeReport) -> Table:
    table = Table(
        title=f"{report.language}: {report.verdict} ({report.passed}/{report.total_tests} passed)"
    )
    for col in ("test", "verdict", "CPU s", "wall s", "memory MB", "exit"):
        table.add_column(col, justify="right" if col != "verdict" else "left")
    for t in report.tests:
        color = _COLORS.get(t.verdict, "white")
        exit_text = (
            f"sig {t.signal}" if t.signal else ("" if t.exit_code is None else str(t.exit_code))
        )
        table.add_row(
            t.name or str(t.index),
            f"[{color}]{t.verdict}[/{color}]",
            "" if t.time is None else f"{t.time:.3f}",
            f"{t.wall:.3f}",
            "" if t.memory_mb is None else f"{t.memory_mb:.1f}",
            exit_text,
        )
    return table


def explanations(report: JudgeReport) -> list[str]:
    """One line per test not accepted: its name, verdict and why (``explanation``)."""
    return [
        f"{t.name or t.index} {t.verdict}: {t.explanation}"
        for t in report.tests
        if t.verdict != "AC" and t.explanation
    ]


_DEFAULTS = Limits()


def judge(
    source: Path = typer.Argument(
        ..., exists=True, dir_okay=False, metavar="SOURCE", help="source file"
    ),
    tests: Path = typer.Option(
        ..., "--tests", exists=True, file_okay=False, help="directory of N.in / N.out pairs"
    ),
    lang: str | None = typer.Option(None, "--lang", "-l", help="language (default: by extension)"),
    time: float = typer.Option(
        _DEFAULTS.time,
        "--time",
        help="wall-clock limit per test, seconds (sk.judge's default, Limits().time)",
    ),
    memory: int = typer.Option(_DEFAULTS.memory_mb, "--memory", help="memory limit, MB"),
    checker: str = typer.Option("tokens", "--checker", help="tokens | exact | lines | float:EPS"),
    stop: bool = typer.Option(False, "--stop-on-failure", help="stop at the first failure"),
) -> None:
    """Compile SOURCE once and run it on every test; print a verdict table.

    Below the table, each test not accepted says why: a wrong answer, where its output
    first differs from the expected one (as the checker compares them), or a checker
    program's message; a crash, its exit code or signal and last line of stderr. Exits 0
    when every test is accepted, 1 otherwise."""
    language = lang or guess_language(source)
    cases = load_tests(tests)
    check: str | FloatTolerance = checker
    if checker.startswith("float:"):
        try:
            check = FloatTolerance(float(checker.split(":", 1)[1]))
        except ValueError:
            raise typer.BadParameter(
                "use float:EPS, e.g. float:1e-6", param_hint="--checker"
            ) from None
    elif checker not in ("tokens", "exact", "lines"):
        raise typer.BadParameter("tokens, exact, lines or float:EPS", param_hint="--checker")

    code = source.read_text()

    async def go() -> JudgeReport:
        try:
            return await run_judge(
                code,
                language=language,
                tests=cases,
                limits=Limits(time=time, memory_mb=memory),
                checker=check,  # type: ignore[arg-type]  # validated just above
                stop_on_failure=stop,
            )
        finally:
            await aclose()

    report = run_async(go())
    if report.verdict == "CE":
        console.print("[red]compile error[/red]")
        console.print(report.compile_output, markup=False, highlight=False)
    else:
        out = Console()
        out.print(render(report))
        for line in explanations(report):
            out.print(line, markup=False, highlight=False)
    raise typer.Exit(0 if report.verdict == "AC" else 1)


def register(app: typer.Typer) -> None:
    app.command("judge", short_help="Judge SOURCE on N.in / N.out tests: a verdict table.")(judge)
