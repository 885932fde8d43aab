"""Parity: a run through sandboxkit is indistinguishable from the same source run with the
same toolchain as a plain process in a plain container of the same image.

Each probe runs both ways and the stdout bytes, exit status and stderr must be equal.
The plain run is ``docker run --rm --network none --init`` of the language's image, as
the sandbox user, in a tmpfs ``/work``, with the language's environment: the toolchain's
own ``run`` (and ``compile``) commands, nothing of sandboxkit's in the way. ``--init``
keeps the program from being PID 1 (which would ignore default-action signals), as it is
not PID 1 in a sandbox either.
"""

from __future__ import annotations

import shlex
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import sandboxkit as sk
from sandboxkit._container import SANDBOX_UID
from sandboxkit._languages import get_language, language_env

pytestmark = pytest.mark.docker

CRLF = b"one\r\ntwo\rthree\n\xff\xfe binary \x00 end"

# (language, probe name, source, stdin)
PROBES: list[tuple[str, str, str, bytes]] = [
    # --- Python: the pre-loaded interpreter against `python3 main.py`
    ("python", "stdin-bytes", "import sys\nsys.stdout.buffer.write(sys.stdin.buffer.read())", CRLF),
    ("python", "stdin-text", "import sys\nprint(repr(sys.stdin.read()))", b"a\r\nb\rc\n\xc3\xa9\n"),
    ("python", "stdin-lines", "import sys\nprint([l for l in sys.stdin])", b"a\r\nb\r\n"),
    (
        "python",
        "stdio-objects",
        "import sys\nfor s in (sys.stdin, sys.stdout, sys.stderr):\n"
        "    print(s.name, s.encoding, s.errors, s.line_buffering, s.write_through,"
        " repr(s._CHUNK_SIZE), type(s.buffer).__name__)\n"
        "print(sys.stdin is sys.__stdin__, sys.stdout is sys.__stdout__)",
        b"",
    ),
    (
        "python",
        "environ",
        "import os\nprint(sorted(os.environ.items()))\n"
        "block = open('/proc/self/environ','rb').read().split(b'\\0')\n"
        "print(all(f'{k}={v}'.encode() in block for k, v in os.environ.items()))",
        b"",
    ),
    (
        "python",
        "proc-self",
        "import os\nprint(len(os.listdir('/proc/self/fd')))\n"
        "print(os.readlink('/proc/self/exe'), os.readlink('/proc/self/cwd'))\n"
        "print(open('/proc/self/status').read().count('\\n') > 10)",
        b"",
    ),
    (
        "python",
        "argv-flags",
        "import sys\nprint(sys.argv, sys.orig_argv, sys.executable)\n"
        "print(sys.flags)\nprint(sys.dont_write_bytecode, sys.path[0])",
        b"",
    ),
    (
        "python",
        "main-module",
        "import sys\nm = sys.modules['__main__']\n"
        "print(sorted(k for k in vars(m) if k.startswith('__')))\n"
        "print(__name__, __file__, __package__, __spec__, __cached__, __doc__)\n"
        "print(type(__loader__).__name__, m is sys.modules[__name__])\n"
        "print(__builtins__ is __import__('builtins'))",
        b"",
    ),
    (
        "python",
        "uncaught",
        "def f():\n    raise ValueError('boom')\nprint('before', flush=True)\nf()\n",
        b"",
    ),
    ("python", "exit-code", "import sys\nprint('x')\nsys.exit(42)", b""),
    ("python", "exit-str", "import sys\nsys.exit('bye now')", b""),
    ("python", "exit-builtin", "print('a')\nexit(3)", b""),
    (
        "python",
        "atexit",
        "import atexit, sys\natexit.register(lambda: print('atexit ran'))\n"
        "print('body')\nsys.exit(5)",
        b"",
    ),
    (
        "python",
        "sigint",
        "import os, signal\nprint(signal.getsignal(signal.SIGINT))\n"
        "try:\n    os.kill(os.getpid(), signal.SIGINT)\n"
        "    import time; time.sleep(1)\n"
        "except KeyboardInterrupt:\n    print('KeyboardInterrupt')\n",
        b"",
    ),
    (
        "python",
        "sigint-uncaught",
        "import os, signal\nos.kill(os.getpid(), signal.SIGINT)\nimport time; time.sleep(1)\n",
        b"",
    ),
    (
        "python",
        "signals",
        "import signal\nprint([(s.name, str(signal.getsignal(s))) for s in"
        " (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP)])",
        b"",
    ),
    ("python", "sigterm-self", "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)", b""),
    (
        "python",
        "recursion",
        "import sys\nprint(sys.getrecursionlimit())\n"
        "def f(n):\n    return 0 if n == 0 else 1 + f(n - 1)\nprint(f(990))",
        b"",
    ),
    (
        "python",
        "warnings",
        "import warnings\nwarnings.warn('careful')\nprint('ok')",
        b"",
    ),
    ("python", "unbuffered-order", "import sys\nprint('out')\nprint('err', file=sys.stderr)", b""),
    (
        "python",
        "pathlib-cwd",
        "import os, pathlib\nprint(os.getcwd(), pathlib.Path(__file__).resolve())\n"
        "print(os.getpid() > 1, os.getppid() > 0, os.getuid(), os.getgid(), os.umask(0))",
        b"",
    ),
    # --- languages run by exec: argv, exit codes, uncaught errors, stdin bytes
    ("javascript", "stdin-bytes", "process.stdout.write(require('fs').readFileSync(0))", CRLF),
    (
        "javascript",
        "argv-main",
        "console.log(process.argv.slice(1), require.main === module, __filename)\n"
        "console.log(process.execArgv, typeof process.env.HOME)",
        b"",
    ),
    ("javascript", "uncaught", "console.log('before');\nnull.x;\n", b""),
    ("javascript", "exit-code", "console.log('a'); process.exit(7)", b""),
    ("ruby", "stdin-bytes", "$stdout.binmode\n$stdout.write($stdin.binmode.read)", CRLF),
    ("ruby", "uncaught", "puts 'before'\nraise ArgumentError, 'boom'\n", b""),
    ("ruby", "exit-code", "puts $0, __FILE__ == $0\nexit 9", b""),
    # ruby is pre-started (agent/prestart.rb): what a plain `ruby main.rb` shows, still
    (
        "ruby",
        "argv-cmdline",
        "p Process.argv0, $PROGRAM_NAME, __FILE__, __dir__, ARGV, Dir.pwd\n"
        "p File.binread('/proc/self/cmdline'), ENV.to_h.sort, defined?(JSON)",
        b"",
    ),
    ("ruby", "error-highlight", "def f(x) = x.foo\nputs 'a'\nf(nil)\n", b""),
    ("ruby", "at-exit-then-error", "at_exit { puts 'bye' }\nraise IOError, 'late'\n", b""),
    ("ruby", "data-after-end", "print DATA.read\n__END__\nkept as is\n", b""),
    ("ruby", "syntax-error", "puts(1\n", b""),
    ("ruby", "sigint", "Process.kill(:INT, $$)\nsleep 1\n", b""),
    ("ruby", "stdin-lines", "p $stdin.each_line.to_a, $stdin.eof?", CRLF),
    ("bash", "stdin-bytes", "cat", CRLF),
    ("bash", "exit-code", 'echo "$0" "$#"; exit 4', b""),
    (
        "c",
        "stdin-bytes",
        "#include <stdio.h>\nint main(void){int c;while((c=getchar())!=EOF)putchar(c);return 3;}",
        CRLF,
    ),
    ("c", "abort", "#include <stdlib.h>\nint main(void){abort();}", b""),
]


