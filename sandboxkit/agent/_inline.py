"""Python run inline: the forked child of the pre-loaded agent runs the user's file as
``python3 FILE`` would, with no interpreter start-up. Shared with the session kernel.

The program must not see the agent: :func:`forget_agent` takes the agent's directory off
``sys.path`` and its modules out of ``sys.modules`` once, in the agent, before any run
(its functions keep their globals, so it runs on); each program gets a fresh
``__main__``, ``sys.argv`` and standard streams.
"""

from __future__ import annotations

import _signal as signal  # type: ignore[import-not-found]  # see _procs
import atexit
import builtins
import os
import resource
import struct
import sys
import time

from . import _display, _procs

TYPE_CHECKING = False
if TYPE_CHECKING:
    import io
    from types import ModuleType
    from typing import Any, NoReturn

    from .._protocol import RunJob

# the sys.path entry that holds this copy of the package: .../lib/sandboxkit/agent/_inline.py
_LIB = __file__.rsplit("/", 3)[0]
# the encoding the interpreter chose for its own stdio from the locale (the agent runs
# with -I, so PYTHONIOENCODING did not count): a fresh ``python3`` picks it here too
_LOCALE_ENCODING = getattr(sys.__stdout__, "encoding", None) or "utf-8"

# Interpreter variables a fresh ``python3`` reads at its start that a forked, already
# started interpreter cannot take on (hash seed, allocator, optimisation, dev and UTF-8
# modes...). A job whose environment sets one runs the real ``python3`` instead: exact,
# and slower only when asked for. The ones below are honoured inline.
INLINE_VARIABLES = frozenset(
    {
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
        "PYTHONIOENCODING",
        "PYTHONPATH",
        "PYTHONSAFEPATH",
        "PYTHONUSERBASE",
        "PYTHONNOUSERSITE",
        "PYTHONSTARTUP",  # interactive sessions only
        "PYTHONHOME",  # the agent's own: checked equal below
    }
)


# a traced run's child stamps these stages into a page it shares with the agent
STAGES = ("child", "prepared", "became", "code_done", "child_exit")
TRACE: Any = None
# Every forked run's child shares one page with the agent (``PAGE_SIZE`` bytes): a traced
# run's stamps at its start, the exit notice (:func:`notify_exit`) at ``NOTICE_AT``.
PAGE_SIZE = 4096
PAGE: Any = None
PAGE_OWNER = 0  # the run's own process (set in it when forked): the one that notifies
NOTICE_AT = 2048
NOTICE = struct.Struct("<QqqdQ")  # magic, pid, exit status, CPU seconds, peak RSS (KiB)
NOTICE_MAGIC = 0x5AFE_E417_0000_0001


def stamp(stage: int) -> None:
    """Note when ``STAGES[stage]`` ended, in a traced run's child (else nothing)."""
    if TRACE is not None:
        TRACE[8 * stage : 8 * stage + 8] = time.monotonic_ns().to_bytes(8, "little")


def can_inline(env: dict[str, str]) -> bool:
    """Whether the pre-loaded interpreter can run a job with this environment exactly."""
    for name, value in env.items():
        if name.startswith("PYTHON") and value and name not in INLINE_VARIABLES:
            return False
    return not env.get("PYTHONHOME")


def _env_flag(env: dict[str, str], name: str) -> int:
    """An interpreter flag variable as CPython reads it: an integer, other text is 1."""
    value = env.get(name)
    if not value:
        return 0
    try:
        return max(int(value), 0) if int(value) >= 0 else 1
    except ValueError:
        return 1


def warm_compiler() -> None:
    """Compile once in the agent: the first ``compile()`` of a process builds the
    interpreter's AST types (~1.3 ms), which every forked run would otherwise pay."""
    compile("", "<sandboxkit>", "exec", dont_inherit=True)


def forget_agent() -> None:
    """Leave no trace of the agent where a program looks: sys.path, sys.modules.

    Called once by the agent when every module of it is loaded: after this it can import
    from the standard library only. Done there, no forked run pays for it (its writes
    to shared pages would be copied in every child).
    """
    sys.path[:] = [p for p in sys.path if p != _LIB]
    for key in [k for k in sys.path_importer_cache if k == _LIB or k.startswith(_LIB + "/")]:
        del sys.path_importer_cache[key]
    for name in [n for n in sys.modules if n == "sandboxkit" or n.startswith("sandboxkit.")]:
        del sys.modules[name]


