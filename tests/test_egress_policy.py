"""Egress's pure parts: the policy and its checks, the gateway's parsers and decisions,
the subnet allocation and the engine's bodies. No engine, no network."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import struct
from dataclasses import replace

import pytest

import sandboxkit as sk
from sandboxkit._backends import ContainerSpec, EgressNetwork, OwnNetwork
from sandboxkit._backends.docker import create_body, engine_info, network_body
from sandboxkit._egress import gateway as gw
from sandboxkit._egress.hub import blocks, free_block
from sandboxkit._egress.policy import EgressSettings, check_name, host_resolvers, matches


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "*",
        "*.",
        "*.com",
        "https://pypi.org",
        "pypi.org/simple",
        "pypi.org:443",
        "a*.example.com",
        "foo.*.example.com",
        "1.2.3.4",
        "::1",
        "a" * 64 + ".com",
        ("a" * 60 + ".") * 5 + "com",
        "bad_label-.com",
        "-bad.com",
        "two..dots.com",
        "example.123",
    ],
)
def test_invalid_names_are_invalid_input(bad: str) -> None:
    with pytest.raises(sk.InvalidInput):
        sk.Egress(allow=[bad])
    with pytest.raises(sk.InvalidInput):
        sk.Egress(deny=[bad])


def test_names_are_normalised() -> None:
    policy = sk.Egress(allow=["PyPI.org.", " files.pythonhosted.org", "*.Example.COM"])
    assert policy.allow == ("pypi.org", "files.pythonhosted.org", "*.example.com")
    assert check_name("x_y.internal.test") == "x_y.internal.test"


def test_lists_and_ports_are_checked() -> None:
    with pytest.raises(sk.InvalidInput, match="list"):
        sk.Egress(allow="pypi.org")  # type: ignore[arg-type]
    for ports in ([], [0], [70000], ["443"], [True], [53]):
        with pytest.raises(sk.InvalidInput):
            sk.Egress(allow=["a.test"], ports=ports)  # type: ignore[arg-type]
    assert sk.Egress(ports=[8443, 443, 443]).ports == (443, 8443)
    assert sk.Egress().ports == (80, 443)


def test_wildcard_is_subdomains_only_and_deny_wins() -> None:
    policy = sk.Egress(
        allow=["pypi.org", "*.githubusercontent.com"], deny=["gist.githubusercontent.com"]
    )
    assert policy.allows("pypi.org")
    assert policy.allows("PYPI.ORG.")
    assert not policy.allows("evil-pypi.org")
    assert not policy.allows("pypi.org.evil.com")
    assert policy.allows("raw.githubusercontent.com")
    assert policy.allows("a.b.githubusercontent.com")
    assert not policy.allows("githubusercontent.com")
    assert not policy.allows("xgithubusercontent.com")
    assert not policy.allows("gist.githubusercontent.com")
    assert policy.allows("pypi.org", 443) and not policy.allows("pypi.org", 8080)
    assert not sk.Egress().allows("pypi.org")


def test_the_gateway_matches_names_as_the_policy_does() -> None:
    patterns = ["a.test", "*.b.test", "*.c.d.test"]
    names = ["a.test", "x.a.test", "b.test", "x.b.test", "y.x.b.test", "c.d.test", "e.c.d.test"]
    for name in names:
        assert gw.matches(name, patterns) == matches(name, patterns), name


def test_network_parameter_is_checked_before_any_container() -> None:
    async def go() -> None:
        with pytest.raises(sk.InvalidInput, match="Egress"):
            await sk.Sandbox.run("print(1)", network="pypi.org")  # type: ignore[arg-type]
        with pytest.raises(sk.InvalidInput, match="Egress"):
            sk.Sandbox(network=["pypi.org"])  # type: ignore[arg-type]

    asyncio.run(go())


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("SANDBOXKIT_EGRESS_RESOLVERS", "192.0.2.53, 192.0.2.54")
    monkeypatch.setenv("SANDBOXKIT_EGRESS_ALLOW_PRIVATE", "10.1.0.0/16")
    monkeypatch.setenv("SANDBOXKIT_EGRESS_SUBNETS", "10.99.0.0/24")
    settings = EgressSettings.from_env()
    assert settings.resolvers == ("192.0.2.53", "192.0.2.54")
    assert settings.allow_private == ("10.1.0.0/16",)
    assert settings.subnets == ("10.99.0.0/24",)
    assert EgressSettings.from_env(resolvers=["192.0.2.1"]).resolvers == ("192.0.2.1",)
    with pytest.raises(sk.InvalidInput):
        EgressSettings.from_env(resolvers="not-an-address")
    with pytest.raises(sk.InvalidInput):
        EgressSettings.from_env(allow_private="10.0.0.0/33")


def test_host_resolvers_leave_loopback_out(tmp_path: pytest.TempPathFactory) -> None:
    path = f"{tmp_path}/resolv.conf"
    with open(path, "w") as f:
        f.write("nameserver 127.0.0.53\nnameserver 192.0.2.53\n# nameserver 192.0.2.9\n")
    assert host_resolvers(path) == ("192.0.2.53",)


# ---------------------------------------------------------------------- gateway parsers
def client_hello(server_name: str | None) -> bytes:
    """A real ClientHello, from Python's own TLS stack."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_sni_is_read_from_a_client_hello() -> None:
    record = client_hello("Files.PythonHosted.org")
    assert record[0] == 0x16
    assert gw.sni(record[5:]) == "files.pythonhosted.org"
    assert gw.sni(client_hello(None)[5:]) == ""
    with pytest.raises((ValueError, IndexError, struct.error)):
        gw.sni(b"\x02garbage")


