"""The egress gateway: a DNS responder and an SNI/Host splice proxy, one per engine.

Standard library only: it runs as ``python3 -I -c <this file>`` in a container made from
a language image (no image of its own to build or ship). Why not Squid (peek-and-splice)
or Envoy: the policy here is per sandbox and changes while the sandbox runs (within a
second, cutting connections to names no longer allowed), the DNS side must answer a name
outside the policy without asking any resolver, and the resolved address must be checked
against the private ranges (rebinding) on every connection; none of them does all of
that per client address at run time without a restart or a config reload per change.

How it works:

- Each sandbox has its own internal network; the gateway is on it too (and on the
  engine's bridge, its only way out). A sandbox is known by its source address.
- DNS (UDP 53): an allowed name is answered with the gateway's own address on that
  sandbox's network; any other name gets NXDOMAIN, and no resolver hears of it.
- TCP on each policy port: the first bytes say TLS (the ClientHello's SNI, never
  decrypted) or HTTP (the Host header; absolute-form targets must name the same host).
  The name must be allowed (deny wins) on that port; the gateway resolves it itself
  (only through the operator's resolvers), refuses private, loopback, link-local and
  its own networks' addresses unless the operator allowed the range, connects and
  splices, counting bytes each way.
- Control: JSON lines on stdin (``set``, ``forget``, ``usage``), replies and events as
  JSON lines on stdout. Closing stdin ends the gateway (and the engine removes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import random
import socket
import struct
import sys
from typing import Any, cast

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

HELLO_LIMIT = 16384  # bytes of a ClientHello or HTTP head read before deciding
HELLO_TIMEOUT = 10.0
RESOLVE_TIMEOUT = 3.0
CONNECT_TIMEOUT = 10.0
REFUSED_KEPT = 100  # refused names remembered per sandbox
CHUNK = 65536
CACHE_MAX = 30  # seconds an answer is kept at most
CACHE_SIZE = 4096  # names kept
EVERYWHERE = "0.0.0.0"  # noqa: S104 (every sandbox network the gateway joins)


def matches(name: str, patterns: list[str]) -> bool:
    """The same rule as sandboxkit._egress.policy.matches (a test keeps them alike)."""
    for pattern in patterns:
        if pattern.startswith("*."):
            if name.endswith(pattern[1:]):
                return True
        elif name == pattern:
            return True
    return False


class Client:
    """One sandbox: its policy, the gateway's address on its network, what it did."""

    def __init__(self, ip: str, gateway_ip: str, label: str) -> None:
        self.ip = ip
        self.gateway_ip = gateway_ip
        self.label = label
        self.allow: list[str] = []
        self.deny: list[str] = []
        self.ports: set[int] = set()
        self.bytes_out = 0
        self.bytes_in = 0
        self.refused: list[str] = []
        self.open: dict[asyncio.Task[None], tuple[str, int]] = {}

    def allows(self, name: str, port: int | None = None) -> bool:
        if port is not None and port not in self.ports:
            return False
        return matches(name, self.allow) and not matches(name, self.deny)


