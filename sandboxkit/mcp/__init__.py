"""sandboxkit as an MCP server (the ``mcp`` extra): ``sandboxkit mcp``.

Tools: ``run_code``, ``create_session``, ``run_in_session``, ``write_file``,
``read_file``, ``list_files``, ``close_session``, ``list_languages``.

| module | one job |
| --- | --- |
| ``_caps`` | the server's caps and the clamping of a run's limits (pure) |
| ``_registry`` | the clients' sessions: owner, counts, idle time (pure) |
| ``_content`` | a run's result as MCP content: text, images, ``isError`` (pure) |
| ``_server`` | the tools on the SDK's ``MCPServer``, the pool, session teardown |
| ``_transports`` | stdio and streamable HTTP (loopback, or a bearer token) |
"""

from ._caps import Caps, ToolInputError
from ._server import SandboxkitMCP
from ._transports import serve_http, serve_stdio

__all__ = ["Caps", "SandboxkitMCP", "ToolInputError", "serve_http", "serve_stdio"]
