"""Piston's v2 API on ``sandboxkit serve``, judged by real clients: Piston's official Node
client (``piston-client``, unmodified), a WebSocket client speaking ``/api/v2/connect``,
plain HTTP for the error answers, and Piston's own package test programs (each prints
OK) for the languages both have."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from judge0_server import Server
from piston_client import run_client
from starlette.websockets import WebSocketDisconnect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from sandboxkit.piston import PistonSettings, create_router
from sandboxkit.server import Settings, create_app

pytestmark = pytest.mark.docker

PROGRAMS = Path(__file__).resolve().parent / "piston" / "programs"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # JVM languages start slowly on a busy 2-core machine: more than Piston's 3 s default,
    # given per language as a Piston deployment gives it (PISTON_LIMIT_OVERRIDES)
    slow = {"run_timeout": 10_000, "run_cpu_time": 10_000}
    jvm = {name: slow for name in ("clojure", "groovy", "java", "kotlin", "scala")}
    srv = Server(
        tmp_path_factory.mktemp("piston") / "db.sqlite3",
        "--pool-size",
        "1",
        "--piston-limit-overrides",
        json.dumps(jvm),
    )
    try:
        yield srv
    finally:
        srv.stop()


def execute(server: Server, body: dict[str, Any], **kw: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/api/v2/execute", json=body, timeout=120, **kw)


def run(server: Server, language: str, code: str, **body: Any) -> dict[str, Any]:
    answer = execute(
        server, {"language": language, "version": "*", "files": [{"content": code}], **body}
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


# ---------------------------------------------------------------- the official client
def test_pistons_node_client_runs_programs_through_serve(server: Server) -> None:
    cases = [
        {
            "language": "python",
            "code": "import sys; print(sys.argv[1:], input())",
            "config": {"stdin": "hello", "args": ["a", "b"]},
        },
        {
            "language": "javascript",
            "code": "const x = require('fs').readFileSync(0, 'utf8').trim();\n"
            "console.log(process.argv.slice(2).join(','), x);",
            "config": {"stdin": "there"},  # the client's own default args: 1 2 3
        },
        {
            "language": "c",
            "code": "#include <stdio.h>\nint main(int argc, char **argv) {\n  char s[64];\n"
            '  if (scanf("%63s", s) != 1) return 2;\n  printf("%s %s\\n", argv[1], s);\n'
            "  return 0;\n}\n",
            "config": {"stdin": "world", "args": ["hi"]},
        },
        {
            "language": "bash",
            "code": 'read -r line; echo "$2 $1 $line"',
            "config": {"stdin": "z", "args": ["x", "y"], "version": "5.x"},
        },
        {"language": "c", "code": "int main(void) { return undefined_name; }\n"},
        {"language": "python", "code": "while True:\n    pass\n", "config": {"runTimeout": 1000}},
        {
            "language": "python",
            "code": "blocks = [bytearray(1 << 20) for _ in range(300)]\nprint(len(blocks))\n",
            "config": {"runMemoryLimit": 64_000_000},
        },
    ]
    answer = run_client(server.url, cases)
    runtimes = {rt["language"]: rt for rt in answer["runtimes"]}
    assert {"python", "javascript", "c", "c++", "bash"} <= set(runtimes)
    assert runtimes["c++"]["runtime"] == "gcc" and "cpp" in runtimes["c++"]["aliases"]
    py, js, c, sh, broken, spin, hog = answer["results"]

    assert py["language"] == "python" and py["version"] == runtimes["python"]["version"]
    assert py["run"]["stdout"] == "['a', 'b'] hello\n" and py["run"]["code"] == 0
    assert "compile" not in py
    assert js["run"]["stdout"] == "1,2,3 there\n"
    assert c["compile"]["code"] == 0 and c["run"]["stdout"] == "hi world\n"
    assert sh["run"]["output"] == "y x z\n"

    assert broken["compile"]["code"] == 1 and broken["compile"]["status"] == "RE"
    assert "undefined_name" in broken["compile"]["stderr"]
    assert broken["run"] == broken["compile"]  # Piston's stand-in when nothing ran

    assert spin["run"]["status"] == "TO" and spin["run"]["signal"] == "SIGKILL"
    assert spin["run"]["message"] == "Time limit exceeded (wall clock)"
    assert spin["run"]["code"] is None and 900 <= spin["run"]["wall_time"] <= 2500

    assert hog["run"]["status"] == "SG" and hog["run"]["signal"] == "SIGKILL"
    assert hog["run"]["message"] == "Caught fatal signal 9" and hog["run"]["stdout"] == ""


# ---------------------------------------------------------------- HTTP routes
def test_runtimes_are_the_installed_languages_in_pistons_shape(server: Server) -> None:
    rows = httpx.get(f"{server.url}/api/v2/runtimes", timeout=120).json()
    for row in rows:
        assert set(row) <= {"language", "version", "aliases", "runtime"}
        assert len(row["version"].split(".")) == 3
    python = next(r for r in rows if r["language"] == "python")
    assert "py" in python["aliases"] and "runtime" not in python
    packages = httpx.get(f"{server.url}/api/v2/packages", timeout=60).json()
    installed = {p["language"]: p for p in packages if p["installed"]}
    assert installed["python"]["language_version"] == python["version"]
    assert all(p["language_version"] is None for p in packages if not p["installed"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"version": "*", "files": []}, "language is required as a string"),
        ({"language": "python", "files": []}, "version is required as a string"),
        ({"language": "python", "version": "*"}, "files is required as an array"),
        ({"language": "html", "version": "5.0.0", "files": []}, "html-5.0.0 runtime is unknown"),
        (
            {"language": "python", "version": "*", "files": [{"content": ""}], "run_timeout": 9e9},
            "run_timeout cannot exceed the configured limit of 3000",
        ),
    ],
)
def test_bad_requests_are_400_with_pistons_message(
    server: Server, body: dict[str, Any], message: str
) -> None:
    answer = execute(server, body)
    assert (answer.status_code, answer.json()) == (400, {"message": message})


def test_a_body_that_is_not_json_is_refused_as_piston_does(server: Server) -> None:
    url = f"{server.url}/api/v2/execute"
    form = httpx.post(url, data={"language": "python"}, timeout=30)
    assert form.status_code == 415
    assert form.json() == {"message": "requests must be of type application/json"}
    garbled = httpx.post(url, content=b"{", headers={"content-type": "application/json"})
    assert garbled.status_code == 400 and "not JSON" in garbled.json()["message"]
    # node-fetch sends a JSON string as text/plain (piston-client does): read as JSON
    plain = httpx.post(
        url, content=b'{"language": "python"}', headers={"content-type": "text/plain"}
    )
    assert plain.json() == {"message": "version is required as a string"}


def test_files_lie_beside_the_program_in_every_encoding(server: Server) -> None:
    program = (
        "import helper, pathlib\n"
        "print(helper.X, pathlib.Path('data.bin').read_bytes(), open('notes/n.txt').read())\n"
    )
    answer = execute(
        server,
        {
            "language": "py",
            "version": "3",
            "files": [
                {"name": "app.py", "content": program},
                {"name": "helper.py", "content": "X = 42"},
                {
                    "name": "data.bin",
                    "content": base64.b64encode(b"\x00\xff").decode(),
                    "encoding": "base64",
                },
                {"name": "notes/n.txt", "content": "6869", "encoding": "hex"},
            ],
        },
    ).json()
    assert answer["run"]["stdout"] == "42 b'\\x00\\xff' hi\n", answer


def test_stage_statuses_follow_isolate_and_piston(server: Server) -> None:
    flood = run(server, "python", "print('y' * 5000)\n")["run"]
    assert (flood["status"], flood["message"]) == ("OL", "stdout length exceeded")
    assert len(flood["stdout"]) <= 1024 and flood["signal"] == "SIGKILL"

    spin = run(server, "python", "while True:\n    pass\n", run_cpu_time=500)["run"]
    assert (spin["status"], spin["message"]) == ("TO", "Time limit exceeded")

    crash = run(server, "c", "int main(void) { return *(volatile int *)0; }\n")["run"]
    assert (crash["status"], crash["signal"], crash["code"]) == ("SG", "SIGSEGV", None)
    assert crash["message"] == "Caught fatal signal 11"

    failing = run(server, "python", "import sys\nprint('out')\nsys.exit('bad')\n")["run"]
    assert (failing["status"], failing["code"]) == ("RE", 1)
    assert failing["message"] == "Exited with error status 1"
    assert failing["output"] == "out\nbad\n" and failing["stderr"] == "bad\n"
    assert failing["cpu_time"] >= 0 and failing["wall_time"] >= 0 and failing["memory"] > 0

    warned = run(server, "c", '#warning "careful"\nint main(void) { return 0; }\n')
    assert "careful" in warned["compile"]["stderr"] and warned["compile"]["code"] == 0
    assert warned["run"]["stderr"] == "" and warned["run"]["status"] is None


def test_package_changes_are_refused_without_the_operators_flag(server: Server) -> None:
    for method in ("POST", "DELETE"):
        answer = httpx.request(
            method,
            f"{server.url}/api/v2/packages",
            json={"language": "python", "version": "*"},
            timeout=30,
        )
        assert answer.status_code == 403
        assert "--piston-manage-packages" in answer.json()["message"]


# ---------------------------------------------------------------- the WebSocket
def ws_url(server: Server) -> str:
    return server.url.replace("http", "ws") + "/api/v2/connect"


def receive_all(ws: ClientConnection) -> tuple[list[dict[str, Any]], int | None]:
    """Every message until the server closes, and its close code."""
    got = []
    try:
        while True:
            got.append(json.loads(ws.recv(timeout=60)))
    except ConnectionClosed as closed:
        return got, closed.rcvd.code if closed.rcvd else None


def test_connect_runs_a_program_interactively(server: Server) -> None:
    with connect(ws_url(server)) as ws:
        init = {
            "language": "python",
            "version": "*",
            "files": [{"content": "print('hi', input())"}],
        }
        ws.send(json.dumps({"type": "init", **init}))
        assert json.loads(ws.recv(timeout=60))["type"] == "runtime"
        assert json.loads(ws.recv(timeout=60)) == {"type": "stage", "stage": "run"}
        ws.send(json.dumps({"type": "data", "stream": "stdin", "data": "Ada\n"}))
        got, code = receive_all(ws)
    said = [m for m in got[:-1] if m["type"] == "data" and m["stream"] == "stdout"]
    assert len(said) == len(got) - 1 and "".join(m["data"] for m in said) == "hi Ada\n"
    assert got[-1] == {"type": "exit", "stage": "run", "code": 0, "signal": None}
    assert code == 4999


def test_connect_reports_both_stages_of_a_compiled_program(server: Server) -> None:
    code = '#include <stdio.h>\nint main(void) { puts("built"); return 3; }\n'
    with connect(ws_url(server)) as ws:
        ws.send(
            json.dumps(
                {"type": "init", "language": "c", "version": "*", "files": [{"content": code}]}
            )
        )
        got, closed = receive_all(ws)
    assert [m["type"] for m in got] == ["runtime", "stage", "exit", "stage", "data", "exit"]
    assert got[1] == {"type": "stage", "stage": "compile"}
    assert got[2] == {"type": "exit", "stage": "compile", "code": 0, "signal": None}
    assert got[4]["data"] == "built\n"
    assert got[5] == {"type": "exit", "stage": "run", "code": 3, "signal": None}
    assert closed == 4999

    with connect(ws_url(server)) as ws:
        ws.send(
            json.dumps(
                {"type": "init", "language": "c", "version": "*", "files": [{"content": "nope"}]}
            )
        )
        got, closed = receive_all(ws)
    assert [m["stage"] for m in got if m["type"] == "stage"] == ["compile"]  # no run stage
    assert got[-1] == {"type": "exit", "stage": "compile", "code": 1, "signal": None}
    assert "error" in "".join(m["data"] for m in got if m["type"] == "data")
    assert closed == 4999


def test_connect_signal_stops_the_program(server: Server) -> None:
    with connect(ws_url(server)) as ws:
        init = {
            "language": "python",
            "version": "*",
            "files": [{"content": "import time\ntime.sleep(60)"}],
        }
        ws.send(json.dumps({"type": "init", **init}))
        ws.recv(timeout=60), ws.recv(timeout=60)  # runtime, stage
        started = time.monotonic()
        ws.send(json.dumps({"type": "signal", "signal": "SIGTERM"}))
        got, closed = receive_all(ws)
    assert got == [{"type": "exit", "stage": "run", "code": None, "signal": "SIGKILL"}]
    assert closed == 4999 and time.monotonic() - started < 2.5  # before the 3 s limit


@pytest.mark.parametrize(
    ("messages", "code"),
    [
        ([], 4001),
        ([{"type": "data", "stream": "stdin", "data": "x"}], 4003),
        ([{"type": "signal", "signal": "SIGKILL"}], 4003),
        (["init", {"type": "data", "stream": "stdout", "data": "x"}], 4004),
        (["init", {"type": "signal", "signal": "SIGNOPE"}], 4005),
        (["init", "init"], 4000),
        ([{"type": "init", "language": "html", "version": "5", "files": []}], 4002),
    ],
)
def test_connect_closes_with_pistons_codes(server: Server, messages: list[Any], code: int) -> None:
    sleeper = {
        "type": "init",
        "language": "python",
        "version": "*",
        "files": [{"content": "import time\ntime.sleep(10)"}],
    }
    with connect(ws_url(server)) as ws:
        for message in messages:
            ws.send(json.dumps(sleeper if message == "init" else message))
        got, closed = receive_all(ws)
    assert closed == code
    if code == 4002:
        assert got == [{"type": "error", "message": "html-5 runtime is unknown"}]


# ---------------------------------------------------------------- Piston's own tests
KNOWN_DIFFERENCES = {
    "java-15.0.2/test.java": "Piston runs `java file.java` (any public class); sandboxkit "
    "compiles Main.java, so the public class must be Main",
    "prolog-8.2.4/test.prolog": "Piston's prolog is SWI-Prolog; sandboxkit's is GNU Prolog, "
    "which ignores a goal given as a directive",
    "scala-3.2.2/test.scala": "the program is Scala 3; sandboxkit's image has Scala 2.11",
}
SELECTORS = {"python-2.7.18/test.py": "2"}  # Piston's test picks Python 2 by its version


@pytest.mark.parametrize(
    "program",
    sorted(str(p.relative_to(PROGRAMS)) for p in PROGRAMS.glob("*/test.*")),
)
def test_pistons_package_test_programs_print_ok(server: Server, program: str) -> None:
    if program in KNOWN_DIFFERENCES:
        pytest.xfail(KNOWN_DIFFERENCES[program])
    language = Path(program).name.split(".")[1]
    body = {
        "language": language,
        "version": SELECTORS.get(program, "*"),
        "files": [{"content": (PROGRAMS / program).read_text()}],
    }
    answer = execute(server, body)
    if answer.status_code == 400 and "runtime is unknown" in answer.json()["message"]:
        pytest.skip(f"no {language} runtime installed here ({answer.json()['message']})")
    result = answer.json()
    assert "OK" in result["run"]["stdout"], result


# ---------------------------------------------------------------- in-process
def test_the_rate_limit_answers_as_pistons_public_instance() -> None:
    app = create_app(
        Settings(db=":memory:", workers=1, piston=PistonSettings(rate_limit_ms=60_000))
    )
    client = TestClient(app)  # no lifespan: the limiter answers before anything runs
    first = client.post("/api/v2/execute", json={})
    assert first.status_code == 400
    second = client.post("/api/v2/execute", json={})
    assert (second.status_code, second.json()) == (
        429,
        {"message": "Requests limited to 1 per 60000ms"},
    )


def test_no_piston_serves_judge0_alone() -> None:
    app = create_app(Settings(db=":memory:", workers=1, piston=None))
    assert TestClient(app).get("/api/v2/runtimes").status_code == 404
    mounted = create_router(PistonSettings())
    assert {"/runtimes", "/execute", "/packages", "/connect"} <= {
        getattr(r, "path", "") for r in mounted.routes
    }


def test_the_websocket_asks_for_the_servers_auth_token() -> None:
    app = create_app(Settings(db=":memory:", workers=1, auth_token="t"))
    client = TestClient(app)  # no lifespan: refused before the service is asked anything
    with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/api/v2/connect"):
        pass
    assert refused.value.code == 1008
    assert client.get("/api/v2/runtimes").status_code == 401  # HTTP: the server's guard
