"""The languages of Judge0 CE beyond the ten built in, from Debian's packages: bookworm's,
and another release's where only that one carries the toolchain (Python 2 from bullseye,
Swift from trixie; each image stands on a base of its own suite).

Each is an ordinary :class:`LanguageSpec`, registered like the built-in ones, so SDK users
get them too (``Sandbox.run(code, language="haskell")``). Source file names and the
compile/run split follow Judge0 CE's (``script.lua`` compiled by ``luac``, ``Main.kt``
run as ``MainKt``...), so programs written for Judge0 behave the same here.

Layers: languages on the same runtime name it in ``base_packages``, rendered exactly as
the image holding only that runtime renders it (Java's JDK, C's gcc), so the engine's
build cache stores it once.
"""

from __future__ import annotations

from .builtin import C_SAMPLE, CPP_SAMPLE, JVM_FLAGS
from .spec import LanguageSpec

_JDK = ("default-jdk-headless",)  # the java image's package: its layer is reused
_GCC = ("gcc", "libc6-dev")  # the c image's packages
_JAVA_OPTS = " ".join((*JVM_FLAGS, "-XX:MaxRAMPercentage=60", "-Xss64m"))

# OTP 25's JIT maps its code through a memfd that RLIMIT_FSIZE counts: below ~16 MB the
# VM dies of SIGXFSZ before the program starts (Judge0's OTP 22 had no JIT)
_BEAM_FSIZE = 32.0

PLAINTEXT = LanguageSpec(
    name="plaintext",
    aliases=("text", "plain-text"),
    source_file="text.txt",
    run=("cat", "text.txt"),
    version_command=("cat", "--version"),
)

EXECUTABLE = LanguageSpec(
    name="executable",
    aliases=("binary",),
    packages=("libstdc++6",),
    source_file="a.out",
    run=("sh", "-c", 'chmod +x a.out && exec ./a.out "$@"', "sh"),
    version_command=("sh", "-c", "uname -m"),
)

ASSEMBLY = LanguageSpec(
    name="assembly",
    aliases=("nasm", "asm"),
    packages=("nasm", "binutils"),
    source_file="main.asm",
    compile=("sh", "-c", 'nasm -f elf64 -o main.o "$@" main.asm && ld -o a.out main.o', "sh"),
    compile_options_at=None,
    run=("./a.out",),
    version_command=("nasm", "-v"),
)

CLANG_C = LanguageSpec(
    name="clang",
    aliases=("clang-c",),
    base_packages=("clang", "libc6-dev", "libstdc++-12-dev"),
    source_file="main.c",
    compile=("clang", "-O2", "-o", "a.out", "main.c", "-lm"),
    sample=C_SAMPLE,
    run=("./a.out",),
    version_command=("clang", "--version"),
)

CLANG_CPP = CLANG_C.model_copy(
    update={
        "name": "clang-cpp",  # image names allow no "+"
        "aliases": ("clang++",),
        "source_file": "main.cpp",
        "compile": ("clang++", "-O2", "-std=c++17", "-o", "a.out", "main.cpp", "-lm"),
        "sample": CPP_SAMPLE,
        "version_command": ("clang++", "--version"),
    }
)

CSHARP = LanguageSpec(
    name="csharp",
    aliases=("c#", "cs", "mono"),
    packages=("mono-mcs",),
    source_file="Main.cs",
    compile=("mcs", "-out:Main.exe", "Main.cs"),
    sample='class Hello { static void Main() { System.Console.WriteLine("Hello, world!"); } }\n',
    run=("mono", "Main.exe"),
    env={"MONO_GC_PARAMS": "nursery-size=8m"},
    version_command=("mcs", "--version"),
    compile_pids=128,
)

COMMON_LISP = LanguageSpec(
    name="commonlisp",
    aliases=("lisp", "sbcl", "common-lisp"),
    packages=("sbcl",),
    source_file="script.lisp",
    run=("sbcl", "--script", "script.lisp"),
    version_command=("sbcl", "--version"),
)

