"""Languages: the spec model, the languages that come with sandboxkit, and the registry
that names them.

One module per job, each importing only the ones before it, so no import depends on
another's order: ``spec`` (the model and the base environment) ← ``builtin`` (the ten of
DESIGN §5) ← ``judge0`` (the rest of Judge0 CE's catalogue) and ``python_data`` ←
``registry`` (all of them usable by name).
"""

from __future__ import annotations

from .builtin import BASH, BUILTIN, CPP, JAVA, PYTHON, RUBY, TYPESCRIPT
from .registry import REGISTRY, get_language, languages, register_language
from .spec import LanguageSpec, language_env

__all__ = [
    "BASH",
    "BUILTIN",
    "CPP",
    "JAVA",
    "PYTHON",
    "REGISTRY",
    "RUBY",
    "TYPESCRIPT",
    "LanguageSpec",
    "get_language",
    "language_env",
    "languages",
    "register_language",
]
