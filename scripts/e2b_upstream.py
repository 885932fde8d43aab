"""Run the e2b SDKs' OWN integration tests against ``sandboxkit e2b`` on loopback.

    python scripts/e2b_upstream.py DIR [--suite e2b|code-interpreter] [pytest args...]
    python scripts/e2b_upstream.py DIR --list      # what is left out, and why
    python scripts/e2b_upstream.py DIR --runtime runsc [--suite ...] [pytest args...]

DIR holds the two upstream test folders, unmodified and never copied into this repo:

    DIR/e2b               e2b-dev/E2B             packages/python-sdk/tests
    DIR/code-interpreter  e2b-dev/code-interpreter python/tests

(The PyPI sdists of ``e2b`` and ``e2b-code-interpreter`` carry no tests, so they come
from the two GitHub repositories: ``git archive`` of a checkout, see docs/e2b.md.)

The script starts ``python -m sandboxkit e2b`` on two free loopback ports with a key,
points the SDKs at it (E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY, E2B_DOMAIN=localhost so
that nothing the SDK builds from its domain leaves the machine), and runs the selection
below with pytest, the upstream ``pytest.ini`` settings given on the command line. Every
test left out is listed with its reason (``--list`` prints them). The exit code is
pytest's.

``--runtime runsc`` starts the server under gVisor (``sandboxkit e2b --runtime runsc``),
where ``user="root"`` commands run; the tests that need them (ROOT_TESTS) run only there:
under runc the server refuses root (uid 0 there is the host's), so they are left out.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

KEY = "e2b_sandboxkit_upstream_key"
SUITES = ("e2b", "code-interpreter")

# Folders and files run, relative to DIR: sync and async of each area.
SELECTED = [
    # e2b: lifecycle, control plane
    "e2b/sync/api_sync/test_sbx_info.py",
    "e2b/sync/api_sync/test_sbx_kill.py",
    "e2b/sync/api_sync/test_sbx_list.py",
    "e2b/async/api_async/test_sbx_info.py",
    "e2b/async/api_async/test_sbx_kill.py",
    "e2b/async/api_async/test_sbx_list.py",
    "e2b/sync/sandbox_sync/test_create.py",
    "e2b/sync/sandbox_sync/test_kill.py",
    "e2b/sync/sandbox_sync/test_connect.py",
    "e2b/sync/sandbox_sync/test_timeout.py",
    "e2b/sync/sandbox_sync/test_metrics.py",
    "e2b/sync/sandbox_sync/test_sync_client_lifecycle.py",
    "e2b/async/sandbox_async/test_create.py",
    "e2b/async/sandbox_async/test_kill.py",
    "e2b/async/sandbox_async/test_connect.py",
    "e2b/async/sandbox_async/test_timeout.py",
    "e2b/async/sandbox_async/test_metrics.py",
    # e2b: commands, files, terminals
    "e2b/sync/sandbox_sync/commands",
    "e2b/async/sandbox_async/commands",
    "e2b/sync/sandbox_sync/files",
    "e2b/async/sandbox_async/files",
    "e2b/sync/sandbox_sync/pty",
    "e2b/async/sandbox_async/pty",
    # code interpreter: contexts, streaming, display data, charts, errors, counts
    "code-interpreter/sync",
    "code-interpreter/async",
    "code-interpreter/charts",
    "code-interpreter/images",
    "code-interpreter/test_execute_timeout.py",
]

# Whole files of the upstream suites not run, and why.
NOT_SELECTED = {
    "e2b/*/template_*": "template builds (E2B's build service; sandboxkit images are specs)",
    "e2b/*/volume_*": "volumes (not offered)",
    "e2b/*/secret_*": "E2B's secrets service (not offered)",
    "e2b/shared/git": "git helpers clone from GitHub (the network rule: nothing leaves)",
    "e2b/*/*/test_internet_access.py": "reaches the public internet",
    "e2b/*/*/test_network.py": "reaches the public internet (allow/deny lists by real hosts)",
    "e2b/*/*/test_host.py": "serves a port to the internet through E2B's edge (get_host)",
    "e2b/*/*/test_fork.py": "fork: Firecracker snapshots of a running VM",
    "e2b/*/*/test_snapshot*.py": "snapshots: Firecracker-only",
    "e2b/*/api_*/test_sbx_snapshot.py": "snapshots: Firecracker-only",
    "e2b/*/*/test_secure.py": "secure envd tokens (E2B-A's area, not merged here yet)",
    "e2b/*/*/test_config_propagation.py": "checks SDK plumbing with mocked transports only",
    "e2b/*/*/files/test_metadata.py": "file metadata needs envd 0.6.2 (this server speaks 0.5.7)",
    "e2b/test_*.py": "unit tests of the SDK itself (no server)",
    "e2b/shared/*": "unit tests of the SDK itself (no server)",
    "code-interpreter/*/env_vars/test_r.py": "R kernel (not offered)",
    "code-interpreter/*/env_vars/test_java.py": "Java kernel (not offered)",
    "code-interpreter/*/test_*systemd.py": "restarts E2B's systemd units inside the VM",
    "code-interpreter/test_sandbox_url.py": "unit test of the SDK's URL building",
    "code-interpreter/performance.py": "a benchmark, not a test",
}

# Single tests of selected files, and why.
DESELECTED: dict[str, str] = {}


def _deselect(files: list[str], tests: list[str], reason: str) -> None:
    for file in files:
        for test in tests:
            DESELECTED[f"{file}::{test}"] = reason


def _both(path: str) -> list[str]:
    """The sync and the async e2b test file of ``path`` (under ``sandbox_*``)."""
    return [f"e2b/sync/sandbox_sync/{path}", f"e2b/async/sandbox_async/{path}"]


_CREATE = _both("test_create.py")
_deselect(
    _CREATE,
    [
        "test_auto_pause_filesystem_only_reboots",
        "test_auto_pause_without_auto_resume_requires_connect",
        "test_keep_memory_none_defaults_to_full_memory",
    ],
    "auto-pause (a sandbox paused at its timeout) is not offered",
)
_deselect(_CREATE, ["test_auto_resume_wakes_on_http_request"], "auto-resume by E2B's edge proxy")
_WATCH = [
    "e2b/sync/sandbox_sync/files/test_watch.py",
    "e2b/async/sandbox_async/files/test_watch.py",
]
_deselect(
    _WATCH,
    ["test_watch_directory_changes_with_entry_info"],
    "include_entry needs envd 0.6.3 (this server speaks 0.5.7; the SDK refuses it)",
)
_deselect(
    _WATCH,
    ["test_watch_directory_changes_with_network_mounts_allowed"],
    "allow_network_mounts needs a newer envd than 0.5.7 (the SDK refuses it)",
)
_CHMOD = "counts envd's CHMOD event after a write; Sandbox.watch reports create/write/remove"
_deselect(_WATCH, ["test_watch_recursive_directory_changes"], _CHMOD)
_deselect(_WATCH[:1], ["test_watch_iterated"], _CHMOD)  # sync only
_deselect(
    _both("files/test_info.py"),
    ["test_file_symlink"],
    "the suite (2.45.1) predates SDK 2.63, which shows every is_symlink entry as SYMLINK",
)
_deselect(
    _both("commands/test_env_vars.py"),
    ["test_bash_command_scoped_env_vars"],
    "runs `sudo`: a setuid program cannot raise privileges in a sandboxkit box "
    "(no-new-privileges, on purpose); scoped env vars are checked in tests/test_e2b.py",
)
_deselect(
    _both("test_connect.py"),
    ["test_connect_normalizes_unset_tokens"],
    "mocks a call SDK 2.63 no longer makes (suite 2.45.1); reaches a server with a fake key",
)
_CI = "code-interpreter"
_deselect(
    [f"{_CI}/sync/test_default_kernels.py", f"{_CI}/async/test_async_default_kernels.py"],
    ["test_ts_kernel"],
    "TypeScript kernel (not offered: the JavaScript contexts run node, which has no types)",
)
_deselect(
    [f"{_CI}/sync/test_default_kernels.py"],
    ["test_r_kernel", "test_java_kernel"],
    "R and Java kernels (not offered)",
)
# pytest's --deselect matches node-id prefixes, so test_cwd_java also leaves out
# test_cwd_javascript (which passes: run it with test_cwd_java's line removed; the same
# check, process.cwd() in a JS context, is in tests/test_e2b.py)
_deselect(
    [f"{_CI}/sync/test_cwd.py", f"{_CI}/async/test_async_cwd.py"],
    ["test_cwd_typescript", "test_cwd_r", "test_cwd_java"],
    "TypeScript/R/Java kernels (not offered)",
)


# Tests that run commands as root: run with --runtime runsc, left out under runc.
ROOT_TESTS: dict[str, str] = {
    f"{f}::test_mcp_gateway_start_failure_kills_created_sandbox": (
        "runs `mcp-gateway` with user='root', which this server allows only under gVisor "
        "(run with --runtime runsc: it passes there)"
    )
    for f in _CREATE
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, server: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"sandboxkit e2b exited ({server.returncode}) before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 (loopback only)
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"sandboxkit e2b did not answer {url} in time")


def pytest_args(root: Path, suite: str, runtime: str = "runc") -> list[str]:
    """One suite's selection as pytest arguments, with the upstream pytest.ini's settings.
    Each suite runs on its own, rooted at its folder: pytest's importlib mode names a
    conftest after its folder, and a folder named ``e2b`` would shadow the SDK."""
    args = [str(root / p) for p in SELECTED if p.startswith(suite + "/")]
    for pattern in NOT_SELECTED:
        if pattern.startswith(suite + "/"):
            args.append(f"--ignore-glob={root / pattern}")
    left_out = [*DESELECTED, *(ROOT_TESTS if runtime == "runc" else ())]
    for node in left_out:
        if node.startswith(suite + "/"):  # a node id is relative to its suite's root
            args += ["--deselect", node[len(suite) + 1 :]]
    return [
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(root / suite),
        "-c",
        os.devnull,  # no ini of ours or theirs: the settings below
        "--import-mode=importlib",
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=session",
        "-o",
        "asyncio_default_test_loop_scope=session",
        "-o",
        f"pythonpath={root / suite}",
        "-o",
        "markers=skip_debug",
        "--timeout",
        "90",
        *args,
    ]


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 2
    root = Path(argv[0]).resolve()
    suites, runtime = SUITES, "runc"
    while argv[1:2] in (["--suite"], ["--runtime"]) and len(argv) > 2:  # in either order
        if argv[1] == "--suite":
            suites = (argv[2],)
        else:
            runtime = argv[2]
        argv = argv[:1] + argv[3:]
    if runtime not in ("runc", "runsc"):
        print(f"--runtime {runtime}: runc or runsc")
        return 2
    if argv[1:2] == ["--list"]:
        for reason_map in (NOT_SELECTED, DESELECTED, ROOT_TESTS):
            for what, why in reason_map.items():
                print(f"{what}: {why}")
        return 0
    for suite in SUITES:
        if not (root / suite / "conftest.py").exists():
            print(f"{root / suite}/conftest.py is missing: see this script's docstring")
            return 2
    port, sandbox_port = _free_port(), _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sandboxkit", "e2b", "--port", str(port),
         "--sandbox-port", str(sandbox_port), "--api-key", KEY, "--pool-size", "2",
         "--runtime", runtime],
        start_new_session=True,
    )  # fmt: skip
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/health", server, time.monotonic() + 300)
        env = {
            **os.environ,
            "E2B_API_URL": f"http://127.0.0.1:{port}",
            "E2B_SANDBOX_URL": f"http://127.0.0.1:{sandbox_port}",
            "E2B_API_KEY": KEY,
            "E2B_DOMAIN": "localhost",
        }
        env.pop("E2B_DEBUG", None)  # upstream tests skip themselves when it is set
        worst = 0
        for suite in suites:
            cmd = [sys.executable, "-m", "pytest", *pytest_args(root, suite, runtime), *argv[1:]]
            # cwd is the suite's folder, not DIR: DIR/e2b would shadow the e2b package
            code = subprocess.run(cmd, env=env, cwd=root / suite, check=False).returncode
            worst = max(worst, code)
        return worst
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
