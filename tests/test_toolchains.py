"""Toolchains made fast without changing what they do: the precompiled ``bits/stdc++.h``
of the C++ image, and the resident compilers (tsc, javac) pre-started in TypeScript and
Java sandboxes for the compile step.

Pure parts (the spec, the pre-start configuration, which job a resident compiler takes)
run without Docker. On Docker, each resident compiler is driven directly, as the agent
drives it, in a plain container of its image and compared byte for byte (diagnostics,
exit status, emitted files) with the compiler's own command in the same container; then
compile errors, exit codes and uncaught exceptions through sandboxkit are compared with
the plain toolchain (``test_parity.plain_run``).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_parity import plain_run, sandbox_status

import sandboxkit as sk
from sandboxkit._container import SANDBOX_UID
from sandboxkit._images.dockerfile import (
    JAVAC_CLASSES,
    PRESTART_RB,
    PRESTART_RB_DIR,
    PRESTART_TSC,
    agent_files,
    prestart_config,
    render,
)
from sandboxkit._languages import (
    CPP,
    JAVA,
    RUBY,
    TYPESCRIPT,
    LanguageSpec,
    get_language,
    language_env,
)
from sandboxkit._models import Limits
from sandboxkit._run.jobs import compile_limits, make_job
from sandboxkit.agent._prestart import Prestarted

BITS = (
    "#include <bits/stdc++.h>\nusing namespace std;\n"
    "int main() { vector<int> v{3, 1, 2}; sort(v.begin(), v.end());\n"
    '  map<string, int> m{{"a", v[0]}}; cout << m["a"] << v[2] << endl; return 4; }\n'
)


# ------------------------------------------------------------------------------- pure
def test_cpp_precompiles_bits_for_exactly_its_compile_flags() -> None:
    assert CPP.compile is not None
    flags = CPP.compile[1 : CPP.compile.index("-o")]
    text = render(CPP)
    cc = shlex.join(("g++", *flags))
    assert f'{cc} -x c++-header -o "$h.gch" "$h"' in text
    # the build fails unless g++ with those flags then takes the PCH
    assert f"{cc} -x c++ -H -c -o /dev/null - 2>&1 | grep -q" in text
    assert "-I" not in " ".join(CPP.compile)  # the command line is the stock one


@pytest.mark.parametrize("spec", [TYPESCRIPT, JAVA], ids=["typescript", "java"])
def test_resident_compiler_stands_for_the_compile_step(spec: LanguageSpec) -> None:
    text = prestart_config(spec)
    assert text is not None
    conf = json.loads(text)
    assert spec.compile is not None
    assert conf["run"] == list(spec.compile)
    assert conf["env"] == language_env(spec)
    if spec is TYPESCRIPT:
        assert conf["argv"] == ["node", PRESTART_TSC, *spec.compile]
    else:
        jvm = [a.removeprefix("-J") for a in spec.compile if a.startswith("-J")]
        javac = [a for a in spec.compile[1:] if not a.startswith("-J")]
        assert jvm and javac == ["-encoding", "UTF-8", "Main.java"]
        assert conf["argv"] == ["java", *jvm, "-cp", JAVAC_CLASSES, "SandboxkitJavac", *javac]
        assert f"RUN javac -d {JAVAC_CLASSES} " in render(spec)


def test_ruby_is_pre_started_as_its_own_command_beside_a_link_to_the_preload() -> None:
    text = prestart_config(RUBY)
    assert text is not None
    conf = json.loads(text)
    # `ruby main.rb` itself, where main.rb is the preload: $0 and the cmdline are exact
    assert conf["argv"] == conf["run"] == list(RUBY.run) == ["ruby", "main.rb"]
    assert conf["cwd"] == PRESTART_RB_DIR and conf["orders"] == "fields"
    assert f"ln -s {PRESTART_RB} {PRESTART_RB_DIR}/main.rb" in render(RUBY)
    assert "lib/sandboxkit/agent/prestart.rb" in agent_files()


@pytest.mark.parametrize("spec", [TYPESCRIPT, JAVA], ids=["typescript", "java"])
def test_resident_compiler_takes_the_compile_job_and_nothing_else(spec: LanguageSpec) -> None:
    text = prestart_config(spec)
    assert text is not None and spec.compile is not None
    conf = json.loads(text)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        pre = Prestarted.__new__(Prestarted)
        pre.run, pre.env, pre.cwd, pre.pid = conf["run"], conf["env"], "/work", sleeper.pid
        limits = compile_limits(spec, Limits())
        assert pre.fits(make_job(spec, spec.compile, limits))
        # compiler options (Judge0's) change the command: the real compiler runs
        other = spec.with_compile_options(("-d" if spec is JAVA else "--noImplicitAny",))
        assert other.compile is not None
        assert not pre.fits(make_job(other, other.compile, limits))
        assert not pre.fits(make_job(spec, spec.run, Limits()))  # the run step
        job = make_job(spec, spec.compile, limits)
        job["env"] = {**job["env"], "EXTRA": "1"}
        assert not pre.fits(job)  # another environment
    finally:
        sleeper.kill()
        sleeper.wait()


# ----------------------------------------------------------------------------- Docker
pytest_docker = pytest.mark.docker

# Runs the resident compiler of the image as the agent does (fd 3: the job, fd 4: ready),
# then the compiler's own command on the same sources; prints both outcomes as JSON.
HARNESS = r"""
import base64, json, os, shutil, subprocess, sys
conf = json.load(open("/opt/sandboxkit/prestart.json"))
sources = json.loads(sys.argv[1])

