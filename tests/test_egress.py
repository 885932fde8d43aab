"""Egress by domain on real traffic (real Docker): a sandbox reaches exactly the names its
policy allows. Every address here is one the tests made: the private internet of
``egress_inet`` (a network namespace on 198.18.0.0/24), the gateway and the sandboxes."""

from __future__ import annotations

import asyncio
import glob
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import sandboxkit as sk
from sandboxkit._fleet.labels import LABEL_POOL

sys.path.insert(0, str(Path(__file__).parent))
from egress_inet import NETNS, WEB, WEB2, WEB6, Inet, private_internet

pytestmark = pytest.mark.docker

CA = "/work/ca.pem"
ENV = {"SSL_CERT_FILE": CA}
PROXY = "http://egress.sandboxkit.internal:3128"  # the gateway, for clients told to use one

# Runs in the sandbox: try each (kind, target, extra) and print one JSON line each.
PROBE = r"""
import json, socket, ssl, sys, urllib.request
def attempt(kind, target, extra):
    try:
        if kind == "get":
            body = urllib.request.urlopen(target, timeout=5).read()
            return "ok:" + body.decode()[:60]
        if kind == "resolve":
            return "ok:" + socket.gethostbyname(target)
        if kind == "tcp":
            host, port = target.rsplit(":", 1)
            s = socket.create_connection((host, int(port)), timeout=3)
            s.sendall(extra.encode())
            s.settimeout(3)
            data = s.recv(200)
            return "ok:" + data.decode(errors="replace")[:60] if data else "closed"
        if kind == "tls":
            host, port, sni = target.split(":")
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            s = socket.create_connection((host, int(port)), timeout=3)
            t = ctx.wrap_socket(s, server_hostname=sni)
            t.sendall(extra.encode())
            return "ok:" + t.recv(200).decode(errors="replace")[:60]
        if kind == "udp":
            host, port = target.rsplit(":", 1)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(2)
            query = bytes.fromhex("123401000001000000000000")
            query += b"\x05other\x04test\x00\x00\x01\x00\x01"
            s.sendto(query, (host, int(port)))
            return "ok:" + repr(s.recv(512))[:40]
        if kind in ("raw", "ping"):  # ICMP echo: a raw socket, or a ping socket
            style = socket.SOCK_RAW if kind == "raw" else socket.SOCK_DGRAM
            s = socket.socket(socket.AF_INET, style, socket.IPPROTO_ICMP)
            s.settimeout(2)
            s.sendto(bytes.fromhex("0800f7ff00000000"), (target, 0))
            return "ok:" + repr(s.recv(512))[:40]
    except Exception as exc:
        return "fail:" + type(exc).__name__ + ":" + str(exc)[:80]
# GW: the gateway's address on this sandbox's network (what an allowed name resolves to)
GW = socket.gethostbyname(sys.argv[2]) if len(sys.argv) > 2 else "GW"
for kind, target, extra in json.loads(sys.argv[1]):
    outcome = attempt(kind, target.replace("GW", GW), extra)
    print(json.dumps([kind, target, extra.split("\r\n")[0], outcome]), flush=True)
"""


def probe_args(*attempts: tuple[str, str] | tuple[str, str, str]) -> list[str]:
    args = [json.dumps([(a[0], a[1], a[2] if len(a) > 2 else "") for a in attempts])]
    if any("GW" in a[1] for a in attempts):
        args.append("allowed.test")
    return args


def outcomes(result: sk.RunResult) -> dict[str, str]:
    assert result.status == "ok", result.stderr
    out = {}
    for line in result.stdout.splitlines():
        kind, target, first_line, outcome = json.loads(line)
        out[f"{kind} {target}"] = outcome
        out[target] = outcome
        out[f"{target} {first_line}"] = outcome  # when one target is tried several ways
    return out


@pytest.fixture(scope="module")
def inet() -> Iterator[Inet]:
    with tempfile.TemporaryDirectory() as workdir, private_internet(Path(workdir)) as net:
        yield net


@pytest.fixture(scope="module")
async def egress_pool(inet: Inet) -> AsyncIterator[sk.SandboxPool]:
    pool = sk.SandboxPool(
        languages=["python"],
        size=1,
        network=sk.Egress(allow=["allowed.test"]),
        **inet.settings(),
    )
    async with pool:
        yield pool
    assert not _left(pool.pool_id), "containers or networks left after aclose"


