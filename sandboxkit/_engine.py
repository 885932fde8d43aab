"""The only module that talks to the Docker engine (through aiodocker); maps its errors.

Idempotent calls (inspect, list, remove) are retried on transient connection errors with
tenacity; calls that start or feed a user's run never are.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import tarfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiodocker
import aiohttp
from aiodocker.stream import Stream
from aiodocker.types import SENTINEL
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)
from yarl import URL

from ._errors import EngineError, EngineUnavailable, ImageError

LABEL_PREFIX = "org.sandboxkit"
LABEL_MANAGED = f"{LABEL_PREFIX}.managed"
LABEL_OWNER = f"{LABEL_PREFIX}.owner"
LABEL_POOL = f"{LABEL_PREFIX}.pool"
LABEL_VERSION = f"{LABEL_PREFIX}.version"

HOW_TO_START = (
    "Start one with `sudo bash scripts/engine-up.sh` (installs docker.io from your "
    "distribution and starts dockerd), or point DOCKER_HOST at a running engine; "
    "`sandboxkit doctor` tells what is missing."
)

_TRANSIENT = (aiohttp.ClientConnectionError, asyncio.TimeoutError, ConnectionError)


def _map(exc: BaseException, what: str) -> EngineError:
    if isinstance(exc, EngineError):
        return exc
    if isinstance(exc, (aiohttp.ClientConnectorError, FileNotFoundError, ConnectionRefusedError)):
        return EngineUnavailable(f"no Docker engine answers ({exc}). {HOW_TO_START}")
    if isinstance(exc, aiodocker.DockerError) and exc.status == 900:
        # aiodocker's code for "could not connect"
        return EngineUnavailable(f"no Docker engine answers ({exc.message}). {HOW_TO_START}")
    if isinstance(exc, aiodocker.DockerError):
        return EngineError(f"Docker engine refused to {what}: [{exc.status}] {exc.message}")
    return EngineError(f"Docker engine failed to {what}: {type(exc).__name__}: {exc}")


def _retrying() -> AsyncRetrying:
    return AsyncRetrying(
        retry=retry_if_exception_type(_TRANSIENT),
        stop=stop_after_attempt(3),
        wait=wait_exponential(multiplier=0.05, max=1.0),
        reraise=True,
    )


class Engine:
    """A connection to one Docker engine. Cheap to create; close it when done."""

    def __init__(self, url: str | None = None) -> None:
        self._url = url
        self._docker: aiodocker.Docker | None = None

    @property
    def url(self) -> str:
        return self._url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"

    @property
    def docker(self) -> aiodocker.Docker:
        if self._docker is None:
            try:
                self._docker = aiodocker.Docker(url=self._url)
            except Exception as exc:
                raise EngineUnavailable(
                    f"cannot reach a Docker engine: {exc}. {HOW_TO_START}"
                ) from exc
        return self._docker

    async def close(self) -> None:
        if self._docker is not None:
            docker, self._docker = self._docker, None
            await docker.close()

    # ---------------------------------------------------------------- system
    async def info(self) -> dict[str, Any]:
        try:
            async for attempt in _retrying():
                with attempt:
                    return dict(await self.docker.system.info())
        except Exception as exc:
            raise _map(exc, "report its info") from exc
        raise AssertionError("unreachable")

    async def version(self) -> dict[str, Any]:
        try:
            return dict(await self.docker.version())
        except Exception as exc:
            raise _map(exc, "report its version") from exc

    # ---------------------------------------------------------------- images
    async def image_exists(self, tag: str) -> bool:
        try:
            async for attempt in _retrying():
                with attempt:
                    await self.docker.images.inspect(tag)
                    return True
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return False
            raise _map(exc, f"inspect image {tag}") from exc
        except Exception as exc:
            raise _map(exc, f"inspect image {tag}") from exc
        return False

    async def list_images(self, reference: str) -> list[dict[str, Any]]:
        try:
            images = await self.docker.images.list(filters={"reference": [reference]})
        except Exception as exc:
            raise _map(exc, "list images") from exc
        return list(images)

    async def remove_image(self, tag: str) -> None:
        try:
            await self.docker.images.delete(tag, force=False)
        except Exception as exc:
            raise _map(exc, f"remove image {tag}") from exc

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
        tail: list[str] = []
        try:
            stream = self.docker.images.build(
                fileobj=context,
                encoding="application/x-tar",
                tag=tag,
                rm=True,
                forcerm=True,
                labels=dict(labels or {}),
                stream=True,
            )
            async for chunk in stream:
                text = chunk.get("stream") or chunk.get("status") or ""
                if chunk.get("error"):
                    tail.append(str(chunk["error"]))
                    raise ImageError(
                        f"building {tag} failed: {chunk['error']}", "".join(tail[-40:])
                    )
                if text:
                    tail.append(text)
                    del tail[:-200]
                    if on_line is not None:
                        on_line(text.rstrip("\n"))
        except ImageError:
            raise
        except aiodocker.DockerError as exc:
            raise ImageError(f"building {tag} failed: {exc.message}", "".join(tail[-40:])) from exc
        except Exception as exc:
            raise _map(exc, f"build {tag}") from exc
        if not await self.image_exists(tag):
            raise ImageError(f"building {tag} ended without the image", "".join(tail[-40:]))

    async def import_rootfs(self, tag: str, tar_path: str) -> None:
        """``docker import``: a root filesystem tarball becomes image ``tag``."""
        repo, _, version = tag.rpartition(":")
        try:
            with open(tar_path, "rb") as f:  # noqa: ASYNC230 - aiohttp reads it off-loop
                async with self.docker._query(
                    "images/create",
                    method="POST",
                    params={"fromSrc": "-", "repo": repo, "tag": version},
                    data=f,
                    headers={"content-type": "application/x-tar"},
                    timeout=aiohttp.ClientTimeout(total=None),
                ) as resp:
                    body = await resp.text()
        except Exception as exc:
            raise _map(exc, f"import {tag}") from exc
        if '"error"' in body:
            raise ImageError(f"importing {tag} failed", body[-2000:])

    # ---------------------------------------------------------------- containers
    async def create(self, config: dict[str, Any], name: str | None = None) -> str:
        try:
            container = await self.docker.containers.create(config=config, name=name)
        except Exception as exc:
            raise _map(exc, "create a container") from exc
        return str(container.id)

    def container(self, cid: str) -> aiodocker.containers.DockerContainer:
        return self.docker.containers.container(cid)

    async def start(self, cid: str) -> None:
        try:
            await self.container(cid).start()
        except Exception as exc:
            raise _map(exc, "start a container") from exc

    async def attach(self, cid: str) -> Stream:
        """Open the container's stdin/stdout/stderr (before start, so nothing is missed)."""
        url = URL(f"containers/{cid}/attach").with_query(
            {"detachKeys": "", "logs": 0, "stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        )

        async def setup() -> tuple[URL, bytes | None, bool]:
            # what aiodocker's attach() does, less the inspect call it makes to learn
            # whether a TTY is on: ours never have one, and each sandbox saves a round trip
            return url, None, False

        stream = Stream(self.docker, setup, self.docker._resolve_long_running_timeout(SENTINEL))
        try:
            await stream.__aenter__()
        except Exception as exc:
            raise _map(exc, "attach to a container") from exc
        return stream

    async def wait_removed(self, cid: str) -> bool:
        """Wait until the engine has removed ``cid`` (True), or report it cannot (False)."""
        try:
            await self.container(cid).wait(condition="removed")
        except aiodocker.DockerError as exc:
            return exc.status == 404  # already gone
        except Exception:  # noqa: BLE001 - the caller falls back to a forced remove
            return False
        return True

    async def update_memory(self, cid: str, memory_bytes: int) -> None:
        try:
            async with self.docker._query(
                f"containers/{cid}/update",
                method="POST",
                data=json.dumps({"Memory": memory_bytes, "MemorySwap": memory_bytes}),
                headers={"content-type": "application/json"},
            ):
                pass
        except Exception as exc:
            raise _map(exc, "update a container's memory limit") from exc

    async def inspect(self, cid: str) -> dict[str, Any] | None:
        try:
            async for attempt in _retrying():
                with attempt:
                    c = await self.docker.containers.get(cid)
                    return dict(c._container)
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return None
            raise _map(exc, "inspect a container") from exc
        except Exception as exc:
            raise _map(exc, "inspect a container") from exc
        return None

    async def remove(self, cid: str) -> None:
        """Kill and remove; a container already gone (or going) is fine."""
        try:
            async for attempt in _retrying():
                with attempt:
                    await self.container(cid).delete(force=True, v=True)
        except aiodocker.DockerError as exc:
            if exc.status in (404, 409):
                return
            raise _map(exc, "remove a container") from exc
        except Exception as exc:
            raise _map(exc, "remove a container") from exc

    async def list_containers(self, labels: Mapping[str, str | None]) -> list[dict[str, Any]]:
        flt = [k if v is None else f"{k}={v}" for k, v in labels.items()]
        try:
            async for attempt in _retrying():
                with attempt:
                    found = await self.docker.containers.list(
                        all=True, filters=json.dumps({"label": flt})
                    )
                    return [dict(c._container) for c in found]
        except Exception as exc:
            raise _map(exc, "list containers") from exc
        return []

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
        try:
            async with self.docker._query("events", params=params) as resp:
                body = await resp.text()
        except Exception as exc:
            raise _map(exc, "list events") from exc
        return '"oom"' in body

    async def events(self, filters: Mapping[str, list[str]]) -> AsyncIterator[dict[str, Any]]:
        subscriber = self.docker.events.subscribe(filters=dict(filters))  # type: ignore[no-untyped-call]
        while True:
            event = await subscriber.get()
            if event is None:
                return
            yield event


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


def owner_identity() -> str:
    """This process, in a form that survives PID reuse: ``host:pid:start-ticks``."""
    pid = os.getpid()
    try:
        with open(f"/proc/{pid}/stat") as f:
            start = f.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        start = "0"
    return f"{os.uname().nodename}:{pid}:{start}"


def owner_alive(owner: str) -> bool:
    """Whether the process named by ``owner_identity()`` still runs on this host."""
    try:
        host, pid_s, start = owner.rsplit(":", 2)
        pid = int(pid_s)
    except ValueError:
        return False
    if host != os.uname().nodename:
        return True  # another machine's container: never ours to judge
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19] == start
    except (OSError, IndexError):
        return False
