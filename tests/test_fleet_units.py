"""Fleets without an engine: engine configs and TLS rules, placement, the build-or-copy
choice, TLS error messages, and the health watch driven by fake engines."""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import statistics
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiodocker
import pytest

import sandboxkit as sk
from sandboxkit._backends import (
    ContainerRecord,
    EngineConfig,
    EngineInfo,
    engine_configs,
    load_fleet_file,
    tls_problem,
)
from sandboxkit._backends import docker as dk
from sandboxkit._fleet import engines as _fleet
from sandboxkit._fleet.engines import Fleet, WatchedBackend, derived_weight, is_config_error
from sandboxkit._fleet.labels import LABEL_POOL
from sandboxkit._fleet.placement import (
    FAILURES_TO_PAUSE,
    RETRY_AFTER,
    Host,
    IndexedSet,
    Placement,
    shares,
)
from sandboxkit._images.ensure import Costs, choose_method


@pytest.fixture
def pems(tmp_path: Path) -> dict[str, str]:
    """Three files that exist (their content matters only to ssl, tested elsewhere)."""
    out = {}
    for name in ("ca_cert", "client_cert", "client_key"):
        path = tmp_path / f"{name}.pem"
        path.write_text("-----BEGIN CERTIFICATE-----\n")
        out[name] = str(path)
    return out


# ---------------------------------------------------------------- EngineConfig
def test_tcp_without_tls_is_refused_unless_insecure(pems: dict[str, str]) -> None:
    with pytest.raises(sk.InvalidInput, match=r"plaintext.*insecure=True"):
        EngineConfig("tcp://10.1.2.3:2375")
    assert EngineConfig("tcp://10.1.2.3:2375", insecure=True).tls is False
    tls = EngineConfig("tcp://10.1.2.3:2376", **pems)
    assert tls.tls and tls.url == "tcp://10.1.2.3:2376"
    assert EngineConfig("unix:///var/run/docker.sock").tls is False
    with pytest.raises(sk.InvalidInput, match="contradicts"):
        EngineConfig("tcp://10.1.2.3:2376", insecure=True, **pems)


def test_engine_config_refuses_nonsense_with_one_clear_sentence(
    pems: dict[str, str], tmp_path: Path
) -> None:
    for bad, match in [
        ("10.1.2.3:2376", "not an engine address"),
        ("ftp://h", "not an engine address"),
        ("tcp://", "names no host"),
    ]:
        with pytest.raises(sk.InvalidInput, match=match) as info:
            EngineConfig(bad, insecure=True)
        assert "pydantic" not in str(info.value) and "input_value" not in str(info.value)
    with pytest.raises(sk.InvalidInput, match="go together"):
        EngineConfig("tcp://h:2376", ca_cert=pems["ca_cert"], client_cert=pems["client_cert"])
    with pytest.raises(sk.InvalidInput, match=r"client_key .*missing\.pem.* not a readable file"):
        EngineConfig(
            "tcp://h:2376",
            ca_cert=pems["ca_cert"],
            client_cert=pems["client_cert"],
            client_key=str(tmp_path / "missing.pem"),
        )
    with pytest.raises(sk.InvalidInput, match="apply to tcp://"):
        EngineConfig("unix:///x.sock", ca_cert=pems["ca_cert"])
    with pytest.raises(sk.InvalidInput, match="capacity"):
        EngineConfig("unix:///x.sock", capacity=0)


def test_engine_config_is_frozen_and_hashable(pems: dict[str, str]) -> None:
    a = EngineConfig("tcp://h:2376", capacity=3, **pems)
    assert a == EngineConfig("tcp://h:2376", capacity=3, **pems)
    assert len({a, EngineConfig("tcp://h:2376", capacity=3, **pems)}) == 1
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error
        a.capacity = 4  # type: ignore[misc]


def test_bad_pem_files_fail_when_the_context_is_made(pems: dict[str, str]) -> None:
    config = EngineConfig("tcp://h:2376", **pems)
    with pytest.raises(sk.InvalidInput, match=r"TLS files of tcp://h:2376 cannot be used"):
        config.ssl_context()
    with pytest.raises(sk.InvalidInput):
        sk.SandboxPool(engines=[config])  # before any engine is touched


