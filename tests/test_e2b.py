"""The unmodified ``e2b`` and ``e2b-code-interpreter`` SDKs driving ``sandboxkit e2b``
on loopback: one server per module (in a thread, with its own event loop and pool)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("e2b")
pytest.importorskip("e2b_code_interpreter")

import sandboxkit as sk
from sandboxkit.e2b import Settings, serve

pytestmark = pytest.mark.docker

KEY = "e2b_sandboxkit_test_key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _serving(templates: dict[str, str] | None = None, **pool: Any) -> Iterator[Settings]:
    """``sandboxkit e2b`` in a thread of its own (its event loop, its pool), with the
    operator's ``templates`` (their images built before it serves)."""
    from sandboxkit.e2b._templates import resolve

    extra = resolve(templates)
    settings = Settings(
        port=_free_port(), sandbox_port=_free_port(), api_keys=[KEY], templates=templates or {}
    )
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: list[asyncio.Task[None]] = []

    async def main() -> None:
        async with sk.SandboxPool(**pool) as made:
            settings.pool = made
            for template_id in templates or {}:
                await made.image_for(extra[template_id].spec)
            ready = asyncio.Event()
            task = asyncio.create_task(serve(settings, ready))
            stop.append(task)
            await ready.wait()
            started.set()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert started.wait(600), "the server did not start (its images building?)"
    try:
        yield settings
    finally:
        loop.call_soon_threadsafe(stop[0].cancel)
        thread.join(60)


