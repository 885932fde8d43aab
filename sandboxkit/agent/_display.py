"""Rich outputs (display data): figures, tables and images a program shows, as MIME
bundles the way Jupyter's display protocol has them.

Program side (the forked child, or a session's kernel), :func:`install` before the
user's code runs:

- ``display(*objs)`` becomes a builtin: each object's richest representations
  (``_repr_mimebundle_``, ``_repr_png_``, ``_repr_svg_``, ``_repr_html_``,
  ``_repr_markdown_``, ``_repr_json_``, a matplotlib figure as PNG) plus ``text/plain``;
- an import hook (``sys.meta_path``) acts only when the program imports matplotlib:
  the Agg backend (no display) unless the program chose one, a writable config dir
  primed with the image's font cache, and ``pyplot.show()`` turning every open figure
  into an ``image/png`` output. Nothing of matplotlib is imported otherwise.

Each output is written as one JSON file into :data:`DIR` (renamed into place, so a
killed program leaves no half file). Agent side, :func:`collect` sends them as DISPLAY
frames after the run, before its EXIT frame, up to the run's output cap.

Standard library only; ``json``, ``base64`` and ``io`` are imported when first used.
"""

from __future__ import annotations

import builtins
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec
    from typing import Any

# where outputs wait for the agent; a test on a host gives its own (it shares /tmp)
DIR = os.environ.get("SANDBOXKIT_DISPLAY_DIR", "/tmp/.sandboxkit-display")
MPL_CACHE = "/opt/sandboxkit/matplotlib"  # the font cache python-data's image built
MPL_CONFIG = "/tmp/.matplotlib"
MAX_FILES = 1000  # outputs kept per run at most (the byte cap usually comes first)

_REPRS = (
    ("_repr_png_", "image/png"),
    ("_repr_jpeg_", "image/jpeg"),
    ("_repr_svg_", "image/svg+xml"),
    ("_repr_html_", "text/html"),
    ("_repr_markdown_", "text/markdown"),
    ("_repr_latex_", "text/latex"),
    ("_repr_json_", "application/json"),
)
_BINARY = ("image/png", "image/jpeg")
_installed = False
_seq = 0


# --------------------------------------------------------------------- bundles
def _text(mime: str, value: Any) -> str | None:
    """One representation as the bundle's string: base64 for images, JSON text for JSON."""
    if isinstance(value, tuple) and len(value) == 2:  # (data, metadata), as IPython allows
        value = value[0]
    if value is None:
        return None
    if mime in _BINARY:
        import base64

        if isinstance(value, str):
            return value  # already base64
        if isinstance(value, (bytes, bytearray, memoryview)):
            return base64.b64encode(bytes(value)).decode("ascii")
        return None
    if mime == "application/json":
        if isinstance(value, str):
            return value
        import json

        return json.dumps(value, default=str)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else str(value)


def _is_figure(obj: object) -> bool:
    return type(obj).__module__.startswith("matplotlib.figure") and hasattr(obj, "savefig")


def _figure_png(fig: Any) -> str:
    import base64
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def bundle(obj: object) -> dict[str, str]:
    """``obj``'s MIME bundle: every rich representation it offers, and ``text/plain``.
    A representation that raises is left out (as IPython does), never fatal."""
    data: dict[str, str] = {}
    method = getattr(obj, "_repr_mimebundle_", None)
    if callable(method) and not isinstance(obj, type):
        try:
            got = method(include=None, exclude=None)
            if isinstance(got, tuple):
                got = got[0]
            if isinstance(got, dict):
                for mime, value in got.items():
                    text = _text(str(mime), value)
                    if text is not None:
                        data[str(mime)] = text
        except Exception:  # noqa: BLE001 - a broken repr is the object's problem
            pass
    if _is_figure(obj):
        try:
            data.setdefault("image/png", _figure_png(obj))
        except Exception:  # noqa: BLE001
            pass
    for name, mime in _REPRS:
        if mime in data or isinstance(obj, type):
            continue
        method = getattr(obj, name, None)
        if not callable(method):
            continue
        try:
            text = _text(mime, method())
        except Exception:  # noqa: BLE001, S112 - a broken repr is left out
            continue
        if text is not None:
            data[mime] = text
    if "text/plain" not in data:
        try:
            data["text/plain"] = repr(obj)
        except Exception as exc:  # noqa: BLE001
            data["text/plain"] = f"<unrepresentable {type(obj).__name__}: {exc}>"
    return data


