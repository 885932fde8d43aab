"""The wire format (pure): frames packed and parsed back, however the bytes arrive."""

from __future__ import annotations

import pytest

from sandboxkit import _protocol as wire

FRAMES = [
    (wire.JOB, b'{"op": "run"}'),
    (wire.STDIN, b""),
    (wire.STDOUT, bytes(range(256)) * 3),
    (wire.EXIT, b"{}"),
    (wire.REPLY, b'{"ok": true}\0raw\0bytes'),
]


def test_pack_layout() -> None:
    assert wire.pack(wire.STDOUT, b"hi") == b"O\x00\x00\x00\x02hi"
    assert wire.pack(wire.CLOSE_STDIN) == b"C\x00\x00\x00\x00"
    assert wire.HEADER.size == 5


def test_round_trip_in_one_feed() -> None:
    data = b"".join(wire.pack(k, p) for k, p in FRAMES)
    assert wire.FrameReader().feed(data) == FRAMES


@pytest.mark.parametrize("step", [1, 2, 3, 5, 7, 64])
def test_round_trip_in_split_feeds(step: int) -> None:
    data = b"".join(wire.pack(k, p) for k, p in FRAMES)
    reader = wire.FrameReader()
    got: list[tuple[bytes, bytes]] = []
    for i in range(0, len(data), step):
        got += reader.feed(data[i : i + step])
    assert got == FRAMES


def test_incomplete_frame_waits_for_the_rest() -> None:
    reader = wire.FrameReader()
    frame = wire.pack(wire.STDERR, b"abcdef")
    assert reader.feed(frame[:4]) == []  # not even a header yet
    assert reader.feed(frame[4:8]) == []  # header, part of the payload
    assert reader.feed(frame[8:] + frame[:1]) == [(wire.STDERR, b"abcdef")]
    assert reader.feed(frame[1:]) == [(wire.STDERR, b"abcdef")]


def test_oversize_frame_is_refused_from_its_header() -> None:
    header = wire.HEADER.pack(wire.JOB[0], wire.MAX_FRAME + 1)
    with pytest.raises(ValueError, match="exceeds the protocol maximum"):
        wire.FrameReader().feed(header)
    # the largest allowed frame is only waited for
    assert wire.FrameReader().feed(wire.HEADER.pack(wire.JOB[0], wire.MAX_FRAME)) == []


def test_kinds_are_distinct_single_bytes() -> None:
    kinds = [wire.JOB, wire.STDIN, wire.CLOSE_STDIN, wire.KILL]
    kinds += [wire.READY, wire.STDOUT, wire.STDERR, wire.EXIT, wire.REPLY, wire.FAULT]
    assert all(len(k) == 1 for k in kinds) and len(set(kinds)) == len(kinds)
