"""Judge0 CE 1.13.1 as a switching user meets it: every language id through the official
``judge0`` client, every request field and route through Judge0's documented HTTP API,
against ``sandboxkit serve`` started as a real subprocess on 127.0.0.1.

Network: every connection here goes to 127.0.0.1 (the server, and the callback receiver
the tests start). ``enable_network`` is checked by what the sandbox sees of its own
interfaces, without sending a packet.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import judge0
import pytest
from judge0_server import Server, free_port

import sandboxkit as sk
from sandboxkit.server._judge0 import LANGUAGES

pytestmark = pytest.mark.docker

ADMIN = "admin-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db = tmp_path_factory.mktemp("judge0api") / "subs.sqlite3"
    srv = Server(db, "--authz-token", ADMIN, "--enable-submission-delete", "--allow-network")
    try:
        yield srv
    finally:
        srv.stop()


def b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def unb64(value: str | None) -> bytes:
    return base64.b64decode(value) if value else b""


def zip_b64(files: dict[str, bytes]) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return b64(buf.getvalue())


# ---------------------------------------------------------------- every language
# Each reads a name on stdin and greets it; ids with a fixed text print "hello, world".
HELLO: dict[int, str] = {
    43: "hello, world\n",
    45: 'section .data\n    msg db "hello, world", 10\n    len equ $ - msg\n'
    "section .text\n    global _start\n_start:\n    mov rax, 1\n    mov rdi, 1\n"
    "    mov rsi, msg\n    mov rdx, len\n    syscall\n    mov rax, 60\n    xor rdi, rdi\n"
    "    syscall\n",
    46: 'read name; echo "hello, $name"',
    51: "public class Hello { public static void Main() {\n"
    '  System.Console.WriteLine("hello, " + System.Console.ReadLine()); } }',
    55: '(format t "hello, ~a~%" (read-line))',
    56: 'import std.stdio;\nvoid main() { string n = readln(); write("hello, ", n); }',
    57: 'IO.puts "hello, #{IO.gets("") |> String.trim}"',
    58: 'main(_) ->\n    {ok, [N]} = io:fread("", "~s"),\n    io:fwrite("hello, ~s~n", [N]).',
    59: "program main\n  character(len=10) :: n\n  read(*,*) n\n"
    '  print "(a,a)", "hello, ", trim(n)\nend program main',
    60: 'package main\nimport "fmt"\nfunc main() { var n string; fmt.Scan(&n); '
    'fmt.Println("hello, " + n) }',
    61: 'main = do\n  n <- getLine\n  putStrLn ("hello, " ++ n)',
    62: "import java.util.Scanner;\npublic class Main { public static void main(String[] a) "
    '{ System.out.println("hello, " + new Scanner(System.in).next()); } }',
    63: 'const n = require("fs").readFileSync(0, "utf8").trim(); console.log(`hello, ${n}`);',
    64: 'local n = io.read()\nio.write("hello, ", n, "\\n")',
    65: 'let () = print_endline ("hello, " ^ read_line ())',
    66: 'n = input("", "s");\nprintf("hello, %s\\n", n);',
    67: "program Hello;\nvar n: string;\nbegin\n  readln(n);\n  writeln('hello, ', n);\nend.",
    68: '<?php\n$n = trim(fgets(STDIN));\necho "hello, $n\\n";',
    69: ":- initialization(main).\nmain :- read_atom(N), write('hello, '), write(N), nl.",
    70: 'print "hello, %s" % raw_input()',  # Python 2 only: a print statement, raw_input
    71: 'print(f"hello, {input()}")',
    72: 'puts "hello, #{gets.strip}"',
    73: "use std::io;\nfn main() { let mut n = String::new(); "
    'io::stdin().read_line(&mut n).unwrap(); println!("hello, {}", n.trim()); }',
    74: 'import * as fs from "fs";\nconst n: string = fs.readFileSync(0, "utf8").trim();\n'
    "console.log(`hello, ${n}`);",
    77: "IDENTIFICATION DIVISION.\nPROGRAM-ID. MAIN.\nDATA DIVISION.\n"
    "WORKING-STORAGE SECTION.\n01 N PIC X(10).\nPROCEDURE DIVISION.\nACCEPT N.\n"
    'DISPLAY "hello, " FUNCTION TRIM(N).\nSTOP RUN.\n',
    78: 'fun main() {\n    val n = readLine()!!\n    println("hello, $n")\n}',
    79: "#import <Foundation/Foundation.h>\nint main() {\n  @autoreleasepool {\n"
    '    char n[16]; scanf("%15s", n);\n'
    '    NSString *m = [NSString stringWithFormat:@"hello, %s", n];\n'
    '    printf("%s\\n", [m UTF8String]);\n  }\n  return 0;\n}',
    80: 'n <- readLines("stdin", n = 1)\ncat("hello,", n, "\\n")',
    81: "object Main {\n  def main(args: Array[String]): Unit = {\n"
    '    println("hello, " + scala.io.StdIn.readLine())\n  }\n}',
    82: "SELECT 'hello, world';",
    83: 'let n = readLine()!\nprint("hello, \\(n)")',
    85: 'my $n = <STDIN>; chomp $n; print "hello, $n\\n";',
    86: '(println (str "hello, " (read-line)))',
    88: 'def n = System.in.newReader().readLine()\nprintln "hello, " + n',
}
C_HELLO = (
    "#include <stdio.h>\n"
    'int main(void) { char n[16]; scanf("%15s", n); printf("hello, %s\\n", n); }'
)
CPP_HELLO = (
    "#include <iostream>\n#include <string>\n"
    'int main() { std::string n; std::cin >> n; std::cout << "hello, " << n << std::endl; }'
)
for _lid in (48, 49, 50, 75):
    HELLO[_lid] = C_HELLO
for _lid in (52, 53, 54, 76):
    HELLO[_lid] = CPP_HELLO


def test_every_offered_language_has_a_hello_world() -> None:
    assert set(HELLO) | {44, 89} == set(LANGUAGES)


@pytest.mark.parametrize("language_id", sorted(HELLO))
def test_hello_world_accepted_through_the_official_client(server: Server, language_id: int) -> None:
    result = judge0.run(
        client=server.client(),
        source_code=HELLO[language_id],
        language=language_id,
        stdin="world",
        expected_output="hello, world",
    )
    assert result.status == judge0.Status.ACCEPTED, (
        result.status,
        result.compile_output,
        result.stderr,
        result.stdout,
    )


async def test_executable_runs_a_binary(server: Server) -> None:
    # the program copies itself into the workdir (a session's build is its own, apart
    # from the user's files), then runs as language 44 from those bytes
    program = (
        "#include <stdio.h>\n"
        "int main(int argc, char **argv) {\n"
        '  if (argc < 2) { puts("hello, binary"); return 0; }\n'
        '  FILE *in = fopen("/proc/self/exe", "rb"), *out = fopen(argv[1], "wb");\n'
        "  char buf[4096]; size_t n;\n"
        "  while ((n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);\n"
        "  return fclose(out);\n"
        "}\n"
    )
    async with sk.Sandbox(language="c") as sb:
        built = await sb.run(program, args=["hello.bin"])
        assert built.ok, built.stderr
        binary = await sb.read_file("hello.bin")
    r = server.submit({"source_code": b64(binary), "language_id": 44}, "base64_encoded=true")
    answer = r.json()
    assert answer["status"]["id"] == 3, answer
    assert unb64(answer["stdout"]) == b"hello, binary\n"


def test_multi_file_program_compiles_and_runs_its_scripts(server: Server) -> None:
    files = {
        "compile": b"gcc -O2 -o prog main.c greet.c",
        "run": b'./prog "$@" < input.txt',
        "main.c": b'void greet(const char *); int main(void) { greet("files"); }',
        "greet.c": b'#include <stdio.h>\nvoid greet(const char *w) { printf("hi %s\\n", w); }',
        "input.txt": b"",
    }
    r = server.submit({"language_id": 89, "additional_files": zip_b64(files)})
    answer = r.json()
    assert answer["status"]["id"] == 3, answer
    assert answer["stdout"] == "hi files\n"


def test_multi_file_program_refuses_source_code(server: Server) -> None:
    files = zip_b64({"run": b"echo hi"})
    r = server.submit({"language_id": 89, "source_code": "echo hi", "additional_files": files})
    assert (r.status_code, r.json()) == (422, {"source_code": ["must be blank"]})
    r = server.submit({"language_id": 89, "source_code": "  \n", "additional_files": files})
    assert r.status_code == 201 and r.json()["stdout"] == "hi\n", r.json()
    r = server.submit({"language_id": 89})
    assert (r.status_code, r.json()) == (422, {"additional_files": ["can't be blank"]})


def test_multi_file_program_scripts_are_found_as_judge0_finds_them(server: Server) -> None:
    # compile.sh before compile, run.sh before run, both run as `/bin/bash NAME` with no
    # arguments (command_line_arguments are not passed to a project's run script)
    files = {
        "compile.sh": b"echo building >&2; gcc -o prog main.c",
        "compile": b"exit 1",
        "run.sh": b'echo "args: $#"; ./prog',
        "run": b"echo wrong script",
        "main.c": b'#include <stdio.h>\nint main(void) { puts("built"); }',
    }
    body = {"language_id": 89, "additional_files": zip_b64(files)}
    answer = server.submit({**body, "command_line_arguments": "a b"}).json()
    assert answer["status"]["id"] == 3, answer
    assert answer["stdout"] == "args: 0\nbuilt\n"
    assert answer["compile_output"] == "building\n"
    broken = {**files, "compile.sh": b"echo nope; exit 2"}
    answer = server.submit({"language_id": 89, "additional_files": zip_b64(broken)}).json()
    assert answer["status"]["id"] == 6 and answer["compile_output"] == "nope\n", answer
    # no run script: bash is asked for run.sh, and answers 127
    answer = server.submit(
        {"language_id": 89, "additional_files": zip_b64({"main.c": b"int main;"})},
        "fields=status,exit_code,stderr",
    ).json()
    assert answer["status"]["id"] == 11 and answer["exit_code"] == 127, answer
    assert answer["stderr"] == "/bin/bash: run.sh: No such file or directory\n"


# ---------------------------------------------------------------- per-process limits
CHILDREN_40_MB = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
int main(void) {
    for (int i = 0; i < 3; i++)
        if (fork() == 0) {
            char *p = malloc(40 << 20);
            if (!p) return 1;
            memset(p, 1, 40 << 20);
            sleep(1);  /* all three hold their 40 MB at once */
            return p[4096] - 1;
        }
    int status, good = 1;
    while (wait(&status) > 0) good &= WIFEXITED(status) && WEXITSTATUS(status) == 0;
    puts(good ? "all three" : "a child failed");
    return !good;
}
"""
ONE_100_MB = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
    char *p = malloc(100 << 20);
    if (!p) { puts("no memory"); return 1; }
    memset(p, 1, 100 << 20);
    printf("%d\n", p[4096]);
}
"""


def test_per_process_memory_limit_is_each_process_address_space(server: Server) -> None:
    body = {"language_id": 50, "memory_limit": 64000}
    flag = {"enable_per_process_and_thread_memory_limit": True}
    each = server.submit({**body, **flag, "source_code": CHILDREN_40_MB}).json()
    assert each["status"]["id"] == 3 and each["stdout"] == "all three\n", each
    together = server.submit({**body, "source_code": CHILDREN_40_MB}).json()
    assert together["status"]["id"] != 3, together  # 120 MB in a 64 MB group
    big = server.submit({**body, **flag, "source_code": ONE_100_MB}).json()
    # isolate's -m is RLIMIT_AS: the allocation fails and the program says what follows
    assert big["status"]["id"] == 11 and big["stdout"] == "no memory\n", big


CPU_CHILDREN = r"""
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
static void spin(double seconds) {
    clock_t end = clock() + (clock_t)(seconds * CLOCKS_PER_SEC);
    while (clock() < end) {}
}
int main(int argc, char **argv) {
    int children = 0;
    if (scanf("%d", &children) != 1) return 2;
    for (int i = 0; i < children; i++)
        if (fork() == 0) { spin(0.7); return 0; }
    if (children == 0) spin(3.0);
    while (wait(NULL) > 0) {}
    puts("done");
}
"""


def test_per_process_time_limit_is_each_process_cpu_time(server: Server) -> None:
    body = {"language_id": 50, "source_code": CPU_CHILDREN, "cpu_time_limit": 1}
    flag = {"enable_per_process_and_thread_time_limit": True}
    each = server.submit({**body, **flag, "stdin": "3"}).json()
    assert each["status"]["id"] == 3 and each["stdout"] == "done\n", each
    assert float(each["time"]) > 1.5  # the time reported is still every process's
    together = server.submit({**body, "stdin": "3"}).json()
    assert together["status"]["id"] == 5, together
    alone = server.submit({**body, **flag, "stdin": "0"}).json()
    assert alone["status"]["id"] == 5, alone


# ---------------------------------------------------------------- fields
def test_compiler_options(server: Server) -> None:
    src = "#include <stdio.h>\nint main(void) { puts(GREETING); }"
    r = server.submit(
        {"source_code": src, "language_id": 50, "compiler_options": "-DGREETING='\"hey\"'"}
    )
    assert r.json()["stdout"] == "hey\n", r.json()
    r = server.submit({"source_code": src, "language_id": 50})
    assert r.json()["status"]["id"] == 6  # no macro: a compilation error


def test_command_line_arguments(server: Server) -> None:
    r = server.submit(
        {
            "source_code": "import sys; print(sys.argv[1:])",
            "language_id": 71,
            "command_line_arguments": "one 'two words'",
        }
    )
    assert r.json()["stdout"] == "['one', 'two words']\n"


def test_additional_files_beside_the_source(server: Server) -> None:
    r = server.submit(
        {
            "source_code": "print(open('data.txt').read().split())",
            "language_id": 71,
            "additional_files": zip_b64({"data.txt": b"4 5\n"}),
        }
    )
    assert r.json()["stdout"] == "['4', '5']\n", r.json()


def test_number_of_runs_runs_that_many_times(server: Server) -> None:
    # the runs of one submission share its sandbox's workdir: count them there
    src = (
        "import os\nn = int(open('n').read()) + 1 if os.path.exists('n') else 1\n"
        "open('n', 'w').write(str(n))\nprint(n)"
    )
    r = server.submit({"source_code": src, "language_id": 71, "number_of_runs": 3})
    answer = r.json()
    assert answer["status"]["id"] == 3 and answer["stdout"] == "3\n", answer
    assert float(answer["time"]) > 0


def test_deep_recursion_passes_under_the_default_stack_limit(server: Server) -> None:
    # ~40 MB of stack: more than Linux's 8 MB default, less than Judge0's 64 MB
    src = (
        "#include <stdio.h>\n"
        "int down(int n) { volatile char pad[400]; pad[0] = (char)n; "
        "return n == 0 ? pad[0] : down(n - 1) + pad[0] - (char)n + 1; }\n"
        'int main(void) { printf("%d\\n", down(100000)); }'
    )
    body = {"source_code": src, "language_id": 50, "compiler_options": "-O0"}
    answer = server.submit(body).json()
    assert answer["status"]["id"] == 3, answer
    assert answer["stdout"] == "100000\n"
    small = server.submit({**body, "stack_limit": 8000}).json()
    assert small["status"]["id"] == 7, small  # SIGSEGV: the stack overflows at 8 MB


def test_max_file_size_below_one_megabyte(server: Server) -> None:
    src = "open('big', 'wb').write(b'x' * 200_000)\nprint('wrote')"
    small = server.submit({"source_code": src, "language_id": 71, "max_file_size": 100}).json()
    assert small["status"]["id"] in (8, 11), small  # SIGXFSZ or the error it raises
    assert small["stdout"] in (None, "")
    big = server.submit({"source_code": src, "language_id": 71, "max_file_size": 1024}).json()
    assert big["status"]["id"] == 3, big


def test_sub_second_cpu_limit_is_a_time_limit(server: Server) -> None:
    r = server.submit(
        {
            "source_code": "while True: pass",
            "language_id": 71,
            "cpu_time_limit": 0.5,
            "cpu_extra_time": 0.5,
        }
    )
    assert r.json()["status"]["id"] == 5, r.json()


def test_judge0_minimums_are_refused(server: Server) -> None:
    r = server.submit({"source_code": "1", "language_id": 71, "memory_limit": 2047})
    assert r.status_code == 422
    assert r.json() == {"memory_limit": ["must be greater than or equal to 2048"]}
    r = server.submit({"source_code": "1", "language_id": 71, "wall_time_limit": 0.5})
    assert r.status_code == 422


def test_per_process_limits_are_accepted(server: Server) -> None:
    r = server.submit(
        {
            "source_code": "print(1)",
            "language_id": 71,
            "enable_per_process_and_thread_time_limit": True,
            "enable_per_process_and_thread_memory_limit": True,
        }
    )
    assert r.status_code == 201 and r.json()["status"]["id"] == 3


def test_enable_network_gives_an_interface_beyond_loopback(server: Server) -> None:
    src = "import os; print(sorted(os.listdir('/sys/class/net')))"
    without = server.submit({"source_code": src, "language_id": 71}).json()
    assert without["stdout"] == "['lo']\n", without
    with_net = server.submit({"source_code": src, "language_id": 71, "enable_network": True})
    names = with_net.json()["stdout"]
    assert "lo" in names and names != "['lo']\n", with_net.json()


def test_enable_network_refused_without_the_flag(tmp_path: Path) -> None:
    srv = Server(tmp_path / "db.sqlite3", "--auth-token", "tok", "--pool-size", "0")
    try:
        r = srv.submit({"source_code": "1", "language_id": 71, "enable_network": True})
        assert r.status_code == 422
        assert r.json() == {"enable_network": ["enabling network is not allowed"]}
        # the auth token is accepted as a query parameter too, as in Judge0
        assert httpx.get(srv.url + "/about").status_code == 401
        assert httpx.get(srv.url + "/about?X-Auth-Token=tok").status_code == 200
        assert httpx.post(srv.url + "/authenticate", headers=srv.headers).status_code == 200
        assert httpx.post(srv.url + "/authenticate").status_code == 401
    finally:
        srv.stop()


# ---------------------------------------------------------------- bytes
def test_base64_output_is_byte_exact_and_text_is_refused(server: Server) -> None:
    src = "import sys; sys.stdout.buffer.write(bytes([0xfe, 0xff, 0x00, 0x80]))"
    body = {
        "source_code": b64(src),
        "language_id": 71,
        "expected_output": b64(bytes([0xFE, 0xFF, 0x00, 0x80])),
    }
    r = server.submit(body, "base64_encoded=true")
    answer = r.json()
    assert unb64(answer["stdout"]) == bytes([0xFE, 0xFF, 0x00, 0x80])
    assert answer["status"]["id"] == 3, answer  # byte expected_output compared as bytes
    plain = httpx.get(f"{server.url}/submissions/{answer['token']}")
    assert plain.status_code == 400
    assert plain.json() == {
        "error": "some attributes for this submission cannot be converted to UTF-8, "
        "use base64_encoded=true"
    }


def test_fields_by_id_and_star(server: Server) -> None:
    token = server.submit({"source_code": "print(1)", "language_id": 71}).json()["token"]
    r = httpx.get(f"{server.url}/submissions/{token}?fields=status_id,language_id")
    assert r.json() == {"status_id": 3, "language_id": 71}
    every = httpx.get(f"{server.url}/submissions/{token}?fields=*").json()
    assert every["status_id"] == 3 and every["language_id"] == 71
    assert every["status"] == {"id": 3, "description": "Accepted"}


def test_form_encoded_body(server: Server) -> None:
    r = httpx.post(
        f"{server.url}/submissions?wait=true",
        data={"source_code": "print(input())", "language_id": "71", "stdin": "form"},
        timeout=120,
    )
    assert r.status_code == 201 and r.json()["stdout"] == "form\n", r.text


# ---------------------------------------------------------------- callbacks
class _Receiver:
    """A callback receiver on 127.0.0.1: answers 500 to the first ``fail`` PUTs."""

    def __init__(self, fail: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.attempts = 0
        self.arrived = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                outer.attempts += 1
                data = self.rfile.read(int(self.headers.get("content-length", "0")))
                if outer.attempts <= fail:
                    self.send_response(500)
                    self.end_headers()
                    return
                outer.bodies.append(json.loads(data))
                self.send_response(200)
                self.end_headers()
                outer.arrived.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/done"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_callback_arrives_and_is_retried(server: Server) -> None:
    receiver = _Receiver(fail=1)
    try:
        r = httpx.post(
            f"{server.url}/submissions",
            json={"source_code": "print(7)", "language_id": 71, "callback_url": receiver.url},
        )
        token = r.json()["token"]
        assert receiver.arrived.wait(120), "no callback arrived"
        body = receiver.bodies[0]
        assert body["token"] == token
        assert body["status"] == {"id": 3, "description": "Accepted"}
        assert unb64(body["stdout"]) == b"7\n"  # Judge0 sends base64
        assert receiver.attempts == 2
    finally:
        receiver.close()


def test_failing_callback_keeps_the_result(server: Server) -> None:
    port = free_port()  # nobody listens there
    r = server.submit(
        {
            "source_code": "print(8)",
            "language_id": 71,
            "callback_url": f"http://127.0.0.1:{port}/cb",
        }
    )
    assert r.json()["stdout"] == "8\n"
    again = httpx.get(f"{server.url}/submissions/{r.json()['token']}").json()
    assert again["stdout"] == "8\n"


# ---------------------------------------------------------------- routes and headers
def test_system_routes(server: Server) -> None:
    get = lambda path: httpx.get(server.url + path)  # noqa: E731
    assert get("/version").text == "1.13.1"
    assert get("/isolate").headers["content-type"].startswith("text/plain")
    assert get("/license").status_code == 200
    info = get("/system_info").json()
    assert info["CPU(s)"] and info["Architecture"]
    workers = get("/workers").json()
    assert workers[0]["queue"] == "1.13.1" and workers[0]["available"] == 2
    stats = get("/statistics").json()
    assert stats["submissions"]["total"] >= 0 and "database" in stats
    assert len(stats["submissions"]["last_30_days"]) == 30
    created = datetime.fromisoformat(stats["created_at"])
    assert datetime.fromisoformat(stats["cached_until"]) - created == timedelta(minutes=10)
    config = get("/config_info").json()
    assert config["enable_compiler_options"] and config["enable_callbacks"]
    assert config["allow_enable_network"] is True


def test_languages_all_includes_archived(server: Server) -> None:
    rows = httpx.get(server.url + "/languages/all").json()
    by_id = {row["id"]: row for row in rows}
    assert set(by_id) == set(range(43, 90))
    assert by_id[84]["is_archived"] is True and by_id[70]["is_archived"] is False
    one = httpx.get(server.url + "/languages/87").json()
    assert one["is_archived"] is True
    assert httpx.get(server.url + "/languages/62").json()["source_file"] == "Main.java"


def test_listing_and_deleting_need_authorization(server: Server) -> None:
    admin = {"X-Auth-User": ADMIN}
    assert httpx.get(server.url + "/submissions").status_code == 403
    assert httpx.post(server.url + "/authorize").status_code == 403
    assert httpx.post(server.url + "/authorize", headers=admin).status_code == 200
    token = server.submit({"source_code": "print(2)", "language_id": 71}).json()["token"]
    page = httpx.get(server.url + "/submissions?per_page=2&page=1", headers=admin).json()
    assert len(page["submissions"]) <= 2
    assert page["meta"]["current_page"] == 1 and page["meta"]["total_count"] >= 1
    refused = httpx.get(server.url + "/submissions?page=0", headers=admin)
    assert (refused.status_code, refused.json()) == (400, {"error": "invalid page: 0"})
    refused = httpx.get(server.url + "/submissions?per_page=-1", headers=admin)
    assert (refused.status_code, refused.json()) == (400, {"error": "invalid per_page: -1"})
    assert httpx.delete(f"{server.url}/submissions/{token}").status_code == 403
    gone = httpx.delete(f"{server.url}/submissions/{token}", headers=admin)
    assert gone.status_code == 200 and gone.json()["token"] == token
    assert httpx.get(f"{server.url}/submissions/{token}").status_code == 404


def test_cors_as_judge0_default(server: Server) -> None:
    preflight = httpx.options(
        server.url + "/submissions",
        headers={
            "Origin": "http://ide.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    plain = httpx.get(server.url + "/languages", headers={"Origin": "http://ide.example"})
    assert plain.headers["access-control-allow-origin"] == "*"