@pytest.fixture(scope="module", params=["runc", "runsc"])
async def runtime(request: pytest.FixtureRequest, egress_pool: sk.SandboxPool) -> sk.Runtime:
    """Every probe runs under runc and under gVisor: the same promises hold."""
    name: sk.Runtime = request.param
    if name == "runsc":
        info = await egress_pool.engine.info()
        if "runsc" not in info.runtimes:
            pytest.skip("the engine has no runsc (gVisor) runtime")
        if "--network=none" in info.runtime_args.get("runsc", ()):
            pytest.skip("the engine runs runsc with --network=none (see test_gvisor_without_net)")
    return name


def _left(pool_id: str) -> list[str]:
    found = []
    for kind in ("ps -aq", "network ls -q"):
        out = subprocess.run(
            ["docker", *kind.split(), "--filter", f"label={LABEL_POOL}={pool_id}"],
            capture_output=True,
            text=True,
            check=True,
        )
        found += out.stdout.split()
    return found


async def run_probe(
    pool: sk.SandboxPool,
    inet: Inet,
    policy: sk.Egress,
    *attempts: tuple[str, str] | tuple[str, str, str],
    runtime: sk.Runtime | None = None,
) -> tuple[dict[str, str], sk.RunResult]:
    result = await pool.run(
        PROBE,
        files={"ca.pem": inet.ca_pem},
        env=ENV,
        args=probe_args(*attempts),
        network=policy,
        runtime=runtime,
        limits=sk.Limits(time=60),
    )
    return outcomes(result), result


async def test_allowed_http_and_https_work_and_other_names_are_refused_unseen(
    egress_pool: sk.SandboxPool, inet: Inet, runtime: sk.Runtime
) -> None:
    seen, result = await run_probe(
        egress_pool,
        inet,
        sk.Egress(allow=["allowed.test"]),
        ("get", "http://allowed.test/plain"),
        ("get", "https://allowed.test/secure"),
        ("get", "http://other.test/leak"),
        ("get", "https://other.test/leak"),
        ("resolve", "other-secret-data.test"),
        runtime=runtime,
    )
    assert seen["http://allowed.test/plain"] == "ok:hello from allowed.test"
    assert seen["https://allowed.test/secure"] == "ok:hello from allowed.test"
    for refused in ("http://other.test/leak", "https://other.test/leak"):
        assert seen[refused].startswith("fail:URLError"), seen[refused]
    assert seen["other-secret-data.test"].startswith("fail:gaierror")
    # the servers never saw the refused names: no request, and no DNS query either
    assert not inet.requested("other.test")
    assert not inet.queried("other.test")
    assert not inet.queried("other-secret-data.test")
    assert inet.queried("allowed.test")
    assert result.network is not None
    assert result.network.bytes_out > 0 and result.network.bytes_in > 0
    assert "other.test" in result.network.refused
    assert "other-secret-data.test" in result.network.refused


async def test_wildcard_is_subdomains_only_and_deny_wins(
    egress_pool: sk.SandboxPool, inet: Inet, runtime: sk.Runtime
) -> None:
    seen, _ = await run_probe(
        egress_pool,
        inet,
        sk.Egress(allow=["*.wild.test"], deny=["deny.wild.test"]),
        ("get", "https://a.wild.test/"),
        ("get", "https://b.a.wild.test/"),
        ("get", "https://wild.test/"),
        ("get", "https://deny.wild.test/"),
        runtime=runtime,
    )
    assert seen["https://a.wild.test/"] == "ok:hello from a.wild.test"
    assert seen["https://b.a.wild.test/"] == "ok:hello from b.a.wild.test"
    assert seen["https://wild.test/"].startswith("fail:")
    assert seen["https://deny.wild.test/"].startswith("fail:")
    assert not inet.queried("wild.test") and not inet.queried("deny.wild.test")
    assert not inet.requested("wild.test") and not inet.requested("deny.wild.test")


