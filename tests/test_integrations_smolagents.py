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

from sandboxkit.integrations.smolagents import SandboxkitExecutor

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
