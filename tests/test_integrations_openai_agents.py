"""OpenAI Agents SDK: SandboxkitSandboxClient through the SDK's own session API and a
SandboxAgent run driven by the SDK's ScriptedModel (no model is called)."""

from __future__ import annotations

import io

import pytest

pytest.importorskip("agents")

from agents import RunConfig, Runner
from agents.sandbox import Manifest, SandboxAgent, SandboxRunConfig
from agents.sandbox.errors import ExecTimeoutError, WorkspaceReadNotFoundError
from agents.testing.model import ScriptedModel, assistant_message, function_call

import sandboxkit as sk
from sandboxkit.integrations.openai_agents import (
    SandboxkitClientOptions,
    SandboxkitSandboxClient,
)

pytestmark = pytest.mark.docker


async def test_session_exec_files_and_workspace_round_trip() -> None:
    client = SandboxkitSandboxClient()
    session = await client.create(options=SandboxkitClientOptions(time=30))
    async with session:
        r = await session.exec("echo hi; echo oops >&2; pwd")
        assert r.exit_code == 0 and r.stdout == b"hi\n/work\n" and r.stderr == b"oops\n"
        assert (await session.exec("exit 4")).exit_code == 4
        with pytest.raises(ExecTimeoutError):
            await session.exec("sleep 30", timeout=1)
        await session.write("notes/a.txt", io.BytesIO(b"abc"))
        assert (await session.read("/work/notes/a.txt")).read() == b"abc"
        assert (await session.exec("cat notes/a.txt")).stdout == b"abc"
        with pytest.raises(WorkspaceReadNotFoundError):
            await session.read("missing.txt")
        names = {e.path for e in await session.ls("/work/notes")}
        assert names == {"/work/notes/a.txt"}
        tar = await session.persist_workspace()

    other = await client.create(options=SandboxkitClientOptions())
    async with other:
        await other.hydrate_workspace(tar)
        assert (await other.exec("cat notes/a.txt")).stdout == b"abc"
    await client.delete(other)
    await client.delete(session)
    await sk.aclose()


async def test_sandbox_agent_runs_its_shell_tool_in_sandboxkit() -> None:
    model = ScriptedModel(
        [
            [
                function_call(
                    "exec_command",
                    {"cmd": "echo from-sandbox > out.txt; cat out.txt; cat /proc/1/cmdline"},
                    call_id="call-1",
                )
            ],
            [assistant_message("done")],
        ]
    )
    agent = SandboxAgent(name="worker", instructions="Use the shell.", model=model)
    client = SandboxkitSandboxClient()
    result = await Runner.run(
        agent,
        "write a file",
        run_config=RunConfig(
            tracing_disabled=True,
            sandbox=SandboxRunConfig(
                client=client, options=SandboxkitClientOptions(), manifest=Manifest()
            ),
        ),
    )
    assert result.final_output == "done"
    outputs = [
        str(getattr(item, "output", ""))
        for item in result.new_items
        if type(item).__name__ == "ToolCallOutputItem"
    ]
    # the command ran under sandboxkit's agent (PID 1 of the sandbox), not on the host
    assert any("from-sandbox" in o and "/opt/sandboxkit" in o for o in outputs), outputs
    await sk.aclose()
