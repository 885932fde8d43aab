"""Soak: many runs at once, a fifth of them hostile; nothing wrong, lost or leaked.

    .venv/bin/python benchmarks/soak.py [--runs 300] [--concurrency 16] [--runtime runc]

Every run's result is checked (status, and exact output for benign runs); a run that
raises is "lost"; after the pool closes, any container still carrying its label is
"leaked". Prints p50/p99 latency of the benign runs (which share the machine with the
hostile ones) and exits 1 if anything was wrong, lost or leaked.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time
from dataclasses import dataclass

import sandboxkit as sk
from sandboxkit._fleet.labels import LABEL_POOL


@dataclass(frozen=True)
class Hostile:
    code: str
    status: str
    limits: sk.Limits
    stdout_prefix: str = ""


HOSTILE = {
    "fork-bomb": Hostile(
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        "timeout",
        sk.Limits(time=2),
    ),
    "memory-bomb": Hostile(
        "b = []\nwhile True:\n    b.append(bytearray(10**7))\n",
        "oom",
        sk.Limits(memory_mb=64, time=20),
    ),
    "flood": Hostile(
        "while True:\n    print('y' * 1000)\n",
        "output_limit",
        sk.Limits(output_bytes=10_000, time=20),
    ),
    "spin": Hostile("while True:\n    pass\n", "timeout", sk.Limits(time=1)),
    "daemon": Hostile(
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n"
        "    time.sleep(1000)\nprint('main done')\n",
        "ok",
        sk.Limits(time=20),
        "main done",
    ),
    "self-kill": Hostile("import os\nos.kill(os.getpid(), 9)\n", "error", sk.Limits()),
    "kill-pid1": Hostile(
        "import os, signal\nfor s in signal.valid_signals():\n    try:\n"
        "        os.kill(1, s)\n    except OSError:\n        pass\n"
        "print('alive')\n",
        "ok",
        sk.Limits(),
        "alive",
    ),
    "fd-exhaustion": Hostile(
        "fds = []\ntry:\n    while True:\n"
        "        fds.append(open('/dev/null'))\nexcept OSError:\n"
        "    print('emfile')\n",
        "ok",
        sk.Limits(),
        "emfile",
    ),
}


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    data = sorted(samples)
    pos = (len(data) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


async def soak(runs: int, concurrency: int, runtime: str) -> int:
    wrong: list[str] = []
    lost: list[str] = []
    benign_lat: list[float] = []
    hostile_lat: dict[str, list[float]] = collections.defaultdict(list)
    names = sorted(HOSTILE)
    sem = asyncio.Semaphore(concurrency)
    started = time.monotonic()
    async with sk.SandboxPool(
        size=min(concurrency, 8), max_size=concurrency + 4, runtime=runtime, acquire_timeout=300
    ) as pool:  # type: ignore[arg-type]
        pool_id = pool.pool_id

        async def one(i: int) -> None:
            async with sem:
                t = time.monotonic()
                try:
                    if i % 5 == 4:
                        name = names[(i // 5) % len(names)]
                        h = HOSTILE[name]
                        r = await pool.run(h.code, limits=h.limits)
                        hostile_lat[name].append(time.monotonic() - t)
                        if r.status != h.status or not r.stdout.startswith(h.stdout_prefix):
                            wrong.append(f"#{i} {name}: {r.status} {r.stdout[:80]!r}")
                    else:
                        r = await pool.run(
                            f"import sys\nprint({i} * int(sys.stdin.read()))", stdin=f"{i}\n"
                        )
                        benign_lat.append(time.monotonic() - t)
                        if (r.status, r.stdout, r.stderr) != ("ok", f"{i * i}\n", ""):
                            wrong.append(f"#{i} benign: {r.status} {r.stdout[:80]!r}")
                except Exception as exc:
                    lost.append(f"#{i}: {type(exc).__name__}: {exc}")

        await asyncio.gather(*(one(i) for i in range(runs)))
        elapsed = time.monotonic() - started
    engine = sk.SandboxPool(size=0).engine
    try:
        deadline = time.monotonic() + 30
        while True:
            leaked = await engine.list_containers({LABEL_POOL: pool_id})
            if not leaked or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    finally:
        await engine.close()

    n_hostile = sum(len(v) for v in hostile_lat.values())
    print(
        f"soak: {runs} runs, {concurrency} at a time, runtime {runtime}: "
        f"{len(benign_lat)} benign + {n_hostile} hostile in {elapsed:.1f}s "
        f"({runs / elapsed:.1f} runs/s)"
    )
    print(
        f"benign latency: p50 {percentile(benign_lat, 50) * 1000:.0f} ms, "
        f"p99 {percentile(benign_lat, 99) * 1000:.0f} ms, "
        f"max {max(benign_lat, default=float('nan')) * 1000:.0f} ms"
    )
    for name, lat in sorted(hostile_lat.items()):
        print(f"  hostile {name:14} x{len(lat):<3} p50 {percentile(lat, 50) * 1000:6.0f} ms")
    print(f"wrong: {len(wrong)}   lost: {len(lost)}   leaked: {len(leaked)}")
    for line in (wrong + lost)[:20]:
        print("  ", line)
    return 1 if wrong or lost or leaked else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--runtime", choices=("runc", "runsc"), default="runc")
    args = ap.parse_args()
    sys.exit(asyncio.run(soak(args.runs, args.concurrency, args.runtime)))


if __name__ == "__main__":
    main()