def new_main() -> ModuleType:
    """A fresh ``__main__`` module, as the interpreter makes for a script."""
    # the module type without importing types.py: neither the zygote nor a fresh
    # interpreter has, and each spare would load it from disk
    main: ModuleType = type(sys)("__main__")
    main.__annotations__ = {}  # before __builtins__: a fresh interpreter's order of names
    main.__builtins__ = builtins  # type: ignore[attr-defined]
    sys.modules["__main__"] = main
    return main


def _stdio(
    fd: int, name: str, write: bool, encoding: str, errors: str, unbuffered: bool
) -> io.TextIOWrapper:
    """One standard stream as CPython's ``create_stdio`` makes it on POSIX: ``newline="\\n"``
    (no ``\\r\\n`` translation on input), the raw file named ``<stdin>`` and so on,
    unbuffered writes under ``PYTHONUNBUFFERED``, line buffering only on a terminal."""
    import io

    raw = io.FileIO(fd, "wb" if write else "rb", closefd=False)
    raw.name = name
    tty = raw.isatty()
    buf: object
    if write and unbuffered:
        buf = raw
    else:
        buf = io.BufferedWriter(raw) if write else io.BufferedReader(raw)
    return io.TextIOWrapper(
        buf,
        encoding=encoding,
        errors=errors,
        newline="\n",
        line_buffering=tty or (fd == 2 and not unbuffered),
        write_through=write and unbuffered,
    )


def fresh_stdio(env: dict[str, str] | None = None) -> None:
    """New sys.std* objects on descriptors 0-2 (which change from run to run), made as a
    fresh ``python3`` with the environment ``env`` would make them."""
    env = env if env is not None else {}
    encoding, _, errors = env.get("PYTHONIOENCODING", "").partition(":")
    encoding = encoding or _LOCALE_ENCODING
    # as CPython: surrogateescape on stdin/stdout only under the C or POSIX locale
    ctype = env.get("LC_ALL") or env.get("LC_CTYPE") or env.get("LANG") or "C"
    locale_errors = "surrogateescape" if ctype in ("C", "POSIX") else "strict"
    unbuffered = _env_flag(env, "PYTHONUNBUFFERED") > 0
    streams = [
        _stdio(0, "<stdin>", False, encoding, errors or locale_errors, unbuffered),
        _stdio(1, "<stdout>", True, encoding, errors or locale_errors, unbuffered),
        _stdio(2, "<stderr>", True, encoding, "backslashreplace", unbuffered),
    ]
    sys.stdin, sys.stdout, sys.stderr = streams
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr  # type: ignore[misc]


def flush_stdio() -> bool:
    """Flush stdout and stderr as the interpreter's exit does; False: stdout could not be."""
    ok = True
    for stream in (sys.stdout, sys.stderr):
        # closed streams are skipped; stdout that cannot be flushed (a closed pipe) is
        # reported, as the interpreter then exits with status 120
        try:
            if stream is not None and not stream.closed:
                stream.flush()
        except BaseException:  # noqa: BLE001
            if stream is sys.stdout:
                ok = False
    return ok


def exit_status(exc: SystemExit) -> int:
    """The status ``sys.exit(code)`` gives, printing a non-integer code as Python does."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def report_exception(skip: int = 1) -> None:
    """Print the current exception as ``python3 main.py`` would: without the agent's
    frames (the first ``skip`` entries of the traceback)."""
    etype, value, tb = sys.exc_info()
    if etype is None or value is None:
        return
    user_tb = tb
    for _ in range(skip):
        user_tb = user_tb.tb_next if user_tb is not None else None
    value.__traceback__ = user_tb
    sys.excepthook(etype, value, user_tb)


class _Flags(tuple):  # type: ignore[type-arg]
    """``sys.flags`` as a fresh ``python3 FILE`` has them (the agent runs with ``-I``)."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def __getattr__(self, name: str) -> object:
        try:
            return self[self._fields.index(name)]
        except ValueError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return "sys.flags(" + ", ".join(f"{k}={v!r}" for k, v in zip(self._fields, self)) + ")"