async def test_ip_literals_raw_sockets_and_other_ports_fail(
    egress_pool: sk.SandboxPool, inet: Inet, runtime: sk.Runtime
) -> None:
    gateway = "GW"
    seen, _ = await run_probe(
        egress_pool,
        inet,
        sk.Egress(allow=["allowed.test"]),
        ("get", f"http://{WEB}/literal"),
        ("tcp", f"{WEB}:80", "GET / HTTP/1.0\r\nHost: allowed.test\r\n\r\n"),
        ("udp", "198.18.0.2:53"),
        ("tcp", f"{gateway}:8080", "GET / HTTP/1.0\r\nHost: allowed.test\r\n\r\n"),
        ("tcp", f"{gateway}:22", "SSH-2.0-x\r\n"),
        ("tcp", f"{gateway}:80", "GET / HTTP/1.0\r\nHost: other.test\r\n\r\n"),
        ("tcp", f"{gateway}:80", "GET /raw HTTP/1.0\r\nHost: allowed.test\r\n\r\n"),
        ("raw", WEB2),
        ("ping", WEB2),
        runtime=runtime,
    )
    assert seen[f"http://{WEB}/literal"].startswith("fail:")
    assert seen[f"{WEB}:80"].startswith("fail:")  # no route out of its network
    assert seen["198.18.0.2:53"].startswith("fail:")
    assert seen[f"{gateway}:8080"].startswith("fail:")  # a port outside the policy
    assert seen[f"{gateway}:22"].startswith("fail:")
    assert seen[f"{gateway}:80 GET / HTTP/1.0"] == "closed"  # Host: other.test
    assert seen[f"{gateway}:80 GET /raw HTTP/1.0"].startswith("ok:HTTP/1.1 200"), seen
    assert seen[f"raw {WEB2}"].startswith("fail:"), seen  # no raw socket (no CAP_NET_RAW)
    assert seen[f"ping {WEB2}"].startswith("fail:"), seen  # a ping socket: no route
    assert not any(e["kind"] == "http" and e["path"] == "/literal" for e in inet.entries())
    assert not inet.requested("other.test")
    assert any(e.get("path") == "/raw" for e in inet.entries())


async def test_sni_and_host_spoofing_is_refused(
    egress_pool: sk.SandboxPool, inet: Inet, runtime: sk.Runtime
) -> None:
    gateway = "GW"
    seen, result = await run_probe(
        egress_pool,
        inet,
        sk.Egress(allow=["allowed.test"]),
        # TLS naming a refused server, sent to the address an allowed name resolved to
        ("tls", f"{gateway}:443:other.test", "GET / HTTP/1.1\r\nHost: other.test\r\n\r\n"),
        # an absolute-form target that names another host than the Host header
        ("tcp", f"{gateway}:80", "GET http://other.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n"),
        runtime=runtime,
    )
    assert seen[f"{gateway}:443:other.test"].startswith("fail:")
    assert seen[f"{gateway}:80"] == "closed"
    assert not inet.requested("other.test")
    assert result.network is not None and "other.test" in result.network.refused
    # two Host headers: refused too
    seen, _ = await run_probe(
        egress_pool,
        inet,
        sk.Egress(allow=["allowed.test"]),
        (
            "tcp",
            f"{gateway}:80",
            "GET /twohosts HTTP/1.1\r\nHost: allowed.test\r\nHost: other.test\r\n\r\n",
        ),
        runtime=runtime,
    )
    assert seen[f"{gateway}:80"] == "closed"
    assert not any(e.get("path") == "/twohosts" for e in inet.entries())


async def test_rebinding_to_loopback_bridge_and_metadata_is_refused(
    egress_pool: sk.SandboxPool, inet: Inet, runtime: sk.Runtime
) -> None:
    names = ["rebind-lo.test", "rebind-bridge.test", "rebind-meta.test"]
    seen, result = await run_probe(
        egress_pool,
        inet,
        sk.Egress(allow=names),
        *[("get", f"http://{n}/") for n in names],
        runtime=runtime,
    )
    for name in names:
        assert seen[f"http://{name}/"].startswith("fail:"), seen
    assert result.network is not None
    assert set(names) <= set(result.network.refused)


