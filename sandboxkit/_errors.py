"""Exceptions: sandboxkit or the engine failed. The user's code failing is a status.

SandboxkitError
├── InvalidInput            bad arguments, raised before any container is touched
│   ├── UnknownLanguage
│   └── InvalidPath
├── EngineError             the Docker engine failed or did not answer
│   └── EngineUnavailable   no engine reachable at all
├── ImageError              an image could not be found, bootstrapped or built
├── PoolError
│   ├── PoolClosed
│   └── PoolTimeout         no warm container within the acquire timeout
├── SandboxError            the sandbox broke mid-run (its agent vanished, a protocol fault)
├── SandboxFileError        a file operation inside a session's sandbox failed
├── UsageError              an object used out of order (opened twice, used after close)
└── CheckerError            a judge's checker program failed (not the submission)
"""

from __future__ import annotations


class SandboxkitError(Exception):
    """Root of every error sandboxkit raises."""


class InvalidInput(SandboxkitError, ValueError):
    """An argument is wrong; nothing was started."""


class UnknownLanguage(InvalidInput):
    """The language is neither built in nor registered."""


class InvalidPath(InvalidInput):
    """A file path is empty, has NUL bytes or ``..``, or (where only the workdir is
    meant, as a run's ``files``) is absolute."""


class EngineError(SandboxkitError):
    """The Docker engine refused or failed a call."""


class EngineUnavailable(EngineError):
    """No Docker engine answers.

    ``problem`` says what failed and ``advice`` what to do (fitted to this machine and
    to how sandboxkit was installed); the message is both.
    """

    def __init__(self, problem: str, advice: str = "") -> None:
        super().__init__(f"{problem}. {advice}" if advice else problem)
        self.problem = problem
        self.advice = advice


class ImageError(SandboxkitError):
    """An image could not be prepared."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message + (f"\n--- build log (tail) ---\n{log_tail}" if log_tail else ""))
        self.log_tail = log_tail


class PoolError(SandboxkitError):
    """The warm pool cannot serve."""


class PoolClosed(PoolError):
    """The pool was closed."""


class PoolTimeout(PoolError):
    """No sandbox became free within the acquire timeout."""


class SandboxError(SandboxkitError):
    """A sandbox broke down during a run (not the user's code: the machinery)."""


class SandboxFileError(SandboxkitError):
    """A file (or process) operation in the sandbox failed.

    The sandbox is fine and the session stays usable. ``reason`` is one a program can act
    on: ``not_found``, ``is_directory``, ``not_directory``, ``permission_denied``,
    ``exists``, ``too_large``, ``invalid_path`` (a symlink on the way: none is followed;
    a device, FIFO or socket), or ``io_error`` (anything else); ``detail`` the system's
    words.
    """

    def __init__(self, operation: str, path: str, reason: str, detail: str = "") -> None:
        more = f" ({detail})" if detail and detail != reason else ""
        super().__init__(f"cannot {operation} {path!r} in the sandbox: {reason}{more}")
        self.operation = operation
        self.path = path
        self.reason = reason
        self.detail = detail


class SnapshotError(SandboxkitError):
    """A snapshot (``Sandbox.pause``) cannot be taken, found or used.

    ``reason``: ``not_found`` (no snapshot by that id), ``corrupt`` (its files do not
    match what was recorded), ``too_large`` (over the snapshot or store cap),
    ``unsupported`` (this engine cannot do what was asked).
    """

    def __init__(self, message: str, reason: str, snapshot_id: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.snapshot_id = snapshot_id


class UsageError(SandboxkitError, RuntimeError):
    """An object was used out of order: opened twice, or used before it was opened."""


class CheckerError(SandboxkitError):
    """A judge's checker program did not compile, crashed or gave up (testlib exit 3)."""
