"""The private internet's servers, run inside its network namespace (standard library
only): a resolver on ADDRESS:53 answering the test zone, and one web server on 80 (HTTP)
and 443 (HTTPS) per web address. Every query and request is logged, one JSON line each,
so a test can say what reached the servers and what did not.

    python3 egress_servers.py CONFIG.json
"""

from __future__ import annotations

import http.server
import json
import socket
import ssl
import struct
import sys
import threading
from typing import Any

CONFIG: dict[str, Any] = {}
LOG_LOCK = threading.Lock()


def log(**entry: object) -> None:
    with LOG_LOCK, open(CONFIG["log"], "a") as f:
        f.write(json.dumps(entry) + "\n")


def read_name(packet: bytes, pos: int) -> tuple[str, int]:
    labels = []
    while packet[pos]:
        size = packet[pos]
        labels.append(packet[pos + 1 : pos + 1 + size].decode())
        pos += 1 + size
    return ".".join(labels), pos + 1


def serve_dns() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((CONFIG["resolver"], 53))
    zone: dict[str, str] = CONFIG["zone"]
    while True:
        query, peer = sock.recvfrom(4096)
        qid, _flags = struct.unpack("!HH", query[:4])
        name, end = read_name(query, 12)
        qtype = struct.unpack("!H", query[end : end + 2])[0]
        log(kind="dns", name=name.lower(), qtype=qtype, peer=peer[0])
        question = query[12 : end + 4]
        address = zone.get(name.lower())
        if address is None:
            sock.sendto(struct.pack("!HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question, peer)
            continue
        answers = b""
        count = 0
        if qtype == 1:
            answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4) + socket.inet_aton(address)
            count = 1
        sock.sendto(struct.pack("!HHHHHH", qid, 0x8180, 1, count, 0, 0) + question + answers, peer)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").split(":")[0]
        sni = getattr(self.connection, "sni", None) if hasattr(self.connection, "version") else None
        log(
            kind="http", host=host, path=self.path, tls=hasattr(self.connection, "version"), sni=sni
        )
        files: dict[str, str] = CONFIG.get("files", {})
        if self.path in files:
            with open(files[self.path], "rb") as f:
                body = f.read()
            kind = "text/html" if self.path.endswith("/") else "application/octet-stream"
        elif self.path.startswith("/bytes/"):
            body = b"x" * int(self.path.split("/")[2])
            kind = "application/octet-stream"
        elif self.path.startswith("/slow"):
            body = b""
            kind = "text/plain"
            self.send_response(200)
            self.send_header("Content-Length", "100000000")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b"y" * 1000)
                    self.wfile.flush()
                    threading.Event().wait(0.05)
            except OSError:
                log(kind="cut", host=host)
            return
        else:
            body = f"hello from {host}".encode()
            kind = "text/plain"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        host = (self.headers.get("Host") or "").split(":")[0]
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass  # trailers
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        log(kind="http", host=host, path=self.path, tls=False, sni=None, body=len(body))
        reply = f"{len(body)} bytes to {host}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


class Server6(Server):
    address_family = socket.AF_INET6


def serve_web6(address: str) -> None:
    """Plain HTTP on an IPv6 address (where the host has IPv6): never to be reached."""
    try:
        plain = Server6((address, 80), Handler)
    except OSError:
        return
    threading.Thread(target=plain.serve_forever, daemon=True).start()


def serve_web(address: str) -> None:
    plain = Server((address, 80), Handler)
    threading.Thread(target=plain.serve_forever, daemon=True).start()
    tls = Server((address, 443), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(CONFIG["cert"], CONFIG["key"])

    def on_sni(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        sock.sni = name  # type: ignore[attr-defined]

    ctx.sni_callback = on_sni  # type: ignore[assignment]
    tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
    threading.Thread(target=tls.serve_forever, daemon=True).start()


def main() -> None:
    with open(sys.argv[1]) as f:
        CONFIG.update(json.load(f))
    for address in CONFIG["web"]:
        serve_web(address)
    for address in CONFIG.get("web6", []):
        serve_web6(address)
    threading.Thread(target=serve_dns, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes our stdin


if __name__ == "__main__":
    main()
