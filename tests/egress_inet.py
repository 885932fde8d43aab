"""A private "internet" for the egress tests, in a network namespace of its own.

``skeg-inet`` is joined to the host by a veth pair on 198.18.0.0/24 (a benchmarking
range, never routed beyond this machine): a resolver at 198.18.0.2 answering the test
zone (``*.test`` names only), and web servers (HTTP 80, HTTPS 443 with a test CA made
here) at 198.18.0.10 and .11. The gateway is told to use only that resolver and to
allow only that range; nothing is ever sent anywhere else. Needs root (``ip netns``).
"""

from __future__ import annotations

import datetime
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NETNS = "skeg-inet"
HOST_IF, NS_IF = "skeg-h", "skeg-n"
HOST_ADDR = "198.18.0.1"
RESOLVER = "198.18.0.2"
WEB = "198.18.0.10"
WEB2 = "198.18.0.11"
RANGE = "198.18.0.0/24"
# a unique-local IPv6 prefix on the same link: what a sandbox would reach if it had IPv6
HOST_ADDR6 = "fdaa:5eed::1"
WEB6 = "fdaa:5eed::10"
ZONE = {
    "allowed.test": WEB,
    "other.test": WEB,
    "second.test": WEB2,
    "a.wild.test": WEB,
    "b.a.wild.test": WEB,
    "wild.test": WEB,
    "deny.wild.test": WEB,
    "pypi.test": WEB,
    "rebind-lo.test": "127.0.0.1",
    "rebind-bridge.test": "172.17.0.1",
    "rebind-meta.test": "169.254.169.254",
}
CERT_NAMES = [
    "allowed.test",
    "other.test",
    "second.test",
    "*.wild.test",
    "*.a.wild.test",
    "wild.test",
    "pypi.test",
]
PACKAGE = "skegpkg"


@dataclass
class Inet:
    """The running private internet: its CA (PEM) and its servers' log."""

    ca_pem: bytes
    log_path: Path

    def entries(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line]

    def queried(self, name: str) -> bool:
        return any(e["kind"] == "dns" and e["name"] == name for e in self.entries())

    def requested(self, host: str) -> bool:
        return any(
            e["kind"] == "http" and (e["host"] == host or e.get("sni") == host)
            for e in self.entries()
        )

    def settings(self) -> dict[str, str]:
        return {"egress_resolvers": RESOLVER, "egress_allow_private": RANGE}


def _sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check)


def _certificates(workdir: Path) -> tuple[bytes, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sandboxkit egress test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "allowed.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in CERT_NAMES]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = workdir / "server.pem", workdir / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca.public_bytes(serialization.Encoding.PEM), cert_path, key_path


def _wheel(workdir: Path) -> dict[str, str]:
    """A one-module wheel and a PEP 503 index page for it."""
    name = f"{PACKAGE}-1.0-py3-none-any.whl"
    buf = io.BytesIO()
    files = {
        f"{PACKAGE}.py": "VALUE = 42\n",
        f"{PACKAGE}-1.0.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 1.0\n"
        ),
        f"{PACKAGE}-1.0.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = "".join(f"{p},,\n" for p in files) + f"{PACKAGE}-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(buf, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
        z.writestr(f"{PACKAGE}-1.0.dist-info/RECORD", record)
    (workdir / name).write_bytes(buf.getvalue())
    page = f'<html><body><a href="/files/{name}">{name}</a></body></html>'
    (workdir / "index.html").write_text(page)
    root = '<html><body><a href="/simple/skegpkg/">skegpkg</a></body></html>'
    (workdir / "root.html").write_text(root)
    return {
        f"/simple/{PACKAGE}/": str(workdir / "index.html"),
        "/simple/": str(workdir / "root.html"),
        f"/files/{name}": str(workdir / name),
    }


def _teardown() -> None:
    _sh("ip", "link", "del", HOST_IF, check=False)
    _sh("ip", "netns", "del", NETNS, check=False)


@contextmanager
def private_internet(workdir: Path) -> Iterator[Inet]:
    """Build the namespace, start its servers; remove everything on exit."""
    if os.geteuid() != 0:
        raise RuntimeError("the egress tests make a network namespace: run them as root")
    _teardown()  # a previous run killed midway
    server: subprocess.Popen[str] | None = None
    try:
        _sh("ip", "netns", "add", NETNS)
        _sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF)
        _sh("ip", "link", "set", NS_IF, "netns", NETNS)
        _sh("ip", "addr", "add", f"{HOST_ADDR}/24", "dev", HOST_IF)
        _sh("ip", "link", "set", HOST_IF, "up")
        ns = ("ip", "netns", "exec", NETNS)
        for address in (RESOLVER, WEB, WEB2):
            _sh(*ns, "ip", "addr", "add", f"{address}/24", "dev", NS_IF)
        _sh(*ns, "ip", "link", "set", NS_IF, "up")
        # IPv6 too, where the host has it (a sandbox must still never reach it)
        _sh("ip", "-6", "addr", "add", f"{HOST_ADDR6}/64", "dev", HOST_IF, "nodad", check=False)
        _sh(*ns, "ip", "-6", "addr", "add", f"{WEB6}/64", "dev", NS_IF, "nodad", check=False)
        _sh(*ns, "ip", "link", "set", "lo", "up")
        _sh(*ns, "ip", "route", "add", "default", "via", HOST_ADDR)
        ca, cert, key = _certificates(workdir)
        log_path = workdir / "servers.log"
        config = {
            "log": str(log_path),
            "resolver": RESOLVER,
            "web": [WEB, WEB2],
            "web6": [WEB6],
            "zone": ZONE,
            "cert": str(cert),
            "key": str(key),
            "files": _wheel(workdir),
        }
        (workdir / "config.json").write_text(json.dumps(config))
        script = Path(__file__).with_name("egress_servers.py")
        server = subprocess.Popen(
            [*ns, sys.executable, str(script), str(workdir / "config.json")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError("the private internet's servers did not start")
        time.sleep(0.1)
        yield Inet(ca, log_path)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        _teardown()
