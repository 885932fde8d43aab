"""The public API's resource and data rules on real Docker: streams free their sandbox
when the block ends, objects open once, exact bytes come back, sessions keep their
language, file failures are SandboxFileError and entries are typed."""

from __future__ import annotations

import asyncio

import pytest

import sandboxkit as sk

pytestmark = pytest.mark.docker

RAW = b"\xfe\xff\x00\x80"
WRITE_RAW = (
    "import sys; sys.stdout.buffer.write(bytes([0xfe, 0xff, 0, 0x80]));"
    " sys.stderr.buffer.write(b'\\xc3')"
)


def busy(pool: sk.SandboxPool) -> int:
    return sum(h["busy"] for h in pool.health().values())


async def test_stream_block_frees_its_sandbox_before_it_returns(pool: sk.SandboxPool) -> None:
    before = busy(pool)
    async with pool.stream("import time\nprint('up', flush=True)\ntime.sleep(60)") as events:
        async for ev in events:
            assert ev.kind == "stdout"
            assert busy(pool) == before + 1
            break
    assert busy(pool) == before  # freed by the time the block is left, no waiting


async def test_class_stream_block_frees_on_exception(pool: sk.SandboxPool) -> None:
    before = busy(pool)
    with pytest.raises(RuntimeError, match="consumer failed"):
        async with sk.Sandbox.stream(
            "print('x', flush=True)\nimport time; time.sleep(60)", pool=pool
        ) as events:
            async for _ in events:
                raise RuntimeError("consumer failed")
    assert busy(pool) == before


async def test_stream_as_plain_iterator_ends_with_result(pool: sk.SandboxPool) -> None:
    stream = sk.Sandbox.stream("print('a'); print('b')", pool=pool)
    kinds = [ev.kind async for ev in stream]
    assert kinds[-1] == "exit"
    assert stream.result is not None and stream.result.stdout == "a\nb\n"


async def test_exact_bytes_on_results_and_events(pool: sk.SandboxPool) -> None:
    r = await pool.run(WRITE_RAW)
    assert r.stdout_bytes == RAW and r.stderr_bytes == b"\xc3"
    assert r.stdout == RAW.decode("utf-8", errors="replace")  # the text view replaces
    chunks = [ev async for ev in pool.stream(WRITE_RAW)]
    assert b"".join(e.data_bytes for e in chunks if e.kind == "stdout") == RAW
    assert b"".join(e.data_bytes for e in chunks if e.kind == "stderr") == b"\xc3"


async def test_exact_bytes_kept_up_to_the_cap(pool: sk.SandboxPool) -> None:
    r = await pool.run(
        "import sys; sys.stdout.buffer.write(bytes(range(256)) * 4)",
        limits=sk.Limits(output_bytes=300),
    )
    assert r.stdout_bytes == (bytes(range(256)) * 4)[:300] and r.truncated


async def test_judge_exact_checker_compares_bytes(pool: sk.SandboxPool) -> None:
    tests = [
        sk.TestCase(expected=RAW + b"\xc3"),  # stdout is RAW only: wrong
        sk.TestCase(expected=RAW),
    ]
    src = "import sys; sys.stdout.buffer.write(bytes([0xfe, 0xff, 0, 0x80]))"
    report = await sk.judge(src, tests=tests, checker="exact", pool=pool)
    assert [t.verdict for t in report.tests] == ["WA", "AC"]
    assert report.tests[1].stdout_bytes == RAW


async def test_a_session_opens_once(pool: sk.SandboxPool) -> None:
    sb = sk.Sandbox(pool=pool)
    async with sb:
        with pytest.raises(sk.UsageError, match="already opened"):
            await sb.open()
        assert (await sb.run("print(1)")).stdout == "1\n"
    with pytest.raises(sk.UsageError):
        async with sb:
            pass
    with pytest.raises(sk.SandboxError, match="closed"):
        await sb.run("print(1)")


async def test_a_pool_opens_once() -> None:
    pool = sk.SandboxPool(languages=["python"], size=1)
    async with pool:
        with pytest.raises(sk.UsageError, match="already open"):
            await pool.open()
        assert (await pool.run("print(1)")).stdout == "1\n"
    assert pool.closed
    with pytest.raises(sk.PoolClosed):
        await pool.open()
    await pool.aclose()  # closing again is fine


async def test_session_refuses_another_language(pool: sk.SandboxPool) -> None:
    async with sk.Sandbox(language="python", pool=pool) as sb:
        with pytest.raises(sk.InvalidInput, match="cpp"):
            await sb.run("int main(){}", language="cpp")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="stdn"):
            await sb.run("print(1)", stdn="x")  # type: ignore[call-arg]
        r = await sb.run("print(1)", language="python")  # type: ignore[arg-type]
        assert r.stdout == "1\n"


async def test_file_entries_and_file_errors(pool: sk.SandboxPool) -> None:
    async with sk.Sandbox(pool=pool) as sb:
        await sb.write_file("d/a.txt", b"abc")
        entries = {e.path: e for e in await sb.list_files()}
        a = entries["d/a.txt"]
        assert (a.path, a.type, a.size, a.mode) == ("d/a.txt", "file", 3, 0o644)
        assert entries["d"].type == "dir"
        with pytest.raises(sk.SandboxFileError, match=r"missing\.txt") as caught:
            await sb.read_file("missing.txt")
        assert caught.value.operation == "read" and caught.value.path == "missing.txt"
        assert caught.value.reason == "not_found"
        assert await sb.read_file("d/a.txt") == b"abc"  # the session is still fine


async def test_result_names_its_engine(pool: sk.SandboxPool) -> None:
    r = await pool.run("print(1)")
    assert r.engine is not None and r.engine.startswith(("unix://", "tcp://", "npipe://"))


async def test_one_shot_start_frees_on_close(pool: sk.SandboxPool) -> None:
    before = busy(pool)
    proc = await sk.Sandbox.start("print(input())", pool=pool)
    assert busy(pool) == before + 1
    async with proc:
        await proc.write("hi\n")
        assert (await proc.wait()).stdout == "hi\n"
    assert busy(pool) == before


async def test_cancelled_stream_block_frees(pool: sk.SandboxPool) -> None:
    before = busy(pool)

    async def consume() -> None:
        async with pool.stream("import time\nprint(1, flush=True)\ntime.sleep(60)") as ev:
            async for _ in ev:
                await asyncio.sleep(60)

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(1.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert busy(pool) == before
