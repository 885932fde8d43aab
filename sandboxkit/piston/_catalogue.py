"""How sandboxkit's languages appear to Piston clients: names, aliases, runtimes, versions.

A bot written for Piston names its languages as Piston's packages do (``c++``, ``lisp``,
``rscript``, ``nasm64``...) and often pins a version range. Where a sandboxkit language
and a Piston package run the same language, the runtime shows Piston's name and aliases
(sandboxkit's own name and aliases are added as further aliases); other languages show
sandboxkit's. Versions are the image's toolchain, in semver form as Piston gives them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._languages import LanguageSpec


@dataclass(frozen=True)
class PistonName:
    """A language as Piston's package metadata names it."""

    language: str
    aliases: tuple[str, ...] = ()
    runtime: str | None = None  # the package providing it, when it provides several


# Facts from Piston's package metadata (packages/*/*/metadata.json, latest versions).
_PISTON = {
    name.language: name
    for name in (
        PistonName("bash", ("sh",)),
        PistonName("c", ("gcc",), "gcc"),
        PistonName("c++", ("cpp", "g++"), "gcc"),
        PistonName("clojure", ("clojure", "clj")),
        PistonName("cobol", ("cob",)),
        PistonName("csharp", ("mono", "mono-csharp", "mono-c#", "mono-cs", "c#", "cs"), "mono"),
        PistonName("d", ("gdc",), "gcc"),
        PistonName("elixir", ("elixir", "exs")),
        PistonName("erlang", ("erlang", "erl", "escript")),
        PistonName("fortran", ("fortran", "f90"), "gcc"),
        PistonName("freebasic", ("bas", "fbc", "basic", "qbasic", "quickbasic")),
        PistonName("go", ("go", "golang")),
        PistonName("groovy", ("groovy", "gvy")),
        PistonName("haskell", ("haskell", "hs")),
        PistonName("java"),
        PistonName("javascript", ("node-javascript", "node-js", "javascript", "js"), "node"),
        PistonName("kotlin", ("kt",)),
        PistonName("lisp", ("lisp", "cl", "sbcl", "commonlisp")),
        PistonName("lua"),
        PistonName("nasm64", ("asm64",), "nasm"),
        PistonName("ocaml", ("ocaml", "ml")),
        PistonName("octave", ("matlab", "m")),
        PistonName("pascal", ("freepascal", "pp", "pas")),
        PistonName("perl", ("pl",)),
        PistonName("php"),
        PistonName("prolog", ("prolog", "plg")),
        PistonName("python", ("py", "py3", "python3")),
        PistonName("python2", ("py2", "python2")),
        PistonName("rscript", ("r",)),
        PistonName("ruby", ("ruby3", "rb")),
        PistonName("rust", ("rs",)),
        PistonName("scala", ("sc",)),
        PistonName("sqlite3", ("sqlite", "sql")),
        PistonName("swift", ("swift",)),
        PistonName("typescript", ("ts", "node-ts", "tsc", "typescript5", "ts5")),
    )
}

# sandboxkit's name -> Piston's, where they differ and the programs are the same kind
# (sandboxkit's assembly is 64-bit NASM: Piston's nasm64, not its 32-bit nasm)
_RENAMED = {
    "cpp": "c++",
    "commonlisp": "lisp",
    "r": "rscript",
    "sqlite": "sqlite3",
    "assembly": "nasm64",
}


def piston_name(spec: LanguageSpec) -> PistonName:
    """How ``spec`` is named to Piston clients: Piston's name where Piston has the
    language (sandboxkit's names then become aliases), else sandboxkit's own."""
    known = _PISTON.get(_RENAMED.get(spec.name, spec.name))
    own = (spec.name, *spec.aliases)
    if known is None:
        return PistonName(spec.name, tuple(dict.fromkeys(spec.aliases)))
    extra = [a for a in own if a != known.language and a not in known.aliases]
    return PistonName(known.language, (*known.aliases, *dict.fromkeys(extra)), known.runtime)


_DOTTED = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
_NUMBER = re.compile(r"(?<![\w.])(\d+)(?![\w.])")  # alone: not the 86 of x86_64


def semver_of(toolchain: str, language: str) -> str:
    """The toolchain's version line (``gcc (Debian 12.2.0-14) 12.2.0``, ``Python 3.11.2``,
    ``go version go1.19.8 linux/amd64``) as ``MAJOR.MINOR.PATCH``.

    Lines naming the language are read first (``elixir --version`` names Erlang's
    runtime before Elixir's own version); a dotted number before a bare one; missing
    parts are 0 and leading zeros dropped (NASM's ``2.16.01`` is ``2.16.1``); none at
    all is ``0.0.0``. The line is the first of the image's version output, so a toolchain
    that prints its runtime first (Elixir: Erlang/OTP) shows that runtime's version."""
    lines = toolchain.splitlines()
    word = re.compile(rf"(?<![a-z0-9]){re.escape(language)}(?![a-z0-9])", re.IGNORECASE)
    preferred = [line for line in lines if word.search(line)]
    for pattern in (_DOTTED, _NUMBER):
        for group in (preferred, lines):
            for line in group:
                found = pattern.search(line)
                if found is not None:
                    parts = [int(p) for p in found.groups() if p is not None]
                    parts += [0] * (3 - len(parts))
                    return ".".join(str(p) for p in parts[:3])
    return "0.0.0"


# Signal names as Piston reports them (its api/src/globals.js), by number.
SIGNALS: dict[int, str] = {
    1: "SIGHUP",
    2: "SIGINT",
    3: "SIGQUIT",
    4: "SIGILL",
    5: "SIGTRAP",
    6: "SIGABRT",
    7: "SIGBUS",
    8: "SIGFPE",
    9: "SIGKILL",
    10: "SIGUSR1",
    11: "SIGSEGV",
    12: "SIGUSR2",
    13: "SIGPIPE",
    14: "SIGALRM",
    15: "SIGTERM",
    16: "SIGSTKFLT",
    17: "SIGCHLD",
    18: "SIGCONT",
    19: "SIGSTOP",
    20: "SIGTSTP",
    21: "SIGTTIN",
    22: "SIGTTOU",
    23: "SIGURG",
    24: "SIGXCPU",
    25: "SIGXFSZ",
    26: "SIGVTALRM",
    27: "SIGPROF",
    28: "SIGWINCH",
    29: "SIGIO",
    30: "SIGPWR",
    31: "SIGSYS",
    34: "SIGRTMIN",
    **{34 + n: f"SIGRTMIN+{n}" for n in range(1, 16)},
    **{64 - n: f"SIGRTMAX-{n}" for n in range(1, 15)},
    64: "SIGRTMAX",
}
