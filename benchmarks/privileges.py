"""What the supervisor apart from the program costs (sandboxkit/agent/_privs.py): a fork
that ends at once, with and without the drop to the program's uid and no capability, in
a container made as sandboxkit makes one (uid 0 with the agent's four capabilities,
no-new-privileges, sandboxkit's seccomp profile), under runc and runsc; and a whole
one-shot run through the public API for scale. Prints a table.

    .venv/bin/python benchmarks/privileges.py [--n 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import tempfile
import time

import sandboxkit as sk
from sandboxkit._backends.docker import AGENT_CAPABILITIES
from sandboxkit._backends.seccomp import PROFILE_JSON
from sandboxkit._images.dockerfile import AGENT_LIB, build_context
from sandboxkit._languages import PYTHON

FORKS = """
import json, os, sys, time
sys.path.insert(0, {lib!r})
from sandboxkit.agent import _privs
_privs.separate("/work")
assert _privs.program_uid == 65534, _privs.program_uid

def forks(n, drop):
    took = []
    for _ in range(n):
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            if drop:
                _privs.become_program()
            os._exit(0)
        os.waitpid(pid, 0)
        took.append(time.perf_counter() - t0)
    took.sort()
    return took[len(took) // 2] * 1e6

forks(20, True)
print(json.dumps({{"plain": forks({n}, False), "drop": forks({n}, True)}}))
"""


def in_container(runtime: str, image: str, n: int, profile: str) -> dict[str, float]:
    caps = [a for c in AGENT_CAPABILITIES for a in ("--cap-add", c)]
    cmd = [
        *("docker", "run", "--rm", "--runtime", runtime, "-u", "0:0", "--network", "none"),
        *("--cap-drop", "ALL", *caps, "--security-opt", "no-new-privileges"),
        *("--security-opt", f"seccomp={profile}", "--tmpfs", "/work:uid=65534,gid=65534"),
        *(image, "python3", "-I", "-c", FORKS.format(lib=AGENT_LIB, n=n)),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out))


async def one_shot(runtime: str, n: int) -> float:
    async with sk.SandboxPool(languages=["python"], size=1, runtime=runtime) as pool:  # type: ignore[arg-type]
        await pool.run("print(1)")
        took = []
        for _ in range(n):
            t0 = time.perf_counter()
            r = await pool.run("print(1)")
            took.append(time.perf_counter() - t0)
            assert r.status == "ok", r
    return statistics.median(took) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300, help="forks per figure")
    parser.add_argument("--runs", type=int, default=20, help="one-shot runs per figure")
    args = parser.parse_args()
    image = build_context(PYTHON).tag
    runtimes = ["runc"] + (["runsc"] if shutil.which("runsc") else [])
    with tempfile.NamedTemporaryFile("w", suffix=".json") as profile:
        profile.write(PROFILE_JSON)
        profile.flush()
        rows = []
        for runtime in runtimes:
            run = asyncio.run(one_shot(runtime, args.runs))  # builds the image if need be
            forks = in_container(runtime, image, args.n, profile.name)
            rows.append((runtime, forks["plain"], forks["drop"], run))
    print("| runtime | fork+exit µs | fork+drop+exit µs | drop costs µs | one-shot run ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for runtime, plain, drop, run in rows:
        print(f"| {runtime} | {plain:.0f} | {drop:.0f} | {drop - plain:.0f} | {run:.1f} |")


if __name__ == "__main__":
    main()