def first_request(data: bytes) -> gw.Request:
    """What the gateway makes of a connection's first bytes (over a real socket pair)."""

    async def go() -> gw.Request:
        near, far = socket.socketpair()
        near.setblocking(False)
        with near, far:
            far.sendall(data)
            far.shutdown(socket.SHUT_WR)
            return await gw.first_request(gw.Inbox(near))

    return asyncio.run(go())


def test_the_first_bytes_name_the_host() -> None:
    hello = client_hello("a.test")
    request = first_request(hello)
    assert (request.kind, request.name, request.head) == ("tls", "a.test", hello)
    request = first_request(b"GET / HTTP/1.1\r\nHost: A.test:80\r\n\r\nbody")
    assert (request.kind, request.name, request.rest) == ("http", "a.test", b"body")
    assert request.head == b"GET / HTTP/1.1\r\nHost: A.test:80\r\n\r\n"
    assert not request.absolute and request.method == "GET"
    with pytest.raises(ValueError):
        first_request(b"GET / HTTP/1.1\r\nHost: a.test\r\n")  # ends mid-head


def test_proxy_requests_name_their_host_and_port() -> None:
    connect = first_request(b"CONNECT Pypi.test:443 HTTP/1.1\r\nHost: pypi.test:443\r\n\r\n")
    assert (connect.method, connect.name, connect.port) == ("CONNECT", "pypi.test", 443)
    plain = first_request(
        b"GET http://a.test:8080/x?y=1 HTTP/1.1\r\nHost: a.test:8080\r\n"
        b"Proxy-Connection: keep-alive\r\nAccept: */*\r\n\r\n"
    )
    assert plain.absolute and (plain.name, plain.port) == ("a.test", 8080)
    # the server is sent an origin-form request, without the proxy's own headers
    assert plain.head == b"GET /x?y=1 HTTP/1.1\r\nHost: a.test:8080\r\nAccept: */*\r\n\r\n"
    assert first_request(b"GET http://a.test HTTP/1.1\r\nHost: a.test\r\n\r\n").port == 80


@pytest.mark.parametrize(
    "head",
    [
        b"CONNECT a.test HTTP/1.1\r\n\r\n",  # no port
        b"CONNECT a.test:443 HTTP/1.1\r\nHost: b.test:443\r\n\r\n",  # names differ
        b"GET https://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",  # TLS is CONNECT's
        b"GET http://u@a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1, 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"GET / HTTP/2.0\r\nHost: a.test\r\n\r\n",
    ],
)
def test_proxy_and_framing_oddities_are_refused(head: bytes) -> None:
    with pytest.raises(ValueError):
        gw.parse_request(head)


