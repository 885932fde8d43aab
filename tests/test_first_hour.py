"""What a new user meets in the first hour (issue 23, items 1, 4 and 7), through the
public API on real Docker: a session's own files apart from the user's, Python output
as it is printed where it is watched, ``env=`` and ``args=`` wherever a program starts,
and one-shot calls that answer to their public names."""

from __future__ import annotations

import inspect
import pydoc

import anyio
import pytest

import sandboxkit as sk

pytestmark = pytest.mark.docker


# ---------------------------------------------------------------- the user's files
async def test_a_users_main_sh_is_the_users(pool: sk.SandboxPool) -> None:
    async with sk.Sandbox(language="bash", pool=pool) as sb:
        await sb.write_file("main.sh", b"echo hi from the users script\n")
        r = await sb.run("bash main.sh", limits=sk.Limits(time=5))
        assert (r.status, r.stdout) == ("ok", "hi from the users script\n")
        assert await sb.read_file("main.sh") == b"echo hi from the users script\n"


async def test_a_users_main_py_is_the_users(pool: sk.SandboxPool) -> None:
    async with sk.Sandbox(pool=pool) as sb:
        await sb.write_file("main.py", b"print('the user', __name__)\n")
        r = await sb.run("import runpy\nrunpy.run_path('main.py', run_name='m')")
        assert (r.status, r.stdout) == ("ok", "the user m\n"), r.stderr
        # a run's files may carry the source's name too: they are the user's
        r = await sb.run("print(open('main.py').read())", files={"main.py": b"data"})
        assert r.stdout == "data\n"
        assert await sb.read_file("main.py") == b"data"


async def test_internal_files_are_not_listed(pool: sk.SandboxPool) -> None:
    async with sk.Sandbox(pool=pool) as sb:
        await sb.run("print(1)")
        await sb.write_file("notes.txt", b"x")
        assert [e.path for e in await sb.list_files()] == ["notes.txt"]


async def test_a_session_imports_the_users_modules_and_works_in_the_workdir(
    pool: sk.SandboxPool,
) -> None:
    async with sk.Sandbox(pool=pool) as sb:
        await sb.write_file("helper.py", b"VALUE = 41\n")
        r = await sb.run("import os, helper\nprint(helper.VALUE + 1, os.getcwd())")
        assert (r.status, r.stdout) == ("ok", "42 /work\n"), r.stderr
        r = await sb.run("open('out.txt', 'w').write('kept')")
        assert await sb.read_file("out.txt") == b"kept"


async def test_a_compiled_session_keeps_the_users_main_binary() -> None:
    code = '#include <stdio.h>\n#include "answer.h"\nint main(void){printf("%d\\n", ANSWER);}'
    async with (
        sk.SandboxPool(languages=["c"], size=1) as cpool,
        sk.Sandbox(language="c", pool=cpool) as sb,
    ):
        await sb.write_file("main", b"user's own\n")
        await sb.write_file("answer.h", b"#define ANSWER 42\n")
        r = await sb.run(code)  # the user's header is found from the build's own place
        assert (r.status, r.stdout) == ("ok", "42\n"), r.stderr
        assert await sb.read_file("main") == b"user's own\n"
        assert sorted(e.path for e in await sb.list_files()) == ["answer.h", "main"]
        bad = await sb.run("int main(void){ return syntax error }")
        assert bad.status == "compile_error"


async def test_one_shot_runs_still_refuse_a_file_named_as_the_source() -> None:
    with pytest.raises(sk.InvalidInput, match="source file"):
        await sk.Sandbox.run("print(1)", files={"main.py": b"x"})


# ---------------------------------------------------------------- output as printed
async def test_a_stream_delivers_plain_print_before_the_end(pool: sk.SandboxPool) -> None:
    # the program never ends by itself: its print() shows only if it is written as it goes
    code = "import time\nprint('first')\ntime.sleep(30)\n"
    seen = ""
    async with pool.stream(code, limits=sk.Limits(time=2)) as events:
        async for ev in events:
            if ev.kind == "exit":
                assert ev.result is not None and ev.result.status == "timeout"
                break
            seen += ev.data
    assert seen == "first\n"


async def test_a_session_run_killed_by_its_time_limit_keeps_what_it_printed(
    pool: sk.SandboxPool,
) -> None:
    async with sk.Sandbox(pool=pool) as sb:
        r = await sb.run("import time\nprint('started')\ntime.sleep(10)", limits=sk.Limits(time=1))
        assert (r.status, r.stdout) == ("timeout", "started\n")


async def test_a_one_shot_run_keeps_python3s_buffering(pool: sk.SandboxPool) -> None:
    # the documented choice: exact as `python3 main.py` into a pipe
    r = await pool.run("import sys\nprint(sys.stdout.line_buffering, sys.stdout.write_through)")
    assert r.stdout == "False False\n"
    async with sk.Sandbox(pool=pool) as sb:
        r = await sb.run("import sys\nprint(sys.stdout.write_through)")
        assert r.stdout == "True\n"


# ---------------------------------------------------------------- env= and args=
# HOME is the sandbox user's own directory (a tmpfs like the workdir)
ECHO = "import os, sys\nprint(sys.argv[1:], os.environ.get('GREETING'), os.environ['HOME'])"


async def test_env_and_args_in_a_one_shot_run(pool: sk.SandboxPool) -> None:
    r = await sk.Sandbox.run(ECHO, env={"GREETING": "hello"}, args=["a", "b c"], pool=pool)
    assert (r.status, r.stdout) == ("ok", "['a', 'b c'] hello /home/sandbox\n"), r.stderr


