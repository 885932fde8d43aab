"""Messages that fit the user: an image built on first use says so (log, or a status line
in the CLI); the engine-down advice fits a source checkout or a pip install and `doctor`
says it once; a bad `Limits` is one clean line; an idle-reclaimed session says why and
what to set."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import secrets
import subprocess
import sys
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from rich.console import Console

import sandboxkit as sk
from sandboxkit._backends import advice
from sandboxkit._backends import docker as dk
from sandboxkit._images import ensure as _images
from sandboxkit._images.dockerfile import BASE_IMAGE
from sandboxkit._images.ensure import BuildProgress, build_hook, context_for, ensure_image
from sandboxkit._languages import BASH, REGISTRY
from sandboxkit._validate import check_limits
from sandboxkit.cli import _common

ROOT = Path(__file__).resolve().parent.parent

BUILD_LINES = (
    "Step 1/3 : FROM sandboxkit/base:bookworm AS toolchain",
    " ---> 0123456789ab",
    "Step 2/3 : RUN apt-get update && apt-get install -y bash",
    "Setting up bash (5.2.15-2) ...",
    "Step 3/3 : LABEL org.sandboxkit.language=x",
    "Successfully built 0123456789ab",
)


class FakeEngine:
    """Just what ensure_image asks of an engine; builds print BUILD_LINES."""

    url = "unix:///fake/docker.sock"

    def __init__(self, *, base: bool = True, fail: bool = False) -> None:
        self.images = {BASE_IMAGE} if base else set()
        self.fail = fail

    async def image_exists(self, tag: str) -> bool:
        return tag in self.images

    async def pull(self, reference: str, tag: str) -> None:
        raise sk.EngineError("no registry here")

    async def build(
        self,
        tag: str,
        dockerfile: str,
        files: Mapping[str, bytes],
        on_line: Callable[[str], None] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        for line in BUILD_LINES:
            if on_line is not None:
                on_line(line)
        if self.fail:
            raise sk.ImageError(f"building {tag} failed: E: Unable to locate package", "E: ...")
        self.images.add(tag)


def fresh_spec() -> Any:
    return BASH.extend(f"bash-msg-{secrets.token_hex(4)}")


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "sandboxkit" and r.levelno >= logging.WARNING
    ]


# ---------------------------------------------------------------- image builds
async def test_a_build_on_first_use_is_logged_at_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = fresh_spec()
    tag = context_for(spec).tag
    with caplog.at_level(logging.INFO, logger="sandboxkit"):
        assert await ensure_image(FakeEngine(), spec) == tag  # type: ignore[arg-type]
    said = warnings_of(caplog)
    first = said[0]
    assert tag in first and repr(spec.name) in first and "first use" in first
    assert "about" in first and f"sandboxkit images build {spec.name}" in first
    steps = [line for line in said if "Step " in line]
    assert len(steps) == 3 and "Step 2/3" in steps[1]
    assert said[-1].startswith(f"sandboxkit: built {tag} in ")
    assert not any("Setting up" in line for line in said)  # raw lines stay at DEBUG


async def test_a_long_step_says_it_is_still_building(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_images, "STILL_BUILDING_EVERY", 0.0)
    with caplog.at_level(logging.WARNING, logger="sandboxkit"):
        await ensure_image(FakeEngine(), fresh_spec())  # type: ignore[arg-type]
    still = [line for line in warnings_of(caplog) if "still building" in line]
    assert any("(0 s, step 2/3): Setting up bash" in line for line in still), still


async def test_a_caller_watching_the_build_gets_the_lines_and_no_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lines: list[str] = []
    seen: list[BuildProgress] = []
    with caplog.at_level(logging.INFO, logger="sandboxkit"), build_hook(seen.append):
        await ensure_image(FakeEngine(), fresh_spec(), lines.append)  # type: ignore[arg-type]
    assert lines == list(BUILD_LINES)
    assert warnings_of(caplog) == [] and seen == []
    assert any("building image" in r.getMessage() for r in caplog.records)  # at INFO


async def test_a_hook_gets_the_progress_instead_of_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[BuildProgress] = []
    spec = fresh_spec()
    with caplog.at_level(logging.WARNING, logger="sandboxkit"), build_hook(seen.append):
        await ensure_image(FakeEngine(), spec)  # type: ignore[arg-type]
    assert warnings_of(caplog) == []
    kinds = [p.kind for p in seen]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("step") == 3
    assert {p.language for p in seen} == {spec.name}
    assert seen[0].estimate.startswith("about") and seen[-1].elapsed >= 0
    assert _images._hook is None  # restored after the block


async def test_a_failed_build_reports_failed_then_raises() -> None:
    seen: list[BuildProgress] = []
    with build_hook(seen.append), pytest.raises(sk.ImageError, match="build again"):
        await ensure_image(FakeEngine(fail=True), fresh_spec())  # type: ignore[arg-type]
    assert seen[-1].kind == "failed" and "Unable to locate package" in seen[-1].text


async def test_a_missing_base_image_is_reported_too(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def bootstrap(
        engine: Any, tag: str, on_line: Callable[[str], None], *, suite: str = "bookworm"
    ) -> None:
        on_line(f"debootstrap --variant=minbase {suite}")
        engine.images.add(tag)

    monkeypatch.setattr(_images, "bootstrap_base", bootstrap)
    with caplog.at_level(logging.WARNING, logger="sandboxkit"):
        await ensure_image(FakeEngine(base=False), fresh_spec())  # type: ignore[arg-type]
    said = warnings_of(caplog)
    assert BASE_IMAGE in said[0] and "the base image" in said[0]
    assert "sudo sandboxkit images bootstrap" in said[0]
    assert any(line.startswith(f"sandboxkit: built {BASE_IMAGE}") for line in said)


def test_the_cli_status_shows_start_steps_and_end_on_a_plain_stream() -> None:
    out = io.StringIO()
    status = _common.BuildStatus(Console(file=out, force_terminal=False, width=200))
    tag = "sandboxkit/python:0123"
    base: dict[str, Any] = {"language": "python", "tag": tag, "engine": "unix:///x"}
    status(BuildProgress("start", text="first use", estimate="about 1 minute", **base))
    for line in BUILD_LINES:
        kind = "step" if line.startswith("Step") else "line"
        status(BuildProgress(kind, text=line, elapsed=3.0, **base))
    status(BuildProgress("done", elapsed=42.0, **base))
    text = out.getvalue()
    assert f"building the python image {tag} (first use; about 1 minute)" in text
    assert text.count("Step ") == 3 and "Setting up" not in text
    assert f"built {tag} in 42 s" in text
    assert status.status is None


def test_the_cli_status_spins_on_a_terminal_and_stops() -> None:
    out = io.StringIO()
    status = _common.BuildStatus(Console(file=out, force_terminal=True, width=120))
    base: dict[str, Any] = {"language": "bash", "tag": "sandboxkit/bash:1", "engine": "u"}
    status(BuildProgress("start", text="first use", estimate="soon", **base))
    assert status.status is not None
    status(BuildProgress("step", text=BUILD_LINES[0], elapsed=1.0, **base))
    status(BuildProgress("failed", text="boom", elapsed=2.0, **base))
    assert status.status is None and "failed" in out.getvalue()


def test_every_cli_command_run_through_run_async_shows_builds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`sandboxkit run` (and judge, ...) call run_async: a build on first use shows as a
    status line on stderr, not as log warnings."""
    out = io.StringIO()
    monkeypatch.setattr(_common, "console", Console(file=out, force_terminal=False, width=200))
    spec = fresh_spec()
    tag = _common.run_async(ensure_image(FakeEngine(), spec))  # type: ignore[arg-type]
    assert f"building the {spec.name} image {tag}" in out.getvalue()
    assert f"built {tag}" in out.getvalue()
    assert _images._hook is None


