"""``sandboxkit serve`` driven by the official ``judge0`` client, unchanged, over loopback.

The server runs as a real subprocess (as a user would start it) on a free port of
127.0.0.1, with its own SQLite file; it is stopped (and its sandboxes removed) at the end.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import judge0
import pytest
from judge0_server import Server

import sandboxkit as sk
from sandboxkit.server import serve
from sandboxkit.server._requests import parse_submission
from sandboxkit.server._sqlite_store import SqliteStore
from sandboxkit.server._store import Admission

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("judge0") / "subs.sqlite3"


@pytest.fixture(scope="module")
def server(db: Path) -> Iterator[Server]:
    srv = Server(db)
    try:
        yield srv
    finally:
        srv.stop()


def test_info_routes(server: Server) -> None:
    about = httpx.get(server.url + "/about").json()
    assert about["version"] == "1.13.1"
    statuses = httpx.get(server.url + "/statuses").json()
    assert statuses[0] == {"id": 1, "description": "In Queue"}
    assert {"id": 11, "description": "Runtime Error (NZEC)"} in statuses
    assert len(statuses) == 14
    langs = {lang["id"] for lang in httpx.get(server.url + "/languages").json()}
    assert {71, 54, 52}.issubset(langs)
    py = httpx.get(server.url + "/languages/71").json()
    assert py["id"] == 71 and py["source_file"] == "main.py" and py["is_archived"] is False
    assert httpx.get(server.url + "/languages/9999").status_code == 404
    config = httpx.get(server.url + "/config_info").json()
    assert config["max_submission_batch_size"] == 20 and config["enable_wait_result"] is True


def test_official_client_verdicts(server: Server) -> None:
    client = server.client()
    ok = judge0.run(
        client=client,
        source_code="print(input()[::-1])",
        stdin="abc",
        expected_output="cba",
        language=judge0.PYTHON,
    )
    assert ok.status == judge0.Status.ACCEPTED, ok
    assert ok.stdout == "cba\n" and ok.time is not None and ok.memory is not None
    assert ok.created_at is not None and ok.finished_at is not None

    wrong = judge0.run(
        client=client, source_code="print(1)", expected_output="2", language=judge0.PYTHON
    )
    assert wrong.status == judge0.Status.WRONG_ANSWER

    nzec = judge0.run(
        client=client,
        source_code="import sys\nprint('x', file=sys.stderr)\n1/0",
        language=judge0.PYTHON,
    )
    assert nzec.status == judge0.Status.RUNTIME_ERROR_NZEC, nzec
    assert nzec.exit_code == 1 and "ZeroDivisionError" in (nzec.stderr or "")

    tle = judge0.run(
        client=client,
        source_code="while True:\n    pass\n",
        language=judge0.PYTHON,
        cpu_time_limit=1,
        wall_time_limit=2,
    )
    assert tle.status == judge0.Status.TIME_LIMIT_EXCEEDED, tle

    ce = judge0.run(client=client, source_code="int main( {", language=judge0.CPP)
    assert ce.status == judge0.Status.COMPILATION_ERROR, ce
    assert "error" in (ce.compile_output or "")

    segv = judge0.run(
        client=client, language=judge0.CPP, source_code="int main(){ volatile int *p = 0; *p = 1; }"
    )
    assert segv.status == judge0.Status.RUNTIME_ERROR_SIGSEGV, segv


def test_official_client_batch_of_test_cases(server: Server) -> None:
    client = server.client()
    code = "a, b = map(int, input().split())\nprint(a + b)\n"
    cases = [("1 2", "3"), ("2 2", "5"), ("10 -3", "7")]
    subs = judge0.run(client=client, source_code=code, language=judge0.PYTHON, test_cases=cases)
    assert [s.status for s in subs] == [
        judge0.Status.ACCEPTED,
        judge0.Status.WRONG_ANSWER,
        judge0.Status.ACCEPTED,
    ]
    assert [s.stdout for s in subs] == ["3\n", "4\n", "7\n"]


def test_wait_true_and_plain_text(server: Server) -> None:
    r = httpx.post(
        server.url + "/submissions?wait=true",
        json={
            "source_code": "print(input().upper())",
            "language_id": 71,
            "stdin": "hey",
            "expected_output": "HEY  \n\n",
        },
    )
    assert r.status_code == 201
    body = r.json()
    assert body["status"] == {"id": 3, "description": "Accepted"}
    assert body["stdout"] == "HEY\n" and set(body) == {
        "token",
        "time",
        "memory",
        "stdout",
        "stderr",
        "compile_output",
        "message",
        "status",
    }
    got = httpx.get(
        f"{server.url}/submissions/{body['token']}",
        params={"fields": "stdout,language,status", "base64_encoded": "true"},
    ).json()
    assert got == {
        "stdout": base64.b64encode(b"HEY\n").decode(),
        "language": {"id": 71, "name": "Python (3.11.2)"},
        "status": {"id": 3, "description": "Accepted"},
    }


def test_base64_output_is_byte_exact(server: Server) -> None:
    # bytes that are not UTF-8 come back exactly in base64 mode; as text, Judge0's 400
    code = (
        "import sys\n"
        "sys.stdout.buffer.write(bytes([0xFE, 0xFF, 0x00, 0x80]))\n"
        "sys.stdout.flush()\n"
        "sys.stderr.buffer.write(bytes([0xC3, 0x28]))\n"
    )
    out, err = b"\xfe\xff\x00\x80", b"\xc3("
    post = (
        server.url + "/submissions?wait=true&base64_encoded=true&fields=token,stdout,stderr,status"
    )
    src = base64.b64encode(code.encode()).decode()
    body = httpx.post(post, json={"source_code": src, "language_id": 71}).json()
    assert body["status"]["id"] == 3, body
    assert base64.b64decode(body["stdout"]) == out
    assert base64.b64decode(body["stderr"]) == err
    plain = httpx.get(
        f"{server.url}/submissions/{body['token']}", params={"fields": "stdout,stderr"}
    )
    assert plain.status_code == 400
    assert "use base64_encoded=true" in plain.json()["error"]

    merged = httpx.post(
        post, json={"source_code": src, "language_id": 71, "redirect_stderr_to_stdout": True}
    ).json()
    assert base64.b64decode(merged["stdout"]) == out + err and merged["stderr"] is None


def test_bad_requests_get_judge0_error_shapes(server: Server) -> None:
    post = server.url + "/submissions"
    cases = [
        ({"source_code": "print(1)", "language_id": 4242}, "language_id"),
        ({"language_id": 71}, "source_code"),
        ({"source_code": "print(1)"}, "language_id"),
        ({"source_code": "x" * (600 * 1024), "language_id": 71}, "source_code"),
        ({"source_code": "print(1)", "language_id": 71, "cpu_time_limit": 999}, "cpu_time_limit"),
        ({"source_code": "print(1)", "language_id": 71, "memory_limit": "lots"}, "memory_limit"),
        ({"source_code": "print(1)", "language_id": 71, "enable_network": True}, "enable_network"),
    ]
    for body, field in cases:
        r = httpx.post(post, json=body)
        assert r.status_code == 422, (body, r.text)
        assert list(r.json()) == [field] and isinstance(r.json()[field][0], str)
    r = httpx.post(post + "?base64_encoded=true", json={"source_code": "%%%", "language_id": 71})
    assert r.status_code == 422 and "source_code" in r.json()
    r = httpx.post(post, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "error" in r.json()
    assert httpx.get(server.url + "/submissions/nope").status_code == 404
    r = httpx.get(server.url + "/submissions/batch", params={"tokens": ",".join(["a"] * 21)})
    assert r.status_code == 400 and "error" in r.json()
    r = httpx.get(server.url + "/submissions/x", params={"fields": "stdout,bogus"})
    assert r.status_code == 400 and r.json() == {"error": "invalid fields: [bogus]"}
    r = httpx.post(
        server.url + "/submissions/batch",
        json={"submissions": [{"source_code": "print(1)", "language_id": 71}, {"language_id": 71}]},
    )
    assert r.status_code == 201
    assert "token" in r.json()[0] and r.json()[1] == {"source_code": ["can't be blank"]}


def test_restart_keeps_tokens_and_runs_queued_work(server: Server, db: Path) -> None:
    r = httpx.post(
        server.url + "/submissions?wait=true", json={"source_code": "print(7)", "language_id": 71}
    )
    done = r.json()["token"]
    server.stop()
    # a submission accepted but not yet run when the server went down
    record, errors = parse_submission(
        {"source_code": "print(8)", "language_id": 71},
        b64=False,
        max_source_bytes=1 << 20,
        max_io_bytes=1 << 20,
    )
    assert record is not None and not errors
    store = SqliteStore(db)
    import anyio

    anyio.run(store.insert, [record], Admission())
    anyio.run(store.close)

    again = Server(db, token="s3cret")
    try:
        assert httpx.get(f"{again.url}/submissions/{done}").status_code == 401
        r = httpx.get(f"{again.url}/submissions/{done}", headers=again.headers)
        assert r.status_code == 200 and r.json()["stdout"] == "7\n"
        deadline = time.monotonic() + 60
        while True:
            got = httpx.get(f"{again.url}/submissions/{record.token}", headers=again.headers).json()
            if got["status"]["id"] > 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert got["status"]["id"] == 3 and got["stdout"] == "8\n"
    finally:
        again.stop()


def test_refuses_to_bind_beyond_loopback_without_a_token() -> None:
    with pytest.raises(sk.InvalidInput, match="auth token"):
        serve(host="0.0.0.0")  # raises before binding anything
