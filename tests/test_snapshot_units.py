"""The snapshot's pure parts: the agent's tar packing and unpacking (on host directories)
and the snapshot store (ids, caps, corrupt and missing snapshots). No engine."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import sandboxkit as sk
from sandboxkit._snapshot import store
from sandboxkit.agent import _snapshot as agent_snap
from sandboxkit.agent._run import Inbox


def _pack(
    monkeypatch: pytest.MonkeyPatch, places: list[str], max_bytes: int = 1 << 30
) -> tuple[bytes, dict[str, Any]]:
    pieces: list[bytes] = []
    summaries: list[dict[str, Any]] = []

    def reply(header: dict[str, Any], data: bytes = b"") -> None:
        (pieces.append(data) if header.get("more") else summaries.append(header))

    monkeypatch.setattr(agent_snap, "reply", reply)
    summary = agent_snap.pack(places, max_bytes)
    assert not summaries  # the summary is the caller's to send
    return b"".join(pieces), summary


class _Agent:
    stdin_eof = False
    sel = None


def _unpack(data: bytes, places: list[str]) -> dict[str, Any]:
    inbox = Inbox()
    inbox.stdin = [data[i : i + 7000] for i in range(0, len(data), 7000)]
    inbox.close_stdin = True
    return agent_snap.unpack(_Agent(), inbox, places)


def _tree(root: Path) -> dict[str, tuple[str, int, bytes | str]]:
    found: dict[str, tuple[str, int, bytes | str]] = {}
    for here, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(here, name)
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", 0, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", stat.S_IMODE(st.st_mode), b"")
            elif not stat.S_ISREG(st.st_mode):
                found[rel] = ("other", 0, b"")
            elif not stat.S_IMODE(st.st_mode) & 0o400:
                found[rel] = ("file", stat.S_IMODE(st.st_mode), b"(unreadable)")
            else:
                found[rel] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes())
    return found


def _fill(root: Path) -> None:
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "a.txt").write_bytes(b"alpha\n")
    (root / "sub" / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    (root / "sub" / "run.sh").chmod(0o751)
    (root / "sub" / "deep" / "big.bin").write_bytes(os.urandom(300_000))
    (root / "secret").write_bytes(b"mine only")
    (root / "secret").chmod(0o000)
    os.symlink("/etc/passwd", root / "outside")
    os.symlink("a.txt", root / "sub" / "rel")
    os.link(root / "a.txt", root / "hard")
    os.mkfifo(root / "pipe")
    with open(os.path.join(os.fsencode(root), b"caf\xe9 \xff.txt"), "wb") as f:
        f.write(b"not UTF-8 in its name")
    (root / "ro").mkdir()
    (root / "ro" / "inside").write_bytes(b"x")
    (root / "ro").chmod(0o555)


def test_pack_then_unpack_keeps_files_modes_links_and_empty_dirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(), dst.mkdir()
    _fill(src)
    data, summary = _pack(monkeypatch, [str(src)])
    assert summary["ok"] and summary["skipped"] == [f"{src}/pipe"]
    expected = _tree(src)
    # the same tar restored at another place: rename its members
    renamed = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(data)) as tin,
        tarfile.open(fileobj=renamed, mode="w", format=tarfile.PAX_FORMAT) as tout,
    ):
        for m in tin:
            top = str(src).strip("/")
            m.pax_headers = {}  # its "path" record would name the old place
            m.name = str(dst).strip("/") + m.name[len(top) :]
            if m.islnk():
                m.linkname = str(dst).strip("/") + m.linkname[len(top) :]
            tout.addfile(m, tin.extractfile(m) if m.isreg() else None)
    done = _unpack(renamed.getvalue(), [str(dst)])
    assert done["ok"], done
    got = _tree(dst)
    assert expected.pop("pipe")[0] == "other"  # FIFOs are not kept
    assert got == expected
    (src / "secret").chmod(0o600), (dst / "secret").chmod(0o600)  # mode 000 kept; contents:
    assert (dst / "secret").read_bytes() == b"mine only"
    assert os.stat(dst / "hard").st_ino == os.stat(dst / "a.txt").st_ino  # still one file
    assert os.readlink(dst / "outside") == "/etc/passwd"
    assert stat.S_IMODE(os.stat(src / "ro").st_mode) == 0o555  # put back after packing
    (src / "ro").chmod(0o755), (dst / "ro").chmod(0o755)


def test_pack_stops_at_its_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "big").write_bytes(b"x" * 200_000)
    data, summary = _pack(monkeypatch, [str(tmp_path)], max_bytes=100_000)
    assert summary["ok"] is False and summary["reason"] == "too_large"
    assert len(data) <= 100_000


def test_unpack_refuses_paths_outside_its_places(tmp_path: Path) -> None:
    place = tmp_path / "place"
    place.mkdir()
    for name in (f"{str(tmp_path).strip('/')}/elsewhere", f"{str(place).strip('/')}/../x"):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
        done = _unpack(buf.getvalue(), [str(place)])
        assert done["ok"] is False
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "x").exists()


def test_unpack_does_not_follow_a_planted_symlink(tmp_path: Path) -> None:
    place, target = tmp_path / "place", tmp_path / "target"
    place.mkdir(), target.mkdir()
    top = str(place).strip("/")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        link = tarfile.TarInfo(f"{top}/d")
        link.type, link.linkname = tarfile.SYMTYPE, str(target)
        tar.addfile(link)
        info = tarfile.TarInfo(f"{top}/d/escaped")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    done = _unpack(buf.getvalue(), [str(place)])
    assert done["ok"] is False
    assert list(target.iterdir()) == []


def test_unpack_of_garbage_is_an_error(tmp_path: Path) -> None:
    done = _unpack(os.urandom(5000), [str(tmp_path)])
    assert done["ok"] is False


# ---------------------------------------------------------------------- the store
def _snapshot(sid: str) -> store.Snapshot:
    return store.Snapshot(
        id=sid,
        language="python",
        runtime="runc",
        has_memory=False,
        size_bytes=3,
        created_at=datetime.now(timezone.utc),
        limits=sk.Limits(),
    )


def test_store_round_trip_list_delete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOXKIT_SNAPSHOT_DIR", str(tmp_path / "snaps"))
    writer = store.Writer()
    writer.write(b"abc")
    record = writer.commit(_snapshot(writer.id), None)
    assert store.load(writer.id).snapshot == record.snapshot
    store.verify(record)
    assert [r.snapshot.id for r in store.all_records()] == [writer.id]
    assert store.used_bytes() == 3
    assert store.remove(writer.id) and not store.remove(writer.id)
    with pytest.raises(sk.SnapshotError) as missing:
        store.load(writer.id)
    assert missing.value.reason == "not_found"


def test_store_says_corrupt(tmp_path: Path) -> None:
    writer = store.Writer(tmp_path)
    writer.write(b"abc")
    record = writer.commit(_snapshot(writer.id), None)
    (record.path / store.FILES).write_bytes(b"abd")
    with pytest.raises(sk.SnapshotError) as changed:
        store.verify(store.load(writer.id, tmp_path))
    assert changed.value.reason == "corrupt"
    (record.path / store.META).write_text("{not json")
    with pytest.raises(sk.SnapshotError) as meta:
        store.load(writer.id, tmp_path)
    assert meta.value.reason == "corrupt"
    assert store.all_records(tmp_path) == []  # left out of the list, deletable by id


def test_snapshot_ids_are_checked() -> None:
    for bad in ("../etc", "snap-XYZ", "", 5, "snap-" + "a" * 21):
        with pytest.raises(sk.InvalidInput):
            store.check_id(bad)
    assert store.check_id(store.new_id()).startswith("snap-")


def test_default_dir_and_caps(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SANDBOXKIT_SNAPSHOT_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert store.snapshot_dir() == tmp_path / "sandboxkit" / "snapshots"
    monkeypatch.setenv("SANDBOXKIT_SNAPSHOT_MAX_MB", "3")
    assert store.max_snapshot_bytes() == 3 * store.MB
    monkeypatch.setenv("SANDBOXKIT_SNAPSHOT_MAX_MB", "lots")
    with pytest.raises(sk.InvalidInput):
        store.max_snapshot_bytes()
    assert json.loads(store._dump(_snapshot(store.new_id()), "0", None))["format"] == store.FORMAT


# ---------------------------------------------------------------------- who reaps what
def test_a_pausable_box_is_judged_by_the_holder_in_its_name() -> None:
    from sandboxkit._fleet.labels import LABEL_PAUSABLE, PAUSED_PREFIX, held_name
    from sandboxkit._fleet.reaper import orphaned

    labels = {LABEL_PAUSABLE: "1"}
    mine = held_name("abc123")
    assert not orphaned(labels, mine)  # this process holds it
    pid, start, tag = mine.rsplit("-", 3)[1:]
    gone = mine.replace(f"-{pid}-{start}-", f"-{pid}-{int(start) + 1}-")  # same pid, reused
    assert orphaned(labels, gone)
    elsewhere = mine.replace(f"-{tag}", "-00000000" if tag != "00000000" else "-11111111")
    assert not orphaned(labels, elsewhere)  # another host's: not ours to judge
    assert not orphaned(labels, PAUSED_PREFIX + store.new_id())  # paused: kept
    assert not orphaned(labels, "")  # no name known: kept
