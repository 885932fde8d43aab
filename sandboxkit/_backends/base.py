"""The seam between sandboxkit and a container engine: what a backend must do.

Two protocols, so an engine implements what it has:

- :class:`ContainerEngine`: sandboxes. Start one and hand back its attached stream in
  one call (:meth:`~ContainerEngine.launch`: the engine owns the order of its steps; a
  Docker container is attached before it starts, a pod only once it runs), remove one,
  wait for its removal, change its limits where they can change, list them by label,
  describe and probe the engine.
- :class:`ImageStore`: images kept by the engine itself (exists, inspect, list, save,
  load, remove, build, import, pull), so sandboxkit builds and copies them between the
  engines of a fleet. Optional: an engine whose sandboxes fetch their images themselves
  (a cluster's nodes pull from a registry) has none (:attr:`ContainerEngine.images`).

:class:`Backend` is both (Docker's is). The pool, boxes, images, the reaper and the CLI
speak only these protocols, so a pool can span several engines (one backend each, e.g. a
local socket and remote engines over mutual TLS) and other engines (Podman, Kubernetes)
can plug in without touching the pool.

What crosses the seam is typed and engine-neutral: a :class:`ContainerSpec` goes in;
:class:`ContainerRecord`, :class:`ImageRecord` and :class:`EngineInfo` come out (a
backend maps its engine's own objects to them). A backend raises only sandboxkit's own
errors (:class:`~sandboxkit.EngineError`, :class:`~sandboxkit.EngineUnavailable`,
:class:`~sandboxkit.ImageError`), never its client library's.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

STREAM_STDOUT = 1  # the stream numbers of AttachedStream.read
STREAM_STDERR = 2


# ---------------------------------------------------------------------- network
@dataclass(frozen=True)
class BridgeNetwork:
    """The engine's default bridge network: the sandbox reaches what the engine's host
    reaches. Only ever by explicit opt-in (a Judge0 submission's ``enable_network`` on a
    server that allows it)."""


@dataclass(frozen=True)
class EgressNetwork:
    """A network of the sandbox's own with no route out (``internal``): its only peer is
    the egress gateway at ``dns``, its only resolver too (``sandboxkit._egress``)."""

    name: str  # the engine's network
    address: str  # the sandbox's address on it
    dns: str  # the gateway's address on it
    # a file on this machine naming ``dns`` as the only nameserver, mounted read-only at
    # /etc/resolv.conf (local engines): the engine's embedded DNS at 127.0.0.11 is an
    # iptables rule that gVisor's own network stack never sees
    resolv_conf: str | None = None


@dataclass(frozen=True)
class OwnNetwork:
    """A network sandboxkit made (with a route out): the egress gateway's uplink, apart
    from the engine's default bridge (which other engines' tools may delete or share)."""

    name: str
    address: str  # the container's address on it


#: What a sandbox may reach over the network: ``None`` is nothing at all (only ``lo``,
#: the default); :class:`BridgeNetwork` is the engine's bridge; :class:`EgressNetwork`
#: its own network to the egress gateway. Carried to the engine in the
#: :class:`ContainerSpec`. An engine refuses a policy it cannot enforce.
NetworkPolicy = BridgeNetwork | EgressNetwork | OwnNetwork | None


@dataclass(frozen=True)
class NetworkRecord:
    """One network as an engine lists it."""

    id: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    subnets: tuple[str, ...] = ()
    containers: tuple[str, ...] = ()  # ids of the containers on it


# ---------------------------------------------------------------------- records
@dataclass(frozen=True)
class ContainerStats:
    """A sandbox's cgroup as the kernel charges it (``Sandbox.metrics``): read in the box
    by its agent, or the Docker engine's account where the box sees no cgroup (gVisor)."""

    cpu_ns: int  # CPU time used since it started
    memory_used: int
    memory_cache: int  # of memory_used: the page cache (tmpfs files included)
    memory_limit: int


