"""The engine seam without an engine: error mapping, URL resolution, the import fence,
and a Box driven through an in-memory AttachedStream."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import socket
import stat
import time
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import aiodocker
import aiohttp
import anyio
import anyio.abc
import pytest

import sandboxkit as sk
from sandboxkit import _channel
from sandboxkit import _protocol as wire
from sandboxkit._backends import (
    STREAM_STDERR,
    STREAM_STDOUT,
    BridgeNetwork,
    ContainerEngine,
    ContainerRecord,
    ContainerSpec,
    DockerBackend,
    EngineInfo,
    ImageRecord,
    Launched,
    connect,
)
from sandboxkit._backends import docker as dk
from sandboxkit._backends.seccomp import SECURITY_OPT
from sandboxkit._container import Box, Resources, Shape, container_spec
from sandboxkit._fleet.labels import LABEL_OWNER, owner_alive, owner_identity

PACKAGE = Path(sk.__file__).parent


# ---------------------------------------------------------------- error mapping
def mapped(exc: Exception, what: str = "start a container", **kw: Any) -> BaseException:
    with pytest.raises(BaseException) as info, dk.map_errors(what, **kw):
        raise exc
    assert info.value is exc or info.value.__cause__ is exc
    return info.value


def connector_error() -> aiohttp.ClientConnectorError:
    key = types.SimpleNamespace(host="localhost", port=2375, ssl=True, is_ssl=False)
    return aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "exc",
    [
        aiodocker.DockerError(900, "Cannot connect to Docker Engine via unix:///x.sock"),
        connector_error(),
        FileNotFoundError(2, "No such file or directory"),
        ConnectionRefusedError(111, "Connection refused"),
    ],
)
def test_no_engine_is_unavailable_and_says_what_to_do(exc: Exception) -> None:
    err = mapped(exc)
    assert type(err) is sk.EngineUnavailable
    assert str(err).startswith("no Docker engine answers (")
    assert "engine-up.sh" in str(err) and "DOCKER_HOST" in str(err)


def test_a_refusal_is_an_engine_error_with_status_and_message() -> None:
    err = mapped(aiodocker.DockerError(409, "name already in use"), "create a container")
    assert type(err) is sk.EngineError
    assert str(err) == "Docker engine refused to create a container: [409] name already in use"


def test_anything_else_is_an_engine_error_naming_it() -> None:
    err = mapped(RuntimeError("transport closed"), "list images")
    assert type(err) is sk.EngineError
    assert str(err) == "Docker engine failed to list images: RuntimeError: transport closed"


def test_a_refused_build_is_an_image_error_with_the_log_tail() -> None:
    log = [f"line {i}\n" for i in range(100)]
    err = mapped(aiodocker.DockerError(500, "bad context"), "build x:1", build_log=log)
    assert isinstance(err, sk.ImageError)
    assert err.log_tail == "".join(log[-40:])
    assert "[500] bad context" in str(err) and "build log" in str(err)


def test_sandboxkit_errors_and_cancellation_pass_through() -> None:
    own = sk.ImageError("building x failed: boom", "tail")
    assert mapped(own) is own
    with pytest.raises(asyncio.CancelledError), dk.map_errors("start a container"):
        raise asyncio.CancelledError


def test_absent_swallows_only_its_statuses() -> None:
    with dk.map_errors("inspect a container"), dk.absent(404):
        raise aiodocker.DockerError(404, "no such container")
    with (
        pytest.raises(sk.EngineError, match=r"\[500\]"),
        dk.map_errors("inspect a container"),
        dk.absent(404),
    ):
        raise aiodocker.DockerError(500, "boom")


async def test_idempotent_calls_retry_transient_errors_only() -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise aiodocker.DockerError(900, "Cannot connect")
        return "ok"

    # a lambda returning a coroutine, as the backend passes them
    assert await dk._idempotent(lambda: flaky()) == "ok" and len(calls) == 3

    refused: list[int] = []

    async def refuses() -> None:
        refused.append(1)
        raise aiodocker.DockerError(409, "conflict")

    with pytest.raises(aiodocker.DockerError):
        await dk._idempotent(refuses)
    assert len(refused) == 1


async def test_an_absent_engine_fails_every_call_with_what_to_do() -> None:
    backend = DockerBackend("unix:///nonexistent/docker.sock")
    try:
        for call in (backend.info(), backend.image_exists("x:1"), backend.inspect("c")):
            with pytest.raises(sk.EngineUnavailable, match=r"engine-up\.sh"):
                await call
        assert await backend.wait_removed("c") is False  # the caller falls back
    finally:
        await backend.close()


# ---------------------------------------------------------------- URL resolution
def test_url_from_the_argument_then_docker_host_then_the_socket(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.2:2375")
    assert connect("unix:///srv/docker.sock").url == "unix:///srv/docker.sock"
    assert connect().url == "tcp://10.0.0.2:2375"
    monkeypatch.delenv("DOCKER_HOST")
    monkeypatch.setattr(dk, "_SOCKETS", (str(tmp_path / "absent.sock"),))
    assert connect().url == dk.DEFAULT_URL == "unix:///var/run/docker.sock"
    path = tmp_path / "d.sock"
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(path))
        monkeypatch.setattr(dk, "_SOCKETS", (str(tmp_path / "absent.sock"), str(path)))
        assert connect().url == f"unix://{path}"


def test_tls_engines_are_spoken_to_over_https() -> None:
    plain = DockerBackend("tcp://h:2375")
    tls = DockerBackend("tcp://h:2376", ca_cert="ca.pem", client_cert="c.pem", client_key="k.pem")
    assert plain._client_url() == "tcp://h:2375"
    assert (tls.url, tls._client_url()) == ("tcp://h:2376", "https://h:2376")


def test_tags_split_at_the_last_colon_after_the_last_slash() -> None:
    assert dk.split_tag("sandboxkit/base:bookworm") == ("sandboxkit/base", "bookworm")
    assert dk.split_tag("registry:5000/base") == ("registry:5000/base", "latest")
    assert dk.split_tag("base") == ("base", "latest")


# ---------------------------------------------------------------- the import fence
def test_only_the_docker_backend_imports_aiodocker_or_aiohttp() -> None:
    fenced = {"aiodocker", "aiohttp"}
    importers: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.split(".")[0] in fenced:
                    importers.setdefault(path.relative_to(PACKAGE).as_posix(), set()).add(name)
    assert set(importers) == {"_backends/docker.py"}, importers


# ---------------------------------------------------------------- the create body
def test_the_docker_create_body_keeps_every_isolation_default() -> None:
    spec = container_spec(
        Shape(image="img:1", runtime="runsc", disk_mb=32, network=BridgeNetwork()),
        Resources(memory_mb=128, pids=32, cpus=0.5),
        {"a": "1"},
        {"B": "2", "A": "1"},
        "sandboxkit-p-1-0",
    )
    body = dk.create_body(spec)
    host = body.pop("HostConfig")
    assert body == {
        "Image": "img:1",
        "Cmd": ["python3", "-I", "/opt/sandboxkit/agent.pyc"],
        "User": "0:0",
        "WorkingDir": "/work",
        # gVisor: the limit inside; the names a run's environment holds (the first spare's),
        # in its order (a program's os.environ lists them so)
        "Env": ["A=1", "B=2", "SANDBOXKIT_NPROC=32", "SANDBOXKIT_RUN_ENV=B,A"],
        "Labels": {"a": "1"},
        "Hostname": "sandbox",
        "AttachStdin": True,
        "AttachStdout": True,
        "AttachStderr": True,
        "OpenStdin": True,
        "StdinOnce": True,
        "Tty": False,
        "NetworkDisabled": False,
        "StopSignal": "SIGKILL",
    }
    assert host == {
        "NetworkMode": "bridge",
        "CapDrop": ["ALL"],
        "CapAdd": ["CAP_KILL", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID"],  # the agent's
        "SecurityOpt": ["no-new-privileges", SECURITY_OPT],
        "ReadonlyRootfs": True,
        "Tmpfs": {
            "/work": "rw,exec,nosuid,nodev,size=32m,uid=65534,gid=65534,mode=0755",
            "/run/sandboxkit": "rw,exec,nosuid,nodev,size=32m,uid=65534,gid=65534,mode=0700",
            "/tmp": "rw,exec,nosuid,nodev,size=32m,mode=1777",
            "/home/sandbox": "rw,exec,nosuid,nodev,size=32m,uid=65534,gid=65534,mode=0755",
        },
        "ShmSize": 16777216,
        "Memory": 134217728,
        "MemorySwap": 134217728,
        "PidsLimit": 128 + 16 * 32,  # gVisor: the sandbox kernel's threads, see engine_pids
        "CpuPeriod": 250_000,  # a quarter second: a burst's build is not throttled midway
        "CpuQuota": 125_000,  # half a core of it
        "Ulimits": [
            {"Name": "nofile", "Soft": 1024, "Hard": 1024},
            {"Name": "core", "Soft": 0, "Hard": 0},
        ],
        "LogConfig": {"Type": "none"},
        "Runtime": "runsc",
        "AutoRemove": True,
        "Init": False,
        "IpcMode": "private",
        "Privileged": False,
    }
    closed = dk.create_body(container_spec(Shape(image="i"), Resources(), {}, {}, "n"))
    assert closed["NetworkDisabled"] is True and closed["HostConfig"]["NetworkMode"] == "none"
    assert "Mounts" not in closed["HostConfig"]  # nothing of the host's without a channel
    # runc counts the processes themselves: the cgroup is the limit, nothing else
    assert closed["HostConfig"]["PidsLimit"] == 64 and closed["Env"] == []


def test_a_channel_is_the_one_mount_and_it_is_read_only() -> None:
    spec = container_spec(Shape(image="i"), Resources(), {}, {}, "n", "/tmp/d/x.sock")
    host = dk.create_body(spec)["HostConfig"]
    assert host["Mounts"] == [
        {"Type": "bind", "Source": "/tmp/d/x.sock", "Target": wire.CHANNEL_PATH, "ReadOnly": True}
    ]
    assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]


def test_an_update_body_carries_only_what_changes() -> None:
    assert dk.update_body() == {}
    assert dk.update_body(pids=10) == {"PidsLimit": 10}
    assert dk.update_body(memory_mb=1, cpus=2.0) == {
        "Memory": 1048576,
        "MemorySwap": 1048576,
        "CpuPeriod": 250_000,
        "CpuQuota": 500_000,
    }
    # the kernel's floor: a quota under 1 ms is refused, so a tiny share gets the floor
    assert dk.update_body(cpus=0.001) == {"CpuPeriod": 250_000, "CpuQuota": 1_000}


def test_network_is_a_policy_the_engine_enforces_or_refuses() -> None:
    assert dk.network_mode(None) == "none"
    assert dk.network_mode(BridgeNetwork()) == "bridge"
    with pytest.raises(sk.EngineError, match="cannot enforce"):
        dk.network_mode(cast(Any, "allow everything"))
    # the policy is part of the pool key: a bridge pool is not a no-network pool
    assert Shape(image="i") != Shape(image="i", network=BridgeNetwork())
    assert Shape(image="i", network=BridgeNetwork()) == Shape(image="i", network=BridgeNetwork())


# ---------------------------------------------------------------- typed records
def test_docker_listings_and_inspections_become_the_same_records() -> None:
    listed = {
        "Id": "abc",
        "Names": ["/sandboxkit-p-1-0"],
        "State": "running",
        "Created": 1700000000,
        "Labels": {"org.sandboxkit.pool": "p"},
    }
    inspected = {
        "Id": "abc",
        "Created": "2023-11-14T22:13:20.123456789Z",
        "State": {"Status": "running", "Pid": 4242},
        "Config": {"Labels": {"org.sandboxkit.pool": "p"}},
    }
    assert dk.container_record(listed) == ContainerRecord(
        "abc", {"org.sandboxkit.pool": "p"}, "running", 1700000000.0, name="sandboxkit-p-1-0"
    )
    assert dk.container_record({**inspected, "Name": "/sandboxkit-p-1-0"}).name == (
        "sandboxkit-p-1-0"
    )
    record = dk.container_record(inspected)
    assert (record.id, record.state, record.pid) == ("abc", "running", 4242)
    assert record.labels == {"org.sandboxkit.pool": "p"}
    assert abs(record.created - 1700000000.123456) < 1e-3
    bare = dk.container_record({"Id": "x", "Labels": None})
    assert (bare.labels, bare.state, bare.created, bare.pid) == ({}, "unknown", 0.0, None)


def test_created_times_in_every_form_docker_writes() -> None:
    assert dk.epoch(1700000000) == 1700000000.0
    assert dk.epoch("2023-11-14T22:13:20Z") == 1700000000.0
    assert dk.epoch("2023-11-14T23:13:20.5+01:00") == 1700000000.5
    assert dk.epoch("not a time") == dk.epoch(None) == dk.epoch(True) == 0.0


def test_an_image_with_two_tags_is_two_records() -> None:
    listed = {
        "Id": "sha256:1",
        "RepoTags": ["sandboxkit/python:a", "sandboxkit/python:latest"],
        "Size": 332_000_000,
        "Created": 1700000000,
        "Labels": {"org.sandboxkit.language": "python"},
    }
    first, second = dk.image_records(listed)
    assert first == ImageRecord(
        "sandboxkit/python:a",
        "sha256:1",
        332_000_000,
        {"org.sandboxkit.language": "python"},
        1700000000.0,
    )
    assert second.tag == "sandboxkit/python:latest" and second.id == first.id
    assert dk.image_records({"Id": "sha256:2", "RepoTags": None}) == []  # dangling


def test_engine_info_joins_info_and_version() -> None:
    info = {
        "NCPU": 8,
        "MemTotal": 16 * 1024**3,
        "Runtimes": {"runsc": {}, "runc": {}},
        "CgroupVersion": "2",
        "CgroupDriver": "systemd",
        "ServerVersion": "24.0.7",
        "SecurityOptions": ["name=seccomp,profile=builtin", "name=userns"],
    }
    version = {"Version": "24.0.7", "ApiVersion": "1.43", "Platform": {"Name": "Docker Engine"}}
    assert dk.engine_info(info, version) == EngineInfo(
        product="Docker",
        version="24.0.7",
        api_version="1.43",
        cpus=8,
        memory_bytes=16 * 1024**3,
        runtimes=("runc", "runsc"),
        cgroup_version="2",
        cgroup_driver="systemd",
        user_namespaces=True,
    )
    podman = dk.engine_info({}, {"Version": "4.3.1", "Platform": {"Name": "linux/amd64/podman"}})
    assert not podman.user_namespaces
    assert (podman.product, podman.cpus, podman.runtimes, podman.api_version) == (
        "Podman",
        1,
        (),
        None,
    )


def test_only_gvisor_fixes_a_docker_containers_limits_at_creation() -> None:
    backend = DockerBackend("unix:///nonexistent/docker.sock")
    assert backend.limits_fixed("runsc") and not backend.limits_fixed("runc")
    assert backend.images is backend  # a Docker engine keeps its own images


def test_the_seam_speaks_in_records_not_engine_dicts() -> None:
    """No ``Any`` (a raw engine dict) in any signature of the two protocols."""
    from sandboxkit._backends import base

    for protocol in (base.ContainerEngine, base.ImageStore):
        for name, member in vars(protocol).items():
            if name.startswith("_"):
                continue
            func = member.fget if isinstance(member, property) else member
            hints = typing.get_type_hints(func, vars(base))
            assert hints, name
            for hint in hints.values():
                assert "Any" not in repr(hint), (protocol.__name__, name, hint)


# ---------------------------------------------------------------- labels
def test_this_process_is_alive_and_a_reused_pid_is_not() -> None:
    me = owner_identity()
    assert owner_alive(me)
    host, pid, start = me.rsplit(":", 2)
    assert not owner_alive(f"{host}:{pid}:{int(start) + 1}")
    assert owner_alive(f"another-host-{host}:{pid}:0")  # never ours to judge
    assert not owner_alive("garbage")
    assert LABEL_OWNER == "org.sandboxkit.owner"


# ---------------------------------------------------------------- Box on a fake engine
class FakeStream:
    """An AttachedStream in memory: the test plays the agent and the engine."""

    def __init__(self) -> None:
        self.chunks: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self.pending = 0  # chunks not read yet
        self.ended = False  # the engine closed the output
        self.written = bytearray()
        self.closed = False

    def _put(self, stream: int, data: bytes) -> None:
        self.pending += 1
        self.chunks.put_nowait((stream, data))

    def agent_sends(self, kind: bytes, payload: bytes = b"", split: int = 3) -> None:
        frame = wire.pack(kind, payload)
        for i in range(0, len(frame), split):  # frames arrive cut at any byte
            self._put(STREAM_STDOUT, frame[i : i + split])

    def agent_exits(self, stderr: bytes = b"") -> None:
        if stderr:
            self._put(STREAM_STDERR, stderr)
        self.ended = True
        self.chunks.put_nowait(None)

    def frames_received(self) -> list[tuple[bytes, bytes]]:
        return wire.FrameReader().feed(bytes(self.written))

    async def write(self, data: bytes) -> None:
        if self.closed:
            raise sk.EngineError("Docker engine failed to take a container's input")
        self.written += data

    async def read(self) -> tuple[int, bytes] | None:
        chunk = await self.chunks.get()
        if chunk is not None:
            self.pending -= 1
        return chunk

    async def close(self) -> None:
        self.closed = True

    @property
    def at_eof(self) -> bool:
        return self.ended and self.pending == 0


class FakeBackend:
    """Just enough of a ContainerEngine for a Box's life: the container is a FakeStream."""

    url = "fake://"
    local_paths = False

    def __init__(self, removed_in_time: bool = True) -> None:
        self.stream = FakeStream()
        self.specs: list[ContainerSpec] = []
        self.updates: list[dict[str, Any]] = []
        self.removed: list[str] = []
        self.removed_in_time = removed_in_time

    async def launch(self, spec: ContainerSpec) -> Launched:
        self.specs.append(spec)
        await self.start()
        return Launched("c0ffee", self.stream)

    async def start(self) -> None:
        """The agent's first words once started (tests replace this)."""
        self.stream.agent_sends(wire.READY, json.dumps({"toolchain": "Python 3.11"}).encode())

    async def update_resources(self, cid: str, **limits: Any) -> None:
        self.updates.append(limits)

    async def wait_removed(self, cid: str) -> bool:
        return self.removed_in_time

    async def remove(self, cid: str) -> None:
        self.removed.append(cid)

    async def list_containers(self, labels: Mapping[str, str | None]) -> list[ContainerRecord]:
        return []


