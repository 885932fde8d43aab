"""The language spec: what an image holds and how a program is compiled and run.

A spec is data. The Dockerfile is generated from it (``_images.dockerfile``), so a user adds a
language, or extends a built-in one (Python plus numpy), with the same model.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_NAME = re.compile(r"^[a-z][a-z0-9_+.-]{0,31}$")
_SUITE = re.compile(r"^[a-z][a-z0-9-]{1,30}$")
_PACKAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+.:~=_<>!,-]*$")


class LanguageSpec(BaseModel):
    """How to build an image for a language and compile/run one source file in it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="lower-case name, also the image name")
    aliases: tuple[str, ...] = ()
    suite: str = Field(
        "bookworm",
        description="the Debian suite of the image's base (bootstrapped from the host's "
        "mirror like bookworm): a toolchain Debian carries only in another release",
    )
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
    prestart: Literal["node", "ruby", "tsc", "javac"] | None = Field(
        None,
        description="start the runtime in each sandbox before its first step, waiting for "
        "it (node: `node -r PRELOAD main.js` blocks before loading main.js; ruby: a started "
        "ruby compiles and runs main.rb when it comes; tsc and javac: "
        "the compiler loaded and warmed in its runtime, compiling when the compile step "
        "comes); a step started otherwise (other argv or env) discards it",
    )
    sample: str | None = Field(
        None,
        description="a small program, compiled (where the language compiles) and run once "
        "when the image is built, with the files they look up recorded; every new sandbox "
        "looks them up again while it waits in the pool, so its first compile and run find "
        "them cached (agent/_lookups.py)",
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

    @field_validator("suite")
    @classmethod
    def _check_suite(cls, v: str) -> str:
        if not _SUITE.match(v):
            raise ValueError(f"suite {v!r} must be a Debian suite name such as 'bookworm'")
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


# Every program's environment, under its spec's own ``env``
BASE_ENV = {
    "HOME": "/home/sandbox",  # a tmpfs of its own (the backend's ContainerSpec.home)
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TMPDIR": "/tmp",
}


def language_env(spec: LanguageSpec) -> dict[str, str]:
    return {**BASE_ENV, **spec.env}