def _plain_command(language: str) -> str:
    """Copy the source in, compile it if need be, then exec the toolchain's own run
    command with exactly the language's environment (as a sandbox's program has it:
    neither the shell's ``PWD`` nor the image's build-time ``DEBIAN_FRONTEND``)."""
    spec = get_language(language)
    env = [f"{k}={v}" for k, v in sorted(language_env(spec).items())]
    steps = []
    if spec.compile is not None:
        steps.append(shlex.join(spec.compile) + " > /tmp/compile.log 2>&1 || exit 99")
    steps.append("exec " + shlex.join(["env", "-i", *env, *spec.run]))
    return "cp /src/* /work/ && " + " && ".join(steps)


def plain_run(image: str, language: str, source: str, stdin: bytes) -> tuple[bytes, bytes, int]:
    """The toolchain's own run of ``source`` in a plain container of ``image``."""
    spec = get_language(language)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / spec.source_file
        src.write_text(source)
        src.chmod(0o644)
        Path(tmp).chmod(0o755)
        env = [f"--env={k}={v}" for k, v in sorted(language_env(spec).items())]
        uid = f"{SANDBOX_UID}:{SANDBOX_UID}"
        cmd = [
            "docker", "run", "--rm", "-i", "--network", "none", "--init",
            "--user", uid, "--workdir", "/work", "--read-only",
            "--tmpfs", f"/work:rw,exec,nosuid,nodev,uid={SANDBOX_UID},gid={SANDBOX_UID},mode=0755",
            "--tmpfs", "/tmp:rw,exec,nosuid,nodev,mode=1777",
            "--volume", f"{tmp}:/src:ro", "--env-file", "/dev/null", *env,
            "--entrypoint", "/bin/sh", image, "-c", _plain_command(language),
        ]  # fmt: skip
        done = subprocess.run(cmd, input=stdin, capture_output=True, timeout=120, check=False)
    return done.stdout, done.stderr, done.returncode


