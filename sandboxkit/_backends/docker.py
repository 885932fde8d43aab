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
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import aiodocker
import aiohttp
from aiodocker.stream import Stream
from aiodocker.types import SENTINEL
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential
from yarl import URL

from .._errors import EngineError, EngineUnavailable, ImageError, SandboxkitError
from .base import ContainerSpec

T = TypeVar("T")

HOW_TO_START = (
    "Start one with `sudo bash scripts/engine-up.sh` (installs docker.io from your "
    "distribution and starts dockerd), or point DOCKER_HOST at a running engine; "
    "`sandboxkit doctor` tells what is missing."
)

DEFAULT_URL = "unix:///var/run/docker.sock"
# where engines listen when DOCKER_HOST does not say: the docker CLI's default first
_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock", "~/.docker/run/docker.sock")
_CANNOT_CONNECT = 900  # aiodocker's status for "could not connect"
_BUILD_LOG_TAIL = 40  # lines of a build's log an ImageError carries


def resolve_url(url: str | None = None) -> str:
    """The engine's address: ``url``, else ``DOCKER_HOST``, else the local socket."""
    if url:
        return url
    env = os.environ.get("DOCKER_HOST")
    if env:
        return env
    for path in (Path(p).expanduser() for p in _SOCKETS):
        if path.is_socket():
            return f"unix://{path}"
    return DEFAULT_URL


# ---------------------------------------------------------------------- errors
def _mapped(exc: Exception, what: str, build_log: list[str] | None) -> SandboxkitError:
    if isinstance(exc, (aiohttp.ClientConnectorError, FileNotFoundError, ConnectionRefusedError)):
        return EngineUnavailable(f"no Docker engine answers ({exc}). {HOW_TO_START}")
    if isinstance(exc, aiodocker.DockerError):
        if exc.status == _CANNOT_CONNECT:
            return EngineUnavailable(f"no Docker engine answers ({exc.message}). {HOW_TO_START}")
        refused = f"Docker engine refused to {what}: [{exc.status}] {exc.message}"
        if build_log is not None:
            return ImageError(refused, "".join(build_log[-_BUILD_LOG_TAIL:]))
        return EngineError(refused)
    return EngineError(f"Docker engine failed to {what}: {type(exc).__name__}: {exc}")


class map_errors:
    """Turn aiodocker's and aiohttp's errors into sandboxkit's, saying what failed.

    ``what`` completes "Docker engine refused to ...". With ``build_log``, a refusal is
    an ImageError carrying the log's tail. sandboxkit's own errors pass through, and
    nothing is swallowed (see :class:`absent` for that).
    """

    def __init__(self, what: str, *, build_log: list[str] | None = None) -> None:
        self.what = what
        self.build_log = build_log

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, Exception) and not isinstance(exc, SandboxkitError):
            raise _mapped(exc, self.what, self.build_log) from exc


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
def create_body(spec: ContainerSpec) -> dict[str, Any]:
    """The engine's create body for ``spec``: every DESIGN §4 default, nothing loosened."""
    mem = spec.memory_mb * 1024 * 1024
    tmpfs_opts = f"rw,exec,nosuid,nodev,size={spec.disk_mb}m"
    host: dict[str, Any] = {
        "NetworkMode": "bridge" if spec.network else "none",
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges"],
        "ReadonlyRootfs": True,
        "Tmpfs": {
            spec.workdir: f"{tmpfs_opts},uid={spec.uid},gid={spec.uid},mode=0755",
            "/tmp": f"{tmpfs_opts},mode=1777",
        },
        "ShmSize": 16 * 1024 * 1024,
        "Memory": mem,
        "MemorySwap": mem,  # equal: no swap
        "PidsLimit": spec.pids,
        "NanoCpus": int(spec.cpus * 1e9),
        "Ulimits": [
            {"Name": "nofile", "Soft": 1024, "Hard": 1024},
            {"Name": "core", "Soft": 0, "Hard": 0},
        ],
        "LogConfig": {"Type": "none"},  # a flood never reaches the host's disk
        "Runtime": spec.runtime,
        "AutoRemove": True,  # when the command exits (its stdin closed), the engine removes it
        "Init": False,  # the command (sandboxkit's agent) is PID 1 and reaps
        "IpcMode": "private",
        "Privileged": False,
    }
    return {
        "Image": spec.image,
        "Cmd": list(spec.command),
        "User": f"{spec.uid}:{spec.uid}",
        "WorkingDir": spec.workdir,
        "Env": [f"{k}={v}" for k, v in sorted(spec.env.items())],
        "Labels": dict(spec.labels),
        "Hostname": spec.hostname,
        "AttachStdin": True,
        "AttachStdout": True,
        "AttachStderr": True,
        "OpenStdin": True,
        "StdinOnce": True,  # our attach closing = EOF for the agent = the container ends
        "Tty": False,
        "NetworkDisabled": not spec.network,
        "StopSignal": "SIGKILL",
        "HostConfig": host,
    }


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
        body["NanoCpus"] = int(cpus * 1e9)
    return body


