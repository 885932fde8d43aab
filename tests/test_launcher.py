"""Exec'd programs start by the launcher's fork (``agent/_launch.py``, ``launch.c``),
not the agent's: set up exactly as a forked one, out of the program's reach, alive across
runs, timeouts and the reuse mode's scrub. Real engine, C: the image has a compiler, so
it has the launcher. Orders too big for the launcher (a 70 KB environment variable)
take the fork path, which is what each launched run is compared with."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import sandboxkit as sk
from sandboxkit._languages import get_language
from sandboxkit._run.program import Program

pytestmark = pytest.mark.docker

C = get_language("c")
LIMITS = sk.Limits(time=5, memory_mb=128, open_files=96)
BIG_ENV = {"FORK_PATH": "x" * 70_000}  # past the launcher's 64 KiB: the run forks

# what a program sees of how it was set up
SETUP = r"""
#define _GNU_SOURCE
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
extern char **environ;
static void show(const char *path, const char *const *keys) {
    char line[256];
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        for (int k = 0; !keys || keys[k]; k++)
            if (!keys || !strncmp(line, keys[k], strlen(keys[k]))) {
                fputs(line, stdout);
                break;
            }
    if (f) fclose(f);
}
int main(void) {
    struct rlimit r;
    int res[] = {RLIMIT_CPU, RLIMIT_NOFILE, RLIMIT_FSIZE, RLIMIT_AS, RLIMIT_NPROC, RLIMIT_CORE};
    for (int i = 0; i < 6; i++) {
        getrlimit(res[i], &r);
        printf("rlimit %d %lld %lld\n", res[i], (long long)r.rlim_cur, (long long)r.rlim_max);
    }
    printf("ppid %d session-leader %d pgrp-is-pid %d\n", getppid(), getsid(0) == getpid(),
           getpgrp() == getpid());
    printf("uid %d %d gid %d %d groups %d\n", getuid(), geteuid(), getgid(), getegid(),
           getgroups(0, NULL));
    char cwd[256];
    printf("cwd %s\n", getcwd(cwd, sizeof cwd));
    const char *const keys[] = {"Cap", "NoNewPrivs", "SigBlk", "SigIgn", NULL};
    show("/proc/self/status", keys);
    show("/proc/self/oom_score_adj", NULL);
    FILE *own = fopen("/proc/self/environ", "r"); /* this process is dumpable */
    printf("dumpable-environ %d\n", own != NULL);
    if (own) fclose(own);
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int fds = 0;
    while ((e = readdir(d)))
        fds += e->d_name[0] != '.';
    printf("open fds %d\n", fds - 1); /* less the directory's own */
    for (char **v = environ; *v; v++)
        if (strncmp(*v, "FORK_PATH=", 10))
            printf("env %s\n", *v);
    printf("umask %o\n", umask(022));
    return 0;
}
"""

# the launcher's pid (its comm is "launch"), and what the program can do to it
PROBE = r"""
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <unistd.h>
int main(void) {
    DIR *d = opendir("/proc");
    struct dirent *e;
    int launcher = 0, pythons = 0;
    while ((e = readdir(d))) {
        char path[64], comm[32] = "";
        snprintf(path, sizeof path, "/proc/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fgets(comm, sizeof comm, f)) {
            if (!strcmp(comm, "launch\n")) launcher = atoi(e->d_name);
            if (!strncmp(comm, "python", 6) && atoi(e->d_name) != 1) pythons++;
        }
        fclose(f);
    }
    printf("launcher %d other-pythons %d\n", launcher, pythons);
    if (!launcher) return 1;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/environ", launcher);
    printf("environ %s\n", fopen(path, "r") ? "read" : strerror(errno));
    printf("stop %s\n", kill(launcher, SIGSTOP) == 0 ? "sent" : strerror(errno));
    printf("kill %s\n", kill(launcher, SIGKILL) == 0 ? "sent" : strerror(errno));
    printf("ptrace %s\n",
           ptrace(PTRACE_ATTACH, launcher, 0, 0) == 0 ? "attached" : strerror(errno));
    return 0;
}
"""


@pytest.fixture(scope="module")
async def cpool() -> AsyncIterator[sk.SandboxPool]:
    async with sk.SandboxPool(languages=["c"], size=1) as pool:
        yield pool


async def _results(
    pool: sk.SandboxPool, source: str, runs: int = 1, env: dict[str, str] | None = None
) -> list[sk.RunResult]:
    async with pool.checkout(C, LIMITS) as box:
        program = Program(box, C, LIMITS, files={C.source_file: source.encode()}, env=env)
        compiled = await program.compile()
        assert compiled is None or compiled.status == "ok", compiled
        return [await program.result() for _ in range(runs)]


async def test_a_launched_program_is_set_up_as_a_forked_one(cpool: sk.SandboxPool) -> None:
    launched = await _results(cpool, SETUP, env={"PROBE": "1"})
    forked = await _results(cpool, SETUP, env={"PROBE": "1", **BIG_ENV})
    assert launched[0].status == forked[0].status == "ok", (launched, forked)
    assert launched[0].stdout == forked[0].stdout
    seen = launched[0].stdout
    assert "ppid 1 session-leader 1 pgrp-is-pid 1" in seen
    assert "CapEff:\t0000000000000000" in seen and "CapBnd:\t0000000000000000" in seen
    assert "\n1000\n" in seen and "open fds 3\n" in seen and "env PROBE=1\n" in seen
    assert "SigIgn:\t0000000000000000" in seen  # nothing ignored: SIGPIPE kills a C program
    assert "rlimit 7 96 96" in seen  # RLIMIT_NOFILE as asked
    # the program's own memory: a launched program's RSS is its own, not the agent's
    assert launched[0].memory_mb is not None and launched[0].memory_mb < 5


async def test_the_program_can_neither_signal_trace_nor_read_the_launcher(
    cpool: sk.SandboxPool,
) -> None:
    first, second = await _results(cpool, PROBE, runs=2)
    assert first.status == "ok", first
    lines = first.stdout.splitlines()
    assert lines[0].startswith("launcher ") and lines[0].endswith(" other-pythons 0")
    assert lines[1:] == [
        "environ Permission denied",
        "stop Operation not permitted",
        "kill Operation not permitted",
        "ptrace Operation not permitted",
    ]
    # the same launcher starts the next run too (no spare of the agent's beside it)
    assert second.stdout == first.stdout


async def test_statuses_a_timeout_and_a_missing_program(cpool: sk.SandboxPool) -> None:
    source = r"""
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(void) {
    char what[16] = "";
    if (scanf("%15s", what) != 1) return 9;
    if (what[0] == 'e') return 3;
    if (what[0] == 's') raise(SIGSEGV);
    if (what[0] == 'l') for (;;) {}
    if (what[0] == 'u') return unlink("main") ? 8 : 0;
    printf("fine\n");
    return 0;
}
"""
    limits = sk.Limits(time=1, memory_mb=128)
    for env in (None, BIG_ENV):  # launched, then forked: the same statuses
        async with cpool.checkout(C, limits) as box:
            program = Program(box, C, limits, files={C.source_file: source.encode()}, env=env)
            await program.compile()
            exited = await program.result(b"e")
            assert (exited.status, exited.exit_code) == ("error", 3), exited
            crashed = await program.result(b"s")
            assert (crashed.status, crashed.signal) == ("error", 11), crashed
            looped = await program.result(b"l")
            assert looped.status == "timeout", looped
            fine = await program.result(b"f")
            assert (fine.status, fine.stdout) == ("ok", "fine\n"), fine
            gone = await program.result(b"u")
            assert gone.status == "ok", gone
            missing = await program.result(b"f")
            assert (missing.status, missing.exit_code) == ("error", 127), missing
            assert (
                missing.stderr == "sandboxkit: cannot start './main': No such file or directory\n"
            )


async def test_the_launcher_outlives_the_reuse_scrub() -> None:
    # each run: whether the last run's file is there, the container (its agent's start
    # time: /proc/1/stat's 22nd field), then PROBE's lines
    check = PROBE.replace(
        '    printf("launcher',
        '    char box[512] = "";\n    FILE *agent = fopen("/proc/1/stat", "r");\n'
        "    if (!agent || !fread(box, 1, sizeof box - 1, agent)) return 2;\n"
        "    char *at = strrchr(box, ')') + 2;\n"
        "    for (int field = 3; field < 22; field++) at = strchr(at, ' ') + 1;\n"
        '    printf("left %d %lld\\n", fopen("/tmp/left", "r") != NULL, atoll(at));\n'
        '    fopen("/tmp/left", "w");\n'
        '    printf("launcher',
    )
    async with sk.SandboxPool(languages=["c"], size=1, reuse=True) as pool:
        seen = [await pool.run(check, language="c") for _ in range(4)]
    assert all(r.status == "ok" for r in seen), seen
    boxes: dict[str, set[str]] = {}
    for r in seen:
        left, launcher = r.stdout.splitlines()[:2]
        assert left.startswith("left 0 "), r  # scrubbed between runs
        assert launcher.endswith(" other-pythons 0") and launcher != "launcher 0 other-pythons 0"
        boxes.setdefault(left, set()).add(launcher)
    # a container served several runs, each started by its one launcher
    assert len(boxes) < len(seen) and all(len(pids) == 1 for pids in boxes.values()), seen
