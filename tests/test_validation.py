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
    assert "languages" in sk.__all__


def test_languages_lists_every_runnable_language() -> None:
    specs = sk.languages()
    names = [s.name for s in specs]
    assert names == sorted(names) and {"python", "c", "cpp", "bash", "haskell"} <= set(names)
    assert all(sk.get_language(s.name) is s for s in specs)
    made_up = sk.get_language("python").extend("python-listed-test")
    sk.register_language(made_up)
    try:
        assert made_up in sk.languages()
    finally:
        from sandboxkit._languages import REGISTRY

        del REGISTRY._specs[made_up.name]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"files": {"a": b"1", "a/b": b"2"}},  # a file and a directory at once
        {"files": {"main.py/x": b""}},  # under the source file
        {"files": {"big": b"x" * (2 * 1024 * 1024)}, "limits": sk.Limits(disk_mb=1)},
        {"stdin": "\ud800"},  # a lone surrogate is not text
        {"stdin": b"x" * (65 * 1024 * 1024)},
    ],
)
async def test_run_input_refused_before_any_container(kwargs: dict[str, object]) -> None:
    pool = sk.SandboxPool(languages=[], docker_url="unix:///nonexistent.sock")
    with pytest.raises(sk.InvalidInput):
        await pool.run("print(1)", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(sk.InvalidInput):
        await pool.run("print('\ud800')")
    await pool.aclose()


def test_default_pools_are_per_event_loop() -> None:
    import asyncio
    import threading

    from sandboxkit import _default

    seen: list[object] = []
    loops: list[asyncio.AbstractEventLoop] = []

    def in_thread() -> None:
        async def go() -> None:
            loops.append(asyncio.get_running_loop())
            seen.append(await _default.default_pool())
            await sk.aclose()

        asyncio.run(go())

    threads = [threading.Thread(target=in_thread) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 2 and seen[0] is not seen[1]
    assert all(p.closed for p in seen)  # type: ignore[attr-defined]
    # other tests' loops may hold default pools of their own; these two are gone
    assert not any(loop in _default._defaults for loop in loops)
