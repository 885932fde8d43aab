"""Python's runs start from a spare the agent's zygote clones (``agent/_zygote.py``), not
the agent's own fork: set up exactly as a forked one, a child of PID 1, out of the
program's reach, alive across runs, kills and the reuse mode's scrub. Real engine.

Orders too big for a spare (a 70 KB environment variable) make the agent fork the run's
child itself, which is what each cloned run is compared with; the agent's own fork shows
in ``sys.modules`` (the agent's modules, ``selectors`` among them, stay loaded in it)."""

from __future__ import annotations

import json

import pytest
from box_procs import HELPERS, PROCS

import sandboxkit as sk

pytestmark = pytest.mark.docker

BIG_ENV = {"FORK_PATH": "x" * 70_000}  # past what a spare takes: the agent forks the run
LIMITS = sk.Limits(time=5, memory_mb=128, open_files=96)

# what a program sees of how it was set up, then which fork made it
SETUP = r"""
import os, resource, sys
for name in ("CPU", "NOFILE", "FSIZE", "AS", "NPROC", "CORE"):
    print("rlimit", name, *resource.getrlimit(getattr(resource, "RLIMIT_" + name)))
print("ppid", os.getppid(), "session-leader", os.getsid(0) == os.getpid(),
      "pgrp-is-pid", os.getpgrp() == os.getpid())
print("uids", os.getresuid(), "gids", os.getresgid(), "groups", os.getgroups())
print("cwd", os.getcwd())
for line in open("/proc/self/status"):
    if line.startswith(("Cap", "NoNewPrivs", "SigBlk", "SigIgn")):
        print(line, end="")
print("oom", open("/proc/self/oom_score_adj").read().strip())
print("environ readable", bool(open("/proc/self/environ", "rb").read()))
print("fds", sorted(os.listdir("/proc/self/fd")))
print("env", sorted((k, v) for k, v in os.environ.items() if k != "FORK_PATH"))
print("umask", oct(os.umask(0o22)))
print("argv", sys.argv, "main", __name__, __file__)
print("the agent's fork", "selectors" in sys.modules)
"""

# the zygote's pid, and what the program can do to it
PROBE = (
    HELPERS
    + r"""
import ctypes, os, signal
zygote, = helpers()
def attempt(what):
    try:
        what()
        return "done"
    except OSError as exc:
        return os.strerror(exc.errno)
print("environ", attempt(lambda: open(f"/proc/{zygote}/environ", "rb").read()))
print("memory", attempt(lambda: open(f"/proc/{zygote}/mem", "rb").read(1)))
print("stop", attempt(lambda: os.kill(zygote, signal.SIGSTOP)))
print("kill", attempt(lambda: os.kill(zygote, signal.SIGKILL)))
libc = ctypes.CDLL(None, use_errno=True)
traced = libc.ptrace(16, zygote, 0, 0)  # PTRACE_ATTACH
print("ptrace", "attached" if traced == 0 else os.strerror(ctypes.get_errno()))
print("zygote", zygote)
"""
)


async def test_a_cloned_program_is_set_up_as_one_the_agent_forks() -> None:
    async with sk.Sandbox(limits=LIMITS) as sb:
        cloned = await sb.run(SETUP, env={"PROBE": "1"})
        forked = await sb.run(SETUP, env={"PROBE": "1", **BIG_ENV})
    assert cloned.status == forked.status == "ok", (cloned, forked)
    *seen, how = cloned.stdout.splitlines()
    *seen_forked, how_forked = forked.stdout.splitlines()
    assert (how, how_forked) == ("the agent's fork False", "the agent's fork True")
    assert seen == seen_forked
    text = "\n".join(seen)
    assert "ppid 1 session-leader True pgrp-is-pid True" in text  # PID 1's own child
    assert "CapEff:\t0000000000000000" in text and "CapBnd:\t0000000000000000" in text
    assert "oom 1000" in text and "environ readable True" in text
    assert "fds ['0', '1', '2', '3']" in text  # the standard three and the listing's own
    assert "rlimit NOFILE 96 96" in text and "('PROBE', '1')" in text


async def test_the_program_can_neither_signal_trace_nor_read_the_zygote() -> None:
    async with sk.Sandbox() as sb:
        first, second = [await sb.run(PROBE) for _ in range(2)]
    assert first.status == "ok", first
    *tries, zygote = first.stdout.splitlines()
    assert tries == [
        "environ Permission denied",
        "memory Permission denied",
        "stop Operation not permitted",
        "kill Operation not permitted",
        "ptrace Operation not permitted",
    ]
    assert second.stdout.splitlines()[-1] == zygote  # the same zygote serves every run