@dataclass(frozen=True)
class ContainerSpec:
    """One sandbox container, engine-neutral: what runs, as whom, under which limits.

    Every backend applies the same isolation to it (DESIGN §4): no capabilities, no new
    privileges, a read-only root filesystem with size-bounded tmpfs at ``workdir`` and
    ``own_dir`` and ``home`` (all owned by ``uid``; ``own_dir`` holds a session run's source
    and what its compiler makes, out of the user's files) and ``/tmp``, the network ``network``
    allows (None: none), memory without swap, no TTY, stdin attached once (closing it
    ends the container), and removal when ``command`` exits.
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
    network: NetworkPolicy = None
    hostname: str = "sandbox"
    # the sandbox user's home ($HOME), a tmpfs of ``disk_mb`` owned by ``uid`` like the workdir
    home: str = "/home/sandbox"
    # a Unix socket on this machine, mounted read-only at CHANNEL_PATH (see _channel);
    # only offered to a backend whose ``local_paths`` is true
    channel: str | None = None
    # kept when stopped (no AutoRemove): Sandbox.pause checkpoints it (see _snapshot)
    pausable: bool = False
    # its root filesystem writable (the container's own layer, gone with it): a box whose
    # programs may run as uid 0 (Sandbox(root=True): gVisor or userns-remap only)
    writable_root: bool = False
    # ``command`` is sandboxkit's agent, which starts as uid 0 with the few capabilities
    # it needs to run programs as ``uid`` (agent/_privs.py); anything else (the egress
    # gateway) runs as ``uid`` from its first instruction, with no capability at all
    supervisor: bool = True
    # kernel settings of its own network namespace (the egress gateway: no forwarding)
    sysctls: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ContainerRecord:
    """One container as an engine lists it."""

    id: str
    labels: Mapping[str, str] = field(default_factory=dict)
    #: ``created``, ``running``, ``exited``, ``dead``... (the engine's word)
    state: str = "unknown"
    created: float = 0.0  # epoch seconds
    #: its first process on the engine's host, when the engine says (for measurements)
    pid: int | None = None
    name: str = ""  # without Docker's leading slash


@dataclass(frozen=True)
class ImageRecord:
    """One image under one of its tags (an image with two tags is two records)."""

    tag: str
    id: str  # the same image on two engines has the same id (a copy, not a rebuild)
    size: int = 0  # bytes
    labels: Mapping[str, str] = field(default_factory=dict)
    created: float = 0.0  # epoch seconds


@dataclass(frozen=True)
class EngineInfo:
    """What sandboxkit reads of an engine: a fleet's weights, ``doctor``, ``fleet status``."""

    product: str  # "Docker", "Podman"...
    version: str | None = None
    api_version: str | None = None
    cpus: int = 1
    memory_bytes: int = 0  # 0: not known
    runtimes: tuple[str, ...] = ()  # OCI runtimes a sandbox may name (runc, runsc...)
    #: the arguments the engine gives each runtime (``--network=none`` for runsc: no
    #: network at all under it, so no egress either)
    runtime_args: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    cgroup_version: str | None = None
    cgroup_driver: str | None = None
    # the engine remaps the containers' uids to unprivileged host uids (``userns-remap``)
    user_namespaces: bool = False


# ---------------------------------------------------------------------- streams
class AttachedStream(Protocol):
    """A container's stdin, stdout and stderr, attached before its first output.

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


@dataclass(frozen=True)
class Launched:
    """A sandbox an engine started: its id, and its streams, attached from the start."""

    id: str
    stream: AttachedStream


# ---------------------------------------------------------------------- protocols
class ImageStore(Protocol):
    """The images an engine keeps itself; every call may be retried where it says so."""

    @property
    def url(self) -> str:
        """The engine's address (which engine of a fleet an image is on)."""

    async def image_exists(self, tag: str) -> bool:
        """Whether image ``tag`` is present; retried."""

    async def inspect_image(self, tag: str) -> ImageRecord | None:
        """Image ``tag``'s record, or None when absent; retried."""

    async def list_images(self, reference: str) -> list[ImageRecord]:
        """Images whose name matches ``reference`` (a pattern like ``sandboxkit/*``),
        one record per tag."""

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


