"""The Judge0 layer's pure parts, without Docker: the language table, field validation
with Judge0 CE 1.13.1's ranges and messages, the comparison, serialization, the zip."""

from __future__ import annotations

import asyncio
import base64
import io
import math
import re
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sandboxkit._images.dockerfile import render
from sandboxkit._judge.models import JudgeReport, TestResult
from sandboxkit._languages import REGISTRY, get_language
from sandboxkit._languages.judge0 import EXTRA, OBJECTIVE_C
from sandboxkit.server import Settings, create_app
from sandboxkit.server._judge0 import ALL_FIELDS, CONFIG, LANGUAGES, UNAVAILABLE
from sandboxkit.server._judging import _limits, project_program
from sandboxkit.server._render import NotUtf8, serialize
from sandboxkit.server._requests import (
    archived_languages,
    available_languages,
    parse_submission,
    unzip_files,
)
from sandboxkit.server._submission import Outcome, Submission
from sandboxkit.server._verdict import judge0_equal, outcome_of
from sandboxkit.server.routes._common import requested_fields
from sandboxkit.server.routes.health import pg_size_pretty, statistics_document
from sandboxkit.server.routes.submissions import ruby_to_i

# Judge0 CE 1.13.1's 47 active language ids
JUDGE0_IDS = {*range(43, 90)}


def parse(body: dict[str, Any], *, b64: bool = False, network: bool = False) -> Any:
    return parse_submission(
        body, b64=b64, max_source_bytes=1 << 20, max_io_bytes=1 << 20, allow_network=network
    )


def ok(**fields: Any) -> Submission:
    record, errors = parse({"source_code": "print(1)", "language_id": 71, **fields})
    assert record is not None, errors
    return record


def errors_of(**fields: Any) -> dict[str, list[str]]:
    body = {"source_code": "print(1)", "language_id": 71, **fields}
    record, errors = parse(body)
    assert record is None
    return dict(errors)


# ---------------------------------------------------------------- languages
def test_every_judge0_id_is_offered_or_archived_with_a_reason() -> None:
    assert set(LANGUAGES) | set(UNAVAILABLE) == JUDGE0_IDS
    assert not set(LANGUAGES) & set(UNAVAILABLE)
    assert set(available_languages()) == set(LANGUAGES)
    assert set(archived_languages()) == set(UNAVAILABLE)
    for name, why in UNAVAILABLE.values():
        assert name and len(why) > 10


def test_every_offered_id_names_a_registered_spec_and_a_version() -> None:
    for lid, (language, name) in LANGUAGES.items():
        spec = get_language(language)
        assert spec.name == language
        if lid not in (43, 44, 89):  # Judge0's own names carry no version
            assert re.search(r"\(.*\d+(\.\d+)*.*\)$", name), name


def test_extra_languages_are_registered_and_sdk_reachable_by_alias() -> None:
    names = set(REGISTRY.names())
    assert {s.name for s in EXTRA} <= names
    assert get_language("clang++").name == "clang-cpp"
    assert get_language("c#").name == "csharp"
    assert get_language("objc").name == "objective-c"


def test_jvm_and_gcc_languages_share_the_runtime_layer() -> None:
    java_first = render(get_language("java")).split("RUN ")[1]
    c_first = render(get_language("c")).split("RUN ")[1]
    for name in ("kotlin", "scala", "groovy", "clojure"):
        assert render(get_language(name)).split("RUN ")[1] == java_first
    for name in ("fortran", "d", "cobol", "prolog", "multifile"):
        assert render(get_language(name)).split("RUN ")[1] == c_first
    clang_first = render(get_language("clang")).split("RUN ")[1]
    assert render(OBJECTIVE_C).split("RUN ")[1] == clang_first


def test_compile_options_go_where_the_spec_says() -> None:
    c = get_language("c").with_compile_options(("-DX=1", "-Wall"))
    assert c.compile is not None and c.compile[:3] == ("gcc", "-DX=1", "-Wall")
    asm = get_language("assembly").with_compile_options(("-g",))
    assert asm.compile is not None and asm.compile[-1] == "-g"  # "$@" of the sh wrapper
    assert get_language("python").with_compile_options(("-O",)).compile is None


