"""smolagents: SandboxkitExecutor driven through its executor interface and through
CodeAgent's own step loop, with a scripted model (no model is called)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("smolagents")

from smolagents import CodeAgent, Tool
from smolagents.default_tools import FinalAnswerTool
from smolagents.models import ChatMessage, MessageRole, Model
from smolagents.monitoring import AgentLogger, LogLevel
from smolagents.utils import AgentError

from sandboxkit.integrations.smolagents import STATE_RESET, SandboxkitExecutor

pytestmark = pytest.mark.docker


class Adder(Tool):
    name = "adder"
    description = "Adds two integers."
    inputs = {
        "a": {"type": "integer", "description": "first"},
        "b": {"type": "integer", "description": "second"},
    }
    output_type = "integer"

    def forward(self, a: int, b: int) -> int:
        return a + b


@pytest.fixture(scope="module")
def executor() -> Iterator[SandboxkitExecutor]:
    ex = SandboxkitExecutor(logger=AgentLogger(level=LogLevel.OFF))
    yield ex
    ex.cleanup()


def test_state_logs_output_and_errors(executor: SandboxkitExecutor) -> None:
    out = executor("x = 20\nprint('step one')")
    assert out.logs == "step one\n" and out.output is None and not out.is_final_answer
    out = executor("x += 1\nx * 2")
    assert out.output == 42 and out.logs == ""
    out = executor("{'k': [1, 2]}")
    assert out.output == {"k": [1, 2]}
    out = executor("object()")
    assert isinstance(out.output, str) and out.output.startswith("<object")
    with pytest.raises(AgentError) as err:
        executor("print('before')\n1 / 0")
    text = str(err.value)
    assert "before" in text and "ZeroDivisionError" in text and "Traceback" in text
    assert executor("x").output == 21  # state survived the error


def test_variables_tools_and_final_answer(executor: SandboxkitExecutor) -> None:
    executor.send_variables({"name": "ada", "nums": [1, 2, 3]})
    assert executor("f'{name}:{sum(nums)}'").output == "ada:6"
    executor.send_tools({"adder": Adder(), "final_answer": FinalAnswerTool()})
    assert executor("adder(2, 3)").output == 5
    out = executor("print('done')\nfinal_answer({'answer': adder(40, 2)})")
    assert out.is_final_answer and out.output == {"answer": 42} and out.logs == "done\n"


def test_a_timeout_is_an_agent_error() -> None:
    import sandboxkit as sk

    with (
        SandboxkitExecutor(logger=AgentLogger(level=LogLevel.OFF), limits=sk.Limits(time=1)) as ex,
        pytest.raises(AgentError, match="timeout"),
    ):
        ex("while True: pass")


def test_after_a_timeout_the_tools_and_variables_are_back() -> None:
    import sandboxkit as sk

    with SandboxkitExecutor(logger=AgentLogger(level=LogLevel.OFF), limits=sk.Limits(time=1)) as ex:
        ex.send_tools({"adder": Adder(), "final_answer": FinalAnswerTool()})
        ex.send_variables({"name": "ada"})
        ex("x = 1")
        with pytest.raises(AgentError) as err:
            ex("print('looping', flush=True)\nwhile True: pass")
        text = str(err.value)
        assert "timeout" in text and "looping" in text and STATE_RESET in text
        assert ex("adder(2, 3)").output == 5  # the tools were defined again
        assert ex("name").output == "ada"  # and the variables sent again
        with pytest.raises(AgentError, match="NameError") as err:
            ex("x")  # what the steps defined is gone (the model was told)
        assert STATE_RESET not in str(err.value)
        out = ex("final_answer(adder(40, 2))")
        assert out.is_final_answer and out.output == 42


def test_a_restart_between_steps_is_repaired_before_the_step_runs() -> None:
    import asyncio

    # a thread of the interpreter has a process kill it once the test says "go"; that
    # process leaves "killed" when the interpreter is gone (reaped by the supervisor)
    killer = (
        "import os, subprocess, threading, time\n"
        "def later():\n"
        "    while not os.path.exists('go'):\n"
        "        time.sleep(0.01)\n"
        "    k = os.getpid()\n"
        "    subprocess.Popen(['sh', '-c', f'kill -9 {k}; "
        "while kill -0 {k} 2>/dev/null; do sleep 0.01; done; touch killed'])\n"
        "threading.Thread(target=later, daemon=True).start()\n"
        "x = 1"
    )
    with SandboxkitExecutor(logger=AgentLogger(level=LogLevel.OFF)) as ex:
        ex.send_tools({"adder": Adder()})
        ex(killer)
        ex._loop.call(ex.sandbox.write_file("go", b""))

        async def killed() -> bool:
            return "killed" in {e.path for e in await ex.sandbox.list_files()}

        for _ in range(500):
            if ex._loop.call(killed()):
                break
            ex._loop.call(asyncio.sleep(0.02))
        out = ex("print('x' in globals())\nadder(1, 2)")
        assert out.output == 3 and out.logs == f"{STATE_RESET}\nFalse\n"
        assert ex("adder(2, 2)").logs == ""


def test_a_step_deleting_the_wrapper_does_not_break_the_next(
    executor: SandboxkitExecutor,
) -> None:
    executor("y = 5\ndel globals()['__sandboxkit_step']")
    out = executor("y + 1")
    assert (out.output, out.logs) == (6, "")  # state kept, nothing said about a reset


class ScriptedModel(Model):
    """Answers with the next scripted reply: smolagents' own Model interface, no LLM."""

    def __init__(self, replies: list[str]) -> None:
        super().__init__(model_id="scripted")
        self.replies = list(replies)

    def generate(self, messages: list[Any], **kwargs: Any) -> ChatMessage:
        return ChatMessage(role=MessageRole.ASSISTANT, content=self.replies.pop(0))


def test_code_agent_runs_its_steps_in_the_sandbox() -> None:
    model = ScriptedModel(
        [
            "Thought: compute.\n<code>\nimport socket\nhost = socket.gethostname()\n"
            "total = adder(20, 22)\nprint(total)\n</code>",
            "Thought: answer.\n<code>\nfinal_answer(f'{host}:{total}')\n</code>",
        ]
    )
    executor = SandboxkitExecutor(logger=AgentLogger(level=LogLevel.OFF))
    agent = CodeAgent(tools=[Adder()], model=model, executor=executor, verbosity_level=0)
    try:
        answer = agent.run("What is 20 + 22?")
    finally:
        agent.cleanup()
    # the code ran in the sandbox (its hostname), with state kept between the steps
    assert answer == "sandbox:42"


def test_code_agent_goes_on_after_a_step_times_out() -> None:
    import sandboxkit as sk

    model = ScriptedModel(
        [
            "Thought: loop.\n<code>\ntotal = 1\nwhile True: pass\n</code>",
            "Thought: answer.\n<code>\nfinal_answer(adder(20, 22))\n</code>",
        ]
    )
    executor = SandboxkitExecutor(logger=AgentLogger(level=LogLevel.OFF), limits=sk.Limits(time=1))
    agent = CodeAgent(tools=[Adder()], model=model, executor=executor, verbosity_level=0)
    try:
        answer = agent.run("What is 20 + 22?")
    finally:
        agent.cleanup()
    assert answer == 42
    errors = [str(step.error) for step in agent.memory.steps if getattr(step, "error", None)]
    assert len(errors) == 1 and "timeout" in errors[0] and STATE_RESET in errors[0]
