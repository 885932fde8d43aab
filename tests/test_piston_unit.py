"""The Piston wing's pure parts, without Docker: npm-semver selectors, the names and
versions runtimes show, request checks with Piston's messages, files and limits, stage
results in Piston's shape, the rate limiter and the settings."""

from __future__ import annotations

import base64
from typing import Any

import pytest

import sandboxkit as sk
from sandboxkit.piston import PistonSettings
from sandboxkit.piston._catalogue import piston_name, semver_of
from sandboxkit.piston._job import JobError, parse_job, run_limits
from sandboxkit.piston._ratelimit import RateLimiter
from sandboxkit.piston._result import ending, response, split_compiler_output, stage
from sandboxkit.piston._runtimes import Runtime, find_runtime
from sandboxkit.piston._semver import Version, parse_version, satisfies


# ---------------------------------------------------------------- version selectors
@pytest.mark.parametrize(
    ("version", "selector", "expected"),
    [
        ("3.11.2", "3.11.2", True),
        ("3.11.2", "3.11.3", False),
        ("3.11.2", "*", True),
        ("3.11.2", "", True),
        ("3.11.2", "x", True),
        ("3.11.2", "3", True),
        ("3.11.2", "3.x", True),
        ("3.11.2", "3.11", True),
        ("3.11.2", "3.10.x", False),
        ("3.11.2", "v3.11.2", True),
        ("3.11.2", "=3.11.2", True),
        ("3.11.2", "^3.10", True),
        ("3.11.2", "^3.12", False),
        ("0.2.5", "^0.2.3", True),
        ("0.3.0", "^0.2.3", False),
        ("0.0.4", "^0.0.3", False),
        ("3.11.2", "~3.11.0", True),
        ("3.12.0", "~3.11.0", False),
        ("3.11.2", "~3", True),
        ("3.11.2", ">=3.8 <4", True),
        ("4.0.0", ">=3.8 <4", False),
        ("3.11.2", ">= 3.8", True),
        ("3.11.2", ">3.11", False),
        ("3.12.0", ">3.11", True),
        ("3.11.9", "<=3.11", True),
        ("3.12.0", "<=3.11", False),
        ("3.11.2", "<3.11", False),
        ("2.7.18", "2 || 3", True),
        ("3.11.2", "1.2.3 - 3.11", True),
        ("3.12.0", "1.2.3 - 3.11", False),
        ("3.11.2", "1.2.3 - 3.11.1", False),
        ("3.11.2", "not a version", False),
        ("3.11.2", ">*", False),
    ],
)
def test_selectors_match_as_npm_semver_does(version: str, selector: str, expected: bool) -> None:
    parsed = parse_version(version)
    assert parsed is not None
    assert satisfies(parsed, selector) is expected


def test_prereleases_match_only_selectors_naming_their_own_release() -> None:
    alpha = parse_version("3.10.0-alpha.7")
    assert alpha is not None
    assert satisfies(alpha, "3.10.0-alpha.7")
    assert satisfies(alpha, ">=3.10.0-alpha.1")
    assert not satisfies(alpha, "3.x")
    assert not satisfies(alpha, "*")
    assert parse_version("3.10.0-alpha.7") < parse_version("3.10.0-beta")  # type: ignore[operator]
    assert parse_version("3.10.0-rc.2") < parse_version("3.10.0")  # type: ignore[operator]
    assert parse_version("1.2.3-2") < parse_version("1.2.3-10")  # type: ignore[operator]
    assert parse_version("1.2") is None


# ---------------------------------------------------------------- names and versions
def test_languages_piston_has_show_its_names_with_ours_as_aliases() -> None:
    cpp = piston_name(sk.get_language("cpp"))
    assert (cpp.language, cpp.runtime) == ("c++", "gcc")
    assert cpp.aliases[:2] == ("cpp", "g++")
    assert piston_name(sk.get_language("javascript")).runtime == "node"
    assert piston_name(sk.get_language("r")).language == "rscript"
    assert piston_name(sk.get_language("assembly")).language == "nasm64"  # elf64, not nasm's 32
    assert "python3" in piston_name(sk.get_language("python")).aliases
    own = piston_name(sk.get_language("clang"))  # no Piston package: sandboxkit's name
    assert (own.language, own.runtime) == ("clang", None)


