"""Pause, resume and fork: time and size of the snapshot, per kind of session.

    .venv/bin/python benchmarks/pause.py [--runs N] [--no-gvisor]

Cases: an idle Python session (runc: files; runsc: files and memory), a runsc session
holding 200 MB in a ``keep_state`` interpreter's memory, a 100 MB workdir (runc), and
``fork()`` of an idle session and of the 100 MB one. Pause is timed until the box is
stopped and the snapshot written; resume until the session answers a run (its files
unpacked, or its checkpoint restored). Medians of ``--runs`` (default 3). Snapshots go
to a temporary ``SANDBOXKIT_SNAPSHOT_DIR`` and are deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable

import sandboxkit as sk

MB = 1024 * 1024
Setup = Callable[[sk.Sandbox], Awaitable[None]]


async def _idle(sb: sk.Sandbox) -> None:
    await sb.run("x = 1")


async def _memory_200(sb: sk.Sandbox) -> None:
    # random bytes: a checkpoint compresses zero pages away, and real data is not zeros
    result = await sb.run("import os\nblob = os.urandom(200 * 1024 * 1024)")
    assert result.status == "ok", result.stderr


async def _workdir_100(sb: sk.Sandbox) -> None:
    result = await sb.run(
        "import os\nwith open('data.bin', 'wb') as f:\n    f.write(os.urandom(100 * 1024 * 1024))"
    )
    assert result.status == "ok", result.stderr


async def pause_case(
    pool: sk.SandboxPool, setup: Setup, runs: int, **session: object
) -> tuple[float, float, float, float, bool]:
    """Median pause s, resume s, files MB, memory MB; whether memory was kept."""
    pauses, resumes, files, memory = [], [], [], []
    kept = False
    for _ in range(runs):
        sb = await sk.Sandbox(pool=pool, **session).open()  # type: ignore[arg-type]
        await setup(sb)
        t0 = time.perf_counter()
        snap = await sb.pause()
        pauses.append(time.perf_counter() - t0)
        files.append(snap.size_bytes / MB)
        memory.append(snap.memory_bytes / MB)
        kept = snap.has_memory
        t0 = time.perf_counter()
        back = await sk.Sandbox.resume(snap.id, pool=pool)
        await back.run("pass")
        resumes.append(time.perf_counter() - t0)
        await back.aclose()
        await sk.delete_snapshot(snap.id)
    return (
        statistics.median(pauses),
        statistics.median(resumes),
        statistics.median(files),
        statistics.median(memory),
        kept,
    )


async def fork_case(pool: sk.SandboxPool, setup: Setup, runs: int, **session: object) -> float:
    times = []
    async with sk.Sandbox(pool=pool, **session) as sb:  # type: ignore[arg-type]
        await setup(sb)
        for _ in range(runs):
            t0 = time.perf_counter()
            copy = await sb.fork()
            await copy.run("pass")
            times.append(time.perf_counter() - t0)
            await copy.aclose()
    return statistics.median(times)


async def main(runs: int, gvisor: bool) -> None:
    rows: list[tuple[str, str, str, str, str, str]] = []

    def add(name: str, found: tuple[float, float, float, float, bool]) -> None:
        pause, resume, files, memory, kept = found
        cells = (f"{pause * 1000:.0f}", f"{resume * 1000:.0f}", f"{files:.1f}", f"{memory:.1f}")
        rows.append((name, *cells, "yes" if kept else "no"))

    big = sk.Limits(disk_mb=128, memory_mb=512, file_size_mb=128)
    async with sk.SandboxPool(languages=["python"], size=2) as runc:
        add("idle python (runc)", await pause_case(runc, _idle, runs))
        add("100 MB workdir (runc)", await pause_case(runc, _workdir_100, runs, limits=big))
        fork_idle = await fork_case(runc, _idle, runs)
        fork_big = await fork_case(runc, _workdir_100, runs, limits=big)
    if gvisor:
        async with sk.SandboxPool(languages=["python"], size=0, runtime="runsc") as runsc:
            add("idle python (runsc)", await pause_case(runsc, _idle, runs, keep_state=True))
            add(
                "200 MB in memory (runsc)",
                await pause_case(runsc, _memory_200, runs, keep_state=True, limits=big),
            )
    await sk.aclose()
    head = ("case", "pause ms", "resume ms", "files MB", "memory MB", "memory kept")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    print(
        f"\nfork (until the copy answers): idle {fork_idle * 1000:.0f} ms, "
        f"100 MB workdir {fork_big * 1000:.0f} ms  (median of {runs})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-gvisor", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sandboxkit-bench-snapshots-") as where:
        os.environ["SANDBOXKIT_SNAPSHOT_DIR"] = where
        asyncio.run(main(args.runs, not args.no_gvisor))
