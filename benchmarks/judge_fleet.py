"""The PostgreSQL fleet: throughput through API node + workers, and the fleet's
overhead per submission over calling ``sandboxkit.judge`` directly, in one run.

    .venv/bin/python benchmarks/judge_fleet.py [--n 100] [--runs 60] [--quick]

Starts its own PostgreSQL (scripts/postgres.sh, a temporary folder, a free port), one
API node (``sandboxkit serve --db postgresql://... --workers 0``) and workers
(``sandboxkit worker --concurrency 2 --pool-size 2``), each configuration on a new
database, and stops everything at the end. What is measured:

  * submissions per second for ``--n`` cheap Python submissions (posted at once by 8
    clients, each polled until final), through 1 node + 1 worker, then 1 node + 2
    workers (concurrency 2 each); the workers share this machine's cores;
  * overhead per submission: the p50 latency of ``POST /submissions?wait=true`` on the
    node (1 worker) minus the p50 of ``sandboxkit.judge`` on a pool of the same size in
    this process, same program and limits (Judge0's defaults), sequential, samples
    interleaved with a pause after each so both warm pools have refilled.
    Target: <= 10 ms. Beside it, the path alone: ``POST ?wait=true`` with an instant
    judge (this process claims and finishes through the store, no sandbox), the floor
    that HTTP, the store's round trips and the wake-ups set.

Benchmarks, not tests: a MISS is printed, never raised. Network: 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # pg_fleet

import httpx
from _stats import Report, percentile
from pg_fleet import FINAL, Fleet, Postgres

import sandboxkit as sk
from sandboxkit.server._judging import _limits
from sandboxkit.server._submission import Outcome, Submission

SOURCE = "print(int(input()) * 2)"
TARGET_MS = 10.0
PAUSE = 0.5  # seconds for the warm pools to refill between samples
CLIENTS = 8
# the limits a submission gets when it names none (Judge0's defaults), as the fleet judges it
DEFAULT_LIMITS = _limits(Submission(token="", language_id=71, created_at=""))


def body(i: int) -> dict[str, object]:
    return {
        "source_code": SOURCE,
        "language_id": 71,
        "stdin": str(i),
        "expected_output": str(2 * i),
    }


async def throughput(node_url: str, n: int) -> tuple[float, int]:
    """Submissions per second for ``n`` submissions posted by CLIENTS clients, each
    polling its own until final; and how many were not Accepted."""
    todo = iter(range(n))
    bad = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal bad
        for i in todo:
            r = await http.post(f"{node_url}/submissions", json=body(i), timeout=60)
            r.raise_for_status()
            token = r.json()["token"]
            while True:
                g = await http.get(f"{node_url}/submissions/{token}?fields=status", timeout=60)
                status = g.json()["status"]["id"]
                if FINAL(status):
                    bad += status != 3
                    break
                await asyncio.sleep(0.02)

    async with httpx.AsyncClient() as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(CLIENTS)))
        return n / (time.perf_counter() - t0), bad


async def direct_throughput(n: int) -> float:
    """The SDK alone, for scale: ``sandboxkit.judge`` on a pool of size 2 in this
    process, 2 at a time (one worker's concurrency), submissions per second."""
    limits = DEFAULT_LIMITS
    async with sk.SandboxPool(languages=["python"], size=2) as pool:

        async def run(count: int) -> float:
            todo = iter(range(count))

            async def one_at_a_time() -> None:
                for i in todo:
                    tests = [sk.TestCase(input=str(i), expected=str(2 * i))]
                    report = await sk.judge(
                        SOURCE, language="python", tests=tests, limits=limits, pool=pool
                    )
                    assert report.verdict == "AC", report

            t0 = time.perf_counter()
            await asyncio.gather(*(one_at_a_time() for _ in range(2)))
            return count / (time.perf_counter() - t0)

        await run(min(n, 10))  # warm
        return await run(n)


async def overhead(node_url: str, runs: int) -> tuple[list[float], list[float]]:
    """Sequential, interleaved: (fleet latencies, direct sk.judge latencies)."""
    limits = DEFAULT_LIMITS
    tests = [sk.TestCase(input="21", expected="42")]
    fleet_t: list[float] = []
    direct_t: list[float] = []
    async with (
        sk.SandboxPool(languages=["python"], size=2) as pool,
        httpx.AsyncClient() as http,
    ):

        async def via_fleet() -> None:
            r = await http.post(f"{node_url}/submissions?wait=true", json=body(21), timeout=60)
            assert r.status_code == 201 and r.json()["status"]["id"] == 3, r.text

        async def direct() -> None:
            report = await sk.judge(
                SOURCE, language="python", tests=tests, limits=limits, pool=pool
            )
            assert report.verdict == "AC", report

        for _ in range(3):  # warm both paths
            await via_fleet()
            await direct()
        await asyncio.sleep(1)
        for _ in range(runs):
            t = time.perf_counter()
            await direct()
            direct_t.append(time.perf_counter() - t)
            await asyncio.sleep(PAUSE)
            t = time.perf_counter()
            await via_fleet()
            fleet_t.append(time.perf_counter() - t)
            await asyncio.sleep(PAUSE)
    return fleet_t, direct_t


async def path_alone(db_url: str, node_url: str, runs: int) -> list[float]:
    """The fleet's own path, no sandbox: ``POST ?wait=true`` while this process claims
    and finishes each submission through the store at once (an instant judge), on a
    node with no worker. What is left is HTTP, the store's round trips and the wake-ups."""
    from sandboxkit.server._postgres_store import PostgresStore

    store = PostgresStore(db_url)
    await store.open()
    stopping = False
    result = Outcome(status_id=3, stdout="42\n", time=0.01, memory=1000, exit_code=0)

    async def instant_worker() -> None:
        while not stopping:
            claim = await store.claim("bench-instant", 10)
            if claim is None:
                await store.wakeups.wait_queued(1.0)
                continue
            await store.finish(claim, result)

    task = asyncio.create_task(instant_worker())
    out: list[float] = []
    try:
        async with httpx.AsyncClient() as http:
            for i in range(runs + 3):
                t = time.perf_counter()
                r = await http.post(f"{node_url}/submissions?wait=true", json=body(i), timeout=60)
                if i >= 3:  # the first ones warm
                    out.append(time.perf_counter() - t)
                assert r.status_code == 201 and r.json()["status"]["id"] == 3, r.text
                await asyncio.sleep(0.05)
    finally:
        stopping = True
        store.wakeups.queued()
        await task
        await store.close()
    return out


async def main(n: int, runs: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="sandboxkit-pg-bench-"))
    logs = Path(tempfile.mkdtemp(prefix="sandboxkit-fleet-bench-logs-"))
    pg = Postgres(folder)
    report = Report()
    try:
        pg.start()
        rates: dict[int, tuple[float, int]] = {}
        fleet_t: list[float] = []
        direct_t: list[float] = []
        for workers in (1, 2):
            fleet = Fleet(await pg.create_database("bench"), logs)
            try:
                node = fleet.node(name=f"node-{workers}w")
                for k in range(workers):
                    fleet.worker(concurrency=2, pool_size=2, name=f"w{k + 1}-of-{workers}")
                fleet.wait_workers(node, workers)
                await throughput(node.url, min(n, 10))  # warm: images, imports, pools
                rates[workers] = await throughput(node.url, n)
                if workers == 1:
                    fleet_t, direct_t = await overhead(node.url, runs)
            finally:
                fleet.close()
        alone_fleet = Fleet(await pg.create_database("bench"), logs)
        try:
            alone_node = alone_fleet.node(name="node-instant")
            alone_t = await path_alone(alone_fleet.db_url, alone_node.url, runs)
        finally:
            alone_fleet.close()
        sdk_rate = await direct_throughput(n)
    finally:
        try:
            pg.stop()
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    report.section(f"Fleet throughput: {n} python submissions, {CLIENTS} clients, 1 API node")
    for workers, (rate, bad) in rates.items():
        note = "" if not bad else f"  ({bad} not Accepted!)"
        report.row(f"{workers} worker(s) x concurrency 2   {rate:7.1f} submissions/s{note}")
    report.row(f"sandboxkit.judge, 2 at a time       {sdk_rate:7.1f} submissions/s  (no fleet)")
    if 1 in rates and 2 in rates:
        report.row(f"2 workers / 1 worker              {rates[2][0] / rates[1][0]:7.2f}x")
    f50, d50 = percentile(fleet_t, 50), percentile(direct_t, 50)
    over = (f50 - d50) * 1e3
    report.section(f"Overhead per submission, sequential, p50 of {runs} (pool size 2 each)")
    report.row(f"POST ?wait=true on the node      {f50 * 1e3:8.1f} ms")
    report.row(f"sandboxkit.judge directly        {d50 * 1e3:8.1f} ms")
    report.row(
        f"p90 fleet / direct               {percentile(fleet_t, 90) * 1e3:8.1f} ms / "
        f"{percentile(direct_t, 90) * 1e3:.1f} ms"
    )
    paired = percentile([f - d for f, d in zip(fleet_t, direct_t, strict=True)], 50) * 1e3
    report.row(f"fleet overhead (p50 - p50)       {over:8.1f} ms")
    report.row(
        f"median of paired differences     {paired:8.1f} ms  (fleet - the direct run before it)"
    )
    report.row(
        f"the path alone (instant judge)   {percentile(alone_t, 50) * 1e3:8.1f} ms  "
        "(HTTP + store + wake-ups, no sandbox)"
    )
    report.target(
        "fleet overhead per submission", over <= TARGET_MS, f"{over:.1f} ms <= {TARGET_MS:.0f} ms"
    )
    bad_total = sum(bad for _, bad in rates.values())
    report.target("every benchmark submission Accepted", bad_total == 0, f"{bad_total} not")
    report.print()
    print(
        f"\n(process logs: {logs}; load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="submissions per throughput run")
    parser.add_argument("--runs", type=int, default=60, help="sequential overhead samples")
    parser.add_argument("--quick", action="store_true", help="n=30, runs=10")
    ns = parser.parse_args()
    if ns.quick:
        ns.n, ns.runs = 30, 10
    asyncio.run(main(ns.n, ns.runs))