D = LanguageSpec(
    name="d",
    aliases=("dlang", "gdc"),
    base_packages=_GCC,
    packages=("gdc",),
    source_file="main.d",
    compile=("gdc", "-O2", "-o", "main", "main.d"),
    sample='import std.stdio;\nvoid main() { writeln("Hello, world!"); }\n',
    run=("./main",),
    version_command=("gdc", "--version"),
)

ELIXIR = LanguageSpec(
    name="elixir",
    aliases=("exs",),
    packages=("elixir",),
    source_file="script.exs",
    run=("elixir", "script.exs"),
    sample='IO.puts "Hello, world!"\n',
    env={"ERL_AFLAGS": "+S 1:1 +A 1"},
    min_file_size_mb=_BEAM_FSIZE,
    version_command=("elixir", "--version"),
)

ERLANG = LanguageSpec(
    name="erlang",
    aliases=("erl", "escript"),
    packages=("erlang-base",),
    source_file="main.erl",
    # as Judge0: escript skips the first line, so the module starts on the second
    run=("sh", "-c", "sed -i '1s/^/\\n/' main.erl && exec escript main.erl \"$@\"", "sh"),
    env={"ERL_AFLAGS": "+S 1:1 +A 1"},
    min_file_size_mb=_BEAM_FSIZE,
    version_command=(
        "erl",
        "-noshell",
        "-eval",
        'io:format("~s~n", [erlang:system_info(otp_release)]), halt().',
    ),
)

FORTRAN = LanguageSpec(
    name="fortran",
    aliases=("gfortran", "f90"),
    base_packages=_GCC,
    packages=("gfortran",),
    source_file="main.f90",
    compile=("gfortran", "-O2", "-o", "a.out", "main.f90"),
    sample='program hello\n  print *, "Hello, world!"\nend program hello\n',
    run=("./a.out",),
    version_command=("gfortran", "--version"),
)

HASKELL = LanguageSpec(
    name="haskell",
    aliases=("hs", "ghc"),
    packages=("ghc",),
    source_file="main.hs",
    compile=("ghc", "-O2", "-o", "main", "main.hs"),
    sample='main = putStrLn "Hello, world!"\n',
    run=("./main",),
    version_command=("ghc", "--version"),
    compile_time=60.0,
    compile_pids=128,
    compile_memory_mb=1536,
)

LUA = LanguageSpec(
    name="lua",
    packages=("lua5.3",),
    source_file="script.lua",
    compile=("luac5.3", "script.lua"),  # syntax errors are compile errors, as in Judge0
    run=("lua5.3", "luac.out"),
    version_command=("lua5.3", "-v"),
)

OCAML = LanguageSpec(
    name="ocaml",
    aliases=("ml",),
    packages=("ocaml-nox",),
    source_file="main.ml",
    compile=("ocamlc", "-o", "a.out", "main.ml"),
    sample='print_endline "Hello, world!"\n',
    run=("./a.out",),
    version_command=("ocamlc", "-version"),
)

OCTAVE = LanguageSpec(
    name="octave",
    aliases=("matlab",),
    packages=("octave",),
    source_file="script.m",
    run=("octave-cli", "-q", "--no-gui", "--no-history", "--no-window-system", "script.m"),
    sample="disp('Hello, world!')\n",
    env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
    version_command=("octave-cli", "--version"),
)

PASCAL = LanguageSpec(
    name="pascal",
    aliases=("fpc", "pas"),
    packages=("fp-compiler", "fp-units-rtl"),
    source_file="main.pas",
    compile=("fpc", "-O2", "-omain", "main.pas"),
    sample="program Hello;\nbegin\n  writeln('Hello, world!');\nend.\n",
    run=("./main",),
    version_command=("fpc", "-iV"),
)

