"""Bad input fails fast, before any container is touched (no engine needed)."""

from __future__ import annotations

import pytest

import sandboxkit as sk
from sandboxkit._validate import check_path


@pytest.mark.parametrize(
    "kwargs",
    [
        {"time": -1},
        {"time": 0},
        {"memory_mb": 0},
        {"memory_mb": 10**9},
        {"pids": 1},
        {"output_bytes": 0},
        {"time": float("inf")},
        {"bogus": 1},
    ],
)
def test_limits_reject_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(sk.InvalidInput):
        sk.Limits(**kwargs)  # type: ignore[arg-type]


def test_limits_are_frozen() -> None:
    lim = sk.Limits()
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error
        lim.time = 3  # type: ignore[misc]


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "../x", "a/../../x", "a\0b", ".", "./", 3])
def test_paths_outside_workdir_rejected(bad: object) -> None:
    with pytest.raises(sk.InvalidPath):
        check_path(bad)


def test_paths_are_normalised() -> None:
    assert check_path("a//b/./c.txt") == "a/b/c.txt"


async def test_unknown_language_fails_before_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    with pytest.raises(sk.UnknownLanguage):
        await sk.Sandbox.run("x", language="no-such-language")


async def test_non_str_code_rejected() -> None:
    pool = sk.SandboxPool(languages=[], docker_url="unix:///nonexistent.sock")
    with pytest.raises(sk.InvalidInput):
        await pool.run(b"print(1)")  # type: ignore[arg-type]
    with pytest.raises(sk.InvalidPath):
        await pool.run("print(1)", files={"../escape": b""})
    await pool.aclose()


async def test_unreachable_engine_says_what_to_do() -> None:
    pool = sk.SandboxPool(languages=["python"], docker_url="unix:///nonexistent.sock")
    with pytest.raises(sk.EngineUnavailable, match=r"engine-up\.sh"):
        async with pool:
            pass


def test_all_is_sorted_and_complete() -> None:
    assert sk.__all__ == sorted(sk.__all__)
    for name in sk.__all__:
        assert hasattr(sk, name)
