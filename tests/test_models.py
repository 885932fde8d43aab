"""Result and event assembly without an engine: bytes and text views agree."""

from __future__ import annotations

import sandboxkit as sk


def test_bytes_give_the_text_view() -> None:
    r = sk.RunResult(status="ok", stdout_bytes=b"a\xffb", stderr_bytes=b"\xe2\x82")
    assert r.stdout == "a\ufffdb" and r.stderr == "\ufffd"


def test_text_gives_the_bytes() -> None:
    r = sk.RunResult(status="ok", stdout="π\n")
    assert r.stdout_bytes == "π\n".encode() and r.stderr_bytes == b""


def test_results_round_trip_through_json() -> None:
    r = sk.RunResult(status="error", exit_code=1, stdout_bytes=b"\x00\xfe", engine="unix://x")
    again = sk.RunResult.model_validate_json(r.model_dump_json())
    assert again == r


def test_file_entry_is_typed_and_frozen() -> None:
    e = sk.FileEntry(path="a", type="file", size=1)
    try:
        e.size = 2  # type: ignore[misc]
    except Exception as exc:  # pydantic's frozen error
        assert "frozen" in str(exc).lower()
    else:
        raise AssertionError("FileEntry is mutable")
    try:
        sk.FileEntry(path="a", type="pipe")  # type: ignore[arg-type]
    except sk.InvalidInput:
        pass
    else:
        raise AssertionError("a bad type was accepted")


async def test_a_closed_pool_cannot_open() -> None:
    pool = sk.SandboxPool(languages=[])
    await pool.aclose()
    try:
        await pool.open()
    except sk.PoolClosed:
        pass
    else:
        raise AssertionError("a closed pool opened")


def test_stream_refuses_bad_input_at_call_time() -> None:
    try:
        sk.Sandbox.stream("x", language="no-such-language")
    except sk.UnknownLanguage:
        pass
    else:
        raise AssertionError("an unknown language was accepted")


def test_output_is_kept_to_the_cap_and_decoded_across_chunks() -> None:
    from sandboxkit import _protocol as wire
    from sandboxkit._run.reader import OutputBuffer

    out = OutputBuffer(keep=5)
    first = out.add(wire.STDOUT, "π".encode()[:1])  # half a character
    second = out.add(wire.STDOUT, "π".encode()[1:] + b"abcdef")
    assert first is not None and first.data == "" and first.data_bytes == b"\xcf"
    assert second is not None and second.data == "πabc" and second.data_bytes == b"\x80abc"
    assert out.add(wire.STDOUT, b"more") is None  # past the cap: dropped, flagged
    assert out.truncated and out.stdout == "πabc".encode()


def test_outcome_of_an_exit_report_gives_status_and_ended_by_together() -> None:
    from sandboxkit._run.outcome import outcome

    assert outcome({"exit_code": 0, "signal": None}) == ("ok", None)
    assert outcome({"exit_code": 1}) == ("error", None)
    assert outcome({"exit_code": None, "signal": 9, "reason": "timeout"}) == (
        "timeout",
        "wall_time",
    )
    assert outcome({"exit_code": None, "signal": 24, "reason": "cpu_timeout"}) == (
        "timeout",
        "cpu_time",
    )
    assert outcome({"exit_code": 0, "reason": "output_limit"}) == ("output_limit", "output")
    assert outcome({"exit_code": None, "signal": 25}) == ("error", "file_size")
    assert outcome({"exit_code": None, "signal": 9, "reason": "killed"}) == ("error", None)
    # an OOM kill explains the other symptoms, so it wins
    report = {"exit_code": None, "signal": 9, "reason": "timeout", "oom_kills": 1}
    assert outcome(report) == ("oom", "memory")  # type: ignore[arg-type]


def test_per_process_limits_are_each_process_rlimits() -> None:
    from sandboxkit._run.jobs import make_job

    python = sk.get_language("python")
    plain = make_job(python, python.run, sk.Limits(time=10))
    assert plain["cpu_time"] == 10 and plain["rlimits"]["cpu"] == 11
    assert "as" not in plain["rlimits"]
    each = make_job(python, python.run, sk.Limits(process_cpu_time=1.5, process_memory_mb=62.5))
    assert each["rlimits"]["cpu"] == 2  # RLIMIT_CPU counts whole seconds
    assert each["rlimits"].get("as") == 64000 * 1024  # 62.5 MB: Judge0's 64000 KB
    # no run-wide CPU limit asked: the wall limit bounds the processes together
    assert "cpu_time" not in each
    both = make_job(python, python.run, sk.Limits(cpu_time=3, process_cpu_time=1))
    assert both["cpu_time"] == 3 and both["rlimits"]["cpu"] == 1


def test_result_of_carries_bytes_and_engine() -> None:
    from sandboxkit import _protocol as wire
    from sandboxkit._run.reader import OutputBuffer, result_of

    out = OutputBuffer(keep=100)
    out.add(wire.STDOUT, b"\xfe1")
    out.add(wire.STDERR, b"e")
    r = result_of(
        {"exit_code": 2, "wall": 0.5, "max_rss_kb": 2048, "truncated_stderr": True},
        out,
        "python",
        "unix:///x.sock",
        status_on_failure="compile_error",
    )
    assert (r.status, r.exit_code, r.duration, r.memory_mb) == ("compile_error", 2, 0.5, 2.0)
    assert (r.stdout_bytes, r.stderr, r.truncated, r.engine) == (
        b"\xfe1",
        "e",
        True,
        "unix:///x.sock",
    )


def test_result_of_says_when_a_session_lost_its_state() -> None:
    from sandboxkit._run.reader import OutputBuffer, result_of

    lost = result_of({"exit_code": 5, "state_lost": True}, OutputBuffer(keep=10), "python", None)
    kept = result_of({"exit_code": 0}, OutputBuffer(keep=10), "python", None)
    assert (lost.status, lost.state_lost, kept.state_lost) == ("error", True, False)
    assert sk.RunResult(status="ok").state_lost is False