# ---------------------------------------------------------------- field validation
def test_defaults_are_judge0_defaults() -> None:
    record = ok()
    for field in ("cpu_time_limit", "wall_time_limit", "memory_limit", "stack_limit"):
        assert getattr(record, field) == CONFIG[field]
    assert record.number_of_runs == 1
    assert record.enable_network is False


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("memory_limit", 2047, "must be greater than or equal to 2048"),
        ("memory_limit", 512001, "must be less than or equal to 512000"),
        ("wall_time_limit", 0.5, "must be greater than or equal to 1"),
        ("cpu_time_limit", 15.5, "must be less than or equal to 15.0"),
        ("cpu_extra_time", -1, "must be greater than or equal to 0"),
        ("stack_limit", 128001, "must be less than or equal to 128000"),
        ("max_processes_and_or_threads", 0, "must be greater than or equal to 1"),
        ("max_file_size", 4097, "must be less than or equal to 4096"),
        ("number_of_runs", 0, "must be greater than or equal to 1"),
        ("number_of_runs", 21, "must be less than or equal to 20"),
        ("memory_limit", "lots", "is not a number"),
    ],
)
def test_numeric_ranges(field: str, value: object, message: str) -> None:
    assert errors_of(**{field: value})[field] == [message]


def test_numeric_edges_are_accepted() -> None:
    record = ok(memory_limit=2048, wall_time_limit=1, cpu_time_limit=0.1, stack_limit=1)
    assert record.memory_limit == 2048 and record.cpu_time_limit == 0.1


def test_compiler_options_only_for_compiled_languages() -> None:
    record, _errors = parse(
        {"source_code": "int main(){}", "language_id": 50, "compiler_options": "-O0 -DX='a b'"}
    )
    assert record is not None and record.compiler_options == "-O0 -DX='a b'"
    assert errors_of(compiler_options="-O")["compiler_options"] == [
        "setting compiler options is only allowed for compiled languages"
    ]
    assert "too long" in errors_of(compiler_options="x" * 513)["compiler_options"][0]
    unbalanced = {"source_code": "int main(){}", "language_id": 50, "compiler_options": "'open"}
    assert "compiler_options" in parse(unbalanced)[1]


def test_command_line_arguments() -> None:
    assert ok(command_line_arguments="a 'b c'").command_line_arguments == "a 'b c'"
    assert "too long" in errors_of(command_line_arguments="x" * 513)["command_line_arguments"][0]


def test_callback_url_must_be_http() -> None:
    assert ok(callback_url="http://127.0.0.1:9/cb").callback_url == "http://127.0.0.1:9/cb"
    assert errors_of(callback_url="ftp://x/y")["callback_url"] == ["is not a valid url"]
    assert errors_of(callback_url="not a url")["callback_url"] == ["is not a valid url"]


def test_enable_network_needs_the_server_flag() -> None:
    assert errors_of(enable_network=True)["enable_network"] == ["enabling network is not allowed"]
    record, _ = parse({"source_code": "1", "language_id": 71, "enable_network": True}, network=True)
    assert record is not None and record.enable_network is True


def test_per_process_flags_are_accepted() -> None:
    record = ok(
        enable_per_process_and_thread_time_limit=True,
        enable_per_process_and_thread_memory_limit="true",
    )
    assert record.enable_per_process_and_thread_time_limit is True
    assert record.enable_per_process_and_thread_memory_limit is True
    assert errors_of(redirect_stderr_to_stdout="maybe")["redirect_stderr_to_stdout"]


def _zip(files: dict[str, bytes]) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return base64.b64encode(buf.getvalue()).decode()


def test_additional_files_are_a_base64_zip() -> None:
    record = ok(additional_files=_zip({"data.txt": b"1 2\n"}))
    assert record.additional_files is not None
    assert unzip_files(base64.b64decode(record.additional_files), 1 << 20) == {"data.txt": b"1 2\n"}
    assert errors_of(additional_files="!!!")["additional_files"] == ["is not valid base64"]
    not_zip = base64.b64encode(b"plain").decode()
    assert "not a valid zip" in errors_of(additional_files=not_zip)["additional_files"][0]
    escape = _zip({"../evil": b"x"})
    assert "outside" in errors_of(additional_files=escape)["additional_files"][0]