PHP = LanguageSpec(
    name="php",
    packages=("php-cli",),
    source_file="script.php",
    run=("php", "script.php"),
    # its start looks up ~700 names (the time zone database, its ini files, extensions)
    sample='<?php\necho "Hello, world!\\n";\n',
    version_command=("php", "--version"),
)

PROLOG = LanguageSpec(
    name="prolog",
    aliases=("gprolog", "pro"),
    base_packages=_GCC,
    packages=("gprolog",),
    source_file="main.pro",
    compile=("gplc", "--no-top-level", "-o", "main", "main.pro"),
    sample=":- initialization(main).\nmain :- write('Hello, world!'), nl.\n",
    run=("./main",),
    version_command=("gprolog", "--version"),
)

COBOL = LanguageSpec(
    name="cobol",
    aliases=("cob", "gnucobol"),
    base_packages=_GCC,
    packages=("gnucobol3",),
    source_file="main.cob",
    compile=("cobc", "-free", "-x", "-o", "main", "main.cob"),
    sample="IDENTIFICATION DIVISION.\nPROGRAM-ID. HELLO.\nPROCEDURE DIVISION.\n"
    '    DISPLAY "Hello, world!".\n    STOP RUN.\n',
    run=("./main",),
    version_command=("cobc", "--version"),
)

# As Judge0: clang (for @autoreleasepool and the other Objective-C 2.0 syntax) over
# GNUstep's Foundation, built for GCC's Objective-C runtime; clang's layer is reused.
_GNUSTEP_FLAGS = (
    "-fobjc-runtime=gcc",
    "-fconstant-string-class=NSConstantString",
    "-fobjc-exceptions",
    "-D_NATIVE_OBJC_EXCEPTIONS",
    "-I/usr/include/GNUstep",
    "-I/usr/lib/gcc/x86_64-linux-gnu/12/include",
    "-w",
)
OBJECTIVE_C = LanguageSpec(
    name="objective-c",
    aliases=("objc", "objectivec"),
    base_packages=("clang", "libc6-dev", "libstdc++-12-dev"),
    packages=("libgnustep-base-dev", "libobjc-12-dev"),
    source_file="main.m",
    compile=("clang", *_GNUSTEP_FLAGS, "-o", "a.out", "main.m", "-lgnustep-base", "-lobjc"),
    compile_options_at=len(_GNUSTEP_FLAGS) + 1,
    run=("./a.out",),
    env={"GNUSTEP_USER_ROOT": "/tmp/GNUstep"},
    version_command=("clang", "--version"),
)

R = LanguageSpec(
    name="r",
    aliases=("rscript",),
    packages=("r-base-core",),
    source_file="script.r",
    run=("Rscript", "script.r"),
    env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
    version_command=("Rscript", "--version"),
)

SQLITE = LanguageSpec(
    name="sqlite",
    aliases=("sql", "sqlite3"),
    packages=("sqlite3",),
    source_file="script.sql",
    run=("sh", "-c", "exec sqlite3 db.sqlite < script.sql"),
    version_command=("sqlite3", "--version"),
)

PERL = LanguageSpec(
    name="perl",
    aliases=("pl",),
    packages=("perl",),
    source_file="script.pl",
    run=("perl", "script.pl"),
    version_command=("perl", "-e", "print $^V"),
)

KOTLIN = LanguageSpec(
    name="kotlin",
    aliases=("kt",),
    base_packages=_JDK,
    packages=("kotlin",),
    source_file="Main.kt",
    compile=("kotlinc", "Main.kt"),
    run=("kotlin", "MainKt"),
    env={"JAVA_OPTS": _JAVA_OPTS},
    version_command=("kotlinc", "-version"),
    compile_pids=256,
    compile_time=60.0,
    compile_memory_mb=1536,
)

