"""pydantic-ai through the MCP server (`sandboxkit mcp` over stdio), driven by
pydantic-ai's own TestModel and FunctionModel: no model is called.

pydantic-ai 2.x removed ``MCPServerStdio``; its ``MCPToolset`` (on FastMCP's client)
takes a stdio transport instead."""

from __future__ import annotations

import sys
from typing import Any

import pytest

pytest.importorskip("pydantic_ai")
pytest.importorskip("fastmcp")

from fastmcp.client.transports import StdioTransport
from pydantic_ai import Agent, BinaryContent
from pydantic_ai.mcp import MCPToolset
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel

pytestmark = pytest.mark.docker


def sandboxkit_toolset() -> MCPToolset[Any]:
    transport = StdioTransport(
        command=sys.executable, args=["-m", "sandboxkit", "mcp", "--max-timeout", "120"]
    )
    return MCPToolset(transport, tool_error_behavior="failed", init_timeout=120, read_timeout=180)


def _returns(messages: list[ModelMessage]) -> dict[str, Any]:
    return {
        p.tool_name: p.content for m in messages for p in m.parts if isinstance(p, ToolReturnPart)
    }


async def test_test_model_calls_our_tools() -> None:
    agent = Agent(
        TestModel(call_tools=["list_languages", "run_code"]), toolsets=[sandboxkit_toolset()]
    )
    async with agent:
        result = await agent.run("use the sandbox")
    returns = _returns(result.all_messages())
    names = {row["name"] for row in returns["list_languages"]["languages"]}
    assert {"python", "python-data"} <= names
    # TestModel's generated code ('a') fails: a normal tool result saying so
    assert "NameError" in str(returns["run_code"]) and "error" in str(returns["run_code"])


async def test_function_model_runs_code_and_gets_a_figure() -> None:
    plot = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()"

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = _returns(messages)
        if not done:
            return ModelResponse(
                parts=[
                    ToolCallPart("run_code", {"code": "print(6 * 7)"}, tool_call_id="c1"),
                    ToolCallPart(
                        "run_code",
                        {"code": plot, "language": "python-data", "timeout": 120},
                        tool_call_id="c2",
                    ),
                ]
            )
        return ModelResponse(parts=[TextPart("done")])

    agent = Agent(FunctionModel(script), toolsets=[sandboxkit_toolset()])
    async with agent:
        result = await agent.run("compute and plot")
    parts = [p for m in result.all_messages() for p in m.parts if isinstance(p, ToolReturnPart)]
    assert any("42" in str(p.content) for p in parts)
    images = [
        c
        for m in result.all_messages()
        for p in m.parts
        if isinstance(p, ToolReturnPart) and isinstance(p.content, list)
        for c in p.content
        if isinstance(c, BinaryContent)
    ]
    assert images and images[0].media_type == "image/png"
    assert images[0].data.startswith(b"\x89PNG")
