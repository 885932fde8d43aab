"""sandboxkit: run untrusted code in hardened, pre-started Docker containers.

import sandboxkit as sk
result = await sk.Sandbox.run("print(6 * 7)")
"""

from ._backends import EngineConfig
from ._background import BackgroundProcess, Terminal
from ._default import aclose
from ._egress.policy import Egress
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
    SandboxFileError,
    SandboxkitError,
    SnapshotError,
    UnknownLanguage,
    UsageError,
)
from ._fleet.engines import EngineState, EngineStatus
from ._judge.judge import judge
from ._judge.models import (
    CheckerProgram,
    FloatTolerance,
    JudgeReport,
    TestCase,
    TestResult,
    Verdict,
)
from ._languages import LanguageSpec, get_language, languages, register_language
from ._models import (
    DisplayData,
    EndedBy,
    Event,
    FileChange,
    FileEntry,
    Limits,
    NetworkUsage,
    ProcessInfo,
    RunResult,
    SandboxMetrics,
    Status,
)
from ._process import Process
from ._sandbox import Sandbox
from ._sandbox_pool import Runtime, SandboxPool
from ._snapshot.session import delete_snapshot, snapshots
from ._snapshot.store import Snapshot
from ._stream import EventStream
from ._version import __version__

__all__ = [
    "BackgroundProcess",
    "CheckerError",
    "CheckerProgram",
    "DisplayData",
    "Egress",
    "EndedBy",
    "EngineConfig",
    "EngineError",
    "EngineState",
    "EngineStatus",
    "EngineUnavailable",
    "Event",
    "EventStream",
    "FileChange",
    "FileEntry",
    "FloatTolerance",
    "ImageError",
    "InvalidInput",
    "InvalidPath",
    "JudgeReport",
    "LanguageSpec",
    "Limits",
    "NetworkUsage",
    "PoolClosed",
    "PoolError",
    "PoolTimeout",
    "Process",
    "ProcessInfo",
    "RunResult",
    "Runtime",
    "Sandbox",
    "SandboxError",
    "SandboxFileError",
    "SandboxMetrics",
    "SandboxPool",
    "SandboxkitError",
    "Snapshot",
    "SnapshotError",
    "Status",
    "Terminal",
    "TestCase",
    "TestResult",
    "UnknownLanguage",
    "UsageError",
    "Verdict",
    "__version__",
    "aclose",
    "delete_snapshot",
    "get_language",
    "judge",
    "languages",
    "register_language",
    "snapshots",
]