@pytest.mark.parametrize(
    ("line", "language", "expected"),
    [
        ("Python 3.11.2", "python", "3.11.2"),
        ("gcc (Debian 12.2.0-14) 12.2.0", "c", "12.2.0"),
        ("go version go1.19.8 linux/amd64", "go", "1.19.8"),
        ("GNU bash, version 5.2.15(1)-release (x86_64-pc-linux-gnu)", "bash", "5.2.15"),
        ("v18.20.4", "javascript", "18.20.4"),
        ("NASM version 2.16.01", "assembly", "2.16.1"),
        ("cat (GNU coreutils) 9.1", "plaintext", "9.1.0"),
        ("25", "erlang", "25.0.0"),
        ("x86_64", "executable", "0.0.0"),
        (
            "Erlang/OTP 25 [erts-13.1.5]\n\nElixir 1.14.0 (compiled with Erlang/OTP 25)",
            "elixir",
            "1.14.0",
        ),
    ],
)
def test_toolchain_lines_read_as_semver(line: str, language: str, expected: str) -> None:
    assert semver_of(line, language) == expected


def _runtime(language: str, version: str, *aliases: str, spec: str = "python") -> Runtime:
    parsed = parse_version(version)
    assert parsed is not None
    return Runtime(language, parsed, aliases, None, sk.get_language(spec))


def test_the_newest_runtime_matching_name_or_alias_and_selector_is_picked() -> None:
    runtimes = [
        _runtime("python", "3.11.2", "py"),
        _runtime("python", "3.12.1", "py"),
        _runtime("python2", "2.7.18", "py2"),
    ]
    assert find_runtime(runtimes, "py", "*") is runtimes[1]
    assert find_runtime(runtimes, "python", "3.11.x") is runtimes[0]
    assert find_runtime(runtimes, "py2", "2") is runtimes[2]
    assert find_runtime(runtimes, "py", "4") is None
    assert find_runtime(runtimes, "ruby", "*") is None


# ---------------------------------------------------------------- requests
RUNTIMES = [
    _runtime("python", "3.11.2", "py", "python3"),
    _runtime("c", "12.2.0", "gcc", spec="c"),
]
CFG = PistonSettings()


def _job(**body: Any) -> Any:
    request = {"language": "python", "version": "3", "files": [{"content": "print(1)"}]}
    return parse_job({**request, **body}, RUNTIMES, CFG)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"language": None}, "language is required as a string"),
        ({"language": 3}, "language is required as a string"),
        ({"version": ""}, "version is required as a string"),
        ({"files": "x"}, "files is required as an array"),
        ({"files": [{"name": "a"}]}, "files[0].content is required as a string"),
        ({"language": "html", "version": "5.0.0"}, "html-5.0.0 runtime is unknown"),
        ({"version": "2.x"}, "python-2.x runtime is unknown"),
        (
            {"files": [{"content": "AA==", "encoding": "base64"}]},
            "files must include at least one utf8 encoded file",
        ),
        ({"run_timeout": "5"}, "If specified, run_timeout must be a number"),
        ({"run_timeout": 3001}, "run_timeout cannot exceed the configured limit of 3000"),
        (
            {"compile_cpu_time": 10001},
            "compile_cpu_time cannot exceed the configured limit of 10000",
        ),
        ({"run_timeout": -5}, "run_timeout must be non-negative"),
        ({"files": [{"name": "../x.py", "content": ""}]}, 'File path "../x.py" tries to escape'),
        ({"args": [{"a": 1}]}, "args must be an array of strings"),
        ({"stdin": 5}, "stdin must be a string"),
    ],
)
def test_bad_requests_get_pistons_messages(body: dict[str, Any], message: str) -> None:
    with pytest.raises(JobError) as caught:
        _job(**body)
    assert caught.value.message.startswith(message)