class Gateway:
    def __init__(self, resolvers: list[str], allow_private: list[str]) -> None:
        self.resolvers = resolvers
        self.allow_private: list[IPNetwork] = [
            ipaddress.ip_network(n, strict=False) for n in allow_private
        ]
        self.clients: dict[str, Client] = {}
        self.listeners: dict[int, asyncio.AbstractServer] = {}
        self.own_networks: list[IPNetwork] = []  # never reachable through the gateway
        self.extra_own: list[str] = []
        self.out = sys.stdout

    # -------------------------------------------------------------- control
    def emit(self, obj: dict[str, Any]) -> None:
        self.out.write(json.dumps(obj) + "\n")
        self.out.flush()

    def refuse(self, client: Client | None, peer: str, name: str, why: str) -> None:
        if client is not None and name not in client.refused:
            client.refused.append(name)
            del client.refused[:-REFUSED_KEPT]
        label = client.label if client is not None else peer
        self.emit({"event": "refused", "sandbox": label, "ip": peer, "name": name, "why": why})

    async def control(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 22)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                return  # stdin closed: the owner is gone, so is the gateway
            try:
                msg = json.loads(line)
                reply = await self.handle(msg)
            except Exception as exc:  # noqa: BLE001 (a bad line is answered, never fatal)
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                msg = {}
            reply["seq"] = msg.get("seq") if isinstance(msg, dict) else None
            self.emit(reply)

    async def handle(self, msg: dict[str, Any]) -> dict[str, Any]:
        op = msg.get("op")
        if op == "ping":
            return {"ok": True, "own": [str(n) for n in self.own_networks]}
        ip = str(msg.get("ip"))
        if op == "set":
            client = self.clients.get(ip)
            if client is None:
                client = self.clients[ip] = Client(ip, str(msg["gateway_ip"]), str(msg["label"]))
            client.allow = [str(n) for n in msg.get("allow", [])]
            client.deny = [str(n) for n in msg.get("deny", [])]
            client.ports = {int(p) for p in msg.get("ports", [])}
            self.own_networks = own_networks(self.extra_own)  # its network is new
            for port in client.ports:
                await self.listen(port)
            self.cut(client)
            return {"ok": True}
        if op == "forget":
            client = self.clients.pop(ip, None)
            if client is None:
                return {"ok": True, "bytes_out": 0, "bytes_in": 0, "refused": []}
            client.allow = []
            self.cut(client)
            return {"ok": True, **usage(client)}
        if op == "usage":
            client = self.clients.get(ip)
            return {"ok": True, **(usage(client) if client else {})}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def cut(self, client: Client) -> None:
        """Close the client's open connections to names (or ports) no longer allowed."""
        for task, (name, port) in list(client.open.items()):
            if not client.allows(name, port):
                task.cancel()

    # -------------------------------------------------------------- DNS
    def answer(self, query: bytes, peer: str) -> bytes | None:
        try:
            qid, flags, qdcount = struct.unpack("!HHH", query[:6])
            name, end = read_name(query, 12)
            qtype, _qclass = struct.unpack("!HH", query[end : end + 4])
        except (struct.error, ValueError, IndexError):
            return None
        if flags & 0x8000 or qdcount != 1:
            return None
        question = query[12 : end + 4]
        client = self.clients.get(peer)
        name = name.lower().rstrip(".")
        head = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080  # QR, AA, RD copied, RA
        if client is None or not matches(name, client.allow) or matches(name, client.deny):
            self.refuse(client, peer, name, "dns")
            return struct.pack("!HHHHHH", qid, head | 3, 1, 0, 0, 0) + question  # NXDOMAIN
        if qtype != 1:  # only A: an allowed name has no other record (clients use IPv4)
            return struct.pack("!HHHHHH", qid, head, 1, 0, 0, 0) + question
        record = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4)
        record += socket.inet_aton(client.gateway_ip)
        return struct.pack("!HHHHHH", qid, head, 1, 1, 0, 0) + question + record

    # -------------------------------------------------------------- proxy
    async def listen(self, port: int) -> None:
        if port not in self.listeners:
            self.listeners[port] = await asyncio.start_server(
                lambda r, w: self.serve(r, w, port),
                EVERYWHERE,
                port,
                backlog=512,
            )

    async def serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int
    ) -> None:
        peer = str(writer.get_extra_info("peername")[0])
        client = self.clients.get(peer)
        task = asyncio.current_task()
        try:
            if client is None or task is None:
                self.refuse(client, peer, "", "unknown source")
                return
            try:
                head, name = await asyncio.wait_for(read_name_from(reader), HELLO_TIMEOUT)
            except (asyncio.TimeoutError, ConnectionError, ValueError) as exc:
                self.refuse(client, peer, "", f"no name: {exc}")
                return
            if not name:
                self.refuse(client, peer, "", "no SNI or Host")
                return
            if not client.allows(name, port):
                self.refuse(client, peer, name, "policy")
                return
            address = await self.resolve_allowed(client, peer, name)
            if address is None:
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(address, port), CONNECT_TIMEOUT
                )
            except (OSError, asyncio.TimeoutError) as exc:
                self.emit(
                    {"event": "failed", "sandbox": client.label, "name": name, "why": str(exc)}
                )
                return
            client.open[task] = (name, port)
            try:
                up_writer.write(head)
                client.bytes_out += len(head)
                await asyncio.gather(
                    pump(reader, up_writer, client, "bytes_out"),
                    pump(up_reader, writer, client, "bytes_in"),
                )
            finally:
                client.open.pop(task, None)
                up_writer.close()
        except asyncio.CancelledError:
            pass  # its name was taken out of the policy: the connection is cut
        finally:
            writer.close()

    async def resolve_allowed(self, client: Client, peer: str, name: str) -> str | None:
        """The first address of ``name`` the gateway may connect to, or None (refused)."""
        try:
            addresses = await resolve(name, self.resolvers)
        except (OSError, ValueError, asyncio.TimeoutError) as exc:
            self.refuse(client, peer, name, f"resolve: {exc}")
            return None
        for address in addresses:
            if self.permitted(ipaddress.ip_address(address)):
                return address
        self.refuse(client, peer, name, f"resolves to {','.join(addresses) or 'nothing'}")
        return None

    def permitted(self, address: IPAddress) -> bool:
        """A public address, or one in a range the operator allowed; never the gateway's
        own networks (the engine's bridge, the sandboxes' networks)."""
        if any(address in net for net in self.own_networks):
            return False
        if any(address in net for net in self.allow_private):
            return True
        return address.is_global and not address.is_multicast


