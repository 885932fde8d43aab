"""The host side of egress: one gateway per engine (started on first use), one small
internal network per sandbox, and the control channel to the gateway.

A sandbox with egress gets a network of its own (``internal``: no route out, no address
of the engine's host on it), made before the sandbox starts (warm sandboxes have theirs
ready, so the warm path pays nothing), carved as a /29 from the operator's range:
Docker's default address pools would give only ~31 networks. The gateway is connected
to it at ``.2``, the sandbox is ``.3``. Sandboxes are apart by construction (each alone
on its network); the gateway tells them apart by their source address.

The gateway is a container like a sandbox (labelled with the owner and the pool, so
the reaper removes it after a crash) on the engine's bridge; it reads its orders on its
attached stdin and answers on stdout (JSON lines): this works with remote engines too.
Closing its stdin ends it, and the engine removes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from .._backends import (
    STREAM_STDOUT,
    AttachedStream,
    ContainerEngine,
    ContainerSpec,
    EgressNetwork,
    NetworkStore,
    OwnNetwork,
)
from .._errors import EngineError, SandboxError, UsageError
from .._fleet.labels import LABEL_MANAGED, LABEL_OWNER, LABEL_POOL, LABEL_VERSION, owner_identity
from .._fleet.reaper import remove
from .._version import __version__
from .policy import Egress, EgressSettings, NetworkUsage

log = logging.getLogger("sandboxkit.egress")

LABEL_EGRESS = "org.sandboxkit.egress"  # "gateway" or "network"
SUBNET_PREFIX = 29  # 8 addresses: the network, the engine's (unused), gateway, sandbox
GATEWAY_HOST = 2
SANDBOX_HOST = 3
REPLY_TIMEOUT = 5.0
READY_TIMEOUT = 30.0
CLEANUP_TIMEOUT = 10.0
CREATE_ATTEMPTS = 8  # subnets tried when another owner took one meanwhile
_PROGRAM = (Path(__file__).parent / "gateway.py").read_text()
_names = itertools.count()


def gateway_program() -> str:
    """The gateway's source, run as ``python3 -I -c``."""
    return _PROGRAM


def blocks(ranges: tuple[str, ...], prefix: int = SUBNET_PREFIX) -> list[ipaddress.IPv4Network]:
    """Every /``prefix`` block of the operator's ranges, in order."""
    out: list[ipaddress.IPv4Network] = []
    for text in ranges:
        net = ipaddress.ip_network(text)
        if isinstance(net, ipaddress.IPv4Network):
            out.extend(net.subnets(new_prefix=prefix) if net.prefixlen <= prefix else [net])
    return out


def free_block(
    candidates: list[ipaddress.IPv4Network], used: set[ipaddress.IPv4Network]
) -> ipaddress.IPv4Network | None:
    """The first block overlapping no network in use."""
    for block in candidates:
        if not any(block.overlaps(other) for other in used):
            return block
    return None


def network_engine(engine: ContainerEngine) -> NetworkStore:
    """``engine`` as a store of networks; UsageError when it has none."""
    needed = ("create_network", "connect_network", "remove_network", "list_networks")
    if not all(hasattr(engine, name) for name in needed):
        raise UsageError(f"the engine at {engine.url} cannot make networks: egress needs Docker")
    return engine  # type: ignore[return-value]


@dataclass
class Lease:
    """One sandbox's network and its place at the gateway."""

    hub: EgressHub
    engine: ContainerEngine
    network: EgressNetwork
    network_id: str
    block: ipaddress.IPv4Network
    label: str
    policy: Egress | None = None
    released: bool = False

    async def set_policy(self, policy: Egress | None) -> None:
        """Tell the gateway this sandbox's policy (None: nothing); in force on return."""
        gateway = await self.hub.gateway(self.engine)
        if policy is None:
            await gateway.request({"op": "forget", "ip": self.network.address})
        else:
            await gateway.request(
                {
                    "op": "set",
                    "ip": self.network.address,
                    "gateway_ip": self.network.dns,
                    "label": self.label,
                    **policy.wire(),
                }
            )
        self.policy = policy

    async def usage(self) -> NetworkUsage:
        """Bytes out and in through the gateway, and the names refused, so far."""
        gateway = await self.hub.gateway(self.engine)
        reply = await gateway.request({"op": "usage", "ip": self.network.address})
        return NetworkUsage(
            bytes_out=int(reply.get("bytes_out", 0)),
            bytes_in=int(reply.get("bytes_in", 0)),
            refused=tuple(reply.get("refused", ())),
        )

    async def release(self) -> None:
        """After the sandbox is gone: forget it, take the gateway off, remove the network."""
        if self.released:
            return
        self.released = True
        await self.hub.release(self)