# the names of sys.flags in their order, read once in the agent (not in every run)
_Flags._fields = tuple(
    f.partition("=")[0] for f in repr(sys.flags)[len("sys.flags(") : -1].split(", ")
)


def _program_flags(env: dict[str, str]) -> _Flags:
    real = sys.flags
    changed = {
        "isolated": 0,
        "ignore_environment": 0,
        "no_user_site": 1 if env.get("PYTHONNOUSERSITE") else 0,
        "safe_path": bool(env.get("PYTHONSAFEPATH")),
        "dont_write_bytecode": 1 if _env_flag(env, "PYTHONDONTWRITEBYTECODE") else 0,
    }
    return _Flags(changed.get(n, getattr(real, n)) for n in _Flags._fields)


# the environment the interpreter was last made ready for (become_env), in this process
READY_ENV: dict[str, str] | None = None


def is_ready_for(env: dict[str, str]) -> bool:
    """Whether :func:`become_env` was done for ``env``, in its order too (``os.environ``
    lists the names in the order the program's environment has them)."""
    return READY_ENV is not None and list(READY_ENV.items()) == list(env.items())


def become_env(env: dict[str, str]) -> None:
    """The half of :func:`become_script` that depends on the environment alone:
    ``os.environ``, flags, atexit, standard streams, a fresh ``__main__``. The zygote
    does it once for the language's environment (``_zygote``), which its spares inherit;
    a spare does it ahead for another environment its run is likely to have
    (``_spare``); the run then skips it when its environment is that one."""
    global READY_ENV
    environ = os.environ
    for name in list(environ):  # not environ.clear(): it lists the names again for each
        del environ[name]
    environ.update(env)
    sys.flags = _program_flags(env)  # type: ignore[assignment]
    sys.dont_write_bytecode = bool(_env_flag(env, "PYTHONDONTWRITEBYTECODE"))
    atexit._clear()  # nothing the agent registered runs at the program's exit
    fresh_stdio(env)
    new_main()
    _display.install()
    READY_ENV = dict(env)


def become_script(
    argv: list[str], env: dict[str, str], path0: str | None = None
) -> tuple[object, dict[str, object]]:
    """Turn this forked interpreter into ``python3 FILE ARGS...`` (``argv``) started with
    ``env``: environment, argv and flags, ``sys.path``, signals, standard streams, a fresh
    ``__main__``; the compiled program and its globals, to be run by :func:`run_code`.
    ``path0``: ``sys.path[0]`` instead of the script's directory (a session's source is
    kept apart from the workdir, yet imports the user's modules from it)."""
    if not is_ready_for(env):
        become_env(env)
    script = os.path.abspath(argv[1])
    sys.argv = argv[1:]
    sys.orig_argv = list(argv)
    extra = [p for p in env.get("PYTHONPATH", "").split(":") if p]
    head = [] if env.get("PYTHONSAFEPATH") else [path0 or os.path.dirname(script)]
    sys.path[0:0] = head + [os.path.abspath(p) for p in extra]
    main = sys.modules["__main__"]
    main.__file__ = script
    main.__cached__ = None  # type: ignore[attr-defined]
    # importlib.machinery's SourceFileLoader is this class; importing that module would
    # cost every run ~1.3 ms (and a plain start has not imported it either)
    main.__loader__ = sys.modules["_frozen_importlib_external"].SourceFileLoader("__main__", script)
    with open(argv[1], "rb") as f:
        source = f.read()
    # dont_inherit: the agent's own `from __future__` must not change the user's code;
    # the absolute path is what a fresh interpreter shows in tracebacks and warnings
    return compile(source, script, "exec", dont_inherit=True), main.__dict__