def test_request_bodies_are_framed() -> None:
    assert (
        gw.parse_request(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n").length == 12
    )
    chunked = gw.parse_request(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert chunked.chunked and chunked.length == 0


@pytest.mark.parametrize(
    ("head", "host"),
    [
        (b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", "a.test"),
        (b"GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n", "a.test"),
        (b"GET / HTTP/1.0\r\nhost: a.test:8080\r\n\r\n", "a.test"),
    ],
)
def test_http_host(head: bytes, host: str) -> None:
    assert gw.http_host(head) == host


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\n\r\n",  # no Host
        b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",  # two
        b"GET http://b.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",  # target and Host differ
        b"SSH-2.0-OpenSSH\r\n\r\n",
    ],
)
def test_http_host_refuses(head: bytes) -> None:
    with pytest.raises(ValueError):
        gw.http_host(head)


def dns_query(name: str, qtype: int = 1) -> bytes:
    query = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        query += bytes([len(label)]) + label.encode()
    return query + b"\x00" + struct.pack("!HH", qtype, 1)


def test_dns_answers_allowed_names_with_the_gateway_and_nothing_else() -> None:
    gateway = gw.Gateway([], [])
    gateway.emit = lambda obj: None  # type: ignore[method-assign]
    client = gateway.clients["10.213.0.3"] = gw.Client("10.213.0.3", "10.213.0.2", "sb")
    client.allow, client.deny = ["a.test", "*.w.test"], ["x.w.test"]
    answer = gateway.answer(dns_query("a.test"), "10.213.0.3")
    assert answer is not None and answer[3] & 0x0F == 0
    assert gw.parse_addresses(answer, 0x4242) == ["10.213.0.2"]
    aaaa = gateway.answer(dns_query("a.test", 28), "10.213.0.3")
    assert aaaa is not None and aaaa[3] & 0x0F == 0 and struct.unpack("!H", aaaa[6:8])[0] == 0
    for refused in ("b.test", "w.test", "x.w.test"):
        answer = gateway.answer(dns_query(refused), "10.213.0.3")
        assert answer is not None and answer[3] & 0x0F == 3  # NXDOMAIN
    # an address the gateway was never told of: nothing is allowed
    answer = gateway.answer(dns_query("a.test"), "10.213.0.11")
    assert answer is not None and answer[3] & 0x0F == 3
    assert client.refused == ["b.test", "w.test", "x.w.test"]
    # the gateway's own name (for clients told to use a proxy): known sandboxes only
    answer = gateway.answer(dns_query(gw.PROXY_NAME), "10.213.0.3")
    assert answer is not None and gw.parse_addresses(answer, 0x4242) == ["10.213.0.2"]
    answer = gateway.answer(dns_query(gw.PROXY_NAME), "10.213.0.11")
    assert answer is not None and answer[3] & 0x0F == 3


def test_the_gateway_refuses_private_own_and_special_addresses() -> None:
    gateway = gw.Gateway([], ["198.18.0.0/24"])
    bridge = ipaddress.ip_network("172.17.0.0/16")
    gateway.own_networks = [*gw.own_networks(["10.213.0.0/16"]), bridge]
    ok = ["93.184.215.14", "198.18.0.10"]
    refused = [
        "127.0.0.1",
        "10.0.0.1",
        "172.17.0.1",
        "169.254.169.254",
        "192.168.1.1",
        "10.213.0.2",
        "0.0.0.0",
        "224.0.0.1",
        "100.64.0.1",
    ]
    for address in ok:
        assert gateway.permitted(ipaddress.ip_address(address)), address
    for address in refused:
        assert not gateway.permitted(ipaddress.ip_address(address)), address


def test_a_resolver_answer_is_parsed_through_cnames() -> None:
    query = gw.build_query(7, "a.test")
    answer = bytearray(query)
    answer[2:4] = struct.pack("!H", 0x8180)
    answer[6:8] = struct.pack("!H", 2)
    answer += b"\xc0\x0c" + struct.pack("!HHIH", 5, 1, 60, 4) + b"\x01b\xc0\x0e"  # CNAME
    answer += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 7])
    assert gw.parse_addresses(bytes(answer), 7) == ["192.0.2.7"]
    with pytest.raises(ValueError):
        gw.parse_addresses(bytes(answer), 8)