class ContainerEngine(Protocol):
    """One container engine. Cheap to create (connects on first use); close when done."""

    @property
    def url(self) -> str:
        """The engine's address, e.g. ``unix:///var/run/docker.sock``: its identity in a fleet."""

    @property
    def local_paths(self) -> bool:
        """Whether a path on this machine names the same file for the engine (it runs
        here), so a container may mount one of sandboxkit's own sockets."""

    @property
    def images(self) -> ImageStore | None:
        """This engine's own image store, or None when its sandboxes fetch their images
        themselves (then sandboxkit builds and copies nothing for it)."""

    async def close(self) -> None:
        """Release the connection; the backend may connect again if used later."""

    # ------------------------------------------------------------------ system
    async def info(self) -> EngineInfo:
        """What the engine is and holds (version, CPUs, memory, runtimes); retried."""

    async def ping(self, timeout: float) -> None:
        """Answer within ``timeout`` seconds or raise: the bounded health probe. Never
        retried (a fleet's monitor decides what a failure means)."""

    def limits_fixed(self, runtime: str) -> bool:
        """Whether sandboxes under ``runtime`` keep the memory, pids and CPU limits they
        were started with (:meth:`update_resources` refuses them): a pool then keys its
        sandboxes by those limits instead of changing them per run."""

    # ------------------------------------------------------------------ sandboxes
    async def launch(self, spec: ContainerSpec) -> Launched:
        """Start the sandbox ``spec`` describes, its streams attached before its first
        output. Never retried. On failure, or when cancelled, whatever was made of it is
        closed; what the engine may still hold goes by ``spec.name`` (:meth:`remove`)."""

    async def update_resources(
        self,
        cid: str,
        *,
        memory_mb: int | None = None,
        pids: int | None = None,
        cpus: float | None = None,
    ) -> None:
        """Change a running sandbox's limits in place (None: keep that one);
        EngineError where they are fixed (see :meth:`limits_fixed`)."""

    async def wait_removed(self, cid: str) -> bool:
        """Wait until ``cid`` is gone (True), or report that this cannot be known (False)."""

    async def remove(self, cid: str) -> None:
        """Kill and remove ``cid`` (an id or a name); one already gone is fine; retried."""

    async def inspect(self, cid: str) -> ContainerRecord | None:
        """``cid``'s record, or None when there is no such container; retried."""

    async def list_containers(self, labels: Mapping[str, str | None]) -> list[ContainerRecord]:
        """Every container, running or not, carrying all ``labels`` (None: any value)."""

    async def had_oom(self, cid: str, since: float) -> bool:
        """Whether an OOM kill hit ``cid`` since ``since`` (epoch s), even once it is gone."""


class NetworkStore(Protocol):
    """An engine's own networks: what egress (``sandboxkit._egress``) needs of it."""

    async def create_network(
        self, name: str, subnet: str, labels: Mapping[str, str], *, internal: bool
    ) -> str:
        """Create a bridge network on ``subnet`` (the engine's host gets no address on it
        when ``internal``); its id. EngineError when the subnet overlaps another."""

    async def connect_network(self, network: str, cid: str, address: str) -> None:
        """Put running container ``cid`` on ``network`` at ``address``."""

    async def disconnect_network(self, network: str, cid: str) -> None:
        """Take ``cid`` off ``network``; either already gone is fine; retried."""

    async def remove_network(self, network: str) -> None:
        """Remove ``network``; one already gone is fine; retried."""

    async def list_networks(self, labels: Mapping[str, str | None]) -> list[NetworkRecord]:
        """Every network carrying all ``labels`` (None: any value; empty: all of them)."""


class Backend(ContainerEngine, ImageStore, Protocol):
    """An engine that keeps its own images too (Docker, Podman): ``images`` is itself."""
