"""A Docker engine as a :class:`~._backends.base.Backend`, through aiodocker.

The only module of sandboxkit that imports aiodocker or aiohttp (a test checks). Their
errors are mapped once, by :func:`map_errors`; idempotent calls (info, inspect, list,
remove, image inspect) are retried on transient connection errors with tenacity, and
calls that create, start or feed a user's run never are.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import ssl
import tarfile
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import aiodocker
import aiohttp
import anyio
from aiodocker.stream import Stream
from aiodocker.types import SENTINEL
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential
from yarl import URL

from .._errors import EngineError, EngineUnavailable, ImageError, SandboxkitError
from .._protocol import CHANNEL_PATH, ENV_RUN_NAMES
from .advice import PERMISSION, how_to_reach, how_to_start
from .base import (
    AttachedStream,
    BridgeNetwork,
    ContainerRecord,
    ContainerSpec,
    ContainerStats,
    EgressNetwork,
    EngineInfo,
    ImageRecord,
    Launched,
    NetworkPolicy,
    NetworkRecord,
    OwnNetwork,
)
from .config import DEFAULT_URL, SOCKETS, EngineConfig, local_socket, scheme_of  # noqa: F401
from .seccomp import SECURITY_OPT

T = TypeVar("T")
AGENT_CAPABILITIES = ("CAP_KILL", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID")

_SOCKETS = SOCKETS  # where engines listen when DOCKER_HOST does not say (tests replace it)
_CANNOT_CONNECT = 900  # aiodocker's status for "could not connect"
_BUILD_LOG_TAIL = 40  # lines of a build's log an ImageError carries
CONNECT_TIMEOUT = 10.0  # seconds to open a TCP connection to a remote engine
TRANSFER_CHUNK = 1 << 20  # bytes read at a time from an image export
CLOSE_TIMEOUT = 5.0  # seconds a failed launch may take to close what it opened
# runtimes whose containers refuse `docker update`: their limits are fixed at creation
FIXED_LIMIT_RUNTIMES = frozenset({"runsc"})
# Under gVisor the container's pids cgroup holds the sandbox kernel (the Sentry), not the
# sandbox's processes: ~42 host threads idle and ~9.4 more per process it runs (measured
# with runsc 20221219, ptrace platform). At the sandbox's own 64 it could run ~2
# processes, and the Sentry, refused a thread, exits (status 2) taking the whole sandbox
# with it (issue 27: a background `sh -c 'sleep 300 & sleep 300'`). There the cgroup
# gets room for the Sentry to run every allowed process (a backstop for the machine),
# and the sandbox's own limit is RLIMIT_NPROC on the program's uid, which gVisor counts
# within the sandbox (the agent applies it: ENV_NPROC). runc counts the processes
# themselves in the cgroup, exactly, and keeps it.
SENTRY_PIDS_BASE = 128
SENTRY_PIDS_PER_TASK = 16
ENV_NPROC = "SANDBOXKIT_NPROC"
# The CPU quota's accounting period: a sandbox gets ``cpus`` times this of CPU time in every
# such period. The kernel's default, 100 ms, throttled a build that used both cores for a
# moment (go's hello world: 8-13 ms of its ~160 in the throttle, more than a plain
# container of the same quota, as the agent's own work shares it) and capped a quick loop
# of session runs. A quarter second lets such a burst finish; the average over each
# period is the same quota. (The kernel's burst setting, cpu.cfs_burst_us, would say it
# better; the engine's API does not set it.)
CPU_PERIOD_US = 250_000
MIN_CPU_QUOTA_US = 1_000  # the kernel's floor for a quota


def engine_pids(pids: int, runtime: str) -> int:
    """The pids cgroup limit that lets a ``runtime`` sandbox run ``pids`` tasks."""
    if runtime == "runsc":
        return SENTRY_PIDS_BASE + SENTRY_PIDS_PER_TASK * pids
    return pids


def resolve_url(url: str | None = None) -> str:
    """The engine's address: ``url``, else ``DOCKER_HOST``, else the local socket."""
    if url:
        return url
    env = os.environ.get("DOCKER_HOST")
    if env:
        return env
    return local_socket(_SOCKETS)


# ---------------------------------------------------------------------- errors


