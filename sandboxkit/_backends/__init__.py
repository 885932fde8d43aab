"""Container engines behind one seam (:class:`ContainerEngine`, and :class:`ImageStore`
where the engine keeps its own images; :class:`Backend` is both); Docker's is the only
one yet."""

from __future__ import annotations

from .base import (
    STREAM_STDERR,
    STREAM_STDOUT,
    AttachedStream,
    Backend,
    BridgeNetwork,
    ContainerEngine,
    ContainerRecord,
    ContainerSpec,
    ContainerStats,
    EgressNetwork,
    EngineInfo,
    ImageRecord,
    ImageStore,
    Launched,
    NetworkPolicy,
    NetworkRecord,
    NetworkStore,
    OwnNetwork,
)
from .config import EngineConfig, EngineLike, engine_config, engine_configs, load_fleet_file
from .docker import DockerBackend, tls_problem

__all__ = [
    "STREAM_STDERR",
    "STREAM_STDOUT",
    "AttachedStream",
    "Backend",
    "BridgeNetwork",
    "ContainerEngine",
    "ContainerRecord",
    "ContainerSpec",
    "ContainerStats",
    "DockerBackend",
    "EgressNetwork",
    "EngineConfig",
    "EngineInfo",
    "EngineLike",
    "ImageRecord",
    "ImageStore",
    "Launched",
    "NetworkPolicy",
    "NetworkRecord",
    "NetworkStore",
    "OwnNetwork",
    "connect",
    "engine_config",
    "engine_configs",
    "load_fleet_file",
    "tls_problem",
]


def connect(target: str | EngineConfig | None = None) -> Backend:
    """The backend for one engine: a URL, an :class:`EngineConfig`, or None for the
    environment's (``DOCKER_HOST`` with ``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH``, then
    the local socket).

    Connects on first use, so an unreachable engine fails there, with what to do. Every
    URL Docker's clients take (``unix://``, ``tcp://``, ``https://``, ``ssh://``) is a
    Docker engine; other schemes will choose other backends here. No policy here (a
    plaintext ``tcp://`` URL is taken as given): pools refuse those through
    :class:`EngineConfig`.
    """
    if isinstance(target, EngineConfig):
        return DockerBackend.from_config(target)
    if target is None:
        config = _env_tls()
        if config is not None:
            return DockerBackend.from_config(config)
    return DockerBackend(target)


def _env_tls() -> EngineConfig | None:
    """The environment's engine when it asks for TLS (DOCKER_TLS_VERIFY), else None."""
    import os

    if os.environ.get("DOCKER_TLS_VERIFY") and os.environ.get("DOCKER_HOST"):
        return EngineConfig.from_env()
    return None
