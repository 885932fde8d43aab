"""The egress policy: which host names a sandbox may reach, checked before any container
is touched. Pure (no engine, no network): the gateway program carries its own copy of
:func:`matches` (it runs with the standard library only), and a test keeps both alike."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import Field, ValidationError, field_validator

from .._errors import InvalidInput
from .._models import Frozen, NetworkUsage

MAX_NAME = 253  # RFC 1035: a name's text form
MAX_LABEL = 63
MAX_ENTRIES = 1000  # names per list: a policy is read on every connection
DEFAULT_PORTS = (80, 443)
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$")

__all__ = ["Egress", "EgressSettings", "NetworkUsage", "check_egress", "check_name", "matches"]

RESOLVERS_ENV = "SANDBOXKIT_EGRESS_RESOLVERS"
ALLOW_PRIVATE_ENV = "SANDBOXKIT_EGRESS_ALLOW_PRIVATE"
SUBNETS_ENV = "SANDBOXKIT_EGRESS_SUBNETS"
DEFAULT_SUBNETS = "10.213.0.0/16"


def check_name(entry: object) -> str:
    """A host name (``pypi.org``) or a suffix pattern (``*.example.com``: its subdomains,
    not the apex), lower-cased and without a trailing dot; anything else is InvalidInput
    (a URL, a path, a port, an IP literal, an empty name, a bare ``*``, an over-long one)."""
    if not isinstance(entry, str):
        raise InvalidInput(f"an egress name must be a str, not {type(entry).__name__}")
    name = entry.strip().lower().rstrip(".")
    shown = entry[:80]
    if not name:
        raise InvalidInput("an egress name is empty")
    if "://" in name or "/" in name:
        raise InvalidInput(f"egress name {shown!r} is a URL or a path: give the host name only")
    if ":" in name:
        raise InvalidInput(f"egress name {shown!r} has a port: ports go in Egress(ports=...)")
    wildcard = name.startswith("*.")
    body = name[2:] if wildcard else name
    if "*" in body:
        raise InvalidInput(
            f"egress name {shown!r}: '*' may only start a name, as '*.example.com' "
            "(a bare '*' would allow everything)"
        )
    if len(body) > MAX_NAME:
        raise InvalidInput(f"egress name {shown!r}... is longer than {MAX_NAME} characters")
    try:
        ipaddress.ip_address(body)
    except ValueError:
        pass
    else:
        raise InvalidInput(f"egress name {shown!r} is an IP address: give a host name")
    labels = body.split(".")
    for label in labels:
        if not label or len(label) > MAX_LABEL or not _LABEL.match(label):
            raise InvalidInput(f"egress name {shown!r} is not a valid host name")
    if wildcard and len(labels) < 2:
        raise InvalidInput(f"egress pattern {shown!r} is too wide: give '*.example.com'")
    if labels[-1].isdigit():
        raise InvalidInput(f"egress name {shown!r} is not a valid host name")
    return name


def matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether host ``name`` (lower-case, no trailing dot) is one of ``patterns``:
    ``a.b`` matches only ``a.b``; ``*.a.b`` matches ``x.a.b`` and ``y.x.a.b``, not ``a.b``."""
    for pattern in patterns:
        if pattern.startswith("*."):
            if name.endswith(pattern[1:]):
                return True
        elif name == pattern:
            return True
    return False


class Egress(Frozen):
    """What a sandbox may reach: HTTP and HTTPS to the names in ``allow``, except those in
    ``deny`` (deny wins), on ``ports`` (80 and 443 by default). Everything else is
    refused, DNS included: a name outside the policy is never sent to any resolver.

    ::

        policy = sk.Egress(allow=["pypi.org", "files.pythonhosted.org"])
        result = await sk.Sandbox.run(code, network=policy)

    A name is a host name (``api.example.com``) or ``*.suffix`` (every subdomain of
    ``suffix``, not ``suffix`` itself). HTTPS is never decrypted: the decision is made on
    the TLS SNI, and for plain HTTP on the Host header.
    """

    allow: tuple[str, ...] = Field((), description="host names (or *.suffix) to reach")
    deny: tuple[str, ...] = Field((), description="names refused even when allowed")
    ports: tuple[int, ...] = Field(DEFAULT_PORTS, description="TCP ports HTTP(S) may use")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise InvalidInput(f"Egress: {_first_error(exc)}") from None

    @field_validator("allow", "deny", mode="before")
    @classmethod
    def _names(cls, value: object) -> tuple[str, ...]:
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise InvalidInput("allow and deny must be lists of host names, e.g. ['pypi.org']")
        names = [check_name(v) for v in value]
        if len(names) > MAX_ENTRIES:
            raise InvalidInput(f"at most {MAX_ENTRIES} names per list")
        return tuple(dict.fromkeys(names))

    @field_validator("ports", mode="before")
    @classmethod
    def _ports(cls, value: object) -> tuple[int, ...]:
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise InvalidInput("ports must be a list of TCP port numbers, e.g. [443]")
        ports: list[int] = []
        for port in value:
            if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
                raise InvalidInput(f"an egress port must be an int from 1 to 65535, not {port!r}")
            if port == 53:
                raise InvalidInput("port 53 is the gateway's DNS: it cannot be an egress port")
            ports.append(port)
        if not ports:
            raise InvalidInput("ports is empty: give at least one port (default 80 and 443)")
        return tuple(sorted(set(ports)))

    def allows(self, name: str, port: int | None = None) -> bool:
        """Whether a connection to host ``name`` (on ``port``) is allowed (deny wins)."""
        name = name.lower().rstrip(".")
        if port is not None and port not in self.ports:
            return False
        return matches(name, self.allow) and not matches(name, self.deny)

    def wire(self) -> dict[str, list[str] | list[int]]:
        """The policy as the gateway reads it."""
        return {"allow": list(self.allow), "deny": list(self.deny), "ports": list(self.ports)}


