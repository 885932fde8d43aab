"""Where things are in a sandbox: the paths the host's runs, the engine's mounts and the
image agree on.

The image holds every place the engine mounts something on (:func:`mount_points`). A
read-only root with a mount point missing is not read-only to the engine's runtime: it
makes the missing directory or file in the container's own layer as the container starts,
inside the container's memory cgroup, and the file system's blocks it touches stay in
the page cache charged to that cgroup after the container is gone. The kernel keeps
such a cgroup (a "dying" one) until the page leaves the cache: a host that made
thousands of sandboxes held thousands of them, and every new container started
slower (cgroup v1 here measured half the speed after two test runs).
"""

from __future__ import annotations

from collections.abc import Mapping

from ._protocol import CHANNEL_PATH

WORKDIR = "/work"  # the user's files: a tmpfs of the box's own
DEFAULT_HOME = "/home/sandbox"  # ContainerSpec.home's, BASE_ENV's $HOME
# a session run's own files (its source, what its compiler makes), apart from the user's
# files in WORKDIR: a user's main.py is the user's (see _run.jobs.make_job's ``own``)
OWN_DIR = "/run/sandboxkit"


def home_of(env: Mapping[str, str]) -> str:
    """The sandbox user's home: the language's $HOME when it names a directory under
    /home (an image shaped for another product's user, such as E2B's /home/user), else
    sandboxkit's own; either way a tmpfs of the box's own (see ContainerSpec.home)."""
    home = env.get("HOME", "")
    parts = home.split("/")
    if len(parts) == 3 and parts[:2] == ["", "home"] and parts[2] not in ("", ".", ".."):
        return home
    return DEFAULT_HOME


def mount_points(env: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The directories and the files a sandbox of a language with ``env`` has something
    mounted on (``_backends.docker.create_body``): its tmpfs places and the direct
    channel's socket."""
    return (WORKDIR, OWN_DIR, "/tmp", home_of(env)), (CHANNEL_PATH,)


__all__ = ["DEFAULT_HOME", "OWN_DIR", "WORKDIR", "home_of", "mount_points"]
