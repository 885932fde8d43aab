"""smolagents: :class:`SandboxkitExecutor`, a ``RemotePythonExecutor`` over a sandboxkit
session (``CodeAgent(tools=..., model=..., executor=SandboxkitExecutor())``).

Written against smolagents 1.26 (``RemotePythonExecutor.run_code_raise_errors`` returns a
``CodeOutput``; ``send_tools``/``send_variables`` run code in the remote namespace; the
``final_answer`` tool is patched by the base class to raise ``FinalAnswerException``).

One Python session (``keep_state=True``) holds the agent's state between steps. Each
step runs inside a small wrapper that separates what smolagents needs from the printed
logs: the value of the step's last expression, a final answer, or the error, sent back
as a rich output of a private MIME type.

When the session's interpreter restarts (a step timed out or ran out of memory,
``os._exit``: the result says ``state_lost``), the executor puts back what it was given:
its wrapper, the tools (``send_tools``) and the variables (``send_variables``). What the
steps defined is gone: the step's error, or its logs, tell the model so
(:data:`STATE_RESET`), as smolagents hands both back to it.
"""

from __future__ import annotations

import json
from typing import Any

from smolagents.local_python_executor import CodeOutput
from smolagents.monitoring import AgentLogger, LogLevel
from smolagents.remote_executors import RemotePythonExecutor
from smolagents.tools import Tool, get_tools_definition_code
from smolagents.utils import AgentError

from .._models import Limits, RunResult
from .._sandbox import Sandbox
from .._sandbox_pool import SandboxPool
from ._loop import LoopThread

MIME = "application/x-sandboxkit-step+json"
#: Told to the model when the sandbox's interpreter restarted (in the step's error, or
#: at the head of its logs when the step itself then ran).
STATE_RESET = (
    "sandboxkit: the sandbox's Python state was reset (its interpreter restarted), so "
    "variables and imports from earlier steps are gone; the tools are defined again. "
    "Define again what you still need."
)
# The step's call: when the wrapper is not there (the interpreter restarted between
# steps), nothing runs and the cell's value says so.
_NO_WRAPPER = "sandboxkit: no step wrapper"

# Runs in the session's kernel: the step's code in the kernel's __main__ namespace (so
# state persists), the outcome as one display output of MIME.
_WRAPPER = """
def __sandboxkit_step(src, mime):
    import ast, json, traceback
    ns = globals()
    class _Out:
        def __init__(self, payload): self.payload = payload
        def _repr_mimebundle_(self, include=None, exclude=None):
            return {mime: json.dumps(self.payload, default=repr)}
    try:
        tree = ast.parse(src, "<code>")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, "<code>", "exec"), ns)
        value = eval(compile(last, "<code>", "eval"), ns) if last is not None else None
    except BaseException as exc:
        if type(exc).__name__ == "FinalAnswerException":
            display(_Out({"final": exc.value}))
        else:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next))
            display(_Out({"error": {"name": type(exc).__name__, "value": str(exc),
                                    "traceback": tb}}))
        return
    out = {"output": None}
    if value is not None:
        try:
            json.dumps(value)
            out = {"output": value}
        except (TypeError, ValueError):
            png = getattr(value, "_repr_png_", None)
            data = png() if callable(png) else None
            if isinstance(data, bytes):
                import base64
                out = {"png": base64.b64encode(data).decode()}
            else:
                out = {"output": repr(value)}
    display(_Out(out))
"""


def _guard_imports(code: str) -> str:
    """Top-level ``import x`` / ``from x import y`` lines, each tried."""
    lines = []
    for line in code.splitlines():
        if line.startswith(("import ", "from ")) and not line.startswith("from __future__"):
            lines += ["try:", f"    {line}", "except ImportError:", "    pass"]
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


