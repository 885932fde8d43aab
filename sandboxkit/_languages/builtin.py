"""The ten languages built in (DESIGN §5): Python, JavaScript, TypeScript, C, C++, Java,
Go, Rust, Ruby and Bash, from Debian's packages."""

from __future__ import annotations

import shlex

from .spec import LanguageSpec

PYTHON = LanguageSpec(
    name="python",
    aliases=("py", "python3"),
    packages=("python3",),
    source_file="main.py",
    run=("python3", "main.py"),
    env={"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "0", "PYTHONIOENCODING": "utf-8"},
    # a one-shot run keeps python3's block buffering into a pipe (exact, and fast for
    # large outputs); a stream or a session shows each print() as it happens
    live_env={"PYTHONUNBUFFERED": "1"},
    version_command=("python3", "--version"),
    preload="python",
)

JAVASCRIPT = LanguageSpec(
    name="javascript",
    aliases=("js", "node", "nodejs"),
    packages=("nodejs",),
    source_file="main.js",
    run=("node", "main.js"),
    version_command=("node", "--version"),
    prestart="node",
)

# Debian has no @types/node: a tiny ambient declaration lets Node programs type-check
# (require, process, any module import) without shipping npm packages.
_TS_TYPES = "/opt/sandboxkit/ts-types"
_TS_NODE_GLOBALS = (
    "require",
    "module",
    "exports",
    "process",
    "Buffer",
    "console",
    "global",
    "setTimeout",
    "clearTimeout",
    "setInterval",
    "clearInterval",
    "setImmediate",
    "clearImmediate",
    "queueMicrotask",
    "TextEncoder",
    "TextDecoder",
    "URL",
    "URLSearchParams",
    "structuredClone",
)
_TS_NODE_DTS = (
    " ".join(f"declare var {g}: any;" for g in _TS_NODE_GLOBALS)
    + " declare var __dirname: string; declare var __filename: string; declare module '*';"
)

TYPESCRIPT = LanguageSpec(
    name="typescript",
    aliases=("ts",),
    packages=("nodejs", "node-typescript"),
    setup=(
        f"mkdir -p {_TS_TYPES}/node && printf '%s\\n' \"{_TS_NODE_DTS}\" "
        f"> {_TS_TYPES}/node/index.d.ts",
    ),
    source_file="main.ts",
    compile=(
        "tsc",
        "--target",
        "es2020",
        "--lib",
        "es2020",
        "--module",
        "commonjs",
        "--strict",
        "--esModuleInterop",
        "--skipLibCheck",
        "--pretty",
        "false",
        "--typeRoots",
        _TS_TYPES,
        "--types",
        "node",
        "main.ts",
    ),
    run=("node", "main.js"),
    version_command=("tsc", "--version"),
    prestart="tsc",
)

# what the C and C++ images compile when built, their lookups recorded (LanguageSpec.sample)
C_SAMPLE = (
    "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <math.h>\n"
    'int main(void) { puts("Hello, world!"); return 0; }\n'
)
CPP_SAMPLE = (
    "#include <iostream>\n#include <vector>\n#include <string>\n#include <algorithm>\n"
    'int main() { std::cout << "Hello, world!" << std::endl; }\n'
)

C = LanguageSpec(
    name="c",
    packages=("gcc", "libc6-dev"),
    source_file="main.c",
    compile=("gcc", "-O2", "-pipe", "-o", "main", "main.c", "-lm"),
    run=("./main",),
    version_command=("gcc", "--version"),
    sample=C_SAMPLE,
)


def pch_step(compiler: str, flags: tuple[str, ...], header: str = "bits/stdc++.h") -> str:
    """A build step precompiling ``header`` for exactly ``flags`` (gcc uses a PCH only when
    the flags that shape it match), as ``HEADER.gch`` beside the header gcc finds, so a
    program including it compiles from the PCH with no change to its command line; with
    other flags gcc silently reads the header as before. The build fails if gcc then does
    not take the PCH (``-H`` marks a PCH it uses with ``!``)."""
    cc = shlex.join((compiler, *flags))
    probe = shlex.quote(f"#include <{header}>\\n")
    return (
        f"h=$(printf {probe} | {cc} -x c++ -E -H -o /dev/null - 2>&1 | sed -n 's/^\\. //p')"
        f' \\\n && {cc} -x c++-header -o "$h.gch" "$h"'
        f" \\\n && printf {probe} | {cc} -x c++ -H -c -o /dev/null - 2>&1"
        " | grep -q '^! .*\\.gch$'"
    )


_CPP_FLAGS = ("-O2", "-pipe", "-std=c++17")

CPP = LanguageSpec(
    name="cpp",
    aliases=("c++", "cxx"),
    packages=("g++", "libc6-dev"),
    # precompiled bits/stdc++.h (the contest header): 2.6 s of compile becomes ~0.7 s
    setup=(pch_step("g++", _CPP_FLAGS),),
    source_file="main.cpp",
    compile=("g++", *_CPP_FLAGS, "-o", "main", "main.cpp", "-lm"),
    run=("./main",),
    version_command=("g++", "--version"),
    sample=CPP_SAMPLE,
)

# A small container: the serial collector (no GC threads), no perf-data file in /tmp,
# and a heap bounded by the container's memory so a heap bomb ends in OutOfMemoryError.
# The Judge0 catalogue's JVM languages (``judge0``) run with the same flags.
JVM_FLAGS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData", "-Xshare:auto")

JAVA = LanguageSpec(
    name="java",
    packages=("default-jdk-headless",),
    source_file="Main.java",
    compile=("javac", *(f"-J{f}" for f in JVM_FLAGS), "-encoding", "UTF-8", "Main.java"),
    run=("java", *JVM_FLAGS, "-XX:MaxRAMPercentage=60", "-Xss64m", "-cp", ".", "Main"),
    version_command=("javac", "-version"),
    compile_pids=128,
    prestart="javac",
)

GO = LanguageSpec(
    name="go",
    aliases=("golang",),
    packages=("golang-go",),
    source_file="main.go",
    compile=("go", "build", "-o", "main", "main.go"),
    run=("./main",),
    # the root filesystem is read-only: build cache and GOPATH live in the tmpfs
    env={
        "GOCACHE": "/tmp/go-cache",
        "GOPATH": "/tmp/go",
        "CGO_ENABLED": "0",
        "GO111MODULE": "off",
        "GOFLAGS": "-buildvcs=false",
    },
    version_command=("go", "version"),
    compile_pids=256,
    sample='package main\nimport "fmt"\nfunc main() { fmt.Println("Hello, world!") }\n',
)

RUST = LanguageSpec(
    name="rust",
    aliases=("rs",),
    packages=("rustc",),
    source_file="main.rs",
    compile=("rustc", "--edition", "2021", "-O", "-o", "main", "main.rs"),
    run=("./main",),
    version_command=("rustc", "--version"),
    compile_pids=128,
    sample='fn main() { println!("Hello, world!"); }\n',
)

RUBY = LanguageSpec(
    name="ruby",
    aliases=("rb",),
    packages=("ruby",),
    source_file="main.rb",
    run=("ruby", "main.rb"),
    version_command=("ruby", "--version"),
    prestart="ruby",
)

BASH = LanguageSpec(
    name="bash",
    aliases=("sh", "shell"),
    packages=("bash", "coreutils"),
    source_file="main.sh",
    run=("bash", "main.sh"),
    version_command=("bash", "--version"),
)

BUILTIN: tuple[LanguageSpec, ...] = (
    PYTHON,
    JAVASCRIPT,
    TYPESCRIPT,
    C,
    CPP,
    JAVA,
    GO,
    RUST,
    RUBY,
    BASH,
)
