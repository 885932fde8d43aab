"""The launcher's orders (``agent/_launch._orders``, read by ``launch.c``): pure. What the
launcher cannot carry exactly goes the fork path, which fails or runs it as before."""

from __future__ import annotations

import resource
from typing import Any

from sandboxkit.agent._launch import MAX_ORDERS, _orders


def _fields(job: dict[str, Any]) -> list[str]:
    data = _orders(job, "/work")  # type: ignore[arg-type]
    assert data is not None and data.endswith(b"\0")
    return data[:-1].decode().split("\0")


def test_fields_in_launch_c_order() -> None:
    job = {
        "argv": ["./main", "a b", ""],
        "env": {"PATH": "/usr/bin", "EMPTY": ""},
        "rlimits": {"cpu": 3, "nofile": 64},
        "cwd": "/work/sub",
    }
    assert _fields(job) == [
        "/work/sub",
        "2",
        str(resource.RLIMIT_CPU),
        "3",
        str(resource.RLIMIT_NOFILE),
        "64",
        "3",
        "./main",
        "a b",
        "",
        "2",
        "PATH=/usr/bin",
        "EMPTY=",
    ]


def test_the_agent_directory_and_no_limits_by_default() -> None:
    assert _fields({"argv": ["gcc"]}) == ["/work", "0", "1", "gcc", "0"]


def test_an_unlimited_rlimit_is_minus_one() -> None:
    fields = _fields({"argv": ["x"], "rlimits": {"as": resource.RLIM_INFINITY}})
    assert fields[1:4] == ["1", str(resource.RLIMIT_AS), "-1"]


def test_what_the_launcher_cannot_carry_forks() -> None:
    jobs: list[Any] = [
        {"argv": ["x\0y"]},  # exec refuses it
        {"argv": ["x"], "env": {"A=B": "c"}},  # os.execve refuses the name
        {"argv": ["x"], "rlimits": {"nosuch": 1}},  # the fork path fails it
        {"argv": ["x"], "env": {"BIG": "x" * MAX_ORDERS}},  # past the launcher's buffer
    ]
    assert [_orders(job, "/work") for job in jobs] == [None] * 4