@pytest.fixture(scope="module")
def server(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[Settings]:
    # the templates' languages, warm (their images built before the first create)
    with _serving(
        {"js-box": "javascript"}, languages=["e2b-base", "e2b-code-interpreter"], size=2
    ) as settings:
        # the SDK only ever reaches loopback: both URLs given, and its domain is localhost
        # so that anything it would build from the domain also stays on this machine
        monkeypatch_module.setenv("E2B_API_URL", f"http://127.0.0.1:{settings.port}")
        monkeypatch_module.setenv("E2B_SANDBOX_URL", f"http://127.0.0.1:{settings.sandbox_port}")
        monkeypatch_module.setenv("E2B_API_KEY", KEY)
        monkeypatch_module.setenv("E2B_DOMAIN", "localhost")
        monkeypatch_module.setenv("E2B_DEBUG", "false")
        yield settings


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def sbx(server: Settings) -> Iterator[object]:
    from e2b import Sandbox

    box = Sandbox.create(template="base", timeout=120, metadata={"suite": "e2b"}, envs={"A": "1"})
    yield box
    box.kill()


def test_api_key_is_checked(server: Settings) -> None:
    from e2b import AuthenticationException, Sandbox

    with pytest.raises(AuthenticationException):
        Sandbox.create(template="base", api_key="e2b_wrong")


def test_unknown_template_is_404(server: Settings) -> None:
    from e2b import Sandbox, SandboxException

    with pytest.raises(SandboxException):
        Sandbox.create(template="no-such-template")


def test_info_list_and_connect(sbx: object) -> None:
    from e2b import Sandbox

    assert isinstance(sbx, Sandbox)
    info = sbx.get_info()
    assert info.sandbox_id == sbx.sandbox_id and info.template_id == "base"
    assert info.metadata == {"suite": "e2b"}
    from e2b import SandboxQuery

    listed = Sandbox.list(query=SandboxQuery(metadata={"suite": "e2b"})).next_items()
    assert [s.sandbox_id for s in listed] == [sbx.sandbox_id]
    assert Sandbox.list(query=SandboxQuery(metadata={"suite": "other"})).next_items() == []
    again = Sandbox.connect(sbx.sandbox_id)
    assert again.commands.run("echo $A").stdout == "1\n"


def test_commands(sbx: object) -> None:
    from e2b import CommandExitException, Sandbox

    assert isinstance(sbx, Sandbox)
    out = sbx.commands.run("echo hi; echo err >&2")
    assert (out.stdout, out.stderr, out.exit_code) == ("hi\n", "err\n", 0)
    assert sbx.commands.run("pwd", cwd="/tmp").stdout == "/tmp\n"
    assert sbx.commands.run("echo $B", envs={"B": "2"}).stdout == "2\n"
    with pytest.raises(CommandExitException) as failed:
        sbx.commands.run("exit 3")
    assert failed.value.exit_code == 3
    seen: list[str] = []
    sbx.commands.run("for i in 1 2 3; do echo $i; sleep 0.05; done", on_stdout=seen.append)
    assert "".join(seen) == "1\n2\n3\n"


def test_background_command_and_kill(sbx: object) -> None:
    from e2b import Sandbox

    assert isinstance(sbx, Sandbox)
    handle = sbx.commands.run("sleep 30", background=True)
    assert any(p.pid == handle.pid for p in sbx.commands.list())
    assert sbx.commands.kill(handle.pid)
    deadline = time.monotonic() + 10
    while any(p.pid == handle.pid for p in sbx.commands.list()):
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_files(sbx: object) -> None:
    from e2b import NotFoundException, Sandbox

    assert isinstance(sbx, Sandbox)
    sbx.files.write("/tmp/e2b/a.txt", "hello")
    assert sbx.files.read("/tmp/e2b/a.txt") == "hello"
    assert sbx.files.exists("/tmp/e2b/a.txt")
    assert not sbx.files.exists("/tmp/e2b/missing")
    assert sbx.files.make_dir("/tmp/e2b/sub")
    assert not sbx.files.make_dir("/tmp/e2b/sub")
    names = sorted(e.name for e in sbx.files.list("/tmp/e2b"))
    assert names == ["a.txt", "sub"]
    info = sbx.files.get_info("/tmp/e2b/a.txt")
    assert (info.name, info.size) == ("a.txt", 5)
    sbx.files.rename("/tmp/e2b/a.txt", "/tmp/e2b/b.txt")
    assert sbx.files.read("/tmp/e2b/b.txt") == "hello"
    sbx.files.remove("/tmp/e2b/b.txt")
    assert not sbx.files.exists("/tmp/e2b/b.txt")
    with pytest.raises(NotFoundException):
        sbx.files.read("/tmp/e2b/b.txt")


def test_timeout_kills_the_sandbox(server: Settings) -> None:
    from e2b import Sandbox

    box = Sandbox.create(template="base", timeout=60)
    box.set_timeout(1)
    deadline = time.monotonic() + 10
    while box.is_running():
        assert time.monotonic() < deadline, "the sandbox outlived its timeout"
        time.sleep(0.2)
    assert box.sandbox_id not in [s.sandbox_id for s in Sandbox.list().next_items()]


def test_code_interpreter_keeps_state(server: Settings) -> None:
    from e2b_code_interpreter import Sandbox

    box = Sandbox.create(timeout=120)
    try:
        first = box.run_code("x = 1\nprint('side')")
        assert first.logs.stdout == ["side\n"] and first.results == []
        second = box.run_code("x + 1")
        assert second.text == "2" and second.logs.stdout == []
        failed = box.run_code("1 / 0")
        assert failed.error is not None and failed.error.name == "ZeroDivisionError"
        assert failed.error.value == "division by zero"
    finally:
        box.kill()


def test_run_code_streams_while_the_cell_runs(server: Settings) -> None:
    from e2b_code_interpreter import Sandbox

    box = Sandbox.create(timeout=120)
    try:
        seen: list[tuple[str, float]] = []
        code = (
            "import sys, time\nprint('first')\nprint('warn', file=sys.stderr)\n"
            "time.sleep(1.5)\nprint('second')\n"
        )
        run = box.run_code(
            code,
            on_stdout=lambda m: seen.append((m.line, time.monotonic())),
            on_stderr=lambda m: seen.append((m.line, time.monotonic())),
        )
        ended = time.monotonic()
        lines = [line for line, _ in seen]  # two pipes: their order is not kept
        assert sorted(lines[:2]) == ["first\n", "warn\n"] and lines[2:] == ["second\n"]
        assert ended - seen[0][1] > 1.0, "the first line came only when the cell ended"
        assert run.logs.stdout == ["first\n", "second\n"] and run.logs.stderr == ["warn\n"]
        assert run.execution_count == 1 and box.run_code("1").execution_count == 2
    finally:
        box.kill()


def test_a_cell_may_outlast_a_session_runs_time_limit(server: Settings) -> None:
    from e2b_code_interpreter import Sandbox

    box = Sandbox.create(timeout=120)
    try:  # sandboxkit's default run limit is 10 s; an E2B cell lives as long as the box
        done = box.run_code("import time; time.sleep(10.5); 'awake'")
        assert done.error is None and done.text == "awake"
    finally:
        box.kill()


def test_code_contexts_bash_and_env(server: Settings) -> None:
    from e2b_code_interpreter import Sandbox

    box = Sandbox.create(timeout=120, envs={"KEPT": "sandbox"})
    try:
        box.run_code("x = 1")
        other = box.create_code_context()
        assert other.id in [c.id for c in box.list_code_contexts()]
        missing = box.run_code("x", context=other)
        assert missing.error is not None and missing.error.name == "NameError"
        assert missing.error.value == "name 'x' is not defined"
        box.run_code("y = 5", context=other)
        assert box.run_code("y * 2", context=other).text == "10"
        box.restart_code_context(other)
        assert box.run_code("y", context=other).error is not None
        box.remove_code_context(other)
        assert other.id not in [c.id for c in box.list_code_contexts()]
        assert box.run_code("x").text == "1"  # the default context was never touched
        # a string result is shown without its quotes; envs last one execution
        read = "import os; os.getenv('KEPT')"
        assert box.run_code(read, envs={"KEPT": "cell"}).text == "cell"
        assert box.run_code(read).text == "sandbox"
        bash = box.run_code("echo $KEPT; echo oops >&2; exit 3", language="bash")
        assert bash.logs.stdout == ["sandbox\n"] and bash.logs.stderr == ["oops\n"]
        assert bash.error is not None
        shell = box.run_code("print('py')\n!echo sh")
        assert "".join(shell.logs.stdout) == "py\nsh\n"  # in order, however chunked
    finally:
        box.kill()


def _node_kernels(box: Any) -> int:
    """How many JavaScript kernels (node processes) run in the box."""
    # the pattern's brackets keep grep's own command line from matching it
    count = "grep -l 'jskerne[l]' /proc/[0-9]*/cmdline 2>/dev/null | wc -l"
    return int(box.commands.run(count).stdout.strip())


def test_javascript_context_keeps_state_and_streams(server: Settings) -> None:
    from e2b_code_interpreter import Sandbox

    box = Sandbox.create(timeout=120, envs={"KEPT": "sandbox"})
    try:
        assert "javascript" in [c.language for c in box.list_code_contexts()]
        streamed: list[str] = []
        first = box.run_code(
            "const x = 41; console.log('one', { x }); console.error('two'); x + 1",
            language="js",
            on_stdout=lambda m: streamed.append(m.line),
        )
        assert first.error is None and first.text == "42" and first.execution_count == 1
        assert first.logs.stdout == ["one { x: 41 }\n"] and first.logs.stderr == ["two\n"]
        assert streamed == ["one { x: 41 }\n"]
        again = box.run_code("x", language="javascript")
        assert again.text == "41" and again.execution_count == 2
        assert box.run_code("'a string'", language="js").text == "a string"  # unquoted
        failed = box.run_code("missing + 1", language="js")
        assert failed.error is not None and failed.error.name == "ReferenceError"
        assert failed.error.value == "missing is not defined"
        assert failed.error.traceback.startswith("ReferenceError: missing is not defined")
        # per-execution envs over the sandbox's, for that cell only
        read = "process.env.KEPT"
        assert box.run_code(read, language="js", envs={"KEPT": "cell"}).text == "cell"
        assert box.run_code(read, language="js").text == "sandbox"
        # each line goes out while the cell still runs
        seen: list[tuple[str, float]] = []
        slow = box.run_code(
            "console.log('early')\nawait new Promise((r) => setTimeout(r, 1500))\n"
            "console.log('late')",
            language="js",
            on_stdout=lambda m: seen.append((m.line, time.monotonic())),
        )
        ended = time.monotonic()
        assert slow.error is None and [line for line, _ in seen] == ["early\n", "late\n"]
        assert ended - seen[0][1] > 1.0, "the first line came only when the cell ended"
        assert box.run_code("await Promise.resolve(7) * 6", language="js").text == "42"
    finally:
        box.kill()


def test_javascript_contexts_apart_and_restarted(server: Settings) -> None:
    from e2b_code_interpreter import Sandbox

    box = Sandbox.create(timeout=120)
    try:
        box.run_code("var shared = 'default'", language="js")
        one = box.create_code_context(language="js")
        two = box.create_code_context(language="javascript", cwd="/tmp")
        assert one.language == "javascript" and two.language == "javascript"
        box.run_code("let v = 'one'", context=one)
        assert box.run_code("typeof v", context=two).text == "undefined"
        assert box.run_code("typeof shared", context=one).text == "undefined"
        assert box.run_code("process.cwd()", context=two).text == "/tmp"
        assert box.run_code("process.cwd()", context=one).text == "/home/user"
        assert _node_kernels(box) == 3  # the default context's, one's and two's
        box.restart_code_context(one)
        assert _node_kernels(box) == 2
        emptied = box.run_code("v", context=one)
        assert emptied.error is not None and emptied.error.name == "ReferenceError"
        box.remove_code_context(two)
        assert two.id not in [c.id for c in box.list_code_contexts()]
        assert box.run_code("shared", language="js").text == "default"  # untouched
        assert _node_kernels(box) == 2  # the default's and one's new one
        # a kernel that exits ends its cell with an error; the next cell has a new one
        ended = box.run_code("process.exit(3)", context=one)
        assert ended.error is not None and "status 3" in ended.error.value
        assert box.run_code("1 + 1", context=one).text == "2"
    finally:
        box.kill()


def test_a_javascript_cell_given_up_by_its_client_stops_its_kernel(server: Settings) -> None:
    from e2b.exceptions import TimeoutException
    from e2b_code_interpreter import Sandbox

    box = Sandbox.create(timeout=120)
    try:
        context = box.create_code_context(language="js")
        box.run_code("var kept = 1", context=context)
        with pytest.raises(TimeoutException):
            box.run_code("while (true) {}", context=context, timeout=2)
        _until(lambda: _node_kernels(box) == 0, "the busy kernel to be stopped")
        fresh = box.run_code("typeof kept", context=context)  # a new kernel, emptied
        assert fresh.error is None and fresh.text == "undefined"
    finally:
        box.kill()


def test_run_code_charts_and_data(server: Settings) -> None:
    from e2b_code_interpreter import Sandbox
    from e2b_code_interpreter.charts import BarChart, LineChart

    box = Sandbox.create(timeout=120)
    try:
        bars = box.run_code(
            "import matplotlib.pyplot as plt\n"
            "plt.bar(['a', 'b'], [3, 4], label='n'); plt.title('T'); plt.ylabel('v (s)')\n"
            "plt.show()\n"
        )
        shown = bars.results[0]
        assert shown.png and not shown.is_main_result
        assert isinstance(shown.chart, BarChart) and shown.chart.title == "T"
        assert [(b.label, b.value, b.group) for b in shown.chart.elements] == [
            ("a", 3, "n"),
            ("b", 4, "n"),
        ]
        assert shown.chart.y_unit == "s"
        line = box.run_code("plt.plot([1, 2], [3, 4], label='up'); plt.show()")
        assert isinstance(line.results[0].chart, LineChart)
        assert line.results[0].chart.elements[0].points == [(1.0, 3.0), (2.0, 4.0)]
        several = box.run_code(
            "fig, ax = plt.subplots(); ax.pie([3, 1], labels=['x', 'y']); plt.show()\n"
            "fig, ax = plt.subplots(); ax.boxplot([[1, 2, 3, 4, 5, 30]], labels=['g'])\n"
            "plt.show()\n"
            "fig, axs = plt.subplots(1, 2); fig.suptitle('S'); axs[0].plot([1], [2])\n"
            "axs[1].scatter([1, 2], [3, 4]); plt.show()\n"
            "fig, ax = plt.subplots(); ax.add_artist(plt.Circle((0, 0), 1)); plt.show()\n"
        )
        pie, boxes, sup, unknown = (r.chart for r in several.results)
        assert [(w.label, w.angle) for w in pie.elements] == [("x", 270), ("y", 90)]
        (group,) = boxes.elements
        assert (group.label, group.median, group.outliers) == ("g", 3.5, [30])
        assert (group.min, group.first_quartile, group.third_quartile, group.max) == (
            1,
            2.25,
            4.75,
            5,
        )
        assert sup.title == "S" and [c.type for c in sup.elements] == ["line", "scatter"]
        assert unknown.type == "unknown" and unknown.elements == []
        frame = box.run_code("import pandas as pd\npd.DataFrame({'a': [1, 2]})")
        assert frame.results[0].is_main_result and frame.results[0].data == {"a": [1, 2]}
    finally:
        box.kill()


def test_pause_and_connect_resumes(server: Settings) -> None:
    from e2b import Sandbox

    box = Sandbox.create(template="base", timeout=120)
    try:
        box.files.write("/home/user/kept.txt", "still here")
        box.pause()
        assert box.get_info().state == "paused"
        resumed = Sandbox.connect(box.sandbox_id)
        assert resumed.get_info().state == "running"
        assert resumed.files.read("/home/user/kept.txt") == "still here"
    finally:
        box.kill()


def test_connect_to_a_process_and_send_stdin(sbx: object) -> None:
    from e2b import Sandbox

    assert isinstance(sbx, Sandbox)
    handle = sbx.commands.run("read line; echo got $line", background=True, stdin=True)
    again = sbx.commands.connect(handle.pid)
    sbx.commands.send_stdin(handle.pid, "hello\n")
    assert again.wait().stdout == "got hello\n"


def test_list_pages(server: Settings) -> None:
    from e2b import Sandbox, SandboxQuery

    boxes = [Sandbox.create(template="base", metadata={"page": "yes"}) for _ in range(2)]
    try:
        pages = Sandbox.list(query=SandboxQuery(metadata={"page": "yes"}), limit=1)
        first, second = pages.next_items(), pages.next_items()
        assert len(first) == len(second) == 1 and not pages.has_next
        assert {first[0].sandbox_id, second[0].sandbox_id} == {b.sandbox_id for b in boxes}
    finally:
        for box in boxes:
            box.kill()


def test_list_order_filters_and_cursor_pages(server: Settings) -> None:
    """E2B's list: newest first by default, ``order``, ``template``, ``started_after``
    filters, and a page token that neither skips nor repeats when sandboxes come and go."""
    import uuid
    from datetime import timedelta

    from e2b import Sandbox, SandboxQuery

    tag = {"order_test": str(uuid.uuid4())}
    query = SandboxQuery(metadata=tag)
    boxes = [Sandbox.create(template="base", metadata=tag) for _ in range(3)]
    made = [b.sandbox_id for b in boxes]
    late: list[Any] = []
    try:
        assert [s.sandbox_id for s in Sandbox.list(query=query).next_items()] == made[::-1]
        asc = Sandbox.list(query=query, order="asc").next_items()
        assert [s.sandbox_id for s in asc] == made
        pages = Sandbox.list(query=query, limit=1)
        seen = [s.sandbox_id for s in pages.next_items()]
        late.append(Sandbox.create(template="base", metadata=tag))  # newer than any seen
        boxes[1].kill()  # the next page's sandbox goes: the one after it comes instead
        while pages.has_next:
            seen += [s.sandbox_id for s in pages.next_items()]
        assert seen == [made[2], made[0]]
        started = boxes[2].get_info().started_at
        after = Sandbox.list(query=SandboxQuery(metadata=tag, started_after=started))
        assert {s.sandbox_id for s in after.next_items()} == {made[2], late[0].sandbox_id}
        later = SandboxQuery(metadata=tag, started_after=started + timedelta(hours=1))
        assert Sandbox.list(query=later).next_items() == []
        other = SandboxQuery(metadata=tag, template="code-interpreter-v1")
        assert Sandbox.list(query=other).next_items() == []
        base = Sandbox.list(query=SandboxQuery(metadata=tag, template="base")).next_items()
        assert len(base) == 3
    finally:
        for box in [boxes[0], boxes[2], *late]:
            box.kill()


def test_list_refuses_a_bad_order_or_token(server: Settings) -> None:
    import httpx

    with httpx.Client(
        base_url=f"http://127.0.0.1:{server.port}", headers={"X-API-Key": KEY}
    ) as api:
        assert api.get("/v2/sandboxes", params={"order": "up"}).status_code == 400
        assert api.get("/v2/sandboxes", params={"nextToken": "%%"}).status_code == 400
        assert api.get("/v2/sandboxes", params={"startedAfter": "soon"}).status_code == 400


def test_command_env_vars_are_scoped_to_the_command(sbx: object) -> None:
    from e2b import Sandbox

    assert isinstance(sbx, Sandbox)
    assert sbx.commands.run("echo $FOO", envs={"FOO": "bar"}).stdout == "bar\n"
    assert sbx.commands.run('echo "[$FOO]"').stdout == "[]\n"


def test_mcp_gateway_failure_leaves_no_sandbox(server: Settings) -> None:
    """The SDK starts ``mcp-gateway`` as root after the create; it fails here (runc:
    root is refused; there is no gateway binary either) and the SDK kills the sandbox:
    none is left running."""
    import uuid

    from e2b import Sandbox, SandboxException, SandboxQuery

    tag = {"mcp_test": str(uuid.uuid4())}
    with pytest.raises(SandboxException, match="not available on this server"):
        Sandbox.create(template="base", metadata=tag, mcp={"invalid_server": {}})  # type: ignore[arg-type]
    assert Sandbox.list(query=SandboxQuery(metadata=tag)).next_items() == []


IFACES = 'python3 -c "import socket; print(sorted(n for _, n in socket.if_nameindex()))"'


def test_network_allow_out_is_the_egress_policy(server: Settings) -> None:
    from e2b import Sandbox
    from e2b.exceptions import SandboxException

    # no traffic is sent: only whether the sandbox has a way out at all is looked at
    plain = Sandbox.create(template="base", timeout=60)
    try:
        assert plain.commands.run(IFACES).stdout.strip() == "['lo']"  # no network
    finally:
        plain.kill()
    allowed = Sandbox.create(
        template="base", timeout=60, network={"allow_out": ["api.example.test"]}
    )
    try:
        assert plain.sandbox_id != allowed.sandbox_id
        assert allowed.commands.run(IFACES).stdout.strip() != "['lo']"  # its own network
    finally:
        allowed.kill()
    with pytest.raises(SandboxException, match="domain names only"):
        Sandbox.create(template="base", timeout=60, network={"allow_out": ["10.0.0.0/8"]})


def _until(check: object, what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_pty_size_input_resize_and_exit(sbx: object) -> None:
    from e2b import Sandbox
    from e2b.sandbox.commands.command_handle import PtySize

    assert isinstance(sbx, Sandbox)
    term = sbx.pty.create(PtySize(rows=24, cols=80))
    sbx.pty.send_stdin(term.pid, b"stty size\n")
    screen = b""
    for _, _, chunk in term:  # the shell's answer before resizing (no typeahead race)
        screen += chunk or b""
        if b"24 80\r\n" in screen:
            break
    sbx.pty.resize(term.pid, PtySize(rows=30, cols=100))
    sbx.pty.send_stdin(term.pid, b"stty size; echo $TERM; exit 0\n")
    rest: list[bytes] = []
    assert term.wait(on_pty=rest.append).exit_code == 0
    text = b"".join(rest).decode(errors="replace")
    assert "30 100\r\n" in text and "xterm-256color" in text


def test_pty_kill(sbx: object) -> None:
    from e2b import CommandExitException, Sandbox
    from e2b.sandbox.commands.command_handle import PtySize

    assert isinstance(sbx, Sandbox)
    term = sbx.pty.create(PtySize(rows=24, cols=80))
    assert sbx.pty.kill(term.pid)
    with pytest.raises(CommandExitException):
        term.wait()
    assert not sbx.pty.kill(term.pid)  # gone: E2B's "not found" is False


def test_async_pty_on_data(sbx: object) -> None:
    from e2b import AsyncSandbox, Sandbox
    from e2b.sandbox.commands.command_handle import PtySize

    assert isinstance(sbx, Sandbox)

    async def main() -> str:
        box = await AsyncSandbox.connect(sbx.sandbox_id)
        seen: list[bytes] = []
        term = await box.pty.create(PtySize(rows=24, cols=80), on_data=seen.append)
        await box.pty.send_stdin(term.pid, b"echo $((6 * 7)); exit\n")
        await term.wait()
        return b"".join(seen).decode(errors="replace")

    assert "42" in asyncio.run(main())


def test_watch_dir_polled(sbx: object) -> None:
    from e2b import FilesystemEventType, NotFoundException, Sandbox

    assert isinstance(sbx, Sandbox)
    sbx.files.make_dir("/tmp/watched")
    handle = sbx.files.watch_dir("/tmp/watched", recursive=True)
    try:
        sbx.files.make_dir("/tmp/watched/sub")
        sbx.files.write("/tmp/watched/sub/a.txt", "hello")
        sbx.files.remove("/tmp/watched/sub/a.txt")
        seen: list[tuple[str, object]] = []

        def all_seen() -> bool:
            seen.extend((e.name, e.type) for e in handle.get_new_events())
            return ("sub/a.txt", FilesystemEventType.REMOVE) in seen

        _until(all_seen, "the watcher did not see the changes")
        assert ("sub", FilesystemEventType.CREATE) in seen
        assert ("sub/a.txt", FilesystemEventType.CREATE) in seen
    finally:
        handle.stop()
    with pytest.raises(NotFoundException):
        sbx.files.watch_dir("/tmp/no-such-dir")


def test_async_watch_dir_on_event(sbx: object) -> None:
    from e2b import AsyncSandbox, FilesystemEvent, FilesystemEventType, Sandbox

    assert isinstance(sbx, Sandbox)

    async def main() -> list[tuple[str, FilesystemEventType]]:
        box = await AsyncSandbox.connect(sbx.sandbox_id)
        await box.files.make_dir("/tmp/streamed")
        seen: list[tuple[str, FilesystemEventType]] = []
        got = asyncio.Event()

        def on_event(event: FilesystemEvent) -> None:
            seen.append((event.name, event.type))
            if event.type == FilesystemEventType.WRITE:
                got.set()

        handle = await box.files.watch_dir("/tmp/streamed", on_event=on_event)
        try:
            await box.files.write("/tmp/streamed/b.txt", "x")
            await asyncio.wait_for(got.wait(), 10)
        finally:
            await handle.stop()
        return seen

    seen = asyncio.run(main())
    assert ("b.txt", FilesystemEventType.CREATE) in seen
    assert ("b.txt", FilesystemEventType.WRITE) in seen


def test_pty_stream_input_and_connect(sbx: object) -> None:
    from e2b import Sandbox
    from e2b.sandbox.commands.command_handle import PtySize

    assert isinstance(sbx, Sandbox)
    term = sbx.pty.create(PtySize(rows=24, cols=80), cwd="/home/user")
    again = sbx.pty.connect(term.pid)
    sbx.pty.stream_input(term.pid, [b"echo $((", "6 * 7", ")); pwd; exit\n"])
    screen: list[bytes] = []
    assert again.wait(on_pty=screen.append).exit_code == 0
    text = b"".join(screen).decode(errors="replace")
    assert "\r42\r\n" in text and "\r\n/home/user\r\n" in text
    term.disconnect()


def test_a_killed_sandbox_ends_its_terminal(server: Settings) -> None:
    from e2b import Sandbox, SandboxException
    from e2b.sandbox.commands.command_handle import PtySize

    box = Sandbox.create(template="base", timeout=60)
    term = box.pty.create(PtySize(rows=24, cols=80))
    box.kill()
    with pytest.raises(SandboxException):  # an error, not a hang or a clean exit
        term.wait()


# ---------------------------------------------------------------- templates (issue 24, item 3)
def test_base_template_is_e2b_shaped(sbx: object) -> None:
    from e2b import Sandbox

    assert isinstance(sbx, Sandbox)
    out = sbx.commands.run("whoami; pwd; echo $HOME; cd ~ && pwd; id -u")
    assert out.stdout.split() == ["user", "/home/user", "/home/user", "/home/user", "65534"]
    tools = sbx.commands.run("bash --version | head -1; node --version; git --version; python3 -V")
    lines = tools.stdout.splitlines()
    assert len(lines) == 4 and lines[0].startswith("GNU bash")
    assert lines[1].startswith("v") and lines[2].startswith("git version")
    assert lines[3].startswith("Python 3")
    sbx.files.write("relative.txt", "in the home")
    assert sbx.commands.run("cat /home/user/relative.txt").stdout == "in the home"
    assert sbx.files.read("/home/user/relative.txt") == "in the home"
    assert "relative.txt" in [e.name for e in sbx.files.list("/home/user")]
    assert sbx.commands.run("ls ~/relative.txt && test -O ~/relative.txt").exit_code == 0


def test_code_interpreter_template_has_the_data_stack(server: Settings) -> None:
    from e2b_code_interpreter import Sandbox

    box = Sandbox.create(timeout=120)
    try:
        assert box.get_info().template_id == "code-interpreter-v1"
        done = box.run_code("import numpy, pandas, matplotlib\nnumpy.arange(4).sum()")
        assert done.error is None and done.text == "6"
        assert box.commands.run("whoami; pwd").stdout.split() == ["user", "/home/user"]
        # the kernel works in the home, where a relative files.write lands
        box.files.write("data.txt", "42")
        assert box.run_code("import os\nos.getcwd()").text == "/home/user"
        assert box.run_code("open('data.txt').read()").text == "42"  # a str shown bare, as E2B does
    finally:
        box.kill()


def test_unknown_template_is_e2b_404(server: Settings) -> None:
    import httpx

    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as client:
        r = client.post("/v2/sandboxes", json={"templateID": "nope"}, headers={"X-API-Key": KEY})
    assert r.status_code == 404 and r.json() == {
        "code": 404,
        "message": "template 'nope' not found",
    }


def test_a_template_registered_from_a_language_spec() -> None:
    from sandboxkit.e2b import template_from
    from sandboxkit.e2b._templates import parse_template_flag, resolve

    assert parse_template_flag("js-box=javascript") == ("js-box", "javascript")
    with pytest.raises(sk.InvalidInput):
        parse_template_flag("no-language")
    with pytest.raises(sk.InvalidInput):
        template_from("Bad Id", "python")
    with pytest.raises(sk.InvalidInput):
        template_from("x", "no-such-language")
    templates = resolve({"js-box": "javascript"})
    js = templates["js-box"]
    assert js.language == "e2b-javascript" and sk.get_language("e2b-javascript") == js.spec
    assert js.spec.env["HOME"] == "/home/user" and "nodejs" in js.spec.packages
    assert {"base", "code-interpreter-v1", "js-box"} <= set(templates)


# ---------------------------------------------------------------- secure sandboxes
def _envd(server: Settings, sandbox_id: str, headers: dict[str, str] | None = None) -> object:
    import httpx

    return httpx.Client(
        base_url=f"http://127.0.0.1:{server.sandbox_port}",
        headers={"E2b-Sandbox-Id": sandbox_id, "E2b-Sandbox-Port": "49983", **(headers or {})},
    )


def test_secure_sandbox_needs_its_access_token(server: Settings, sbx: object) -> None:
    import httpx
    from e2b import Sandbox

    assert isinstance(sbx, Sandbox)
    token = sbx._envd_access_token  # what the create response carried
    assert token
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as api:
        detail = api.get(f"/sandboxes/{sbx.sandbox_id}", headers={"X-API-Key": KEY})
        assert detail.json()["envdAccessToken"] == token  # what get_info and connect carry
    # the SDK sends it: every call works (the fixture's other tests too)
    assert sbx.commands.run("echo ok").stdout == "ok\n"
    stat = {"path": "/tmp"}
    for headers, status in (
        ({}, 401),
        ({"X-Access-Token": "wrong"}, 401),
        ({"X-Access-Token": token}, 200),
    ):
        with _envd(server, sbx.sandbox_id, headers) as client:
            assert isinstance(client, httpx.Client)
            r = client.post("/filesystem.Filesystem/Stat", json=stat)
            assert r.status_code == status, (headers, r.text)
            files = client.get("/files", params={"path": "/tmp"})
            assert files.status_code == (400 if status == 200 else 401), files.text
            assert client.get("/health").status_code == 204  # envd's probe stays open
    with _envd(server, sbx.sandbox_id) as client:
        assert isinstance(client, httpx.Client)
        r = client.post("/filesystem.Filesystem/Stat", json=stat)
        assert r.json()["message"].startswith("unauthorized access")
        run = client.post("/execute", json={"code": "1"}, headers={"E2b-Sandbox-Port": "49999"})
        assert run.status_code == 401


def test_signed_file_urls(server: Settings, sbx: object) -> None:
    import httpx
    from e2b import Sandbox

    assert isinstance(sbx, Sandbox)
    sbx.files.write("signed.txt", "by signature")
    headers = {"E2b-Sandbox-Id": sbx.sandbox_id, "E2b-Sandbox-Port": "49983"}
    with httpx.Client(headers=headers) as client:  # no access token: the URL's signature
        url = sbx.download_url("signed.txt")
        assert "signature=v1_" in url
        base = f"http://127.0.0.1:{server.sandbox_port}"
        got = client.get(base + url[url.index("/files") :])
        assert got.status_code == 200 and got.text == "by signature"
        up = sbx.upload_url("up.txt", use_signature_expiration=60)
        sent = client.post(base + up[up.index("/files") :], files={"file": ("up.txt", b"up")})
        assert sent.status_code == 200, sent.text
        assert sbx.files.read("up.txt") == "up"
        expired = sbx.download_url("signed.txt", use_signature_expiration=-10)
        late = client.get(base + expired[expired.index("/files") :])
        assert late.status_code == 401 and "expired" in late.json()["message"]
        forged = base + url[url.index("/files") :].replace("signed.txt", "up.txt")
        assert client.get(forged).status_code == 401


def test_a_signed_url_needs_no_sdk_headers(server: Settings, sbx: object) -> None:
    """A ``download_url`` opened by any HTTP client (no ``E2b-Sandbox-Id``): its
    signature, keyed by the sandbox's token, names the sandbox."""
    import json
    import urllib.error
    import urllib.request

    from e2b import Sandbox

    assert isinstance(sbx, Sandbox)
    sbx.files.write("plain.txt", "no headers")
    with urllib.request.urlopen(sbx.download_url("plain.txt", "user", 60)) as got:
        assert got.status == 200 and got.read() == b"no headers"
    with pytest.raises(urllib.error.HTTPError) as late:
        urllib.request.urlopen(sbx.download_url("plain.txt", "user", -60))
    assert late.value.code == 401
    assert json.loads(late.value.read()) == {"code": 401, "message": "signature is already expired"}
    forged = sbx.download_url("plain.txt", "user").replace("plain.txt", "signed.txt")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(forged)
    assert refused.value.code == 401  # no sandbox signed it: envd's refusal
    assert json.loads(refused.value.read())["message"] == "invalid signature"


def test_a_sandbox_created_not_secure_accepts_any_request(server: Settings) -> None:
    import httpx

    api = httpx.Client(base_url=f"http://127.0.0.1:{server.port}", headers={"X-API-Key": KEY})
    with api:
        made = api.post("/sandboxes", json={"templateID": "base", "secure": False})
        assert made.status_code == 201 and "envdAccessToken" not in made.json()
        sandbox_id = made.json()["sandboxID"]
        try:
            with _envd(server, sandbox_id) as client:
                assert isinstance(client, httpx.Client)
                r = client.post("/filesystem.Filesystem/Stat", json={"path": "/tmp"})
                assert r.status_code == 200 and r.json()["entry"]["type"] == "FILE_TYPE_DIRECTORY"
        finally:
            api.delete(f"/sandboxes/{sandbox_id}")


# ---------------------------------------------------------------- metrics
def test_metrics(sbx: object) -> None:
    from e2b import Sandbox

    assert isinstance(sbx, Sandbox)
    sbx.commands.run("head -c 3000000 /dev/urandom > ~/blob")  # 3 MB on the home's tmpfs
    metric = sbx.get_metrics()[-1]  # the latest: measured now, after those of before
    assert metric.cpu_count == 1 and 0 <= metric.cpu_used_pct <= 100
    assert 0 < metric.mem_used <= metric.mem_total <= 256 * 1024 * 1024
    assert 3_000_000 <= metric.disk_used < metric.disk_total
    sbx.commands.run("rm ~/blob")
    after = sbx.get_metrics()[-1]
    assert after.disk_used < metric.disk_used - 2_900_000
    assert after.timestamp >= metric.timestamp
    from e2b import SandboxNotFoundException

    with pytest.raises(SandboxNotFoundException):
        Sandbox.get_metrics("inosuchsandbox")


def test_metrics_time_range(server: Settings) -> None:
    """``get_metrics(start, end)``: the metrics measured within the range, none from
    before the sandbox was."""
    from datetime import datetime, timedelta, timezone

    from e2b import Sandbox

    begin = datetime.now(timezone.utc)
    box = Sandbox.create(template="base", timeout=60)
    try:
        first = box.get_metrics()
        time.sleep(1.1)
        second = box.get_metrics()
        assert len(second) == len(first) + 1 and second[:-1] == first  # a history
        now = datetime.now(timezone.utc)
        ranged = box.get_metrics(start=begin, end=now)
        assert ranged[: len(second)] == second
        # the bounds are whole seconds (the SDK's); the last was measured by that call
        low, high = begin.replace(microsecond=0), now.replace(microsecond=0) + timedelta(seconds=1)
        assert all(low <= m.timestamp < high for m in ranged)
        only_last = box.get_metrics(start=second[-1].timestamp, end=now)
        assert second[0] not in only_last and second[-1] in only_last
        before = box.get_metrics(
            start=begin - timedelta(hours=1), end=begin - timedelta(minutes=30)
        )
        assert before == []
    finally:
        box.kill()


def test_metrics_of_several_sandboxes(server: Settings, sbx: object) -> None:
    import httpx
    from e2b import Sandbox

    assert isinstance(sbx, Sandbox)
    with httpx.Client(
        base_url=f"http://127.0.0.1:{server.port}", headers={"X-API-Key": KEY}
    ) as api:
        got = api.get("/sandboxes/metrics", params={"sandbox_ids": f"{sbx.sandbox_id},inope"})
        assert got.status_code == 200
        sandboxes = got.json()["sandboxes"]
        assert list(sandboxes) == [sbx.sandbox_id] and sandboxes[sbx.sandbox_id]["memTotal"] > 0
        assert api.get("/sandboxes/metrics").status_code == 400


# ---------------------------------------------------------------- user="root" (item 6)
def test_root_is_refused_under_runc_with_the_reason(sbx: object) -> None:
    from e2b import Sandbox, SandboxException

    assert isinstance(sbx, Sandbox)
    # this engine has no userns-remap (the test would say nothing on one that has)
    if _engine_info().user_namespaces:
        pytest.skip("the engine remaps uids: root is allowed under runc there")
    with pytest.raises(SandboxException, match="runsc") as refused:
        sbx.commands.run("id -u", user="root")
    assert "uid 0" in str(refused.value)
    with pytest.raises(SandboxException, match="runsc"):
        sbx.pty.create(_pty_size(), user="root")
    assert sbx.commands.run("id -u", user="user").stdout == "65534\n"


def _engine_info() -> Any:
    from sandboxkit._backends import connect

    async def ask() -> Any:
        engine = connect()
        try:
            return await engine.info()
        finally:
            await engine.close()

    return asyncio.run(ask())


def _pty_size() -> object:
    from e2b.sandbox.commands.command_handle import PtySize

    return PtySize(rows=24, cols=80)


@pytest.fixture(scope="module")
def gvisor_server() -> Iterator[Settings]:
    if "runsc" not in _engine_info().runtimes:
        pytest.skip("the engine has no runsc (gVisor) runtime")
    with _serving(languages=["e2b-base"], size=1, runtime="runsc") as settings:
        yield settings


def _gvisor(settings: Settings) -> dict[str, str]:
    return {
        "api_url": f"http://127.0.0.1:{settings.port}",
        "sandbox_url": f"http://127.0.0.1:{settings.sandbox_port}",
        "api_key": KEY,
        "domain": "localhost",
    }


def test_root_under_gvisor_is_uid_0_without_capabilities(gvisor_server: Settings) -> None:
    from e2b import Sandbox

    opts = _gvisor(gvisor_server)
    box, other = Sandbox.create(timeout=120, **opts), Sandbox.create(timeout=120, **opts)
    try:
        out = box.commands.run("whoami; id -u; pwd; echo $HOME", user="root")
        assert out.stdout.split() == ["root", "0", "/root", "/root"]
        caps = box.commands.run("grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status", user="root")
        assert [line.split()[1] for line in caps.stdout.splitlines()] == ["0" * 16] * 3
        # the system directories are the box's own: written here, unseen next door
        made = ("/etc/e2b-root-test", "/usr/local/bin/e2b-tool")
        wrote = f"echo mine > {made[0]} && touch {made[1]} && cat {made[0]}"
        assert box.commands.run(wrote, user="root").stdout == "mine\n"
        # (python's stat: this gVisor answers coreutils' statx with EINVAL)
        look = f'python3 -c "import os; print(*[os.path.exists(p) for p in {made!r}])"'
        assert box.commands.run(look).stdout == "True True\n"
        assert other.commands.run(look, user="root").stdout == "False False\n"
        # the sandbox's user stays itself: root's files are not its to change
        from e2b import CommandExitException

        with pytest.raises(CommandExitException):
            box.commands.run("echo no > /etc/e2b-root-test")
        assert box.commands.run("whoami").stdout == "user\n"
        term = box.pty.create(_pty_size(), user="root")  # type: ignore[arg-type]
        screen: list[bytes] = []
        box.pty.send_stdin(term.pid, b"id -u; exit\n")
        assert term.wait(on_pty=screen.append).exit_code == 0
        text = b"".join(screen).decode(errors="replace")
        assert "root@sandbox:~# " in text and "\r0\r\n" in text
    finally:
        box.kill()
        other.kill()


# ---------------------------------------------------------------- the command line
def test_cli_refuses_a_bad_template_or_runtime() -> None:
    from typer.testing import CliRunner

    from sandboxkit.cli import app

    runner = CliRunner()
    bad = runner.invoke(app, ["e2b", "--template", "no-language-given"])
    assert bad.exit_code == 2 and "NAME=LANGUAGE" in bad.output
    unknown = runner.invoke(app, ["e2b", "--template", "box=no-such-language"])
    assert unknown.exit_code == 2 and "unknown language" in unknown.output
    runtime = runner.invoke(app, ["e2b", "--runtime", "kata"])
    assert runtime.exit_code == 2 and "runc or runsc" in runtime.output


def test_sandboxkit_images_lists_the_templates(server: Settings) -> None:
    from typer.testing import CliRunner

    from sandboxkit._images.dockerfile import build_context
    from sandboxkit.cli import app
    from sandboxkit.e2b._templates import BASE, CODE_INTERPRETER

    listed = CliRunner().invoke(app, ["images", "list"])  # built by the server's pool
    assert listed.exit_code == 0, listed.output
    for template in (BASE, CODE_INTERPRETER):
        tag = build_context(template.spec).tag
        rows = [line for line in listed.output.splitlines() if tag in line]
        assert len(rows) == 1 and "current" in rows[0], listed.output


def test_an_operators_template_runs_its_language(server: Settings) -> None:
    from e2b import Sandbox

    box = Sandbox.create(template="js-box", timeout=60)  # Settings(templates={"js-box": ...})
    try:
        assert box.get_info().template_id == "js-box"
        box.files.write("main.js", "console.log(6 * 7)")
        out = box.commands.run("node main.js && whoami && pwd")
        assert out.stdout.split() == ["42", "user", "/home/user"]
    finally:
        box.kill()