def test_docker_env_variables_describe_one_engine(pems: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "certs"
    folder.mkdir()
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (folder / name).write_text("x")
    env = {
        "DOCKER_HOST": "tcp://10.9.9.9:2376",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(folder),
    }
    config = EngineConfig.from_env(env)
    assert (config.url, config.ca_cert, config.client_cert, config.client_key) == (
        "tcp://10.9.9.9:2376",
        str(folder / "ca.pem"),
        str(folder / "cert.pem"),
        str(folder / "key.pem"),
    )
    with pytest.raises(sk.InvalidInput, match="DOCKER_TLS_VERIFY"):
        EngineConfig.from_env({"DOCKER_HOST": "tcp://10.9.9.9:2375"})
    unix = EngineConfig.from_env({"DOCKER_HOST": "unix:///x.sock", "DOCKER_TLS_VERIFY": "1"})
    assert not unix.tls  # TLS is for TCP engines, as with the docker CLI


def test_a_pool_with_a_plaintext_tcp_engine_is_refused_before_any_engine_is_touched() -> None:
    with pytest.raises(sk.InvalidInput, match="plaintext"):
        sk.SandboxPool(engines=["unix:///var/run/docker.sock", "tcp://10.1.2.3:2375"])
    with pytest.raises(sk.InvalidInput, match="plaintext"):
        sk.SandboxPool(docker_url="tcp://10.1.2.3:2375")


def test_engine_lists_are_checked() -> None:
    with pytest.raises(sk.InvalidInput, match="at least one"):
        engine_configs([], None)
    with pytest.raises(sk.InvalidInput, match="twice"):
        engine_configs(["unix:///a.sock", "unix:///a.sock"], None)
    with pytest.raises(sk.InvalidInput, match="not both"):
        engine_configs(["unix:///a.sock"], "unix:///b.sock")
    with pytest.raises(sk.InvalidInput, match="list"):
        engine_configs("unix:///a.sock", None)  # type: ignore[arg-type]
    assert [c.url for c in engine_configs(["unix:///a.sock", "unix:///b.sock"], None)] == [
        "unix:///a.sock",
        "unix:///b.sock",
    ]


def test_fleet_files_name_engines_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    for name in ("ca.pem", "c.pem", "k.pem"):
        (tmp_path / name).write_text("x")
    path = tmp_path / "fleet.json"
    path.write_text(
        json.dumps(
            {
                "engines": [
                    "unix:///var/run/docker.sock",
                    {
                        "url": "tcp://10.0.0.7:2376",
                        "ca_cert": "ca.pem",
                        "client_cert": "c.pem",
                        "client_key": "k.pem",
                        "capacity": 12,
                    },
                ]
            }
        )
    )
    local, remote = load_fleet_file(path)
    assert local.url == "unix:///var/run/docker.sock"
    assert remote.ca_cert == str(tmp_path / "ca.pem") and remote.capacity == 12
    path.write_text(json.dumps({"engines": [{"url": "tcp://h:1", "insecure": True, "x": 1}]}))
    with pytest.raises(sk.InvalidInput, match="unknown engine field"):
        load_fleet_file(path)
    with pytest.raises(sk.InvalidInput, match="cannot read the fleet file"):
        load_fleet_file(tmp_path / "absent.json")


# ---------------------------------------------------------------- TLS errors
def docker_error_from(exc: BaseException) -> aiodocker.DockerError:
    """How aiodocker reports a connection failure: status 900, the cause as context."""
    try:
        try:
            raise exc
        except BaseException:
            raise aiodocker.DockerError(900, f"Cannot connect to Docker Engine [{exc}]") from None
    except aiodocker.DockerError as err:
        err.__context__ = exc
        return err


def mapped(exc: Exception, engine: str = "tcp://h:2376") -> BaseException:
    with pytest.raises(sk.SandboxkitError) as info, dk.map_errors("report its info", engine=engine):
        raise exc
    return info.value


def test_an_untrusted_engine_certificate_says_which_ca_to_give_not_to_start_an_engine() -> None:
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    verify.verify_message = "unable to get local issuer certificate"
    err = mapped(docker_error_from(verify))
    assert type(err) is sk.EngineError  # not EngineUnavailable: a setting to fix
    text = str(err)
    assert "tcp://h:2376" in text and "unable to get local issuer certificate" in text
    assert "ca_cert" in text and "engine-up" not in text and "Start one" not in text


@pytest.mark.parametrize(
    ("message", "needle"),
    [
        ("[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate (_ssl.c:2580)", "client"),
        ("[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] alert (_ssl.c:2580)", "client_cert"),
        ("[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)", "does not speak TLS"),
    ],
)
def test_tls_refusals_say_what_to_fix(message: str, needle: str) -> None:
    err = mapped(docker_error_from(ssl.SSLError(1, message)))
    assert type(err) is sk.EngineError
    assert needle in str(err) and "tcp://h:2376" in str(err) and "engine-up" not in str(err)


def test_plaintext_to_a_tls_engine_says_it_speaks_tls() -> None:
    err = mapped(aiodocker.DockerError(400, "Client sent an HTTP request to an HTTPS server."))
    assert "speaks TLS" in str(err) and "ca_cert" in str(err)


def test_an_unreachable_remote_engine_names_it_and_says_how_to_reach_it() -> None:
    err = mapped(aiodocker.DockerError(900, "Cannot connect to Docker Engine via https://h:2376"))
    assert type(err) is sk.EngineUnavailable
    assert "at tcp://h:2376" in str(err) and "engine-up.sh" not in str(err)
    assert "listens" in str(err)
    assert tls_problem(ConnectionRefusedError(111, "refused")) is None
    assert is_config_error(sk.EngineError("x")) and not is_config_error(sk.EngineUnavailable("x"))


# ---------------------------------------------------------------- placement
def test_shares_split_by_weight_with_largest_remainder() -> None:
    assert shares(4, {"a": 1.0, "b": 1.0, "c": 1.0}) == {"a": 2, "b": 1, "c": 1}
    assert shares(6, {"a": 1.0, "b": 2.0, "c": 3.0}) == {"a": 1, "b": 2, "c": 3}
    assert shares(5, {"a": 1.0, "b": 0.0}) == {"a": 5, "b": 0}
    assert shares(0, {"a": 1.0}) == {"a": 0}
    assert shares(3, {}) == {}
    for total in range(20):
        got = shares(total, {"a": 0.3, "b": 1.7, "c": 5.0})
        assert sum(got.values()) == total


def test_indexed_set_adds_discards_and_samples() -> None:
    s: IndexedSet[str] = IndexedSet("abc")
    s.discard("a")
    s.discard("zz")
    s.add("b")
    assert sorted(s) == ["b", "c"] and len(s) == 2 and "a" not in s
    rng = random.Random(1)
    seen = Counter(tuple(sorted(IndexedSet(range(5)).pick(rng, 2))) for _ in range(2000))
    assert len(seen) == 10  # every pair drawn
    assert all(len(set(p)) == 2 for p in seen)


def fleet_placement(weights: list[float], size: int, seed: int = 7) -> tuple[Placement, list[Host]]:
    hosts = [Host(f"e{i}", weight=w) for i, w in enumerate(weights)]
    placement = Placement(random.Random(seed))
    for h in hosts:
        placement.add(h, ready=True)
    placement.retarget(size)
    return placement, hosts


def fill(placement: Placement) -> None:
    """Start until every target is met (each start succeeds at once)."""
    while (key := placement.choose_start()) is not None and placement.spots[key].short > 0:
        placement.begin_start(key)
        placement.end_start(key, ok=True)


def test_refills_meet_every_engines_target() -> None:
    placement, _ = fleet_placement([1.0, 2.0, 3.0], 12)
    fill(placement)
    assert {k: s.idle for k, s in placement.spots.items()} == {"e0": 2, "e1": 4, "e2": 6}


def test_a_down_engines_share_moves_to_the_others_and_back() -> None:
    placement, hosts = fleet_placement([1.0, 1.0, 1.0], 6)
    fill(placement)
    hosts[2].up = False
    placement.host_changed()
    assert [s.target for s in placement.spots.values()] == [3, 3, 0]
    assert placement.choose_start() in ("e0", "e1")
    fill(placement)
    assert placement.spots["e0"].idle == placement.spots["e1"].idle == 3
    assert placement.choose_idle() in ("e0", "e1")  # never the down one
    hosts[2].up = True
    placement.host_changed()
    assert [s.target for s in placement.spots.values()] == [2, 2, 2]
    assert placement.choose_start() == "e2"  # the only one short of its target


def test_no_engine_becomes_a_hot_spot_under_load() -> None:
    """Runs arrive and finish at random; busy sandboxes stay spread by weight."""
    for weights in ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0], [1.0] * 8):
        placement, hosts = fleet_placement(weights, size=2 * len(weights), seed=3)
        rng = random.Random(5)
        running: list[str] = []
        samples: list[list[float]] = []
        for _step in range(4000):
            fill(placement)
            if running and (rng.random() < 0.5 or len(running) > 3 * len(weights)):
                key = running.pop(rng.randrange(len(running)))
                placement.busy_done(key)
                placement.freed(key)
            else:
                key = placement.choose_idle()
                assert key is not None
                placement.idle_to_busy(key)
                running.append(key)
            samples.append([h.busy / h.weight for h in hosts])
        # averaged over time, each engine's busy-per-weight is within 25% of the mean
        means = [statistics.fmean(col) for col in zip(*samples, strict=True)]
        overall = statistics.fmean(means)
        assert max(means) <= 1.25 * overall and min(means) >= 0.75 * overall, (weights, means)


