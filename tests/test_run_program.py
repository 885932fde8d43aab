"""The run layer's ``Program`` and a box's typed file jobs, against a stand-in agent: what
goes to the agent, in which order, and what comes back. No Docker (the real agent and
engine: tests/test_judge.py, tests/test_compile_chain.py, tests/test_sessions.py)."""

from __future__ import annotations

import base64
import json
from typing import Any, cast

import pytest

import sandboxkit as sk
from sandboxkit import _protocol as wire
from sandboxkit._backends import STREAM_STDOUT, Backend
from sandboxkit._container import Box, Resources, Shape
from sandboxkit._languages import get_language
from sandboxkit._run.program import Program, run_program
from sandboxkit._run.reader import final_result
from sandboxkit._validate import RunInput

C, PYTHON = get_language("c"), get_language("python")
LIMITS = sk.Limits(time=2.0)


class Agent:
    """An attached stream with a stand-in agent behind it: each job is answered as it is
    written (a run echoes its stdin on stdout; a compile step ends well and starts the
    run it carries; a file job is accepted). The real agent holds a job that comes while
    a run goes until that run ends; answering at once sends the same frames in order."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []
        self._reader = wire.FrameReader()
        self._out: list[bytes] = []
        self.closed = False

    async def write(self, data: bytes) -> None:
        for kind, payload in self._reader.feed(data):
            if kind == wire.JOB:
                self.jobs.append(json.loads(payload))
                self._answer(self.jobs[-1])

    def _answer(self, job: dict[str, Any]) -> None:
        if job["op"] != "run":
            self._send(wire.REPLY, json.dumps({"ok": True, "entries": []}).encode() + b"\0DATA")
        elif job["argv"] == list(C.compile or ()):
            self._send(wire.EXIT, json.dumps({"exit_code": 0, "then_started": "then" in job}))
            if "then" in job:
                self._answer(job["then"])
        else:
            stdin = base64.b64decode(job["stdin"] or "")
            self._send(wire.STDOUT, stdin)
            self._send(wire.EXIT, json.dumps({"exit_code": 0, "wall": 0.001}))

    def _send(self, kind: bytes, payload: bytes | str) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        self._out.append(wire.pack(kind, data))

    async def read(self) -> tuple[int, bytes] | None:
        assert self._out, "the host waits for a frame the agent never sends"
        return STREAM_STDOUT, self._out.pop(0)

    async def close(self) -> None:
        self.closed = True

    @property
    def at_eof(self) -> bool:
        return self.closed


class Engine:
    url = "fake://"

    async def update_resources(self, cid: str, **limits: Any) -> None:
        pass

    async def wait_removed(self, cid: str) -> bool:
        return True


def box_with(agent: Agent) -> Box:
    return Box(cast(Backend, Engine()), "c0ffee", agent, Shape(image="img:1"), Resources())


async def test_a_program_compiles_once_and_queues_the_next_run_ahead() -> None:
    agent = Agent()
    program = Program(box_with(agent), C, LIMITS, files={"main.c": b"int main;"})
    compiled = await program.compile()
    assert compiled is not None and compiled.status == "ok"
    assert [j["argv"] for j in agent.jobs] == [list(C.compile or ())]
    assert agent.jobs[0]["files"] == {"main.c": base64.b64encode(b"int main;").decode()}

    first = await program.result(b"1", ahead=b"2")
    # both jobs went before the first result was read; the sources went into the build
    assert first.stdout == "1" and len(agent.jobs) == 3
    assert [j["stdin"] for j in agent.jobs[1:]] == ["MQ==", "Mg=="]
    assert all(j["files"] == {} and j["argv"] == list(C.run) for j in agent.jobs[1:])
    assert not program.can_run(b"3") and program.can_run(b"2")

    second = await program.result(b"2")
    assert second.stdout == "2" and len(agent.jobs) == 3  # the agent had it already
    assert program.can_run(b"3")


async def test_a_run_for_another_input_than_the_queued_one_drops_the_sandbox() -> None:
    agent = Agent()
    box = box_with(agent)
    program = Program(box, C, LIMITS, files={"main.c": b""})
    await program.compile()
    await program.result(b"1", ahead=b"2")
    with pytest.raises(sk.SandboxError, match="queued run for another input"):
        await program.result(b"3")
    assert box.closed and not program.can_run(b"2")


async def test_a_run_left_midway_with_a_job_queued_behind_it_drops_the_sandbox() -> None:
    agent = Agent()
    box = box_with(agent)
    program = Program(box, C, LIMITS, files={"main.c": b""})
    await program.compile()
    events = program.run(b"1", ahead=b"2")
    assert (await events.__anext__()).kind == "stdout"
    await events.aclose()  # the queued run would start unseen: nothing may run it
    assert box.closed and not program.can_run(b"2")


async def test_an_interpreted_program_sends_its_sources_with_every_run() -> None:
    agent = Agent()
    program = Program(box_with(agent), PYTHON, LIMITS, files={"main.py": b"print(1)"})
    assert await program.compile() is None
    await program.result(b"a")
    await program.result(b"b", files={"input.txt": b"x"}, args=("input.txt",))
    sent = [(sorted(j["files"]), j["argv"][len(PYTHON.run) :]) for j in agent.jobs]
    assert sent == [(["main.py"], []), (["input.txt", "main.py"], ["input.txt"])]


async def test_a_one_shot_run_rides_along_with_its_compile_step() -> None:
    agent = Agent()
    job = RunInput({"main.c": b"int main;"}, b"in", LIMITS, {"K": "v"}, ("x",))
    result = await final_result(run_program(box_with(agent), C, job))
    [compile_step] = agent.jobs  # one job: the agent starts the run when the compile ends
    then = compile_step["then"]
    assert then["argv"] == [*C.run, "x"] and then["stdin"] == "aW4=" and then["env"]["K"] == "v"
    assert (result.status, result.stdout) == ("ok", "in")


async def test_a_box_sends_file_operations_as_typed_jobs() -> None:
    agent = Agent()
    box = box_with(agent)
    assert await box.write_file("d/a.txt", b"x", 0o755) == {"ok": True, "entries": []}
    assert await box.read_file("d/a.txt", 10) == ({"ok": True, "entries": []}, b"DATA")
    await box.list_files()
    await box.list_files("d")
    assert agent.jobs == [
        {"op": "write", "path": "d/a.txt", "data": "eA==", "mode": 0o755},
        {"op": "read", "path": "d/a.txt", "max_bytes": 10},
        {"op": "list"},
        {"op": "list", "path": "d"},
    ]