def run_code(code_obj: object, namespace: dict[str, object]) -> NoReturn:
    """Run the program, then end as the interpreter does: threads, atexit, flush, status."""
    # a fresh interpreter turns Ctrl-C into KeyboardInterrupt (the agent ignores SIGINT,
    # a child's set-up puts the default back)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    code = 0
    interrupted = False
    try:
        exec(code_obj, namespace)  # type: ignore[arg-type]  # noqa: S102 - that is the job
    except SystemExit as exc:
        code = exit_status(exc)
    except KeyboardInterrupt:
        report_exception(1)
        code, interrupted = 1, True
    except BaseException:  # noqa: BLE001 - report it exactly as the interpreter would
        report_exception(1)
        code = 1
    stamp(3)
    # as the interpreter's exit: wait for non-daemon threads, if the program has any (a
    # fresh interpreter imports threading only when asked to, and neither does the agent:
    # its at-fork step alone costs each forked child ~100 page faults)
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except Exception:  # noqa: BLE001
            pass
    atexit._run_exitfuncs()
    if not flush_stdio():
        code = code or 120
    if interrupted:
        # as CPython: an uncaught KeyboardInterrupt ends the process by SIGINT itself
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        code = 130
    stamp(4)
    notify_exit(code)
    os._exit(code)


def notify_exit(code: int) -> None:
    """The program's last step before ``_exit``: its status and usage into the shared
    page, then every descriptor closed, so the agent sees the end of its output now.

    An exit first tears down the forked address space (~0.5 ms, the pages it shares with
    the agent included) and only then closes descriptors and tells the parent; the agent
    answers from this notice (``Run._take_notice``) and reaps the process later, before
    anything else runs. A program that writes the notice itself gains nothing: the agent
    ends the process with SIGKILL as it takes it, and a kill by a limit (memory, CPU) is
    checked for beside it."""
    page = PAGE
    pid = os.getpid()
    if page is None or pid != PAGE_OWNER:
        return  # a process the program forked, ending as the program would: not its end
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    rss = max(own.ru_maxrss, kids.ru_maxrss)
    page[NOTICE_AT : NOTICE_AT + NOTICE.size] = NOTICE.pack(NOTICE_MAGIC, pid, code, cpu, rss)
    os.closerange(0, 65536)


def read_notice(page: Any, pid: int) -> tuple[int, float, int] | None:
    """Process ``pid``'s exit notice in ``page``: (status, CPU seconds, peak RSS KiB);
    None: none, or another process's."""
    magic, writer, code, cpu, rss = NOTICE.unpack_from(page, NOTICE_AT)
    if magic != NOTICE_MAGIC or writer != pid or not 0 <= code <= 255:
        return None
    return code, cpu, rss


class Become(BaseException):  # not an error: the way out of the agent's stack
    """Raised in the forked child, caught at the agent's outermost level (its
    ``__main__``), which then runs the program: the program starts with the agent's call
    stack unwound, so it has the recursion headroom of a fresh ``python3 FILE`` (bar the
    two frames of the entry and :func:`run_code`)."""

    def __init__(self, code_obj: object, namespace: dict[str, object]) -> None:
        super().__init__()
        self.code_obj, self.namespace = code_obj, namespace

    def run(self) -> NoReturn:
        code_obj, namespace = self.code_obj, self.namespace
        del self.code_obj, self.namespace
        run_code(code_obj, namespace)


def prepare_file(argv: list[str], env: dict[str, str], path0: str | None = None) -> Become:
    """:func:`become_script`, ending the child as the interpreter would if the program
    cannot even be compiled (a syntax error, an unreadable file)."""
    try:
        return Become(*become_script(argv, env, path0))
    except SystemExit as exc:
        os._exit(exit_status(exc))
    except BaseException:  # noqa: BLE001 - reported as the interpreter would
        report_exception(99)  # a SyntaxError shows no frames
        flush_stdio()
        os._exit(1)


def program_for(job: RunJob, argv: list[str], env: dict[str, str]) -> Become:
    """A set-up child's last step: Python run inline gives the program to become
    (raised out of the agent's stack by the caller); anything else is exec'd here."""
    stamp(1)
    if job.get("python_inline") and can_inline(env):
        program = prepare_file(argv, env, job.get("path0"))
        stamp(2)
        return program
    _procs.exec_program(argv, env)
