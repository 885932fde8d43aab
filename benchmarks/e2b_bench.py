"""``sandboxkit e2b`` through the official SDKs, beside the same work through the
sandboxkit SDK directly, in one run (issue 24, item 5):

  * ``AsyncSandbox.create()`` + ``commands.run("echo hi")`` (the ``e2b`` SDK), and the
    same with the sync ``Sandbox`` (in a thread), p50/p90; target <= 20 ms p50 (E2B's
    own cloud: ~440 ms median to the first command);
  * ``run_code("1+1")`` on a code-interpreter sandbox (``e2b-code-interpreter``), p50;
    target <= 15 ms;
  * the same through sandboxkit: ``async with sk.Sandbox()`` + ``start()`` of the argv the
    SDK sends (``/bin/bash -l -c "echo hi"``) waited, and ``run("1+1")`` in a
    ``keep_state`` session.

    .venv/bin/python benchmarks/e2b_bench.py [--runs N | --quick] [--pool-size N]

The server is ``sandboxkit e2b`` as a user starts it: a subprocess on loopback ports
(warm pool of ``--pool-size``); this process has its own pool of the same size for the
direct rows, on the same engine. Samples are interleaved (E2B, sandboxkit, E2B, ...) with
a pause after each so both pools have refilled: every create is a warm checkout, as
between requests. Each row is also split into its stages (create / first command), to
show where the time goes. The targets are benchmarks, not tests: a MISS is printed,
never raised. Only loopback is reached (E2B_DOMAIN=localhost keeps anything the SDK
builds from its domain here).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _stats import Latency, Report, ms

import sandboxkit as sk

KEY = "e2b_bench_key"
PAUSE = 0.4  # seconds for both pools to refill (and the last sandbox to go) between samples
TARGET_CREATE_MS = 20.0
TARGET_RUN_CODE_MS = 15.0
E2B_CLOUD_MS = 440.0  # E2B's published median, sandbox create to first command
# what the e2b SDK asks envd to run for commands.run("echo hi"): the same work direct
E2B_ARGV = ["/bin/bash", "-l", "-c", "echo hi"]
Stages = defaultdict[str, list[float]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(pool_size: int) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """``sandboxkit e2b`` in its own process; the variables an app would set."""
    port, sandbox_port = _free_port(), _free_port()
    cmd = [sys.executable, "-m", "sandboxkit", "e2b", "--port", str(port)]
    cmd += ["--sandbox-port", str(sandbox_port), "--api-key", KEY, "--pool-size", str(pool_size)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code < 500:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("sandboxkit e2b did not start")
        time.sleep(0.2)
    env = {
        "E2B_API_URL": f"http://127.0.0.1:{port}",
        "E2B_SANDBOX_URL": f"http://127.0.0.1:{sandbox_port}",
        "E2B_API_KEY": KEY,
        "E2B_DOMAIN": "localhost",
    }
    return proc, env


async def e2b_create_and_echo(stages: Stages) -> float:
    from e2b import AsyncSandbox

    t = time.perf_counter()
    box = await AsyncSandbox.create(template="base")
    created = time.perf_counter()
    out = await box.commands.run("echo hi")
    took = time.perf_counter() - t
    assert out.stdout == "hi\n", out
    stages["e2b: AsyncSandbox.create()"].append(created - t)
    stages["e2b: commands.run('echo hi')"].append(took - (created - t))
    t = time.perf_counter()
    await box.kill()
    stages["e2b: kill() (untimed above)"].append(time.perf_counter() - t)
    return took


def e2b_sync_create_and_echo() -> float:
    """The same through the SDK's sync ``Sandbox`` (what most E2B examples use)."""
    from e2b import Sandbox

    t = time.perf_counter()
    box = Sandbox.create(template="base")
    out = box.commands.run("echo hi")
    took = time.perf_counter() - t
    assert out.stdout == "hi\n", out
    box.kill()
    return took


async def sk_create_and_echo(pool: sk.SandboxPool, stages: Stages) -> float:
    t = time.perf_counter()
    async with sk.Sandbox(pool=pool) as sb:
        opened = time.perf_counter()
        proc = await sb.start(E2B_ARGV)
        assert isinstance(proc, sk.BackgroundProcess)
        result = await proc.wait()
        took = time.perf_counter() - t
    assert result.stdout == "hi\n", result
    stages["sandboxkit: Sandbox().open() (a checkout)"].append(opened - t)
    stages["sandboxkit: start(bash -l -c 'echo hi').wait()"].append(took - (opened - t))
    return took