@dataclass
class Gateway:
    """A running gateway container and its control channel."""

    engine: ContainerEngine
    cid: str
    stream: AttachedStream
    pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    seq: itertools.count[int] = field(default_factory=itertools.count)
    uplink: str | None = None  # its own network out (removed after it)
    reader: asyncio.Task[None] | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    ended: str | None = None

    def start_reading(self) -> None:
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        buffer = b""
        try:
            while True:
                chunk = await self.stream.read()
                if chunk is None:
                    break
                kind, data = chunk
                if kind != STREAM_STDOUT:
                    log.debug("egress gateway: %s", data.decode(errors="replace").rstrip())
                    continue
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    self._line(line)
        except Exception as exc:  # noqa: BLE001 (the stream broke: the gateway is lost)
            self.ended = f"its stream broke: {exc}"
        finally:
            self.ended = self.ended or "it ended"
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(SandboxError(f"the egress gateway is gone ({self.ended})"))
            self.ready.set()

    def _line(self, line: bytes) -> None:
        try:
            msg = json.loads(line)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        event = msg.get("event")
        if event == "ready":
            self.ready.set()
        elif event == "refused":
            log.info(
                "egress refused: sandbox %s, name %r (%s)",
                msg.get("sandbox"),
                msg.get("name"),
                msg.get("why"),
            )
        elif event is not None:
            log.info("egress %s: %s", event, msg)
        else:
            future = self.pending.pop(msg.get("seq", -1), None)
            if future is not None and not future.done():
                future.set_result(msg)

    async def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        if self.ended is not None:
            raise SandboxError(f"the egress gateway is gone ({self.ended})")
        seq = next(self.seq)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[seq] = future
        try:
            await self.stream.write(json.dumps({**msg, "seq": seq}).encode() + b"\n")
            with anyio.fail_after(REPLY_TIMEOUT):
                reply = await future
        except TimeoutError:
            raise SandboxError("the egress gateway did not answer in time") from None
        finally:
            self.pending.pop(seq, None)
        if not reply.get("ok"):
            raise SandboxError(f"the egress gateway refused an order: {reply.get('error')}")
        return reply

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.stream.close()  # its stdin closes: it exits, the engine removes it
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(BaseException):
                await self.reader
        if await remove(self.engine, self.cid, timeout=CLEANUP_TIMEOUT) is not None:
            log.warning("could not remove the egress gateway %s", self.cid[:12])
        if self.uplink is not None:
            with contextlib.suppress(EngineError):
                await network_engine(self.engine).remove_network(self.uplink)


