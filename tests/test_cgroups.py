"""The host's dying memory cgroups (sandboxkit/_backends/cgroups.py): read from a
cgroup v1 or v2 tree (pure, on files made here), and shown by ``sandboxkit doctor``; on
a real engine, a sandbox writes nothing in its own layer (the image holds its mount
points), which is what made them."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

import sandboxkit as sk
from sandboxkit._backends.cgroups import MANY_DYING, dying_memory_cgroups

PROC_CGROUPS = """#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t3\t1\t1
memory\t4\t{n}\t1
pids\t8\t1\t1
"""


def v1_tree(tmp_path: Path, counted: int, alive: int) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    (root / "memory" / "docker").mkdir(parents=True)  # the root's own and docker's count
    for i in range(alive - 2):
        (root / "memory" / "docker" / f"c{i}").mkdir()
    table = tmp_path / "cgroups"
    table.write_text(PROC_CGROUPS.format(n=counted))
    return root, table


def test_v1_counts_what_the_kernel_keeps_beyond_what_is_there(tmp_path: Path) -> None:
    root, table = v1_tree(tmp_path, counted=1753, alive=4)  # root, docker, two containers
    assert dying_memory_cgroups(root, table) == 1753 - 4


def test_v2_takes_the_kernels_own_count(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "cgroup.stat").write_text("nr_descendants 12\nnr_dying_descendants 37\n")
    assert dying_memory_cgroups(tmp_path, tmp_path / "none") == 37


def test_a_host_that_does_not_tell_gives_none(tmp_path: Path) -> None:
    assert dying_memory_cgroups(tmp_path, tmp_path / "cgroups") is None  # no controller
    root, table = v1_tree(tmp_path, counted=5, alive=2)
    table.write_text("#subsys_name\thierarchy\tnum_cgroups\tenabled\n")  # no memory row
    assert dying_memory_cgroups(root, table) is None
    table.unlink()
    assert dying_memory_cgroups(root, table) is None


@pytest.mark.docker
@pytest.mark.parametrize("dying", [3, MANY_DYING])
def test_doctor_shows_the_count_and_how_to_release_many(
    dying: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandboxkit.cli import app, doctor
    from sandboxkit.cli._common import console

    monkeypatch.setattr(doctor, "dying_memory_cgroups", lambda: dying)
    monkeypatch.setattr(console, "_width", 400)  # one line per row, whatever the terminal
    out = CliRunner().invoke(app, ["doctor"]).output
    (row,) = [line for line in out.splitlines() if "dying cgroups" in line]
    assert str(dying) in row
    assert ("drop_caches" in row) is (dying >= MANY_DYING)


@pytest.mark.docker
@pytest.mark.parametrize("language", ["bash", "python"])
async def test_a_sandbox_writes_nothing_in_its_own_layer(language: str) -> None:
    """What the runtime makes in a container's own layer as it starts (a mount point the
    image lacks) is charged to the container's memory cgroup, which then outlives it:
    one sandbox in five left one, before the image held every mount point. After a
    start and a run that writes in each of its places, the engine sees no change."""
    code = {"bash": "echo x | tee /tmp/a ~/b c > /dev/null", "python": "open('/tmp/a', 'w')"}
    async with sk.Sandbox(language=language) as sb:
        result = await sb.run(code[language])
        assert result.status == "ok", result
        cid = sb._box.cid  # type: ignore[attr-defined]
        changes = await asyncio.to_thread(
            subprocess.run, ["docker", "diff", cid], capture_output=True, text=True
        )
    assert changes.returncode == 0, changes.stderr
    assert changes.stdout == ""
