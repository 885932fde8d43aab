"""The toolchain's recorded lookups (agent/_lookups.py): the recording under ptrace on
this host, the agent's warmer, and an image built with them (real Docker)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from sandboxkit._backends import connect
from sandboxkit._images.dockerfile import LOOKUPS_PATH, render
from sandboxkit._images.ensure import ensure_image
from sandboxkit._languages import BUILTIN, get_language
from sandboxkit._languages.judge0 import EXTRA
from sandboxkit.agent import _lookups


def test_keep_takes_absolute_paths_outside_what_every_sandbox_has_anew() -> None:
    assert _lookups.keep("/usr/include/stdio.h")
    assert _lookups.keep("/usr/lib/gcc/x86_64-linux-gnu/12/include/no-such.h")
    assert _lookups.keep("/tmpfoo/x")  # a sibling of /tmp, not inside it
    for path in ("main.c", "/tmp", "/tmp/cc1.s", "/work/main.c", "/proc/self/exe", "/dev/null"):
        assert not _lookups.keep(path), path
    assert not _lookups.keep("/sys/fs/cgroup/x")
    assert not _lookups.keep("/a\nb")  # would split the list's lines


def test_the_recording_follows_children_and_passes_signals_on(tmp_path: Path) -> None:
    trap = tmp_path / "trap-ran"  # under the test's own directory, not /tmp's skip
    script = (
        f"cat /etc/hostname > /dev/null; ls /no/such/sandboxkit-lookup 2>/dev/null;"
        f" cat /tmp/sandboxkit-skipped 2>/dev/null;"
        f" trap 'touch {trap}' USR1; kill -USR1 $$; exit 0"
    )
    found, status = _lookups.record(["sh", "-c", script])
    assert os.waitstatus_to_exitcode(status) == 0
    assert "/etc/hostname" in found  # opened by a child (cat)
    assert "/no/such/sandboxkit-lookup" in found  # a lookup that found nothing counts too
    assert not any(p.startswith("/tmp/") and "sandboxkit-skipped" in p for p in found)
    assert "/usr/bin/cat" in found or "/bin/cat" in found  # the exec's own path search
    assert trap.exists(), "the program's own signal was swallowed by the tracer"


def test_record_writes_the_list_and_main_checks_its_usage(tmp_path: Path) -> None:
    out = tmp_path / "lookups"
    assert _lookups.main(["record", str(out), "--", "ls", "/no/such/sandboxkit-dir"]) == 0
    lines = out.read_text().splitlines()
    assert "/no/such/sandboxkit-dir" in lines
    assert lines == sorted(set(lines))
    assert _lookups.main(["record", str(out)]) == 2
    assert _lookups.main(["nothing"]) == 2


def test_the_warmer_looks_up_a_few_at_a_time_until_a_job_comes(tmp_path: Path) -> None:
    listed = tmp_path / "lookups"
    listed.write_text("".join(f"/no/such/{i}\n" for i in range(_lookups.STEP * 2 + 3)))
    warmer = _lookups.Warmer(str(listed))
    assert warmer.pending()
    warmer.step()
    assert len(warmer.paths) == _lookups.STEP + 3
    assert warmer.paths[-1] == f"/no/such/{_lookups.STEP}"  # in the order recorded
    warmer.stop()
    assert not warmer.pending()
    warmer.step()  # nothing left: a no-op
    assert not _lookups.Warmer(str(tmp_path / "absent")).pending()


def test_sampled_languages_record_their_sample_compiled_and_run() -> None:
    for spec in (*BUILTIN, *EXTRA):
        text = render(spec)
        if spec.sample is None:
            assert "record" not in text, spec.name
            continue
        step = text[text.index(f"record {LOOKUPS_PATH} -- ") :].split("\n")[1]
        script = shlex.split(step.removesuffix("\\"))[2]  # sh -c SCRIPT < /dev/null
        commands = [spec.run] if spec.compile is None else [spec.compile, spec.run]
        assert script == " && ".join(shlex.join(c) for c in commands), spec.name
    assert {s.name for s in BUILTIN if s.sample} == {"c", "cpp", "go", "rust"}
    assert sum(spec.sample is not None for spec in EXTRA if spec.compile) >= 10
    # interpreters whose start looks up hundreds of names record a run
    assert {"php", "python2", "elixir", "octave"} <= {s.name for s in EXTRA if s.sample}


# what each image's list must hold: the compiler and its headers (c), and for an
# interpreter, what its start reads (php: its ini file and the time zone database)
EXPECTED = {
    "c": ("/usr/bin/gcc", "/stdio.h", "/cc1"),
    "php": ("/usr/bin/php", "/php.ini", "/usr/share/zoneinfo/UTC"),
}


@pytest.mark.docker
@pytest.mark.parametrize("language", sorted(EXPECTED))
async def test_an_image_carries_its_toolchains_lookups(language: str) -> None:
    engine = connect()
    try:
        tag = await ensure_image(engine, get_language(language))
    finally:
        await engine.close()
    listed = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", tag, "-c",
         f"cat {LOOKUPS_PATH}; echo; echo tmp: $(ls -A /tmp)"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    paths = set(listed.split())
    for wanted in EXPECTED[language]:
        assert any(p == wanted or p.endswith(wanted) for p in paths), wanted
    assert not any(p.startswith(("/tmp/", "/work/")) for p in paths)
    assert listed.rstrip().endswith("tmp:"), "the sample's compile or run left files in /tmp"
