"""A finished submission's outcome as Judge0 gives it, from our judge report: the status
(Judge0's comparison and CPU-time rule applied), the outputs, the means of its runs.
Pure; no I/O."""

from __future__ import annotations

import math

from .._judge.models import JudgeReport
from ._judge0 import INTERNAL_ERROR, SIGNAL_STATUS
from ._submission import Outcome, Submission

# A process RLIMIT_CPU killed may be reported well under the limit: the kernel enforces it
# on the CPU time it counts in ticks, which runs ahead of the precise time rusage reports
# when the CPU is contended (0.84 s measured for a 1 s limit on a busy machine). A kill
# of a program that had used this share of its per-process limit is taken for it.
RLIMIT_CPU_SHARE = 0.5


def stored_text(data: bytes) -> str:
    """Program output as a record keeps it: a str (the store is JSON) that still holds the
    exact bytes, invalid UTF-8 as surrogate escapes (the serializer encodes it back)."""
    return data.decode("utf-8", "surrogateescape")


def _judge0_strip(data: bytes) -> bytes:
    # Ruby's text.split("\n").collect(&:rstrip).join("\n").strip, on bytes
    lines = [line.rstrip(b" \t\r\n\x0b\x0c\x00") for line in data.split(b"\n")]
    return b"\n".join(lines).strip(b" \t\r\n\x0b\x0c\x00")


def judge0_equal(expected: bytes, output: bytes) -> bool:
    """Judge0's comparison: equal once trailing blanks of each line and blank lines at
    both ends are dropped. On bytes, so any output (valid UTF-8 or not) compares."""
    return _judge0_strip(expected) == _judge0_strip(output)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def outcome_of(report: JudgeReport | None, record: Submission, error: str | None = None) -> Outcome:
    """The outcome of ``record`` from our judge report (None: judging failed, ``error``
    says why, Judge0's Internal Error).

    With ``number_of_runs`` > 1 the report holds one test per run (stopping at the first
    that fails, as Judge0 does): time, wall time and memory are the runs' means, the
    status and output are the last run's."""
    if report is None:
        return Outcome(status_id=INTERNAL_ERROR, message=error or "internal error")
    if report.verdict == "CE":
        return Outcome(status_id=6, compile_output=report.compile_output or None)
    runs = list(report.tests)
    t = runs[-1]
    times = [r.time for r in runs if r.time is not None]
    stdout, stderr = stored_text(t.stdout_bytes), stored_text(t.stderr_bytes)
    if record.redirect_stderr_to_stdout:
        stdout, stderr = stored_text(t.stdout_bytes + t.stderr_bytes), ""
    verdict = t.verdict
    expected = record.expected_output
    if verdict == "AC" and expected is not None:
        verdict = (
            "AC"
            if judge0_equal(expected.encode("utf-8", "surrogateescape"), t.stdout_bytes)
            else "WA"
        )
    cpu_limit = float(record.cpu_time_limit)
    killed = verdict == "RE" and t.signal in (9, 24)
    if cpu_limit <= 0 or t.time is None:
        pass  # isolate's -t 0: no CPU limit
    elif record.enable_per_process_and_thread_time_limit:
        # each process alone: the run's total may pass the limit; a process past it is
        # killed at RLIMIT_CPU (whole seconds), mostly reported as a timeout already
        if killed and t.time >= math.ceil(cpu_limit) * RLIMIT_CPU_SHARE:
            verdict = "TLE"
    elif t.time > cpu_limit and (verdict in ("AC", "WA") or killed):
        # Judge0 counts CPU time past the limit (not the extra) as TLE, and so is a kill
        # (RLIMIT_CPU's SIGXCPU/SIGKILL) of a program already past it
        verdict = "TLE"
    message: str | None = None
    if verdict == "AC":
        status_id = 3
    elif verdict == "WA":
        status_id = 4
    elif verdict == "TLE":
        status_id, message = 5, "Time limit exceeded"
    elif verdict == "OLE":
        status_id, message = 8, "Output limit exceeded"
    elif verdict == "MLE":
        status_id, message = 12, "Memory limit exceeded"
    elif t.signal is not None:
        status_id, message = SIGNAL_STATUS.get(t.signal, 12), f"Caught fatal signal {t.signal}"
    else:
        status_id, message = 11, f"Exited with error status {t.exit_code}"
    return Outcome(
        status_id=status_id,
        stdout=stdout,
        stderr=stderr,
        compile_output=report.compile_output or None,
        message=message,
        exit_code=t.exit_code,
        exit_signal=t.signal,
        time=_mean(times) if times else None,
        wall_time=_mean([r.wall for r in runs]),
        memory=math.ceil(_mean([(r.memory_mb or 0.0) for r in runs]) * 1024),
    )
