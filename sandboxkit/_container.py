"""One sandbox container: its engine-neutral spec (pure) and the live handle.

A live :class:`Box` is launched (created, attached and started, in the order its engine
needs) ahead of demand; the agent inside (PID 1) announces itself with a ready frame.
Jobs go in and frames come back over a direct channel (a Unix socket, see ``_channel``)
or the attached stdin and stdout, so a run needs no engine call at all.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from . import _protocol as wire
from ._backends import STREAM_STDERR, AttachedStream, ContainerEngine, ContainerSpec, NetworkPolicy
from ._channel import Listener
from ._channel import refuse as refuse_channel
from ._channel import wanted as channel_wanted
from ._egress.hub import EgressHub, Lease
from ._errors import EngineError, SandboxError
from ._fleet.labels import (
    LABEL_MANAGED,
    LABEL_OWNER,
    LABEL_PAUSABLE,
    LABEL_POOL,
    LABEL_VERSION,
    held_name,
    owner_identity,
)
from ._fleet.reaper import remove
from ._images.dockerfile import AGENT_PYC
from ._layout import DEFAULT_HOME, OWN_DIR, WORKDIR, home_of
from ._version import __version__

if TYPE_CHECKING:
    from ._protocol import FileJob, ListJob, ReadJob, Reply, ScrubJob, WriteJob

log = logging.getLogger("sandboxkit")

SANDBOX_UID = 65534
READY_TIMEOUT = 60.0
CLEANUP_TIMEOUT = 15.0
EXIT_GRACE = 3.0
_names = itertools.count()


@dataclass(frozen=True)
class Resources:
    """Container-level limits that can be changed in place before a run."""

    memory_mb: int = 256
    pids: int = 64
    cpus: float = 1.0


@dataclass(frozen=True)
class Shape:
    """What cannot change once a container exists (the pool key, with the image)."""

    image: str
    runtime: str = "runc"
    disk_mb: int = 64
    # an EgressHub: a network of each sandbox's own, through the hub's gateway (the
    # policy itself is per checkout, not part of the key)
    network: NetworkPolicy | EgressHub = None
    # a root filesystem of its own to write (see ContainerSpec.writable_root)
    writable_root: bool = False
    # where the engine cannot change a live container's limits (gVisor's runsc; see
    # ContainerEngine.limits_fixed) they are fixed at creation and part of the pool key;
    # elsewhere they are updated in place per run
    fixed: Resources | None = None


def container_spec(
    shape: Shape,
    resources: Resources,
    labels: Mapping[str, str],
    env: Mapping[str, str],
    name: str,
    channel: str | None = None,
    network: NetworkPolicy = None,
) -> ContainerSpec:
    """A sandbox with sandboxkit's agent as PID 1; the backend applies DESIGN §4 to it.
    ``network``: its own (an egress lease's), when the shape's is an EgressHub."""
    return ContainerSpec(
        name=name,
        image=shape.image,
        command=("python3", "-I", AGENT_PYC),
        uid=SANDBOX_UID,
        workdir=WORKDIR,
        own_dir=OWN_DIR,
        env=dict(env),
        labels=dict(labels),
        memory_mb=resources.memory_mb,
        pids=resources.pids,
        cpus=resources.cpus,
        disk_mb=shape.disk_mb,
        runtime=shape.runtime,
        network=network if isinstance(shape.network, EgressHub) else shape.network,
        channel=channel,
        home=home_of(env),
        writable_root=shape.writable_root,
    )


class Box:
    """A started container with its agent, driven through the attached streams."""

    def __init__(
        self,
        engine: ContainerEngine,
        cid: str,
        stream: AttachedStream,
        shape: Shape,
        resources: Resources,
    ) -> None:
        self.engine = engine
        self.cid = cid
        self.shape = shape
        self.resources = resources
        self.created = time.monotonic()
        self._stream = stream
        self._reader = wire.FrameReader()
        self._frames: list[tuple[bytes, bytes]] = []
        self._eof = False
        # replies the agent owes to calls given up after their job went out (see call)
        self._owed = 0
        self._closed = False
        self.agent_stderr = bytearray()
        self.toolchain: str | None = None
        self.frames_sent = 0  # frames written to the agent: 0 means no job reached it
        self.lost = False  # its engine went down: no engine call is made for it any more
        # a session kernel's state was lost in a run whose result nobody read (abandoned
        # mid-run, then drained): the next run's result says state_lost
        self.unseen_state_loss = False
        self.uses = 0  # runs it served and was scrubbed after (a pool's reuse mode)
        # its holder's run ended and nothing is pending in it: it may be scrubbed and
        # serve again (a pool's reuse mode; set by the holder, cleared at each lease)
        self.reusable = False
        self.pausable = False  # kept when stopped: made for a pause with memory
        self.kept = False  # stopped and kept by Sandbox.pause (its memory): not removed
        self.egress: Lease | None = None  # its own network to the egress gateway
        self.home = DEFAULT_HOME  # the sandbox user's home (a tmpfs): set by start()

    # ------------------------------------------------------------------ life cycle
    @classmethod
    async def start(
        cls,
        engine: ContainerEngine,
        shape: Shape,
        resources: Resources,
        env: Mapping[str, str],
        pool_id: str,
        *,
        pausable: bool = False,
    ) -> Box:
        labels = {
            LABEL_MANAGED: "1",
            LABEL_OWNER: owner_identity(),
            LABEL_POOL: pool_id,
            LABEL_VERSION: __version__,
        }
        name = f"sandboxkit-{pool_id}-{os.getpid()}-{next(_names)}"
        if pausable:  # Sandbox.pause keeps it stopped, beyond this process: see labels
            labels = {LABEL_MANAGED: "1", LABEL_PAUSABLE: "1", LABEL_VERSION: __version__}
            name = held_name(uuid.uuid4().hex[:12])
        listener: Listener | None = None
        if channel_wanted(engine, shape.runtime):
            # no socket here (a TMPDIR too long for one, not writable): the attach stream
            with contextlib.suppress(OSError):
                listener = await Listener.open()
        box: Box | None = None
        lease: Lease | None = None
        try:
            channel = listener.path if listener is not None else None
            if isinstance(shape.network, EgressHub):
                lease = await shape.network.attach(engine, name, shape.runtime)
            network = lease.network if lease is not None else None
            spec = container_spec(shape, resources, labels, env, name, channel, network)
            spec = dataclasses.replace(spec, pausable=pausable)
            try:
                launched = await engine.launch(spec)
            except EngineError as exc:
                if listener is None or "bind" not in str(exc).lower():
                    raise
                # the engine cannot bind-mount our socket (it sees another filesystem)
                refuse_channel(engine)
                await listener.aclose()
                listener = None
                launched = await engine.launch(dataclasses.replace(spec, channel=None))
            box = cls(engine, launched.id, launched.stream, shape, resources)
            box.home = spec.home
            box.pausable = pausable
            box.egress, lease = lease, None
            with anyio.fail_after(READY_TIMEOUT):
                if listener is not None:
                    box._stream = await listener.take(engine, launched.stream)
                kind, payload = await box.recv()
            if kind != wire.READY:
                raise SandboxError(f"the sandbox agent sent {kind!r} instead of ready")
            ready = json.loads(payload)
            box.toolchain = ready.get("toolchain") if isinstance(ready, dict) else None
            box.created = time.monotonic()  # its age (max_idle_age) counts from ready
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                if listener is not None:
                    await listener.aclose()
                if box is not None:
                    await box.destroy()
                else:
                    # failed or cancelled mid-launch, the engine may hold it: by name
                    await _quiet_remove(engine, name)
                if lease is not None:
                    await lease.release()
            if isinstance(exc, TimeoutError):
                raise SandboxError(
                    f"the sandbox did not become ready within {READY_TIMEOUT:.0f}s"
                ) from exc
            raise
        return box

    @property
    def closed(self) -> bool:
        """Whether sandboxkit has destroyed (or is destroying) this box."""
        return self._closed

    @property
    def alive(self) -> bool:
        return not (self._eof or self._closed or self.lost or self._stream.at_eof)

    async def abandon(self) -> None:
        """Its engine is down: end the streams (a run reading them stops now) and make no
        more engine calls for it; the engine's own restart, or the fleet's sweep when it
        is re-admitted, removes the container."""
        self.lost = True
        with (
            anyio.CancelScope(shield=True),
            anyio.move_on_after(EXIT_GRACE),
            contextlib.suppress(Exception),
        ):
            await self._stream.close()

    async def destroy(self) -> None:
        """Close the attach stream (so the kill never waits on unread output), then remove."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._remove()
        finally:
            if self.egress is not None and not self.lost:
                # after the container: a network is removed once nothing is on it
                await self.egress.release()

    async def _remove(self) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_TIMEOUT):
            with contextlib.suppress(Exception):
                await self._stream.close()
            if self.lost or self.kept:
                return
            if self.pausable:  # no AutoRemove to wait for
                await _quiet_remove(self.engine, self.cid)
                return
            # Closing our end is EOF on the agent's stdin (StdinOnce): it kills every
            # process, exits, and the engine removes the container (AutoRemove). Waiting
            # for that is cheaper for the engine than a forced kill + remove; the forced
            # path remains for an agent that does not go in time.
            with anyio.move_on_after(EXIT_GRACE):
                if await self.engine.wait_removed(self.cid):
                    return
            await _quiet_remove(self.engine, self.cid)

    # ------------------------------------------------------------------ protocol
    async def send(self, kind: bytes, payload: bytes = b"") -> None:
        if self._closed:
            raise SandboxError("the sandbox is closed")
        try:
            await self._stream.write(wire.pack(kind, payload))
        except Exception as exc:
            raise SandboxError(f"the sandbox's input closed: {exc}") from exc
        self.frames_sent += 1

    async def send_json(self, kind: bytes, obj: object) -> None:
        await self.send(kind, json.dumps(obj).encode())

    async def recv(self) -> tuple[bytes, bytes]:
        """The next frame from the agent; SandboxError when the container is gone."""
        while not self._frames:
            if self._eof:
                raise SandboxError(self._gone_message())
            try:
                chunk = await self._stream.read()
            except Exception as exc:
                self._eof = True
                raise SandboxError(f"lost the sandbox's output stream: {exc}") from exc
            if chunk is None:
                self._eof = True
                continue
            stream, data = chunk
            if stream == STREAM_STDERR:
                self.agent_stderr += data
                del self.agent_stderr[:-4096]
                continue
            try:
                self._frames.extend(self._reader.feed(data))
            except ValueError as exc:
                self._eof = True
                raise SandboxError(f"sandbox protocol fault: {exc}") from exc
        return self._frames.pop(0)

    def _gone_message(self) -> str:
        tail = self.agent_stderr.decode(errors="replace").strip()[-500:]
        return "the sandbox container ended unexpectedly" + (f": {tail}" if tail else "")

    async def call(self, job: FileJob | Mapping[str, object]) -> tuple[Reply, bytes]:
        """A file operation: one job frame, one reply frame (its header, its data).

        A call given up once its job went out (cancelled: an E2B client that hung up, a
        timeout) leaves its reply owed; the next call reads and drops the owed ones first,
        so every call gets its own reply, never an earlier call's."""
        with anyio.CancelScope(shield=True):  # a job half-written would garble the stream
            await self.send_json(wire.JOB, job)
        self._owed += 1
        while True:
            kind, payload = await self.recv()
            self._owed -= 1
            if self._owed == 0:
                break
        if kind == wire.FAULT:
            raise SandboxError(f"sandbox agent fault: {payload.decode(errors='replace')}")
        if kind != wire.REPLY:
            raise SandboxError(f"unexpected frame {kind!r} from the sandbox agent")
        header, _, data = payload.partition(b"\0")
        reply: Reply = json.loads(header)
        return reply, data

    # ------------------------------------------------------------------ files
    # Paths are relative to the workdir and already checked (``_validate.check_path``);
    # the agent opens them without following any symlink. A refusal is a reply whose
    # ``ok`` is false, with its ``error``: the caller words it for its user.
    async def write_file(self, path: str, data: bytes, mode: int) -> Reply:
        """Write ``data`` to ``path`` (directories made on the way) with ``mode``."""
        job: WriteJob = {
            "op": "write",
            "path": path,
            "data": base64.b64encode(data).decode(),
            "mode": mode,
        }
        reply, _ = await self.call(job)
        return reply

    async def read_file(self, path: str, max_bytes: int) -> tuple[Reply, bytes]:
        """The bytes of the regular file at ``path``, refused past ``max_bytes``."""
        job: ReadJob = {"op": "read", "path": path, "max_bytes": max_bytes}
        return await self.call(job)

    async def list_files(self, path: str | None = None, depth: int | None = None) -> Reply:
        """Every entry under the directory ``path`` (None: the whole workdir), ``depth``
        levels down (None: all)."""
        job: ListJob = {"op": "list"}
        if path is not None:
            job["path"] = path
        if depth is not None:
            job["depth"] = depth
        reply, _ = await self.call(job)
        return reply

    async def scrub(self) -> bool:
        """Make the sandbox as new for another run: whether it is (a pool in reuse mode
        destroys one that is not). Every process but the agent killed, every writable
        place emptied, IPC objects removed, the agent's limits put back."""
        job: ScrubJob = {"op": "scrub"}
        reply, _ = await self.call(job)
        if not reply.get("clean"):
            log.info("sandboxkit: %s not reusable: %s", self.cid[:12], reply.get("leftovers"))
            return False
        self.uses += 1
        return True

    # ------------------------------------------------------------------ resources
    async def set_resources(self, wanted: Resources) -> None:
        """Change memory, pids and CPUs in place when a run asks for other limits."""
        if wanted == self.resources:
            return
        if self.shape.fixed is not None:
            # runsc refuses `docker update`: the container keeps the limits it was made with
            # (the run's own under runsc, keyed by them; a compiled language's run keeps
            # the compile step's allowance)
            return
        have = self.resources
        await self.engine.update_resources(
            self.cid,
            memory_mb=wanted.memory_mb if wanted.memory_mb != have.memory_mb else None,
            pids=wanted.pids if wanted.pids != have.pids else None,
            cpus=wanted.cpus if wanted.cpus != have.cpus else None,
        )
        self.resources = wanted


async def _quiet_remove(engine: ContainerEngine, cid: str) -> None:
    failure = await remove(engine, cid, timeout=CLEANUP_TIMEOUT)
    if failure is not None:  # the reaper's next pass catches it
        log.warning("could not remove container %s: %s", cid[:12], failure)


def encode_files(files: Mapping[str, bytes]) -> dict[str, str]:
    return {path: base64.b64encode(data).decode() for path, data in files.items()}