def _advice(engine: str | None, exc: BaseException | None = None) -> str:
    """What to do when nothing answers: start the local engine, or reach the remote one;
    a socket this user may not open is a permission to get, not an engine to start."""
    if engine is not None and scheme_of(engine) in ("tcp", "http", "https", "ssh"):
        return how_to_reach()
    if exc is not None and any(isinstance(e, PermissionError) for e in _causes(exc)):
        return PERMISSION
    return how_to_start()


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc``, its chain, and the OS error aiohttp keeps beside it."""
    found = _chain(exc)
    for err in list(found):
        os_error = getattr(err, "os_error", None)
        if isinstance(os_error, BaseException):
            found.append(os_error)
    return found


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def tls_problem(exc: BaseException, engine: str | None = None) -> str | None:
    """What went wrong in TLS between us and the engine, in words that say what to fix;
    None when ``exc`` is no TLS failure."""
    where = f"the engine at {engine}" if engine else "the engine"
    chain = _chain(exc)
    for err in chain:
        if isinstance(err, ssl.SSLCertVerificationError):
            # aiohttp's subclass keeps the ssl module's error as certificate_error
            inner = getattr(err, "certificate_error", err)
            reason = getattr(inner, "verify_message", None) or _ssl_reason(str(inner))
            return (
                f"{where} presented a certificate this client does not trust "
                f"({reason}). Give as ca_cert the CA that signed the "
                "engine's certificate (docker's ca.pem); the certificate must also name "
                "the host or IP address of the URL"
            )
    for err in chain:
        text = str(err)
        upper = text.upper()
        if "CERTIFICATE_VERIFY_FAILED" in upper:
            return (
                f"{where} presented a certificate this client does not trust ({text}). "
                "Give as ca_cert the CA that signed the engine's certificate"
            )
        if any(k in upper for k in ("CERTIFICATE_REQUIRED", "BAD_CERTIFICATE", "UNKNOWN_CA")):
            return (
                f"{where} refused this client's certificate ({_ssl_reason(text)}). Give "
                "client_cert and client_key signed by the CA the engine trusts (its --tlscacert)"
            )
        if any(k in upper for k in ("WRONG_VERSION_NUMBER", "RECORD_LAYER", "PACKET_LENGTH")):
            return (
                f"{where} does not speak TLS on that port ({_ssl_reason(text)}). Use the "
                "engine's TLS port (2376 by convention), or, for a plaintext engine, insecure=True"
            )
        if "HTTP REQUEST TO AN HTTPS SERVER" in upper:
            return (
                f"{where} speaks TLS: give ca_cert, client_cert and client_key "
                "(EngineConfig), or set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH"
            )
    for err in chain:
        if isinstance(err, ssl.SSLError):
            return f"TLS with {where} failed ({err}); check ca_cert, client_cert and client_key"
    return None


def _ssl_reason(text: str) -> str:
    """``[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate`` from a long text."""
    start = text.find("[SSL:")
    if start < 0:
        return text
    end = text.find("(_ssl.c", start)
    return text[start : end if end > 0 else None].strip()


def _mapped(
    exc: Exception, what: str, build_log: list[str] | None, engine: str | None = None
) -> SandboxkitError:
    tls = tls_problem(exc, engine)
    if tls is not None:
        return EngineError(tls)  # a configuration to fix, not an engine to start
    at = f" at {engine}" if engine else ""
    if isinstance(exc, (aiohttp.ClientConnectorError, FileNotFoundError, ConnectionRefusedError)):
        return EngineUnavailable(f"no Docker engine answers{at} ({exc})", _advice(engine, exc))
    if isinstance(exc, asyncio.TimeoutError):
        return EngineUnavailable(
            f"the Docker engine{at} did not answer in time ({what})", _advice(engine)
        )
    if isinstance(exc, aiodocker.DockerError):
        if exc.status == _CANNOT_CONNECT:
            return EngineUnavailable(
                f"no Docker engine answers{at} ({exc.message})", _advice(engine, exc)
            )
        refused = f"Docker engine{at} refused to {what}: [{exc.status}] {exc.message}"
        if build_log is not None:
            return ImageError(refused, "".join(build_log[-_BUILD_LOG_TAIL:]))
        return EngineError(refused)
    if isinstance(exc, (aiohttp.ClientConnectionError, ConnectionError)):
        return EngineUnavailable(
            f"the connection to the Docker engine{at} broke ({type(exc).__name__}: {exc}) "
            f"while trying to {what}",
            _advice(engine, exc),
        )
    return EngineError(f"Docker engine{at} failed to {what}: {type(exc).__name__}: {exc}")


class map_errors:
    """Turn aiodocker's and aiohttp's errors into sandboxkit's, saying what failed.

    ``what`` completes "Docker engine refused to ..."; ``engine`` (its URL) is named in
    the message, which matters in a fleet. With ``build_log``, a refusal is an ImageError
    carrying the log's tail. A TLS failure says what to fix in the certificates (never
    "start an engine"). sandboxkit's own errors pass through, and nothing is swallowed
    (see :class:`absent` for that).
    """

    def __init__(
        self, what: str, *, build_log: list[str] | None = None, engine: str | None = None
    ) -> None:
        self.what = what
        self.build_log = build_log
        self.engine = engine

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, Exception) and not isinstance(exc, SandboxkitError):
            raise _mapped(exc, self.what, self.build_log, self.engine) from exc


class absent:
    """Swallow the engine's refusal with one of ``statuses`` (404: no such object).

    Put it inside :class:`map_errors`; the code after the ``with`` block says what the
    absence means.
    """

    def __init__(self, *statuses: int) -> None:
        self.statuses = statuses

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        return isinstance(exc, aiodocker.DockerError) and exc.status in self.statuses


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, aiodocker.DockerError):
        return exc.status == _CANNOT_CONNECT
    return isinstance(exc, (aiohttp.ClientConnectionError, asyncio.TimeoutError, ConnectionError))


async def _idempotent(call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, retried on transient connection errors: only for calls safe to repeat."""
    retrying = AsyncRetrying(
        retry=retry_if_exception(_transient),
        stop=stop_after_attempt(3),
        wait=wait_exponential(multiplier=0.05, max=1.0),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await call()
    raise AssertionError("tenacity ends by returning or raising")  # pragma: no cover


# ---------------------------------------------------------------------- pure parts
def network_mode(policy: NetworkPolicy) -> str:
    """Docker's network mode for ``policy``; EngineError for one it cannot enforce."""
    if policy is None:
        return "none"
    if isinstance(policy, BridgeNetwork):
        return "bridge"
    if isinstance(policy, EgressNetwork | OwnNetwork):
        return policy.name
    raise EngineError(f"the Docker backend cannot enforce the network policy {policy!r}")


def create_body(spec: ContainerSpec) -> dict[str, Any]:
    """The engine's create body for ``spec``: every DESIGN §4 default, nothing loosened."""
    mem = spec.memory_mb * 1024 * 1024
    tmpfs_opts = f"rw,exec,nosuid,nodev,size={spec.disk_mb}m"
    mode = network_mode(spec.network)
    host: dict[str, Any] = {
        "NetworkMode": mode,
        "CapDrop": ["ALL"],
        # the agent's alone: it starts as uid 0 with these, becomes a uid of its own and
        # runs every program as ``spec.uid`` with none (sandboxkit/agent/_privs.py)
        "CapAdd": list(AGENT_CAPABILITIES) if spec.supervisor else [],
        # sandboxkit's own syscall filter, not the engine's (which varies by version)
        "SecurityOpt": ["no-new-privileges", SECURITY_OPT],
        "ReadonlyRootfs": not spec.writable_root,
        "Tmpfs": {
            spec.workdir: f"{tmpfs_opts},uid={spec.uid},gid={spec.uid},mode=0755",
            spec.own_dir: f"{tmpfs_opts},uid={spec.uid},gid={spec.uid},mode=0700",
            "/tmp": f"{tmpfs_opts},mode=1777",
            # the sandbox user's home ($HOME): a real directory of its own, as agents expect
            spec.home: f"{tmpfs_opts},uid={spec.uid},gid={spec.uid},mode=0755",
        },
        "ShmSize": 16 * 1024 * 1024,
        "Memory": mem,
        "MemorySwap": mem,  # equal: no swap
        "PidsLimit": engine_pids(spec.pids, spec.runtime),
        **cpu_quota(spec.cpus),
        "Ulimits": [
            {"Name": "nofile", "Soft": 1024, "Hard": 1024},
            {"Name": "core", "Soft": 0, "Hard": 0},
        ],
        "LogConfig": {"Type": "none"},  # a flood never reaches the host's disk
        "Runtime": spec.runtime,
        # when the command exits (its stdin closed), the engine removes it; a pausable
        # box stays when stopped: its checkpoint (its memory) is kept with it
        "AutoRemove": not spec.pausable,
        "Init": False,  # the command (sandboxkit's agent) is PID 1 and reaps
        "IpcMode": "private",
        "Privileged": False,
    }
    if spec.channel is not None:
        host["Mounts"] = [
            {"Type": "bind", "Source": spec.channel, "Target": CHANNEL_PATH, "ReadOnly": True}
        ]
    if spec.sysctls:
        host["Sysctls"] = dict(spec.sysctls)
    extra: dict[str, Any] = {}
    if isinstance(spec.network, EgressNetwork):
        # the gateway is the only resolver (the engine's embedded DNS forwards to it)
        host["Dns"] = [spec.network.dns]
        if spec.network.resolv_conf is not None:
            mount = {
                "Type": "bind",
                "Source": spec.network.resolv_conf,
                "Target": "/etc/resolv.conf",
                "ReadOnly": True,
            }
            host["Mounts"] = [*host.get("Mounts", []), mount]
    if isinstance(spec.network, EgressNetwork | OwnNetwork):
        extra["NetworkingConfig"] = {
            "EndpointsConfig": {
                spec.network.name: {"IPAMConfig": {"IPv4Address": spec.network.address}}
            }
        }
    return {
        "Image": spec.image,
        "Cmd": list(spec.command),
        # the agent: uid 0 only until its first act (the program runs as spec.uid)
        "User": "0:0" if spec.supervisor else f"{spec.uid}:{spec.uid}",
        "WorkingDir": spec.workdir,
        "Env": [f"{k}={v}" for k, v in sorted(container_env(spec).items())],
        "Labels": dict(spec.labels),
        "Hostname": spec.hostname,
        "AttachStdin": True,
        "AttachStdout": True,
        "AttachStderr": True,
        "OpenStdin": True,
        "StdinOnce": True,  # our attach closing = EOF for the agent = the container ends
        "Tty": False,
        "NetworkDisabled": mode == "none",
        "StopSignal": "SIGKILL",
        "HostConfig": host,
        **extra,
    }


def network_body(
    name: str, subnet: str, labels: Mapping[str, str], *, internal: bool
) -> dict[str, Any]:
    """The engine's create body of a bridge network on ``subnet``. Internal: no route
    out, and no address of the engine's host on it (``inhibit_ipv4``), so a container
    on it cannot reach the host's own services either."""
    options = {"com.docker.network.bridge.enable_ip_masquerade": "false"} if internal else {}
    if internal:
        options["com.docker.network.bridge.inhibit_ipv4"] = "true"
    return {
        "Name": name,
        "CheckDuplicate": True,
        "Driver": "bridge",
        "Internal": internal,
        "IPAM": {"Driver": "default", "Config": [{"Subnet": subnet}]},
        "Options": options,
        "Labels": dict(labels),
    }


def network_record(raw: Mapping[str, Any]) -> NetworkRecord:
    """A network of a listing."""
    ipam = raw.get("IPAM") or {}
    subnets = tuple(str(c["Subnet"]) for c in ipam.get("Config") or [] if c.get("Subnet"))
    return NetworkRecord(
        id=str(raw.get("Id") or ""),
        name=str(raw.get("Name") or ""),
        labels=_labels(raw.get("Labels")),
        subnets=subnets,
        containers=tuple(raw.get("Containers") or {}),
    )


def container_env(spec: ContainerSpec) -> dict[str, str]:
    """The agent's environment: the spec's, the names of it (:data:`ENV_RUN_NAMES`: what
    a run's environment holds) and under gVisor the sandbox's own process limit (see
    :data:`ENV_NPROC`); the agent takes both out before any program starts."""
    env = dict(spec.env)
    if spec.env:
        # in the environment's own order, a run's: its program lists os.environ so
        env[ENV_RUN_NAMES] = ",".join(spec.env)
    if spec.runtime == "runsc":
        env[ENV_NPROC] = str(spec.pids)
    return env


def update_body(
    memory_mb: int | None = None, pids: int | None = None, cpus: float | None = None
) -> dict[str, Any]:
    """The engine's update body: only the limits that change."""
    body: dict[str, Any] = {}
    if memory_mb is not None:
        # memory and memory+swap together: cgroup v1 refuses Memory above MemorySwap
        mem = memory_mb * 1024 * 1024
        body.update(Memory=mem, MemorySwap=mem)
    if pids is not None:
        body["PidsLimit"] = pids
    if cpus is not None:
        body.update(cpu_quota(cpus))
    return body


def cpu_quota(cpus: float) -> dict[str, int]:
    """``cpus`` cores as the engine's period and quota, in microseconds (CPU_PERIOD_US)."""
    return {
        "CpuPeriod": CPU_PERIOD_US,
        "CpuQuota": max(MIN_CPU_QUOTA_US, round(cpus * CPU_PERIOD_US)),
    }


def split_tag(tag: str) -> tuple[str, str]:
    """``repo:tag`` → (repo, tag); a registry's port is not a tag; no tag is ``latest``."""
    repo, colon, version = tag.rpartition(":")
    if not colon or "/" in version:
        return tag, "latest"
    return repo, version


def epoch(value: object) -> float:
    """Epoch seconds from Docker's ``Created``: an int in listings, an RFC 3339 text
    with nanoseconds in inspections (0.0 when it is neither)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value:
        return 0.0
    text = value.strip()
    head, dot, rest = text.partition(".")
    if dot:  # datetime reads microseconds at most: drop the nanoseconds
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:digits][:6]}{rest[digits:]}"
    if text.endswith("Z"):  # Python 3.10 reads only the +00:00 form
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


def _labels(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def container_record(raw: Mapping[str, Any]) -> ContainerRecord:
    """A container of a listing (``State`` a word) or an inspection (``State`` an
    object, labels under ``Config``)."""
    state = raw.get("State")
    config = raw.get("Config")
    labels = raw.get("Labels") if "Labels" in raw else (config or {}).get("Labels")
    if isinstance(state, dict):
        word, pid = str(state.get("Status") or "unknown"), int(state.get("Pid") or 0)
    else:
        word, pid = str(state or "unknown"), 0
    names = raw.get("Names") or [raw.get("Name") or ""]
    return ContainerRecord(
        id=str(raw["Id"]),
        labels=_labels(labels),
        state=word,
        created=epoch(raw.get("Created")),
        pid=pid or None,
        name=str(names[0] or "").lstrip("/"),
    )


def container_stats(raw: Mapping[str, Any]) -> ContainerStats:
    memory = raw.get("memory_stats") or {}
    detail = memory.get("stats") or {}
    # cgroup v1 names the page cache "cache", v2 "file"
    cache = int(detail.get("cache", detail.get("file", 0)) or 0)
    cpu = (raw.get("cpu_stats") or {}).get("cpu_usage") or {}
    return ContainerStats(
        cpu_ns=int(cpu.get("total_usage") or 0),
        memory_used=int(memory.get("usage") or 0),
        memory_cache=cache,
        memory_limit=int(memory.get("limit") or 0),
    )


def image_records(raw: Mapping[str, Any]) -> list[ImageRecord]:
    """One record per tag of an image of a listing or an inspection."""
    config = raw.get("Config")
    labels = raw.get("Labels") if "Labels" in raw else (config or {}).get("Labels")
    return [
        ImageRecord(
            tag=str(tag),
            id=str(raw.get("Id") or ""),
            size=int(raw.get("Size") or 0),
            labels=_labels(labels),
            created=epoch(raw.get("Created")),
        )
        for tag in raw.get("RepoTags") or []
    ]


def engine_info(info: Mapping[str, Any], version: Mapping[str, Any]) -> EngineInfo:
    """``GET /info`` and ``GET /version`` as one record."""
    platform = version.get("Platform")
    name = str(platform.get("Name") or "") if isinstance(platform, dict) else ""
    return EngineInfo(
        product="Podman" if "podman" in name.lower() else "Docker",
        version=str(version.get("Version") or info.get("ServerVersion") or "") or None,
        api_version=str(version.get("ApiVersion") or "") or None,
        cpus=int(info.get("NCPU") or 1),
        memory_bytes=int(info.get("MemTotal") or 0),
        runtimes=tuple(sorted(info.get("Runtimes") or {})),
        runtime_args={
            str(name): tuple(str(a) for a in (rt or {}).get("runtimeArgs") or ())
            for name, rt in (info.get("Runtimes") or {}).items()
            if isinstance(rt, dict) and rt.get("runtimeArgs")
        },
        cgroup_version=str(info.get("CgroupVersion") or "") or None,
        cgroup_driver=str(info.get("CgroupDriver") or "") or None,
        user_namespaces=any(
            str(o).startswith("name=userns") for o in info.get("SecurityOptions") or ()
        ),
    )


def _tar_context(dockerfile: str, files: Mapping[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in {"Dockerfile": dockerfile.encode(), **files}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


# ---------------------------------------------------------------------- streams
class DockerStream:
    """An :class:`~.base.AttachedStream` over aiodocker's multiplexed attach stream."""

    def __init__(self, stream: Stream, engine: str | None = None) -> None:
        self._stream = stream
        self._engine = engine

    async def write(self, data: bytes) -> None:
        with map_errors("take a container's input", engine=self._engine):
            await self._stream.write_in(data)

    async def read(self) -> tuple[int, bytes] | None:
        with map_errors("send a container's output", engine=self._engine):
            msg = await self._stream.read_out()
            return None if msg is None else (int(msg.stream), bytes(msg.data))

    async def close(self) -> None:
        resp = self._stream._resp
        transport = resp.connection.transport if resp and resp.connection else None
        with map_errors("close a container's streams", engine=self._engine):
            await self._stream.close()
        if transport is not None:
            # a graceful close of a TLS stream waits for the peer's close_notify (up to
            # 30 s): a partitioned engine never sends it, and the run reading this
            # stream would wait that long. Aborting ends the read now.
            transport.abort()

    @property
    def at_eof(self) -> bool:
        queue = self._stream._queue
        return queue is not None and bool(queue.at_eof())


# ---------------------------------------------------------------------- the backend
class DockerBackend:
    """One Docker engine (or Podman's Docker API). Connects on first use.

    ``url`` is ``unix://PATH``, ``tcp://HOST:PORT``, ``ssh://...`` (default: DOCKER_HOST,
    then the local socket). For a remote engine over mutual TLS give ``ca_cert`` (the CA
    that signed the engine's certificate) and ``client_cert``/``client_key``.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        ca_cert: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
    ) -> None:
        self._url = resolve_url(url)
        self._tls = (ca_cert, client_cert, client_key)
        self._docker: aiodocker.Docker | None = None
        self._connector: aiohttp.BaseConnector | None = None

    @classmethod
    def from_config(cls, config: EngineConfig) -> DockerBackend:
        """The backend for one :class:`EngineConfig` (its TLS files checked now)."""
        config.ssl_context()  # unusable PEM files fail here, as InvalidInput
        return cls(
            config.url,
            ca_cert=config.ca_cert,
            client_cert=config.client_cert,
            client_key=config.client_key,
        )

    @property
    def url(self) -> str:
        return self._url

    @property
    def local_paths(self) -> bool:
        # a local socket: the engine runs on this machine (in a container sharing only
        # the socket it would not: the create then fails and the channel is not used)
        return scheme_of(self._url) == "unix"

    @property
    def images(self) -> DockerBackend:
        return self  # a Docker engine keeps its own images

    def __repr__(self) -> str:
        return f"DockerBackend({self._url!r})"

    def _map(self, what: str, *, build_log: list[str] | None = None) -> map_errors:
        return map_errors(what, build_log=build_log, engine=self._url)

    @property
    def _client(self) -> aiodocker.Docker:
        if self._docker is None:
            try:
                if scheme_of(self._url) in ("tcp", "http", "https"):
                    # our own connector: TLS exactly as configured (aiodocker would also
                    # read DOCKER_TLS_VERIFY), and a bounded connect for remote engines
                    ssl_context = self._ssl()
                    self._connector = aiohttp.TCPConnector(
                        ssl=ssl_context if ssl_context is not None else False,
                        limit=0,  # each warm sandbox holds one connection (its attach)
                    )
                    self._docker = aiodocker.Docker(
                        url=self._http_url(),
                        connector=self._connector,
                        timeout=aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT),
                    )
                else:
                    self._docker = aiodocker.Docker(url=self._client_url())
            except Exception as exc:
                raise EngineUnavailable(
                    f"cannot reach a Docker engine at {self._url}: {exc}", _advice(self._url, exc)
                ) from exc
        return self._docker

    def _ssl(self) -> ssl.SSLContext | None:
        ca_cert, client_cert, client_key = self._tls
        if ca_cert is None and client_cert is None and scheme_of(self._url) != "https":
            return None
        context = ssl.create_default_context(cafile=ca_cert)
        if client_cert is not None:
            context.load_cert_chain(client_cert, client_key)
        return context

    def _client_url(self) -> str:
        scheme, sep, rest = self._url.partition("://")
        if sep and scheme == "tcp" and any(self._tls):
            return f"https://{rest}"  # aiohttp speaks TLS for https URLs only
        return self._url

    def _http_url(self) -> str:
        scheme, _, rest = self._url.partition("://")
        tls = scheme == "https" or any(self._tls)
        return f"{'https' if tls else 'http'}://{rest}"

    async def close(self) -> None:
        if self._docker is not None:
            docker, self._docker = self._docker, None
            await docker.close()
        if self._connector is not None:  # ours, not aiodocker's: closed here
            connector, self._connector = self._connector, None
            await connector.close()

    async def ping(self, timeout: float) -> None:
        """``GET /_ping`` within ``timeout`` seconds: the bounded health probe of a fleet.

        Never retried: a killed engine refuses at once, a partitioned one times out."""
        try:
            with self._map("answer a health probe"):
                async with self._client._query(
                    "_ping", versioned_api=False, timeout=aiohttp.ClientTimeout(total=timeout)
                ) as resp:
                    await resp.read()
        except EngineUnavailable as exc:
            raise await self._explained(exc) from exc

    async def _explained(self, exc: EngineUnavailable) -> SandboxkitError:
        """A TLS engine that reset the connection may have refused our certificate: with
        TLS 1.3 its alert can lose the race against the reset. Ask again over TLS 1.2,
        where the refusal is part of the handshake, and name it if so."""
        if not any(self._tls) and scheme_of(self._url) != "https":
            return exc
        if not any(
            isinstance(e, (ConnectionError, aiohttp.ServerDisconnectedError)) for e in _chain(exc)
        ):
            return exc
        host, _, port = self._url.partition("://")[2].rstrip("/").rpartition(":")
        context = self._ssl()
        if context is None or not port.isdigit():
            return exc
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        try:
            with anyio.fail_after(CONNECT_TIMEOUT):
                reader, writer = await asyncio.open_connection(
                    host.strip("[]"), int(port), ssl=context
                )
                try:
                    writer.write(
                        b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"
                    )
                    await writer.drain()
                    await reader.read(64)
                finally:
                    writer.close()
        except Exception as probe:  # noqa: BLE001 - only its words matter
            problem = tls_problem(probe, self._url)
            if problem is not None:
                return EngineError(problem)
        return exc

    # ------------------------------------------------------------------ system
    async def info(self) -> EngineInfo:
        try:
            with self._map("report its info"):
                info, version = await asyncio.gather(
                    _idempotent(self._client.system.info),
                    _idempotent(self._client.version),
                )
        except EngineUnavailable as exc:
            raise await self._explained(exc) from exc
        return engine_info(info, version)

    def limits_fixed(self, runtime: str) -> bool:
        return runtime in FIXED_LIMIT_RUNTIMES

    # ------------------------------------------------------------------ containers
    async def launch(self, spec: ContainerSpec) -> Launched:
        """Create, attach, start: attached before it starts, so no output is missed.

        A failure (or a cancellation) after the create closes the attach stream; the
        container is the caller's to remove, by ``spec.name`` (a create cancelled
        mid-request may still land, with no id known here)."""
        stream: DockerStream | None = None
        try:
            with self._map("create a container"):
                container = await self._client.containers.create(
                    config=create_body(spec), name=spec.name
                )
            cid = str(container.id)
            stream = await self._attach(cid)
            with self._map("start a container"):
                await self._client.containers.container(cid).start()
        except BaseException:
            if stream is not None:
                with (
                    anyio.CancelScope(shield=True),
                    anyio.move_on_after(CLOSE_TIMEOUT),
                    contextlib.suppress(Exception),
                ):
                    await stream.close()
            raise
        return Launched(cid, stream)

    async def _attach(self, cid: str) -> DockerStream:
        """Open the container's stdin/stdout/stderr."""
        docker = self._client
        url = URL(f"containers/{cid}/attach").with_query(
            {"detachKeys": "", "logs": 0, "stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        )

        async def setup() -> tuple[URL, bytes | None, bool]:
            # what aiodocker's attach() does, less the inspect call it makes to learn
            # whether a TTY is on: ours never have one, and each sandbox saves a round trip
            return url, None, False

        stream = Stream(docker, setup, docker._resolve_long_running_timeout(SENTINEL))
        try:
            with self._map("attach to a container"):
                await stream.__aenter__()
        except BaseException:
            # cancelled (a pool closing while the sandbox starts) or failed after the
            # engine answered: the upgraded response would be left open
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await stream.close()
            raise
        return DockerStream(stream, self._url)

    async def update_resources(
        self,
        cid: str,
        *,
        memory_mb: int | None = None,
        pids: int | None = None,
        cpus: float | None = None,
    ) -> None:
        body = update_body(memory_mb, pids, cpus)
        if not body:
            return
        with self._map("change a container's limits"):
            await self._client._query_json(f"containers/{cid}/update", "POST", data=body)

    async def wait_removed(self, cid: str) -> bool:
        """Wait until the engine has removed ``cid`` (True), or report it cannot (False)."""
        with contextlib.suppress(SandboxkitError):  # the caller falls back to a forced remove
            with self._map("wait for a container's removal"), absent(404):  # 404: gone
                await self._client.containers.container(cid).wait(condition="removed")
            return True
        return False

    async def remove(self, cid: str) -> None:
        """Kill and remove; a container already gone (404) or going (409) is fine."""
        with self._map("remove a container"), absent(404, 409):
            container = self._client.containers.container(cid)
            await _idempotent(lambda: container.delete(force=True, v=True))

    async def inspect(self, cid: str) -> ContainerRecord | None:
        with self._map("inspect a container"), absent(404):
            found = await _idempotent(lambda: self._client.containers.get(cid))
            return container_record(found._container)
        return None

    async def list_containers(self, labels: Mapping[str, str | None]) -> list[ContainerRecord]:
        flt = json.dumps({"label": [k if v is None else f"{k}={v}" for k, v in labels.items()]})
        with self._map("list containers"):
            found = await _idempotent(lambda: self._client.containers.list(all=True, filters=flt))
            listed = [dict(c._container) for c in found]
        # after a SIGKILLed dockerd restarts, an AutoRemove container it removed while
        # restoring may stay listed as "dead" with no name although it is gone (inspect:
        # no such container, no files): a ghost of the listing, not a container to reap
        kept = []
        for c in listed:
            ghost = c.get("State") == "dead" and not c.get("Names")
            if ghost and await self.inspect(str(c["Id"])) is None:
                continue
            kept.append(container_record(c))
        return kept

    # ------------------------------------------------------------------ networks
    async def create_network(
        self, name: str, subnet: str, labels: Mapping[str, str], *, internal: bool
    ) -> str:
        body = network_body(name, subnet, labels, internal=internal)
        with self._map("create a network"):
            found = await self._client._query_json("networks/create", "POST", data=body)
        return str(found["Id"])

    async def connect_network(self, network: str, cid: str, address: str) -> None:
        body = {"Container": cid, "EndpointConfig": {"IPAMConfig": {"IPv4Address": address}}}
        with self._map("connect a container to a network"):
            await self._client._query_json(f"networks/{network}/connect", "POST", data=body)

    async def disconnect_network(self, network: str, cid: str) -> None:
        body = {"Container": cid, "Force": True}
        with self._map("disconnect a container from a network"), absent(404, 500):
            await _idempotent(
                lambda: self._client._query_json(
                    f"networks/{network}/disconnect", "POST", data=body
                )
            )

    async def remove_network(self, network: str) -> None:
        with self._map("remove a network"), absent(404):
            await _idempotent(lambda: self._client._query_json(f"networks/{network}", "DELETE"))

    async def list_networks(self, labels: Mapping[str, str | None]) -> list[NetworkRecord]:
        params = {}
        if labels:
            flt = [k if v is None else f"{k}={v}" for k, v in labels.items()]
            params["filters"] = json.dumps({"label": flt})
        with self._map("list networks"):
            found = await _idempotent(
                lambda: self._client._query_json("networks", "GET", params=params)
            )
        return [network_record(raw) for raw in found]

    async def had_oom(self, cid: str, since: float) -> bool:
        """Whether the engine saw an OOM kill in ``cid`` since ``since`` (epoch seconds).

        Works after the container is gone (the engine keeps recent events): the verdict
        of a sandbox that died whole, as under gVisor where the OOM killer takes the
        sandbox's kernel rather than one process.
        """
        params = {
            "since": f"{since - 1:.3f}",
            "until": f"{time.time():.3f}",
            "filters": json.dumps({"container": [cid], "event": ["oom"]}),
        }
        with self._map("list events"):
            async with self._client._query("events", params=params) as resp:
                return '"oom"' in await resp.text()

    # ------------------------------------------------------------------ usage
    # Sandbox.metrics: the engine's own account of a container's cgroup (Docker's, not
    # part of the engine seam: a backend without it reports no CPU or memory figures)
    async def stats(self, cid: str) -> ContainerStats:
        """``cid``'s CPU time and memory now (one sample: ``one-shot``, no wait)."""
        with self._map("report a container's stats"):
            raw = await _idempotent(
                lambda: self._client._query_json(
                    f"containers/{cid}/stats", params={"stream": "false", "one-shot": "true"}
                )
            )
        return container_stats(raw)

    # ------------------------------------------------------------------ checkpoints
    # Sandbox.pause of a gVisor session keeps its memory through the engine's
    # experimental checkpoint API (dockerd --experimental); see sandboxkit/_snapshot.
    async def can_checkpoint(self) -> bool:
        """Whether this engine's checkpoint API is on (an experimental daemon)."""
        with self._map("report its info"):
            info = await _idempotent(self._client.system.info)
        return bool(info.get("ExperimentalBuild"))

    async def root_dir(self) -> str:
        """Where the engine keeps its data (its checkpoints under ``containers/``)."""
        with self._map("report its info"):
            info = await _idempotent(self._client.system.info)
        return str(info.get("DockerRootDir") or "/var/lib/docker")

    async def checkpoint(self, cid: str, name: str) -> None:
        """Checkpoint ``cid`` as ``name`` and stop it (its memory kept with it)."""
        with self._map("checkpoint a container"):
            async with self._client._query(
                f"containers/{cid}/checkpoints",
                "POST",
                data=json.dumps({"CheckpointID": name, "Exit": True}),
                headers={"content-type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=None),
            ) as resp:
                await resp.read()

    async def restore(self, cid: str, name: str) -> AttachedStream:
        """Attach to the stopped ``cid``, then start it from its checkpoint ``name``."""
        stream = await self._attach(cid)
        try:
            with self._map("restore a container from its checkpoint"):
                async with self._client._query(
                    f"containers/{cid}/start",
                    "POST",
                    params={"checkpoint": name},
                    timeout=aiohttp.ClientTimeout(total=None),
                ) as resp:
                    await resp.read()
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await stream.close()
            raise
        return stream

    async def delete_checkpoint(self, cid: str, name: str) -> None:
        with self._map("delete a checkpoint"), absent(404):
            async with self._client._query(
                f"containers/{cid}/checkpoints/{name}", "DELETE"
            ) as resp:
                await resp.read()

    async def rename(self, cid: str, name: str) -> None:
        with self._map("rename a container"):
            async with self._client._query(
                f"containers/{cid}/rename", "POST", params={"name": name}
            ) as resp:
                await resp.read()

    # ------------------------------------------------------------------ images
    async def image_exists(self, tag: str) -> bool:
        with self._map(f"inspect image {tag}"), absent(404):
            await _idempotent(lambda: self._client.images.inspect(tag))
            return True
        return False

    async def list_images(self, reference: str) -> list[ImageRecord]:
        with self._map("list images"):
            found = await _idempotent(
                lambda: self._client.images.list(filters={"reference": [reference]})
            )
        return [record for image in found for record in image_records(image)]

    async def remove_image(self, tag: str) -> None:
        with self._map(f"remove image {tag}"):
            await self._client.images.delete(tag, force=False)

    async def build(
        self,
        tag: str,
        dockerfile: str,
        files: Mapping[str, bytes],
        on_line: Callable[[str], None] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """Build ``tag`` from an in-memory context; stream its log to ``on_line``."""
        context = await asyncio.to_thread(_tar_context, dockerfile, files)
        log: list[str] = []
        with self._map(f"build {tag}", build_log=log):
            chunks = self._client.images.build(
                fileobj=context,
                encoding="application/x-tar",
                tag=tag,
                rm=True,
                forcerm=True,
                labels=dict(labels or {}),
                stream=True,
            )
            async for chunk in chunks:
                if chunk.get("error"):
                    log.append(str(chunk["error"]))
                    raise ImageError(
                        f"building {tag} failed: {chunk['error']}",
                        "".join(log[-_BUILD_LOG_TAIL:]),
                    )
                text = chunk.get("stream") or chunk.get("status") or ""
                if text:
                    log.append(text)
                    del log[:-200]
                    if on_line is not None:
                        on_line(text.rstrip("\n"))
        if not await self.image_exists(tag):
            raise ImageError(
                f"building {tag} ended without the image", "".join(log[-_BUILD_LOG_TAIL:])
            )

    async def import_rootfs(self, tag: str, tar_path: str) -> None:
        """``docker import``: a root filesystem tarball becomes image ``tag``."""
        repo, version = split_tag(tag)
        # aiohttp reads the file off-loop
        with self._map(f"import {tag}"), open(tar_path, "rb") as f:  # noqa: ASYNC230
            async with self._client._query(
                "images/create",
                method="POST",
                params={"fromSrc": "-", "repo": repo, "tag": version},
                data=f,
                headers={"content-type": "application/x-tar"},
                timeout=aiohttp.ClientTimeout(total=None),
            ) as resp:
                body = await resp.text()
        if '"error"' in body:
            raise ImageError(f"importing {tag} failed", body[-2000:])

    async def pull(self, reference: str, tag: str) -> None:
        repo, version = split_tag(tag)
        with self._map(f"pull {reference}"):
            await self._client.images.pull(reference)
            await self._client.images.tag(reference, repo, tag=version)

    async def inspect_image(self, tag: str) -> ImageRecord | None:
        """Image ``tag``'s record, or None when absent; retried."""
        with self._map(f"inspect image {tag}"), absent(404):
            found = await _idempotent(lambda: self._client.images.inspect(tag))
            config = found.get("Config")
            return ImageRecord(
                tag=tag,
                id=str(found.get("Id") or ""),
                size=int(found.get("Size") or 0),
                labels=_labels((config or {}).get("Labels")),
                created=epoch(found.get("Created")),
            )
        return None

    async def save_image(self, tag: str) -> AsyncIterator[bytes]:
        """Image ``tag`` as a ``docker save`` tarball, streamed in chunks."""
        with self._map(f"export image {tag}"):
            async with self._client.images.export_image(tag) as content:
                while True:
                    chunk = await content.read(TRANSFER_CHUNK)
                    if not chunk:
                        return
                    yield chunk

    async def load_image(self, chunks: AsyncIterable[bytes]) -> None:
        """``docker load`` from a tarball streamed in ``chunks`` (from :meth:`save_image`)."""
        with self._map("load an image"):
            async with self._client._query(
                "images/load",
                method="POST",
                params={"quiet": "1"},
                data=chunks,
                headers={"content-type": "application/x-tar"},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
                chunked=True,
            ) as resp:
                body = await resp.text()
        for line in body.splitlines():
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if isinstance(message, dict) and message.get("error"):
                    raise ImageError(f"{self._url} could not load the image: {message['error']}")
