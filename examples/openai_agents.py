"""An OpenAI Agents SDK ``SandboxAgent`` whose shell runs in a sandboxkit session.

``SandboxkitSandboxClient`` is the SDK's sandbox client: pass it in
``SandboxRunConfig(client=...)`` and the agent's ``exec_command`` (and the SDK's file
tools) act in one sandbox, with ``/workspace`` mapped to its workdir. The model here is
the SDK's own ``ScriptedModel`` (no network, no API key): drop ``model=`` to use the
default OpenAI model, or pass any model the SDK supports.

    pip install 'sandboxkit[openai-agents]'
"""

import asyncio

from agents import RunConfig, Runner, ToolCallOutputItem
from agents.sandbox import Manifest, SandboxAgent, SandboxRunConfig
from agents.testing.model import ScriptedModel, assistant_message, function_call

import sandboxkit as sk
from sandboxkit.integrations.openai_agents import SandboxkitClientOptions, SandboxkitSandboxClient

COMMAND = "echo 'print(sum([3, 1, 4, 1, 5, 9, 2, 6]))' > sum.py && python3 sum.py"


async def main() -> None:
    client = SandboxkitSandboxClient()

    # 1. An agent run: the scripted model calls the shell tool once, then answers.
    model = ScriptedModel(
        [
            [function_call("exec_command", {"cmd": COMMAND}, call_id="call-1")],
            [assistant_message("The sum is 31.")],
        ]
    )
    agent = SandboxAgent(name="calc", instructions="Use the shell to compute.", model=model)
    config = RunConfig(
        tracing_disabled=True,
        sandbox=SandboxRunConfig(
            client=client,
            options=SandboxkitClientOptions(language="python", time=30),
            manifest=Manifest(),
        ),
    )
    result = await Runner.run(agent, "Sum 3 1 4 1 5 9 2 6.", run_config=config)
    for item in result.new_items:
        if isinstance(item, ToolCallOutputItem):  # what exec_command returned to the model
            print("tool output:", str(item.output).strip())
    print("answer:", result.final_output)

    # 2. The same client without an agent: a session of your own.
    session = await client.create(options=SandboxkitClientOptions(language="bash"))
    async with session:
        r = await session.exec("echo hello from $(hostname) && uname -s")
        print(r.exit_code, r.stdout.decode().strip())
    await client.delete(session)
    await sk.aclose()


if __name__ == "__main__":
    asyncio.run(main())
