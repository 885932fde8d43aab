"""Where a warm ``pool.run("print(1)")`` spends its time, stage by stage.

    .venv/bin/python benchmarks/trace_warm.py [--runs 50] [--session] [--language python]
                                              [--quantile 0.5] [--judge]

(another language runs its hello world from tests/test_languages.py; a compiled one's
second job, the run after the compile, has its stages marked ``#2``.)

Host stamps are ``time.perf_counter_ns()`` taken by wrapping the pool's and the run layer's
functions (checkout, job encoding, the write to the attach socket, each frame read back,
the result, the release); agent stamps come from a traced job (``"trace": true``): the
agent reports, in its exit frame, when it read the job, wrote the files, forked, when
the child had set itself up, became the program, ran the code and exited, when the
output was read and the child reaped. Both clocks are ``CLOCK_MONOTONIC`` (a container
shares the host's), so the stamps compare directly.

Each run is taken with the pool settled (refills and removals done), as between
requests; the table shows, for every stage in the order it ends, the p50 of its time
since the run began and the p50 of the stage itself (from the stage before it).
``--session`` traces runs inside one sandbox (no checkout, no release) instead.
The host's own ``python -c 'print(1)'`` is timed interleaved, for the ratio.
``--quantile 0.25`` shows a lower quantile instead of the median: on a machine shared
with other work the low quantiles move least with the load. ``--judge`` traces the tests
of ``sk.judge`` (A+B in C++, ``--runs`` tests) instead: per test, the agent's stages from
the end of the test before it (its exit report) to this one's report.

Run it from the source tree (``PYTHONPATH=.``) to trace the tree's own agent.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sandboxkit as sk
from sandboxkit import _protocol as wire
from sandboxkit._container import Box
from sandboxkit._fleet.pool import WarmPool
from sandboxkit._run import jobs, policy, program, reader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_all import settle  # the benchmarks' own module, beside this one

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_languages import HELLO  # the same hello world the language tests run

CODE = "print(1)"
AB = r"""
#include <cstdio>
int main() { long long a, b; if (scanf("%lld %lld", &a, &b) == 2) printf("%lld\n", a + b); }
"""
_stamps: dict[str, int] = {}
_reports: list[dict[str, int]] = []  # every traced exit report's agent stamps, in order


def _now(name: str, ns: int | None = None) -> None:
    """Stamp ``name`` (a compiled language's second job: ``name #2``)."""
    key, i = name, 2
    while key in _stamps:
        key, i = f"{name} #{i}", i + 1
    _stamps[key] = time.perf_counter_ns() if ns is None else ns


def _hook_async(owner: Any, attr: str, before: str | None, after: str | None) -> None:
    original = getattr(owner, attr)

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if before:
            _now(before)
        result = await original(*args, **kwargs)
        if after:
            _now(after)
        return result

    setattr(owner, attr, wrapper)


def _install_hooks() -> None:
    _hook_async(WarmPool, "acquire", "acquire", "acquired")
    _hook_async(WarmPool, "release", "release", "released")
    for user in (policy, program):  # where the compile step's and the run's jobs are built
        _hook_async(user, "encode_job", "encode", "encoded")

    make_job = jobs.make_job

    def traced_job(*args: Any, **kwargs: Any) -> Any:
        return {**make_job(*args, **kwargs), "trace": True}

    jobs.make_job = traced_job  # type: ignore[assignment]

    send = Box.send

    async def traced_send(self: Box, kind: bytes, payload: bytes = b"") -> None:
        if kind == wire.JOB:
            _now("send")
        await send(self, kind, payload)
        if kind == wire.JOB:
            _now("sent")

    Box.send = traced_send  # type: ignore[method-assign]

    recv = Box.recv

    async def traced_recv(self: Box) -> tuple[bytes, bytes]:
        kind, payload = await recv(self)
        if kind == wire.STDOUT:
            _now("host got O")
        elif kind == wire.EXIT:
            _now("host got X")
            import json

            report = json.loads(payload)
            _reports.append(dict(report.get("trace") or {}))
            for name, ns in (report.get("trace") or {}).items():
                _now("agent " + name, int(ns))
        return kind, payload

    Box.recv = traced_recv  # type: ignore[method-assign]

    result_of = reader.result_of

    def traced_result(*args: Any, **kwargs: Any) -> Any:
        out = result_of(*args, **kwargs)
        _now("result")
        return out

    reader.result_of = traced_result  # type: ignore[assignment]


def host_python() -> float:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, check=True).stdout
    assert out == b"1\n", out
    return time.perf_counter() - t0


async def traced(run: Callable[[], Any]) -> dict[str, int]:
    _stamps.clear()
    _now("start")
    result = await run()
    _now("end")
    if result.status != "ok" or not result.stdout.strip():
        raise RuntimeError(f"the run went wrong: {result!r}")
    t0 = _stamps["start"]
    return {name: ns - t0 for name, ns in _stamps.items()}


