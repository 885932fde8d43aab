"""Fleet benchmarks: one engine against three, failover times, image copy against build.

    sudo .venv/bin/python benchmarks/fleet.py [--quick] [--languages python,bash,...]

Brings up two namespace hosts with mutual TLS and a builder engine (scripts/fleet.sh),
and takes them down at the end. What is measured:

  * one-shot throughput (``print(1)``, concurrency 8) through the local engine alone and
    through the local engine plus the two hosts, in alternating rounds. The three
    engines share this machine's cores, so this is the fleet layer's overhead (placement,
    TLS, three dockerds instead of one), not a speed-up: target >= 0.9x;
  * time to see a dead engine (dockerd SIGKILLed; a pool idle, and one under load) and a
    silent one (dockerd SIGSTOPped: sockets open, no answer), and time to re-admit it
    after its dockerd answers again;
  * per language: copying the image from the local engine (``docker save`` → ``load``,
    streamed by sandboxkit) to an empty engine and to one that has the base, against
    building it from the base on the builder (an engine on this machine's network, so its
    apt reaches the package mirror as every image build here does).

Benchmarks, not tests: a MISS is printed, never raised.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


import _baselines as base
from _stats import Report, ratio

import sandboxkit as sk
from sandboxkit._backends import Backend, connect
from sandboxkit._images.dockerfile import BASE_IMAGE
from sandboxkit._images.ensure import context_for, transfer
from sandboxkit._languages import get_language

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "fleet.sh"
LOCAL = "unix:///var/run/docker.sock"


class Fleet:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.info: dict[str, Any] = json.loads((folder / "fleet.json").read_text())
        tls = {k: self.info[k] for k in ("ca_cert", "client_cert", "client_key")}
        self.configs = [sk.EngineConfig(h["url"], **tls) for h in self.info["hosts"]]
        self.urls = [c.url for c in self.configs]

    def script(self, *args: str) -> None:
        subprocess.run(
            ["bash", str(SCRIPT), *args, "--dir", str(self.folder)],
            check=True,
            timeout=180,
            stderr=subprocess.DEVNULL,
        )

    def pid(self, i: int) -> int:
        return int(Path(self.info["hosts"][i]["pid_file"]).read_text())


async def settle(pool: sk.SandboxPool, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(
            not any(t.get_name() == "sandboxkit-warm" for t in wp._tasks)
            and wp.state.idle >= wp.state.size
            for wp in pool._pools.values()
        ):
            return
        await asyncio.sleep(0.02)


async def checked_run(pool: sk.SandboxPool) -> None:
    r = await pool.run("print(1)")
    if (r.status, r.stdout) != ("ok", "1\n"):
        raise RuntimeError(f"a run went wrong: {r!r}")


async def state_of(pool: sk.SandboxPool, url: str) -> str:
    return {s.url: s.state for s in await pool.engine_status()}[url]


async def until(pool: sk.SandboxPool, url: str, state: str, timeout: float = 60.0) -> float:
    t0 = time.perf_counter()
    while await state_of(pool, url) != state:
        if time.perf_counter() - t0 > timeout:
            return float("nan")
        await asyncio.sleep(0.005)
    return time.perf_counter() - t0


# ---------------------------------------------------------------- throughput
async def throughput(fleet: Fleet, n: int, rounds: int, report: Report) -> float:
    single = sk.SandboxPool(languages=["python"], size=4, max_size=12, engines=[LOCAL])
    many = sk.SandboxPool(
        languages=["python"], size=4, max_size=12, engines=[LOCAL, *fleet.configs]
    )
    spent = {"single": 0.0, "fleet": 0.0}
    spread: dict[str, int] = {}
    async with single, many:
        for pool in (single, many):  # first-use costs are not the steady state
            await settle(pool)
            await base.concurrent_rate(8, 8, lambda p=pool: checked_run(p))
        for i in range(rounds):
            order = [("single", single), ("fleet", many)]
            for name, pool in order if i % 2 == 0 else order[::-1]:
                await settle(pool)
                t0 = time.perf_counter()
                await base.concurrent_rate(n, 8, lambda p=pool: checked_run(p))
                await settle(pool)  # the round ends when the used containers are replaced
                spent[name] += time.perf_counter() - t0
        for s in await many.engine_status():
            spread[s.url] = s.idle
        targets = [wp.per_engine()[u]["target"] for wp in many._pools.values() for u in spread]
    total = n * rounds
    one, three = total / spent["single"], total / spent["fleet"]
    report.section(f"One-shot throughput, print(1) at concurrency 8, {total} runs each")
    report.row(f"one engine (local socket)                       {one:7.1f} runs/s")
    report.row(f"three engines (local + 2 TLS hosts, same cores) {three:7.1f} runs/s")
    report.row(f"fleet / single                                  {ratio(three, one)}")
    report.row(f"warm sandboxes per engine at the end: {list(spread.values())} (targets {targets})")
    return three / one


# ---------------------------------------------------------------- failover
async def failover(fleet: Fleet, repeats: int, report: Report) -> dict[str, float]:
    victim = fleet.urls[1]
    idle_detect, load_detect, silent_detect, readmit = [], [], [], []
    failures: Counter[str] = Counter()
    async with sk.SandboxPool(
        languages=["python"], size=6, engines=[LOCAL, *fleet.configs]
    ) as pool:
        for i in range(repeats):
            await settle(pool)
            under_load = i % 2 == 1
            stop = asyncio.Event()

            async def load(p: sk.SandboxPool = pool, s: asyncio.Event = stop) -> None:
                while not s.is_set():
                    try:
                        await p.run("import time; time.sleep(0.2)")
                    except sk.SandboxkitError as exc:  # runs under way there: EngineError
                        failures[type(exc).__name__] += 1
                        await asyncio.sleep(0.05)

            workers = [asyncio.create_task(load()) for _ in range(6 if under_load else 0)]
            await asyncio.sleep(1.0 if under_load else 0)
            os.kill(fleet.pid(1), signal.SIGKILL)
            seen = await until(pool, victim, "down")
            (load_detect if under_load else idle_detect).append(seen)
            stop.set()
            await asyncio.gather(*workers)
            fleet.script("start", "h2")  # returns once the dockerd answers
            readmit.append(await until(pool, victim, "up"))
        await settle(pool)
        fleet.script("freeze", "h2")
        try:
            silent_detect.append(await until(pool, victim, "down"))
        finally:
            fleet.script("thaw", "h2")
        readmit.append(await until(pool, victim, "up"))

    def med(xs: list[float]) -> float:
        return statistics.median(xs) if xs else float("nan")

    out = {
        "dead_idle": med(idle_detect),
        "dead_load": med(load_detect),
        "silent": med(silent_detect),
        "readmit": med(readmit),
    }
    report.section(f"Failover (medians; {repeats} kills, 1 freeze)")
    report.row(f"dockerd SIGKILLed, pool idle: seen down after       {out['dead_idle']:6.2f} s")
    report.row(f"dockerd SIGKILLed, runs under way: seen down after  {out['dead_load']:6.2f} s")
    report.row(f"dockerd SIGSTOPped (silent, sockets open): down in  {out['silent']:6.2f} s")
    report.row(f"re-admitted after its dockerd answers again        {out['readmit']:6.2f} s")
    report.row(f"runs that failed under the kills (in flight there): {dict(failures)}")
    return out


# ---------------------------------------------------------------- images
async def clear(engine: Backend) -> None:
    for image in await engine.list_images("*"):
        await engine.remove_image(image.tag)


async def copy_seconds(tag: str, source: Backend, target: Backend) -> float:
    t0 = time.perf_counter()
    outcome = await transfer(tag, source, [target])
    if outcome[target.url] is not None:
        raise RuntimeError(str(outcome[target.url]))
    return time.perf_counter() - t0


def build_seconds(builder: str, language: str) -> float:
    """Build ``language`` from the base on the builder, no cache (docker CLI: the
    builder reaches the package mirror through the host's network, --network host)."""
    ctx = context_for(get_language(language))
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "Dockerfile").write_text(ctx.dockerfile)
        for name, data in ctx.files.items():
            Path(folder, name).write_bytes(data)
        t0 = time.perf_counter()
        subprocess.run(
            [
                "docker",
                "-H",
                builder,
                "build",
                "-q",
                "--no-cache",
                "--network",
                "host",
                "-t",
                ctx.tag,
                folder,
            ],
            check=True,
            capture_output=True,
            timeout=1800,
        )
        return time.perf_counter() - t0