async def started(backend: FakeBackend) -> Box:
    return await Box.start(
        cast(ContainerEngine, backend), Shape(image="img:1"), Resources(), {"LANG": "C"}, "p1"
    )


async def test_a_box_starts_talks_and_ends_over_the_stream() -> None:
    backend = FakeBackend()
    box = await started(backend)
    assert (box.cid, box.toolchain, box.alive) == ("c0ffee", "Python 3.11", True)
    [spec] = backend.specs
    assert spec.image == "img:1" and spec.env == {"LANG": "C"}
    assert spec.labels["org.sandboxkit.pool"] == "p1" and spec.name.startswith("sandboxkit-p1-")

    stream = backend.stream
    stream.agent_sends(wire.REPLY, b'{"ok": true}\0DATA')
    assert await box.call({"op": "read", "path": "a"}) == ({"ok": True}, b"DATA")
    assert stream.frames_received() == [(wire.JOB, b'{"op": "read", "path": "a"}')]

    stream.agent_exits(stderr=b"agent: killed\n")
    with pytest.raises(sk.SandboxError, match="ended unexpectedly: agent: killed"):
        await box.recv()
    assert not box.alive and not box.closed

    await box.destroy()
    assert box.closed and stream.closed and backend.removed == []  # it went by itself
    with pytest.raises(sk.SandboxError, match="closed"):
        await box.send(wire.JOB)


