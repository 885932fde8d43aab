"""The DESIGN §2 contract for Python, on real Docker."""

from __future__ import annotations

import time

import pytest

import sandboxkit as sk

pytestmark = pytest.mark.docker


async def test_basic(pool: sk.SandboxPool) -> None:
    r = await pool.run("print(6*7)")
    assert (r.status, r.stdout, r.exit_code, r.signal) == ("ok", "42\n", 0, None)
    assert r.duration > 0 and not r.truncated


async def test_stdin(pool: sk.SandboxPool) -> None:
    r = await pool.run("print(input()[::-1])", stdin="abc\n")
    assert r.stdout == "cba\n"


async def test_no_stdin_is_eof_at_once(pool: sk.SandboxPool) -> None:
    t = time.monotonic()
    r = await pool.run(
        "try:\n    input()\nexcept EOFError:\n    print('eof')", limits=sk.Limits(time=5)
    )
    assert r.stdout == "eof\n" and r.status == "ok"
    assert time.monotonic() - t < 4


async def test_exit_code(pool: sk.SandboxPool) -> None:
    r = await pool.run("import sys; print('x'); sys.exit(3)")
    assert (r.status, r.exit_code, r.stdout) == ("error", 3, "x\n")


async def test_exception_is_error_with_traceback(pool: sk.SandboxPool) -> None:
    r = await pool.run("raise ValueError('boom')")
    assert r.status == "error" and r.exit_code == 1
    assert "ValueError: boom" in r.stderr and "Traceback" in r.stderr


async def test_stderr_is_separate(pool: sk.SandboxPool) -> None:
    r = await pool.run("import sys; print('o'); print('e', file=sys.stderr)")
    assert r.stdout == "o\n" and r.stderr == "e\n"


async def test_timeout_keeps_partial_output(pool: sk.SandboxPool) -> None:
    t = time.monotonic()
    r = await pool.run(
        "import time\nprint('before', flush=True)\ntime.sleep(60)", limits=sk.Limits(time=1)
    )
    assert r.status == "timeout" and r.stdout == "before\n"
    assert time.monotonic() - t < 6


async def test_cpu_bound_timeout(pool: sk.SandboxPool) -> None:
    r = await pool.run("while True: pass", limits=sk.Limits(time=1))
    assert r.status == "timeout"


async def test_oom(pool: sk.SandboxPool) -> None:
    r = await pool.run(
        "b=[]\nwhile True: b.append(bytearray(10**7))", limits=sk.Limits(memory_mb=64, time=20)
    )
    assert r.status == "oom"


async def test_oom_of_a_child_process_is_oom(pool: sk.SandboxPool) -> None:
    code = (
        "import subprocess, sys\n"
        "bomb = 'b=[]\\nwhile True: b.append(bytearray(10**7))'\n"
        "p = subprocess.run([sys.executable, '-c', bomb])\n"
        "print('child ended', p.returncode)\n"
    )
    r = await pool.run(code, limits=sk.Limits(memory_mb=64, time=20))
    assert r.status == "oom"
    assert "child ended -9" in r.stdout  # the parent survived; the verdict still says oom


async def test_self_sigkill_is_error_not_oom(pool: sk.SandboxPool) -> None:
    r = await pool.run("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert (r.status, r.signal, r.exit_code) == ("error", 9, None)


async def test_segfault_signal(pool: sk.SandboxPool) -> None:
    r = await pool.run("import ctypes; ctypes.string_at(0)")
    assert r.status == "error" and r.signal == 11


async def test_output_truncated(pool: sk.SandboxPool) -> None:
    r = await pool.run(
        "import sys; sys.stdout.write('x'*5000)", limits=sk.Limits(output_bytes=1000)
    )
    assert r.truncated and r.stdout == "x" * 1000 and r.status == "ok"


async def test_flood_is_stopped(pool: sk.SandboxPool) -> None:
    t = time.monotonic()
    r = await pool.run(
        "while True: print('y' * 1000)", limits=sk.Limits(output_bytes=10_000, time=30)
    )
    assert r.status == "output_limit" and r.truncated and len(r.stdout) == 10_000
    assert time.monotonic() - t < 20


async def test_invalid_utf8_is_replaced(pool: sk.SandboxPool) -> None:
    r = await pool.run("import sys; sys.stdout.buffer.write(b'a\\xff\\xfeb\\n')")
    assert r.status == "ok" and r.stdout == "a\ufffd\ufffdb\n"


async def test_files(pool: sk.SandboxPool) -> None:
    r = await pool.run(
        "print(open('data.txt').read() + open('sub/dir/x.bin','rb').read().hex())",
        files={"data.txt": b"payload", "sub/dir/x.bin": b"\x00\x01"},
    )
    assert r.stdout.strip() == "payload0001"


async def test_memory_limit_other_than_default(pool: sk.SandboxPool) -> None:
    code = "print(open('/sys/fs/cgroup/memory/memory.limit_in_bytes').read())"
    r = await pool.run(code, limits=sk.Limits(memory_mb=96))
    assert int(r.stdout) == 96 * 1024 * 1024


async def test_default_pool_one_shot() -> None:
    r = await sk.Sandbox.run("print('hi')")
    assert r.stdout == "hi\n"
    events = [ev async for ev in sk.Sandbox.stream("print('a'); print('b')")]
    assert events[-1].kind == "exit" and events[-1].result is not None
    assert "".join(e.data for e in events if e.kind == "stdout") == "a\nb\n"
    await sk.aclose()


async def test_sequential_runs_do_not_share_state(pool: sk.SandboxPool) -> None:
    await pool.run("open('/work/secret','w').write('mine'); open('/tmp/t','w').write('x')")
    r = await pool.run("import os; print(os.listdir('/work'), os.path.exists('/tmp/t'))")
    assert r.stdout == "['main.py'] False\n"


async def test_preloaded_python_behaves_like_python3_main_py(pool: sk.SandboxPool) -> None:
    # the agent's own `from __future__ import annotations` must not leak into user code
    r = await pool.run("def f(x: int) -> int: return x\nprint(f.__annotations__['x'] is int)")
    assert r.stdout == "True\n"
    r = await pool.run(
        "from __future__ import annotations\n"
        "def f(x: int) -> int: return x\n"
        "print(f.__annotations__['x'])\n"
    )
    assert r.stdout == "int\n"
    r = await pool.run(
        "import multiprocessing as mp, pickle, sys\n"
        "class A: pass\n"
        "def sq(x): return x * x\n"
        "if __name__ == '__main__':\n"
        "    with mp.Pool(2) as p: print(p.map(sq, range(4)))\n"
        "    print(type(pickle.loads(pickle.dumps(A()))).__name__, sys.argv)\n"
    )
    assert r.stdout == "[0, 1, 4, 9]\nA ['main.py']\n", r.stderr


async def test_runtime_selectable_per_run(pool: sk.SandboxPool) -> None:
    import shutil

    if shutil.which("runsc") is None:
        pytest.skip("runsc (gVisor) is not installed here")
    code = "import platform; print(platform.release())"
    host_kernel = (await pool.run(code)).stdout
    gvisor_kernel = (await pool.run(code, runtime="runsc")).stdout
    assert host_kernel != gvisor_kernel  # gVisor answers with its own kernel
    async with sk.Sandbox(pool=pool, runtime="runsc") as sb:
        assert (await sb.run(code)).stdout == gvisor_kernel
    with pytest.raises(sk.InvalidInput):
        await pool.run(code, runtime="kata")  # type: ignore[arg-type]
