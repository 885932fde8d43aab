"""Container engines behind one seam (:class:`Backend`); Docker's is the only one yet."""

from __future__ import annotations

from .base import STREAM_STDERR, STREAM_STDOUT, AttachedStream, Backend, ContainerSpec
from .docker import HOW_TO_START, DockerBackend

__all__ = [
    "HOW_TO_START",
    "STREAM_STDERR",
    "STREAM_STDOUT",
    "AttachedStream",
    "Backend",
    "ContainerSpec",
    "DockerBackend",
    "connect",
]


def connect(url: str | None = None) -> Backend:
    """The backend for the engine at ``url`` (default: DOCKER_HOST, then the local socket).

    Connects on first use, so an unreachable engine fails there, with what to do. Every
    URL Docker's clients take (``unix://``, ``tcp://``, ``ssh://``) is a Docker engine;
    other schemes will choose other backends here.
    """
    return DockerBackend(url)