def usage(client: Client) -> dict[str, Any]:
    return {"bytes_out": client.bytes_out, "bytes_in": client.bytes_in, "refused": client.refused}


async def pump(
    src: asyncio.StreamReader, dst: asyncio.StreamWriter, client: Client, count: str
) -> None:
    try:
        while True:
            data = await src.read(CHUNK)
            if not data:
                break
            setattr(client, count, getattr(client, count) + len(data))
            dst.write(data)
            await dst.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        if dst.can_write_eof():
            with contextlib.suppress(OSError):
                dst.write_eof()


# ------------------------------------------------------------------ TLS and HTTP
async def read_name_from(reader: asyncio.StreamReader) -> tuple[bytes, str]:
    """The first bytes of a connection and the host name they ask for ('' for none)."""
    first = await reader.readexactly(1)
    if first == b"\x16":  # a TLS handshake record
        head = first + await reader.readexactly(4)
        length = struct.unpack("!H", head[3:5])[0]
        if length > HELLO_LIMIT:
            raise ValueError("ClientHello too long")
        head += await reader.readexactly(length)
        return head, sni(head[5:])
    head = first
    while b"\r\n\r\n" not in head:
        more = await reader.read(HELLO_LIMIT)
        if not more:
            raise ValueError("connection closed before the HTTP head ended")
        head += more
        if len(head) > HELLO_LIMIT:
            raise ValueError("HTTP head too long")
    return head, http_host(head)


def sni(hello: bytes) -> str:
    """The server name of a TLS ClientHello handshake message ('' when there is none)."""
    if not hello or hello[0] != 1:
        raise ValueError("not a ClientHello")
    pos = 4 + 2 + 32  # handshake header, version, random
    pos += 1 + hello[pos]  # session id
    pos += 2 + struct.unpack("!H", hello[pos : pos + 2])[0]  # cipher suites
    pos += 1 + hello[pos]  # compression methods
    end = pos + 2 + struct.unpack("!H", hello[pos : pos + 2])[0]
    pos += 2
    names: list[str] = []
    while pos + 4 <= end:
        kind, size = struct.unpack("!HH", hello[pos : pos + 4])
        pos += 4
        if kind == 0:  # server_name: list length, then (type, length, name)*
            body = hello[pos : pos + size]
            at = 2
            while at + 3 <= len(body):
                name_type, name_len = body[at], struct.unpack("!H", body[at + 1 : at + 3])[0]
                if name_type == 0:
                    names.append(body[at + 3 : at + 3 + name_len].decode("ascii"))
                at += 3 + name_len
        pos += size
    if len(names) > 1:
        raise ValueError("several server names")
    return names[0].lower().rstrip(".") if names else ""


def http_host(head: bytes) -> str:
    """The host an HTTP request head names; ValueError when its names disagree."""
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError("not an HTTP request")
    hosts = [
        line.split(":", 1)[1].strip() for line in lines[1:] if line.lower().startswith("host:")
    ]
    if len(hosts) != 1:
        raise ValueError("not exactly one Host header")
    host = strip_port(hosts[0])
    target = parts[1]
    authority = target.split("://", 1)[1].split("/", 1)[0] if "://" in target else None
    if authority is not None and strip_port(authority) != host:  # absolute form
        raise ValueError("the request target and the Host header differ")
    return host


def strip_port(authority: str) -> str:
    host = authority.rsplit("@", 1)[-1]
    if host.startswith("["):
        return host.lower()  # an IPv6 literal: never allowed by name
    return host.split(":", 1)[0].lower().rstrip(".")


# ------------------------------------------------------------------ DNS wire format
def read_name(packet: bytes, pos: int) -> tuple[str, int]:
    """A (possibly compressed) name at ``pos``; the position after it."""
    labels: list[str] = []
    end = -1
    for _ in range(128):
        size = packet[pos]
        if size & 0xC0 == 0xC0:
            if end < 0:
                end = pos + 2
            pos = struct.unpack("!H", packet[pos : pos + 2])[0] & 0x3FFF
            continue
        pos += 1
        if size == 0:
            return ".".join(labels), (end if end >= 0 else pos)
        labels.append(packet[pos : pos + size].decode("ascii", "replace"))
        pos += size
    raise ValueError("a DNS name loops")


def build_query(qid: int, name: str) -> bytes:
    out = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        out += bytes([len(label)]) + label.encode("ascii")
    return out + b"\x00" + struct.pack("!HH", 1, 1)


def parse_addresses(packet: bytes, qid: int) -> list[str]:
    """The A records of a response (the CNAME chain's end is among them)."""
    return parse_answer(packet, qid)[0]


