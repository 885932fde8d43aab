"""A submission as the store keeps it, the workers judge it and the routes render it: one
typed record, and the outcome judging gives it.

The fields are Judge0's submission attributes, declared in the order the store has
always written them as JSON (the ``data`` column), so a row reads the same whichever
release wrote it, and one written now has the same bytes as before.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from ._judge0 import CONFIG, IN_QUEUE


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What judging decided: the final status and the result attributes (``None``
    where the run gave none, e.g. no output after a compile error)."""

    status_id: int
    stdout: str | None = None
    stderr: str | None = None
    compile_output: str | None = None
    message: str | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    time: float | None = None
    wall_time: float | None = None
    memory: int | None = None
    finished_at: str | None = None  # stamped by the worker as it stores the outcome


@dataclass(frozen=True, kw_only=True)
class Submission:
    """One submission. Text fields hold exact bytes (invalid UTF-8 as surrogate escapes);
    limits not given in the request are Judge0's defaults."""

    cpu_time_limit: float = CONFIG["cpu_time_limit"]
    cpu_extra_time: float = CONFIG["cpu_extra_time"]
    wall_time_limit: float = CONFIG["wall_time_limit"]
    memory_limit: int = CONFIG["memory_limit"]
    stack_limit: int = CONFIG["stack_limit"]
    max_processes_and_or_threads: int = CONFIG["max_processes_and_or_threads"]
    max_file_size: int = CONFIG["max_file_size"]
    number_of_runs: int = CONFIG["number_of_runs"]
    enable_per_process_and_thread_time_limit: bool = False
    enable_per_process_and_thread_memory_limit: bool = False
    redirect_stderr_to_stdout: bool = False
    enable_network: bool = False
    compiler_options: str | None = None
    command_line_arguments: str | None = None
    callback_url: str | None = None
    additional_files: str | None = None  # a zip, base64
    token: str
    source_code: str | None = None
    language_id: int
    stdin: str | None = None
    expected_output: str | None = None
    status_id: int = IN_QUEUE
    created_at: str
    finished_at: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    compile_output: str | None = None
    message: str | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    time: float | None = None
    wall_time: float | None = None
    memory: int | None = None

    def finished(self, outcome: Outcome) -> Submission:
        """This submission with the outcome of judging it."""
        return dataclasses.replace(self, **dataclasses.asdict(outcome))

    def dumps(self) -> str:
        """The JSON the store keeps."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def loads(cls, data: str, status_id: int) -> Submission:
        """A stored submission, with its authoritative status (the store's column, not
        the JSON copy, which lags while a worker holds it). Attributes a later release
        added are left out rather than refused."""
        stored: dict[str, Any] = json.loads(data)
        known = {k: v for k, v in stored.items() if k in _FIELD_NAMES}
        known["status_id"] = status_id
        return cls(**known)


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Submission))
