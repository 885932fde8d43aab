"""How to reach one engine: its address, its TLS material, its share of a fleet. Pure.

``EngineConfig`` is the public form (``sk.EngineConfig("tcp://HOST:2376", ca_cert=...)``);
a plain string is the same with no TLS. ``tcp://`` engines must use mutual TLS (the
engine's certificate verified against ``ca_cert``) unless the caller says
``insecure=True``: a plaintext Docker API gives whoever reaches the port root on that
host. The standard ``DOCKER_HOST``/``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH`` variables
describe one engine (:func:`from_env`).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from .._errors import InvalidInput
from .._models import Frozen

SCHEMES = ("unix", "tcp", "http", "https", "ssh", "npipe")
DEFAULT_URL = "unix:///var/run/docker.sock"
# where engines listen when DOCKER_HOST does not say: the docker CLI's default first
SOCKETS = ("/var/run/docker.sock", "/run/docker.sock", "~/.docker/run/docker.sock")
CERT_FILES = ("ca.pem", "cert.pem", "key.pem")  # what DOCKER_CERT_PATH holds


def scheme_of(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep else ""


class EngineConfig(Frozen):
    """One Docker engine of a pool: where it is, how to trust it, how much it may hold.

    ::

        sk.EngineConfig("tcp://10.0.0.5:2376",
                        ca_cert="ca.pem", client_cert="cert.pem", client_key="key.pem")

    ``tcp://`` (and ``https://``) engines are spoken to over TLS whenever any of the three
    files is given; the engine's certificate must be signed by ``ca_cert`` (or, without
    it, by a CA this machine trusts) and name the host. Plain ``tcp://`` without TLS is
    refused unless ``insecure=True``.
    """

    url: str = Field(description="unix:///path, tcp://HOST:PORT, https://HOST:PORT, ssh://...")
    ca_cert: str | None = Field(None, description="PEM file of the CA that signed the engine")
    client_cert: str | None = Field(None, description="PEM file of this client's certificate")
    client_key: str | None = Field(None, description="PEM file of this client's private key")
    insecure: bool = Field(False, description="allow plaintext tcp:// (no TLS at all)")
    capacity: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="most sandboxes at once on this engine (all languages); None: no cap, "
        "and its share of the warm pool follows its CPUs and memory",
    )

    def __init__(
        self,
        url: str,
        *,
        ca_cert: str | os.PathLike[str] | None = None,
        client_cert: str | os.PathLike[str] | None = None,
        client_key: str | os.PathLike[str] | None = None,
        insecure: bool = False,
        capacity: int | None = None,
    ) -> None:
        try:
            BaseModel.__init__(
                self,
                url=url,
                ca_cert=_path(ca_cert),
                client_cert=_path(client_cert),
                client_key=_path(client_key),
                insecure=insecure,
                capacity=capacity,
            )
        except ValidationError as exc:
            # one sentence per problem, without pydantic's echo of every field
            problems = "; ".join(
                str(e["msg"]).removeprefix("Value error, ")
                + ("" if e["type"] == "value_error" else f" ({'.'.join(map(str, e['loc']))})")
                for e in exc.errors()
            )
            raise InvalidInput(f"invalid EngineConfig: {problems}") from None

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        url = url.strip()
        scheme = scheme_of(url)
        if scheme not in SCHEMES:
            raise ValueError(
                f"{url!r} is not an engine address: use unix:///path/docker.sock, "
                "tcp://HOST:PORT (with TLS), https://HOST:PORT or ssh://USER@HOST"
            )
        if scheme in ("tcp", "http", "https") and not url.partition("://")[2].strip("/"):
            raise ValueError(f"{url!r} names no host")
        return url.rstrip("/")

    @model_validator(mode="after")
    def _tls_rules(self) -> EngineConfig:
        scheme = scheme_of(self.url)
        if self.tls and scheme not in ("tcp", "https"):
            raise ValueError(f"TLS files apply to tcp:// engines, not to {scheme}:// ({self.url})")
        if self.insecure and self.tls:
            raise ValueError(f"insecure=True contradicts the TLS files given for {self.url}")
        if self.insecure and scheme == "https":
            raise ValueError(f"insecure=True contradicts https:// ({self.url})")
        if scheme in ("tcp", "http") and not self.tls and not self.insecure:
            raise ValueError(
                f"{self.url} would be plaintext: anyone who reaches that port owns the host. "
                "Give ca_cert, client_cert and client_key (the engine runs with --tlsverify), "
                "or set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH, or pass insecure=True"
            )
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError(f"client_cert and client_key go together ({self.url})")
        for what in ("ca_cert", "client_cert", "client_key"):
            path = getattr(self, what)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{what} {path!r} of {self.url} is not a readable file")
        return self

    @property
    def tls(self) -> bool:
        """Whether the engine is spoken to over TLS."""
        return (
            scheme_of(self.url) == "https"
            or self.ca_cert is not None
            or self.client_cert is not None
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client's TLS context (None without TLS); bad PEM files are InvalidInput."""
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=self.ca_cert)
            if self.client_cert is not None:
                context.load_cert_chain(self.client_cert, self.client_key)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise InvalidInput(
                f"the TLS files of {self.url} cannot be used ({exc}): ca_cert must be a PEM "
                "CA certificate, client_cert/client_key a PEM certificate and its own key"
            ) from None
        return context

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EngineConfig:
        """The engine ``DOCKER_HOST`` names (else the local socket), with TLS when
        ``DOCKER_TLS_VERIFY`` is set: ``ca.pem``, ``cert.pem`` and ``key.pem`` from
        ``DOCKER_CERT_PATH`` (default ``~/.docker``), as the docker CLI reads them."""
        env = os.environ if environ is None else environ
        url = env.get("DOCKER_HOST") or local_socket()
        if env.get("DOCKER_TLS_VERIFY") and scheme_of(url) in ("tcp", "https"):
            folder = Path(env.get("DOCKER_CERT_PATH") or "~/.docker").expanduser()
            ca, cert, key = (str(folder / name) for name in CERT_FILES)
            return cls(url, ca_cert=ca, client_cert=cert, client_key=key)
        return cls(url)

    @classmethod
    def from_cert_path(cls, url: str, cert_path: str | os.PathLike[str]) -> EngineConfig:
        """``url`` with docker's ``ca.pem``, ``cert.pem`` and ``key.pem`` from one folder."""
        folder = Path(cert_path).expanduser()
        ca, cert, key = (str(folder / name) for name in CERT_FILES)
        return cls(url, ca_cert=ca, client_cert=cert, client_key=key)