def test_choosing_looks_at_two_engines_whatever_their_number() -> None:
    for n in (3, 30, 300):
        placement, _ = fleet_placement([1.0] * n, size=n)
        fill(placement)
        placement.examined = 0
        for _ in range(100):
            key = placement.choose_idle()
            assert key is not None
            placement.idle_to_busy(key)
            placement.busy_done(key)
            placement.freed(key)
            start = placement.choose_start()
            assert start is not None
            placement.begin_start(start)
            placement.end_start(start, ok=True)
        assert placement.examined <= 4 * 100, (n, placement.examined)


def test_capacity_is_a_hard_cap_and_failing_engines_are_left_alone() -> None:
    capped = Host("small", weight=1.0, capacity=2)
    big = Host("big", weight=1.0)
    placement = Placement(random.Random(0))
    placement.add(capped, ready=True)
    placement.add(big, ready=True)
    placement.retarget(8)
    fill(placement)
    assert (placement.spots["small"].idle, placement.spots["big"].idle) == (2, 4)
    assert capped.live == 2
    for _ in range(FAILURES_TO_PAUSE):
        placement.begin_start("big")
        placement.end_start("big", ok=False, now=100.0)
    assert placement.choose_start(now=100.0) is None  # small is full, big paused
    assert placement.all_paused(now=100.0) is False  # small still serves what it has
    assert placement.choose_start(now=100.0 + RETRY_AFTER + 1) == "big"