async def test_neighbours_are_apart_and_many_policies_hold_at_once(
    egress_pool: sk.SandboxPool, inet: Inet, runtime: sk.Runtime
) -> None:
    pairs = [("allowed.test", "second.test"), ("second.test", "allowed.test")] * 2
    async with (
        sk.Sandbox(
            pool=egress_pool, network=sk.Egress(allow=["allowed.test"]), runtime=runtime
        ) as a,
        sk.Sandbox(
            pool=egress_pool, network=sk.Egress(allow=["second.test"]), runtime=runtime
        ) as b,
    ):
        me = await b.run("import socket; print(socket.gethostbyname('second.test'))")
        gateway_b = me.stdout.strip()
        address_b = gateway_b.rsplit(".", 1)[0] + "." + str(int(gateway_b.rsplit(".", 1)[1]) + 1)
        r = await a.run(
            PROBE,
            limits=sk.Limits(time=60),
            args=probe_args(("tcp", f"{address_b}:80", "x"), ("tcp", f"{gateway_b}:80", "x")),
        )
        seen = outcomes(r)
        assert seen[f"{address_b}:80"].startswith("fail:")  # no route to the neighbour
        assert seen[f"{gateway_b}:80"].startswith("fail:")

    async def one(allowed: str, other: str) -> None:
        seen, _ = await run_probe(
            egress_pool,
            inet,
            sk.Egress(allow=[allowed]),
            ("get", f"https://{allowed}/"),
            ("get", f"https://{other}/"),
            runtime=runtime,
        )
        assert seen[f"https://{allowed}/"] == f"ok:hello from {allowed}"
        assert seen[f"https://{other}/"].startswith("fail:")

    await asyncio.gather(*(one(x, y) for x, y in pairs))


async def test_policy_changes_in_a_running_session_and_open_connections_are_cut(
    egress_pool: sk.SandboxPool, inet: Inet, runtime: sk.Runtime
) -> None:
    fetch = (
        "import urllib.request, sys\n"
        "try:\n"
        "    print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())\n"
        "except Exception as e:\n"
        "    print('fail', type(e).__name__)\n"
    )
    slow = (
        "import urllib.request, time\n"
        "r = urllib.request.urlopen('http://allowed.test/slow', timeout=10)\n"
        "print('open', flush=True)\n"
        "got = 0\n"
        "try:\n"
        "    while True:\n"
        "        b = r.read(1000)\n"
        "        if not b: break\n"
        "        got += len(b)\n"
        "except Exception as e:\n"
        "    print('cut', type(e).__name__, flush=True)\n"
        "print('ended', got, flush=True)\n"
    )
    async with sk.Sandbox(
        pool=egress_pool, network=sk.Egress(allow=["allowed.test"]), runtime=runtime
    ) as sb:
        loop = asyncio.get_running_loop()
        text, cut_at = "", None
        async with await sb.start(slow) as proc:
            async for event in proc:
                if event.kind != "stdout":
                    continue
                text += event.data
                if "open" in text and cut_at is None:
                    cut_at = loop.time()
                    await sb.set_network(sk.Egress(allow=["second.test"]))
            took = loop.time() - (cut_at or 0)
        assert "ended" in text and took < 3.0, text
        assert int(text.split("ended")[1].split()[0]) < 1_000_000  # not the whole body
        now = await sb.run(fetch, args=["http://allowed.test/"])
        assert now.stdout.startswith("fail")
        now = await sb.run(fetch, args=["http://second.test/"])
        assert now.stdout.strip() == "hello from second.test"
        await sb.set_network(None)
        now = await sb.run(fetch, args=["http://second.test/"])
        assert now.stdout.startswith("fail")


@pytest.mark.parametrize("proxied", [False, True], ids=["direct", "proxy"])
async def test_pip_installs_a_wheel_from_an_allowed_index(
    egress_pool: sk.SandboxPool, inet: Inet, runtime: sk.Runtime, proxied: bool
) -> None:
    """pip as it is, and pip told to use the gateway as its proxy (CONNECT)."""
    wheel = sorted(glob.glob(f"{sys.base_prefix}/lib/python3*/ensurepip/_bundled/pip-*.whl"))
    if not wheel:
        pytest.skip("no bundled pip wheel in this Python")
    code = (
        "import subprocess, sys\n"
        "r = subprocess.run([sys.executable, '/work/pip.whl/pip', 'install', '--no-cache-dir',"
        " '--disable-pip-version-check', '--cert', '/work/ca.pem', '--target', '/tmp/site',"
        " '--index-url', 'https://pypi.test/simple/', 'skegpkg', *sys.argv[1:]],"
        " capture_output=True, text=True)\n"
        "print(r.returncode, r.stdout[-300:], r.stderr[-500:])\n"
        "sys.path.insert(0, '/tmp/site')\n"
        "import skegpkg; print('VALUE', skegpkg.VALUE)\n"
    )
    result = await egress_pool.run(
        code,
        runtime=runtime,
        files={"ca.pem": inet.ca_pem, "pip.whl": Path(wheel[-1]).read_bytes()},
        env={**ENV, "HOME": "/tmp"},
        args=["--proxy", PROXY] if proxied else [],
        network=sk.Egress(allow=["pypi.test"]),
        limits=sk.Limits(time=60, memory_mb=512),
    )
    assert "VALUE 42" in result.stdout, result.stdout + result.stderr
    assert any(e.get("path", "").startswith("/files/skegpkg") for e in inet.entries())