def quantile(values: Any, q: float) -> float:
    """The ``q`` quantile of ``values`` (0.5: the median)."""
    ordered = sorted(values)
    if q == 0.5:
        return statistics.median(ordered)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def table(samples: list[dict[str, int]], host: list[float], title: str, q: float = 0.5) -> None:
    names = {n for s in samples for n in s}
    offsets = {n: quantile((s[n] for s in samples if n in s), q) / 1e6 for n in names}
    p = f"p{round(q * 100)}"
    order = sorted(names, key=lambda n: offsets[n])
    print(title)
    print(f"  {'stage (ends at)':28} {p + ' since start':>16} {p + ' of stage':>13}")
    prev: str | None = None
    for name in order:
        if prev is None:
            stage = 0.0
        else:
            stage = quantile(
                ((s[name] - s[prev]) / 1e6 for s in samples if name in s and prev in s), q
            )
        print(f"  {name:28} {offsets[name]:13.3f} ms {stage:10.3f} ms")
        prev = name
    total = quantile((s["end"] for s in samples), q) / 1e6
    h = quantile(host, q) * 1000
    print(f"  total {p} {total:.2f} ms; host {Path(sys.executable).name} -c {p} {h:.2f} ms")
    print(f"  ratio {total / h:.2f}x (target <= 0.5x); load average {os.getloadavg()}")


def judge_table(tests: list[dict[str, int]], q: float) -> None:
    """Per test after the first: each agent stage since the previous test's report."""
    rows: dict[str, list[float]] = {}
    for before, now in itertools.pairwise(tests):
        if "report" not in before or "job" not in now:
            continue
        t0 = before["report"]
        for name, ns in now.items():
            if name != "read":  # a queued test's job was read while the last one ran
                rows.setdefault(name, []).append((ns - t0) / 1e6)
    p = f"p{round(q * 100)}"
    print(f"  {'stage (ends at)':28} {p + ' since the last report':>26}")
    for name, values in sorted(rows.items(), key=lambda kv: quantile(kv[1], q)):
        print(f"  {name:28} {quantile(values, q):21.3f} ms")
    print(f"  load average {os.getloadavg()}")


async def judge(runs: int, q: float) -> None:
    tests = [sk.TestCase(input=f"{i} {2 * i}\n", expected=f"{3 * i}\n") for i in range(runs)]
    limits = sk.Limits(time=2.0, memory_mb=256)
    async with sk.SandboxPool(size=2, languages=["cpp"]) as pool:
        await sk.judge(AB, language="cpp", tests=tests[:2], pool=pool, limits=limits)
        await settle(pool)
        _reports.clear()
        t0 = time.perf_counter()
        report = await sk.judge(AB, language="cpp", tests=tests, pool=pool, limits=limits)
        elapsed = time.perf_counter() - t0
        assert report.verdict == "AC", report
        walls = [t.wall * 1e3 for t in report.tests]
        print(f"judge, A+B in C++, {runs} tests in {elapsed * 1e3:.1f} ms; the program's own")
        print(f"  wall inside, {f'p{round(q * 100)}'}: {quantile(walls, q):.3f} ms")
        judge_table([r for r in _reports if "job" in r][1:], q)  # after the compile


async def main(runs: int, session: bool, language: str, q: float) -> None:
    _install_hooks()
    code = CODE if language == "python" else HELLO[language]
    async with sk.SandboxPool(size=2, languages=[language]) as pool:
        samples: list[dict[str, int]] = []
        host: list[float] = []
        if session:
            async with sk.Sandbox(pool=pool, language=language) as sb:
                for _ in range(5):
                    await sb.run(code)
                for i in range(runs):
                    if i % 2:
                        host.append(host_python())
                    samples.append(await traced(lambda: sb.run(code)))
                    if not i % 2:
                        host.append(host_python())
        else:
            for _ in range(3):
                await settle(pool)
                await pool.run(code, language=language)
            for i in range(runs):
                await settle(pool)
                await asyncio.sleep(0.1)
                if i % 2:
                    host.append(host_python())
                samples.append(await traced(lambda: pool.run(code, language=language)))
                if not i % 2:
                    host.append(host_python())
        what = "inside one session" if session else "warm pool.run, pool settled"
        table(samples, host, f"{language} hello world, {what}, {runs} runs", q)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--session", action="store_true")
    ap.add_argument("--language", default="python")
    ap.add_argument("--quantile", type=float, default=0.5)
    ap.add_argument("--judge", action="store_true")
    args = ap.parse_args()
    if args.judge:
        _install_hooks()
        asyncio.run(judge(args.runs, args.quantile))
    else:
        asyncio.run(main(args.runs, args.session, args.language, args.quantile))
