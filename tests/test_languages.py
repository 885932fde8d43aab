"""The run contract in each of the ten built-in languages, on real Docker.

One pool for the module; images are built on first use (``sandboxkit images build``
ahead of time makes this fast).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import sandboxkit as sk
from sandboxkit._languages import BUILTIN, CPP, REGISTRY, get_language

pytestmark = pytest.mark.docker

LANGUAGES = [s.name for s in BUILTIN]
COMPILED = [s.name for s in BUILTIN if s.compiled]

HELLO = {
    "python": 'print("Hello, world!")',
    "javascript": 'console.log("Hello, world!");',
    "typescript": 'const greeting: string = "Hello, world!";\nconsole.log(greeting);',
    "c": '#include <stdio.h>\nint main(void) { puts("Hello, world!"); return 0; }',
    "cpp": '#include <iostream>\nint main() { std::cout << "Hello, world!" << std::endl; }',
    "java": "public class Main {\n  public static void main(String[] args) {\n"
    '    System.out.println("Hello, world!");\n  }\n}',
    "go": 'package main\nimport "fmt"\nfunc main() { fmt.Println("Hello, world!") }',
    "rust": 'fn main() { println!("Hello, world!"); }',
    "ruby": 'puts "Hello, world!"',
    "bash": 'echo "Hello, world!"',
}

# copy stdin to stdout unchanged, then exit with status 3
ECHO_EXIT_3 = {
    "python": "import sys\nsys.stdout.write(sys.stdin.read())\nsys.exit(3)",
    "javascript": 'process.stdout.write(require("fs").readFileSync(0, "utf8"));\n'
    "process.exitCode = 3;",
    "typescript": 'import * as fs from "fs";\nconst data: string = fs.readFileSync(0, "utf8");\n'
    "process.stdout.write(data);\nprocess.exitCode = 3;",
    "c": "#include <stdio.h>\nint main(void) { int c; while ((c = getchar()) != EOF) "
    "putchar(c); return 3; }",
    "cpp": "#include <iostream>\nint main() { std::string l; while (std::getline(std::cin, l)) "
    'std::cout << l << "\\n"; return 3; }',
    "java": "public class Main {\n  public static void main(String[] args) throws Exception {\n"
    "    System.in.transferTo(System.out);\n    System.out.flush();\n"
    "    System.exit(3);\n  }\n}",
    "go": 'package main\nimport ("io"; "os")\nfunc main() { io.Copy(os.Stdout, os.Stdin); '
    "os.Exit(3) }",
    "rust": "use std::io;\nfn main() { io::copy(&mut io::stdin(), &mut io::stdout()).unwrap(); "
    "std::process::exit(3); }",
    "ruby": "$stdout.write($stdin.read)\nexit 3",
    "bash": "cat\nexit 3",
}

# each names an identifier that does not exist: every compiler reports it by name
COMPILE_ERROR = {
    "typescript": "const n: number = undefined_name + 1;\nconsole.log(n);",
    "c": "int main(void) { return undefined_name; }",
    "cpp": "int main() { return undefined_name; }",
    "java": "public class Main {\n  public static void main(String[] a) {\n"
    "    System.out.println(undefined_name);\n  }\n}",
    "go": "package main\nfunc main() { println(undefined_name) }",
    "rust": 'fn main() { println!("{}", undefined_name); }',
}

BUSY_LOOP = {
    "python": "while True:\n    pass",
    "javascript": "while (true) {}",
    "typescript": "let i: number = 0;\nwhile (true) { i++; }",
    "c": "int main(void) { volatile unsigned long i = 0; for (;;) i++; }",
    "cpp": "int main() { volatile unsigned long i = 0; for (;;) i++; }",
    "java": "public class Main {\n  public static void main(String[] a) {\n"
    "    long i = 0;\n    while (true) { i++; }\n  }\n}",
    "go": "package main\nfunc main() { for {} }",
    "rust": "fn main() { loop {} }",
    "ruby": "loop { }",
    "bash": "while :; do :; done",
}

STDIN = "line one\nzwei ✓\n"


@pytest.fixture(scope="module")
async def lp() -> AsyncIterator[sk.SandboxPool]:
    async with sk.SandboxPool(languages=[], size=1) as pool:
        yield pool


def test_ten_builtins_with_versions() -> None:
    assert set(LANGUAGES) == {
        "python",
        "javascript",
        "typescript",
        "c",
        "cpp",
        "java",
        "go",
        "rust",
        "ruby",
        "bash",
    }
    for name in LANGUAGES:
        assert get_language(name).version_command
    assert get_language("js").name == "javascript" and get_language("c++").name == "cpp"


@pytest.mark.parametrize("language", LANGUAGES)
async def test_toolchain_version_is_reported(lp: sk.SandboxPool, language: str) -> None:
    version = await lp.toolchain_version(language)
    assert version != "unknown" and any(ch.isdigit() for ch in version), version


@pytest.mark.parametrize("language", LANGUAGES)
async def test_hello_world(lp: sk.SandboxPool, language: str) -> None:
    r = await lp.run(HELLO[language], language=language)
    assert (r.status, r.stdout, r.exit_code, r.signal) == ("ok", "Hello, world!\n", 0, None), (
        r.stderr
    )
    assert r.language == language


@pytest.mark.parametrize("language", LANGUAGES)
async def test_stdin_echo_and_exit_code(lp: sk.SandboxPool, language: str) -> None:
    r = await lp.run(ECHO_EXIT_3[language], language=language, stdin=STDIN)
    assert (r.status, r.stdout, r.exit_code) == ("error", STDIN, 3), r.stderr


@pytest.mark.parametrize("language", COMPILED)
async def test_compile_error(lp: sk.SandboxPool, language: str) -> None:
    r = await lp.run(COMPILE_ERROR[language], language=language)
    assert r.status == "compile_error", r
    assert "undefined_name" in r.stderr
    assert r.stdout == "" or "undefined_name" in r.stdout


def test_every_compiled_builtin_has_a_compile_error_case() -> None:
    assert set(COMPILE_ERROR) == set(COMPILED)
    assert set(HELLO) == set(ECHO_EXIT_3) == set(BUSY_LOOP) == set(LANGUAGES)


@pytest.mark.parametrize("language", LANGUAGES)
async def test_busy_loop_times_out(lp: sk.SandboxPool, language: str) -> None:
    r = await lp.run(BUSY_LOOP[language], language=language, limits=sk.Limits(time=2))
    assert r.status == "timeout", r


async def test_c_null_dereference_is_signal_11(lp: sk.SandboxPool) -> None:
    # the pointer comes from argc, so the optimiser cannot drop or trap the store
    code = (
        "#include <stdio.h>\nint main(int argc, char **argv) {\n"
        "  int *p = (int *)(long)(argc - 1); (void)argv;\n"
        '  *p = 42; printf("%d\\n", *p); return 0;\n}'
    )
    r = await lp.run(code, language="c")
    assert (r.status, r.signal, r.exit_code) == ("error", 11, None), r


async def test_c_output_flood_is_capped(lp: sk.SandboxPool) -> None:
    code = '#include <stdio.h>\nint main(void) { for (;;) fputs("yyyyyyyyyyyyyyy\\n", stdout); }'
    r = await lp.run(code, language="c", limits=sk.Limits(output_bytes=10_000, time=5))
    assert r.status == "output_limit" and r.truncated and len(r.stdout) == 10_000


@pytest.mark.hostile
async def test_include_dev_zero_is_a_bounded_compile_error(lp: sk.SandboxPool) -> None:
    r = await lp.run('#include "/dev/zero"\nint main(void) { return 0; }', language="c")
    assert r.status == "compile_error", r
    assert "compilation stopped" in r.stderr and "limit" in r.stderr, r.stderr


@pytest.mark.hostile
async def test_template_explosion_is_a_bounded_compile_error(
    lp: sk.SandboxPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every level doubles the type: memory and time grow as 2**60 without limits
    code = (
        "template<class A, class B> struct P {};\n"
        "template<int N, class T> struct X { using type = typename X<N-1, P<T,T>>::type; };\n"
        "template<class T> struct X<0, T> { using type = T; };\n"
        "int main() { X<60, int>::type p; return p; }\n"
    )
    # the same image (only the compile limits differ): it ends on its memory or time cap
    tight = CPP.extend("cpp-tight", compile_time=10.0, compile_memory_mb=256)
    monkeypatch.setitem(REGISTRY._specs, tight.name, tight)  # registered for this test only
    r = await lp.run(code, language="cpp-tight")
    assert r.status == "compile_error", r
    assert "compilation stopped" in r.stderr and "limit" in r.stderr, r.stderr


@pytest.mark.hostile
@pytest.mark.parametrize(
    ("language", "code"),
    [
        (
            "java",
            "import java.util.*;\npublic class Main {\n"
            "  public static void main(String[] a) {\n"
            "    List<long[]> keep = new ArrayList<>();\n"
            "    while (true) keep.add(new long[1 << 20]);\n  }\n}",
        ),
        ("javascript", "const keep = [];\nwhile (true) keep.push(new Array(1 << 20).fill(1.5));"),
    ],
    ids=["jvm", "node"],
)
async def test_heap_bomb_is_oom_or_error(lp: sk.SandboxPool, language: str, code: str) -> None:
    r = await lp.run(code, language=language, limits=sk.Limits(memory_mb=256, time=30))
    assert r.status in ("oom", "error"), r