async def test_a_box_is_as_old_as_its_ready_agent() -> None:
    backend = FakeBackend()

    async def start() -> None:  # a slow engine: ready comes half a second later
        asyncio.get_running_loop().call_later(0.5, backend.stream.agent_sends, wire.READY, b"{}")

    backend.start = start  # type: ignore[method-assign]
    box = await started(backend)
    assert time.monotonic() - box.created < 0.25  # max_idle_age counts from ready
    await box.destroy()


async def test_alive_turns_false_once_the_output_ended_and_was_read() -> None:
    backend = FakeBackend()
    box = await started(backend)
    backend.stream.agent_sends(wire.STDOUT, b"last words")
    backend.stream.agent_exits()
    assert box.alive  # output still to read
    assert await box.recv() == (wire.STDOUT, b"last words")
    assert not box.alive  # nothing left, and the engine closed the stream


async def test_set_resources_sends_only_the_changed_limits() -> None:
    backend = FakeBackend()
    box = await started(backend)
    await box.set_resources(Resources())  # unchanged: no engine call
    await box.set_resources(Resources(memory_mb=512))
    await box.set_resources(Resources(memory_mb=512, pids=8, cpus=0.5))
    assert backend.updates == [
        {"memory_mb": 512, "pids": None, "cpus": None},
        {"memory_mb": None, "pids": 8, "cpus": 0.5},
    ]
    assert box.resources == Resources(memory_mb=512, pids=8, cpus=0.5)
    await box.destroy()


