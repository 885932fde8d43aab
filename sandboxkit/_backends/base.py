"""The seam between sandboxkit and a container engine: what a backend must do.

The pool, boxes, images, the reaper and the CLI speak only these two protocols, so a
pool can span several engines (one :class:`Backend` each, e.g. a local socket and remote
engines over mutual TLS) and other engines (Podman, Kubernetes) can plug in without
touching the pool. A backend raises only sandboxkit's own errors
(:class:`~sandboxkit.EngineError`, :class:`~sandboxkit.EngineUnavailable`,
:class:`~sandboxkit.ImageError`), never its client library's.

Records a backend returns (``info``, ``inspect``, ``list_containers``, ``list_images``)
are dicts in the Docker Engine API's shape (``Id``, ``Labels``, ``State``, ``RepoTags``,
``Runtimes``...), the lingua franca of Docker and Podman; another backend maps its own
objects to the keys sandboxkit reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

STREAM_STDOUT = 1  # the stream numbers of AttachedStream.read
STREAM_STDERR = 2


@dataclass(frozen=True)
class ContainerSpec:
    """One sandbox container, engine-neutral: what runs, as whom, under which limits.

    Every backend applies the same isolation to it (DESIGN §4): no capabilities, no new
    privileges, a read-only root filesystem with size-bounded tmpfs at ``workdir`` and
    ``own_dir`` (both owned by ``uid``; ``own_dir`` holds a session run's source and what
    its compiler makes, out of the user's files) and ``/tmp``, no network unless
    ``network``, memory without swap, no TTY, stdin attached once (closing it ends the
    container), and removal when ``command`` exits.
    """

    name: str
    image: str
    command: tuple[str, ...]
    uid: int
    workdir: str
    own_dir: str
    env: Mapping[str, str]
    labels: Mapping[str, str]
    memory_mb: int
    pids: int
    cpus: float
    disk_mb: int
    runtime: str = "runc"
    network: bool = False
    hostname: str = "sandbox"
    # a Unix socket on this machine, mounted read-only at CHANNEL_PATH (see _channel);
    # only offered to a backend whose ``local_paths`` is true
    channel: str | None = None


class AttachedStream(Protocol):
    """A container's stdin, stdout and stderr, attached before it starts.

    Reads return ``(stream, data)`` with ``stream`` 1 (stdout) or 2 (stderr), and None
    once the container's output ended. Any failure is a sandboxkit error.
    """

    async def write(self, data: bytes) -> None:
        """Send ``data`` to the container's stdin."""

    async def read(self) -> tuple[int, bytes] | None:
        """The next chunk of output, or None at end of stream."""

    async def close(self) -> None:
        """Close both directions (end of input for the container); safe to repeat."""

    @property
    def at_eof(self) -> bool:
        """Whether the output ended and every chunk of it was read."""


class Backend(Protocol):
    """One container engine. Cheap to create (connects on first use); close when done."""

    @property
    def url(self) -> str:
        """The engine's address, e.g. ``unix:///var/run/docker.sock``: its identity in a fleet."""

    @property
    def local_paths(self) -> bool:
        """Whether a path on this machine names the same file for the engine (it runs
        here), so a container may mount one of sandboxkit's own sockets."""

    async def close(self) -> None:
        """Release the connection; the backend may connect again if used later."""

    # ------------------------------------------------------------------ system
    async def info(self) -> dict[str, Any]:
        """The engine's system info (``CgroupVersion``, ``Runtimes``...); retried."""

    async def version(self) -> dict[str, Any]:
        """The engine's version (``Version``, ``ApiVersion``)."""

    async def ping(self, timeout: float) -> None:
        """Answer within ``timeout`` seconds or raise: the bounded health probe. Never
        retried (a fleet's monitor decides what a failure means)."""

    # ------------------------------------------------------------------ containers
    async def create(self, spec: ContainerSpec) -> str:
        """Create (not start) the container ``spec`` describes; its id. Never retried."""

    async def attach(self, cid: str) -> AttachedStream:
        """Open ``cid``'s streams; done before :meth:`start` so no output is missed."""

    async def start(self, cid: str) -> None:
        """Start a created container."""

    async def update_resources(
        self,
        cid: str,
        *,
        memory_mb: int | None = None,
        pids: int | None = None,
        cpus: float | None = None,
    ) -> None:
        """Change a running container's limits in place (None: keep that one)."""

    async def wait_removed(self, cid: str) -> bool:
        """Wait until ``cid`` is gone (True), or report that this cannot be known (False)."""

    async def remove(self, cid: str) -> None:
        """Kill and remove ``cid`` (an id or a name); one already gone is fine; retried."""

    async def inspect(self, cid: str) -> dict[str, Any] | None:
        """``cid``'s record, or None when there is no such container; retried."""

    async def list_containers(self, labels: Mapping[str, str | None]) -> list[dict[str, Any]]:
        """Every container, running or not, carrying all ``labels`` (None: any value)."""

    async def had_oom(self, cid: str, since: float) -> bool:
        """Whether an OOM kill hit ``cid`` since ``since`` (epoch s), even once it is gone."""

    # ------------------------------------------------------------------ images
    async def image_exists(self, tag: str) -> bool:
        """Whether image ``tag`` is present; retried."""

    async def list_images(self, reference: str) -> list[dict[str, Any]]:
        """Images whose name matches ``reference`` (a pattern like ``sandboxkit/*``)."""

    async def inspect_image(self, tag: str) -> dict[str, Any] | None:
        """Image ``tag``'s record (``Id``, ``Size``...), or None when absent; retried."""

    def save_image(self, tag: str) -> AsyncIterator[bytes]:
        """Image ``tag`` as an image tarball (``docker save``), streamed in chunks."""

    async def load_image(self, chunks: AsyncIterable[bytes]) -> None:
        """Load an image tarball (``docker load``) streamed from :meth:`save_image`."""

    async def remove_image(self, tag: str) -> None:
        """Remove image ``tag`` (not forced: an image in use stays)."""

    async def build(
        self,
        tag: str,
        dockerfile: str,
        files: Mapping[str, bytes],
        on_line: Callable[[str], None] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """Build ``tag`` from a Dockerfile and files; ImageError with the log's tail."""

    async def import_rootfs(self, tag: str, tar_path: str) -> None:
        """Make image ``tag`` from a root filesystem tarball (``docker import``)."""

    async def pull(self, reference: str, tag: str) -> None:
        """Pull ``reference`` from its registry and tag it ``tag``."""
