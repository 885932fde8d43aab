"""deepagents: SandboxkitBackend through BaseSandbox's own code paths (execute, its
ls/read/write/edit/grep/glob built on execute, upload/download) against a real session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("deepagents")

from deepagents.backends.protocol import SandboxBackendProtocol

from sandboxkit.integrations.deepagents import SandboxkitBackend, workdir_path

pytestmark = pytest.mark.docker


def test_paths_map_to_the_workdir() -> None:
    assert workdir_path("/work/a/b.txt") == "a/b.txt"
    assert workdir_path("a.txt") == "a.txt"
    assert workdir_path("/work") == "."
    assert workdir_path("/etc/passwd") is None and workdir_path("/workx/y") is None


@pytest.fixture(scope="module")
def backend() -> Iterator[SandboxkitBackend]:
    with SandboxkitBackend() as b:
        yield b


def test_execute_merges_streams_keeps_files_and_reports_failures(
    backend: SandboxkitBackend,
) -> None:
    assert isinstance(backend, SandboxBackendProtocol)
    r = backend.execute("echo out; echo err >&2; echo out2")
    assert r.exit_code == 0 and r.output == "out\nerr\nout2\n"
    backend.execute("echo kept > state.txt")
    assert backend.execute("cat state.txt").output == "kept\n"  # files persist
    r = backend.execute("exit 3")
    assert r.exit_code == 3
    r = backend.execute("sleep 30", timeout=1)
    assert "timed out" in r.output and r.exit_code != 0
    assert backend.execute("echo alive").output == "alive\n"


async def test_aexecute(backend: SandboxkitBackend) -> None:
    r = await backend.aexecute("echo async; pwd")
    assert r.output == "async\n/work\n"


def test_upload_download_and_base_sandbox_file_tools(backend: SandboxkitBackend) -> None:
    blob = bytes(range(256))
    up = backend.upload_files(
        [
            ("/work/d/blob.bin", blob),
            ("/work/notes.md", b"alpha\nbeta\n"),
            ("/etc/x", b"no"),
            ("notes.md", b"relative"),
        ]
    )
    assert [u.error for u in up] == [None, None, "permission_denied", "invalid_path"]
    down = backend.download_files(["/work/d/blob.bin", "/work/missing", "/etc/passwd", "x"])
    assert down[0].content == blob and down[0].error is None
    assert down[1].content is None and down[1].error == "file_not_found"
    assert down[2].content is not None and b"root:" in down[2].content  # readable by the user
    assert down[3].error == "invalid_path"

    # BaseSandbox's helpers, built on execute and upload
    assert backend.write("/work/src/app.py", "print('hi')\n").error is None
    read = backend.read("/work/src/app.py")
    assert "print('hi')" in str(read)
    edited = backend.edit("/work/src/app.py", "hi", "bye")
    assert getattr(edited, "error", None) is None
    assert backend.execute("python3 src/app.py").output == "bye\n"
    listing = str(backend.ls("/work"))
    assert "notes.md" in listing and "src" in listing
    assert "notes.md" in str(backend.grep("beta", path="/work"))
    assert "app.py" in str(backend.glob("**/*.py", path="/work"))


async def test_async_files(backend: SandboxkitBackend) -> None:
    (up,) = await backend.aupload_files([("/work/a.txt", b"async file")])
    assert up.error is None
    (down,) = await backend.adownload_files(["/work/a.txt"])
    assert down.content == b"async file"