def test_multi_file_program_needs_files_not_source() -> None:
    # Judge0's model: absence of source_code and presence of additional_files
    files = _zip({"run": b"echo hi"})
    record, errors = parse({"language_id": 89, "additional_files": files})
    assert record is not None, errors
    record, errors = parse({"language_id": 89, "additional_files": files, "source_code": " \n"})
    assert record is not None and record.source_code is None, errors
    record, errors = parse({"language_id": 89, "additional_files": files, "source_code": "x"})
    assert record is None and errors == {"source_code": ["must be blank"]}
    encoded = base64.b64encode(b"echo hi").decode()
    body = {"language_id": 89, "additional_files": files, "source_code": encoded}
    assert parse(body, b64=True)[1] == {"source_code": ["must be blank"]}
    record, errors = parse({"language_id": 89})
    assert record is None and errors == {"additional_files": ["can't be blank"]}


def test_multi_file_program_scripts_as_isolate_job_finds_them() -> None:
    spec = get_language("multifile")
    files = {"compile": b"c", "compile.sh": b"c.sh", "run": b"r", "run.sh": b"r.sh", "a.c": b""}
    program = project_program(spec, files)
    assert program is not None
    project, source, rest = program
    assert project.compile == ("/bin/bash", "compile.sh")
    assert project.run == ("/bin/bash", "run.sh")
    assert (project.source_file, source) == ("run.sh", "r.sh")
    assert rest == {"compile": b"c", "compile.sh": b"c.sh", "run": b"r", "a.c": b""}
    program = project_program(spec, {"compile": b"make", "run": b"./a"})
    assert program is not None and program[0].compile == ("/bin/bash", "compile")
    assert program[0].run == ("/bin/bash", "run") and program[1] == "./a"
    # no run script: bash is asked for run.sh (the compile script may write it)
    program = project_program(spec, {"compile": b"echo ./a > run.sh"})
    assert program is not None and program[0].run == ("/bin/bash", "run.sh")
    assert program[0].source_file == "compile" and program[2] == {}
    program = project_program(spec, {"src/a.c": b"", "data.txt": b"1"})
    assert program is not None and program[0].compile is None
    assert (program[0].source_file, program[1], program[2]) == ("data.txt", "1", {"src/a.c": b""})
    assert project_program(spec, {"src/a.c": b""}) is None


def test_archived_and_unknown_language_ids() -> None:
    assert errors_of(language_id=47)["language_id"] == [
        "language with id 47 is archived and cannot be used anymore"
    ]
    assert errors_of(language_id=9999)["language_id"] == ["language with id 9999 doesn't exist"]


def test_base64_fields_keep_exact_bytes() -> None:
    raw = bytes([0xFE, 0xFF, 0x00, 0x80])
    body = {
        "source_code": base64.b64encode(b"print(1)").decode(),
        "language_id": 71,
        "expected_output": base64.b64encode(raw).decode(),
    }
    record, errors = parse(body, b64=True)
    assert record is not None, errors
    assert record.expected_output is not None
    assert record.expected_output.encode("utf-8", "surrogateescape") == raw


# ---------------------------------------------------------------- limits and results
def test_limits_follow_judge0_units() -> None:
    limits = _limits(
        ok(cpu_time_limit=0.5, cpu_extra_time=0.25, max_file_size=100, stack_limit=64000)
    )
    assert limits.cpu_time == 0.75
    assert limits.file_size_mb == pytest.approx(100 / 1024)
    assert limits.output_bytes == 100 * 1024
    assert limits.stack_mb == 63


def test_per_process_limits_follow_isolate_job() -> None:
    # isolate's -m (RLIMIT_AS) on each process, no group limit: the sandbox keeps Judge0's
    # max_memory_limit as its bound
    limits = _limits(ok(memory_limit=64000, enable_per_process_and_thread_memory_limit=True))
    assert limits.process_memory_mb == 62.5
    assert limits.memory_mb == math.ceil(CONFIG["max_memory_limit"] / 1024)
    plain = _limits(ok(memory_limit=64000))
    assert plain.process_memory_mb is None and plain.memory_mb == 63
    # --time without cgroup timing: each process's CPU; the run as a whole has its wall limit
    limits = _limits(ok(cpu_time_limit=2, enable_per_process_and_thread_time_limit=True))
    assert limits.process_cpu_time == 2 and limits.cpu_time is None
    assert plain.process_cpu_time is None and plain.cpu_time == 6
    # isolate's -t 0 is no CPU limit at all
    assert _limits(ok(cpu_time_limit=0)).cpu_time is None