def split_tag(tag: str) -> tuple[str, str]:
    """``repo:tag`` → (repo, tag); a registry's port is not a tag; no tag is ``latest``."""
    repo, colon, version = tag.rpartition(":")
    if not colon or "/" in version:
        return tag, "latest"
    return repo, version


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

    def __init__(self, stream: Stream) -> None:
        self._stream = stream

    async def write(self, data: bytes) -> None:
        with map_errors("take a container's input"):
            await self._stream.write_in(data)

    async def read(self) -> tuple[int, bytes] | None:
        with map_errors("send a container's output"):
            msg = await self._stream.read_out()
            return None if msg is None else (int(msg.stream), bytes(msg.data))

    async def close(self) -> None:
        with map_errors("close a container's streams"):
            await self._stream.close()

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

    @property
    def url(self) -> str:
        return self._url

    def __repr__(self) -> str:
        return f"DockerBackend({self._url!r})"

    @property
    def _client(self) -> aiodocker.Docker:
        if self._docker is None:
            try:
                self._docker = aiodocker.Docker(url=self._client_url(), ssl_context=self._ssl())
            except Exception as exc:
                raise EngineUnavailable(
                    f"cannot reach a Docker engine at {self._url}: {exc}. {HOW_TO_START}"
                ) from exc
        return self._docker

    def _ssl(self) -> ssl.SSLContext | None:
        ca_cert, client_cert, client_key = self._tls
        if ca_cert is None and client_cert is None:
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

    async def close(self) -> None:
        if self._docker is not None:
            docker, self._docker = self._docker, None
            await docker.close()

    # ------------------------------------------------------------------ system
    async def info(self) -> dict[str, Any]:
        with map_errors("report its info"):
            return dict(await _idempotent(self._client.system.info))

    async def version(self) -> dict[str, Any]:
        with map_errors("report its version"):
            return dict(await self._client.version())

    # ------------------------------------------------------------------ containers
    async def create(self, spec: ContainerSpec) -> str:
        with map_errors("create a container"):
            container = await self._client.containers.create(
                config=create_body(spec), name=spec.name
            )
            return str(container.id)

    async def start(self, cid: str) -> None:
        with map_errors("start a container"):
            await self._client.containers.container(cid).start()

    async def attach(self, cid: str) -> DockerStream:
        """Open the container's stdin/stdout/stderr (before start, so nothing is missed)."""
        docker = self._client
        url = URL(f"containers/{cid}/attach").with_query(
            {"detachKeys": "", "logs": 0, "stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        )

        async def setup() -> tuple[URL, bytes | None, bool]:
            # what aiodocker's attach() does, less the inspect call it makes to learn
            # whether a TTY is on: ours never have one, and each sandbox saves a round trip
            return url, None, False

        stream = Stream(docker, setup, docker._resolve_long_running_timeout(SENTINEL))
        with map_errors("attach to a container"):
            await stream.__aenter__()
        return DockerStream(stream)

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
        with map_errors("change a container's limits"):
            await self._client._query_json(f"containers/{cid}/update", "POST", data=body)

    async def wait_removed(self, cid: str) -> bool:
        """Wait until the engine has removed ``cid`` (True), or report it cannot (False)."""
        with contextlib.suppress(SandboxkitError):  # the caller falls back to a forced remove
            with map_errors("wait for a container's removal"), absent(404):  # 404: gone
                await self._client.containers.container(cid).wait(condition="removed")
            return True
        return False

    async def remove(self, cid: str) -> None:
        """Kill and remove; a container already gone (404) or going (409) is fine."""
        with map_errors("remove a container"), absent(404, 409):
            container = self._client.containers.container(cid)
            await _idempotent(lambda: container.delete(force=True, v=True))

    async def inspect(self, cid: str) -> dict[str, Any] | None:
        with map_errors("inspect a container"), absent(404):
            found = await _idempotent(lambda: self._client.containers.get(cid))
            return dict(found._container)
        return None

    async def list_containers(self, labels: Mapping[str, str | None]) -> list[dict[str, Any]]:
        flt = json.dumps({"label": [k if v is None else f"{k}={v}" for k, v in labels.items()]})
        with map_errors("list containers"):
            found = await _idempotent(lambda: self._client.containers.list(all=True, filters=flt))
            return [dict(c._container) for c in found]

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
        with map_errors("list events"):
            async with self._client._query("events", params=params) as resp:
                return '"oom"' in await resp.text()

    # ------------------------------------------------------------------ images
    async def image_exists(self, tag: str) -> bool:
        with map_errors(f"inspect image {tag}"), absent(404):
            await _idempotent(lambda: self._client.images.inspect(tag))
            return True
        return False

    async def list_images(self, reference: str) -> list[dict[str, Any]]:
        with map_errors("list images"):
            found = await _idempotent(
                lambda: self._client.images.list(filters={"reference": [reference]})
            )
            return list(found)

    async def remove_image(self, tag: str) -> None:
        with map_errors(f"remove image {tag}"):
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
        with map_errors(f"build {tag}", build_log=log):
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
        with map_errors(f"import {tag}"), open(tar_path, "rb") as f:  # noqa: ASYNC230
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
        with map_errors(f"pull {reference}"):
            await self._client.images.pull(reference)
            await self._client.images.tag(reference, repo, tag=version)
