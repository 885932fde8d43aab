"""No import cycle among sandboxkit's modules, and every module imports on its own.

A cycle that works only because one side is imported first breaks as soon as someone
imports the other side first (a test, a tool, a new caller). The static check reads every
module's top-level imports (not those under ``if TYPE_CHECKING:`` nor inside functions,
which run later) and resolves them to sandboxkit's own modules; the graph they make must
have no cycle. The dynamic check imports every module in fresh interpreters, in several
orders. No Docker.
"""

from __future__ import annotations

import ast
import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parent.parent / "sandboxkit"


def modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """Every module under the package ``root``: dotted name -> (file, is a package)."""
    found: dict[str, tuple[Path, bool]] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = (path, is_package)
    return found


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def top_level_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The imports that run when the module is imported: in its body and in the blocks
    that body runs (if/try/with/loops/class bodies), not in functions, not for the type
    checker alone."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _type_checking(node.test):
                yield from top_level_imports(node.body)
            yield from top_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            yield from top_level_imports(node.body)
            for handler in node.handlers:
                yield from top_level_imports(handler.body)
            yield from top_level_imports(node.orelse)
            yield from top_level_imports(node.finalbody)
        elif isinstance(node, (ast.With, ast.AsyncWith, ast.ClassDef)):
            yield from top_level_imports(node.body)
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
            yield from top_level_imports(node.body)
            yield from top_level_imports(node.orelse)


def _runs(target: str, importer: str, mods: dict[str, tuple[Path, bool]]) -> set[str]:
    """The package's modules that importing ``target`` runs: ``a.b.c`` runs ``a``, ``a.b``
    and ``a.b.c``, except the importer's own ancestors (always imported before it, they
    do not wait on it) and the importer itself."""
    parts = target.split(".")
    ancestors = {".".join(importer.split(".")[:i]) for i in range(1, importer.count(".") + 1)}
    prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {p for p in prefixes if p in mods and p not in ancestors and p != importer}


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the package's own modules its import runs first.

    ``from P import name`` depends on ``P.name`` when that is a module, else on ``P``
    itself (even an ancestor: its namespace must already hold ``name``)."""
    mods = modules(root)
    top = root.name
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in mods.items():
        package = name if is_package else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in top_level_imports(ast.parse(path.read_text(), str(path)).body):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    edges |= _runs(alias.name, name, mods)
                continue
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] != top:
                continue
            edges |= _runs(target, name, mods)
            for alias in node.names:
                if f"{target}.{alias.name}" in mods:
                    edges |= _runs(f"{target}.{alias.name}", name, mods)
                elif target in mods and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each
    sorted; a module importing itself counts too."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_among_sandboxkit_modules() -> None:
    graph = import_graph(PACKAGE_ROOT)
    assert "sandboxkit._languages.registry" in graph  # the walk found the package
    assert cycles(graph) == []


def test_the_check_sees_a_cycle_and_ignores_type_checking_and_function_imports(
    tmp_path: Path,
) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import A\n")
    (pkg / "a.py").write_text("from .sub.b import B\nA = 1\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from .. import a\nB = 2\n")  # back to a: a cycle
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .d import D\n"
        "def later():\n    from .d import D\n"
        "try:\n    import pkg.sub\nexcept ImportError:\n    pass\n"
    )
    (pkg / "d.py").write_text("from .c import later\nD = 3\n")
    graph = import_graph(pkg)
    assert graph["pkg.c"] == {"pkg.sub"}
    assert graph["pkg.sub.b"] == {"pkg.a"}
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.b"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]


# Each interpreter imports every module in its order; a module whose optional
# dependency (an extra) is not installed is skipped, anything else fails.
_IMPORT_ALL = """
import importlib, json, sys
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "sandboxkit":
            raise
        print("skipped", name, "for want of", exc.name)
"""


def _importable() -> list[str]:
    # a __main__ runs its program when imported
    return sorted(n for n in modules(PACKAGE_ROOT) if not n.endswith("__main__"))


@pytest.mark.parametrize("order", ["sorted", "reversed", "shuffled"])
def test_every_module_imports_in_a_fresh_interpreter(order: str) -> None:
    """Every module imports whatever was imported before it (the root package imports
    the core first whichever module is asked for, so the static check above is what
    guards the core; here the subpackages and the extras' modules meet in new orders)."""
    names = _importable()
    if order == "reversed":
        names.reverse()
    elif order == "shuffled":
        random.Random(20).shuffle(names)
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL, json.dumps(names)],
        cwd=PACKAGE_ROOT.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