def test_runs_avoid_an_engine_when_another_has_a_sandbox() -> None:
    placement, _ = fleet_placement([1.0, 1.0], 4)
    fill(placement)
    for _ in range(20):
        assert placement.choose_idle(frozenset({"e0"})) == "e1"
    while placement.spots["e1"].idle:  # every sandbox of e1 taken
        placement.idle_to_busy("e1")
    assert placement.choose_idle(frozenset({"e0"})) == "e0"  # better than nothing


def test_engines_without_the_image_get_no_share() -> None:
    placement, _ = fleet_placement([1.0, 1.0], 4)
    placement.set_ready("e1", False)
    assert [s.target for s in placement.spots.values()] == [4, 0]
    placement.set_ready("e1")
    assert [s.target for s in placement.spots.values()] == [2, 2]


def test_weights_come_from_cpus_and_memory() -> None:
    gib = 1024**3
    assert derived_weight(EngineInfo("Docker", cpus=2, memory_bytes=24 * gib)) == 8.0
    assert derived_weight(EngineInfo("Docker", cpus=64, memory_bytes=8 * gib)) == 16.0
    assert derived_weight(EngineInfo("Docker")) == 4.0


# ---------------------------------------------------------------- build or copy
def test_copy_unless_a_build_here_was_measured_faster() -> None:
    costs = Costs()
    assert choose_method("t:1", 300_000_000, have_source=False, costs=costs) == "build"
    assert choose_method("t:1", 300_000_000, have_source=True, costs=costs) == "copy"
    costs.record_copy(300_000_000, 5.0)  # 60 MB/s
    costs.record_build("t:1", 2.0)
    assert choose_method("t:1", 300_000_000, have_source=True, costs=costs) == "build"
    costs.record_build("t:1", 40.0)
    assert choose_method("t:1", 300_000_000, have_source=True, costs=costs) == "copy"