def test_policy_changes_cut_connections_to_names_no_longer_allowed() -> None:
    async def go() -> None:
        gateway = gw.Gateway([], [])
        gateway.emit = lambda obj: None  # type: ignore[method-assign]
        ip = "10.213.0.3"
        await gateway.handle(
            {
                "op": "set",
                "ip": ip,
                "gateway_ip": "10.213.0.2",
                "label": "sb",
                "allow": ["a.test", "b.test"],
                "ports": [],
            }
        )
        client = gateway.clients[ip]
        a = asyncio.ensure_future(asyncio.sleep(60))
        b = asyncio.ensure_future(asyncio.sleep(60))
        client.open[a], client.open[b] = ("a.test", 443), ("b.test", 443)  # type: ignore[index]
        await gateway.handle(
            {
                "op": "set",
                "ip": ip,
                "gateway_ip": "10.213.0.2",
                "label": "sb",
                "allow": ["b.test"],
                "ports": [443],
            }
        )
        await asyncio.sleep(0)
        assert a.cancelled() and not b.done()
        reply = await gateway.handle({"op": "forget", "ip": ip})
        await asyncio.sleep(0)
        assert b.cancelled() and reply["ok"] and ip not in gateway.clients

    asyncio.run(go())


# ---------------------------------------------------------------------- host side
def test_subnets_are_carved_in_blocks_that_skip_networks_in_use() -> None:
    candidates = blocks(("10.213.0.0/16",))
    assert len(candidates) == 8192 and str(candidates[0]) == "10.213.0.0/29"
    used = {ipaddress.IPv4Network("10.213.0.0/28"), ipaddress.IPv4Network("10.0.0.0/8")}
    assert free_block(candidates, used) is None
    used = {ipaddress.IPv4Network("10.213.0.0/28")}
    assert str(free_block(candidates, used)) == "10.213.0.16/29"


def spec(network: object) -> ContainerSpec:
    return ContainerSpec(
        name="n",
        image="i",
        command=("x",),
        uid=1,
        workdir="/w",
        own_dir="/o",
        env={},
        labels={},
        memory_mb=64,
        pids=8,
        cpus=1.0,
        disk_mb=8,
        network=network,  # type: ignore[arg-type]
    )


def test_engine_bodies_for_egress() -> None:
    body = create_body(spec(EgressNetwork("net1", "10.213.0.3", "10.213.0.2", "/tmp/r.conf")))
    assert body["HostConfig"]["NetworkMode"] == "net1"
    assert body["HostConfig"]["Dns"] == ["10.213.0.2"]
    assert body["NetworkDisabled"] is False
    endpoint = body["NetworkingConfig"]["EndpointsConfig"]["net1"]
    assert endpoint["IPAMConfig"]["IPv4Address"] == "10.213.0.3"
    assert {
        "Type": "bind",
        "Source": "/tmp/r.conf",
        "Target": "/etc/resolv.conf",
        "ReadOnly": True,
    } in body["HostConfig"]["Mounts"]
    assert body["HostConfig"]["CapDrop"] == ["ALL"]
    assert "Sysctls" not in body["HostConfig"]
    routed = create_body(replace(spec(OwnNetwork("up", "10.213.0.10")), sysctls={"a.b": "0"}))
    assert routed["HostConfig"]["Sysctls"] == {"a.b": "0"}
    uplink = create_body(spec(OwnNetwork("up", "10.213.0.10")))
    assert uplink["HostConfig"]["NetworkMode"] == "up" and "Dns" not in uplink["HostConfig"]
    internal = network_body("n", "10.213.0.0/29", {"l": "1"}, internal=True)
    assert internal["Internal"] is True
    assert internal["Options"]["com.docker.network.bridge.inhibit_ipv4"] == "true"
    assert network_body("n", "10.213.0.8/29", {}, internal=False)["Internal"] is False


def test_runtime_args_are_read_from_the_engine() -> None:
    info = engine_info(
        {
            "Runtimes": {
                "runc": {"path": "runc"},
                "runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none"]},
            }
        },
        {},
    )
    assert info.runtime_args["runsc"] == ("--network=none",)
    assert info.runtime_args.get("runc", ()) == ()