async def test_gvisor_without_net(egress_pool: sk.SandboxPool) -> None:
    """An engine that runs runsc with no network stack refuses egress under it, in words,
    up front (the probes above run under runsc wherever it has a network)."""
    info = await egress_pool.engine.info()
    if "--network=none" not in info.runtime_args.get("runsc", ()):
        pytest.skip("runsc has a network here: the probes above ran under it")
    with pytest.raises(sk.EngineError, match="network=none"):
        await egress_pool.run(
            "print(1)", network=sk.Egress(allow=["allowed.test"]), runtime="runsc"
        )


KEEP_ALIVE = r"""
import http.client, json
def session(steps):
    conn = http.client.HTTPConnection("allowed.test", 80, timeout=5)
    out = []
    for method, path, host, body in steps:
        try:
            conn.request(method, path, body=body, headers={"Host": host} if host else {})
            out.append("ok:" + conn.getresponse().read().decode())
        except Exception as exc:
            out.append("fail:" + type(exc).__name__)
    return out
smuggled = "GET /smuggled HTTP/1.1\r\nHost: other.test\r\n\r\n"
print(json.dumps([
    session([("GET", "/ka1", None, None), ("GET", "/ka2", "other.test", None),
             ("GET", "/ka2b", None, None)]),
    session([("POST", "/ka3", None, smuggled), ("GET", "/ka4", None, None)]),
    session([("POST", "/ka5", None, iter([smuggled[:20].encode(), smuggled[20:].encode()])),
             ("GET", "/ka6", None, None)]),
]))
"""


async def test_kept_alive_http_requests_each_have_their_host_checked(
    egress_pool: sk.SandboxPool, inet: Inet, runtime: sk.Runtime
) -> None:
    result = await egress_pool.run(
        KEEP_ALIVE, network=sk.Egress(allow=["allowed.test"]), runtime=runtime
    )
    assert result.status == "ok", result.stderr
    switched, with_body, chunked = json.loads(result.stdout)
    # a second request to another name on the same connection: the connection ends
    assert switched[0] == "ok:hello from allowed.test"
    assert switched[1].startswith("fail:"), switched
    assert not inet.requested("other.test")
    paths = [e.get("path") for e in inet.entries() if e["kind"] == "http"]
    assert "/ka1" in paths and "/ka2" not in paths
    # a body that looks like a request is a body (Content-Length, then chunked): the next
    # real request on the connection goes through
    size = len("GET /smuggled HTTP/1.1\r\nHost: other.test\r\n\r\n")
    assert with_body == [f"ok:{size} bytes to allowed.test", "ok:hello from allowed.test"]
    assert chunked == [f"ok:{size} bytes to allowed.test", "ok:hello from allowed.test"]
    assert "/smuggled" not in paths and {"/ka3", "/ka4", "/ka5", "/ka6"} <= set(paths)
    assert result.network is not None and "other.test" in result.network.refused


PROXIED = r"""
import json, socket, ssl, sys, urllib.request
def get(url):
    try:
        return "ok:" + urllib.request.urlopen(url, timeout=5).read().decode()[:60]
    except Exception as exc:
        return "fail:" + type(exc).__name__ + ":" + str(exc)[:60]
def tunnel(target, sni):
    s = socket.create_connection(("egress.sandboxkit.internal", 3128), timeout=5)
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    reply = s.recv(200).decode(errors="replace").split("\r\n")[0]
    if " 200 " not in reply:
        return "refused:" + reply
    ctx = ssl.create_default_context()
    try:
        t = ctx.wrap_socket(s, server_hostname=sni)
        t.sendall(f"GET /tunnel HTTP/1.1\r\nHost: {sni}\r\n\r\n".encode())
        return "ok:" + t.recv(300).decode().split("\r\n")[0]
    except Exception as exc:
        return "fail:" + type(exc).__name__
out = {url: get(url) for url in sys.argv[1:]}
out["tunnel, another SNI"] = tunnel("allowed.test:443", "other.test")
out["tunnel, another port"] = tunnel("allowed.test:8443", "allowed.test")
out["tunnel, refused name"] = tunnel("other.test:443", "other.test")
out["tunnel"] = tunnel("allowed.test:443", "allowed.test")
print(json.dumps(out))
"""