async def main(runs: int, pool_size: int) -> None:
    from e2b_code_interpreter import AsyncSandbox as CodeSandbox

    proc, env = start_server(pool_size)
    os.environ.update(env)
    stages: Stages = defaultdict(list)
    create_e2b = Latency("e2b SDK: AsyncSandbox.create + commands.run('echo hi')")
    create_sync = Latency("e2b SDK: Sandbox.create + commands.run('echo hi') (sync)")
    create_sk = Latency("sandboxkit: Sandbox() + start(bash -l -c 'echo hi').wait()")
    code_e2b = Latency("e2b-code-interpreter: run_code('1+1')")
    code_sk = Latency("sandboxkit: keep_state session run('1+1')")
    first_code = Latency("e2b-code-interpreter: create + first run_code('1+1')")
    try:
        async with sk.SandboxPool(languages=["python"], size=pool_size) as pool:
            for _ in range(3):  # first-use costs: imports, connections, first containers
                await e2b_create_and_echo(defaultdict(list))
                await sk_create_and_echo(pool, defaultdict(list))
                await asyncio.to_thread(e2b_sync_create_and_echo)
            await asyncio.sleep(1)
            for _ in range(runs):
                create_e2b.samples.append(await e2b_create_and_echo(stages))
                await asyncio.sleep(PAUSE)
                create_sk.samples.append(await sk_create_and_echo(pool, stages))
                await asyncio.sleep(PAUSE)
                # in a thread: the sync SDK blocks, and this process's pool refills meanwhile
                create_sync.samples.append(await asyncio.to_thread(e2b_sync_create_and_echo))
                await asyncio.sleep(PAUSE)

            for _ in range(max(3, runs // 4)):
                t = time.perf_counter()
                box = await CodeSandbox.create()
                first = await box.run_code("1+1")
                first_code.samples.append(time.perf_counter() - t)
                assert first.text == "2", first
                await box.kill()
                await asyncio.sleep(PAUSE)
            box = await CodeSandbox.create()
            try:
                async with sk.Sandbox(pool=pool, keep_state=True) as session:
                    for _ in range(3):
                        await box.run_code("1+1")
                        await session.run("1+1")
                    for _ in range(runs):
                        t = time.perf_counter()
                        execution = await box.run_code("1+1")
                        code_e2b.samples.append(time.perf_counter() - t)
                        assert execution.text == "2", execution
                        t = time.perf_counter()
                        r = await session.run("1+1")
                        code_sk.samples.append(time.perf_counter() - t)
                        assert r.status == "ok", r
            finally:
                await box.kill()
    finally:
        proc.terminate()
        proc.wait(30)

    report = Report()
    report.section(f"E2B wing vs sandboxkit SDK ({runs} runs, pool size {pool_size}, loopback)")
    for lat in (create_e2b, create_sync, create_sk, first_code, code_e2b, code_sk):
        report.row(f"{lat.name:<60} p50 {ms(lat.p50)}   p90 {ms(lat.p90)}")
    cloud = "E2B cloud (published): create to first command"
    report.row(f"{cloud:<60} p50 {E2B_CLOUD_MS:8.1f} ms")
    report.section("Where the time goes (p50 of each stage of the rows above)")
    for stage, samples in stages.items():
        report.row(f"{stage:<60} p50 {ms(Latency(stage, samples).p50)}")
    report.target(
        "e2b create + commands.run p50",
        create_e2b.p50 * 1e3 <= TARGET_CREATE_MS,
        f"{create_e2b.p50 * 1e3:.1f} ms (target <= {TARGET_CREATE_MS:.0f} ms; "
        f"sandboxkit direct {create_sk.p50 * 1e3:.1f} ms)",
    )
    report.target(
        "run_code('1+1') p50",
        code_e2b.p50 * 1e3 <= TARGET_RUN_CODE_MS,
        f"{code_e2b.p50 * 1e3:.1f} ms (target <= {TARGET_RUN_CODE_MS:.0f} ms; "
        f"sandboxkit direct {code_sk.p50 * 1e3:.1f} ms)",
    )
    report.print()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="10 runs (as nox -s bench -- --quick)")
    parser.add_argument("--pool-size", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(10 if args.quick else args.runs, args.pool_size))