def emit(data: dict[str, str], kind: str = "display") -> None:
    """Hand one output to the agent: a JSON file renamed into :data:`DIR`."""
    import json
    import time

    global _seq
    _seq += 1
    os.makedirs(DIR, mode=0o700, exist_ok=True)
    name = f"{time.monotonic_ns():020d}-{os.getpid()}-{_seq}"
    tmp = os.path.join(DIR, "." + name)
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"kind": kind, "data": data}, f)
    os.rename(tmp, os.path.join(DIR, name + ".json"))


def display(*objs: object, **_options: object) -> None:
    """Show each object as rich output (the session's ``display``, as in Jupyter)."""
    for obj in objs:
        emit(bundle(obj))
        if _is_figure(obj):
            _close(obj)


def result(value: object) -> None:
    """A session cell's last expression: its repr printed (as a REPL does) and, when it
    has a richer representation than text, that too as a ``result`` output."""
    data = bundle(value)
    print(data["text/plain"])
    if len(data) > 1:
        emit(data, "result")
        if _is_figure(value):
            _close(value)


# --------------------------------------------------------------------- matplotlib
def _close(fig: object) -> None:
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        try:
            plt.close(fig)
        except Exception:  # noqa: BLE001
            pass


def show_figures(*_args: object, **_kwargs: object) -> None:
    """``pyplot.show()``: every open figure becomes an ``image/png`` output, then closes."""
    plt: Any = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for num in list(plt.get_fignums()):
        fig = plt.figure(num)
        try:
            emit({"image/png": _figure_png(fig), "text/plain": repr(fig)})
        finally:
            plt.close(fig)


def _prime_matplotlib() -> None:
    """Before matplotlib loads: no display needed, a writable config dir with the
    image's font cache in it (else the first import spends seconds building one)."""
    env = os.environ
    env.setdefault("MPLBACKEND", "Agg")
    config = env.setdefault("MPLCONFIGDIR", MPL_CONFIG)
    try:
        if not os.path.isdir(config) and os.path.isdir(MPL_CACHE):
            import shutil

            shutil.copytree(MPL_CACHE, config)
    except OSError:
        pass


class _Hook:
    """A meta-path finder that only wraps the loading of ``matplotlib``(``.pyplot``)."""

    NAMES = ("matplotlib", "matplotlib.pyplot")

    def find_spec(self, name: str, path: Any, target: Any = None) -> ModuleSpec | None:
        if name not in self.NAMES:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        inner = loader.exec_module

        def exec_module(module: Any) -> None:
            if name == "matplotlib":
                _prime_matplotlib()
            inner(module)
            if name == "matplotlib.pyplot":
                module.show = show_figures

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Set up display for the user's program (idempotent: a kernel calls it per cell)."""
    global _installed
    builtins.display = display  # type: ignore[attr-defined]
    if not _installed:
        _installed = True
        sys.meta_path.insert(0, _Hook())


def end_cell() -> None:
    """After a session's cell: figures left open are shown, as a notebook does."""
    if "matplotlib.pyplot" in sys.modules:
        try:
            show_figures()
        except Exception:  # noqa: BLE001
            pass


# --------------------------------------------------------------------- agent side
def collect(limit: int, send: Any, kind: bytes) -> bool:
    """Send the outputs the run left, oldest first, as ``kind`` frames through ``send``
    while their total stays within ``limit`` bytes; remove them all. True: some were
    dropped for the cap. Files are opened without following links or blocking (the
    program could have put anything there) and must be regular."""
    import stat

    try:
        names = sorted(n for n in os.listdir(DIR) if n.endswith(".json"))
    except OSError:
        return False
    total, dropped = 0, False
    for index, name in enumerate(names):
        path = os.path.join(DIR, name)
        data = b""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            try:
                info = os.fstat(fd)
                if stat.S_ISREG(info.st_mode) and index < MAX_FILES:
                    if total + info.st_size <= limit:
                        data = os.read(fd, info.st_size + 1)[: info.st_size]
                    else:
                        dropped = True
                elif index >= MAX_FILES:
                    dropped = True
            finally:
                os.close(fd)
            os.unlink(path)
        except OSError:
            continue
        if data:
            total += len(data)
            send(kind, data)
    return dropped
