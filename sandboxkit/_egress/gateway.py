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
  splices (splice(2): the bytes stay in the kernel), counting bytes each way. Plain
  HTTP's requests are each read: a kept-alive connection stays with its first name.
- Proxy requests (clients told to use one): ``CONNECT host:port`` and absolute-form
  HTTP, on PROXY_PORT and the policy ports, checked the same way; a tunnel's own first
  bytes must name its CONNECT host. PROXY_NAME resolves to the gateway.
- Control: JSON lines on stdin (``set``, ``forget``, ``usage``), replies and events as
  JSON lines on stdout. Closing stdin ends the gateway (and the engine removes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
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
CHUNK = 65536  # bytes read at a time while a request is parsed
PIPE_SIZE = 1 << 20  # bytes moved per splice(2) (the pipe between is grown to this)
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PROXY_PORT = 3128  # for clients told to use a proxy (HTTP_PROXY): CONNECT, absolute-form
PROXY_NAME = "egress.sandboxkit.internal"  # the gateway, by name, from every sandbox
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
        self.listeners: dict[int, asyncio.Future[None]] = {}
        self.serving: set[asyncio.Future[None]] = set()
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
        if client is not None and name == PROXY_NAME:
            allowed = True  # the gateway itself, for clients told to use a proxy
        else:
            allowed = client is not None and client.allows(name)
        if client is None or not allowed:
            self.refuse(client, peer, name, "dns")
            return struct.pack("!HHHHHH", qid, head | 3, 1, 0, 0, 0) + question  # NXDOMAIN
        if qtype != 1:  # only A: an allowed name has no other record (clients use IPv4)
            return struct.pack("!HHHHHH", qid, head, 1, 0, 0, 0) + question
        record = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4)
        record += socket.inet_aton(client.gateway_ip)
        return struct.pack("!HHHHHH", qid, head, 1, 1, 0, 0) + question + record

    # -------------------------------------------------------------- proxy
    async def listen(self, port: int) -> None:
        """Accept connections on ``port`` (every sandbox network the gateway joins)."""
        if port in self.listeners:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((EVERYWHERE, port))
        sock.listen(512)
        sock.setblocking(False)
        self.listeners[port] = asyncio.ensure_future(self.accept(sock, port))

    async def accept(self, listener: socket.socket, port: int) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _addr = await loop.sock_accept(listener)
            except OSError:
                await asyncio.sleep(0.05)  # out of descriptors, say: try again shortly
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = asyncio.ensure_future(self.serve(sock, port))
            self.serving.add(task)
            task.add_done_callback(self.serving.discard)

    async def serve(self, sock: socket.socket, listen_port: int) -> None:
        """One connection from a sandbox: decide on its first bytes, then splice."""
        try:
            peer = str(sock.getpeername()[0])
        except OSError:
            sock.close()
            return
        client = self.clients.get(peer)
        task = asyncio.current_task()
        upstream: socket.socket | None = None
        try:
            if client is None or task is None:
                self.refuse(client, peer, "", "unknown source")
                return
            inbox = Inbox(sock)
            try:
                first = await asyncio.wait_for(first_request(inbox), HELLO_TIMEOUT)
            except (asyncio.TimeoutError, ConnectionError, ValueError, EOFError) as exc:
                self.refuse(client, peer, "", f"no name: {exc}")
                return
            tunnel = first.method == "CONNECT"
            if tunnel or first.absolute:
                port = first.port  # a proxy request: the port it names
            elif listen_port == PROXY_PORT:
                self.refuse(client, peer, first.name, "not a proxy request on the proxy port")
                return
            else:
                port = listen_port  # transparent: the port the sandbox connected to
            name = first.name
            if not name:
                self.refuse(client, peer, "", "no SNI or Host")
                return
            if not client.allows(name, port):
                self.refuse(client, peer, name, "port" if client.allows(name) else "policy")
                if tunnel:
                    await inbox.send(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            address = await self.resolve_allowed(client, peer, name)
            if address is None:
                if tunnel:
                    await inbox.send(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            if tunnel:
                # what flows in the tunnel must name the same host: TLS's SNI, HTTP's Host
                await inbox.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
                inbox.buffer = first.rest
                try:
                    inner = await asyncio.wait_for(first_request(inbox), HELLO_TIMEOUT)
                except (asyncio.TimeoutError, ConnectionError, ValueError, EOFError) as exc:
                    self.refuse(client, peer, name, f"tunnel: {exc}")
                    return
                if inner.method == "CONNECT" or inner.name != name:
                    self.refuse(client, peer, inner.name or name, f"tunnel to {name} names another")
                    return
                first = inner
            upstream = await self.connect(client, name, address, port)
            if upstream is None:
                return
            client.open[task] = (name, port)
            try:
                await self.relay(client, peer, inbox, upstream, first, name, port)
            finally:
                client.open.pop(task, None)
        except asyncio.CancelledError:
            pass  # its name was taken out of the policy: the connection is cut
        except OSError:
            pass  # either side went away
        finally:
            if upstream is not None:
                upstream.close()
            sock.close()

    async def connect(
        self, client: Client, name: str, address: str, port: int
    ) -> socket.socket | None:
        loop = asyncio.get_running_loop()
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        upstream.setblocking(False)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.wait_for(loop.sock_connect(upstream, (address, port)), CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as exc:
            upstream.close()
            self.emit({"event": "failed", "sandbox": client.label, "name": name, "why": str(exc)})
            return None
        return upstream

    async def relay(
        self,
        client: Client,
        peer: str,
        inbox: Inbox,
        upstream: socket.socket,
        first: Request,
        name: str,
        port: int,
    ) -> None:
        """Both directions until both end. What the server sends is spliced as is; what
        the sandbox sends too, but for plain HTTP, whose every request is read and its
        Host checked: one connection, one name."""
        out = Outbox(upstream, client)
        await out.send(first.head)
        if first.kind == "tls":
            outbound = splice(inbox.sock, upstream, client, "bytes_out", inbox.take())
        else:
            inbox.buffer = first.rest
            outbound = self.requests(client, peer, inbox, out, first, name, port)
        tasks = [
            asyncio.ensure_future(outbound),
            asyncio.ensure_future(splice(upstream, inbox.sock, client, "bytes_in")),
        ]
        try:
            await asyncio.gather(*tasks)
        except (Refused, ValueError, EOFError):
            pass  # refused (and said so), or not HTTP: the whole connection ends
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def requests(
        self,
        client: Client,
        peer: str,
        inbox: Inbox,
        out: Outbox,
        request: Request,
        name: str,
        port: int,
    ) -> None:
        """The sandbox's side of a plain HTTP connection: each request's body is passed
        on, then the next request is read; one naming another host (or port) ends the
        connection (raises Refused: the server's side is cut too)."""
        try:
            while True:
                # (an Upgrade is not followed: plain ws:// ends at its first frame, as
                # the gateway cannot tell a 101 from a refusal without reading replies)
                await pass_body(inbox, out, request)
                try:
                    request = await first_request(inbox)
                except EOFError:
                    return
                if request.kind != "http" or request.method == "CONNECT":
                    self.refuse(client, peer, name, "not HTTP after a request")
                    raise Refused
                named_port = request.port if request.absolute else port
                if request.name != name or named_port != port:
                    self.refuse(client, peer, request.name, f"kept-alive connection to {name}")
                    raise Refused
                await out.send(request.head)
        finally:
            with contextlib.suppress(OSError):
                out.sock.shutdown(socket.SHUT_WR)

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


class Refused(Exception):
    """A kept-alive connection asked for something else: the whole connection ends."""


# ------------------------------------------------------------------ moving bytes
class Inbox:
    """The sandbox's socket, and the bytes read from it but not yet passed on."""

    def __init__(self, sock: socket.socket, buffer: bytes = b"") -> None:
        self.sock = sock
        self.buffer = buffer

    async def more(self) -> None:
        data = await asyncio.get_running_loop().sock_recv(self.sock, CHUNK)
        if not data:
            raise EOFError("the sandbox closed the connection")
        self.buffer += data

    def take(self, size: int = -1) -> bytes:
        size = len(self.buffer) if size < 0 else size
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    async def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if len(self.buffer) > HELLO_LIMIT:
                raise ValueError("a line too long")
            await self.more()
        return self.take(self.buffer.index(b"\r\n") + 2)

    async def send(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, data)


class Outbox:
    """The server's socket, counting what is sent to it."""

    def __init__(self, sock: socket.socket, client: Client) -> None:
        self.sock = sock
        self.client = client

    async def send(self, data: bytes) -> None:
        if data:
            await asyncio.get_running_loop().sock_sendall(self.sock, data)
            self.client.bytes_out += len(data)


async def pass_body(inbox: Inbox, out: Outbox, request: Request) -> None:
    """The request's body (Content-Length bytes, or chunks to the last), as it comes."""
    if request.chunked:
        while True:
            line = await inbox.line()
            await out.send(line)
            size = int(line.split(b";", 1)[0].strip() or b"x", 16)
            if size == 0:
                while (trailer := await inbox.line()) != b"\r\n":
                    await out.send(trailer)
                await out.send(trailer)
                return
            await pass_bytes(inbox, out, size + 2)  # the chunk and its CRLF
    await pass_bytes(inbox, out, request.length)


async def pass_bytes(inbox: Inbox, out: Outbox, size: int) -> None:
    while size > 0:
        if not inbox.buffer:
            await inbox.more()
        data = inbox.take(min(size, len(inbox.buffer)))
        await out.send(data)
        size -= len(data)


async def splice(
    src: socket.socket, dst: socket.socket, client: Client, count: str, first: bytes = b""
) -> None:
    """Bytes from ``src`` to ``dst`` until ``src`` ends, counted, then ``dst``'s writing
    side is shut. With splice(2) through a pipe the data never enters Python (Linux);
    elsewhere, large reads."""
    loop = asyncio.get_running_loop()
    try:
        if first:
            await loop.sock_sendall(dst, first)
            setattr(client, count, getattr(client, count) + len(first))
        if hasattr(os, "splice"):
            await _splice(loop, src, dst, client, count)
        else:  # pragma: no cover (not Linux)
            while data := await loop.sock_recv(src, PIPE_SIZE):
                setattr(client, count, getattr(client, count) + len(data))
                await loop.sock_sendall(dst, data)
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


async def _splice(
    loop: asyncio.AbstractEventLoop,
    src: socket.socket,
    dst: socket.socket,
    client: Client,
    count: str,
) -> None:
    pipe_out, pipe_in = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe_in, F_SETPIPE_SZ, PIPE_SIZE)
        flags = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
        while True:
            try:
                size = os.splice(src.fileno(), pipe_in, PIPE_SIZE, flags=flags)
            except BlockingIOError:
                await ready(loop, src, writing=False)
                continue
            if size == 0:
                return
            setattr(client, count, getattr(client, count) + size)
            while size:
                try:
                    size -= os.splice(pipe_out, dst.fileno(), size, flags=flags)
                except BlockingIOError:
                    await ready(loop, dst, writing=True)
    finally:
        os.close(pipe_out)
        os.close(pipe_in)


async def ready(loop: asyncio.AbstractEventLoop, sock: socket.socket, *, writing: bool) -> None:
    """Until ``sock`` can be read (or written)."""
    future: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not future.done():
            future.set_result(None)

    fd = sock.fileno()
    if writing:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await future
    finally:
        if writing:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


# ------------------------------------------------------------------ TLS and HTTP
class Request:
    """What a connection's first bytes ask for: a TLS ClientHello (its SNI) or an HTTP
    request head (its Host; for a proxy request, the target's host and port)."""

    def __init__(self, kind: str, head: bytes, name: str, rest: bytes = b"") -> None:
        self.kind = kind  # "tls" or "http"
        self.head = head  # what is passed on to the server (rewritten for proxy requests)
        self.name = name
        self.rest = rest  # bytes read past the head
        self.method = ""
        self.port = 0  # named by a proxy request (CONNECT, absolute-form target)
        self.absolute = False
        self.length = 0
        self.chunked = False


async def first_request(inbox: Inbox) -> Request:
    """The request the bytes at the front of ``inbox`` make (read until it is whole)."""
    if not inbox.buffer:
        await inbox.more()  # EOFError: the connection ended between requests
    while True:
        data = inbox.buffer
        if data[:1] == b"\x16":  # a TLS handshake record
            if len(data) >= 5:
                length = struct.unpack("!H", data[3:5])[0]
                if length > HELLO_LIMIT:
                    raise ValueError("ClientHello too long")
                if len(data) >= 5 + length:
                    name = sni(data[5 : 5 + length])
                    return Request("tls", inbox.take(), name)
        elif b"\r\n\r\n" in data:
            end = data.index(b"\r\n\r\n") + 4
            request = parse_request(inbox.take(end))
            request.rest = inbox.buffer
            return request
        if len(data) > HELLO_LIMIT:
            raise ValueError("request head too long")
        try:
            await inbox.more()
        except EOFError:
            raise ValueError("connection closed before its first request was whole") from None


HOP_BY_HOP = ("proxy-connection:", "proxy-authorization:", "proxy-authenticate:")


def parse_request(head: bytes) -> Request:
    """An HTTP request head: its host, port (for proxy requests), body framing; proxy
    requests' heads are rewritten for the server (origin-form target, no Proxy-*
    header). ValueError when its names disagree or it is not HTTP/1."""
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError("not an HTTP/1 request")
    method, target, version = parts
    fields = [line.split(":", 1) for line in lines[1:] if ":" in line]
    values: dict[str, list[str]] = {}
    for key, value in fields:
        values.setdefault(key.strip().lower(), []).append(value.strip())
    hosts = values.get("host", [])
    port = 0
    absolute = False
    if method == "CONNECT":
        if "/" in target or ":" not in target:
            raise ValueError("CONNECT names host:port")
        name, port = split_authority(target, 0)
        if len(hosts) > 1 or (hosts and strip_port(hosts[0]) != name):
            raise ValueError("the CONNECT target and the Host header differ")
    else:
        if len(hosts) != 1:
            raise ValueError("not exactly one Host header")
        name = strip_port(hosts[0])
        if "://" in target:  # absolute form: a proxy request
            scheme, rest = target.split("://", 1)
            if scheme.lower() != "http":
                raise ValueError(f"a proxy request for {scheme}: (use CONNECT)")
            authority, _, path = rest.partition("/")
            target_name, port = split_authority(authority, 80)
            if target_name != name:
                raise ValueError("the request target and the Host header differ")
            absolute = True
            kept = [f"{method} /{path} {version}"] + [
                line for line in lines[1:] if not line.lower().startswith(HOP_BY_HOP)
            ]
            head = ("\r\n".join(kept) + "\r\n\r\n").encode("latin-1")
    request = Request("http", head, name)
    request.method = method
    request.port = port
    request.absolute = absolute
    encodings = ",".join(values.get("transfer-encoding", [])).lower()
    if encodings:
        if not encodings.rstrip().endswith("chunked"):
            raise ValueError("a request body of unknown length")
        request.chunked = True
    elif values.get("content-length"):
        lengths = {v for value in values["content-length"] for v in value.split(",")}
        if len(lengths) != 1 or not lengths.copy().pop().strip().isdigit():
            raise ValueError("an unclear Content-Length")
        request.length = int(lengths.pop())
    return request


def http_host(head: bytes) -> str:
    """The host an HTTP request head names; ValueError when its names disagree."""
    return parse_request(head).name


def split_authority(authority: str, default: int) -> tuple[str, int]:
    """``host[:port]`` as a name and a port."""
    if "@" in authority:
        raise ValueError("credentials in the request target")
    host, _, port = authority.rpartition(":") if ":" in authority else (authority, "", "")
    if host.startswith("["):
        raise ValueError("an IPv6 literal")
    if port and not port.isdigit():
        raise ValueError(f"a bad port {port!r}")
    return host.lower().rstrip("."), int(port) if port else default


def strip_port(authority: str) -> str:
    host = authority.rsplit("@", 1)[-1]
    if host.startswith("["):
        return host.lower()  # an IPv6 literal: never allowed by name
    return host.split(":", 1)[0].lower().rstrip(".")


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
    for port in [*settings.get("ports", [80, 443]), PROXY_PORT]:
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
