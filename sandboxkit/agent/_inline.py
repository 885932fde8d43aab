"""Python run inline: the forked child of the pre-loaded agent runs the user's file as
``python3 FILE`` would, with no interpreter start-up. Shared with the session kernel.

The program must not see the agent: :func:`forget_agent` takes the agent's directory off
``sys.path`` and its modules out of ``sys.modules`` once, in the agent, before any run
(its functions keep their globals, so it runs on); each program gets a fresh
``__main__``, ``sys.argv`` and standard streams.
"""

from __future__ import annotations

import builtins
import os
import sys
import threading  # at start-up, not in each run (~1 ms): the exit waits for its threads

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import NoReturn

# the sys.path entry that holds this copy of the package: .../lib/sandboxkit/agent/_inline.py
_LIB = __file__.rsplit("/", 3)[0]


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
    import types

    main = types.ModuleType("__main__")
    main.__builtins__ = builtins  # type: ignore[attr-defined]
    sys.modules["__main__"] = main
    return main


def fresh_stdio() -> None:
    """New sys.std* objects on descriptors 0-2 (which change from run to run)."""
    import io

    sys.stdin = io.TextIOWrapper(io.open(0, "rb", closefd=False), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(io.open(1, "wb", closefd=False), encoding="utf-8")
    sys.stderr = io.TextIOWrapper(
        io.open(2, "wb", closefd=False),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )
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


def report_exception() -> None:
    """Print the current exception as ``python3 main.py`` would: without the agent's frame."""
    etype, value, tb = sys.exc_info()
    if etype is None or value is None:
        return
    user_tb = tb.tb_next if tb is not None else None
    value.__traceback__ = user_tb
    sys.excepthook(etype, value, user_tb)


def run_file(argv: list[str], env: dict[str, str]) -> NoReturn:
    """Run ``argv[1]`` (``argv`` is ``python3 FILE ARGS...``) in this interpreter; exit."""
    os.environ.clear()
    os.environ.update(env)
    script = os.path.abspath(argv[1])
    sys.argv = argv[1:]
    sys.path[0:0] = [os.path.dirname(script)]
    fresh_stdio()
    main = new_main()
    main.__file__ = script
    code = 0
    try:
        with open(argv[1], "rb") as f:
            source = f.read()
        # dont_inherit: the agent's own `from __future__` must not change the user's code
        code_obj = compile(source, argv[1], "exec", dont_inherit=True)
        exec(code_obj, main.__dict__)  # noqa: S102 - that is the job
    except SystemExit as exc:
        code = exit_status(exc)
    except BaseException:  # noqa: BLE001 - report it exactly as the interpreter would
        report_exception()
        code = 1
    try:
        threading._shutdown()  # type: ignore[attr-defined]  # wait for non-daemon threads
    except Exception:  # noqa: BLE001
        pass
    if not flush_stdio():
        code = code or 120
    os._exit(code)