def _one_run(verdict: str, time: float, signal: int | None = None) -> JudgeReport:
    test = TestResult(index=0, verdict=verdict, time=time, wall=time, signal=signal)  # type: ignore[arg-type]
    return JudgeReport(verdict=test.verdict, tests=(test,), language="c", total_tests=1)


def test_per_process_time_is_not_the_total() -> None:
    each = ok(cpu_time_limit=1, enable_per_process_and_thread_time_limit=True)
    together = ok(cpu_time_limit=1)
    assert outcome_of(_one_run("AC", 2.1), each).status_id == 3
    assert outcome_of(_one_run("AC", 2.1), together).status_id == 5
    # a process killed at its RLIMIT_CPU (whole seconds), its rusage short of it
    assert outcome_of(_one_run("RE", 0.84, 9), each).status_id == 5
    assert outcome_of(_one_run("RE", 0.2, 9), each).status_id == 12
    assert outcome_of(_one_run("AC", 30.0), ok(cpu_time_limit=0)).status_id == 3


def test_judge0_comparison() -> None:
    assert judge0_equal(b"3\n", b"3")
    assert judge0_equal(b"a  \nb\n\n", b"a\nb")
    assert not judge0_equal(b"a b", b"a  b")
    assert judge0_equal(bytes([0xFE, 0xFF, 0x80]), bytes([0xFE, 0xFF, 0x80, 0x0A]))
    assert not judge0_equal(bytes([0xFE, 0xFF]), bytes([0xFE, 0xFE]))


def _report(*runs: tuple[str, float, float, bytes]) -> JudgeReport:
    tests = tuple(
        TestResult(index=i, verdict=v, time=t, wall=t, memory_mb=m, exit_code=0, stdout_bytes=o)  # type: ignore[arg-type]
        for i, (v, t, m, o) in enumerate(runs)
    )
    return JudgeReport(verdict="AC", tests=tests, language="python", total_tests=len(tests))


def test_number_of_runs_average_time_and_memory() -> None:
    record = ok(expected_output="x")
    out = outcome_of(_report(("AC", 0.1, 10.0, b"x\n"), ("AC", 0.3, 20.0, b"x\n")), record)
    assert out.status_id == 3
    assert out.time == pytest.approx(0.2)
    assert out.memory == 15 * 1024


def test_wrong_answer_on_bytes() -> None:
    record = ok(expected_output="x")
    assert outcome_of(_report(("AC", 0.1, 1.0, b"y\n")), record).status_id == 4


def test_fields_parameter() -> None:
    class R:
        def __init__(self, fields: str) -> None:
            self.query_params = {"fields": fields}

    assert requested_fields(R("status_id,language_id")) == ("status_id", "language_id")  # type: ignore[arg-type]
    assert requested_fields(R("*")) == ALL_FIELDS  # type: ignore[arg-type]
    assert {"status_id", "language_id", "status", "language"} <= set(ALL_FIELDS)


def test_plain_text_of_non_utf8_output_is_refused() -> None:
    record = replace(ok(), stdout=bytes([0xFE, 0xFF]).decode("utf-8", "surrogateescape"))
    with pytest.raises(NotUtf8):
        serialize(record, ("stdout",), False)
    assert serialize(record, ("stdout",), True)["stdout"] == base64.b64encode(b"\xfe\xff").decode()


def test_a_kill_past_the_cpu_limit_is_a_time_limit() -> None:
    record = ok(cpu_time_limit=0.5)
    killed = JudgeReport(
        verdict="RE",
        tests=(TestResult(index=0, verdict="RE", time=0.8, wall=1.0, signal=9),),
        language="python",
        total_tests=1,
    )
    assert outcome_of(killed, record).status_id == 5
    early = killed.model_copy(
        update={"tests": (TestResult(index=0, verdict="RE", time=0.1, wall=0.2, signal=9),)}
    )
    assert outcome_of(early, record).status_id == 12