@pytest.mark.docker
async def test_a_pool_that_builds_an_image_on_first_use_logs_it(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = secrets.token_hex(4)
    spec = BASH.extend(f"bash-firstuse-{marker}", setup=(f"echo {marker} > /opt/marker",))
    tag = context_for(spec).tag
    monkeypatch.setitem(REGISTRY._specs, spec.name, spec)  # registered for this test only
    try:
        with caplog.at_level(logging.WARNING, logger="sandboxkit"):
            async with sk.SandboxPool(languages=[], size=0) as pool:
                r = await pool.run("cat /opt/marker", language=spec.name)
        assert r.stdout == f"{marker}\n", r.stderr
        said = warnings_of(caplog)
        assert any(tag in line and "first use" in line for line in said), said
        assert any(line.startswith(f"sandboxkit: built {tag}") for line in said), said
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, check=False)


# ---------------------------------------------------------------- engine down
def test_a_source_checkout_is_told_to_run_its_engine_up_script(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.chdir(ROOT)
    text = advice.how_to_start()
    assert "`sudo bash scripts/engine-up.sh`" in text
    assert "DOCKER_HOST" in text and "`sandboxkit doctor`" in text
    assert "sandboxkit doctor" not in advice.how_to_start(doctor=True)


@pytest.mark.parametrize("dockerd", [None, "/usr/bin/dockerd"])
def test_a_pip_install_gets_the_commands_not_a_script_it_lacks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, dockerd: str | None
) -> None:
    monkeypatch.setattr(advice, "_CHECKOUT", tmp_path)  # site-packages: no scripts/
    monkeypatch.setattr(advice.shutil, "which", lambda name: dockerd)
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/elsewhere.sock")
    text = advice.how_to_start()
    assert "engine-up" not in text and "scripts/" not in text
    if dockerd is None:
        assert "sudo apt-get install docker.io" in text
    else:
        assert "sudo systemctl start docker" in text and "dockerd &" in text
    assert "DOCKER_HOST (set to unix:///tmp/elsewhere.sock)" in text
    assert "engine-up" not in advice.how_to_get_gvisor()


