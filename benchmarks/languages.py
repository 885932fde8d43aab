"""Per language: sandboxkit's warm hello-world p50 beside the toolchain's own time.

The toolchain's own time is the same source compiled (where the language compiles) and
run with the same commands and flags, timed *inside* a plain container of the same image
(``docker run --network none``), so it counts the compiler and the program and nothing
of sandboxkit's or the engine's; the plain container gets the sandbox's default limits
(1 CPU over the same accounting period, 256 MB, 64 pids), so both compile and run under
the same quota.

The two paths alternate sample by sample, each paced alike: before every sample of either
side the pool settles (its refill and removal done) and both wait the same gap. A
toolchain timed in a tight loop runs with the CPU's caches and frequency hot from the
iteration before, ~1.5 ms (5 %) faster for gcc's hello world on this machine than the
same compile after a gap, and the machine's speed drifts by 10-20 % over seconds: rounds
of several samples a side measured the drift as much as the machinery.

Each toolchain iteration is a *first* compile, as in a sandbox: a fresh work directory
and an empty ``/tmp`` (where Go keeps its build cache), so a compiler cannot skip its work
because the previous iteration left an up-to-date binary or cache behind (``go build``
of an unchanged source in the same directory only checks it); ``--reuse`` keeps one
directory and ``/tmp`` for every iteration (the earlier loop). For the
``bits/stdc++.h`` row the toolchain is timed twice: as the image has it (with the
precompiled header sandboxkit builds into the image) and without it (the header read
from a copy with no ``.gch`` beside it, the way a stock g++ compiles it).

    .venv/bin/python benchmarks/languages.py [LANG ...] [--samples N] [--reuse]
        [--toolchain-cpu sandbox|docker|none]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from typing import Any

import sandboxkit as sk
from sandboxkit._backends.docker import cpu_quota
from sandboxkit._container import SANDBOX_UID
from sandboxkit._languages import get_language, language_env

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[0:0] = [HERE, os.path.join(HERE, "..", "tests")]

BITS = "#include <bits/stdc++.h>\nusing namespace std;\nint main(){vector<int> v{3,1,2};"
BITS += 'sort(v.begin(),v.end());cout<<"Hello, world!"<<v[0]<<endl;}'

# the toolchain's side, run by the image's python3 inside a plain container: one timed
# compile and run per line on stdin, its time in seconds on stdout
INNER = r"""
import json, os, shutil, subprocess, sys, time
src, name, compile_cmd, run_cmd, reuse, no_pch = json.loads(sys.stdin.readline())
if no_pch:
    # a copy of the header with no precompiled one beside it, found first (-I)
    probe = subprocess.run(["g++", "-x", "c++", "-E", "-H", "-o", "/dev/null", "-"],
                           input=b"#include <bits/stdc++.h>\n", capture_output=True)
    header = probe.stderr.decode().splitlines()[0].split(" ", 1)[1]
    os.makedirs("/work/nopch/bits")
    shutil.copy(header, "/work/nopch/bits/stdc++.h")
    compile_cmd = [compile_cmd[0], "-I/work/nopch", *compile_cmd[1:]]