# ---------------------------------------------------------------- the stored record
def test_a_submission_is_stored_as_earlier_releases_stored_it() -> None:
    """The store's JSON keeps its keys, their order and the values' types, so nodes of
    either release read each other's rows (and a row written now has the same bytes)."""
    record = replace(ok(stdin="1"), token="t", created_at="2026-12-01T10:00:00.000Z")
    assert record.dumps() == (
        '{"cpu_time_limit": 5.0, "cpu_extra_time": 1.0, "wall_time_limit": 10.0, '
        '"memory_limit": 128000, "stack_limit": 64000, "max_processes_and_or_threads": 60, '
        '"max_file_size": 1024, "number_of_runs": 1, '
        '"enable_per_process_and_thread_time_limit": false, '
        '"enable_per_process_and_thread_memory_limit": false, '
        '"redirect_stderr_to_stdout": false, "enable_network": false, '
        '"compiler_options": null, "command_line_arguments": null, "callback_url": null, '
        '"additional_files": null, "token": "t", "source_code": "print(1)", '
        '"language_id": 71, "stdin": "1", "expected_output": null, "status_id": 1, '
        '"created_at": "2026-12-01T10:00:00.000Z", "finished_at": null, "stdout": null, '
        '"stderr": null, "compile_output": null, "message": null, "exit_code": null, '
        '"exit_signal": null, "time": null, "wall_time": null, "memory": null}'
    )
    done = record.finished(Outcome(status_id=3, stdout="1\n", time=0.01, memory=9000))
    assert Submission.loads(done.dumps(), 3) == done


def test_the_status_column_wins_and_unknown_attributes_are_left_out() -> None:
    record = ok()
    stored = record.dumps()[:-1] + ', "added_later": 1}'
    assert Submission.loads(stored, 2) == replace(record, status_id=2)


# ---------------------------------------------------------------- routes, without workers
@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    """The application over a SQLite store, its lifespan not run: nothing judges, so
    what the routes store stays In Queue."""
    settings = Settings(
        db=str(tmp_path / "s.sqlite3"),
        auth_token="t",
        authz_token="u",
        enable_submission_delete=True,
    )
    app = create_app(settings)
    try:
        yield TestClient(app, headers={"X-Auth-Token": "t"})
    finally:
        asyncio.run(app.state.service.store.close())


def test_routes_read_the_catalogue_and_store_submissions(api: TestClient) -> None:
    assert api.get("/languages/71").json()["source_file"] == "main.py"
    assert api.get("/config_info").json()["max_queue_size"] == CONFIG["max_queue_size"]
    token = api.post("/submissions", json={"source_code": "print(1)", "language_id": 71}).json()
    shown = api.get(f"/submissions/{token['token']}?fields=status,language").json()
    assert shown == {
        "status": {"id": 1, "description": "In Queue"},
        "language": {"id": 71, "name": "Python (3.11.2)"},
    }
    batch = [{"source_code": "print(2)", "language_id": 71}, {"language_id": 71}]
    answer = api.post("/submissions/batch", json={"submissions": batch}).json()
    assert answer[1] == {"source_code": ["can't be blank"]}
    got = api.get(f"/submissions/batch?tokens={answer[0]['token']},nope&fields=stdin").json()
    assert got == {"submissions": [{"stdin": None}, None]}


def test_routes_check_tokens_and_refuse_deleting_queued_work(api: TestClient) -> None:
    assert api.get("/about", headers={"X-Auth-Token": "wrong"}).status_code == 401
    assert api.post("/authorize").status_code == 403
    assert api.post("/authorize", headers={"X-Auth-User": "u"}).status_code == 200
    token = api.post("/submissions", json={"source_code": "1", "language_id": 71}).json()["token"]
    assert api.get("/submissions").status_code == 403  # listing needs the authz token
    listed = api.get("/submissions?fields=token", headers={"X-Auth-User": "u"}).json()
    assert listed["submissions"] == [{"token": token}] and listed["meta"]["total_count"] == 1
    refused = api.delete(f"/submissions/{token}", headers={"X-Auth-User": "u"})
    assert (refused.status_code, refused.json()["error"]) == (
        400,
        "submission cannot be deleted because its status is 1 (In Queue)",
    )


def test_a_multi_file_program_with_source_code_is_refused(api: TestClient) -> None:
    body = {"language_id": 89, "source_code": "echo hi", "additional_files": _zip({"run": b""})}
    r = api.post("/submissions", json=body)
    assert (r.status_code, r.json()) == (422, {"source_code": ["must be blank"]})


def test_ruby_to_i_reads_a_parameter_as_judge0_does() -> None:
    assert ruby_to_i(None, 20) == 20
    assert [ruby_to_i(v, 20) for v in ("", "abc", "-0", " 3", "2abc", "1.9", "1_000", "-2")] == [
        0,
        0,
        0,
        3,
        2,
        1,
        1000,
        -2,
    ]
    assert ruby_to_i("\uff11\uff12", 1) == 0  # fullwidth digits: only ASCII ones count


