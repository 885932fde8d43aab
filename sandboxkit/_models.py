"""Public data models: limits in, results and events out. Frozen, strict, documented."""

from __future__ import annotations

import base64
import difflib
import json
import math
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from typing_extensions import Self

from ._errors import InvalidInput

#: How a run ended. Every failure of the user's code is one of these, never an exception.
Status = Literal["ok", "error", "timeout", "oom", "output_limit", "compile_error"]
#: Which limit ended a run, when one did (``RunResult.ended_by``).
EndedBy = Literal["wall_time", "cpu_time", "memory", "output", "file_size"]
EventKind = Literal["stdout", "stderr", "exit"]
FileType = Literal["file", "dir", "symlink", "other"]


class Frozen(BaseModel):
    """The base of sandboxkit's data models (also the judge's and the engine config's):
    frozen, no unknown field."""

    # bytes (exact output) travel as base64 in JSON: they need not be valid UTF-8
    model_config = ConfigDict(
        frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64"
    )

    def __init__(self, **data: object) -> None:
        # nonsense in is a SandboxkitError (InvalidInput is also a ValueError), said in
        # one line: the field, the value given and the rule (not pydantic's report)
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise InvalidInput(explain(type(self), exc)) from None

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        """As pydantic's, raising :class:`InvalidInput` with one line per wrong field."""
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            raise InvalidInput(explain(cls, exc)) from None


_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
_SHORT_DESCRIPTION = 40  # a field's description is quoted in an error when this short


def _rule(field: FieldInfo) -> str | None:
    """``a number > 0 and <= 3600`` for a numeric field with bounds, else None."""
    annotation = field.annotation
    optional = False
    args = get_args(annotation)
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            return None
        annotation, optional = rest[0], True
    kind = _KINDS.get(annotation) if isinstance(annotation, type) else None
    if kind is None or annotation in (bool, str):
        return None
    bounds = {}
    for meta in field.metadata:
        for name in ("gt", "ge", "lt", "le"):
            value = getattr(meta, name, None)
            if value is not None:
                bounds[name] = value
    if "ge" in bounds and "le" in bounds:
        rule = f"{kind} from {_number(bounds['ge'])} to {_number(bounds['le'])}"
    else:
        signs = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
        rule = " and ".join(f"{signs[k]} {_number(v)}" for k, v in bounds.items())
        rule = f"{kind} {rule}" if rule else kind
    if optional:
        rule += " (or None)"
    description = field.description or ""
    if description and len(description) <= _SHORT_DESCRIPTION:
        rule += f": {description}"
    return rule


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _type_name(annotation: object) -> str:
    """``str or bytes`` for ``str | bytes``; a type's own name otherwise."""
    args = get_args(annotation)
    if args and get_origin(annotation) in (Union, UnionType):
        return " or ".join(_type_name(a) for a in args)
    return getattr(annotation, "__name__", None) or str(annotation)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def explain(model: type[BaseModel], exc: ValidationError) -> str:
    """``invalid Limits: time=-1 must be a number > 0 and <= 3600: wall-clock seconds``:
    what pydantic found wrong, in one line naming each field, its value and the rule."""
    errors = exc.errors(include_url=False)
    if len(errors) == 1 and not errors[0]["loc"]:
        inner = (errors[0].get("ctx") or {}).get("error")
        if isinstance(inner, InvalidInput):  # our own __init__, run by model_validate
            return str(inner)
    parts: list[str] = []
    unions: set[str] = set()  # fields whose every alternative failed: said once
    for err in errors:
        loc = ".".join(str(x) for x in err["loc"])
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, InvalidInput):  # a nested model's own explanation
            parts.append(f"{loc}: {inner}" if loc else str(inner))
            continue
        top = str(err["loc"][0]) if err["loc"] else ""
        field = model.model_fields.get(top)
        union = field is not None and get_origin(field.annotation) in (Union, UnionType)
        if field is not None and union and len(err["loc"]) > 1:
            if top not in unions:
                unions.add(top)
                parts.append(
                    f"{top}={_shown(err.get('input'))} must be {_type_name(field.annotation)}"
                )
            continue
        message = err["msg"].removeprefix("Value error, ").replace("Input should", "should")
        if not loc:  # a check of the whole model
            parts.append(message)
            continue
        value = err.get("input")
        if err["type"] == "extra_forbidden":
            names = list(model.model_fields)
            close = difflib.get_close_matches(loc, names, n=1)
            hint = f"did you mean {close[0]}?" if close else f"the fields: {', '.join(names)}"
            parts.append(f"{loc}={_shown(value)} is not a field ({hint})")
            continue
        rule = _rule(field) if field is not None and len(err["loc"]) == 1 else None
        if rule is not None:
            if isinstance(value, float) and not math.isfinite(value):
                rule = f"a finite {rule.removeprefix('a ')}"
            parts.append(f"{loc}={_shown(value)} must be {rule}")
        else:
            parts.append(f"{loc}={_shown(value)} {message.replace('should be', 'must be')}")
    return f"invalid {model.__name__}: " + "; ".join(parts)