SCALA = LanguageSpec(
    name="scala",
    base_packages=_JDK,
    packages=("scala",),
    source_file="Main.scala",
    compile=("scalac", "Main.scala"),
    run=("scala", "-nc", "-cp", ".", "Main"),
    env={"JAVA_OPTS": _JAVA_OPTS},
    version_command=("scalac", "-version"),
    compile_pids=256,
    compile_time=60.0,
    compile_memory_mb=1536,
)

GROOVY = LanguageSpec(
    name="groovy",
    base_packages=_JDK,
    packages=("groovy",),
    source_file="script.groovy",
    compile=("groovyc", "script.groovy"),
    run=("java", *JVM_FLAGS, "-Xss64m", "-cp", ".:/usr/share/groovy/lib/*", "script"),
    env={"JAVA_OPTS": _JAVA_OPTS},
    version_command=("groovy", "--version"),
    compile_pids=256,
    compile_time=60.0,
    compile_memory_mb=1536,
)

CLOJURE = LanguageSpec(
    name="clojure",
    aliases=("clj",),
    base_packages=_JDK,
    packages=("clojure",),
    source_file="main.clj",
    run=("clojure", "main.clj"),
    env={"JAVA_OPTS": _JAVA_OPTS},
    version_command=("sh", "-c", "ls /usr/share/java/ | grep -i clojure"),
)

# Judge0's "Multi-file program" (id 89): the sources come as a zip of files with a
# ``compile`` and a ``run`` script; this image carries the common toolchains for them.
# Python 2 left Debian with bookworm; bullseye still carries 2.7.18 (Judge0 has 2.7.17).
# The agent runs on that image's own python3 (3.9).
PYTHON2 = LanguageSpec(
    name="python2",
    aliases=("py2", "python2.7"),
    suite="bullseye",
    packages=("python2.7",),
    source_file="script.py",
    run=("python2.7", "script.py"),
    sample='print "Hello, world!"\n',
    env={"PYTHONDONTWRITEBYTECODE": "1"},
    live_env={"PYTHONUNBUFFERED": "1"},
    version_command=("python2.7", "--version"),
)

# Swift is packaged from trixie on (swiftlang 6.0.3; Judge0 has 5.2.3): Swift 6's
# compiler in its Swift 5 language mode, the mode Judge0's programs were written for
SWIFT = LanguageSpec(
    name="swift",
    suite="trixie",
    packages=("swiftlang", "libc6-dev"),  # its linker needs crt1.o and libc.so
    source_file="main.swift",
    compile=("swiftc", "-swift-version", "5", "-o", "main", "main.swift"),
    sample='print("Hello, world!")\n',
    run=("./main",),
    # the module cache is written next to the compiler by default: the root is read-only
    env={"HOME": "/tmp", "XDG_CACHE_HOME": "/tmp/.cache"},
    version_command=("swiftc", "--version"),
    compile_time=60.0,
    compile_pids=128,
    compile_memory_mb=2048,
)

MULTIFILE = LanguageSpec(
    name="multifile",
    aliases=("multi-file",),
    base_packages=_GCC,
    packages=("g++", "make", "bash", "coreutils"),
    source_file="run",
    compile=("bash", "compile"),
    run=("bash", "run"),
    version_command=("bash", "--version"),
)

EXTRA: tuple[LanguageSpec, ...] = (
    PLAINTEXT,
    EXECUTABLE,
    ASSEMBLY,
    CLANG_C,
    CLANG_CPP,
    CSHARP,
    COMMON_LISP,
    D,
    ELIXIR,
    ERLANG,
    FORTRAN,
    HASKELL,
    LUA,
    OCAML,
    OCTAVE,
    PASCAL,
    PHP,
    PROLOG,
    COBOL,
    OBJECTIVE_C,
    R,
    SQLITE,
    PERL,
    KOTLIN,
    SCALA,
    GROOVY,
    CLOJURE,
    PYTHON2,
    SWIFT,
    MULTIFILE,
)