class SandboxkitExecutor(RemotePythonExecutor):
    """smolagents' remote executor, running each code step in one sandboxkit session.

    Args:
        additional_imports: modules the agent's code imports. Sandboxes have no network,
            so nothing is pip-installed: they must already be in the image (use
            ``language="python-data"`` for numpy/pandas/matplotlib, or a spec of your own
            with ``pip_packages``); missing ones are reported at start.
        logger: smolagents' ``AgentLogger`` (default: one at INFO).
        language: a Python language (``"python"``, ``"python-data"``, your own).
        limits: limits of each step (default: sandboxkit's).
        pool: the :class:`~sandboxkit.SandboxPool` to take the session from.
    """

    def __init__(
        self,
        additional_imports: list[str] | None = None,
        logger: AgentLogger | None = None,
        *,
        language: str = "python",
        limits: Limits | None = None,
        pool: SandboxPool | None = None,
        allow_pickle: bool = False,
    ) -> None:
        super().__init__(
            list(additional_imports or []), logger or AgentLogger(level=LogLevel.INFO), allow_pickle
        )
        self._loop = LoopThread()
        self._default_pool = pool is None  # then this loop's default pool is ours to close
        # what the executor was given, put back when the interpreter restarts
        self._tools: dict[str, Tool] = {}
        self._variables: dict[str, Any] = {}
        self._restoring = False
        self.sandbox = Sandbox(language, keep_state=True, limits=limits, pool=pool)
        self._loop.call(self.sandbox.open())
        self._install_wrapper()
        self.installed_packages = self.install_packages(self.additional_imports)

    # ------------------------------------------------------------------ smolagents API
    def install_packages(self, additional_imports: list[str]) -> list[str]:
        """No network in a sandbox: check the modules are there instead of installing."""
        if not additional_imports:
            return []
        probe = (
            "import importlib.util as u\n"
            f"print(','.join(m for m in {list(additional_imports)!r} "
            "if u.find_spec(m.split('.')[0]) is None))"
        )
        missing = [m for m in self._run(probe).stdout.strip().split(",") if m]
        if missing:
            self.logger.log(
                f"sandboxkit: not in the {self.sandbox.language!r} image: {', '.join(missing)}"
                " (sandboxes have no network: use an image that has them)",
                level=LogLevel.INFO,
            )
        return [m for m in additional_imports if m not in missing]

    def send_tools(self, tools: dict[str, Tool]) -> None:
        """As the base class does, except that nothing is pip-installed and the imports
        smolagents hoists out of tool methods (``PIL`` for ``final_answer``) may be absent
        from the image: each top-level import is tried, as the methods themselves do."""
        if "final_answer" in tools:
            self._patch_final_answer_with_exception(tools["final_answer"])
        self._tools.update(tools)
        self._define_tools(tools)

    def send_variables(self, variables: dict[str, Any]) -> None:
        """As the base class does; kept, to be sent again after a restart."""
        self._variables.update(variables)
        super().send_variables(variables)

    def _define_tools(self, tools: dict[str, Tool]) -> None:
        wanted = {
            pkg
            for tool in tools.values()
            for pkg in tool.to_dict()["requirements"]
            if pkg not in [*self.installed_packages, "smolagents"]
        }
        if wanted:
            self.installed_packages += self.install_packages(sorted(wanted))
        code = get_tools_definition_code(tools)
        if code:
            output = self.run_code_raise_errors(_guard_imports(code))
            self.logger.log(output.logs)

    def run_code_raise_errors(self, code: str) -> CodeOutput:
        call = (
            f"__sandboxkit_step({code!r}, {MIME!r}) "
            f"if '__sandboxkit_step' in globals() else {_NO_WRAPPER!r}"
        )
        result = self._run(call)
        reset = result.state_lost
        if reset:
            self._restore()
        if _no_wrapper(result):
            # nothing ran (the interpreter restarted since the last step, or the step's
            # code deleted the wrapper): the step runs now, on what was put back
            if not reset:
                self._install_wrapper()
            result = self._run(call)
            reset = reset or result.state_lost
            if result.state_lost:
                self._restore()
        note = f"{STATE_RESET}\n" if reset else ""
        logs = result.stdout
        outcome: dict[str, Any] | None = None
        for output in result.outputs:
            if MIME in output.data:
                outcome = json.loads(output.data[MIME])
        if outcome is None:  # the step never finished: timeout, oom, the kernel died
            raise AgentError(
                f"{logs}\nExecuting code yielded an error:\nthe sandbox run ended with status "
                f"{result.status!r}\n{result.stderr}{note}",
                self.logger,
            )
        logs = note + logs
        if "final" in outcome:
            value = self._deserialize_final_answer(outcome["final"], self.allow_pickle)
            return CodeOutput(output=value, logs=logs, is_final_answer=True)
        if "error" in outcome:
            err = outcome["error"]
            raise AgentError(
                f"{logs}\nExecuting code yielded an error:\n{err['name']}\n{err['value']}\n"
                f"{err['traceback']}{note}",
                self.logger,
            )
        if "png" in outcome:
            import base64
            from io import BytesIO

            from PIL import Image

            image = Image.open(BytesIO(base64.b64decode(outcome["png"])))
            return CodeOutput(output=image, logs=logs, is_final_answer=False)
        return CodeOutput(output=outcome.get("output"), logs=logs, is_final_answer=False)

    def cleanup(self) -> None:
        """Close the session (CodeAgent.cleanup calls this)."""
        self._loop.close_session(self.sandbox, default_pool=self._default_pool)

    def delete(self) -> None:
        self.cleanup()

    def __enter__(self) -> SandboxkitExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # ------------------------------------------------------------------ helpers
    def _run(self, code: str) -> RunResult:
        return self._loop.call(self.sandbox.run(code))

    def _install_wrapper(self) -> None:
        result = self._run(_WRAPPER)
        if result.status != "ok":
            raise AgentError(
                f"sandboxkit: the step wrapper could not be set up ({result.status}):\n"
                f"{result.stderr}",
                self.logger,
            )

    def _restore(self) -> None:
        """The interpreter restarted: put back the wrapper, the tools and the variables
        (once: a restart while doing so is an error, not a loop)."""
        if self._restoring:
            raise AgentError(
                "sandboxkit: the sandbox's Python state was lost again as it was restored",
                self.logger,
            )
        self._restoring = True
        try:
            self._install_wrapper()
            if self._tools:
                self._define_tools(self._tools)
            if self._variables:
                super().send_variables(self._variables)
        finally:
            self._restoring = False


def _no_wrapper(result: RunResult) -> bool:
    """Whether the step's call found no wrapper (so none of the step ran)."""
    return (
        result.status == "ok"
        and result.stdout == f"{_NO_WRAPPER!r}\n"  # the cell's value, as a REPL prints it
        and not any(MIME in out.data for out in result.outputs)
    )
