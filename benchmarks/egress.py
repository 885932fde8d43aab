"""What an egress policy costs: the warm one-shot path with and without one, and an HTTP
GET through the gateway against the same GET from the host namespace.

    sudo .venv/bin/python benchmarks/egress.py [--runs 30] [--gets 50]

Builds the tests' private internet (a network namespace on 198.18.0.0/24, see
tests/egress_inet.py; nothing is sent anywhere else), so it needs root. One-shot runs
alternate with and without a policy (same pool, warm, settled), so both see the same
machine. GETs are plain HTTP, a new connection each (what a client without keep-alive
pays: the gateway's DNS answer, its resolution of the name, its connect), then one
10 MB download; the same client code runs in a sandbox session and on the host.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from _stats import ms, percentile  # noqa: E402
from egress_inet import RANGE, RESOLVER, private_internet  # noqa: E402

import sandboxkit as sk  # noqa: E402

CLIENT = r"""
import json, socket, sys, time, urllib.request
host, gets = sys.argv[1], int(sys.argv[2])
socket.gethostbyname(host)  # warm: the first resolution
small = []
for _ in range(gets):
    t = time.perf_counter()
    urllib.request.urlopen(f"http://{host}/bytes/1000", timeout=10).read()
    small.append(time.perf_counter() - t)
t = time.perf_counter()
size = len(urllib.request.urlopen(f"http://{host}/bytes/10000000", timeout=60).read())
big = time.perf_counter() - t
print(json.dumps({"small": small, "big": big, "size": size}))
"""


async def settled(pool: sk.SandboxPool) -> None:
    """Until every warm pool is full again (the refill after the last run is done)."""
    for _ in range(100):
        if all(h["starting"] == 0 and h["idle"] >= h["size"] for h in pool.health().values()):
            return
        await asyncio.sleep(0.05)


POLICY = sk.Egress(allow=["allowed.test"])


async def one_shot(
    pool: sk.SandboxPool, own: sk.SandboxPool, runs: int
) -> tuple[list[float], list[float], list[float]]:
    """``pool``: no network, or a policy per run; ``own``: the pool's own policy."""
    plain: list[float] = []
    egress: list[float] = []
    pooled: list[float] = []
    cases: list[tuple[list[float], sk.SandboxPool, sk.Egress | str | None]] = [
        (plain, pool, None),
        (egress, pool, POLICY),
        (pooled, own, "pool"),
    ]
    for _ in range(2):  # warm every shape
        for _samples, target, network in cases:
            await target.run("print(1)", network=network)  # type: ignore[arg-type]
    for _ in range(runs):
        for samples, target, network in cases:
            await settled(target)
            t = time.perf_counter()
            r = await target.run("print(1)", network=network)  # type: ignore[arg-type]
            samples.append(time.perf_counter() - t)
            assert r.stdout == "1\n", r
    return plain, egress, pooled


async def gets(pool: sk.SandboxPool, count: int) -> tuple[dict[str, object], dict[str, object]]:
    async with sk.Sandbox(pool=pool, network=sk.Egress(allow=["allowed.test"])) as sb:
        r = await sb.run(CLIENT, args=["allowed.test", str(count)], limits=sk.Limits(time=300))
        assert r.status == "ok", r.stderr
        inside = json.loads(r.stdout)
    # the host reaches the namespace's web server directly, by its address
    host = subprocess.run(
        [
            sys.executable,
            "-c",
            CLIENT.replace("socket.gethostbyname(host)", "None"),
            "198.18.0.10",
            str(count),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return inside, json.loads(host.stdout)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--gets", type=int, default=50)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir, private_internet(Path(workdir)):
        pool = sk.SandboxPool(
            languages=["python"], size=2, egress_resolvers=RESOLVER, egress_allow_private=RANGE
        )
        own = sk.SandboxPool(
            languages=["python"],
            size=2,
            network=POLICY,
            egress_resolvers=RESOLVER,
            egress_allow_private=RANGE,
        )
        async with pool, own:
            plain, egress, pooled = await one_shot(pool, own, opts.runs)
            inside, host = await gets(pool, opts.gets)
    print(f"\none-shot print(1), warm, {opts.runs} runs each (p50 / p90)")
    print(f"  {'no network':<24} {ms(percentile(plain, 50)):>10} {ms(percentile(plain, 90)):>10}")
    print(
        f"  {'Egress policy':<24} {ms(percentile(egress, 50)):>10} {ms(percentile(egress, 90)):>10}"
    )
    print(
        f"  {'the pool own policy':<24} {ms(percentile(pooled, 50)):>10} "
        f"{ms(percentile(pooled, 90)):>10}"
    )
    print(
        f"  {'added, per-run (p50)':<24} {ms(percentile(egress, 50) - percentile(plain, 50)):>10}"
    )
    print(
        f"  {'added, pool own (p50)':<24} {ms(percentile(pooled, 50) - percentile(plain, 50)):>10}"
    )
    small_in, small_host = inside["small"], host["small"]
    assert isinstance(small_in, list) and isinstance(small_host, list)
    print(f"\nHTTP GET of 1 kB, new connection each, {opts.gets} GETs (p50 / p90)")
    print(
        f"  {'host namespace':<24} {ms(percentile(small_host, 50)):>10} "
        f"{ms(percentile(small_host, 90)):>10}"
    )
    print(
        f"  {'sandbox via gateway':<24} {ms(percentile(small_in, 50)):>10} "
        f"{ms(percentile(small_in, 90)):>10}"
    )
    added = percentile(small_in, 50) - percentile(small_host, 50)
    print(f"  {'added per request (p50)':<24} {ms(added):>10}   (target <= 2 ms)")
    big_in, big_host = float(inside["big"]), float(host["big"])  # type: ignore[arg-type]
    print("\n10 MB download")
    print(f"  {'host namespace':<24} {ms(big_host):>10}")
    print(f"  {'sandbox via gateway':<24} {ms(big_in):>10}")
    print(f"  {'added':<24} {100 * (big_in / big_host - 1):>9.0f} %   (target <= 10 %)")


if __name__ == "__main__":
    asyncio.run(main())