class EgressHub:
    """A pool's egress: its gateways (one per engine) and its sandboxes' networks.

    ``image_for`` gives the image the gateway runs in on an engine (any image with
    ``python3``: the pool's Python image). Hashable by identity: part of a warm pool's
    key (``Shape.network``), so sandboxes are started with their network ready."""

    def __init__(
        self,
        pool_id: str,
        settings: EgressSettings,
        image_for: Callable[[ContainerEngine], Awaitable[str]],
    ) -> None:
        self.pool_id = pool_id
        self.settings = settings
        self.image_for = image_for
        self._gateways: dict[str, Gateway] = {}
        self._starting: dict[str, asyncio.Lock] = {}
        self._used: dict[str, set[ipaddress.IPv4Network]] = {}  # per engine
        self._alloc_lock = asyncio.Lock()
        self._candidates = blocks(settings.subnets)
        self.closed = False
        self.default_policy: Egress | None = None  # the pool's (its warm sandboxes get it)
        # totals of the sandboxes gone so far (the metrics): bytes each way, refusals
        self.bytes_out = self.bytes_in = self.refused = 0
        self._files: Path | None = None  # resolv.conf files of local sandboxes
        self._runtime_ok: dict[str, set[str]] = {}  # per engine: runtimes checked

    def labels(self, kind: str) -> dict[str, str]:
        return {
            LABEL_MANAGED: "1",
            LABEL_OWNER: owner_identity(),
            LABEL_POOL: self.pool_id,
            LABEL_VERSION: __version__,
            LABEL_EGRESS: kind,
        }

    # ------------------------------------------------------------------ gateways
    async def gateway(self, engine: ContainerEngine) -> Gateway:
        """This engine's gateway, started on first use."""
        found = self._gateways.get(engine.url)
        if found is not None and found.ended is None:
            return found
        lock = self._starting.setdefault(engine.url, asyncio.Lock())
        async with lock:
            found = self._gateways.get(engine.url)
            if found is not None and found.ended is None:
                return found
            if self.closed:
                raise SandboxError("this pool's egress is closed")
            gateway = await self._start_gateway(engine)
            self._gateways[engine.url] = gateway
            return gateway

    async def _start_gateway(self, engine: ContainerEngine) -> Gateway:
        image = await self.image_for(engine)
        settings = {
            "resolvers": list(self.settings.resolvers),
            "allow_private": list(self.settings.allow_private),
            "own": list(self.settings.subnets),
            "ports": [80, 443],
        }
        name = f"sandboxkit-{self.pool_id}-egress-{os.getpid()}-{next(_names)}"
        # its way out: a network of its own, not the engine's default bridge (shared with
        # every bridge container; and a second engine started with ``bridge: none`` on
        # the same host deletes docker0)
        uplink, address = await self._new_network(engine, "uplink", internal=False)
        spec = ContainerSpec(
            name=name,
            image=image,
            command=("python3", "-I", "-c", gateway_program()),
            uid=65534,  # binds 53, 80 and 443 without a capability (Docker sets the
            # unprivileged port start to 0 in a container's own network namespace)
            workdir="/work",
            own_dir="/run/sandboxkit",
            env={"EGRESS_SETTINGS": json.dumps(settings), "PYTHONUNBUFFERED": "1"},
            labels=self.labels("gateway"),
            memory_mb=256,
            pids=64,
            cpus=1.0,
            disk_mb=8,
            network=OwnNetwork(uplink, address),
            hostname="egress",
            supervisor=False,  # not the agent: its uid from the start, no capability
            # it joins every sandbox's network and the way out: it must never route
            # between them (only its proxy, which checks the policy, connects out)
            sysctls={"net.ipv4.ip_forward": "0"},
        )
        try:
            launched = await engine.launch(spec)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await remove(engine, name, timeout=CLEANUP_TIMEOUT)
                with contextlib.suppress(EngineError):
                    await network_engine(engine).remove_network(uplink)
            raise
        gateway = Gateway(engine, launched.id, launched.stream, uplink=uplink)
        gateway.start_reading()
        try:
            with anyio.fail_after(READY_TIMEOUT):
                await gateway.ready.wait()
            if gateway.ended is not None:
                raise EngineError(f"the egress gateway did not start: {gateway.ended}")
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await gateway.close()
            if isinstance(exc, TimeoutError):
                raise EngineError("the egress gateway did not start in time") from exc
            raise
        return gateway

    # ------------------------------------------------------------------ networks
    async def attach(self, engine: ContainerEngine, label: str, runtime: str = "runc") -> Lease:
        """A network of its own for a sandbox about to start, with the gateway on it."""
        store = network_engine(engine)
        if runtime not in self._runtime_ok.get(engine.url, ()):
            info = await engine.info()
            if "--network=none" in info.runtime_args.get(runtime, ()):
                raise EngineError(
                    f"the engine at {engine.url} runs {runtime} with --network=none (its "
                    "daemon.json runtimeArgs): a sandbox under it has no network, so no "
                    f"egress either. Use runtime='runc' for egress there, or register "
                    f"{runtime} without --network=none"
                )
            self._runtime_ok.setdefault(engine.url, set()).add(runtime)
        gateway = await self.gateway(engine)
        network_id, block = await self._new_block(engine, "network", internal=True)
        hosts = list(block.hosts())
        dns = str(hosts[GATEWAY_HOST - 1])
        lease = Lease(
            self,
            engine,
            EgressNetwork(
                name=network_id,
                address=str(hosts[SANDBOX_HOST - 1]),
                dns=dns,
                resolv_conf=self._resolv_conf(block, dns) if engine.local_paths else None,
            ),
            network_id,
            block,
            label,
        )
        try:
            await store.connect_network(network_id, gateway.cid, lease.network.dns)
            if self.default_policy is not None:
                # the pool's own policy, in force before the sandbox is asked for: a
                # checkout with it sends nothing to the gateway
                await lease.set_policy(self.default_policy)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await lease.release()
            raise
        return lease

    def _resolv_conf(self, block: ipaddress.IPv4Network, dns: str) -> str:
        """A resolv.conf naming only the gateway, for a sandbox on ``block``."""
        if self._files is None:
            self._files = Path(tempfile.mkdtemp(prefix="sandboxkit-egress-"))
            self._files.chmod(0o755)  # read by the sandbox's user through the mount
        path = self._files / f"resolv-{block.network_address}.conf"
        path.write_text(f"nameserver {dns}\noptions ndots:0 attempts:2 timeout:2\n")
        path.chmod(0o644)
        return str(path)

    async def _new_network(
        self, engine: ContainerEngine, kind: str, *, internal: bool
    ) -> tuple[str, str]:
        """A network of ``kind`` and the first container address on it."""
        network_id, block = await self._new_block(engine, kind, internal=internal)
        return network_id, str(list(block.hosts())[GATEWAY_HOST - 1])

    async def _new_block(
        self, engine: ContainerEngine, kind: str, *, internal: bool
    ) -> tuple[str, ipaddress.IPv4Network]:
        """A labelled network on a free /29 of the operator's range: its name and block."""
        store = network_engine(engine)
        labels = self.labels(kind)
        for _ in range(CREATE_ATTEMPTS):
            block = await self._allocate(engine)
            name = f"sandboxkit-{self.pool_id}-{kind}-{block.network_address}"
            try:
                await store.create_network(name, str(block), labels, internal=internal)
            except EngineError as exc:
                self._used[engine.url].add(block)  # someone else's: never ours to free
                if "overlap" in str(exc).lower() or "already exists" in str(exc).lower():
                    continue
                raise
            return name, block  # the engine takes its name wherever it takes its id
        raise EngineError("no free subnet for a sandbox network: widen SANDBOXKIT_EGRESS_SUBNETS")

    async def _allocate(self, engine: ContainerEngine) -> ipaddress.IPv4Network:
        async with self._alloc_lock:
            used = self._used.get(engine.url)
            if used is None:
                used = set()
                for record in await network_engine(engine).list_networks({}):
                    for subnet in record.subnets:
                        net = ipaddress.ip_network(subnet, strict=False)
                        if isinstance(net, ipaddress.IPv4Network):
                            used.add(net)
                self._used[engine.url] = used
            block = free_block(self._candidates, used)
            if block is None:
                raise EngineError(
                    "no free subnet for a sandbox network: widen SANDBOXKIT_EGRESS_SUBNETS"
                )
            used.add(block)
            return block

    async def release(self, lease: Lease) -> None:
        """Forget the sandbox at the gateway, take the gateway off its network, remove it."""
        store = network_engine(lease.engine)
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_TIMEOUT):
            gateway = self._gateways.get(lease.engine.url)
            if gateway is not None and gateway.ended is None:
                with contextlib.suppress(SandboxError):
                    final = await gateway.request({"op": "forget", "ip": lease.network.address})
                    self.bytes_out += int(final.get("bytes_out", 0))
                    self.bytes_in += int(final.get("bytes_in", 0))
                    self.refused += len(final.get("refused", ()))
                with contextlib.suppress(EngineError):
                    await store.disconnect_network(lease.network_id, gateway.cid)
            try:
                await store.remove_network(lease.network_id)
            except EngineError as exc:
                log.warning("could not remove network %s: %s", lease.network.name, exc)
                return  # its subnet stays taken; the reaper removes the network later
            used = self._used.get(lease.engine.url)
            if used is not None:
                used.discard(lease.block)
            if lease.network.resolv_conf is not None:
                await anyio.Path(lease.network.resolv_conf).unlink(missing_ok=True)

    async def aclose(self) -> None:
        """Stop every gateway (after the sandboxes: their networks go with them)."""
        self.closed = True
        gateways, self._gateways = list(self._gateways.values()), {}
        with anyio.CancelScope(shield=True):
            await asyncio.gather(*(g.close() for g in gateways), return_exceptions=True)
        if self._files is not None:
            shutil.rmtree(self._files, ignore_errors=True)
