"""Fleets on real engines: the local one and two hosts in network namespaces, each with
its own dockerd on TCP with mutual TLS from a CA made for this run (scripts/fleet.sh).

The hosts start empty and have no route out: images reach them from the local engine.
Checked here: images arrive, runs spread and are right, TLS is refused clearly (wrong
CA, no client certificate, plaintext), a dockerd killed with SIGKILL under load gives no
wrong result and is shown down, then re-admitted after a restart with nothing leaked,
sessions/start()/the judge run on the fleet, the CLI sees every engine, and nothing is
left anywhere at the end. Needs root (namespaces, dockerds), as CI runs it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import sandboxkit as sk
from sandboxkit._backends import Backend, connect
from sandboxkit._container import Resources, Shape, container_spec
from sandboxkit._fleet.labels import LABEL_MANAGED, LABEL_OWNER, LABEL_POOL
from sandboxkit._images.dockerfile import BASE_IMAGE
from sandboxkit._images.ensure import ensure_base, image_tag
from sandboxkit._languages import get_language

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "fleet.sh"
LOCAL = "unix:///var/run/docker.sock"
PY = get_language("python")


@pytest.fixture(autouse=True)
def _no_pulls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Images reach the hosts from the local engine only: never ask a registry."""
    monkeypatch.setenv("SANDBOXKIT_NO_PULL", "1")


