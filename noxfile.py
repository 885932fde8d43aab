"""nox sessions: tests, lint, typecheck, bench."""

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict", "sandboxkit")


@nox.session
def bench(session: nox.Session) -> None:
    session.install("-e", ".[dev]", "epicbox", "urllib3<2")
    session.run("python", "benchmarks/run_all.py", *session.posargs)