async def test_a_box_whose_agent_does_not_go_is_removed() -> None:
    backend = FakeBackend(removed_in_time=False)
    box = await started(backend)
    await box.destroy()
    await box.destroy()  # once only
    assert backend.removed == ["c0ffee"]


async def test_a_box_whose_agent_is_not_ready_is_removed() -> None:
    backend = FakeBackend()

    async def start() -> None:
        backend.stream.agent_sends(wire.FAULT, b"no python")

    backend.start = start  # type: ignore[method-assign]
    with pytest.raises(sk.SandboxError, match="instead of ready"):
        await started(backend)
    assert backend.stream.closed


async def test_a_box_whose_launch_fails_is_removed_by_name() -> None:
    backend = FakeBackend()

    async def launch(spec: ContainerSpec) -> Launched:
        backend.specs.append(spec)
        raise sk.EngineError("Docker engine refused to start a container: [500] no runtime")

    backend.launch = launch  # type: ignore[method-assign]
    with pytest.raises(sk.EngineError, match="no runtime"):
        await started(backend)
    assert backend.removed == [backend.specs[0].name]  # the engine may still hold it


# ---------------------------------------------------------------- the direct channel
class ChannelBackend(FakeBackend):
    """A local engine: the fake agent connects to the socket the box's spec names."""

    url = "fake-local://"
    local_paths = True

    def __init__(self) -> None:
        super().__init__()
        self.agent: anyio.abc.SocketStream | None = None

    async def start(self) -> None:
        path = self.specs[-1].channel
        assert path is not None
        self.agent = await anyio.connect_unix(path)
        await self.agent.send(wire.pack(wire.READY, b'{"toolchain": "T"}'))