def test_a_job_takes_the_first_utf8_file_as_its_program_and_the_rest_beside_it() -> None:
    job = _job(
        files=[
            {
                "name": "data.bin",
                "content": base64.b64encode(b"\x00\x01").decode(),
                "encoding": "base64",
            },
            {"name": "app.py", "content": "import helper"},
            {"name": "/lib/helper.py", "content": "X = 1"},
            {"content": "6869", "encoding": "hex"},
            {"name": "weird", "content": "as utf8", "encoding": "latin1"},
        ],
        stdin="5",
        args=["a", 2, 2.5],
    )
    assert job.code == "import helper"
    assert job.files == {
        "data.bin": b"\x00\x01",
        "lib/helper.py": b"X = 1",
        "file3.code": b"hi",
        "weird": b"as utf8",
    }
    assert job.stdin == "5\n"  # Piston ends stdin with a newline
    assert job.args == ("a", "2", "2.5")
    assert job.runtime is RUNTIMES[0]


def test_a_file_in_the_place_of_the_program_is_refused() -> None:
    with pytest.raises(JobError, match=r"main\.py"):
        _job(files=[{"name": "app.py", "content": ""}, {"name": "main.py", "content": ""}])


def test_base64_and_hex_read_as_node_reads_them() -> None:
    job = _job(
        files=[
            {"content": "print(1)"},
            {"name": "a", "content": "aGk", "encoding": "base64"},  # no padding
            {"name": "b", "content": "-_8", "encoding": "base64"},  # URL alphabet
            {"name": "c", "content": "6869zz41", "encoding": "hex"},  # stops at the bad pair
        ]
    )
    assert job.files == {"a": b"hi", "b": b"\xfb\xff", "c": b"hi"}


def test_limits_come_from_the_request_else_the_settings() -> None:
    default = _job().limits
    assert (default.time, default.cpu_time) == (3.0, 3.0)
    assert default.memory_mb == CFG.no_limit_memory_mb  # Piston's -1: no limit
    assert default.output_bytes == 1024 and default.pids == 64 and default.open_files == 2048
    assert default.file_size_mb == pytest.approx(10_000_000 / 1024 / 1024)
    asked = _job(run_timeout=1500, run_cpu_time=500, run_memory_limit=64_000_000).limits
    assert (asked.time, asked.cpu_time, asked.memory_mb) == (1.5, 0.5, 62)
    assert _job(run_memory_limit=1000).limits.memory_mb == 16  # a sandbox's least
    assert _job(run_memory_limit=-1, compile_memory_limit=-1).limits.memory_mb == 512
    live = run_limits({}, "python", CFG, live=True)
    assert live.output_bytes == sk.Limits().output_bytes


def test_overrides_and_caps_apply_per_language() -> None:
    cfg = PistonSettings(
        run_memory_limit=128 * 1024 * 1024,
        limit_overrides={"python": {"run_timeout": 5000, "max_process_count": 128}},
    )
    job = parse_job(
        {"language": "py", "version": "*", "files": [{"content": ""}], "run_timeout": 5000},
        RUNTIMES,
        cfg,
    )
    assert (job.limits.time, job.limits.pids, job.limits.memory_mb) == (5.0, 128, 128)
    with pytest.raises(JobError, match="must be non-negative"):  # a cap makes -1 a fault
        parse_job(
            {"language": "py", "version": "*", "files": [{"content": ""}], "run_memory_limit": -1},
            RUNTIMES,
            cfg,
        )
    with pytest.raises(ValueError, match="limit_overrides"):
        PistonSettings(limit_overrides={"c": {"run_time": 1}})


