"""nox sessions: tests, core, lint, typecheck, docs, bench."""

import nox

nox.options.sessions = ["lint", "typecheck", "core", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session
def core(session: nox.Session) -> None:
    """The core install alone (no extras): imports stay light, the command names extras."""
    session.install("-e", ".", "pytest", "pytest-asyncio", "pytest-timeout")
    session.run("pytest", "tests/test_extras.py", *session.posargs)


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
def docs(session: nox.Session) -> None:
    """The API reference from the docstrings (pdoc) into build/api, or the folder given."""
    session.install("-e", ".[dev]")
    session.run("python", "scripts/build_api_docs.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    session.install("-e", ".[dev]", "epicbox", "urllib3<2")
    session.run("python", "benchmarks/run_all.py", *session.posargs)
    session.run("python", "benchmarks/languages.py")
    session.run("python", "benchmarks/mcp_bench.py", *session.posargs)
    session.run("python", "benchmarks/e2b_bench.py", *session.posargs)  # the E2B wing
    session.run("python", "benchmarks/judge_fleet.py", *session.posargs)  # PostgreSQL fleet
    session.run("python", "benchmarks/fleet.py", *session.posargs)  # needs root: namespace hosts