@pytest.fixture(autouse=True)
def _no_refused_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_channel, "_refused", set())
    monkeypatch.delenv("SANDBOXKIT_CHANNEL", raising=False)


async def test_a_local_box_talks_over_its_channel_and_the_socket_file_goes() -> None:
    backend = ChannelBackend()
    box = await started(backend)
    [spec] = backend.specs
    assert spec.channel is not None and box.toolchain == "T"
    assert not os.path.exists(spec.channel)  # nothing else can connect: listener gone
    assert stat.S_IMODE(os.stat(os.path.dirname(spec.channel)).st_mode) == 0o700
    assert backend.agent is not None

    await backend.agent.send(wire.pack(wire.REPLY, b'{"ok": true}\0DATA'))
    assert await box.call({"op": "list"}) == ({"ok": True}, b"DATA")
    got = wire.FrameReader().feed(await backend.agent.receive())
    assert got == [(wire.JOB, b'{"op": "list"}')]
    assert backend.stream.written == b""  # the attach stream carried no frame
    assert box.alive

    await backend.agent.aclose()  # the agent died, and said why on its stderr
    backend.stream.agent_exits(stderr=b"agent: killed\n")
    assert not box.alive
    with pytest.raises(sk.SandboxError, match="ended unexpectedly: agent: killed"):
        await box.recv()
    await box.destroy()
    assert backend.stream.closed