class Limits(Frozen):
    """Resource limits of one run. Every limit is on by default."""

    time: float = Field(10.0, gt=0, le=3600, description="wall-clock seconds")
    cpu_time: float | None = Field(
        None,
        gt=0,
        le=3600,
        description="CPU seconds of the whole run, every process together, to ~10 ms "
        "(RLIMIT_CPU a second later as a backstop); default: the wall limit",
    )
    process_cpu_time: float | None = Field(
        None,
        gt=0,
        le=3600,
        description="CPU seconds of each process alone (RLIMIT_CPU, whole seconds rounded "
        "up): a process past it is killed (SIGKILL). A run whose program is ends as a "
        "cpu_time timeout, or as an error with signal 9 when the kernel's tick count of "
        "its CPU time ran ahead of the time measured (a contended CPU). Without "
        "cpu_time, the run's processes together are bounded by the wall limit only",
    )
    memory_mb: int = Field(256, ge=16, le=65536, description="memory and memory+swap, MB")
    process_memory_mb: float | None = Field(
        None,
        gt=0,
        le=65536,
        description="address space of each process alone, MB (RLIMIT_AS, isolate's --mem: "
        "past it an allocation fails, and the program decides what follows); 62.5 = "
        "64000 KB. None: only memory_mb, every process together",
    )
    pids: int = Field(64, ge=8, le=4096, description="processes and threads in the sandbox")
    output_bytes: int = Field(
        1_000_000, ge=1, le=64_000_000, description="bytes kept per stream; more is dropped"
    )
    file_size_mb: float = Field(
        64, gt=0, le=4096, description="largest file written, MB (RLIMIT_FSIZE); 0.5 = 512 KB"
    )
    stack_mb: int = Field(
        64,
        ge=1,
        le=1024,
        description="stack of the main thread, MB (RLIMIT_STACK). 64, as Judge0's default "
        "stack_limit: deep recursion accepted there is accepted here (Linux's own 8 MB "
        "is not); it is address space, counted against memory only as it is used",
    )
    open_files: int = Field(256, ge=16, le=65536, description="open descriptors (RLIMIT_NOFILE)")
    disk_mb: int = Field(64, ge=1, le=16384, description="size of each tmpfs: workdir, /tmp, $HOME")
    cpus: float = Field(1.0, gt=0, le=64, description="CPU quota, in cores")

    @model_validator(mode="after")
    def _finite(self) -> Limits:
        for name in ("time", "cpu_time", "process_cpu_time", "process_memory_mb", "cpus"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be finite")
        return self

    @property
    def cpu_seconds(self) -> int:
        """The RLIMIT_CPU value: whole seconds, at least the wall limit, rounded up."""
        return max(1, math.ceil(self.cpu_time if self.cpu_time is not None else self.time))


OutputKind = Literal["display", "result"]


class DisplayData(Frozen):
    """One rich output of a run, as Jupyter's display data: a MIME bundle.

    ``data`` maps MIME types to content: text for ``text/*``, ``image/svg+xml`` and
    ``application/json`` (as JSON text), base64 for binary images (``image/png``,
    ``image/jpeg``). ``text/plain`` is always there. ``kind`` is ``display`` for what the
    program showed (``plt.show()``, ``display(obj)``) and ``result`` for a session cell's
    last expression. The properties give the common types decoded.
    """

    kind: OutputKind = "display"
    data: dict[str, str] = Field(description="MIME type -> content (base64 for images)")

    def _get(self, mime: str) -> str | None:
        return self.data.get(mime)

    @property
    def mime_types(self) -> tuple[str, ...]:
        return tuple(self.data)

    @property
    def png(self) -> bytes | None:
        value = self._get("image/png")
        return None if value is None else base64.b64decode(value)

    @property
    def jpeg(self) -> bytes | None:
        value = self._get("image/jpeg")
        return None if value is None else base64.b64decode(value)

    @property
    def svg(self) -> str | None:
        return self._get("image/svg+xml")

    @property
    def html(self) -> str | None:
        return self._get("text/html")

    @property
    def markdown(self) -> str | None:
        return self._get("text/markdown")

    @property
    def json_data(self) -> Any:
        """``application/json`` parsed (None when absent)."""
        value = self._get("application/json")
        return None if value is None else json.loads(value)

    @property
    def text(self) -> str:
        return self.data.get("text/plain", "")


def _decoded(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


class NetworkUsage(Frozen):
    """What a sandbox with an egress policy did on the network (``RunResult.network``):
    bytes it sent and received through the egress gateway (since its sandbox started),
    and the names it was refused."""

    bytes_out: int = 0
    bytes_in: int = 0
    refused: tuple[str, ...] = ()


class RunResult(Frozen):
    """What one run of the user's program did. Failures of the code are statuses.

    ``stdout_bytes``/``stderr_bytes`` are exactly what the program wrote (up to
    ``Limits.output_bytes`` per stream); ``stdout``/``stderr`` are their UTF-8 views,
    with invalid sequences replaced. Give either form when building one by hand.
    """

    status: Status
    exit_code: int | None = None
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_bytes: bytes = Field(b"", description="the exact bytes kept of stdout")
    stderr_bytes: bytes = Field(b"", description="the exact bytes kept of stderr")
    truncated: bool = False
    duration: float = Field(0.0, description="wall seconds of the user's program")
    cpu_time: float | None = Field(None, description="CPU seconds of the user's program")
    memory_mb: float | None = Field(
        None,
        description="peak resident memory, MB (the kernel's ru_maxrss). An upper bound: a "
        "program the supervisor forks and execs counts at least the fork's copy of the "
        "supervisor (~9 MB). Memory verdicts come from the cgroup's OOM count, not this.",
    )
    language: str = "python"
    engine: str | None = Field(None, description="URL of the engine that ran it")
    ended_by: EndedBy | None = Field(
        None,
        description="the limit that ended the run: wall_time, cpu_time, memory, output "
        "(a flood past output_bytes), file_size (RLIMIT_FSIZE's SIGXFSZ); None when the "
        "program ended by itself",
    )
    outputs: tuple[DisplayData, ...] = Field(
        (),
        description="rich outputs (figures, tables, images), in the order shown; kept up "
        "to Limits.output_bytes in all (more are dropped and `truncated` is set)",
    )
    state_lost: bool = Field(
        False,
        description="(keep_state sessions) the session's Python interpreter ended, and "
        "every variable and import with it: during this run (a limit killed it, "
        "os._exit, a crash, the sandbox lost) or, when nothing could tell then, since "
        "the previous run. Said once per loss, by the first result that can; the next "
        "run starts a fresh interpreter. Always False elsewhere",
    )
    network: NetworkUsage | None = Field(
        None,
        description="(runs with an sk.Egress policy) bytes out and in through the egress "
        "gateway and the names refused, for the sandbox so far; None without a policy",
    )

    @model_validator(mode="before")
    @classmethod
    def _both_forms(cls, data: Any) -> Any:
        # one of text or bytes given: derive the other, so the two never disagree
        if isinstance(data, dict):
            for name in ("stdout", "stderr"):
                raw, text = data.get(f"{name}_bytes"), data.get(name)
                if raw is not None and text is None:
                    data = {**data, name: _decoded(bytes(raw))}
                elif text is not None and raw is None and isinstance(text, str):
                    data = {**data, f"{name}_bytes": text.encode("utf-8", "surrogateescape")}
        return data

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Event(Frozen):
    """One streamed event: a chunk of output, or the final ``exit`` with the result.

    ``data_bytes`` is the chunk exactly as written; ``data`` its text, decoded
    incrementally (a character split between chunks appears whole in the later one).
    """

    kind: EventKind
    data: str = ""
    data_bytes: bytes = b""
    result: RunResult | None = None


class FileEntry(Frozen):
    """One entry of a session's filesystem, as ``Sandbox.list_files``/``stat`` report it."""

    path: str = Field(
        description="absolute when asked with an absolute path; otherwise relative to the workdir"
    )
    type: FileType
    size: int = Field(0, description="bytes (files); 0 for the others")
    mode: int = Field(0, description="permission bits (0o644...), without the file type")
    mtime: float = Field(0.0, description="last modification, epoch seconds")
    target: str | None = Field(None, description="a symlink's target (never followed)")


class SandboxMetrics(Frozen):
    """A session's use of its limits at one moment (``Sandbox.metrics``)."""

    cpu_count: float = Field(description="the CPUs its quota allows (Limits' container CPUs)")
    cpu_percent: float = Field(
        description="CPU time used since the previous call (or since the sandbox started), "
        "as a percentage of its quota over that time"
    )
    memory_used: int = Field(description="bytes charged to its memory limit (page cache too)")
    memory_cache: int = Field(0, description="of memory_used: the page cache, tmpfs files included")
    memory_total: int = Field(
        description="its container's memory limit now, in bytes (a run's own limit "
        "applies while that run runs)"
    )
    disk_used: int = Field(description="bytes used in its writable places (workdir, home, /tmp)")
    disk_total: int = Field(description="the size of those places in bytes")
    timestamp: float = Field(description="when it was measured, epoch seconds")


ChangeKind = Literal["created", "modified", "removed"]


class FileChange(Frozen):
    """One change ``Sandbox.watch`` saw (inotify in the sandbox)."""

    path: str = Field(
        description="absolute when watched with an absolute path; otherwise relative to the workdir"
    )
    kind: ChangeKind = Field(
        description="created (made, or moved in), modified (written to), removed (deleted, "
        "or moved away)"
    )


class ProcessInfo(Frozen):
    """One process of a session, as ``Sandbox.processes`` lists it."""

    pid: int
    ppid: int
    cmd: list[str] = Field(description="its command line")
    state: str = Field(description="as /proc says: R running, S sleeping, Z ended...")
    background: bool = Field(
        False, description="started by start(..., shell=True)/terminal(), or by one of those"
    )
    pty: bool = Field(False, description="a terminal's process")
    started: float | None = Field(None, description="epoch seconds (background ones)")
