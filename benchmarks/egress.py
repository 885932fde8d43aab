"""What an egress policy costs: the warm one-shot path with and without one, and HTTP
GETs through the gateway against the same GETs from the host namespace.

    sudo .venv/bin/python benchmarks/egress.py [--runs 30] [--gets 60] [--downloads 3]

Builds the tests' private internet (a network namespace on 198.18.0.0/24, see
tests/egress_inet.py; nothing is sent anywhere else), so it needs root. One-shot runs
alternate with and without a policy (same pool, warm, settled), so both see the same
machine. Transfers are plain HTTP, a new connection each (what a client without
keep-alive pays: the gateway's DNS answer, its resolution of the name, its connect):
1 kB GETs and 10 MB downloads, by the same client program run (round after round, so
each sees the same machine) on the host with the host's Python, in the host's namespace
with the sandbox image's Python and the sandbox's 1-CPU quota (the fair comparison:
only the path differs), in a sandbox at 1 CPU and at 2, and last in a sandbox behind a
gateway that copies through Python reads instead of splice(2). The image's Python is
the fair baseline: Debian's http.client reads a body in growing chunks (a memory-DoS
fix) and costs several times the CPU of a newer-built host Python for the same read.
Run it from the checkout (PYTHONPATH=.) so the gateway measured is the checkout's.
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
from egress_inet import RANGE, RESOLVER, WEB, private_internet  # noqa: E402

import sandboxkit as sk  # noqa: E402
from sandboxkit._egress import hub  # noqa: E402
from sandboxkit._languages.registry import get_language  # noqa: E402

CLIENT = r"""
import json, socket, sys, time, urllib.request
host, gets, downloads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socket.gethostbyname(host)  # warm: the first resolution
small = []
for _ in range(gets):
    t = time.perf_counter()
    urllib.request.urlopen(f"http://{host}/bytes/1000", timeout=10).read()
    small.append(time.perf_counter() - t)
big, big_cpu = [], []
for _ in range(downloads):
    t, c = time.perf_counter(), time.process_time()
    size = len(urllib.request.urlopen(f"http://{host}/bytes/10000000", timeout=60).read())
    big.append(time.perf_counter() - t)
    big_cpu.append(time.process_time() - c)
    assert size == 10_000_000