async def test_an_agent_that_cannot_connect_keeps_the_attach_stream() -> None:
    backend = ChannelBackend()

    async def start() -> None:  # it says why, then ready on its stdout
        backend.stream._put(STREAM_STDERR, b"sandboxkit agent: no direct channel\n")
        backend.stream.agent_sends(wire.READY, b'{"toolchain": "T"}')

    backend.start = start  # type: ignore[method-assign]
    box = await started(backend)
    assert box.toolchain == "T" and b"no direct channel" in box.agent_stderr
    backend.stream.agent_sends(wire.REPLY, b'{"ok": true}\0')
    assert await box.call({"op": "list"}) == ({"ok": True}, b"")
    assert not _channel.wanted(cast(ContainerEngine, backend), "runc")  # not offered again
    await box.destroy()
    box = await started(backend)
    assert backend.specs[-1].channel is None
    await box.destroy()


async def test_an_agent_that_dies_at_start_is_no_reason_to_drop_the_channel() -> None:
    backend = ChannelBackend()

    async def start() -> None:
        backend.stream.agent_exits(stderr=b"python3: cannot start\n")

    backend.start = start  # type: ignore[method-assign]
    with pytest.raises(sk.SandboxError, match="ended unexpectedly: python3: cannot start"):
        await started(backend)
    assert _channel.wanted(cast(ContainerEngine, backend), "runc")
    # its listening socket is gone too (only its own: a pool of an earlier test may be
    # starting a sandbox of its own meanwhile, whose socket waits in the same directory)
    [spec] = backend.specs
    assert spec.channel is not None and not os.path.exists(spec.channel)


