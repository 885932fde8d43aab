"""A LangChain deep agent whose file and shell tools run in a sandboxkit session.

``SandboxkitBackend`` is a deepagents ``BaseSandbox``: the agent's ``execute``,
``write_file``, ``read_file``, ``ls``, ``edit_file``, ``glob`` and ``grep`` tools act in
one sandbox (files persist between calls; paths are under ``/work``). The model here is a
scripted stand-in (no network, no API key): swap ``ScriptedChatModel()`` for any
LangChain chat model (``init_chat_model("provider:model")``, or a model string).

    pip install 'sandboxkit[deepagents]'
"""

from typing import Any

from deepagents import create_deep_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from sandboxkit.integrations.deepagents import SandboxkitBackend

SCRIPT = "import statistics\nprint(statistics.mean([3, 1, 4, 1, 5, 9, 2, 6]))\n"


class ScriptedChatModel(BaseChatModel):
    """Stand-in for a chat model: write a script, run it, answer with what it printed."""

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Any, **kwargs: Any) -> "ScriptedChatModel":
        return self  # the script knows the tools' names: write_file, execute

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        results = [m for m in messages if isinstance(m, ToolMessage)]
        if not results:
            call = {"name": "write_file", "args": {"file_path": "/work/mean.py", "content": SCRIPT}}
            reply = AIMessage("", tool_calls=[{**call, "id": "call-1"}])
        elif len(results) == 1:
            call = {"name": "execute", "args": {"command": "python3 mean.py"}}
            reply = AIMessage("", tool_calls=[{**call, "id": "call-2"}])
        else:
            printed = str(results[-1].content).splitlines()[0]
            reply = AIMessage(f"The sandbox printed {printed}.")
        return ChatResult(generations=[ChatGeneration(message=reply)])


def main() -> None:
    with SandboxkitBackend(language="python") as backend:  # one session; closed at the end
        agent = create_deep_agent(model=ScriptedChatModel(), backend=backend)
        state = agent.invoke(
            {"messages": [{"role": "user", "content": "Mean of 3 1 4 1 5 9 2 6?"}]}
        )
        print(state["messages"][-1].content)
        # the backend is usable directly too: the agent's file is still there
        print(backend.execute("ls /work && python3 /work/mean.py").output)


if __name__ == "__main__":
    main()
