"""The unmodified ``e2b`` and ``e2b-code-interpreter`` SDKs driving ``sandboxkit e2b``
on loopback: one server per module (in a thread, with its own event loop and pool)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

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


@pytest.fixture(scope="module")
def server(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[Settings]:
    settings = Settings(port=_free_port(), sandbox_port=_free_port(), api_keys=[KEY])
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: list[asyncio.Task[None]] = []

    async def main() -> None:
        async with sk.SandboxPool(languages=["python"], size=2) as pool:
            settings.pool = pool
            ready = asyncio.Event()
            task = asyncio.create_task(serve(settings, ready))
            stop.append(task)
            await ready.wait()
            started.set()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert started.wait(120), "the server did not start"
    # the SDK only ever reaches loopback: both URLs given, and its domain is localhost so
    # that anything it would build from the domain also stays on this machine
    monkeypatch_module.setenv("E2B_API_URL", f"http://127.0.0.1:{settings.port}")
    monkeypatch_module.setenv("E2B_SANDBOX_URL", f"http://127.0.0.1:{settings.sandbox_port}")
    monkeypatch_module.setenv("E2B_API_KEY", KEY)
    monkeypatch_module.setenv("E2B_DOMAIN", "localhost")
    monkeypatch_module.setenv("E2B_DEBUG", "false")
    yield settings
    loop.call_soon_threadsafe(stop[0].cancel)
    thread.join(60)


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
    assert "\r42\r\n" in text and "\r\n/work\r\n" in text
    term.disconnect()


def test_a_killed_sandbox_ends_its_terminal(server: Settings) -> None:
    from e2b import Sandbox, SandboxException
    from e2b.sandbox.commands.command_handle import PtySize

    box = Sandbox.create(template="base", timeout=60)
    term = box.pty.create(PtySize(rows=24, cols=80))
    box.kill()
    with pytest.raises(SandboxException):  # an error, not a hang or a clean exit
        term.wait()