async def images(
    fleet: Fleet, languages: list[str], report: Report
) -> list[tuple[str, float, float]]:
    local, target = connect(LOCAL), connect(fleet.configs[0])
    builder = fleet.info.get("builder")
    rows: list[tuple[str, float, float, float, float]] = []
    try:
        if builder:
            build_engine = connect(builder)
            try:
                await clear(build_engine)
                await copy_seconds(BASE_IMAGE, local, build_engine)
            finally:
                await build_engine.close()
        for language in languages:
            tag = context_for(get_language(language)).tag
            info = await local.inspect_image(tag)
            if info is None:
                report.row(f"{language}: not built on the local engine; skipped")
                continue
            await clear(target)
            empty = await copy_seconds(tag, local, target)
            await clear(target)
            await copy_seconds(BASE_IMAGE, local, target)
            with_base = await copy_seconds(tag, local, target)
            built = (
                await asyncio.to_thread(build_seconds, builder, language)
                if builder
                else float("nan")
            )
            rows.append((language, int(info["Size"]) / 1e6, empty, with_base, built))
    finally:
        await local.close()
        await target.close()
    report.section("Images to an engine that lacks them: copy (save → load, streamed) vs build")
    report.row(
        f"{'language':11} {'size':>8} {'copy, empty':>12} {'copy, base':>11} {'build':>9} "
        f"{'build/copy':>11}"
    )
    for language, size, empty, with_base, built in rows:
        report.row(
            f"{language:11} {size:6.0f}MB {empty:10.1f} s {with_base:9.1f} s {built:7.1f} s "
            f"{ratio(built, with_base):>11}"
        )
    return [(lang, with_base, built) for lang, _s, _e, with_base, built in rows]


