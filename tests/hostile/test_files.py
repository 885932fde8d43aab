"""Files: hostile names and archives, symlinks, FIFOs, sparse files."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile

import pytest

import sandboxkit as sk

from ._invariants import check, settle

pytestmark = [pytest.mark.docker, pytest.mark.hostile]

REJECTED = [
    "a/../../x",
    "../x",
    "/etc/passwd",
    "a/../../../etc/shadow",
    "",
    "x\0y",
    "..",
    "./../x",
    "a" * 300,
]


@pytest.mark.parametrize("name", REJECTED)
async def test_escaping_file_names_are_rejected_before_any_container(
    hostile_pool: sk.SandboxPool, name: str
) -> None:
    with pytest.raises(sk.InvalidInput):
        await hostile_pool.run("print(1)", files={name: b"x"})
    await settle(hostile_pool)


async def test_odd_but_valid_names_are_accepted(hostile_pool: sk.SandboxPool) -> None:
    names = [
        "new\nline.txt",
        "ünïcødé/ファイル.txt",
        "sp ace",
        "-rf",
        "*",
        "$(id)",
        "a\tb",
        ".hidden",
        "x/./y",
        "emoji-\U0001f600",
    ]
    files = {n: n.encode() for n in names}
    code = (
        "import os, json\nout = {}\nfor root, _, fs in os.walk('.'):\n    for f in fs:\n"
        "        p = os.path.relpath(os.path.join(root, f))\n"
        "        out[p] = open(p, 'rb').read().decode()\nprint(json.dumps(out))\n"
    )
    r = await check(hostile_pool, code, "ok", files=files)
    seen = json.loads(r.stdout)
    for n in names:
        clean = n.replace("/./", "/")
        assert seen[clean] == n


def _tar(members: list[tuple[str, bytes, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link.decode()
            else:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if link is None else None)
    return buf.getvalue()


async def test_hostile_archives_stay_inside(hostile_pool: sk.SandboxPool) -> None:
    slip = _tar(
        [
            ("../../../../tmp/slipped", b"x", None),
            ("/etc/cron.d/evil", b"x", None),
            ("link", b"", b"/etc/shadow"),
        ]
    )
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("../../escape.txt", b"x")
        z.writestr("bomb.bin", b"\0" * (100 << 20))  # 100 MB that compresses to ~100 KB
    code = (
        "import os, tarfile, zipfile\n"
        "t = tarfile.open('slip.tar')\n"
        "for m in t.getmembers():\n    try:\n"
        "        t.extract(m, '/work/out', filter='fully_trusted')\n"
        "    except OSError as e:\n        print('refused', m.name, e.errno)\n"
        "print(os.path.exists('/etc/cron.d/evil'))\n"
        "try:\n    open('/work/out/link').read()\nexcept OSError as e:\n"
        "    print('link', e.errno)\n"
        "try:\n    zipfile.ZipFile('z.zip').extractall('/work/z')\n"
        "except OSError as e:\n    print('zip', e.errno)\n"
    )
    r = await check(
        hostile_pool,
        code,
        ("ok", "error", "oom"),
        files={"slip.tar": slip, "z.zip": zbuf.getvalue()},
        limits=sk.Limits(time=30),
    )
    assert "True" not in r.stdout.splitlines()


async def test_symlinks_and_fifos_in_a_session(hostile_pool: sk.SandboxPool) -> None:
    async with sk.Sandbox(pool=hostile_pool, limits=sk.Limits(file_size_mb=2048)) as sb:
        r = await sb.run(
            "import os\nos.symlink('/etc/passwd', 'passwd')\nos.symlink('/', 'root')\n"
            "os.mkfifo('fifo')\nos.symlink('/tmp', 'tmpdir')\n"
            "f = open('sparse', 'wb')\nf.truncate(1 << 30)\nf.close()\n"
        )
        assert r.status == "ok", r
        for path in ("passwd", "root/etc/passwd", "fifo", "tmpdir/x"):
            with pytest.raises(sk.SandboxkitError):
                await sb.read_file(path)
        for path in ("passwd", "root/etc/evil", "fifo", "tmpdir/planted"):
            with pytest.raises(sk.SandboxkitError):
                await sb.write_file(path, b"x")
        with pytest.raises(sk.SandboxkitError):
            await sb.read_file("sparse")  # 1 GiB (sparse): over the read cap, not read
        names = {e.path for e in await sb.list_files()}
        assert {"passwd", "root", "fifo", "sparse"} <= names
        r = await sb.run(
            "import os\nprint(os.path.exists('/tmp/planted'), "
            "open('/etc/passwd').read().count('evil'))\n"
        )
        assert r.stdout == "False 0\n"
    await settle(hostile_pool)


async def test_many_and_large_input_files(hostile_pool: sk.SandboxPool) -> None:
    files = {f"d{i % 10}/f{i}": bytes([i % 256]) * 100 for i in range(900)}
    files["big.bin"] = b"\xff" * (20 << 20)
    code = (
        "import os\nn = sum(len(fs) for _, _, fs in os.walk('.'))\n"
        "print(n, os.path.getsize('big.bin'))\n"
    )
    r = await check(hostile_pool, code, "ok", files=files, limits=sk.Limits(time=30))
    assert r.stdout == f"{len(files) + 1} {20 << 20}\n"
