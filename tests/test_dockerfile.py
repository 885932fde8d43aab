"""Dockerfile generation (pure, golden files) and image builds (real Docker).

Regenerate the golden files after an intended change with::

    SANDBOXKIT_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_dockerfile.py
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import images_of, scratch_language

from sandboxkit import ImageError
from sandboxkit._backends import Backend, connect
from sandboxkit._backends.docker import create_body
from sandboxkit._container import Resources, Shape, container_spec
from sandboxkit._images.dockerfile import CA_FILE, build_context, render
from sandboxkit._images.ensure import build_ca_bundle, context_for, ensure_image
from sandboxkit._languages import BASH, BUILTIN, PYTHON, LanguageSpec, get_language, language_env
from sandboxkit._layout import mount_points

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("SANDBOXKIT_UPDATE_GOLDEN", "") not in ("", "0")


# ---------------------------------------------------------------- pure: golden files
@pytest.mark.parametrize("spec", BUILTIN, ids=[s.name for s in BUILTIN])
def test_golden_dockerfile(spec: LanguageSpec) -> None:
    path = GOLDEN / f"{spec.name}.Dockerfile"
    text = render(spec)
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path.name}: run with SANDBOXKIT_UPDATE_GOLDEN=1"
    assert text == path.read_text(), (
        f"{spec.name}'s Dockerfile changed; if intended, rerun with SANDBOXKIT_UPDATE_GOLDEN=1"
    )


def test_golden_files_match_builtins() -> None:
    names = {p.name.removesuffix(".Dockerfile") for p in GOLDEN.glob("*.Dockerfile")}
    assert names == {s.name for s in BUILTIN}
    assert len(BUILTIN) == 10


@pytest.mark.parametrize(
    "spec",
    [PYTHON, get_language("c"), PYTHON.extend("homed", env={"HOME": "/home/user"})],
    ids=["python", "c", "a home of its own"],
)
def test_the_image_holds_every_place_the_engine_mounts_on(spec: LanguageSpec) -> None:
    """A mount point missing from the read-only image is made in the container's own
    layer as it starts, and the blocks that touches pin its memory cgroup after it is
    gone (sandboxkit/_layout.py): the image has made every one."""
    shape = Shape(image="i")
    body = create_body(
        container_spec(shape, Resources(), {}, language_env(spec), "n", "/tmp/d/x.sock")
    )
    host = body["HostConfig"]
    dirs, files = mount_points(language_env(spec))
    assert set(host["Tmpfs"]) == set(dirs)
    assert {m["Target"] for m in host["Mounts"]} == set(files)
    made = render(spec)
    for place in (*dirs, *files):
        assert f" {place} " in made.replace("\\\n", " ")


def test_render_is_deterministic_and_tag_is_content_hash() -> None:
    for spec in BUILTIN:
        a, b = build_context(spec), build_context(spec)
        assert a == b
        assert a.tag.startswith(f"sandboxkit/{spec.name}:")
    tags = {build_context(s).tag for s in BUILTIN}
    assert len(tags) == len(BUILTIN)


def test_tag_changes_with_the_spec_and_the_copied_files() -> None:
    base = build_context(BASH)
    assert build_context(BASH.extend("bash", packages=("jq",))).tag != base.tag
    assert build_context(BASH.extend("bash", setup=("true",))).tag != base.tag
    # the run command is not in the image: changing it must not force a rebuild
    assert build_context(BASH.model_copy(update={"run": ("sh", "main.sh")})).tag == base.tag
    # a copied file is part of the hash
    pip_spec = PYTHON.extend("python-attrs", pip_packages=("attrs",))
    with_a = build_context(pip_spec, ca_bundle=b"A")
    assert with_a.tag != build_context(pip_spec, ca_bundle=b"B").tag


def test_every_builtin_installs_packages_and_records_its_version() -> None:
    for spec in BUILTIN:
        text = render(spec)
        assert spec.version_command is not None
        for package in spec.packages:
            assert f" {package}" in text
        assert "/opt/sandboxkit/version" in text
        assert "COPY agent/ /opt/sandboxkit/" in text


def test_ca_bundle_only_for_pip_and_only_in_the_builder_stage() -> None:
    plain = build_context(BASH, ca_bundle=b"PEM")
    assert CA_FILE not in plain.files and CA_FILE not in plain.dockerfile
    assert plain.tag == build_context(BASH).tag

    spec = PYTHON.extend("python-attrs", pip_packages=("attrs",))
    ctx = build_context(spec, ca_bundle=b"PEM")
    assert ctx.files[CA_FILE] == b"PEM"
    final_stage = ctx.dockerfile.rsplit("\nFROM ", 1)[1]
    assert CA_FILE not in final_stage and "PIP_CERT" not in final_stage
    assert "COPY --from=pip /opt/pip-root/ /" in final_stage
    without = build_context(spec)
    assert CA_FILE not in without.files and CA_FILE not in without.dockerfile


def test_build_ca_bundle_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pem = tmp_path / "ca.pem"
    pem.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("SANDBOXKIT_BUILD_CA", str(pem))
    assert build_ca_bundle() == pem.read_bytes()
    monkeypatch.setenv("SANDBOXKIT_BUILD_CA", "none")
    assert build_ca_bundle() is None
    monkeypatch.setenv("SANDBOXKIT_BUILD_CA", str(tmp_path / "missing.pem"))
    with pytest.raises(ImageError, match="SANDBOXKIT_BUILD_CA"):
        build_ca_bundle()
    monkeypatch.delenv("SANDBOXKIT_BUILD_CA")
    monkeypatch.setenv("PIP_CERT", str(pem))
    assert build_ca_bundle() == pem.read_bytes()


def test_extend_appends_packages_and_keeps_the_rest() -> None:
    spec = PYTHON.extend("python-numpy", packages=("python3-numpy",))
    assert spec.packages == ("python3", "python3-numpy")
    assert spec.run == PYTHON.run and spec.aliases == ()


# ---------------------------------------------------------------- real Docker builds
@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[Backend]:
    e = connect()
    yield e
    await e.close()


def _image(tag: str) -> dict[str, str]:
    out = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}} {{.Created}}", tag],
        capture_output=True,
        text=True,
        check=True,
    )
    image_id, created = out.stdout.split()
    return {"id": image_id, "created": created}


def _remove(tag: str) -> None:
    subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, check=False)


@pytest.mark.docker
async def test_unchanged_spec_is_not_rebuilt(engine: Backend) -> None:
    tag = await ensure_image(engine, BASH)
    before = _image(tag)
    lines: list[str] = []
    assert await ensure_image(engine, BASH, lines.append) == tag
    assert lines == []  # no build ran
    assert _image(tag) == before


@pytest.mark.docker
async def test_concurrent_requests_build_once(engine: Backend) -> None:
    marker = secrets.token_hex(4)
    spec = BASH.extend(f"bash-once-{marker}", setup=(f"echo built-{marker}",))
    logs: list[list[str]] = [[] for _ in range(4)]
    tag = context_for(spec).tag
    try:
        tags = await asyncio.gather(*(ensure_image(engine, spec, log.append) for log in logs))
        assert set(tags) == {tag}
        builds = [log for log in logs if any(f"built-{marker}" in line for line in log)]
        assert len(builds) == 1  # one caller saw the build; the others waited for it
        assert sum("Successfully built" in line for log in logs for line in log) == 1
    finally:
        _remove(tag)


@pytest.mark.docker
async def test_failed_build_raises_with_the_log_tail(engine: Backend) -> None:
    spec = BASH.extend("bash-broken", packages=("sandboxkit-no-such-package",))
    with pytest.raises(ImageError) as info:
        await ensure_image(engine, spec)
    assert "sandboxkit-no-such-package" in info.value.log_tail
    assert "Unable to locate package" in info.value.log_tail
    assert "build log" in str(info.value) and "build again" in str(info.value)
    assert not await engine.image_exists(context_for(spec).tag)


@pytest.mark.docker
async def test_pip_package_with_the_hosts_ca_bundle(engine: Backend) -> None:
    """pip inside the build trusts the host's CA (a TLS-intercepting proxy here); the CA
    is not in any layer of the final image."""
    import sandboxkit as sk

    with scratch_language(PYTHON.extend("python-attrs", pip_packages=("attrs",))) as spec:
        tag = await ensure_image(engine, spec)
        history = subprocess.run(
            ["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", tag],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert CA_FILE not in history and "PIP_CERT" not in history
        async with sk.SandboxPool(languages=[], size=0) as pool:
            r = await pool.run("import attrs; print(attrs.__name__)", language="python-attrs")
        assert (r.status, r.stdout) == ("ok", "attrs\n"), r.stderr
    assert images_of("python-attrs") == []  # nothing left for `sandboxkit images list`


# ---------------------------------------------------------------- the CLI
@pytest.mark.docker
def test_cli_images_build_list_and_unknown_language() -> None:
    from typer.testing import CliRunner

    from sandboxkit.cli import app

    runner = CliRunner()
    built = runner.invoke(app, ["images", "build", "bash"])
    assert built.exit_code == 0, built.output
    tag = build_context(BASH).tag
    assert f"ready {tag}" in built.output
    listed = runner.invoke(app, ["images", "list"])
    assert listed.exit_code == 0 and tag in listed.output
    unknown = runner.invoke(app, ["images", "build", "no-such-language"])
    assert unknown.exit_code == 2 and "unknown language" in unknown.output
