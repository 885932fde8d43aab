"""Executors for agent frameworks, one module each, each its own extra (importing this
package imports none of them):

| module | framework | interface |
| --- | --- | --- |
| ``smolagents`` | smolagents | ``RemotePythonExecutor`` (``CodeAgent(executor=...)``) |
| ``deepagents`` | LangChain deepagents | ``BaseSandbox`` backend |
| ``openai_agents`` | OpenAI Agents SDK | a sandbox client and session |

pydantic-ai needs no module: it reaches sandboxkit through the MCP server
(``MCPServerStdio("sandboxkit", ["mcp"])``, see ``examples/pydantic_ai_agent.py``).

Frameworks call their executors synchronously from their own threads; each executor
runs sandboxkit's async API on one private event loop thread (:class:`LoopThread`).
"""