def test_a_socket_this_user_may_not_open_is_a_permission_not_an_engine_to_start() -> None:
    key = types.SimpleNamespace(host="localhost", port=None, ssl=False, is_ssl=False)
    exc = aiohttp.ClientConnectorError(key, PermissionError(13, "Permission denied"))  # type: ignore[arg-type]
    with pytest.raises(sk.EngineUnavailable) as info, dk.map_errors("ping"):
        raise exc
    assert info.value.advice == advice.PERMISSION
    assert "docker` group" in str(info.value) and "engine-up" not in str(info.value)


def test_engine_unavailable_keeps_problem_and_advice_apart() -> None:
    err = sk.EngineUnavailable("no Docker engine answers", "Start one.")
    assert str(err) == "no Docker engine answers. Start one."
    assert (err.problem, err.advice) == ("no Docker engine answers", "Start one.")
    assert str(sk.EngineUnavailable("down")) == "down"


def test_doctor_says_what_to_do_once_and_not_to_run_itself(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/none.sock", "COLUMNS": "500"}
    proc = subprocess.run(
        [sys.executable, "-m", "sandboxkit", "doctor"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text
    assert "unreachable" in text
    assert text.count("engine-up.sh") == 1, text
    assert "sandboxkit doctor" not in text, text


# ---------------------------------------------------------------- Limits
@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"time": -1}, "time=-1 must be a number > 0 and <= 3600: wall-clock seconds"),
        ({"memory_mb": 8}, "memory_mb=8 must be an integer from 16 to 65536"),
        ({"memory_mb": "x"}, "memory_mb='x' must be an integer from 16 to 65536"),
        ({"time": float("inf")}, "time=inf must be a finite number"),
        ({"tme": 1}, "tme=1 is not a field (did you mean time?)"),
        ({"cpu_time": 0}, "cpu_time=0 must be a number > 0 and <= 3600 (or None)"),
    ],
)
def test_a_bad_limit_is_one_clean_line(given: dict[str, Any], says: str) -> None:
    with pytest.raises(sk.InvalidInput) as info:
        sk.Limits(**given)
    text = str(info.value)
    assert text == f"invalid Limits: {says}" or text.startswith(f"invalid Limits: {says}")
    assert "\n" not in text and "http" not in text and "pydantic" not in text
    assert isinstance(info.value, ValueError)  # InvalidInput is a ValueError too
    with pytest.raises(sk.InvalidInput) as again:
        sk.Limits.model_validate(given)
    assert str(again.value) == text


def test_every_wrong_limit_is_named_in_the_same_line() -> None:
    with pytest.raises(sk.InvalidInput) as info:
        sk.Limits(time=0, pids=1)
    text = str(info.value)
    assert "time=0 must be" in text and "; pids=1 must be an integer from 8 to 4096" in text


def test_limits_given_as_a_mapping_say_the_same_without_pydantic_text() -> None:
    with pytest.raises(sk.InvalidInput) as info:
        check_limits({"time": -1})
    text = str(info.value)
    assert "time=-1 must be a number > 0" in text
    assert "\n" not in text and "http" not in text and "validation error" not in text


async def test_run_with_bad_limits_fails_before_any_container() -> None:
    with pytest.raises(sk.InvalidInput, match=r"memory_mb=1 must be an integer"):
        await sk.Sandbox.run("print(1)", limits={"memory_mb": 1})  # type: ignore[arg-type]


def test_other_models_explain_their_fields_the_same_way() -> None:
    with pytest.raises(sk.InvalidInput) as info:
        sk.TestCase(input=1, expected="x")  # type: ignore[arg-type]
    assert str(info.value) == "invalid TestCase: input=1 must be str or bytes"
    with pytest.raises(sk.InvalidInput, match=r"status='okk' must be 'ok', 'error'"):
        sk.RunResult(status="okk")  # type: ignore[arg-type]


# ---------------------------------------------------------------- sessions
@pytest.mark.docker
async def test_an_idle_reclaimed_session_says_why_and_what_to_set(
    pool: sk.SandboxPool,
) -> None:
    async with sk.Sandbox(pool=pool, idle_timeout=0.5) as sb:
        assert (await sb.run("print(1)")).stdout == "1\n"
        await asyncio.sleep(1.5)
        with pytest.raises(sk.SandboxError) as info:
            await sb.run("print(2)")
    text = str(info.value)
    assert "reclaimed after 0.5 s idle" in text
    assert "idle_timeout=" in text and "None" in text
    assert "async with" not in text  # the user is inside one
