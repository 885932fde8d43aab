"""The registry: every language usable by name, the built-in ones registered first, then
the Judge0 catalogue, then ``python-data`` (that order decides which spec an alias names
when two claim it)."""

from __future__ import annotations

import threading

from .._errors import InvalidInput, UnknownLanguage
from .builtin import BUILTIN
from .judge0 import EXTRA
from .python_data import PYTHON_DATA
from .spec import LanguageSpec


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
for _spec in (*BUILTIN, *EXTRA, PYTHON_DATA):
    REGISTRY.register(_spec)


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
