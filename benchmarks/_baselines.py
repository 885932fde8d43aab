"""What sandboxkit is compared with: the host's own interpreter, a peer library
(epicbox), raw ``docker exec``, raw API create+start+wait+remove, raw container churn.

Every baseline gets the same image sandboxkit uses, so the comparison is about the
path, not the image. Nothing here pulls: the image exists locally or the bench stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import time
from typing import Any

import aiodocker

NO_NETWORK = {"NetworkMode": "none"}


def host_python_once() -> None:
    """The host starting its own interpreter (``sys.executable``, never a version shim)."""
    out = subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True, check=True).stdout
    assert out == b"1\n", out


def host_rate(n: int) -> float:
    """Sequential host subprocess runs per second."""
    t0 = time.perf_counter()
    for _ in range(n):
        host_python_once()
    return n / (time.perf_counter() - t0)


# --------------------------------------------------------------------------- epicbox


def epicbox_setup(image: str) -> Any | None:
    """Configure epicbox with our image; ``None`` (with a note) when it is not installed."""
    try:
        import epicbox
        import structlog
    except ImportError:
        return None
    # epicbox logs every step through structlog to stdout by default; keep the table clean
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    epicbox.config.DOCKER_WORKDIR = "/work"  # exists (mode 1777) in our image
    epicbox.configure(profiles=[epicbox.Profile("python", image, user="65534")])
    return epicbox


def epicbox_once(epicbox: Any) -> None:
    result = epicbox.run(
        "python",
        "python3 main.py",
        files=[{"name": "main.py", "content": b"print(1)"}],
        limits={"cputime": 2, "memory": 128},
    )
    assert result["stdout"] == b"1\n", result


# --------------------------------------------------------------------------- raw engine


class RawDocker:
    """Direct engine calls through aiodocker, with no sandboxkit code in the way."""

    def __init__(self, image: str) -> None:
        self.image = image
        self.docker = aiodocker.Docker()
        self.made: set[str] = set()

    async def close(self) -> None:
        for cid in list(self.made):
            await self._remove(cid)
        await self.docker.close()

    async def _remove(self, cid: str) -> None:
        with contextlib.suppress(aiodocker.DockerError):
            await self.docker.containers.container(cid).delete(force=True)
        self.made.discard(cid)

    async def _create(self, cmd: list[str]) -> aiodocker.containers.DockerContainer:
        c = await self.docker.containers.create(
            config={
                "Image": self.image,
                "Cmd": cmd,
                "User": "65534:65534",
                "NetworkDisabled": True,
                "HostConfig": dict(NO_NETWORK),
            }
        )
        self.made.add(c.id)
        return c

    async def one_shot(self) -> None:
        """create + start + wait + remove of ``python3 -c 'print(1)'``."""
        c = await self._create(["python3", "-c", "print(1)"])
        await c.start()
        status = await c.wait()
        assert status["StatusCode"] == 0, status
        await self._remove(c.id)

    async def churn_one(self) -> None:
        """create + start + remove of an idle container: the engine's churn unit."""
        c = await self._create(["sleep", "3600"])
        await c.start()
        await self._remove(c.id)

    async def exec_target(self) -> aiodocker.containers.DockerContainer:
        c = await self._create(["sleep", "3600"])
        await c.start()
        return c

    async def exec_once(self, c: aiodocker.containers.DockerContainer) -> None:
        """``docker exec CONTAINER python3 -c 'print(1)'``, output read to the end."""
        ex = await c.exec(["python3", "-c", "print(1)"], stdout=True, stderr=True)
        out = b""
        async with ex.start(detach=False) as stream:
            while True:
                msg = await stream.read_out()
                if msg is None:
                    break
                out += msg.data
        assert out == b"1\n", out


async def concurrent_rate(n: int, concurrency: int, one: Any) -> float:
    """Calls of ``one()`` per second with ``concurrency`` callers sharing ``n`` calls."""
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - t0)
