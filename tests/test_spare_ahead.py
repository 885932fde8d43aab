"""A spare gets ready ahead for the run it is likely to serve (issue 25: the agent's
``_spare``): the last run's environment, directory and rlimits, the language's
environment before any run. A run that asks for something else must get exactly what
it asks for, as if nothing had been prepared."""

from __future__ import annotations

import pytest

import sandboxkit as sk

pytestmark = pytest.mark.docker

SHOW = (
    "import os, resource, sys\n"
    "print(os.environ.get('SPARE_PROBE'), os.getcwd(), sys.flags.dont_write_bytecode)\n"
    "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], sys.stdout.encoding)\n"
)


async def test_a_run_unlike_the_last_gets_its_own_environment_and_limits(
    pool: sk.SandboxPool,
) -> None:
    wide, narrow = sk.Limits(open_files=512), sk.Limits(open_files=64)
    async with sk.Sandbox(pool=pool) as sb:
        first = await sb.run(SHOW, env={"SPARE_PROBE": "one"}, limits=narrow)
        assert first.stdout.splitlines() == ["one /work 1", "64 utf-8"], first.stderr
        # the spare made after it got ready for that run: this one differs in both
        other = await sb.run(SHOW, env={"PYTHONIOENCODING": "latin-1"}, limits=wide)
        assert other.stdout.splitlines() == ["None /work 1", "512 latin-1"], other.stderr
        same = await sb.run(SHOW, limits=wide)
        assert same.stdout.splitlines() == ["None /work 1", "512 utf-8"], same.stderr
        # set ahead for wider limits: a spare lowers them to the run's
        lower = await sb.run(SHOW, limits=narrow)
        assert lower.stdout.splitlines() == ["None /work 1", "64 utf-8"], lower.stderr
        import_ = await sb.run(
            "import resource\nprint(resource.getrlimit(resource.RLIMIT_NOFILE))", limits=narrow
        )
        assert import_.stdout == "(64, 64)\n", import_.stderr


async def test_a_first_run_with_an_environment_of_its_own(pool: sk.SandboxPool) -> None:
    # the first spare is ready for the language's environment: a run with more gets it
    r = await pool.run(SHOW, env={"SPARE_PROBE": "mine", "PYTHONDONTWRITEBYTECODE": ""})
    assert r.stdout.splitlines() == ["mine /work 0", "256 utf-8"], r.stderr
    r = await pool.run(SHOW)
    assert r.stdout.splitlines() == ["None /work 1", "256 utf-8"], r.stderr


async def test_a_judge_test_after_a_compile_runs_with_its_own_limits(
    pool: sk.SandboxPool,
) -> None:
    # the compile step's spare gets ready for the run it carries (its exact orders)
    source = (
        "#include <stdio.h>\n#include <stdlib.h>\n"
        'int main() { printf("%s\\n", getenv("SPARE_PROBE")); }\n'
    )
    async with sk.Sandbox(language="c", pool=pool) as sb:
        for value in ("a", "b"):
            r = await sb.run(source, env={"SPARE_PROBE": value})
            assert (r.status, r.stdout) == ("ok", f"{value}\n"), r.stderr
