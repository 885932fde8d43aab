"""sandboxkit: run untrusted code in hardened, pre-started Docker containers.

import sandboxkit as sk
result = await sk.Sandbox.run("print(6 * 7)")
"""

from ._default import aclose
from ._errors import (
    CheckerError,
    EngineError,
    EngineUnavailable,
    ImageError,
    InvalidInput,
    InvalidPath,
    PoolClosed,
    PoolError,
    PoolTimeout,
    SandboxError,
    SandboxkitError,
    UnknownLanguage,
)
from ._judge import judge
from ._judge_models import (
    CheckerProgram,
    FloatTolerance,
    JudgeReport,
    TestCase,
    TestResult,
)
from ._languages import LanguageSpec, get_language, register_language
from ._models import Event, Limits, RunResult
from ._sandbox import Sandbox
from ._sandbox_pool import SandboxPool
from ._version import __version__

__all__ = [
    "CheckerError",
    "CheckerProgram",
    "EngineError",
    "EngineUnavailable",
    "Event",
    "FloatTolerance",
    "ImageError",
    "InvalidInput",
    "InvalidPath",
    "JudgeReport",
    "LanguageSpec",
    "Limits",
    "PoolClosed",
    "PoolError",
    "PoolTimeout",
    "RunResult",
    "Sandbox",
    "SandboxError",
    "SandboxPool",
    "SandboxkitError",
    "TestCase",
    "TestResult",
    "UnknownLanguage",
    "__version__",
    "aclose",
    "get_language",
    "judge",
    "register_language",
]
