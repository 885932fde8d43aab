"""Judge speed: 50 tests of an A+B program in C++, compiled once, versus 50 one-shot runs.

    .venv/bin/python benchmarks/judge_bench.py [--tests 50] [--repeat 3]

Prints the cost of each extra test (the judge's marginal cost: a fresh process in the
already-compiled sandbox) next to the cost of a one-shot run (a fresh sandbox, compile
and run each time). Goal (issue 11): <= 2 ms per extra test; must stay <= 25 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import sandboxkit as sk
from sandboxkit._run.program import Program

AB = r"""
#include <cstdio>
int main() { long long a, b; if (scanf("%lld %lld", &a, &b) == 2) printf("%lld\n", a + b); }
"""


def cases(n: int) -> list[sk.TestCase]:
    return [sk.TestCase(input=f"{i} {2 * i}\n", expected=f"{3 * i}\n") for i in range(n)]


async def timed_judge(pool: sk.SandboxPool, n: int) -> tuple[float, sk.JudgeReport]:
    t0 = time.perf_counter()
    report = await sk.judge(
        AB, language="cpp", tests=cases(n), pool=pool, limits=sk.Limits(time=2.0, memory_mb=256)
    )
    elapsed = time.perf_counter() - t0
    assert report.verdict == "AC", report
    return elapsed, report


async def extra_test_cost(
    pool: sk.SandboxPool, n: int, repeat: int
) -> tuple[float, float, float, float]:
    """Medians over ``repeat`` rounds, in seconds: a judge of 1 test, of ``n`` tests, the
    cost of each extra test ``(T_n - T_1) / (n - 1)``, and the program's own wall time
    inside per test. ``run_all.py`` shows the extra test's cost in its table."""
    await timed_judge(pool, 1)  # warm caches
    one, many, extras, per_test_runs = [], [], [], []
    for _ in range(repeat):
        await asyncio.sleep(0.5)  # let the pool refill, as between real submissions
        t1, _ = await timed_judge(pool, 1)
        await asyncio.sleep(0.5)
        tn, report = await timed_judge(pool, n)
        one.append(t1)
        many.append(tn)
        extras.append((tn - t1) / (n - 1))
        per_test_runs.append(statistics.median(t.wall for t in report.tests))
    return (
        statistics.median(one),
        statistics.median(many),
        statistics.median(extras),
        statistics.median(per_test_runs),
    )


async def main(n: int, repeat: int) -> None:
    async with sk.SandboxPool(languages=["cpp"], size=2) as pool:
        t1, tn, extra, inside = await extra_test_cost(pool, n, repeat)

        # the marginal step alone, without the noise of leasing and compiling: one
        # fresh process of the compiled program in the same sandbox, timed from the host
        cpp, limits = sk.get_language("cpp"), sk.Limits(time=2.0)
        async with pool.checkout(cpp, limits) as box:
            prog = Program(box, cpp, limits, files={cpp.source_file: AB.encode()})
            await prog.compile()
            steps = []
            for i in range(n):
                t0 = time.perf_counter()
                r = await prog.result(f"{i} {i}\n".encode())
                steps.append(time.perf_counter() - t0)
                assert r.stdout == f"{2 * i}\n", r
        step = statistics.median(steps)

        oneshot = []
        for i in range(n):
            t0 = time.perf_counter()
            r = await pool.run(AB, language="cpp", stdin=f"{i} {i}\n")
            oneshot.append(time.perf_counter() - t0)
            assert r.stdout == f"{2 * i}\n", r
        total_oneshot = sum(oneshot)

    print(f"A+B in C++, {n} tests, median of {repeat} (2-core machine shared with others)")
    print(f"  judge, 1 test (lease + compile + run)   : {t1 * 1000:8.1f} ms")
    print(f"  judge, {n} tests                          : {tn * 1000:8.1f} ms")
    print(
        f"  cost per extra test, (T{n} - T1)/{n - 1}        : {extra * 1000:8.2f} ms"
        f"   (goal <= 2 ms: {'MET' if extra <= 0.002 else 'MISSED'}; limit 25 ms)"
    )
    print(f"  one test step timed from the host        : {step * 1000:8.2f} ms (median)")
    print(f"  program wall time inside, per test       : {inside * 1000:8.2f} ms")
    print(
        f"  {n} one-shot runs (sandbox+compile+run)   : {total_oneshot * 1000:8.1f} ms"
        f"   ({statistics.median(oneshot) * 1000:.1f} ms each, median)"
    )
    print(f"  judge vs one-shot, {n} tests             : {total_oneshot / tn:8.1f}x faster")
    print(f"  load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--tests", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    asyncio.run(main(args.tests, args.repeat))