async def test_clients_told_to_use_a_proxy_get_the_same_policy(
    egress_pool: sk.SandboxPool, inet: Inet, runtime: sk.Runtime
) -> None:
    proxy_env = {"http_proxy": PROXY, "https_proxy": PROXY, "HTTP_PROXY": PROXY}
    urls = [
        "http://allowed.test/proxied",
        "https://allowed.test/proxied-tls",
        "http://other.test/proxied",
        "https://other.test/proxied-tls",
    ]
    result = await egress_pool.run(
        PROXIED,
        files={"ca.pem": inet.ca_pem},
        env={**ENV, **proxy_env},
        args=urls,
        network=sk.Egress(allow=["allowed.test"]),
        runtime=runtime,
        limits=sk.Limits(time=60),
    )
    assert result.status == "ok", result.stderr
    seen = json.loads(result.stdout)
    assert seen["http://allowed.test/proxied"] == "ok:hello from allowed.test"  # absolute-form
    assert seen["https://allowed.test/proxied-tls"] == "ok:hello from allowed.test"  # CONNECT
    assert seen["http://other.test/proxied"].startswith("fail:"), seen
    assert seen["https://other.test/proxied-tls"].startswith("fail:"), seen
    assert seen["tunnel"] == "ok:HTTP/1.1 200 OK"
    assert seen["tunnel, another SNI"].startswith("fail:"), seen  # SNI != CONNECT's name
    assert seen["tunnel, another port"] == "refused:HTTP/1.1 403 Forbidden"
    assert seen["tunnel, refused name"] == "refused:HTTP/1.1 403 Forbidden"
    assert not inet.requested("other.test")
    assert not inet.queried("other.test")
    assert not inet.queried("egress.sandboxkit.internal")  # the gateway answers its own name
    paths = [e.get("path") for e in inet.entries() if e["kind"] == "http"]
    # the server was sent origin-form requests, as a client without a proxy sends
    assert "/proxied" in paths and "/proxied-tls" in paths and "/tunnel" in paths


IPV6 = r"""
import json, socket
out = {}
for label, address in [("ula", "SERVER6"), ("mapped", "::ffff:198.18.0.10"), ("lo", "::1")]:
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.settimeout(3)
        s.connect((address, 80))
        out[label] = "connected"
    except Exception as exc:
        out[label] = "fail:" + type(exc).__name__
for name in ("allowed.test", "other.test"):
    try:
        out["AAAA " + name] = repr(socket.getaddrinfo(name, 443, socket.AF_INET6))
    except Exception as exc:
        out["AAAA " + name] = "fail:" + type(exc).__name__
def rows(path):
    try:
        return [r for r in open(path).read().splitlines() if r.split()[-1] != "lo"]
    except OSError:
        return []
out["addresses"] = rows("/proc/net/if_inet6")
out["routes"] = rows("/proc/net/ipv6_route")
print(json.dumps(out))
"""


async def test_a_sandbox_with_a_policy_has_no_ipv6(
    egress_pool: sk.SandboxPool, inet: Inet, runtime: sk.Runtime
) -> None:
    import socket

    with socket.socket(socket.AF_INET6) as host_side:  # the IPv6 server is there to reach
        host_side.settimeout(3)
        reachable = host_side.connect_ex((WEB6, 80)) == 0
    result = await egress_pool.run(
        IPV6.replace("SERVER6", WEB6),
        network=sk.Egress(allow=["allowed.test"]),
        runtime=runtime,
        limits=sk.Limits(time=60),
    )
    assert result.status == "ok", result.stderr
    seen = json.loads(result.stdout)
    assert seen["ula"].startswith("fail:") and seen["mapped"].startswith("fail:"), seen
    assert seen["lo"] != "connected"  # nothing listens there either
    assert seen["AAAA allowed.test"].startswith("fail:"), seen  # no AAAA is ever given
    assert seen["AAAA other.test"].startswith("fail:"), seen
    assert seen["addresses"] == [] and seen["routes"] == [], seen  # no address, no route
    assert not inet.queried("other.test")
    assert not any(e["kind"] == "dns" and e["qtype"] == 28 for e in inet.entries())
    if not reachable:
        pytest.skip("the host has no IPv6 here: the ULA server could not be started")