async def main(quick: bool, languages: list[str]) -> None:
    if os.geteuid() != 0:
        sys.exit("benchmarks/fleet.py brings up dockerds in network namespaces: run it as root")
    started = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="sandboxkit-fleet-bench-", dir="/var/tmp"))
    subprocess.run(
        ["bash", str(SCRIPT), "up", "--hosts", "2", "--builder", "--dir", str(folder)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    report = Report()
    try:
        fleet = Fleet(folder)
        copies = await images(fleet, languages, report)
        share = await throughput(fleet, 24 if quick else 48, 2 if quick else 4, report)
        times = await failover(fleet, 2 if quick else 4, report)
    finally:
        subprocess.run(["bash", str(SCRIPT), "down", "--dir", str(folder)], check=False)
    report.target("fleet throughput >= 0.9x one engine", share >= 0.9, f"{share:.2f}x")
    report.target(
        "a dead engine is seen within seconds",
        times["dead_idle"] <= 5 and times["dead_load"] <= 5,
        f"{times['dead_idle']:.2f} s idle, {times['dead_load']:.2f} s under load, "
        f"{times['silent']:.2f} s silent",
    )
    report.target("re-admitted within seconds", times["readmit"] <= 10, f"{times['readmit']:.2f} s")
    for language, copy, built in copies:
        report.target(
            f"{language}: copying beats building (the default choice)",
            copy < built if built == built else None,
            f"copy {copy:.1f} s, build {built:.1f} s",
        )
    report.print()
    print(f"\n(fleet benchmark took {time.perf_counter() - started:.0f}s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and languages")
    parser.add_argument("--languages", help="comma-separated (default: python,bash,c,javascript)")
    args = parser.parse_args()
    chosen = args.languages or ("python" if args.quick else "python,bash,c,javascript")
    asyncio.run(main(args.quick, chosen.split(",")))