def outcome(work, argv, resident):
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    for name, text in sources.items():
        with open(os.path.join(work, name), "w") as f:
            f.write(text)
    if not resident:
        done = subprocess.run(argv, cwd=work, env=conf["env"], capture_output=True)
        out, err, status = done.stdout, done.stderr, done.returncode
    else:
        job_r, job_w = os.pipe()
        ready_r, ready_w = os.pipe()
        def fds():
            os.dup2(job_r, 3)
            os.dup2(ready_w, 4)
        p = subprocess.Popen(argv, cwd=work, env=conf["env"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, pass_fds=(3, 4), preexec_fn=fds)
        os.close(job_r)
        os.close(ready_w)
        said = os.read(ready_r, 1)
        os.write(job_w, json.dumps({"args": [], "env": conf["env"]}).encode())
        os.close(job_w)
        out, err = p.communicate()
        status = p.returncode
        assert said == b"r", (said, err)
    files = {}
    for name in sorted(os.listdir(work)):
        if name not in sources:
            with open(os.path.join(work, name), "rb") as f:
                files[name] = base64.b64encode(f.read()).decode()
    return {"stdout": out.decode(), "stderr": err.decode(), "status": status, "files": files}

print(json.dumps([outcome("/work/resident", conf["argv"], True),
                  outcome("/work/plain", conf["run"], False)]))
"""


def resident_and_plain(image: str, sources: dict[str, str]) -> tuple[dict[str, object], ...]:
    cmd = [
        "docker", "run", "--rm", "--network", "none", "--user", f"{SANDBOX_UID}:{SANDBOX_UID}",
        "--read-only", "--tmpfs", f"/work:rw,exec,uid={SANDBOX_UID},gid={SANDBOX_UID}",
        "--tmpfs", "/tmp:rw,exec,mode=1777", "--memory", "1g", "--workdir", "/work",
        image, "python3", "-c", HARNESS, json.dumps(sources),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    resident, plain = json.loads(done.stdout)
    return resident, plain


TS_CASES = {
    "ok": "const xs: number[] = [3, 1, 2];\nconsole.log(xs.sort().join(' '));\n",
    "type-error": "const n: number = 'text';\nlet s: string = 1 + undefined_name;\n",
    "syntax-error": "function f( {\n  return 1\n",
}
JAVA_CASES = {
    "ok": "public class Main {\n  public static void main(String[] a) {\n"
    "    System.out.println(new Helper().twice(21));\n  }\n}\n",
    "missing-symbol": "public class Main {\n  public static void main(String[] a) {\n"
    "    System.out.println(undefined_name);\n  }\n}\n",
    "syntax-error": "public class Main {\n  public static void main(String[] a) {\n"
    "    int x = ;\n  }\n",
    "deprecation-note": "public class Main {\n  public static void main(String[] a) {\n"
    "    System.out.println(new Integer(5));\n  }\n}\n",
}
# a second source file in the work directory: found through javac's default class path
JAVA_HELPER = "public class Helper { int twice(int x) { return 2 * x; } }\n"


@pytest.fixture(scope="module")
async def toolchain_pool() -> AsyncIterator[sk.SandboxPool]:
    async with sk.SandboxPool(languages=["typescript", "java", "cpp"], size=1) as p:
        yield p


@pytest_docker
@pytest.mark.parametrize("case", sorted(TS_CASES))
async def test_resident_tsc_is_tsc(toolchain_pool: sk.SandboxPool, case: str) -> None:
    image = await toolchain_pool.image_for(TYPESCRIPT)
    resident, plain = resident_and_plain(image, {"main.ts": TS_CASES[case]})
    assert resident == plain
    assert (plain["status"] == 0) == (case == "ok")
    assert "main.js" in plain["files"]  # tsc emits despite type errors


@pytest_docker
@pytest.mark.parametrize("case", sorted(JAVA_CASES))
async def test_resident_javac_is_javac(toolchain_pool: sk.SandboxPool, case: str) -> None:
    image = await toolchain_pool.image_for(JAVA)
    sources = {"Main.java": JAVA_CASES[case], "Helper.java": JAVA_HELPER}
    resident, plain = resident_and_plain(image, sources)
    assert resident == plain
    ok = case in ("ok", "deprecation-note")
    assert (plain["status"] == 0) == ok
    assert ("Main.class" in plain["files"]) == ok
    if case == "ok":
        assert "Helper.class" in plain["files"]
    if case == "deprecation-note":
        assert "deprecat" in str(plain["stderr"])


@pytest_docker
@pytest.mark.parametrize(
    ("language", "source"),
    [
        ("typescript", TS_CASES["type-error"]),
        ("typescript", TS_CASES["syntax-error"]),
        ("java", JAVA_CASES["missing-symbol"]),
        ("java", JAVA_CASES["syntax-error"]),
        ("cpp", "#include <bits/stdc++.h>\nint main() { return undefined_name; }\n"),
    ],
    ids=["ts-type", "ts-syntax", "java-symbol", "java-syntax", "cpp-bits"],
)
async def test_compile_errors_are_the_compilers_own(
    toolchain_pool: sk.SandboxPool, language: str, source: str
) -> None:
    spec = get_language(language)
    assert spec.compile is not None
    r = await toolchain_pool.run(source, language=language)
    assert r.status == "compile_error"
    image = await toolchain_pool.image_for(spec)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, spec.source_file).write_text(source)
        Path(tmp).chmod(0o755)
        Path(tmp, spec.source_file).chmod(0o644)
        cmd = [
            "docker", "run", "--rm", "--network", "none", "--user", f"{SANDBOX_UID}",
            "--read-only", "--tmpfs", f"/work:rw,exec,uid={SANDBOX_UID}", "--tmpfs", "/tmp",
            "--volume", f"{tmp}:/src:ro", "--workdir", "/work", "--entrypoint", "/bin/sh",
            *(f"--env={k}={v}" for k, v in sorted(language_env(spec).items())), image, "-c",
            f"cp /src/* . && exec {shlex.join(spec.compile)}",
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    # sandboxkit reports a compiler's diagnostics in stderr (tsc writes them to stdout)
    assert (r.exit_code, r.stderr_bytes) == (done.returncode, done.stderr + done.stdout)
    assert done.returncode != 0


RUNTIME = [
    ("typescript", "uncaught", "console.log('before');\nthrow new Error('boom');\n", b""),
    ("typescript", "exit-code", "console.log('a');\nprocess.exit(7);\n", b""),
    (
        "typescript",
        "stdin-argv",
        "import * as fs from 'fs';\nprocess.stdout.write(fs.readFileSync(0));\n"
        "console.log(process.argv.length, require.main === module);\n",
        b"one\r\ntwo\xff\x00",
    ),
    (
        "java",
        "uncaught",
        "public class Main {\n  public static void main(String[] a) {\n"
        '    System.out.println("before");\n    throw new IllegalStateException("boom");\n'
        "  }\n}\n",
        b"",
    ),
    (
        "java",
        "exit-code",
        "public class Main {\n  public static void main(String[] a) {\n"
        "    System.out.print(a.length);\n    System.exit(42);\n  }\n}\n",
        b"",
    ),
    (
        "java",
        "static-init",
        'public class Main {\n  static int x = 1 / Integer.parseInt("0");\n'
        "  public static void main(String[] a) { System.out.println(x); }\n}\n",
        b"",
    ),
    (
        "java",
        "stdin-bytes",
        "public class Main {\n  public static void main(String[] a) throws Exception {\n"
        "    System.in.transferTo(System.out);\n  }\n}\n",
        b"one\r\ntwo\xff\x00",
    ),
    ("cpp", "bits", BITS, b""),
]


@pytest_docker
@pytest.mark.parametrize(
    ("language", "name", "source", "stdin"), RUNTIME, ids=[f"{c[0]}-{c[1]}" for c in RUNTIME]
)
async def test_runs_match_the_plain_toolchain(
    toolchain_pool: sk.SandboxPool, language: str, name: str, source: str, stdin: bytes
) -> None:
    image = await toolchain_pool.image_for(get_language(language))
    r = await toolchain_pool.run(source, language=language, stdin=stdin)
    assert r.status != "compile_error", r.stderr
    out, err, status = plain_run(image, language, source, stdin)
    assert status != 99, f"the plain compile failed: {err!r}"
    assert (r.stdout_bytes, r.stderr_bytes, sandbox_status(r)) == (out, err, status)
    if name == "uncaught":
        assert status == 1 and (b"boom" in err)


@pytest_docker
async def test_bits_program_compiles_from_the_pch(toolchain_pool: sk.SandboxPool) -> None:
    r = await toolchain_pool.run(BITS, language="cpp")
    assert (r.status, r.exit_code, r.stdout) == ("error", 4, "13\n")
    image = await toolchain_pool.image_for(CPP)
    assert CPP.compile is not None
    flags = shlex.join(CPP.compile[1 : CPP.compile.index("-o")])
    probe = (
        f"printf '#include <bits/stdc++.h>\\nint main(){{}}\\n' > /tmp/m.cpp && "
        f"g++ {flags} -H -o /tmp/a /tmp/m.cpp 2>&1 | head -n 1; "
        # other flags: g++ reads the header as ever (no PCH, no warning, same program)
        "echo --; g++ -O0 -std=c++20 -H -o /tmp/b /tmp/m.cpp 2>&1"
    )
    cmd = ["docker", "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", image]
    done = subprocess.run(
        [*cmd, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    with_pch, rest = done.stdout.split("\n--\n")
    assert with_pch.startswith("! ") and with_pch.endswith("bits/stdc++.h.gch")
    without = rest.splitlines()
    assert not any(line.startswith("! ") for line in without)
    assert any(line.startswith(". ") and line.endswith("bits/stdc++.h") for line in without)