def test_listing_validates_page_and_per_page_as_judge0(api: TestClient) -> None:
    admin = {"X-Auth-User": "u"}

    def listing(query: str) -> tuple[int, Any]:
        r = api.get(f"/submissions?{query}", headers=admin)
        return r.status_code, r.json()

    assert listing("page=0") == (400, {"error": "invalid page: 0"})
    assert listing("page=-3") == (400, {"error": "invalid page: -3"})
    assert listing("page=abc") == (400, {"error": "invalid page: 0"})
    assert listing("per_page=-2") == (400, {"error": "invalid per_page: -2"})
    assert listing("per_page=0") == (400, {"error": "invalid per_page: 0"})
    assert listing(f"page=3&per_page={2**62}")[0] == 404  # past SQL's largest offset
    assert listing(f"per_page={2**70}")[0] == 200
    # will_paginate's arithmetic: an empty table is one page; no cap on per_page
    status, empty = listing("per_page=1000")
    assert status == 200 and empty["submissions"] == []
    assert empty["meta"] == {
        "current_page": 1,
        "next_page": None,
        "prev_page": None,
        "total_pages": 1,
        "total_count": 0,
    }
    for n in range(3):
        api.post("/submissions", json={"source_code": f"print({n})", "language_id": 71})
    status, second = listing("page=2&per_page=2&fields=source_code")
    assert second["submissions"] == [{"source_code": "print(0)"}]  # newest first
    assert second["meta"] == {
        "current_page": 2,
        "next_page": None,
        "prev_page": 1,
        "total_pages": 2,
        "total_count": 3,
    }
    beyond = listing("page=5&per_page=2")[1]
    assert beyond["submissions"] == [] and beyond["meta"]["prev_page"] == 4


def test_pg_size_pretty() -> None:
    # the answers of PostgreSQL 15's own pg_size_pretty
    sizes = [10239, 10240, 10752, 15872, 16776192, 20970496, 123456789, 9_000_000_000, 50 << 40]
    assert [pg_size_pretty(n) for n in sizes] == [
        "10239 bytes",
        "10 kB",
        "11 kB",
        "16 kB",
        "16 MB",
        "20 MB",
        "118 MB",
        "8583 MB",
        "50 TB",
    ]


def test_statistics_as_judge0_counts_them() -> None:
    now = datetime(2026, 12, 6, 22, 43, 2, 123456, tzinfo=timezone.utc)
    stats = {
        "total": 6,
        "days": {"2026-12-06": 2, "2026-12-05": 3, "2026-11-06": 1},
        "languages": [(71, 1), (50, 5)],
        "statuses": [(3, 4), (6, 2)],
        "size": 24576,
    }
    doc = statistics_document(stats, now)
    assert doc["created_at"] == "2026-12-06T22:43:02.123+00:00"
    assert doc["cached_until"] == "2026-12-06T22:53:02.123+00:00"
    days = doc["submissions"]["last_30_days"]
    assert list(days) == [f"2026-12-{d:02}" for d in range(5, 0, -1)] + [
        f"2026-11-{d:02}" for d in range(30, 5, -1)
    ]
    assert days["2026-12-05"] == 3 and days["2026-11-06"] == 1 and days["2026-11-20"] == 0
    assert doc["submissions"]["total"] == 6 and doc["submissions"]["today"] == 2
    assert doc["languages"][0] == {"language": {"id": 50, "name": "C (GCC 12.2.0)"}, "count": 5}
    assert doc["statuses"][0] == {"status": {"id": 3, "name": "Accepted"}, "count": 4}
    assert doc["database"] == {"size_pretty": "24 kB", "size_in_bytes": 24576}


def test_statistics_are_cached_for_ten_minutes(api: TestClient) -> None:
    first = api.get("/statistics").json()
    assert set(first) == {
        "created_at",
        "cached_until",
        "submissions",
        "languages",
        "statuses",
        "database",
    }
    assert first["submissions"]["total"] == 0
    api.post("/submissions", json={"source_code": "print(1)", "language_id": 71})
    assert api.get("/statistics").json() == first  # from the cache
    fresh = api.get("/statistics?invalidate_cache=true").json()
    assert fresh["submissions"]["total"] == 1 and fresh["submissions"]["today"] == 1
    assert fresh["created_at"] != first["created_at"]