def check_egress(value: object) -> Egress | None:
    """``network=``: None (no network) or an :class:`Egress`; anything else InvalidInput."""
    if value is None or isinstance(value, Egress):
        return value
    raise InvalidInput(
        f"network must be None (no network) or sk.Egress(allow=[...]), not {value!r}"
    )


def _first_error(exc: ValidationError) -> str:
    """The first problem pydantic found, in the words of the check that found it."""
    error = exc.errors()[0]
    cause = (error.get("ctx") or {}).get("error")
    where = ".".join(str(part) for part in error.get("loc", ()))
    return str(cause) if cause is not None else f"{where}: {error.get('msg')}"


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _networks(items: Iterable[str], what: str) -> tuple[str, ...]:
    out = []
    for item in items:
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise InvalidInput(f"{what}: {item!r} is not an address range (CIDR)") from None
    return tuple(out)


def host_resolvers(path: str = "/etc/resolv.conf") -> tuple[str, ...]:
    """The ``nameserver`` lines of the host's resolv.conf (loopback ones left out: the
    gateway runs in a container, where the host's 127.0.0.53 is not the host's)."""
    found: list[str] = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    try:
                        if not ipaddress.ip_address(parts[1]).is_loopback:
                            found.append(parts[1])
                    except ValueError:
                        continue
    except OSError:
        pass
    return tuple(found)


class EgressSettings(Frozen):
    """The operator's side of egress (environment variables, or pool parameters).

    ``resolvers``: the resolver addresses the gateway asks (``SANDBOXKIT_EGRESS_RESOLVERS``,
    default the host's own). ``allow_private``: address ranges an allowed name may
    resolve to although they are private, loopback or link-local
    (``SANDBOXKIT_EGRESS_ALLOW_PRIVATE``; default none). ``subnets``: where each
    sandbox's own small network is carved from (``SANDBOXKIT_EGRESS_SUBNETS``).
    """

    resolvers: tuple[str, ...] = ()
    allow_private: tuple[str, ...] = ()
    subnets: tuple[str, ...] = (DEFAULT_SUBNETS,)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise InvalidInput(f"egress settings: {_first_error(exc)}") from None

    @field_validator("resolvers", mode="before")
    @classmethod
    def _resolvers(cls, value: object) -> tuple[str, ...]:
        items = _split(value) if isinstance(value, str) else list(value)  # type: ignore[call-overload]
        out = []
        for item in items:
            try:
                out.append(str(ipaddress.ip_address(str(item))))
            except ValueError:
                raise InvalidInput(f"egress resolver {item!r} is not an IP address") from None
        return tuple(out)

    @field_validator("allow_private", "subnets", mode="before")
    @classmethod
    def _ranges(cls, value: object) -> tuple[str, ...]:
        items = _split(value) if isinstance(value, str) else [str(v) for v in value]  # type: ignore[attr-defined]
        return _networks(items, "egress address range")

    @classmethod
    def from_env(
        cls,
        resolvers: Sequence[str] | str | None = None,
        allow_private: Sequence[str] | str | None = None,
    ) -> EgressSettings:
        """Settings from the arguments, else the environment, else the defaults."""
        if resolvers is None:
            resolvers = os.environ.get(RESOLVERS_ENV) or host_resolvers()
        if allow_private is None:
            allow_private = os.environ.get(ALLOW_PRIVATE_ENV, "")
        return cls(
            resolvers=resolvers,
            allow_private=allow_private,
            subnets=os.environ.get(SUBNETS_ENV) or DEFAULT_SUBNETS,
        )
