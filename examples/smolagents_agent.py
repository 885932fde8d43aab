"""A smolagents CodeAgent whose code runs in a sandboxkit session.

The model here is scripted (no weights, no network): swap ``ScriptedModel`` for your
provider's model (``InferenceClientModel``, ``LiteLLMModel``, ...). The executor is the
real one: each step's code runs in the sandbox, variables persist between steps, tools
are sent in, and ``final_answer`` ends the run.

    pip install 'sandboxkit[smolagents]'
"""

from typing import Any

from smolagents import CodeAgent, Tool
from smolagents.models import ChatMessage, MessageRole, Model
from smolagents.monitoring import AgentLogger, LogLevel

from sandboxkit.integrations.smolagents import SandboxkitExecutor


class Fibonacci(Tool):
    name = "fibonacci"
    description = "The n-th Fibonacci number."
    inputs = {"n": {"type": "integer", "description": "index, from 0"}}
    output_type = "integer"

    def forward(self, n: int) -> int:
        a, b = 0, 1
        for _ in range(n):
            a, b = b, a + b
        return a


class ScriptedModel(Model):
    """Stand-in for a model: replies with the next scripted step."""

    STEPS = (
        "Thought: get a few numbers with the tool.\n<code>\n"
        "values = [fibonacci(n) for n in range(10)]\nprint(values)\n</code>",
        "Thought: `values` is still defined: sum it.\n<code>\nfinal_answer(sum(values))\n</code>",
    )

    def __init__(self) -> None:
        super().__init__(model_id="scripted")
        self.step = 0

    def generate(self, messages: list[Any], **kwargs: Any) -> ChatMessage:
        reply = self.STEPS[self.step]
        self.step += 1
        return ChatMessage(role=MessageRole.ASSISTANT, content=reply)


def main() -> None:
    executor = SandboxkitExecutor(logger=AgentLogger(level=LogLevel.OFF))
    agent = CodeAgent(
        tools=[Fibonacci()], model=ScriptedModel(), executor=executor, verbosity_level=0
    )
    try:
        answer = agent.run("What is the sum of the first ten Fibonacci numbers?")
    finally:
        agent.cleanup()  # closes the sandbox session
    print(f"answer: {answer}")


if __name__ == "__main__":
    main()