async def test_no_socket_can_be_made_here_so_the_box_uses_the_attach_stream(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    deep = tmp_path / ("d" * 120)  # past what a Unix socket's path may be
    deep.mkdir()
    monkeypatch.setattr(_channel, "_channel_dir", lambda: str(deep))
    backend = FakeBackend()
    backend.local_paths = True  # type: ignore[misc]
    box = await started(backend)
    assert [s.channel for s in backend.specs] == [None] and box.toolchain == "Python 3.11"
    await box.destroy()


async def test_an_engine_that_cannot_mount_the_socket_gets_a_box_without_it() -> None:
    backend = FakeBackend()
    backend.local_paths = True  # type: ignore[misc]
    launch = backend.launch

    async def refusing(spec: ContainerSpec) -> Launched:
        if spec.channel is not None:
            raise sk.EngineError("invalid mount config for type bind: bind source path")
        return await launch(spec)

    backend.launch = refusing  # type: ignore[method-assign]
    box = await started(backend)
    assert [s.channel for s in backend.specs] == [None]
    assert not _channel.wanted(cast(ContainerEngine, backend), "runc")
    await box.destroy()


@pytest.mark.parametrize(
    ("local", "runtime", "setting", "wanted"),
    [
        (True, "runc", None, True),
        (True, "crun", "direct", True),
        (False, "runc", None, False),  # a remote engine cannot mount our file
        (True, "runsc", None, False),  # gVisor does not connect host sockets by default
        (True, "runc", "attach", False),
    ],
)
def test_who_is_offered_a_channel(
    monkeypatch: pytest.MonkeyPatch, local: bool, runtime: str, setting: str | None, wanted: bool
) -> None:
    backend = FakeBackend()
    backend.local_paths = local  # type: ignore[misc]
    if setting is not None:
        monkeypatch.setenv("SANDBOXKIT_CHANNEL", setting)
    assert _channel.wanted(cast(ContainerEngine, backend), runtime) is wanted


def test_a_killed_process_s_channel_directory_is_swept_by_the_next(tmp_path: Path) -> None:
    host, pid, _start = owner_identity().rsplit(":", 2)
    prefix = _channel._PREFIX
    dead = tmp_path / (prefix + _channel._owner_tag(f"{host}:{pid}:1") + "a")  # pid reused
    live = tmp_path / (prefix + _channel._owner_tag() + "b")
    elsewhere = tmp_path / (prefix + _channel._owner_tag("another-host:1:1") + "c")
    foreign = tmp_path / (prefix + "old-style")
    for d in (dead, live, elsewhere, foreign):
        d.mkdir()
        (d / "x.sock").write_bytes(b"")
    link = tmp_path / (prefix + _channel._owner_tag(f"{host}:{pid}:2") + "d")
    link.symlink_to(live)  # never followed, never removed
    assert _channel.sweep(str(tmp_path)) == 1
    assert not dead.exists() and live.exists() and elsewhere.exists() and foreign.exists()
    assert link.is_symlink() and (live / "x.sock").exists()
