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
from egress_inet import NETNS, WEB, WEB2, Inet, private_internet

pytestmark = pytest.mark.docker

CA = "/work/ca.pem"
ENV = {"SSL_CERT_FILE": CA}

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
        _kind, target, first_line, outcome = json.loads(line)
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
    egress_pool: sk.SandboxPool, inet: Inet
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
    egress_pool: sk.SandboxPool, inet: Inet
) -> None:
    seen, _ = await run_probe(
        egress_pool,
        inet,
        sk.Egress(allow=["*.wild.test"], deny=["deny.wild.test"]),
        ("get", "https://a.wild.test/"),
        ("get", "https://b.a.wild.test/"),
        ("get", "https://wild.test/"),
        ("get", "https://deny.wild.test/"),
    )
    assert seen["https://a.wild.test/"] == "ok:hello from a.wild.test"
    assert seen["https://b.a.wild.test/"] == "ok:hello from b.a.wild.test"
    assert seen["https://wild.test/"].startswith("fail:")
    assert seen["https://deny.wild.test/"].startswith("fail:")
    assert not inet.queried("wild.test") and not inet.queried("deny.wild.test")
    assert not inet.requested("wild.test") and not inet.requested("deny.wild.test")


async def test_ip_literals_raw_sockets_and_other_ports_fail(
    egress_pool: sk.SandboxPool, inet: Inet
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
    )
    assert seen[f"http://{WEB}/literal"].startswith("fail:")
    assert seen[f"{WEB}:80"].startswith("fail:")  # no route out of its network
    assert seen["198.18.0.2:53"].startswith("fail:")
    assert seen[f"{gateway}:8080"].startswith("fail:")  # a port outside the policy
    assert seen[f"{gateway}:22"].startswith("fail:")
    assert seen[f"{gateway}:80 GET / HTTP/1.0"] == "closed"  # Host: other.test
    assert seen[f"{gateway}:80 GET /raw HTTP/1.0"].startswith("ok:HTTP/1.1 200"), seen
    assert not any(e["kind"] == "http" and e["path"] == "/literal" for e in inet.entries())
    assert not inet.requested("other.test")
    assert any(e.get("path") == "/raw" for e in inet.entries())


async def test_sni_and_host_spoofing_is_refused(egress_pool: sk.SandboxPool, inet: Inet) -> None:
    gateway = "GW"
    seen, result = await run_probe(
        egress_pool,
        inet,
        sk.Egress(allow=["allowed.test"]),
        # TLS naming a refused server, sent to the address an allowed name resolved to
        ("tls", f"{gateway}:443:other.test", "GET / HTTP/1.1\r\nHost: other.test\r\n\r\n"),
        # an absolute-form target that names another host than the Host header
        ("tcp", f"{gateway}:80", "GET http://other.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n"),
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
    )
    assert seen[f"{gateway}:80"] == "closed"
    assert not any(e.get("path") == "/twohosts" for e in inet.entries())


async def test_rebinding_to_loopback_bridge_and_metadata_is_refused(
    egress_pool: sk.SandboxPool, inet: Inet
) -> None:
    names = ["rebind-lo.test", "rebind-bridge.test", "rebind-meta.test"]
    seen, result = await run_probe(
        egress_pool,
        inet,
        sk.Egress(allow=names),
        *[("get", f"http://{n}/") for n in names],
    )
    for name in names:
        assert seen[f"http://{name}/"].startswith("fail:"), seen
    assert result.network is not None
    assert set(names) <= set(result.network.refused)


async def test_neighbours_are_apart_and_many_policies_hold_at_once(
    egress_pool: sk.SandboxPool, inet: Inet
) -> None:
    pairs = [("allowed.test", "second.test"), ("second.test", "allowed.test")] * 2
    async with (
        sk.Sandbox(pool=egress_pool, network=sk.Egress(allow=["allowed.test"])) as a,
        sk.Sandbox(pool=egress_pool, network=sk.Egress(allow=["second.test"])) as b,
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
        )
        assert seen[f"https://{allowed}/"] == f"ok:hello from {allowed}"
        assert seen[f"https://{other}/"].startswith("fail:")

    await asyncio.gather(*(one(x, y) for x, y in pairs))


async def test_policy_changes_in_a_running_session_and_open_connections_are_cut(
    egress_pool: sk.SandboxPool, inet: Inet
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
    async with sk.Sandbox(pool=egress_pool, network=sk.Egress(allow=["allowed.test"])) as sb:
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


async def test_pip_installs_a_wheel_from_an_allowed_index(
    egress_pool: sk.SandboxPool, inet: Inet
) -> None:
    wheel = sorted(glob.glob(f"{sys.base_prefix}/lib/python3*/ensurepip/_bundled/pip-*.whl"))
    if not wheel:
        pytest.skip("no bundled pip wheel in this Python")
    code = (
        "import subprocess, sys\n"
        "r = subprocess.run([sys.executable, '/work/pip.whl/pip', 'install', '--no-cache-dir',"
        " '--disable-pip-version-check', '--cert', '/work/ca.pem', '--target', '/tmp/site',"
        " '--index-url', 'https://pypi.test/simple/', 'skegpkg'], capture_output=True, text=True)\n"
        "print(r.returncode, r.stdout[-300:], r.stderr[-500:])\n"
        "sys.path.insert(0, '/tmp/site')\n"
        "import skegpkg; print('VALUE', skegpkg.VALUE)\n"
    )
    result = await egress_pool.run(
        code,
        files={"ca.pem": inet.ca_pem, "pip.whl": Path(wheel[-1]).read_bytes()},
        env={**ENV, "HOME": "/tmp"},
        network=sk.Egress(allow=["pypi.test"]),
        limits=sk.Limits(time=60, memory_mb=512),
    )
    assert "VALUE 42" in result.stdout, result.stdout + result.stderr
    assert any(e.get("path", "").startswith("/files/skegpkg") for e in inet.entries())


async def test_under_gvisor_too(egress_pool: sk.SandboxPool, inet: Inet) -> None:
    info = await egress_pool.engine.info()
    if "--network=none" in info.runtime_args.get("runsc", ()):
        # gVisor with no network stack at all: egress is refused, in words, up front
        with pytest.raises(sk.EngineError, match="network=none"):
            await egress_pool.run(
                "print(1)", network=sk.Egress(allow=["allowed.test"]), runtime="runsc"
            )
        return
    seen, result = await run_probe(
        egress_pool,
        inet,
        sk.Egress(allow=["allowed.test"]),
        ("get", "https://allowed.test/gvisor"),
        ("get", "https://other.test/gvisor"),
        ("get", f"http://{WEB2}/gvisor"),
        runtime="runsc",
    )
    assert seen["https://allowed.test/gvisor"] == "ok:hello from allowed.test"
    assert seen["https://other.test/gvisor"].startswith("fail:")
    assert seen[f"http://{WEB2}/gvisor"].startswith("fail:")
    assert result.network is not None and result.network.bytes_in > 0


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
