"""A pydantic-ai agent using sandboxkit's MCP server as its code-execution tools.

``sandboxkit mcp`` runs as a stdio subprocess; the agent sees ``run_code``,
``create_session``, ``run_in_session`` and the file tools. The model here is pydantic-ai's
``FunctionModel`` playing a scripted model (no network): replace it with
``"openai:gpt-5"`` or any model pydantic-ai supports.

pydantic-ai 2.x connects to MCP servers with ``MCPToolset`` (``MCPServerStdio`` was
removed); a FastMCP ``StdioTransport`` starts the server.

    pip install 'sandboxkit[pydantic-ai]'
"""

import asyncio
import sys

from fastmcp.client.transports import StdioTransport
from pydantic_ai import Agent
from pydantic_ai.mcp import MCPToolset
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

CODE = "import statistics\nprint(statistics.mean([3, 1, 4, 1, 5, 9, 2, 6]))"


def scripted(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Stand-in for a model: first run code, then answer with what came back."""
    returns = [
        part.content
        for message in messages
        for part in message.parts
        if part.part_kind == "tool-return"
    ]
    if not returns:
        return ModelResponse(parts=[ToolCallPart("run_code", {"code": CODE})])
    return ModelResponse(parts=[TextPart(f"The sandbox said: {returns[-1]}")])


async def quiet(message: object) -> None:
    """The server streams each run's output as log messages; this example ignores them."""


async def main() -> None:
    server = StdioTransport(command=sys.executable, args=["-m", "sandboxkit", "mcp"])
    tools = MCPToolset(server, tool_error_behavior="failed", init_timeout=120, log_handler=quiet)
    agent = Agent(FunctionModel(scripted), toolsets=[tools])
    async with agent:
        result = await agent.run("What is the mean of 3 1 4 1 5 9 2 6?")
    print(result.output)


if __name__ == "__main__":
    asyncio.run(main())