async def test_env_and_args_in_a_stream_start_and_session(pool: sk.SandboxPool) -> None:
    async with sk.Sandbox.stream(ECHO, env={"GREETING": "s"}, args=["1"], pool=pool) as events:
        out = "".join([ev.data async for ev in events if ev.kind == "stdout"])
    assert out == "['1'] s /home/sandbox\n"
    async with await pool.start(ECHO, env={"GREETING": "p"}, args=["2"]) as proc:
        async for _ in proc:
            pass
    assert proc.result is not None and proc.result.stdout == "['2'] p /home/sandbox\n"
    async with sk.Sandbox(pool=pool) as sb:
        r = await sb.run(ECHO, env={"GREETING": "x", "HOME": "/tmp"}, args=["3"])
        assert r.stdout == "['3'] x /tmp\n"
        r = await sb.run(ECHO)  # nothing carried over from the run before
        assert r.stdout == "[] None /home/sandbox\n"


async def test_args_reach_a_compiled_program() -> None:
    async with sk.SandboxPool(languages=["c"], size=1) as cpool:
        code = "#include <stdio.h>\nint main(int c, char**v){for(int i=1;i<c;i++)puts(v[i]);}"
        r = await cpool.run(code, language="c", args=["x", "y"])
        assert (r.status, r.stdout) == ("ok", "x\ny\n")
        async with sk.Sandbox(language="c", pool=cpool) as sb:
            r = await sb.run(code, args=["-v", "."])
            assert (r.status, r.stdout) == ("ok", "-v\n.\n"), r.stderr


@pytest.mark.parametrize(
    ("env", "args"),
    [
        ({"A=B": "x"}, None),
        ({"": "x"}, None),
        ({"A": 1}, None),
        ({"A": "x\0"}, None),
        (None, "a b"),
        (None, ["ok", 3]),
        (None, ["nul\0"]),
    ],
)
async def test_bad_env_or_args_fail_before_any_container(env: object, args: object) -> None:
    with pytest.raises(sk.InvalidInput):
        await sk.Sandbox.run("print(1)", env=env, args=args)  # type: ignore[arg-type]


# ---------------------------------------------------------------- public names
async def test_a_misspelled_keyword_names_the_public_call() -> None:
    with pytest.raises(TypeError, match=r"Sandbox\.run\(\) got an unexpected keyword"):
        await sk.Sandbox.run("print(1)", langauge="python")  # type: ignore[call-arg]


def test_help_shows_the_public_names() -> None:
    text = pydoc.render_doc(sk.Sandbox.run, renderer=pydoc.plaintext)
    assert "_oneshot" not in text and "run(code" in text
    assert sk.Sandbox.stream.__qualname__ == "Sandbox.stream"
    assert "env" in inspect.signature(sk.Sandbox.start).parameters


async def test_keep_state_cells_take_env_args_and_write_as_they_go(pool: sk.SandboxPool) -> None:
    async with sk.Sandbox(pool=pool, keep_state=True) as sb:
        r = await sb.run(ECHO, env={"GREETING": "k"}, args=["1", "2"])
        assert (r.status, r.stdout) == ("ok", "['1', '2'] k /home/sandbox\n"), r.stderr
        r = await sb.run("import time\nprint('begun')\ntime.sleep(10)", limits=sk.Limits(time=1))
        assert (r.status, r.stdout, r.state_lost) == ("timeout", "begun\n", True)
        r = await sb.run(ECHO, args=["3"])  # a fresh interpreter, the same rules
        assert r.stdout == "['3'] None /home/sandbox\n"


async def test_list_files_of_a_directory(pool: sk.SandboxPool) -> None:
    async with sk.Sandbox(pool=pool) as sb:
        await sb.write_file("a/b/c.txt", b"123")
        await sb.write_file("top.txt", b"1")
        await sb.run("import os\nos.symlink('/etc', 'a/etc')")
        entries = await sb.list_files("a")
        assert [(e.path, e.type) for e in entries] == [
            ("a/b", "dir"),
            ("a/etc", "symlink"),
            ("a/b/c.txt", "file"),
        ]
        assert [e.path for e in await sb.list_files("a/b/")] == ["a/b/c.txt"]
        for bad in ("missing", "top.txt", "a/etc"):  # none, a file, a link out
            with pytest.raises(sk.SandboxFileError):
                await sb.list_files(bad)
        with pytest.raises(sk.InvalidPath):
            await sb.list_files("../etc")


# ---------------------------------------------------------------- calls given up
async def test_a_call_given_up_midway_never_answers_the_next(pool: sk.SandboxPool) -> None:
    # a client that hangs up (an E2B request cancelled at its deadline) leaves the agent's
    # reply on its way: the next call must get its own reply, not the abandoned one's
    async with sk.Sandbox(pool=pool) as sb:
        await sb.write_file("a.txt", b"mine")
        given_up = 0
        for delay in (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.03, 0.05):
            with anyio.move_on_after(delay) as scope:
                await sb.list_files("/usr", depth=4)  # a long reply
            given_up += scope.cancelled_caught
            assert await sb.read_file("a.txt") == b"mine"
            assert (await sb.stat("a.txt")).size == 4
            proc = await sb.start("echo started", shell=True)
            assert proc.pid > 1
        assert given_up > 0  # the case this test is about did happen