async def test_the_zygote_outlives_a_run_s_leftovers_and_the_reuse_scrub() -> None:
    # each run: whether the last run's file is there, the container (its agent's start
    # time), the zygote; then it leaves a process behind
    check = PROCS + (
        "import subprocess\n"
        "box = open('/proc/1/stat').read().rsplit(')', 1)[1].split()[19]\n"
        "print(json.dumps([os.path.exists('/tmp/left'), box, sorted(helpers()), others]))\n"
        "open('/tmp/left', 'w')\n"
        "subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
    )
    async with sk.SandboxPool(size=1, reuse=True) as pool:
        seen = [await pool.run("import json\n" + check) for _ in range(4)]
    assert all(r.status == "ok" for r in seen), seen
    zygotes: dict[str, set[int]] = {}
    for r in seen:
        left, box, helpers, others = json.loads(r.stdout)
        assert (left, others) == (False, []), r  # scrubbed: no file, no sleeper
        assert len(helpers) == 1, r
        zygotes.setdefault(box, set()).update(helpers)
    # a container served several runs, each from its one zygote
    assert len(zygotes) < len(seen) and all(len(z) == 1 for z in zygotes.values()), seen


async def test_a_program_sees_few_modules_a_fresh_interpreter_has_not() -> None:
    listing = "import sys\nprint(sorted(sys.modules))"
    async with sk.SandboxPool(size=1) as pool:
        inline = await pool.run(listing)
        exact = await pool.run(listing, exact=True)
    extra = set(json.loads(inline.stdout.replace("'", '"'))) - set(
        json.loads(exact.stdout.replace("'", '"'))
    )
    # what the zygote itself needs (its clone, the shared page, rlimits), nothing of the
    # agent's: no json, re, selectors, socket, enum, threading
    assert extra <= {
        "__future__", "_ctypes", "_socket", "_struct", "atexit", "ctypes", "ctypes._endian",
        "gc", "mmap", "resource", "struct", "types",  # (types: ctypes imports it)
    }, extra  # fmt: skip


# how often ``needle`` (given reversed, so this source never holds it) is in the
# program's own memory
SCAN = r"""
import sys
needle = sys.argv[1][::-1].encode()
found = 0
with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
    for line in maps:
        span, perms = line.split()[:2]
        if not perms.startswith("r"):
            continue
        start, end = (int(x, 16) for x in span.split("-"))
        try:
            mem.seek(start)
            found += mem.read(end - start).count(needle)
        except (OSError, ValueError, OverflowError):
            pass
print(found)
"""


@pytest.mark.parametrize("limits", [None, sk.Limits(open_files=77)], ids=["same", "other-limits"])
async def test_nothing_of_a_run_s_environment_reaches_the_next_run_s_memory(
    limits: sk.Limits | None,
) -> None:
    """Reuse mode: the zygote is never told a run's environment (the spare's hint goes to
    the spare), and the spare made beside a run is not the next one's after a scrub, so
    a value a run was given (an API key) is nowhere in the memory of the run after it.
    A run whose limits the spare made ahead does not fit gets a new one from the zygote,
    not a fork of the agent (whose memory holds what earlier runs were sent)."""
    secret, control = (f"sk-{token}" for token in ("4f1c9d7e2b", "8a3e6c0f5d"))
    async with sk.SandboxPool(size=1, reuse=True) as pool:
        seen = []
        for _ in range(3):
            given = await pool.run("import os\nprint(len(os.environ['KEY']))", env={"KEY": secret})
            assert given.stdout == f"{len(secret)}\n", given
            after = [
                await pool.run(SCAN, args=[word[::-1]], limits=limits) for word in (secret, control)
            ]
            seen.append([r.stdout for r in after])
    # the secret is found as often as a value no run was ever given (the needle itself)
    assert all(a == b for a, b in seen), seen


async def test_os_environ_lists_the_run_s_names_in_its_order() -> None:
    """A spare (and the zygote) made ready for an environment with the same names in
    another order is not ready for it: the program's os.environ is in its run's order,
    as the real interpreter's (exact mode) is."""
    listing = "import os\nprint(list(os.environ))"
    async with sk.SandboxPool(size=1) as pool:
        inline = [(await pool.run(listing)).stdout for _ in range(2)]
        exact = (await pool.run(listing, exact=True)).stdout
    assert inline == [exact, exact], (inline, exact)
    async with sk.Sandbox() as sb:
        first, *later = [(await sb.run(listing)).stdout for _ in range(3)]
    assert later == [first, first], (first, later)  # the zygote took on the session's order
