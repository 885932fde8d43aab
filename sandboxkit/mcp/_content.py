"""A run's result as MCP tool content: the status, stdout and stderr as text, figures as
``image/png`` image content, other rich outputs as text. Pure."""

from __future__ import annotations

import base64
from typing import Any

from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent

from .._models import DisplayData, RunResult

# what a model reads of a rich output that is not an image, best first
_TEXT_TYPES = ("text/markdown", "application/json", "text/plain")
IMAGE_TYPES = ("image/png", "image/jpeg")


def summary(result: RunResult) -> str:
    """The run as one text block: status line, then each stream (empty ones omitted)."""
    bits = [f"status: {result.status}"]
    if result.exit_code is not None:
        bits.append(f"exit code {result.exit_code}")
    if result.signal is not None:
        bits.append(f"signal {result.signal}")
    bits.append(f"{result.duration:.3f} s")
    lines = [", ".join(bits)]
    if result.truncated:
        lines.append("(output was truncated at the server's cap)")
    if result.state_lost:
        lines.append(
            "(the session's Python state was reset: variables and imports from earlier "
            "runs are gone; define again what you need)"
        )
    for name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
        if text:
            lines.append(f"--- {name} ---")
            lines.append(text.rstrip("\n"))
    if not result.stdout and not result.stderr:
        lines.append("(no output)")
    return "\n".join(lines)


def output_blocks(output: DisplayData) -> list[ContentBlock]:
    """One rich output: an image block when it has an image, else its best text."""
    for mime in IMAGE_TYPES:
        if mime in output.data:
            return [ImageContent(type="image", data=output.data[mime], mime_type=mime)]
    if "image/svg+xml" in output.data and "text/plain" not in output.data:
        return [TextContent(type="text", text=output.data["image/svg+xml"])]
    for mime in _TEXT_TYPES:
        if mime in output.data:
            label = "result" if output.kind == "result" else "display"
            return [TextContent(type="text", text=f"[{label} {mime}]\n{output.data[mime]}")]
    return []


def structured(result: RunResult) -> dict[str, Any]:
    return {
        "status": result.status,
        "exit_code": result.exit_code,
        "signal": result.signal,
        "stdout": result.stdout,
        "stderr": result.stderr,
        "truncated": result.truncated,
        "state_lost": result.state_lost,
        "duration": result.duration,
        "outputs": [o.mime_types for o in result.outputs],
    }


def tool_result(result: RunResult, note: str | None = None) -> CallToolResult:
    """The tool's answer. A failure of the user's program is ``isError`` true, with the
    same content: a normal result the model reads, never a protocol error. The status,
    streams and timings are also structured content, unless the run showed a figure.
    ``note``: what the server changed in the call (a timeout lowered to its cap)."""
    text = summary(result) if note is None else f"note: {note}\n{summary(result)}"
    content: list[ContentBlock] = [TextContent(type="text", text=text)]
    for output in result.outputs:
        # a session's last expression already printed its text to stdout
        rich = (*IMAGE_TYPES, "text/markdown", "application/json")
        if output.kind == "result" and not any(m in output.data for m in rich):
            continue
        content += output_blocks(output)
    # with a figure, no structured content: clients that prefer it to the content blocks
    # (pydantic-ai does) would otherwise never show the model the image
    has_image = any(block.type == "image" for block in content)
    data = structured(result)
    if note is not None:
        data["note"] = note
    return CallToolResult(
        content=content,
        structured_content=None if has_image else data,
        is_error=not result.ok,
    )


# an image a model can look at, by its first bytes (what read_file returns as an image)
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def image_type(data: bytes) -> str | None:
    """The MIME type of ``data`` when it is a PNG, JPEG, GIF or WebP image."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def file_result(path: str, data: bytes) -> CallToolResult:
    """A file read from a session: an image as MCP image content (the model sees it),
    text as text, other bytes as ``base64:...`` text (and structured content)."""
    mime = image_type(data)
    if mime is not None:
        encoded = base64.b64encode(data).decode()
        # no structured content: clients that prefer it to the content blocks (pydantic-ai)
        # would otherwise never show the model the image
        return CallToolResult(
            content=[
                TextContent(type="text", text=f"{path}: {mime}, {len(data)} bytes"),
                ImageContent(type="image", data=encoded, mime_type=mime),
            ]
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        encoded = base64.b64encode(data).decode()
        return text_result(
            f"base64:{encoded}", {"path": path, "encoding": "base64", "content": encoded}
        )
    return text_result(text, {"path": path, "encoding": "utf-8", "content": text})


def error_result(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)


def text_result(text: str, data: dict[str, Any] | None = None) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)