def _path(value: str | os.PathLike[str] | None) -> str | None:
    return None if value is None else os.fspath(value)


def local_socket(sockets: Sequence[str] = SOCKETS) -> str:
    """The first local engine socket that exists, else Docker's default address."""
    for path in (Path(p).expanduser() for p in sockets):
        if path.is_socket():
            return f"unix://{path}"
    return DEFAULT_URL


EngineLike = str | EngineConfig


def engine_config(value: EngineLike | None) -> EngineConfig:
    """One engine's config from what a caller gave: None reads the environment."""
    if value is None:
        return EngineConfig.from_env()
    if isinstance(value, EngineConfig):
        return value
    if not isinstance(value, str):
        raise InvalidInput(f"an engine is a URL or an EngineConfig, not {type(value).__name__}")
    if value == os.environ.get("DOCKER_HOST"):  # the environment's TLS goes with its host
        return EngineConfig.from_env()
    return EngineConfig(value)


def engine_configs(
    engines: Sequence[EngineLike] | None, docker_url: str | None
) -> list[EngineConfig]:
    """The engines of a pool: ``engines`` when given, else the single ``docker_url`` (or
    the environment's). Refuses an empty list and the same engine twice."""
    if engines is None:
        return [engine_config(docker_url)]
    if docker_url is not None:
        raise InvalidInput("give engines= or docker_url=, not both")
    if isinstance(engines, (str, EngineConfig)) or not isinstance(engines, Sequence):
        raise InvalidInput("engines must be a list of URLs or EngineConfigs")
    configs = [engine_config(e) for e in engines]
    if not configs:
        raise InvalidInput("engines must name at least one engine")
    seen: set[str] = set()
    for config in configs:
        if config.url in seen:
            raise InvalidInput(f"engine {config.url} is listed twice")
        seen.add(config.url)
    return configs


def load_fleet_file(path: str | os.PathLike[str]) -> list[EngineConfig]:
    """Engines from a JSON file: ``{"engines": [URL or {"url": ..., "ca_cert": ...}, ...]}``
    (or the bare list). Relative certificate paths are relative to the file."""
    import json

    file = Path(path).expanduser()
    try:
        data: Any = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read the fleet file {file}: {exc}") from None
    items = data.get("engines") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise InvalidInput(f"{file}: expected {{'engines': [...]}} or a list of engines")
    configs: list[EngineConfig] = []
    for item in items:
        if isinstance(item, str):
            configs.append(EngineConfig(item))
            continue
        if not isinstance(item, dict) or "url" not in item:
            raise InvalidInput(f"{file}: each engine is a URL or an object with a 'url'")
        fields = dict(item)
        for key in ("ca_cert", "client_cert", "client_key"):
            if fields.get(key) is not None:
                fields[key] = str((file.parent / str(fields[key])).expanduser())
        url = fields.pop("url")
        unknown = set(fields) - {"ca_cert", "client_cert", "client_key", "insecure", "capacity"}
        if unknown:
            raise InvalidInput(f"{file}: unknown engine field(s) {sorted(unknown)}")
        configs.append(EngineConfig(url, **fields))
    return engine_configs(configs, None)