async def test_nothing_left_after_aclose(inet: Inet) -> None:
    pool = sk.SandboxPool(languages=["python"], size=1, network=sk.Egress(), **inet.settings())
    async with pool:
        r = await pool.run("print(1)", network=sk.Egress(allow=["allowed.test"]))
        assert r.stdout == "1\n"
        assert _left(pool.pool_id)  # its gateway, a warm sandbox and their networks
    assert _left(pool.pool_id) == []
    assert (
        subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=True
        ).stdout.count(NETNS)
        == 1
    )  # the fixture's own, until it ends


async def test_each_engine_gets_its_own_gateway(inet: Inet) -> None:
    """A pool over two engines (here the local engine under two URLs: to the pool, a
    fleet of two; scripts/fleet.sh's namespaced engines are not started beside other
    suites) starts one gateway per engine, and each sandbox goes through its own."""
    engines = ["unix:///var/run/docker.sock", "unix:///run/docker.sock"]
    if not all(Path(url.removeprefix("unix://")).exists() for url in engines):
        pytest.skip("the engine's socket is not reachable under both names")
    pool = sk.SandboxPool(languages=["python"], size=0, engines=engines, **inet.settings())
    code = (
        "import urllib.request\n"
        "print(urllib.request.urlopen('http://allowed.test/fleet', timeout=5).read().decode())\n"
        "try:\n"
        "    urllib.request.urlopen('http://second.test/fleet', timeout=5)\n"
        "except OSError:\n"
        "    print('refused')\n"
    )
    async with pool:
        results = await asyncio.gather(
            *(pool.run(code, network=sk.Egress(allow=["allowed.test"])) for _ in range(4))
        )
        assert {r.engine for r in results} == set(engines)
        assert all(r.stdout == "hello from allowed.test\nrefused\n" for r in results), results
        gateways = subprocess.run(
            [
                "docker", "ps", "-q", "--filter", f"label={LABEL_POOL}={pool.pool_id}",
                "--filter", "label=org.sandboxkit.egress=gateway",
            ],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        assert len(gateways) == 2
        for gateway in gateways:  # on every sandbox's network: it must never route
            forwarding = subprocess.run(
                ["docker", "exec", gateway, "cat", "/proc/sys/net/ipv4/ip_forward"],
                capture_output=True,
                text=True,
                check=True,
            )
            assert forwarding.stdout.strip() == "0"
    assert _left(pool.pool_id) == []
    fleet = [e for e in inet.entries() if e.get("path") == "/fleet"]
    assert fleet and all(e["host"] == "allowed.test" for e in fleet)


def test_cli_run_allow(inet: Inet, tmp_path: Path) -> None:
    script = tmp_path / "fetch.py"
    script.write_text(
        "import urllib.request\n"
        "print(urllib.request.urlopen('http://allowed.test/cli', timeout=5).read().decode())\n"
        "try:\n"
        "    urllib.request.urlopen('http://other.test/cli', timeout=5)\n"
        "except OSError as e:\n"
        "    print('refused', type(e).__name__)\n"
    )
    env = {
        **os.environ,
        "SANDBOXKIT_EGRESS_RESOLVERS": inet.settings()["egress_resolvers"],
        "SANDBOXKIT_EGRESS_ALLOW_PRIVATE": inet.settings()["egress_allow_private"],
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }
    cli = [sys.executable, "-m", "sandboxkit", "run"]
    r = subprocess.run(
        [*cli, str(script), "--allow", "allowed.test"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello from allowed.test\nrefused URLError\n"
    bad = subprocess.run(
        [*cli, str(script), "--allow", "https://allowed.test/"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode == 2 and "URL" in bad.stderr


async def test_judge0_enable_network_gets_the_operators_policy(
    inet: Inet, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("httpx")
    from types import SimpleNamespace

    from sandboxkit.server._judging import Judging

    monkeypatch.setenv("SANDBOXKIT_EGRESS_RESOLVERS", inet.settings()["egress_resolvers"])
    monkeypatch.setenv("SANDBOXKIT_EGRESS_ALLOW_PRIVATE", inet.settings()["egress_allow_private"])
    judging = Judging(
        sk.SandboxPool(languages=(), size=0), network=sk.Egress(allow=["allowed.test"])
    )
    try:
        pool = await judging._pool_for(SimpleNamespace(enable_network=True))  # type: ignore[arg-type]
        assert pool.egress == sk.Egress(allow=["allowed.test"]) and pool.network is None
        code = (
            "import urllib.request\n"
            "r = urllib.request.urlopen('http://allowed.test/judge0', timeout=5)\n"
            "print(r.read().decode())\n"
            "try:\n"
            "    urllib.request.urlopen('http://other.test/judge0', timeout=5)\n"
            "except OSError:\n"
            "    print('refused')\n"
        )
        report = await sk.judge(code, tests=[sk.TestCase(input="")], pool=pool)
        assert report.tests[0].stdout == "hello from allowed.test\nrefused\n"
        # the totals reach the server's metrics once the sandbox is gone (in the background)
        from sandboxkit.server._metrics import Metrics

        hub = pool.egress_hub
        assert hub is not None
        for _ in range(100):
            if hub.bytes_in:
                break
            await asyncio.sleep(0.1)
        metrics = Metrics()
        metrics.egress(hub)
        text = metrics.render().decode()
        assert f'sandboxkit_egress_bytes{{direction="in"}} {float(hub.bytes_in)}' in text
        assert hub.bytes_in > 0 and hub.refused >= 1
    finally:
        await judging.close()


async def test_the_judge0_worker_gives_enable_network_the_operators_policy(
    inet: Inet, pg_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sandboxkit worker --allow-network --network-allow allowed.test``, in this process
    (as tests/test_worker.py runs it): an enable_network submission reaches that name
    only; without --allow-network the same submission has no network at all."""
    pytest.importorskip("asyncpg")
    from sandboxkit.server import run_worker
    from sandboxkit.server._postgres_store import PostgresStore
    from sandboxkit.server._requests import parse_submission
    from sandboxkit.server._store import Admission

    monkeypatch.setenv("SANDBOXKIT_EGRESS_RESOLVERS", inet.settings()["egress_resolvers"])
    monkeypatch.setenv("SANDBOXKIT_EGRESS_ALLOW_PRIVATE", inet.settings()["egress_allow_private"])
    code = (
        "import urllib.request\n"
        "for name in ('allowed.test', 'other.test'):\n"
        "    try:\n"
        "        url = f'http://{name}/worker'\n"
        "        print(urllib.request.urlopen(url, timeout=5).read().decode())\n"
        "    except OSError as exc:\n"
        "        print('refused', name, type(exc).__name__)\n"
    )
    store = PostgresStore(pg_db_url)
    await store.open()
    try:
        for allow_network, expected in [
            (True, "hello from allowed.test\nrefused other.test URLError\n"),
            (False, "refused allowed.test URLError\nrefused other.test URLError\n"),
        ]:
            record, errors = parse_submission(
                {"source_code": code, "language_id": 71, "enable_network": True},
                b64=False,
                max_source_bytes=1 << 20,
                max_io_bytes=1 << 20,
                allow_network=True,  # the API node accepted it (serve --allow-network)
            )
            assert record is not None, errors
            await store.insert([record], Admission())
            stop = asyncio.Event()
            worker = asyncio.create_task(
                run_worker(
                    pg_db_url,
                    engines=[sk.EngineConfig("unix:///var/run/docker.sock")],
                    concurrency=1,
                    pool_size=0,
                    stop=stop,
                    grace=0.5,
                    allow_network=allow_network,
                    network=sk.Egress(allow=["allowed.test"]),
                )
            )
            try:
                for _ in range(1200):
                    got = (await store.get_many([record.token]))[record.token]
                    if got.status_id > 2 or worker.done():
                        break
                    await asyncio.sleep(0.1)
            finally:
                stop.set()
                await asyncio.wait_for(worker, 60)
            assert got.stdout == expected, (got.status_id, got.stdout, got.stderr)
    finally:
        await store.close()
    assert not inet.requested("other.test")
