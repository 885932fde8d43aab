"""The Judge0 languages beyond the ten built in: their generated Dockerfiles (golden
files, pure), and, on real Docker, the SDK reaching them and the new limits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import sandboxkit as sk
from sandboxkit._images.dockerfile import render
from sandboxkit._languages import LanguageSpec
from sandboxkit._languages.judge0 import EXTRA
from sandboxkit._run.outcome import outcome

GOLDEN = Path(__file__).parent / "golden" / "extra"
UPDATE = os.environ.get("SANDBOXKIT_UPDATE_GOLDEN", "") not in ("", "0")


@pytest.mark.parametrize("spec", EXTRA, ids=[s.name for s in EXTRA])
def test_golden_dockerfile(spec: LanguageSpec) -> None:
    path = GOLDEN / f"{spec.name}.Dockerfile"
    text = render(spec)
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path.name}: run with SANDBOXKIT_UPDATE_GOLDEN=1"
    assert text == path.read_text(), (
        f"{spec.name}'s Dockerfile changed; if intended, rerun with SANDBOXKIT_UPDATE_GOLDEN=1"
    )


def test_golden_files_match_the_extra_languages() -> None:
    names = {p.name.removesuffix(".Dockerfile") for p in GOLDEN.glob("*.Dockerfile")}
    assert names == {s.name for s in EXTRA}


def test_limits_defaults_and_ranges() -> None:
    assert sk.Limits().stack_mb == 64
    assert sk.Limits(file_size_mb=0.1).file_size_mb == 0.1
    with pytest.raises(sk.InvalidInput):
        sk.Limits(stack_mb=0)
    with pytest.raises(sk.InvalidInput):
        sk.Limits(file_size_mb=0)


def test_ended_by_from_exit_reports() -> None:
    def ended_by(report: dict[str, object]) -> str | None:
        return outcome(report).ended_by  # type: ignore[arg-type]

    assert ended_by({"reason": None, "exit_code": 0, "signal": None, "oom_kills": 0}) is None
    assert ended_by({"reason": "timeout", "oom_kills": 0}) == "wall_time"
    assert ended_by({"reason": "cpu_timeout", "oom_kills": 0}) == "cpu_time"
    assert ended_by({"reason": "output_limit", "oom_kills": 0}) == "output"
    assert ended_by({"reason": "timeout", "oom_kills": 1}) == "memory"
    assert ended_by({"reason": None, "signal": 25, "oom_kills": 0}) == "file_size"


DEEP = (
    "#include <stdio.h>\n"
    "int down(int n) { volatile char pad[400]; pad[0] = (char)n; "
    "return n == 0 ? pad[0] : down(n - 1) + pad[0] - (char)n + 1; }\n"
    'int main(void) { printf("%d\\n", down(100000)); }'
)


@pytest.mark.docker
async def test_stack_limit_is_applied() -> None:
    deep = await sk.Sandbox.run(DEEP, language="c")  # ~45 MB of stack
    assert deep.status == "ok", deep.stderr
    assert deep.stdout == "100000\n"
    small = await sk.Sandbox.run(DEEP, language="c", limits=sk.Limits(stack_mb=8))
    assert small.status == "error" and small.signal == 11


@pytest.mark.docker
async def test_file_size_below_a_megabyte() -> None:
    code = "open('f', 'wb').write(b'x' * 200_000)"
    r = await sk.Sandbox.run(code, limits=sk.Limits(file_size_mb=0.1))
    assert r.status == "error"
    assert (await sk.Sandbox.run(code, limits=sk.Limits(file_size_mb=0.5))).ok


@pytest.mark.docker
async def test_sdk_runs_an_extra_language_by_alias() -> None:
    r = await sk.Sandbox.run('print "hello from perl\\n";', language="pl")
    assert r.ok and r.stdout == "hello from perl\n"
    r = await sk.Sandbox.run("SELECT 6 * 7;", language="sql")
    assert r.ok and r.stdout == "42\n"


# ---------------------------------------------------------------- other Debian releases
# Languages whose toolchain only another Debian release carries: each image stands on a
# base bootstrapped from that suite, with the agent on that release's own python3.
OTHER_SUITES = {
    # language: (hello reading stdin, a program its toolchain refuses)
    "python2": ('print "hello, %s" % raw_input()', "print 'unclosed"),
    "swift": ('let n = readLine()!\nprint("hello, \\(n)")', 'let x: Int = "text"'),
}


@pytest.mark.docker
@pytest.mark.parametrize("language", sorted(OTHER_SUITES))
async def test_another_suite_s_language_runs(language: str) -> None:
    hello, broken = OTHER_SUITES[language]
    async with sk.Sandbox(language=language) as sb:
        r = await sb.run(hello, stdin="world")
        assert (r.status, r.stdout) == ("ok", "hello, world\n"), r
        bad = await sb.run(broken)
        if sk.get_language(language).compiled:
            assert bad.status == "compile_error" and "error" in bad.stderr, bad
        else:
            assert bad.status == "error" and "SyntaxError" in bad.stderr, bad
        exit_code = "import sys; sys.exit(3)" if language == "python2" else "exit(3)"
        if language == "swift":
            exit_code = "import Foundation\nexit(3)"
        code = await sb.run(exit_code)
        assert (code.status, code.exit_code) == ("error", 3), code