# ---------------------------------------------------------------- the health watch
class FakeEngine:
    """Just enough of a Backend for the fleet's watch: info, ping, list, remove."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.mode = "up"  # "up" | "refuse" | "hang"
        self.containers: list[ContainerRecord] = []
        self.removed: list[str] = []

    def _check(self) -> None:
        if self.mode == "refuse":
            raise sk.EngineUnavailable(f"no Docker engine answers at {self.url}")

    async def info(self) -> EngineInfo:
        self._check()
        return EngineInfo("Docker", version="test", cpus=2, memory_bytes=4 * 1024**3)

    async def ping(self, timeout: float) -> None:
        if self.mode == "hang":
            await asyncio.sleep(3600)
        self._check()

    def limits_fixed(self, runtime: str) -> bool:
        return runtime == "runsc"

    @property
    def images(self) -> FakeEngine:
        return self

    async def list_containers(self, labels: dict[str, str | None]) -> list[ContainerRecord]:
        self._check()
        return [
            c for c in self.containers if all(c.labels.get(k) == v for k, v in labels.items() if v)
        ]

    async def remove(self, cid: str) -> None:
        self._check()
        self.removed.append(cid)
        self.containers = [c for c in self.containers if c.id != cid]

    async def save_image(self, tag: str) -> AsyncIterator[bytes]:
        self._check()
        yield b"layer"

    async def close(self) -> None:
        pass


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def engine_down(self, url: str) -> None:
        self.events.append(("down", url))

    def engine_up(self, url: str) -> None:
        self.events.append(("up", url))


async def watched_fleet(
    monkeypatch: pytest.MonkeyPatch, n: int = 2
) -> tuple[Fleet, list[FakeEngine], Recorder]:
    monkeypatch.setattr(_fleet, "PROBE_INTERVAL", 0.05)
    monkeypatch.setattr(_fleet, "PROBE_TIMEOUT", 0.1)
    monkeypatch.setattr(_fleet, "BACKOFF_FIRST", 0.02)
    monkeypatch.setattr(_fleet, "BACKOFF_MAX", 0.05)
    fleet = Fleet([EngineConfig(f"unix:///fake{i}.sock") for i in range(n)], "pool1")
    fakes = [FakeEngine(m.url) for m in fleet.members]
    for member, fake in zip(fleet.members, fakes, strict=True):
        member.unwatched = fake  # type: ignore[assignment]
    recorder = Recorder()
    fleet.listeners.append(recorder)
    await fleet.connect()
    return fleet, fakes, recorder


async def until(cond: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_a_refusing_engine_is_down_at_once_and_readmitted_after_a_sweep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet, (a, b), recorder = await watched_fleet(monkeypatch)
    try:
        b.mode = "refuse"
        await until(lambda: not fleet.members[1].up)
        assert recorder.events == [("down", b.url)]
        assert "no Docker engine answers" in (fleet.members[1].error or "")
        with pytest.raises(sk.EngineUnavailable, match="is down"):
            await fleet.members[1].engine.info()  # at once, no call to the dead engine
        # what the pool had there before it died, and a stranger's container
        b.containers = [
            ContainerRecord("mine", {LABEL_POOL: "pool1"}),
            ContainerRecord("theirs", {LABEL_POOL: "other"}),
        ]
        b.mode = "up"
        await until(lambda: fleet.members[1].up)
        assert recorder.events == [("down", b.url), ("up", b.url)]
        assert b.removed == ["mine"]  # swept before re-admission; others' left alone
        assert fleet.members[0].up and a.removed == []
        assert fleet.members[1].downs == 1
    finally:
        await fleet.aclose()


async def test_a_silent_engine_is_down_after_probes_time_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet, (_a, b), recorder = await watched_fleet(monkeypatch)
    try:
        b.mode = "hang"
        await until(lambda: not fleet.members[1].up)
        assert "got no answer" in (fleet.members[1].error or "")
        assert recorder.events == [("down", b.url)]
    finally:
        await fleet.aclose()


async def test_an_unreachable_engine_at_open_starts_down_unless_none_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_fleet, "PROBE_INTERVAL", 0.05)
    fleet = Fleet([EngineConfig(f"unix:///fake{i}.sock") for i in range(2)], "p")
    fakes = [FakeEngine(m.url) for m in fleet.members]
    fakes[1].mode = "refuse"
    for member, fake in zip(fleet.members, fakes, strict=True):
        member.unwatched = fake  # type: ignore[assignment]
    await fleet.connect()
    try:
        assert [m.state for m in fleet.members] == ["up", "down"]
    finally:
        await fleet.aclose()
    nobody = Fleet([EngineConfig(f"unix:///fake{i}.sock") for i in range(2)], "p")
    for member in nobody.members:
        fake = FakeEngine(member.url)
        fake.mode = "refuse"
        member.unwatched = fake  # type: ignore[assignment]
    with pytest.raises(sk.EngineUnavailable, match="no engine of this pool answers"):
        await nobody.connect()
    await nobody.aclose()


async def test_an_engine_that_refuses_our_tls_fails_the_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet = Fleet([EngineConfig(f"unix:///fake{i}.sock") for i in range(2)], "p")
    fakes = [FakeEngine(m.url) for m in fleet.members]

    async def refuses() -> EngineInfo:
        raise sk.EngineError("the engine at unix:///fake1.sock refused this client's certificate")

    fakes[1].info = refuses  # type: ignore[method-assign]
    for member, fake in zip(fleet.members, fakes, strict=True):
        member.unwatched = fake  # type: ignore[assignment]
    with pytest.raises(sk.EngineError, match="refused this client's certificate"):
        await fleet.connect()
    await fleet.aclose()


async def test_one_engine_alone_is_not_watched() -> None:
    fleet = Fleet([EngineConfig("unix:///fake0.sock")], "p")
    fake = FakeEngine(fleet.members[0].url)
    fleet.members[0].unwatched = fake  # type: ignore[assignment]
    await fleet.connect()
    try:
        fake.mode = "refuse"
        fleet.suspect(fleet.members[0])
        await asyncio.sleep(0.05)
        assert fleet.members[0].up  # nothing to fail over to: calls keep trying
        statuses = await fleet.probed_status({})
        assert [s.state for s in statuses] == ["down"]  # but a status says the truth
    finally:
        await fleet.aclose()


def test_at_rest_takes_drain_a_surplus_and_a_lopsided_pool_is_noticed() -> None:
    placement, _ = fleet_placement([1.0, 1.0, 1.0], 3)
    for key, idle in (("e0", 0), ("e1", 0), ("e2", 3)):  # a burst left them all on e2
        for _ in range(idle):
            placement.begin_start(key)
            placement.end_start(key, ok=True)
    assert placement.misplaced() in ("e0", "e1")
    assert placement.choose_idle() == "e2"  # no one busy: the surplus goes first
    fill(placement)
    assert [s.idle for s in placement.spots.values()] == [1, 1, 3]
    placement.idle_gone("e2")  # the surplus retired
    placement.idle_gone("e2")
    assert placement.misplaced() is None


async def test_the_watched_backend_wraps_every_call_of_the_seam(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet, (a, b), _recorder = await watched_fleet(monkeypatch)
    try:
        watched = fleet.members[1].engine
        assert isinstance(watched, WatchedBackend)
        assert (await watched.info()).cpus == 2  # through to the engine while it is up
        assert [c async for c in watched.save_image("t:1")] == [b"layer"]
        assert watched.limits_fixed("runsc")  # a plain answer passes as it is
        assert watched.images is watched  # its image calls are watched too
        with pytest.raises(AttributeError):
            watched.no_such_call  # noqa: B018 - only the seam's names are forwarded
        b.mode = "refuse"
        with pytest.raises(sk.EngineUnavailable, match="no Docker engine answers"):
            await watched.remove("c1")  # the engine's own error, and a probe now
        await until(lambda: not fleet.members[1].up)
        b.mode = "up"  # it answers again, but the fleet has not re-admitted it yet
        for call in (watched.info(), watched.remove("c1"), watched.list_containers({})):
            with pytest.raises(sk.EngineUnavailable, match="is down"):
                await call  # refused at once: no call reaches the engine
        with pytest.raises(sk.EngineUnavailable, match="is down"):
            [c async for c in watched.save_image("t:1")]
        assert await watched.wait_removed("c1") is False  # cannot be known: fall back
        assert b.removed == [] and a.removed == []
    finally:
        await fleet.aclose()