def parse_answer(packet: bytes, qid: int) -> tuple[list[str], int]:
    """The A records of a response and the least TTL among them."""
    rid, flags, qd, an = struct.unpack("!HHHH", packet[:8])
    if rid != qid or not flags & 0x8000:
        raise ValueError("not the answer to our query")
    if flags & 0x000F not in (0, 3):
        raise ValueError(f"resolver error {flags & 0x000F}")
    pos = 12
    for _ in range(qd):
        pos = read_name(packet, pos)[1] + 4
    found: list[str] = []
    ttl = CACHE_MAX
    for _ in range(an):
        pos = read_name(packet, pos)[1]
        rtype, _rclass, record_ttl, size = struct.unpack("!HHIH", packet[pos : pos + 10])
        pos += 10
        if rtype == 1 and size == 4:
            found.append(socket.inet_ntoa(packet[pos : pos + 4]))
            ttl = min(ttl, record_ttl)
        pos += size
    return found, ttl


class _Answer(asyncio.DatagramProtocol):
    def __init__(self, qid: int) -> None:
        self.qid = qid
        self.done: asyncio.Future[tuple[list[str], int]] = (
            asyncio.get_running_loop().create_future()
        )

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.done.done():
            return
        try:
            self.done.set_result(parse_answer(data, self.qid))
        except (ValueError, struct.error, IndexError) as exc:
            self.done.set_exception(ValueError(str(exc)))


_cache: dict[str, tuple[float, list[str]]] = {}


async def resolve(name: str, resolvers: list[str]) -> list[str]:
    """``name``'s IPv4 addresses, asked of the operator's resolvers only, in turn; kept
    for the answer's TTL (at most CACHE_MAX seconds). Only allowed names are ever asked,
    and every address is checked on every connection, cached or not."""
    loop = asyncio.get_running_loop()
    cached = _cache.get(name)
    if cached is not None and cached[0] > loop.time():
        return cached[1]
    addresses, ttl = await _ask(name, resolvers)
    if ttl > 0:
        if len(_cache) > CACHE_SIZE:
            _cache.clear()
        _cache[name] = (loop.time() + ttl, addresses)
    return addresses


async def _ask(name: str, resolvers: list[str]) -> tuple[list[str], int]:
    if not resolvers:
        raise ValueError("no resolver configured")
    loop = asyncio.get_running_loop()
    last: BaseException = ValueError("no answer")
    for server in resolvers:
        qid = random.getrandbits(16)
        transport, protocol = await loop.create_datagram_endpoint(
            lambda qid=qid: _Answer(qid),  # type: ignore[misc]
            remote_addr=(server, 53),
        )
        try:
            transport.sendto(build_query(qid, name))
            return await asyncio.wait_for(protocol.done, RESOLVE_TIMEOUT)
        except (OSError, ValueError, asyncio.TimeoutError) as exc:
            last = exc
        finally:
            transport.close()
    raise last


class _DNS(asyncio.DatagramProtocol):
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.gateway.answer(data, addr[0])
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


def own_networks(extra: list[str]) -> list[IPNetwork]:
    """The networks this container is on (its routes: the engine's bridge and every
    sandbox network attached so far) and ``extra`` (the whole range sandbox networks are
    carved from): never a destination, whatever a name resolves to."""
    found: list[IPNetwork] = [ipaddress.ip_network("0.0.0.0/8")]
    found += [ipaddress.ip_network(n, strict=False) for n in extra]
    try:
        with open("/proc/net/route") as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        rows = []
    for row in rows:
        words = row.split()
        if len(words) < 8 or words[7] == "00000000":
            continue  # the default route is the way out, not a network of ours
        dest = socket.inet_ntoa(struct.pack("<I", int(words[1], 16)))
        mask = socket.inet_ntoa(struct.pack("<I", int(words[7], 16)))
        found.append(ipaddress.ip_network(f"{dest}/{mask}", strict=False))
    return found


async def main() -> None:
    settings = json.loads(os.environ.get("EGRESS_SETTINGS", "{}"))
    gateway = Gateway(list(settings.get("resolvers", [])), list(settings.get("allow_private", [])))
    gateway.extra_own = list(settings.get("own", []))
    gateway.own_networks = own_networks(gateway.extra_own)
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: _DNS(gateway), local_addr=(EVERYWHERE, 53))
    for port in settings.get("ports", [80, 443]):
        await gateway.listen(int(port))
    gateway.emit({"event": "ready"})

    async def refresh() -> None:  # networks attached later (each sandbox's own)
        while True:
            await asyncio.sleep(0.5)
            gateway.extra_own = list(settings.get("own", []))

    gateway.own_networks = own_networks(gateway.extra_own)

    refresher = asyncio.ensure_future(refresh())
    try:
        await gateway.control()
    finally:
        refresher.cancel()


if __name__ == "__main__":
    asyncio.run(main())