# ---------------------------------------------------------------- results
def _result(**fields: Any) -> sk.RunResult:
    return sk.RunResult(**{"status": "ok", "exit_code": 0, **fields})


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, (None, None, 0, None)),
        ({"status": "error", "exit_code": 3}, ("RE", "Exited with error status 3", 3, None)),
        (
            {"status": "error", "exit_code": None, "signal": 11},
            ("SG", "Caught fatal signal 11", None, "SIGSEGV"),
        ),
        (
            {"status": "timeout", "exit_code": None, "signal": 9, "ended_by": "wall_time"},
            ("TO", "Time limit exceeded (wall clock)", None, "SIGKILL"),
        ),
        (
            {"status": "timeout", "exit_code": None, "signal": 9, "ended_by": "cpu_time"},
            ("TO", "Time limit exceeded", None, "SIGKILL"),
        ),
        (
            {"status": "oom", "exit_code": None, "signal": 9, "ended_by": "memory"},
            ("SG", "Caught fatal signal 9", None, "SIGKILL"),
        ),
        (
            {"status": "output_limit", "truncated": True, "stdout_bytes": b"y" * 8},
            ("OL", "stdout length exceeded", None, "SIGKILL"),
        ),
        (
            {"truncated": True, "stderr_bytes": b"e" * 8},
            ("EL", "stderr length exceeded", None, "SIGKILL"),
        ),
        ({"status": "error", "exit_code": None}, ("XX", None, None, None)),
    ],
)
def test_endings_are_isolates_and_pistons(
    fields: dict[str, Any], expected: tuple[Any, ...]
) -> None:
    end = ending(_result(**fields), 8)
    got = (end.status, end.message, end.code, end.signal)
    if expected[0] == "XX":
        assert got[0] == "XX" and got[2:] == (None, None)
    else:
        assert got == expected


def test_a_stage_has_pistons_fields_in_its_order_and_units() -> None:
    shown = stage(
        _result(stdout="hi\n", stderr="warn\n", cpu_time=0.0123, duration=0.2, memory_mb=10.5),
        "warn\nhi\n",
        1024,
    )
    assert list(shown) == [
        "signal",
        "stdout",
        "stderr",
        "code",
        "output",
        "memory",
        "message",
        "status",
        "cpu_time",
        "wall_time",
    ]
    assert (shown["cpu_time"], shown["wall_time"], shown["memory"]) == (12, 200, 10752000)
    assert (shown["output"], shown["code"], shown["status"]) == ("warn\nhi\n", 0, None)


def test_compiler_warnings_are_told_from_the_programs_stderr() -> None:
    warn = sk.Event(kind="stderr", data="w\n", data_bytes=b"w\n")
    out = sk.Event(kind="stdout", data="o\n", data_bytes=b"o\n")
    err = sk.Event(kind="stderr", data="e\n", data_bytes=b"e\n")
    result = _result(stdout_bytes=b"o\n", stderr_bytes=b"e\n")
    assert split_compiler_output([warn, out, err], result) == ("w\n", [out, err])
    assert split_compiler_output([out, err], result) == ("", [out, err])  # no warnings
    silent = _result(stdout_bytes=b"o\n", stderr_bytes=b"")
    assert split_compiler_output([warn, out], silent) == ("w\n", [out])


def test_a_failed_compile_stands_for_the_run_and_keys_follow_pistons_order() -> None:
    failed = {"status": "RE"}
    body = response("c", "12.2.0", failed, failed)
    assert list(body) == ["compile", "run", "language", "version"]
    assert body["run"] is body["compile"]
    assert list(response("python", "3.11.2", {}, None)) == ["run", "language", "version"]


# ---------------------------------------------------------------- rate limit, settings
def test_the_rate_limit_admits_one_request_per_interval_per_client() -> None:
    limiter = RateLimiter(200)
    assert limiter.message == "Requests limited to 1 per 200ms"
    assert limiter.admit("a", 10.0)
    assert not limiter.admit("a", 10.1)
    assert limiter.admit("b", 10.1)  # another client
    assert not limiter.admit("a", 10.19)  # a refusal does not push the slot back
    assert limiter.admit("a", 10.25)


def test_settings_keep_pistons_names_and_defaults() -> None:
    cfg = PistonSettings()
    assert (cfg.run_timeout, cfg.compile_timeout, cfg.run_cpu_time) == (3000, 10000, 3000)
    assert (cfg.run_memory_limit, cfg.output_max_size, cfg.max_concurrent_jobs) == (-1, 1024, 64)
    assert cfg.limit("c++", "run_timeout") == 3000
    with pytest.raises(ValueError, match="extra"):
        PistonSettings(run_timout=1)  # type: ignore[call-arg]
    assert Version(1, 2, 3) == parse_version("1.2.3")
