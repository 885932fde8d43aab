"""MCP overhead: a ``run_code`` round trip through ``sandboxkit mcp`` over stdio (the
official ``mcp`` client) against the same one-shot run through the SDK directly, p50,
in one run. Target: <= 5 ms of overhead. Also the protocol's own round trip (a tool that
touches no sandbox), which the sandbox's run-to-run variance does not blur.

    .venv/bin/python benchmarks/mcp_bench.py [--runs N] [--quick]

Samples are interleaved (SDK, MCP, SDK, ...) with a pause after each so both warm
pools (the server's and this process's, same size) have refilled: each call takes a
warm sandbox, as it would between requests. A MISS is printed, never raised.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stats import percentile
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

import sandboxkit as sk

CODE = "print(1)"
TARGET_MS = 5.0
PAUSE = 0.5  # seconds for both pools to refill between samples


async def main(runs: int) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "sandboxkit", "mcp", "--pool-size", "2"],
        env=dict(os.environ),
    )
    sdk_times: list[float] = []
    mcp_times: list[float] = []
    noop_times: list[float] = []
    with open(os.devnull, "w") as errlog:
        async with (
            sk.SandboxPool(languages=["python"], size=2) as pool,
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            for _ in range(3):  # warm both paths (images, imports, first containers)
                await pool.run(CODE)
                await session.call_tool("run_code", {"code": CODE})
            await asyncio.sleep(1)
            for _ in range(runs):
                t = time.perf_counter()
                r = await pool.run(CODE)
                sdk_times.append(time.perf_counter() - t)
                assert r.stdout == "1\n", r
                await asyncio.sleep(PAUSE)
                t = time.perf_counter()
                res = await session.call_tool("run_code", {"code": CODE})
                mcp_times.append(time.perf_counter() - t)
                assert not res.is_error and "1" in res.content[0].text, res
                t = time.perf_counter()
                await session.call_tool("list_languages", {})
                noop_times.append(time.perf_counter() - t)
                await asyncio.sleep(PAUSE)
    sdk, via = percentile(sdk_times, 50) * 1e3, percentile(mcp_times, 50) * 1e3
    overhead = via - sdk
    print(f"runs: {runs} each, interleaved")
    print(f"{'path':<32}{'p50 ms':>10}{'p90 ms':>10}")
    print(f"{'SDK pool.run':<32}{sdk:>10.2f}{percentile(sdk_times, 90) * 1e3:>10.2f}")
    print(f"{'MCP run_code (stdio)':<32}{via:>10.2f}{percentile(mcp_times, 90) * 1e3:>10.2f}")
    noop = percentile(noop_times, 50) * 1e3
    print(
        f"{'MCP list_languages (no sandbox)':<32}{noop:>10.2f}"
        f"{percentile(noop_times, 90) * 1e3:>10.2f}"
    )
    verdict = "ok" if overhead <= TARGET_MS else "MISS"
    print(f"MCP overhead p50: {overhead:.2f} ms (target <= {TARGET_MS:g} ms): {verdict}")
    print(f"MCP round trip alone (a tool with no sandbox), p50: {noop:.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="10 runs")
    args = parser.parse_args()
    asyncio.run(main(10 if args.quick else args.runs))