def sandbox_status(r: sk.RunResult) -> int:
    """The exit status a shell (tini) reports for the run: 128 + signal on a signal."""
    if r.signal is not None:
        return 128 + r.signal
    assert r.exit_code is not None
    return r.exit_code


@pytest.fixture(scope="module")
async def parity_pool() -> AsyncIterator[sk.SandboxPool]:
    langs = sorted({p[0] for p in PROBES})
    async with sk.SandboxPool(languages=langs, size=1) as p:
        yield p


@pytest.mark.parametrize(
    ("language", "name", "source", "stdin"), PROBES, ids=[f"{p[0]}-{p[1]}" for p in PROBES]
)
async def test_probe_matches_the_plain_toolchain(
    parity_pool: sk.SandboxPool, language: str, name: str, source: str, stdin: bytes
) -> None:
    image = await parity_pool.image_for(get_language(language))
    r = await parity_pool.run(source, language=language, stdin=stdin)
    out, err, status = plain_run(image, language, source, stdin)
    assert status != 99, f"the plain compile failed: {err!r}"
    assert (r.stdout_bytes, r.stderr_bytes, sandbox_status(r)) == (out, err, status)


# A sandbox's program (not the agent, PID 1) is the one the OOM killer takes, and its own
# /proc/self is open to it as in a fresh process, while /proc/1 stays closed: the child is
# made dumpable again before it sets its oom_score_adj (an undumpable process's /proc/self
# belongs to root, so the write used to fail silently).
PROC_SELF = {
    "python": (
        "def read(path):\n"
        "    try:\n"
        "        return open(path, 'rb').read()\n"
        "    except PermissionError:\n"
        "        return None\n"
        "print(read('/proc/self/oom_score_adj').decode().strip())\n"
        "print(any(e.startswith(b'PATH=') for e in read('/proc/self/environ').split(b'\\0')))\n"
        "print(read('/proc/1/environ') is None)\n"
    ),
    "javascript": (  # the pre-started node: made dumpable in _prestart
        "const fs = require('fs');\n"
        "const read = (p) => { try { return fs.readFileSync(p); } catch (e) { return null; } };\n"
        "console.log(read('/proc/self/oom_score_adj').toString().trim());\n"
        "console.log(read('/proc/self/environ').toString().split('\\0')"
        ".some((e) => e.startsWith('PATH=')) ? 'True' : 'False');\n"
        "console.log(read('/proc/1/environ') === null ? 'True' : 'False');\n"
    ),
    "ruby": (  # the pre-started ruby: made dumpable in _prestart
        "read = ->(p) { File.binread(p) rescue nil }\n"
        "puts read.('/proc/self/oom_score_adj').strip\n"
        "path = read.('/proc/self/environ').split(\"\\0\").any? { |e| e.start_with?('PATH=') }\n"
        "puts path ? 'True' : 'False'\n"
        "puts read.('/proc/1/environ').nil? ? 'True' : 'False'\n"
    ),
    "bash": (
        'read -r adj < /proc/self/oom_score_adj; echo "$adj"\n'
        # builtins: a command's redirection would open its own /proc/self before its exec
        "mapfile -d '' block < /proc/self/environ\n"
        'for e in "${block[@]}"; do [[ $e == PATH=* ]] && echo True; done\n'
        "if cat /proc/1/environ > /dev/null 2>&1; then echo False; else echo True; fi\n"
    ),
}


@pytest.mark.parametrize("language", sorted(PROC_SELF))
async def test_program_is_the_oom_victim_and_reads_its_own_proc(
    parity_pool: sk.SandboxPool, language: str
) -> None:
    r = await parity_pool.run(PROC_SELF[language], language=language)
    assert (r.status, r.stderr) == ("ok", "")
    assert r.stdout.split() == ["1000", "True", "True"]
