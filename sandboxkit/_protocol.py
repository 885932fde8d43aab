"""The wire protocol between the host and the in-sandbox agent. Standard library only:
the same file is copied into every image and imported by the host, so both sides share
one definition.

A frame, both directions: one byte ``kind``, a big-endian u32 ``length``, ``payload``.

host → agent:  J job (JSON)   I stdin bytes   C close stdin   K kill the running program
agent → host:  R ready (JSON) O stdout bytes  E stderr bytes  X run finished (JSON)
               D reply (JSON header, then raw data after a NUL)  Z agent error (text)
               M display data, one rich output (JSON: kind, MIME bundle), before X

Frames travel over the container's attached stdin/stdout (relayed by the engine), or,
for a sandbox on the same machine as its host, over a Unix socket the host listens on:
the socket file is mounted read-only at :data:`CHANNEL_PATH` and the agent connects to it
once, before any program runs (the host then closes its listener, so nothing else can).

The JSON shapes are :class:`RunJob`, the file jobs, :class:`Ready`, :class:`ExitReport`
and :class:`Reply`; they are typing-only (the agent must not import ``typing``: it costs
~3 ms of every sandbox's start).
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal, TypedDict

    class RLimits(TypedDict):
        cpu: int
        fsize: int
        nofile: int
        core: int
        stack: int

    class RunJob(TypedDict, total=False):
        """Run one program: files are written first, then ``argv`` runs in ``cwd``."""

        op: Literal["run"]
        argv: list[str]
        files: dict[str, str]  # path -> base64
        stdin: str | None  # base64; None: EOF at once (unless interactive)
        interactive: bool  # stdin stays open for STDIN/CLOSE_STDIN frames
        keep_processes: bool  # leftovers of the previous run are not killed
        python_inline: bool  # run the source in the pre-loaded interpreter
        kernel: bool  # a session's persistent interpreter
        time: float  # wall seconds
        output_bytes: int  # kept per stream
        cpu_time: float  # CPU seconds of all the run's processes together
        rlimits: RLimits
        env: dict[str, str]
        cwd: str
        # a session run's own files, kept apart from the user's (see agent _files.place_own)
        own_dir: str
        own_files: dict[str, str]  # path under own_dir -> base64
        own_argc: int  # how many leading argv words may name an entry of own_dir
        path0: str  # (set by the agent) a Python script's sys.path[0]
        trace: bool  # report stage timestamps in the exit report (benchmarks only)
        exact: bool  # run by the real command: no pre-started runtime, no inline Python
        # (a compile step) the run to start at once if this step ends with status 0 and
        # no OOM kill or pids-limit refusal; the exit report's then_started says whether
        then: RunJob

    class WriteJob(TypedDict):
        op: Literal["write"]
        path: str
        data: str  # base64
        mode: int

    class ReadJob(TypedDict):
        op: Literal["read"]
        path: str
        max_bytes: int

    class ListJob(TypedDict, total=False):
        op: Literal["list"]
        path: str  # a directory: relative to the workdir (default: it), or absolute
        depth: int  # levels below it (default: all)

    # Since issue 27 a file job's path may be absolute (anywhere in the box; relative:
    # the workdir) and the other jobs are plain JSON objects: stat, mkdir (parents),
    # rename (dst, overwrite), remove; proc_start (argv, env, cwd, rlimits, pty: {cols,
    # rows}), proc_read (pid, after, peek), proc_write (pid, data, eof), proc_signal
    # (pid, signal; 0 only asks what is left), proc_resize (pid, cols, rows), proc_list.
    # A refusal's reply has ``reason`` (see agent/_files.REASONS) beside ``error``.

    class ScrubJob(TypedDict):
        """Make the sandbox as new for another run (a pool's reuse mode)."""

        op: Literal["scrub"]

    FileJob = WriteJob | ReadJob | ListJob | ScrubJob

    class Ready(TypedDict, total=False):
        python: str
        toolchain: str | None

    # why a run ended other than by itself (None: it did)
    Reason = Literal["timeout", "cpu_timeout", "output_limit", "setup", "killed"]

    class ExitReport(TypedDict, total=False):
        """The end of a run, as the agent saw it."""

        exit_code: int | None
        signal: int | None
        reason: Reason | None
        wall: float
        cpu: float | None
        max_rss_kb: int | None
        oom_kills: int
        pids_max_hits: int  # forks refused at the container's pids limit during the run
        truncated_stdout: bool
        truncated_stderr: bool
        truncated_outputs: bool  # display data dropped for the output cap
        trace: dict[str, int]  # a job with "trace": when each stage ended (monotonic ns)
        then_started: bool  # a job with "then": whether that run follows (its frames next)
        # (kernel runs, only when true) a session's interpreter ended, its variables with
        # it, since the last report that said so: during this run, or before it
        state_lost: bool

    class _FileEntryBase(TypedDict):
        path: str
        type: Literal["file", "dir", "symlink", "other"]
        size: int

    class FileEntryWire(_FileEntryBase, total=False):
        mode: int
        mtime: float
        target: str  # a symlink's

    class UsageWire(TypedDict):
        path: str
        used: int
        total: int

    class Reply(TypedDict, total=False):
        ok: bool
        error: str
        reason: str
        entries: list[FileEntryWire]
        clean: bool  # (scrub) nothing of the last run is left
        leftovers: list[str]  # (scrub) what is, when not clean
        usage: list[UsageWire]  # (usage) each place's bytes used and total
        cgroup: dict[str, int]  # (usage) cpu_ns, memory_used, memory_cache, memory_limit
        # background processes
        pid: int
        next: int
        chunks: list[list[object]]  # [seq, stream, length] of the data after the header
        running: bool
        done: bool
        dropped: bool
        exit_code: int | None
        signal: int | None
        written: int
        left: list[int]
        processes: list[dict[str, object]]


HEADER = struct.Struct(">BI")
CHANNEL_PATH = "/run/sandboxkit.sock"  # where a direct channel's socket is mounted
# The names of the agent's variables a run's environment holds (the language's): the
# agent's first spare prepares Python for that environment (agent/_spare.py).
ENV_RUN_NAMES = "SANDBOXKIT_RUN_ENV"
MAX_FRAME = 256 * 1024 * 1024

# host → agent
JOB, STDIN, CLOSE_STDIN, KILL = b"J", b"I", b"C", b"K"
# agent → host
READY, STDOUT, STDERR, EXIT, REPLY, FAULT = b"R", b"O", b"E", b"X", b"D", b"Z"
DISPLAY = b"M"


def pack(kind: bytes, payload: bytes = b"") -> bytes:
    """One frame: kind byte, u32 length, payload."""
    return HEADER.pack(kind[0], len(payload)) + payload


class FrameReader:
    """Incremental frame parser: feed bytes, take complete ``(kind, payload)`` frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self._buf += data
        frames: list[tuple[bytes, bytes]] = []
        while len(self._buf) >= HEADER.size:
            kind, length = HEADER.unpack_from(self._buf)
            if length > MAX_FRAME:
                raise ValueError(f"frame of {length} bytes exceeds the protocol maximum")
            end = HEADER.size + length
            if len(self._buf) < end:
                break
            frames.append((bytes((kind,)), bytes(self._buf[HEADER.size : end])))
            del self._buf[:end]
        return frames
