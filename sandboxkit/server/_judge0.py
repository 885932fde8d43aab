"""Judge0 CE 1.13.1, as its clients see it: status ids, language ids, configuration,
field names. Pure data and pure mappings; no I/O."""

from __future__ import annotations

import math
from typing import Any

from .._judge_models import JudgeReport

VERSION = "1.13.1"

STATUSES: dict[int, str] = {
    1: "In Queue",
    2: "Processing",
    3: "Accepted",
    4: "Wrong Answer",
    5: "Time Limit Exceeded",
    6: "Compilation Error",
    7: "Runtime Error (SIGSEGV)",
    8: "Runtime Error (SIGXFSZ)",
    9: "Runtime Error (SIGFPE)",
    10: "Runtime Error (SIGABRT)",
    11: "Runtime Error (NZEC)",
    12: "Runtime Error (Other)",
    13: "Internal Error",
    14: "Exec Format Error",
}
IN_QUEUE, PROCESSING, ACCEPTED, INTERNAL_ERROR = 1, 2, 3, 13

# Judge0 CE 1.13.1 ids of the languages sandboxkit has: id -> (our name, display name).
# Judge0 has several compiler versions per language; every id of ours maps to the one
# toolchain our image carries.
LANGUAGES: dict[int, tuple[str, str]] = {
    46: ("bash", "Bash"),
    48: ("c", "C (GCC, as 7.4.0)"),
    49: ("c", "C (GCC, as 8.3.0)"),
    50: ("c", "C (GCC)"),
    52: ("cpp", "C++ (GCC, as 7.4.0)"),
    53: ("cpp", "C++ (GCC, as 8.3.0)"),
    54: ("cpp", "C++ (GCC)"),
    60: ("go", "Go"),
    62: ("java", "Java (OpenJDK)"),
    63: ("javascript", "JavaScript (Node.js)"),
    71: ("python", "Python (3)"),
    72: ("ruby", "Ruby"),
    73: ("rust", "Rust"),
    74: ("typescript", "TypeScript"),
}

# signal -> runtime error status (Judge0's table)
SIGNAL_STATUS = {11: 7, 25: 8, 8: 9, 6: 10}

# The /config_info document. Options we do not implement are reported as disabled,
# so well-behaved clients do not send them.
CONFIG: dict[str, Any] = {
    "maintenance_mode": False,
    "enable_wait_result": True,
    "enable_compiler_options": False,
    "allowed_languages_for_compile_options": [],
    "enable_command_line_arguments": False,
    "enable_submission_delete": False,
    "enable_callbacks": False,
    "callbacks_max_tries": 0,
    "callbacks_timeout": 0.0,
    "enable_additional_files": False,
    "max_queue_size": 100,
    "cpu_time_limit": 5.0,
    "max_cpu_time_limit": 15.0,
    "cpu_extra_time": 1.0,
    "max_cpu_extra_time": 5.0,
    "wall_time_limit": 10.0,
    "max_wall_time_limit": 20.0,
    "memory_limit": 128000,
    "max_memory_limit": 512000,
    "stack_limit": 64000,
    "max_stack_limit": 128000,
    "max_processes_and_or_threads": 60,
    "max_max_processes_and_or_threads": 120,
    "enable_per_process_and_thread_time_limit": False,
    "allow_enable_per_process_and_thread_time_limit": False,
    "enable_per_process_and_thread_memory_limit": False,
    "allow_enable_per_process_and_thread_memory_limit": False,
    "max_file_size": 1024,
    "max_max_file_size": 4096,
    "number_of_runs": 1,
    "max_number_of_runs": 20,
    "redirect_stderr_to_stdout": False,
    "max_extract_size": 10240,
    "enable_batched_submissions": True,
    "max_submission_batch_size": 20,
    "submission_cache_duration": 1.0,
    "use_docs_as_homepage": False,
    "enable_network": False,
    "allow_enable_network": False,
}

# Every attribute a submission has (the serializer's names: ``*_id`` columns appear as
# ``status`` and ``language`` objects). ``fields=*`` returns them all.
ALL_FIELDS = (
    "source_code",
    "language",
    "stdin",
    "expected_output",
    "stdout",
    "status",
    "created_at",
    "finished_at",
    "time",
    "memory",
    "stderr",
    "token",
    "number_of_runs",
    "cpu_time_limit",
    "cpu_extra_time",
    "wall_time_limit",
    "memory_limit",
    "stack_limit",
    "max_processes_and_or_threads",
    "enable_per_process_and_thread_time_limit",
    "enable_per_process_and_thread_memory_limit",
    "max_file_size",
    "compile_output",
    "exit_code",
    "exit_signal",
    "message",
    "wall_time",
    "compiler_options",
    "command_line_arguments",
    "redirect_stderr_to_stdout",
    "callback_url",
    "additional_files",
    "enable_network",
)
DEFAULT_FIELDS = (
    "token",
    "time",
    "memory",
    "stdout",
    "stderr",
    "compile_output",
    "message",
    "status",
)
TEXT_FIELDS = frozenset(
    {"source_code", "stdin", "expected_output", "stdout", "stderr", "compile_output", "message"}
)
DECIMAL_FIELDS = frozenset(
    {"time", "wall_time", "cpu_time_limit", "cpu_extra_time", "wall_time_limit"}
)


def stored_text(data: bytes) -> str:
    """Program output as a record keeps it: a str (the store is JSON) that still holds the
    exact bytes, invalid UTF-8 as surrogate escapes (the serializer encodes it back)."""
    return data.decode("utf-8", "surrogateescape")


def result_fields(
    report: JudgeReport | None, record: dict[str, Any], error: str | None = None
) -> dict[str, Any]:
    """The result attributes of a finished submission, from our judge report."""
    if report is None:
        return {"status_id": INTERNAL_ERROR, "message": error or "internal error"}
    if report.verdict == "CE":
        return {"status_id": 6, "compile_output": report.compile_output or None}
    t = report.tests[0]
    out: dict[str, Any] = {
        "stdout": stored_text(t.stdout_bytes),
        "stderr": stored_text(t.stderr_bytes),
        "exit_code": t.exit_code,
        "exit_signal": t.signal,
        "time": t.time,
        "wall_time": t.wall,
        "memory": math.ceil((t.memory_mb or 0.0) * 1024),
        "compile_output": report.compile_output or None,
    }
    cpu_limit = float(record["cpu_time_limit"])
    verdict = t.verdict
    if verdict in ("AC", "WA") and t.time is not None and t.time > cpu_limit:
        verdict = "TLE"  # Judge0 counts CPU time past the limit (not the extra) as TLE
    if verdict == "AC":
        out["status_id"] = 3
    elif verdict == "WA":
        out["status_id"] = 4
    elif verdict == "TLE":
        out.update(status_id=5, message="Time limit exceeded")
    elif verdict == "OLE":
        out.update(status_id=8, message="Output limit exceeded")
    elif verdict == "MLE":
        out.update(status_id=12, message="Memory limit exceeded")
    elif t.signal is not None:
        out.update(
            status_id=SIGNAL_STATUS.get(t.signal, 12), message=f"Caught fatal signal {t.signal}"
        )
    else:
        out.update(status_id=11, message=f"Exited with error status {t.exit_code}")
    if record.get("redirect_stderr_to_stdout"):
        out["stdout"], out["stderr"] = stored_text(t.stdout_bytes + t.stderr_bytes), ""
    return out
