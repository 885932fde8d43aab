"""Honest limits on real Docker: which limit ended a run (``RunResult.ended_by``), and
``localhost`` resolving in a sandbox with no network."""

from __future__ import annotations

import os

import pytest

import sandboxkit as sk

pytestmark = pytest.mark.docker


async def test_a_clean_run_is_ended_by_nothing() -> None:
    r = await sk.Sandbox.run("print(1)")
    assert r.ok and r.ended_by is None


async def test_wall_time() -> None:
    r = await sk.Sandbox.run("import time; time.sleep(30)", limits=sk.Limits(time=1))
    assert r.status == "timeout" and r.ended_by == "wall_time"


async def test_memory() -> None:
    code = "x = []\nwhile True: x.append(bytearray(10**6))"
    r = await sk.Sandbox.run(code, limits=sk.Limits(memory_mb=64))
    assert r.status == "oom" and r.ended_by == "memory"


async def test_output() -> None:
    code = "import sys\nwhile True: sys.stdout.write('x' * 65536)"
    r = await sk.Sandbox.run(code, limits=sk.Limits(output_bytes=1000))
    assert r.status == "output_limit" and r.ended_by == "output"


async def test_file_size() -> None:
    r = await sk.Sandbox.run(
        "head -c 300000 /dev/zero > f", language="bash", limits=sk.Limits(file_size_mb=0.1)
    )
    assert r.status == "error" and r.ended_by is None  # bash survives its child's SIGXFSZ
    c = (
        '#include <stdio.h>\nint main(void){FILE*f=fopen("f","w");'
        "for(int i=0;i<300000;i++)fputc('x',f);fclose(f);}"
    )
    r = await sk.Sandbox.run(c, language="c", limits=sk.Limits(file_size_mb=0.1))
    assert r.signal == 25 and r.ended_by == "file_size"


LOCALHOST = {
    "python": "import socket; print(socket.gethostbyname('localhost'))",
    "c": "#include <stdio.h>\n#include <netdb.h>\n#include <arpa/inet.h>\n"
    'int main(void) { struct hostent *h = gethostbyname("localhost");\n'
    "  if (!h) return 1;\n"
    "  puts(inet_ntoa(*(struct in_addr *)h->h_addr_list[0])); }",
    "bash": "getent hosts 127.0.0.1 | tr -s ' ' | cut -d' ' -f1",
}


@pytest.mark.parametrize("language", sorted(LOCALHOST))
async def test_localhost_resolves(language: str) -> None:
    r = await sk.Sandbox.run(LOCALHOST[language], language=language)
    assert r.ok and r.stdout == "127.0.0.1\n", (r.stdout, r.stderr)


async def test_cpu_limit_below_a_second() -> None:
    r = await sk.Sandbox.run("while True: pass", limits=sk.Limits(time=10, cpu_time=0.3))
    assert r.status == "timeout" and r.ended_by == "cpu_time"
    # ended at its own limit, not at RLIMIT_CPU's next whole second
    assert r.cpu_time is not None and r.cpu_time < 1.0, r.cpu_time


async def test_cpu_limit_counts_every_process_of_the_run() -> None:
    r = await sk.Sandbox.run(
        "cat /dev/urandom > /dev/null\necho survived",
        language="bash",
        limits=sk.Limits(time=10, cpu_time=1),
    )
    assert r.status == "timeout" and r.ended_by == "cpu_time", (r.status, r.stdout)
    assert "survived" not in r.stdout


async def test_cpu_limit_is_the_sum_of_the_processes() -> None:
    # two busy children, each under the limit alone, over it together
    code = (
        "import os, time\n"
        "for _ in range(2):\n"
        "    if os.fork() == 0:\n"
        "        end = time.process_time() + 0.8\n"
        "        while time.process_time() < end: pass\n"
        "        os._exit(0)\n"
        "os.wait(); os.wait(); print('done')"
    )
    r = await sk.Sandbox.run(code, limits=sk.Limits(time=10, cpu_time=1.2, cpus=2))
    assert r.status == "timeout" and r.ended_by == "cpu_time", (r.status, r.stdout)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to exceed one")
async def test_the_cpu_quota_holds_several_busy_processes_to_it() -> None:
    # two children busy for 1.5 s of wall time: on two CPUs, unlimited, ~3 s of CPU; with
    # Limits.cpus=1 (counted over each quarter second) at most ~1.5 s, a period's burst more
    code = (
        "import os, time\n"
        "end = time.monotonic() + 1.5\n"
        "for _ in range(2):\n"
        "    if os.fork() == 0:\n"
        "        while time.monotonic() < end: pass\n"
        "        os._exit(0)\n"
        "os.wait(); os.wait()\n"
        "t = os.times(); print(t.children_user + t.children_system)"
    )
    r = await sk.Sandbox.run(code, limits=sk.Limits(time=10, cpus=1))
    assert r.ok, (r.status, r.stderr)
    assert float(r.stdout) < 2.1, r.stdout


async def test_cpu_time() -> None:
    r = await sk.Sandbox.run("while True: pass", limits=sk.Limits(time=10, cpu_time=1))
    assert r.status == "timeout" and r.ended_by == "cpu_time"


async def test_process_cpu_time_limits_each_process_alone() -> None:
    # the same two children pass when the limit is each process's (RLIMIT_CPU)
    code = (
        "import os, time\n"
        "for _ in range(2):\n"
        "    if os.fork() == 0:\n"
        "        end = time.process_time() + 0.8\n"
        "        while time.process_time() < end: pass\n"
        "        os._exit(0)\n"
        "os.wait(); os.wait(); print('done')"
    )
    r = await sk.Sandbox.run(code, limits=sk.Limits(time=10, process_cpu_time=1))
    assert r.ok and r.stdout == "done\n", (r.status, r.stderr)
    alone = await sk.Sandbox.run("while True: pass", limits=sk.Limits(time=10, process_cpu_time=1))
    # killed at RLIMIT_CPU: a cpu_time timeout, or (the kernel's tick count ahead of the
    # measured time on a busy CPU) signal 9 a little before the second
    assert alone.ended_by == "cpu_time" or alone.signal == 9, (alone.status, alone.cpu_time)
    assert alone.duration < 5


async def test_process_memory_limits_each_process_address_space() -> None:
    # three children of 40 MB each fit 62.5 MB apiece (RLIMIT_AS); one of 100 MB does not
    code = (
        "import os, sys\n"
        "size = int(sys.argv[1])\n"
        "kids = []\n"
        "for _ in range(3 if size < 64 else 1):\n"
        "    kids.append(os.fork())\n"
        "    if kids[-1] == 0:\n"  # a child allocates, and forks no further children
        "        try:\n"
        "            block = bytearray(size << 20); os._exit(0)\n"
        "        except MemoryError:\n"
        "            os._exit(3)\n"
        "codes = [os.waitstatus_to_exitcode(os.wait()[1]) for _ in kids]\n"
        "print(codes)"
    )
    limits = sk.Limits(memory_mb=256, process_memory_mb=62.5)
    r = await sk.Sandbox.run(code, args=["40"], limits=limits)
    assert r.ok and r.stdout == "[0, 0, 0]\n", (r.status, r.stdout, r.stderr)
    r = await sk.Sandbox.run(code, args=["100"], limits=limits)
    assert r.ok and r.stdout == "[3]\n", (r.status, r.stdout, r.stderr)