print(json.dumps({"small": small, "big": big, "big_cpu": big_cpu}))
"""
ON_HOST = CLIENT.replace("socket.gethostbyname(host)", "None")  # by address: no DNS there


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


async def through_gateway(
    pool: sk.SandboxPool, gets: int, downloads: int, cpus: float
) -> dict[str, list[float]]:
    """The client in a sandbox session, every byte through the gateway; with the CPU
    time the gateway spent per download (its container's cgroup, read around them)."""
    got: dict[str, list[float]] = {}
    async with sk.Sandbox(pool=pool, network=POLICY, limits=sk.Limits(cpus=cpus)) as sb:
        for args in ([gets, 0], [0, downloads]):
            before = gateway_cpu(pool)
            r = await sb.run(
                CLIENT,
                args=["allowed.test", *map(str, args)],
                limits=sk.Limits(time=300, cpus=cpus),
            )
            assert r.status == "ok", r.stderr
            for kind, samples in json.loads(r.stdout).items():
                got.setdefault(kind, []).extend(samples)
        if downloads:
            got["gateway_cpu"] = [(gateway_cpu(pool) - before) / downloads]
    return got


def gateway_cpu(pool: sk.SandboxPool) -> float:
    """Seconds of CPU the pool's gateway has used (cgroup v1 or v2, local engine)."""
    hub = pool.egress_hub
    assert hub is not None
    cid = next(iter(hub._gateways.values())).cid
    for path in (
        f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage",
        f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat",
    ):
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        if path.endswith("cpuacct.usage"):
            return int(text) / 1e9
        return int(text.split()[1]) / 1e6  # usage_usec
    return float("nan")


def on_host(gets: int, downloads: int, image: str | None = None) -> dict[str, list[float]]:
    """The same client in the host's namespace, straight to the web server's address:
    the host's Python, or (``image``) the sandbox image's Python in a container sharing
    the host's network with the sandbox's CPU quota (the same program, the same limit;
    only the path differs)."""
    args = [WEB, str(gets), str(downloads)]
    if image is None:
        command = [sys.executable, "-c", ON_HOST, *args]
    else:
        command = [
            "docker", "run", "--rm", "--network", "host", "--cpus", "1",
            "--entrypoint", "python3", image, "-c", ON_HOST, *args,
        ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def without_splice(program: str) -> str:
    """The gateway program copying through Python (large reads) instead of splice(2)."""
    patched = program.replace('hasattr(os, "splice")', "False")
    assert patched != program, "the gateway no longer says where it splices"
    return patched


def row(name: str, samples: list[float]) -> None:
    """p50, p90 and the least (on a busy machine, the closest to what the path costs)."""
    p50, p90, least = percentile(samples, 50), percentile(samples, 90), min(samples)
    print(f"  {name:<36} {ms(p50):>10} {ms(p90):>10} {ms(least):>10}")


async def transfers(
    opts: argparse.Namespace,
) -> tuple[dict[str, dict[str, list[float]]], list[str]]:
    """Every client, round after round (so each sees the same machine): the host's, the
    image's in the host's namespace, the sandbox's at 1 and 2 CPUs; then the sandbox's
    through a gateway that copies in Python instead of splicing."""
    found: dict[str, dict[str, list[float]]] = {}

    def keep(name: str, got: dict[str, list[float]]) -> None:
        for kind, samples in got.items():
            found.setdefault(name, {}).setdefault(kind, []).extend(samples)

    gets, downloads = max(1, opts.gets // opts.rounds), opts.downloads
    settings = {"egress_resolvers": RESOLVER, "egress_allow_private": RANGE}
    async with sk.SandboxPool(languages=["python"], size=1, **settings) as pool:
        image = await pool.image_for(get_language("python"))
        await through_gateway(pool, 1, 1, 1.0)  # the gateway started, everything warm
        for _ in range(opts.rounds):
            keep("host namespace, host's python", on_host(gets, downloads))
            keep("host namespace, image's python 1 CPU", on_host(gets, downloads, image))
            keep("sandbox via gateway, 1 CPU", await through_gateway(pool, gets, downloads, 1.0))
            keep("sandbox via gateway, 2 CPUs", await through_gateway(pool, gets, downloads, 2.0))
    program = hub._PROGRAM
    hub._PROGRAM = without_splice(program)
    try:
        async with sk.SandboxPool(languages=["python"], size=1, **settings) as pool:
            await through_gateway(pool, 1, 1, 1.0)
            for _ in range(opts.rounds):
                keep(
                    "sandbox via gateway, 1 CPU, no splice",
                    await through_gateway(pool, gets, downloads, 1.0),
                )
    finally:
        hub._PROGRAM = program
    return found, [image]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--gets", type=int, default=60, help="1 kB GETs per client")
    parser.add_argument("--downloads", type=int, default=3, help="10 MB GETs per round")
    parser.add_argument("--rounds", type=int, default=3)
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
        found, _ = await transfers(opts)
    print(f"\none-shot print(1), warm, {opts.runs} runs each (p50 / p90 / min)")
    row("no network", plain)
    row("Egress policy", egress)
    row("the pool own policy", pooled)
    print(
        f"  {'added, per-run (p50)':<36} {ms(percentile(egress, 50) - percentile(plain, 50)):>10}"
    )
    print(
        f"  {'added, pool own (p50)':<36} {ms(percentile(pooled, 50) - percentile(plain, 50)):>10}"
    )
    host = "host namespace, host's python"
    fair = "host namespace, image's python 1 CPU"
    inside = "sandbox via gateway, 1 CPU"
    for kind, title, target in [
        ("small", "HTTP GET of 1 kB, a new connection each", "target: <= 2 ms added"),
        ("big", "10 MB download (one connection each)", "target: <= 10 % added"),
        ("big_cpu", "10 MB download: the client's CPU time", "the sandbox's own cost"),
    ]:
        count = len(found[host][kind])
        print(f"\n{title}, {count} per client (p50 / p90 / min)")
        for name, got in found.items():
            row(name, got[kind])
        for base in (host, fair):
            added = percentile(found[inside][kind], 50) - percentile(found[base][kind], 50)
            share = 100 * added / percentile(found[base][kind], 50)
            print(f"  added to {base!r} (p50): {ms(added).strip()}, {share:.0f} %   ({target})")
            least = min(found[base][kind])
            low = min(found[inside][kind]) - least
            print(f"  added to {base!r} (min): {ms(low).strip()}, {100 * low / least:.0f} %")
    print("\n10 MB download: the gateway's CPU time per download (its cgroup)")
    for name, got in found.items():
        if "gateway_cpu" in got:
            row(name, got["gateway_cpu"])


if __name__ == "__main__":
    asyncio.run(main())
