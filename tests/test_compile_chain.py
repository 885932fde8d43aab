"""A compile step carries its run (``RunJob.then``, ``_run.jobs.FollowUp``): the agent
starts the program as soon as the compiler ended well, with no round trip to the host;
in every other case the host's own policy runs as before. Real engine, C."""

from __future__ import annotations

import asyncio

import pytest

import sandboxkit as sk
from sandboxkit._languages import get_language
from sandboxkit._run.program import run_program
from sandboxkit._run.reader import final_result
from sandboxkit._validate import RunInput

pytestmark = pytest.mark.docker

C = get_language("c")
HELLO = (
    "#include <stdio.h>\nint main(void){char s[64];"
    ' if (scanf("%63s", s) == 1) printf("got %s\\n", s); return 3;}\n'
)
# ~20 000 functions: gcc -O2 needs far more than 32 MB for it, the program far less
BIG = "#include <stdio.h>\n" + "".join(f"int f{i}(int x){{return x*{i};}}\n" for i in range(20000))
BIG += 'int main(void){printf("%d\\n", f7(6)); return 0;}\n'
SLEEPER = "#include <unistd.h>\nint main(void){sleep(30); return 0;}\n"


@pytest.fixture(scope="module")
async def cpool() -> sk.SandboxPool:
    async with sk.SandboxPool(languages=["c"], size=1) as pool:
        yield pool  # type: ignore[misc]


async def test_the_run_rides_along_with_the_compile(cpool: sk.SandboxPool) -> None:
    async with cpool.checkout(C, cpool.limits) as box:
        job = RunInput({"main.c": HELLO.encode()}, b"abc\n", cpool.limits)
        events = run_program(box, C, job)
        result = await final_result(events)
        assert box.frames_sent == 1  # one job: compile, then the run, in the agent
    assert (result.status, result.exit_code, result.stdout) == ("error", 3, "got abc\n")


async def test_a_compile_error_runs_nothing(cpool: sk.SandboxPool) -> None:
    r = await cpool.run("int main( {", language="c")
    assert r.status == "compile_error" and "error" in r.stderr and r.stdout == ""


async def test_a_compile_that_runs_out_of_memory_is_widened_then_runs(
    cpool: sk.SandboxPool,
) -> None:
    # the compile fails in the run's 32 MB (the run does not follow it), is retried with
    # the compile allowance, and the run then gets its own 32 MB back from the host
    limits = sk.Limits(memory_mb=32, time=60)
    async with cpool.checkout(C, limits) as box:
        job = RunInput({"main.c": BIG.encode()}, None, limits)
        result = await final_result(run_program(box, C, job))
        assert box.frames_sent == 3  # compile, compile again, run
        assert box.resources.memory_mb == 32
    assert (result.status, result.stdout) == ("ok", "42\n")


@pytest.mark.parametrize("after", [0.005, 0.6])  # during the compile, during the run
async def test_a_session_abandoned_mid_step_stays_right(after: float) -> None:
    async with (
        sk.SandboxPool(languages=["c"], size=1) as pool,
        sk.Sandbox(language="c", pool=pool) as sb,
    ):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sb.run(SLEEPER), after)
        r = await sb.run(HELLO, stdin="next\n")
        assert (r.exit_code, r.stdout) == (3, "got next\n")
        r = await sb.run(HELLO, stdin="again\n")
        assert (r.exit_code, r.stdout) == (3, "got again\n")


# ------------------------------------------------------- compile output in streams
# `#warning`: a warning every C compiler prints, whatever its flags
WARNS = '#warning careful\n#include <stdio.h>\nint main(void){printf("hi\\n"); return 0;}\n'


async def test_a_compile_error_streams_its_diagnostics_before_the_exit(
    cpool: sk.SandboxPool,
) -> None:
    events = [ev async for ev in cpool.stream("int main( {", language="c")]
    assert [e.kind for e in events][-1] == "exit"
    result = events[-1].result
    assert result is not None and result.status == "compile_error"
    streamed = "".join(e.data for e in events if e.kind == "stderr")
    assert streamed == result.stderr and "error" in streamed
    assert b"".join(e.data_bytes for e in events if e.kind == "stderr") == result.stderr_bytes


async def test_compiler_warnings_stream_first_and_the_result_stays_the_programs(
    cpool: sk.SandboxPool,
) -> None:
    events = [ev async for ev in cpool.stream(WARNS, language="c")]
    kinds = [e.kind for e in events]
    assert kinds[0] == "stderr" and "careful" in events[0].data
    assert kinds.index("stderr") < kinds.index("stdout")
    result = events[-1].result
    assert result is not None and (result.status, result.stdout) == ("ok", "hi\n")
    assert result.stderr == ""  # the program's own stderr: the warning is the compiler's
    assert (await cpool.run(WARNS, language="c")).stderr == ""


async def test_a_session_that_leaves_at_the_compile_output_stays_usable() -> None:
    code = "#warning careful\n" + HELLO
    async with (
        sk.SandboxPool(languages=["c"], size=1) as pool,
        sk.Sandbox(language="c", pool=pool) as sb,
    ):
        async with sb.stream(code, stdin="x\n") as events:
            async for ev in events:
                assert ev.kind == "stderr"
                break
        r = await sb.run(HELLO, stdin="next\n")
        assert (r.exit_code, r.stdout) == (3, "got next\n")
