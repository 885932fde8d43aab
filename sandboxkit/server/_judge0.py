"""Judge0 CE 1.13.1, as its clients see it: status ids, language ids, configuration,
field names. Pure data; no I/O."""

from __future__ import annotations

from typing import Any

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

# Judge0 CE 1.13.1's language ids -> (our language, display name). Names keep Judge0's
# "Language (Toolchain version)" format with the version the bookworm image carries;
# ids Judge0 keeps for older compilers map to the one toolchain we have, and say so.
LANGUAGES: dict[int, tuple[str, str]] = {
    43: ("plaintext", "Plain Text"),
    44: ("executable", "Executable"),
    45: ("assembly", "Assembly (NASM 2.16.01)"),
    46: ("bash", "Bash (5.2.15)"),
    48: ("c", "C (GCC 12.2.0, for GCC 7.4.0)"),
    49: ("c", "C (GCC 12.2.0, for GCC 8.3.0)"),
    50: ("c", "C (GCC 12.2.0)"),
    51: ("csharp", "C# (Mono 6.8.0.105)"),
    52: ("cpp", "C++ (GCC 12.2.0, for GCC 7.4.0)"),
    53: ("cpp", "C++ (GCC 12.2.0, for GCC 8.3.0)"),
    54: ("cpp", "C++ (GCC 12.2.0)"),
    55: ("commonlisp", "Common Lisp (SBCL 2.2.9)"),
    56: ("d", "D (GDC 12.2.0)"),
    57: ("elixir", "Elixir (1.14.0)"),
    58: ("erlang", "Erlang (OTP 25)"),
    59: ("fortran", "Fortran (GFortran 12.2.0)"),
    60: ("go", "Go (1.19.8)"),
    61: ("haskell", "Haskell (GHC 9.0.2)"),
    62: ("java", "Java (OpenJDK 17)"),
    63: ("javascript", "JavaScript (Node.js 18.19.0)"),
    64: ("lua", "Lua (5.3.6)"),
    65: ("ocaml", "OCaml (4.13.1)"),
    66: ("octave", "Octave (7.3.0)"),
    67: ("pascal", "Pascal (FPC 3.2.2)"),
    68: ("php", "PHP (8.2)"),
    69: ("prolog", "Prolog (GNU Prolog 1.4.5)"),
    70: ("python2", "Python (2.7.18)"),
    71: ("python", "Python (3.11.2)"),
    72: ("ruby", "Ruby (3.1.2)"),
    73: ("rust", "Rust (1.63.0)"),
    74: ("typescript", "TypeScript (4.9)"),
    75: ("clang", "C (Clang 14.0.6)"),
    76: ("clang-cpp", "C++ (Clang 14.0.6)"),
    77: ("cobol", "COBOL (GnuCOBOL 3.1.2)"),
    78: ("kotlin", "Kotlin (1.3.31)"),
    79: ("objective-c", "Objective-C (Clang 14.0.6)"),
    80: ("r", "R (4.2.2)"),
    81: ("scala", "Scala (2.11.12)"),
    82: ("sqlite", "SQL (SQLite 3.40.1)"),
    83: ("swift", "Swift (6.0.3, Swift 5 mode)"),
    85: ("perl", "Perl (5.36.0)"),
    86: ("clojure", "Clojure (1.11.1)"),
    88: ("groovy", "Groovy (2.4.21)"),
    89: ("multifile", "Multi-file program"),
}
MULTI_FILE = 89

# Judge0 CE 1.13.1 ids whose toolchain no Debian release this machine's mirror serves
# (bullseye, bookworm, trixie) nor PyPI or npm provides:
# answered as Judge0 answers an archived language (listed by /languages/all with
# ``is_archived: true``; a submission gets 422). id -> (Judge0's name, why).
UNAVAILABLE: dict[int, tuple[str, str]] = {
    47: ("Basic (FBC 1.07.1)", "FreeBASIC has never been packaged by Debian"),
    84: (
        "Visual Basic.Net (vbnc 0.0.0.5943)",
        "mono-vbnc left Debian before bullseye; no served release carries it",
    ),
    87: (
        "F# (.NET Core SDK 3.1.202)",
        "the .NET SDK comes only from Microsoft's feeds; mono's fsharp left Debian before bullseye",
    ),
}

# signal -> runtime error status (Judge0's table)
SIGNAL_STATUS = {11: 7, 25: 8, 8: 9, 6: 10}

# The /config_info document, as Judge0 CE 1.13.1's defaults (``enable_network``,
# ``allow_enable_network`` and ``enable_submission_delete`` follow the server's settings).
CONFIG: dict[str, Any] = {
    "maintenance_mode": False,
    "enable_wait_result": True,
    "enable_compiler_options": True,
    "allowed_languages_for_compile_options": [],
    "enable_command_line_arguments": True,
    "enable_submission_delete": False,
    "enable_callbacks": True,
    "callbacks_max_tries": 3,
    "callbacks_timeout": 5.0,
    "enable_additional_files": True,
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
    "allow_enable_per_process_and_thread_time_limit": True,
    "enable_per_process_and_thread_memory_limit": False,
    "allow_enable_per_process_and_thread_memory_limit": True,
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
    "language_id",
    "stdin",
    "expected_output",
    "stdout",
    "status_id",
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
    "status",
    "language",
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
