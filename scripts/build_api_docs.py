"""Build the API reference from the docstrings with pdoc: the public names of
``sandboxkit`` and the framework executors of ``sandboxkit.integrations``.

    python scripts/build_api_docs.py [OUT]        # default: build/api; open OUT/index.html

Documents the checkout this script sits in (not another installed copy). The
integrations import their frameworks: install ``.[dev]`` (or ``.[all]``) first.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: what the reference covers; "!" excludes (pdoc's syntax): the integrations' private loop
MODULES = ("sandboxkit", "sandboxkit.integrations", "!sandboxkit.integrations._loop")


def literal_markers(docstring: str) -> str:
    """reST's ``::`` before an indented literal block, which pdoc keeps as text: a line of
    its own goes, ``Example::`` becomes ``Example:`` (the block is code either way)."""
    docstring = re.sub(r"(?m)^[ \t]*::[ \t]*\n", "", docstring)
    return re.sub(r"(?m)(\S)::[ \t]*$", r"\1:", docstring)


def build(out: Path) -> Path:
    """Write the reference into ``out``; returns its index page."""
    sys.path.insert(0, str(ROOT))
    import pdoc
    import pdoc.docstrings
    import pdoc.render

    import sandboxkit

    rst = pdoc.docstrings.rst
    pdoc.docstrings.rst = lambda text, source: rst(literal_markers(text), source)

    pdoc.render.configure(
        docformat="google",  # "Args:" sections; reST roles and ``literals`` are converted too
        show_source=False,
        footer_text=f"sandboxkit {sandboxkit.__version__}",
    )
    pdoc.pdoc(*MODULES, output_directory=out)
    return out / "index.html"


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "build" / "api")
    print(build(target))