print("ready", flush=True)
for i, _ in enumerate(sys.stdin):
    work = "/work" if reuse else f"/work/{i}"
    if not reuse and i:  # the last one's binary goes: the tmpfs counts against memory
        shutil.rmtree(f"/work/{i - 1}")
    os.makedirs(work, exist_ok=True)
    os.chdir(work)
    if not reuse:
        for entry in os.listdir("/tmp"):
            path = os.path.join("/tmp", entry)
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
    open(name, "w").write(src)
    t = time.perf_counter()
    if compile_cmd:
        subprocess.run(compile_cmd, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(run_cmd, check=True, stdout=subprocess.DEVNULL)
    print(time.perf_counter() - t, flush=True)
"""
# the toolchain's CPU (--toolchain-cpu): by default 1 CPU as the sandbox gets it, the same
# quota over the same period (CPU_PERIOD_US); or Docker's `--cpus 1` (the kernel's 100 ms
# period); or no quota at all
_ONE_CPU = cpu_quota(1.0)
CPU_SHAPES = {
    "sandbox": [f"--cpu-period={_ONE_CPU['CpuPeriod']}", f"--cpu-quota={_ONE_CPU['CpuQuota']}"],
    "docker": ["--cpus", "1"],
    "none": [],
}
GAP = 0.05  # seconds of quiet before every sample of either side


class Toolchain:
    """A plain container of the image that compiles and runs the source once per ask."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(
        cls,
        image: str,
        language: str,
        source: str,
        *,
        reuse: bool = False,
        no_pch: bool = False,
        cpu: str = "sandbox",
    ) -> Toolchain:
        spec = get_language(language)
        env = [f"--env={k}={v}" for k, v in sorted(language_env(spec).items())]
        cmd = [
            "docker", "run", "--rm", "-i", "--network", "none", "--init",
            "--user", f"{SANDBOX_UID}:{SANDBOX_UID}", "--read-only", "--workdir", "/work",
            # the sandbox's own shape (default Limits; the CPU as ``cpu`` says): the
            # comparison is of machinery alone
            *CPU_SHAPES[cpu], "--memory", "256m", "--memory-swap", "256m", "--pids-limit", "64",
            "--tmpfs", f"/work:rw,exec,uid={SANDBOX_UID},gid={SANDBOX_UID}",
            "--tmpfs", "/tmp:rw,exec,mode=1777", *env, image, "python3", "-c", INNER,
        ]  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            *cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        toolchain = cls(process)
        try:
            settings = [source, spec.source_file, spec.compile, spec.run, reuse, no_pch]
            await toolchain._say(json.dumps(settings))
            if await toolchain._answer() != "ready":
                raise RuntimeError(f"the toolchain's container for {language} did not start")
        except BaseException:
            await toolchain.close()
            raise
        return toolchain

    async def once(self) -> float:
        """One compile and run, timed inside the container, in seconds."""
        await self._say("go")
        return float(await self._answer())

    async def close(self) -> None:
        """Its stdin closed: the loop ends and the container with it (``--rm``)."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        await self.process.wait()

    async def _say(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def _answer(self) -> str:
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        if not line:
            code = await self.process.wait()
            raise RuntimeError(f"the toolchain's container failed (exit {code})")
        return line.decode().strip()


async def measure(
    language: str, source: str, samples: int, *, reuse: bool, no_pch: bool, cpu: str = "sandbox"
) -> tuple[float, float, float | None]:
    """Medians: sandboxkit, the toolchain in the image, the toolchain without PCH; the
    sides alternate sample by sample, each after the same settle and gap."""
    from run_all import settle

    async with (
        contextlib.AsyncExitStack() as stack,
        sk.SandboxPool(languages=[language], size=2) as pool,
    ):
        image = await pool.image_for(get_language(language))
        sides: list[Toolchain] = []
        for bare in (False, True) if no_pch else (False,):
            sides.append(
                await Toolchain.start(image, language, source, reuse=reuse, no_pch=bare, cpu=cpu)
            )
            stack.push_async_callback(sides[-1].close)

        async def ours() -> float:
            t = time.perf_counter()
            r = await pool.run(source, language=language)
            took = time.perf_counter() - t
            assert r.status == "ok", (language, r.status, r.stderr)
            return took

        for _ in range(2):  # warm: image, pool, page cache
            await ours()
            for side in sides:
                await side.once()
        takers = [ours, *(side.once for side in sides)]
        found: dict[Any, list[float]] = {take: [] for take in takers}
        for i in range(samples):
            for take in reversed(takers) if i % 2 else takers:  # neither side always first
                await settle(pool)  # the refill and removal are done
                await asyncio.sleep(GAP)
                found[take].append(await take())
        medians = [statistics.median(found[take]) for take in takers]
    return medians[0], medians[1], medians[2] if no_pch else None


async def main() -> None:
    from test_languages import HELLO

    parser = argparse.ArgumentParser()
    parser.add_argument("languages", nargs="*")
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--reuse", action="store_true", help="one work dir and /tmp for all")
    parser.add_argument(
        "--toolchain-cpu", choices=sorted(CPU_SHAPES), default="sandbox",
        help="the toolchain's CPU quota: the sandbox's (default), docker's --cpus 1, none",
    )  # fmt: skip
    args = parser.parse_args()
    cases = [(lang, lang, HELLO[lang]) for lang in (args.languages or list(HELLO))]
    if not args.languages or "cpp" in args.languages:
        cases.append(("cpp bits/stdc++.h", "cpp", BITS))
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'language':<20} {'sandboxkit p50':>15} {'toolchain p50':>15} {'ratio':>7}")
    for label, language, source in cases:
        bits = source == BITS
        ours, theirs, bare = await measure(
            language, source, args.samples, reuse=args.reuse, no_pch=bits, cpu=args.toolchain_cpu
        )
        print(f"{label:<20} {ours * 1e3:>12.1f} ms {theirs * 1e3:>12.1f} ms {ours / theirs:>6.2f}x")
        if bare is not None:
            label = "  vs g++ without PCH"
            print(f"{label:<20} {'':>15} {bare * 1e3:>12.1f} ms {ours / bare:>6.2f}x")
    print(f"load average {os.getloadavg()[0]:.1f} after;", shlex.join(sys.argv))


if __name__ == "__main__":
    asyncio.run(main())
