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
