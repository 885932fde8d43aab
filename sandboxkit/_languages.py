"""Language specs: what an image holds and how a program is compiled and run.

A spec is data. The Dockerfile is generated from it (``_dockerfile``), so a user adds a
language, or extends a built-in one (Python plus numpy), with the same model.
"""

from __future__ import annotations

import re
import shlex
import threading
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ._errors import InvalidInput, UnknownLanguage

_NAME = re.compile(r"^[a-z][a-z0-9_+.-]{0,31}$")
_PACKAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+.:~=_<>!,-]*$")


class LanguageSpec(BaseModel):
    """How to build an image for a language and compile/run one source file in it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="lower-case name, also the image name")
    aliases: tuple[str, ...] = ()
    packages: tuple[str, ...] = Field((), description="Debian packages to install")
    base_packages: tuple[str, ...] = Field(
        (),
        description="Debian packages installed in a layer of their own first, so images "
        "needing the same runtime (a JVM, gcc) share that layer; same text, same layer",
    )
    pip_packages: tuple[str, ...] = Field((), description="PyPI packages (Python images)")
    setup: tuple[str, ...] = Field((), description="extra shell steps run as root at build")
    source_file: str = Field(description="file name the source is written to in the workdir")
    compile: tuple[str, ...] | None = Field(None, description="compile argv, run in the workdir")
    run: tuple[str, ...] = Field(description="run argv, run in the workdir")
    env: dict[str, str] = Field(default_factory=dict)
    live_env: dict[str, str] = Field(
        default_factory=dict,
        description="variables over ``env`` for a run watched as it goes (a stream, a "
        "session, ``start``): the runtime writes its output as it goes, not at exit",
    )
    version_command: tuple[str, ...] | None = Field(
        None, description="argv printing the toolchain version"
    )
    preload: Literal["python"] | None = Field(
        None,
        description="run the program inside the agent's already-loaded interpreter "
        "(one fork per run, no interpreter start-up); only for Python",
    )
    compile_options_at: int | None = Field(
        1,
        description="where compiler options go in ``compile`` (an index; None: the end, "
        "for ``sh -c 'script \"$@\"' sh`` wrappers)",
    )
    min_file_size_mb: float = Field(
        0,
        ge=0,
        le=4096,
        description="the runtime's own floor for RLIMIT_FSIZE (the Erlang VM's JIT maps "
        "its code through a memfd, which that limit counts); a lower limit is raised to it",
    )
    prestart: Literal["node", "tsc", "javac"] | None = Field(
        None,
        description="start the runtime in each sandbox before its first step, waiting for "
        "it (node: `node -r PRELOAD main.js` blocks before loading main.js; tsc and javac: "
        "the compiler loaded and warmed in its runtime, compiling when the compile step "
        "comes); a step started otherwise (other argv or env) discards it",
    )
    compile_memory_mb: int = Field(1024, ge=64, le=65536)
    compile_time: float = Field(30.0, gt=0, le=3600)
    compile_pids: int = Field(
        64,
        ge=8,
        le=4096,
        description="processes and threads while compiling (Go, javac and rustc use many)",
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"language name {v!r} must match {_NAME.pattern}")
        return v

    @field_validator("packages", "pip_packages")
    @classmethod
    def _check_packages(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for p in v:
            if not _PACKAGE.match(p):
                raise ValueError(f"package name {p!r} is not a plain package name")
        return v

    @field_validator("source_file")
    @classmethod
    def _check_source(cls, v: str) -> str:
        if not v or "/" in v or v.startswith(".") or "\0" in v:
            raise ValueError(f"source_file {v!r} must be a plain file name")
        return v

    @property
    def compiled(self) -> bool:
        return self.compile is not None

    def with_compile_options(self, options: tuple[str, ...]) -> LanguageSpec:
        """This spec with ``options`` added to its compile command (same image)."""
        if self.compile is None or not options:
            return self
        at = len(self.compile) if self.compile_options_at is None else self.compile_options_at
        argv = (*self.compile[:at], *options, *self.compile[at:])
        return self.model_copy(update={"compile": argv})

    def extend(self, name: str, **changes: object) -> LanguageSpec:
        """A new spec based on this one: tuples given in ``changes`` are appended."""
        data = self.model_dump()
        data["name"] = name
        data["aliases"] = ()
        for key, value in changes.items():
            if key in ("packages", "base_packages", "pip_packages", "setup") and isinstance(
                value, (list, tuple)
            ):
                data[key] = tuple(data[key]) + tuple(value)
            else:
                data[key] = value
        return LanguageSpec.model_validate(data)


_BASE_ENV = {
    "HOME": "/work",
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TMPDIR": "/tmp",
}

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

C = LanguageSpec(
    name="c",
    packages=("gcc", "libc6-dev"),
    source_file="main.c",
    compile=("gcc", "-O2", "-pipe", "-o", "main", "main.c", "-lm"),
    run=("./main",),
    version_command=("gcc", "--version"),
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
)

# A small container: the serial collector (no GC threads), no perf-data file in /tmp,
# and a heap bounded by the container's memory so a heap bomb ends in OutOfMemoryError.
_JVM = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData", "-Xshare:auto")

JAVA = LanguageSpec(
    name="java",
    packages=("default-jdk-headless",),
    source_file="Main.java",
    compile=("javac", *(f"-J{f}" for f in _JVM), "-encoding", "UTF-8", "Main.java"),
    run=("java", *_JVM, "-XX:MaxRAMPercentage=60", "-Xss64m", "-cp", ".", "Main"),
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
)

RUBY = LanguageSpec(
    name="ruby",
    aliases=("rb",),
    packages=("ruby",),
    source_file="main.rb",
    run=("ruby", "main.rb"),
    version_command=("ruby", "--version"),
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


class _Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._specs: dict[str, LanguageSpec] = {}
        self._aliases: dict[str, str] = {}

    def register(self, spec: LanguageSpec, *, replace: bool = False) -> None:
        with self._lock:
            if spec.name in self._specs and not replace:
                raise InvalidInput(
                    f"language {spec.name!r} is already registered; pass replace=True to swap it"
                )
            self._specs[spec.name] = spec
            for alias in spec.aliases:
                self._aliases[alias] = spec.name

    def get(self, name: str) -> LanguageSpec:
        if not isinstance(name, str):
            raise InvalidInput(f"language must be a str, not {type(name).__name__}")
        key = name.strip().lower()
        key = self._aliases.get(key, key)
        try:
            return self._specs[key]
        except KeyError:
            known = ", ".join(sorted(self._specs))
            raise UnknownLanguage(
                f"unknown language {name!r}; known: {known}. "
                "Register your own with sandboxkit.register_language(LanguageSpec(...))."
            ) from None

    def names(self) -> list[str]:
        return sorted(self._specs)


REGISTRY = _Registry()
for _spec in BUILTIN:
    REGISTRY.register(_spec)


def _register_extra() -> None:
    from ._languages_extra import EXTRA

    for spec in EXTRA:
        REGISTRY.register(spec)


_register_extra()


def register_language(spec: LanguageSpec, *, replace: bool = False) -> None:
    """Make ``spec`` usable by name in every run."""
    REGISTRY.register(spec, replace=replace)


def get_language(name: str) -> LanguageSpec:
    return REGISTRY.get(name)


def languages() -> list[LanguageSpec]:
    """Every language a run can name, sorted by name: the built-in ones, Judge0's, and
    those added with :func:`register_language` (``spec.name``, ``spec.aliases``). Their
    images are built on first use, or ahead with ``sandboxkit images build``."""
    return [REGISTRY.get(name) for name in REGISTRY.names()]


def language_env(spec: LanguageSpec) -> dict[str, str]:
    return {**_BASE_ENV, **spec.env}


from ._python_data import PYTHON_DATA  # noqa: E402 - built from PYTHON above

REGISTRY.register(PYTHON_DATA)
