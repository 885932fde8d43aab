"""An LLM tool-call loop: a model writes Python, we run it in a session, output goes back.

The "model" here is a scripted stand-in (no model weights or network are needed); swap
``fake_model`` for your provider's chat call. The shape of the loop is the real one: the
model sees each tool result, and state (variables, files) persists between its calls.
"""

import asyncio
import json

import sandboxkit as sk

SCRIPT = [
    {"tool": "python", "code": "import statistics\ndata = [3, 1, 4, 1, 5, 9, 2, 6]\nlen(data)"},
    {"tool": "python", "code": "statistics.mean(data), statistics.median(data)"},
    {"tool": "python", "code": "import time\nwhile True: time.sleep(1)"},  # a runaway
    # a timeout restarts the interpreter: the tool result says the state was reset
    # (RunResult.state_lost), so the model defines its data again before using it
    {"tool": "python", "code": "data = [3, 1, 4, 1, 5, 9, 2, 6]\nprint(sorted(data)[-3:])"},
    {"answer": "The mean is 3.875, the median 3.5, and the top three are 5, 6 and 9."},
]


def fake_model(history: list[dict[str, str]]) -> dict[str, str]:
    """Stand-in for a chat-completion call: returns the next scripted step."""
    steps = sum(1 for m in history if m["role"] == "tool")
    return SCRIPT[steps]


def tool_message(result: sk.RunResult) -> str:
    """What the model sees: status, output (already capped by limits), errors, and
    whether the interpreter restarted (its variables and imports are gone)."""
    message = {
        "status": result.status,
        "stdout": result.stdout[-2000:],
        "stderr": result.stderr[-2000:],
    }
    if result.state_lost:
        message["note"] = "the Python state was reset: define again what you need"
    return json.dumps(message)


async def main() -> None:
    history = [{"role": "user", "content": "Describe the data set."}]
    limits = sk.Limits(time=2, memory_mb=256, output_bytes=20_000)
    async with sk.Sandbox(language="python", keep_state=True, limits=limits) as sb:
        while True:
            step = fake_model(history)
            if "answer" in step:
                print("model:", step["answer"])
                break
            print(">>> model runs:\n" + step["code"])
            result = await sb.run(step["code"])
            print(f"<<< {result.status}: {result.stdout.strip() or result.stderr.strip()[-200:]}")
            if result.state_lost:
                print("<<< (the Python state was reset)")
            history.append({"role": "tool", "content": tool_message(result)})
    await sk.aclose()


if __name__ == "__main__":
    asyncio.run(main())