# ---------------------------------------------------------------- the hosts
class Hosts:
    """The namespace hosts of this run, as scripts/fleet.sh describes them."""

    def __init__(self, folder: Path, info: dict[str, Any]) -> None:
        self.folder = folder
        self.info = info
        self.urls = [h["url"] for h in info["hosts"]]
        self.tls = {k: info[k] for k in ("ca_cert", "client_cert", "client_key")}
        self.wrong = dict(info["wrong_ca"])

    def config(self, i: int, **kw: Any) -> sk.EngineConfig:
        return sk.EngineConfig(self.urls[i], **{**self.tls, **kw})

    def backend(self, i: int) -> Backend:
        return connect(self.config(i))

    def script(self, *args: str) -> None:
        subprocess.run(
            ["bash", str(SCRIPT), *args, "--dir", str(self.folder)], check=True, timeout=120
        )

    def kill(self, i: int) -> None:
        """SIGKILL host i's dockerd, from here (no shell on the way: the kill is now)."""
        pid = int(Path(self.info["hosts"][i]["pid_file"]).read_text())
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    if os.geteuid() != 0:
        pytest.fail("fleet tests bring up dockerds in network namespaces: they need root")
    # on disk, not in a tmpfs: the hosts' data roots hold a copy of the images
    folder = Path(tempfile.mkdtemp(prefix="sandboxkit-fleet-", dir="/var/tmp"))
    out = subprocess.run(
        ["bash", str(SCRIPT), "up", "--hosts", "2", "--dir", str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if out.returncode != 0:
        pytest.fail(f"scripts/fleet.sh up failed:\n{out.stderr[-3000:]}")
    info = json.loads((folder / "fleet.json").read_text())
    try:
        yield Hosts(folder, info)
    finally:
        subprocess.run(
            ["bash", str(SCRIPT), "down", "--dir", str(folder)], timeout=180, check=False
        )


async def images_on(backend: Backend) -> list[str]:
    return sorted(i.tag for i in await backend.list_images("sandboxkit/*"))


@pytest.fixture(scope="module")
async def fleet(hosts: Hosts) -> AsyncIterator[sk.SandboxPool]:
    """One pool over the local engine and both hosts, opened while the hosts are empty."""
    empty = [hosts.backend(0), hosts.backend(1)]
    try:
        hosts.empty_before = [await images_on(b) for b in empty]  # type: ignore[attr-defined]
    finally:
        for b in empty:
            await b.close()
    lines: list[str] = []
    pool = sk.SandboxPool(
        languages=["python"],
        size=6,
        engines=[LOCAL, hosts.config(0), hosts.config(1)],
        on_build_line=lines.append,
    )
    async with pool:
        pool.progress = lines  # type: ignore[attr-defined]
        yield pool


async def nothing_untracked(pool: sk.SandboxPool, backend: Backend, timeout: float = 30) -> None:
    """Every container of ``pool`` on ``backend`` is one the pool holds (idle or leased);
    used ones still being removed get ``timeout`` seconds to go."""
    try:
        deadline = time.monotonic() + timeout
        while True:
            there = {c.id for c in await backend.list_containers({LABEL_POOL: pool.pool_id})}
            tracked = {
                b.cid
                for wp in pool._pools.values()
                for b in [*wp._idle, *wp._leased]
                if b.engine.url == backend.url
            }
            if there <= tracked:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"left on {backend.url}: {there - tracked}")
            await asyncio.sleep(0.2)
    finally:
        await backend.close()


async def settle(pool: sk.SandboxPool, timeout: float = 120) -> None:
    """Until no sandbox is starting and every warm pool holds its size."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(
            wp.state.starting == 0 and wp.state.idle >= wp.state.size for wp in pool._pools.values()
        ):
            return
        await asyncio.sleep(0.05)
    per_engine = [wp.per_engine() for wp in pool._pools.values()]
    raise AssertionError(f"the pool did not settle: {pool.health()} {per_engine}")


async def states(pool: sk.SandboxPool) -> dict[str, str]:
    return {s.url: s.state for s in await pool.engine_status()}


async def until_state(pool: sk.SandboxPool, url: str, state: str, timeout: float = 60) -> float:
    """Seconds until ``url`` shows ``state`` (bounded: fails after ``timeout``)."""
    t0 = time.monotonic()
    while (await states(pool))[url] != state:
        if time.monotonic() - t0 > timeout:
            raise AssertionError(
                f"{url} not {state} after {timeout}s: {await pool.engine_status()}"
            )
        await asyncio.sleep(0.01)
    return time.monotonic() - t0


# ---------------------------------------------------------------- warm-up and spreading
async def test_warm_up_brings_the_images_to_the_empty_engines(
    hosts: Hosts, fleet: sk.SandboxPool
) -> None:
    assert hosts.empty_before == [[], []]  # type: ignore[attr-defined]
    tag = await image_tag(PY)
    for i in range(2):
        backend = hosts.backend(i)
        try:
            assert tag in await images_on(backend)
        finally:
            await backend.close()
    progress = "\n".join(fleet.progress)  # type: ignore[attr-defined]
    for url in hosts.urls:  # reported, engine by engine
        assert f"{url}: copying {tag} from {LOCAL}" in progress
        assert f"{url}: {tag} arrived" in progress
    await settle(fleet)
    status = await fleet.engine_status()
    assert [(s.url, s.state) for s in status] == [
        (LOCAL, "up"),
        (hosts.urls[0], "up"),
        (hosts.urls[1], "up"),
    ]
    assert [s.idle for s in status] == [2, 2, 2]  # equal engines, equal shares of size=6


async def test_runs_are_spread_over_the_engines_and_right(
    hosts: Hosts, fleet: sk.SandboxPool
) -> None:
    results = await asyncio.gather(*(fleet.run(f"print({i} * 3)") for i in range(36)))
    for i, r in enumerate(results):
        assert (r.status, r.stdout) == ("ok", f"{i * 3}\n"), r
    ran = Counter(r.engine for r in results)
    assert set(ran) == {LOCAL, *hosts.urls}, ran
    assert min(ran.values()) >= 4, ran  # no engine idles while the others work


async def test_sessions_start_and_the_judge_run_on_the_fleet(fleet: sk.SandboxPool) -> None:
    async with sk.Sandbox(pool=fleet) as sb:
        await sb.write_file("n.txt", "41")
        r = await sb.run("print(int(open('n.txt').read()) + 1)")
        assert (r.status, r.stdout) == ("ok", "42\n")
    async with await fleet.start("print(input()[::-1])") as proc:
        await proc.write("fleet\n")
        done = await proc.wait()
        assert (done.status, done.stdout) == ("ok", "teelf\n")
    report = await sk.judge(
        "a, b = map(int, input().split())\nprint(a + b)\n",
        tests=[sk.TestCase(input=f"{i} {i}\n", expected=f"{2 * i}\n") for i in range(4)],
        pool=fleet,
    )
    assert report.verdict == "AC"


# ---------------------------------------------------------------- TLS
async def open_error(*engines: Any) -> sk.SandboxkitError:
    pool = sk.SandboxPool(size=1, engines=list(engines))
    with pytest.raises(sk.SandboxkitError) as info:
        await asyncio.wait_for(pool.open(), 60)  # a refusal, never a hang
    assert pool.closed
    return info.value


async def test_a_wrong_ca_is_refused_with_what_to_fix(hosts: Hosts) -> None:
    err = await open_error(hosts.config(0, ca_cert=hosts.wrong["ca_cert"]))
    assert type(err) is sk.EngineError
    assert hosts.urls[0] in str(err) and "does not trust" in str(err) and "ca_cert" in str(err)
    assert "engine-up" not in str(err) and "Start one" not in str(err)
    # in a fleet too: the engine with the bad setting fails the open, named
    err = await open_error(LOCAL, hosts.config(0, ca_cert=hosts.wrong["ca_cert"]))
    assert hosts.urls[0] in str(err) and "does not trust" in str(err)


async def test_without_a_client_certificate_or_with_a_stranger_the_engine_refuses(
    hosts: Hosts,
) -> None:
    missing = await open_error(sk.EngineConfig(hosts.urls[0], ca_cert=hosts.tls["ca_cert"]))
    assert type(missing) is sk.EngineError
    assert "refused this client's certificate" in str(missing) and hosts.urls[0] in str(missing)
    stranger = await open_error(
        hosts.config(
            0, client_cert=hosts.wrong["client_cert"], client_key=hosts.wrong["client_key"]
        )
    )
    assert "refused this client's certificate" in str(stranger)


async def test_plaintext_is_refused_up_front_or_told_to_speak_tls(hosts: Hosts) -> None:
    with pytest.raises(sk.InvalidInput, match="plaintext"):
        sk.SandboxPool(engines=[hosts.urls[0]])
    err = await open_error(sk.EngineConfig(hosts.urls[0], insecure=True))
    assert "speaks TLS" in str(err) and hosts.urls[0] in str(err)


async def test_docker_tls_environment_reaches_one_engine(
    hosts: Hosts, fleet: sk.SandboxPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", hosts.urls[0])
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", hosts.info["cert_path"])
    async with sk.SandboxPool(size=1) as pool:
        r = await pool.run("print('over tls')")
        assert (r.status, r.stdout, r.engine) == ("ok", "over tls\n", hosts.urls[0])
        (status,) = await pool.engine_status()
        assert (status.url, status.state) == (hosts.urls[0], "up")


# ---------------------------------------------------------------- failover
async def test_sigkill_of_an_engine_under_load_gives_no_wrong_result(
    hosts: Hosts, fleet: sk.SandboxPool
) -> None:
    victim = hosts.urls[1]
    await settle(fleet)
    # a session that lives on the victim: it must fail loudly afterwards, not silently
    sessions = []
    for _ in range(12):
        sb = sk.Sandbox(pool=fleet)
        await sb.__aenter__()
        sessions.append(sb)
        if sb._box is not None and sb._box.engine.url == victim:
            break
    on_victim = sessions[-1]
    assert on_victim._box is not None and on_victim._box.engine.url == victim
    for sb in sessions[:-1]:
        await sb.aclose()

    outcomes: list[tuple[float, float, str, Any]] = []  # (start, end, kind, detail)
    marks: dict[str, float] = {}
    done_after_detection = asyncio.Event()

    async def worker(w: int) -> None:
        i = 0
        while not done_after_detection.is_set():
            i += 1
            want = f"{w}-{i}"
            start = time.monotonic()
            try:
                r = await fleet.run(f"import time; time.sleep(0.3); print('{want}')")
            except sk.SandboxkitError as exc:
                outcomes.append((start, time.monotonic(), "error", exc))
                continue
            ok = r.status == "ok" and r.stdout == f"{want}\n"
            outcomes.append((start, time.monotonic(), "ok" if ok else "WRONG", r))

    def busy_there() -> int:  # the session's box, and one-shot runs under way there
        return sum(wp.placement.spots[victim].busy for wp in fleet._pools.values())

    async def conductor() -> None:
        # kill while runs are under way there (their jobs delivered, output pending)
        while (
            sum(1 for o in outcomes if o[2] == "ok" and o[3].engine == victim) < 3
            or busy_there() < 3
        ):
            await asyncio.sleep(0.01)
        marks["in_flight"] = busy_there() - 1
        marks["kill"] = time.monotonic()
        hosts.kill(1)
        marks["detected"] = marks["kill"] + await until_state(fleet, victim, "down", 30)
        while sum(1 for o in outcomes if o[0] > marks["detected"]) < 20:
            await asyncio.sleep(0.01)
        done_after_detection.set()

    await asyncio.wait_for(asyncio.gather(conductor(), *(worker(w) for w in range(6))), 240)
    try:
        errors = _check_failover(outcomes, marks, victim)
        status = {s.url: s for s in await fleet.engine_status()}
        assert status[victim].state == "down" and status[victim].downs == 1
        assert (status[victim].idle, status[victim].busy) == (0, 1)  # only the session's box
        with pytest.raises(sk.SandboxError):
            await on_victim.run("print('still there?')")
        await on_victim.aclose()
        assert {s.url: s.busy for s in await fleet.engine_status()}[victim] == 0
    finally:  # the engine back for the module's next tests, whatever was seen here
        hosts.script("start", "h2")
    print(
        f"\nkilled dockerd seen down after {marks['detected'] - marks['kill']:.3f} s; "
        f"{errors} run(s) in flight there ended with EngineError"
    )

    # restarted (above): it is re-admitted, serves again, and holds nothing of before
    readmit = await until_state(fleet, victim, "up", 60)
    print(f"re-admitted {readmit:.3f} s after its dockerd answered again")
    for _ in range(40):
        results = await asyncio.gather(*(fleet.run("print('back')") for _ in range(6)))
        assert all((r.status, r.stdout) == ("ok", "back\n") for r in results)
        if any(r.engine == victim for r in results):
            break
    else:
        pytest.fail("the re-admitted engine never served a run")
    await settle(fleet)
    await nothing_untracked(fleet, hosts.backend(1))  # nothing from before the kill survived


def _check_failover(
    outcomes: list[tuple[float, float, str, Any]], marks: dict[str, float], victim: str
) -> int:
    """No wrong result; errors only for runs on the killed engine that began before it
    was seen down: those under way at the kill, and those that took one of its idle
    sandboxes between the kill and its detection (and one being placed)."""
    wrong = [o for o in outcomes if o[2] == "WRONG"]
    assert wrong == []
    errors = [o for o in outcomes if o[2] == "error"]
    window = sum(1 for o in errors if marks["kill"] <= o[0] < marks["detected"])
    assert 1 <= len(errors) <= marks["in_flight"] + window + 1, (errors, marks)
    for start, _end, _kind, exc in errors:
        # only runs that were already under way when the engine was seen dead, and
        # only an engine error naming the dead engine
        assert isinstance(exc, sk.EngineError) and victim in str(exc), exc
        assert start < marks["detected"], (start, marks)
    after = [o for o in outcomes if o[0] > marks["detected"]]
    assert all(o[2] == "ok" and o[3].engine != victim for o in after), after
    return len(errors)


async def test_a_silent_engine_is_shown_down_and_its_runs_end_with_an_engine_error(
    hosts: Hosts, fleet: sk.SandboxPool
) -> None:
    """A dockerd that stops answering but keeps its sockets open (SIGSTOP: a host
    partitioned away) is found by the bounded probe; runs there end then, not when
    their own limit ends them, and never with a result."""
    silent = hosts.urls[0]
    lim = sk.Limits(time=120)
    async with sk.SandboxPool(size=4, engines=[LOCAL, hosts.config(0)]) as pool:
        await settle(pool)
        runs = [
            asyncio.create_task(pool.run("import time; time.sleep(100)", limits=lim))
            for _ in range(4)
        ]
        while sum(wp.state.busy for wp in pool._pools.values()) < 4:
            await asyncio.sleep(0.01)
        on_silent = sum(wp.placement.spots[silent].busy for wp in pool._pools.values())
        assert on_silent >= 1, pool.health()  # two of four warm sandboxes are there
        hosts.script("freeze", "h1")
        try:
            await until_state(pool, silent, "down", 60)
            finished = [t for t in runs if t.done()]
            while len(finished) < on_silent:
                await asyncio.wait(runs, return_when=asyncio.FIRST_COMPLETED, timeout=30)
                finished = [t for t in runs if t.done()]
            for t in finished:
                exc = t.exception()
                assert isinstance(exc, sk.EngineError) and silent in str(exc), t
            assert len(finished) == on_silent  # the runs elsewhere go on
        finally:
            hosts.script("thaw", "h1")
            for t in runs:
                t.cancel()
            await asyncio.gather(*runs, return_exceptions=True)
        await until_state(pool, silent, "up", 60)
        await settle(pool)
        await nothing_untracked(pool, hosts.backend(0))


# ---------------------------------------------------------------- images, reaping, CLI
async def test_the_base_image_is_copied_to_an_engine_that_lacks_it(hosts: Hosts) -> None:
    local, remote = connect(LOCAL), hosts.backend(0)
    try:
        assert not await remote.image_exists(BASE_IMAGE)
        await ensure_base(remote, sources=[local], allow_pull=False)
        assert await remote.image_exists(BASE_IMAGE)
        mine = await local.inspect_image(BASE_IMAGE)
        theirs = await remote.inspect_image(BASE_IMAGE)
        assert mine is not None and theirs is not None and mine.id == theirs.id
    finally:
        await local.close()
        await remote.close()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandboxkit", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "250"},
    )


async def test_reap_works_on_every_engine_of_a_fleet(hosts: Hosts) -> None:
    remote = hosts.backend(0)
    try:
        tag = await image_tag(PY)
        dead_owner = f"{os.uname().nodename}:{os.getpid()}:1"  # this pid, another start: gone
        spec = container_spec(
            Shape(image=tag),
            Resources(),
            {LABEL_MANAGED: "1", LABEL_OWNER: dead_owner, LABEL_POOL: "reaptest"},
            {},
            f"sandboxkit-reaptest-{os.getpid()}",
        )
        # kept running by its open stream, as a dead owner's sandbox a busy engine kept
        launched = await remote.launch(spec)
        try:
            cid = launched.id
            out = cli("reap", "--fleet", str(hosts.folder / "engines.json"), "-e", LOCAL)
            assert out.returncode == 0, out.stderr
            assert f"{hosts.urls[0]}: removed {cid[:12]}" in out.stderr
            assert f"{hosts.urls[1]}: removed 0" in out.stderr
            assert await remote.inspect(cid) is None
        finally:
            await launched.stream.close()
    finally:
        await remote.close()


async def test_doctor_and_fleet_status_check_every_engine(hosts: Hosts, tmp_path: Path) -> None:
    fleet_file = str(hosts.folder / "engines.json")
    status = cli("fleet", "status", "--json", "--fleet", fleet_file, "-e", LOCAL)
    assert status.returncode == 0, status.stderr
    rows = [json.loads(line) for line in status.stdout.splitlines()]
    assert {r["url"] for r in rows} == {LOCAL, *hosts.urls}
    assert all(r["state"] == "up" and r["api"] for r in rows)
    assert [r["tls"] for r in rows if r["url"] in hosts.urls] == [True, True]
    doctor = cli("doctor", "--fleet", fleet_file)
    assert doctor.returncode == 0, doctor.stderr
    for url in hosts.urls:
        assert url in doctor.stderr
    assert doctor.stderr.count("over mutual TLS") == 2
    # a fleet file with a wrong CA: doctor says which engine and what to fix
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {"engines": [{"url": hosts.urls[0], **hosts.tls, "ca_cert": hosts.wrong["ca_cert"]}]}
        )
    )
    refused = cli("doctor", "--fleet", str(bad))
    assert refused.returncode == 1
    assert "does not trust" in refused.stderr and "engine-up" not in refused.stderr


# ---------------------------------------------------------------- nothing left
async def test_closing_a_fleet_pool_leaves_nothing_on_any_engine(
    hosts: Hosts, fleet: sk.SandboxPool
) -> None:
    backends = [connect(LOCAL), hosts.backend(0), hosts.backend(1)]
    try:
        own = sk.SandboxPool(size=3, engines=[LOCAL, hosts.config(0), hosts.config(1)])
        async with own:
            await asyncio.gather(*(own.run("print(1)") for _ in range(6)))
            held = [len(await b.list_containers({LABEL_POOL: own.pool_id})) for b in backends]
            assert sum(held) >= 3
        for b in backends:
            assert await b.list_containers({LABEL_POOL: own.pool_id}) == []
        await fleet.aclose()  # the module's pool too
        for b in backends:
            assert await b.list_containers({LABEL_POOL: fleet.pool_id}) == []
    finally:
        for b in backends:
            await b.close()


def test_the_hosts_come_down_leaving_nothing(hosts: Hosts) -> None:
    netns = [h["netns"] for h in hosts.info["hosts"]]
    hosts.script("down")
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert not any(n in listed.stdout for n in netns)
    procs = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert str(hosts.folder) not in procs.stdout
    assert str(hosts.folder) not in Path("/proc/self/mounts").read_text()
    assert not hosts.folder.exists()  # its folder too
