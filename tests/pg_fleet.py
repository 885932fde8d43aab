"""The PostgreSQL fleet as an operator runs it: real processes of ``sandboxkit serve
--db postgresql://...`` (API nodes) and ``sandboxkit worker`` on one PostgreSQL cluster
made by ``scripts/postgres.sh``. Shared by the fleet tests and the fleet benchmark.

Every process is a subprocess of this interpreter on a free port of 127.0.0.1, its
output captured to a file; ``Fleet`` stops all it started (SIGTERM, then SIGKILL after
a bound), failures included. Network: every connection here goes to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx

from sandboxkit._fleet.labels import LABEL_OWNER

ROOT = Path(__file__).resolve().parent.parent
PG_SCRIPT = ROOT / "scripts" / "postgres.sh"
FINAL = lambda status_id: status_id not in (1, 2)  # noqa: E731 - Judge0: 1 In Queue, 2 Processing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy (returned), at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(interval)


async def await_until(
    check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1
) -> Any:
    """``wait_until`` for coroutines: ``check`` returns an awaitable."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        await asyncio.sleep(interval)


# ---------------------------------------------------------------- PostgreSQL
class Postgres:
    """A cluster of ``scripts/postgres.sh`` in its own folder on its own port."""

    def __init__(self, folder: Path | str, port: int | None = None) -> None:
        self.folder = Path(folder)
        self.port = port or free_port()
        self.env = {
            **os.environ,
            "SANDBOXKIT_PG_DIR": str(self.folder),
            "SANDBOXKIT_PG_PORT": str(self.port),
        }

    def script(self, command: str, timeout: float = 600) -> str:
        out = subprocess.run(
            ["bash", str(PG_SCRIPT), command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if out.returncode != 0 and not (command == "status" and out.returncode == 3):
            raise RuntimeError(f"postgres.sh {command} failed ({out.returncode}): {out.stderr}")
        return out.stdout.strip()

    def start(self) -> str:
        return self.script("start").splitlines()[-1]

    def stop(self) -> None:
        self.script("stop")

    def crash(self) -> None:
        self.script("crash")

    def running(self) -> bool:
        return self.script("status").startswith("running")

    @property
    def url(self) -> str:
        return f"postgresql://sandboxkit@127.0.0.1:{self.port}/sandboxkit"

    def db_url(self, name: str) -> str:
        return f"postgresql://sandboxkit@127.0.0.1:{self.port}/{name}"

    async def create_database(self, prefix: str = "t") -> str:
        """A new empty database owned by ``sandboxkit``; its URL."""
        import asyncpg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}" OWNER sandboxkit')
        finally:
            await conn.close()
        return self.db_url(name)

    async def drop_database(self, url: str) -> None:
        import asyncpg

        name = url.rsplit("/", 1)[1]
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def query(db_url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    import asyncpg

    conn = await asyncpg.connect(db_url)
    try:
        return [dict(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


# ---------------------------------------------------------------- processes
def identity_of(pid: int) -> str:
    """The owner label sandboxkit puts on the containers of process ``pid``."""
    with open(f"/proc/{pid}/stat") as f:
        start = f.read().rsplit(")", 1)[1].split()[19]
    return f"{os.uname().nodename}:{pid}:{start}"


class Proc:
    """A ``sandboxkit`` subprocess with its output in ``log_path``."""

    kind = "proc"

    def __init__(self, args: list[str], log_path: Path, ready_url: str, ready_timeout: float):
        self.args = [
            sys.executable,
            "-c",
            "from sandboxkit._cli_entry import main; main()",
            *args,
        ]
        self.log_path = log_path
        self.ready_url = ready_url
        self.killed = False
        self._log = open(log_path, "ab")  # noqa: SIM115 - kept open for the child's life
        self.proc = subprocess.Popen(
            self.args, stdout=self._log, stderr=subprocess.STDOUT, cwd=str(ROOT)
        )
        try:
            self.owner = identity_of(self.proc.pid)
        except OSError:  # exited at once: wait_ready says why
            self.owner = f"{os.uname().nodename}:{self.proc.pid}:0"
        try:
            self.wait_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON objects of the log (``--log-format json``); other lines skipped."""
        out = []
        for line in self.log_text().splitlines():
            line = line.strip()
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.kind} exited ({self.proc.returncode}) before it was ready:\n"
                    + self.tail()
                )
            try:
                if httpx.get(self.ready_url, timeout=2).is_success:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} not ready within {timeout} s:\n" + self.tail())
            time.sleep(0.1)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            self.proc.send_signal(sig)
        if sig == signal.SIGKILL:
            self.killed = True
            self.proc.wait(30)

    def stop(self, timeout: float = 60, *, signalled: bool = False) -> int:
        """SIGTERM (unless already ``signalled``), then SIGKILL past ``timeout``; the exit
        code (negative: killed by that signal)."""
        if self.alive():
            if not signalled:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                self.proc.kill()
                self.proc.wait(30)
        self._log.close()
        return int(self.proc.returncode)


class Node(Proc):
    """``sandboxkit serve --db postgresql://...``: an API node (``workers=0``: no judging)."""

    kind = "node"

    def __init__(
        self,
        db_url: str,
        log_dir: Path,
        workers: int = 0,
        *extra: str,
        max_queue_size: int = 100000,
        lease_seconds: float | None = None,
        name: str | None = None,
        ready_timeout: float = 180,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = name or f"node-{self.port}"
        args = [
            "serve",
            "--db",
            db_url,
            "--port",
            str(self.port),
            "--workers",
            str(workers),
            "--max-queue-size",
            str(max_queue_size),
            "--log-format",
            "json",
            "--log-level",
            "info",
        ]
        if lease_seconds is not None:
            args += ["--lease-seconds", str(lease_seconds)]
        super().__init__(
            [*args, *extra], log_dir / f"{self.name}.log", self.url + "/about", ready_timeout
        )

    def workers(self) -> list[dict[str, Any]]:
        r = httpx.get(self.url + "/workers", timeout=10)
        r.raise_for_status()
        return list(r.json())

    def metrics(self) -> str:
        r = httpx.get(self.url + "/metrics", timeout=10)
        r.raise_for_status()
        return r.text


class Worker(Proc):
    """``sandboxkit worker --db postgresql://...``, ready once its metrics port answers."""

    kind = "worker"

    def __init__(
        self,
        db_url: str,
        log_dir: Path,
        concurrency: int = 2,
        lease_seconds: float | None = 3,
        *extra: str,
        name: str | None = None,
        warm: Iterable[str] = ("python",),
        pool_size: int | None = None,
        ready_timeout: float = 180,
    ) -> None:
        self.metrics_port = free_port()
        self.name = name or f"worker-{self.metrics_port}"
        self.concurrency = concurrency
        args = [
            "worker",
            "--db",
            db_url,
            "--concurrency",
            str(concurrency),
            "--metrics-port",
            str(self.metrics_port),
            "--name",
            self.name,
            "--log-format",
            "json",
            "--log-level",
            "info",
        ]
        if lease_seconds is not None:
            args += ["--lease-seconds", str(lease_seconds)]
        for lang in warm:
            args += ["--warm", lang]
        if pool_size is not None:
            args += ["--pool-size", str(pool_size)]
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        super().__init__(
            [*args, *extra], log_dir / f"{self.name}.log", self.metrics_url, ready_timeout
        )

    def metrics(self) -> str:
        r = httpx.get(self.metrics_url, timeout=10)
        r.raise_for_status()
        return r.text

    def mentions(self, token: str) -> bool:
        """Whether a line of its JSON log is about ``token``."""
        return any(line.get("token") == token for line in self.log_lines())


class Fleet:
    """The processes of one test: everything started here is stopped by ``close()``."""

    def __init__(self, db_url: str, log_dir: Path) -> None:
        self.db_url = db_url
        self.log_dir = log_dir
        self.procs: list[Proc] = []

    def node(self, *extra: str, workers: int = 0, **kw: Any) -> Node:
        n = Node(self.db_url, self.log_dir, workers, *extra, **kw)
        self.procs.append(n)
        return n

    def worker(self, concurrency: int = 2, lease_seconds: float | None = 3, **kw: Any) -> Worker:
        w = Worker(self.db_url, self.log_dir, concurrency, lease_seconds, **kw)
        self.procs.append(w)
        return w

    def wait_workers(self, node: Node, count: int, timeout: float = 60) -> None:
        """Until ``node`` counts ``count`` live workers (heartbeats: sandboxkit_workers)."""

        def seen() -> bool:
            return sample(parse_metrics(node.metrics()), "sandboxkit_workers") == count

        wait_until(seen, timeout, f"{count} live worker(s) on {node.name}", 0.25)

    def close(self) -> dict[str, int]:
        """Stop all (in parallel: each SIGTERM, then SIGKILL); name -> exit code."""
        codes: dict[str, int] = {}
        live = [p for p in self.procs if p.alive()]
        for p in live:
            p.proc.send_signal(signal.SIGTERM)
        for p in self.procs:
            codes[getattr(p, "name", str(p.pid))] = p.stop(signalled=p in live)
        return codes

    def owners(self, killed: bool | None = None) -> list[str]:
        return [p.owner for p in self.procs if killed is None or p.killed == killed]

    def logs(self) -> str:
        return "\n".join(f"--- {getattr(p, 'name', p.pid)}\n{p.tail(30)}" for p in self.procs)


def containers_of(owners: Iterable[str]) -> list[str]:
    left: list[str] = []
    for owner in owners:
        out = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label={LABEL_OWNER}={owner}"],
            capture_output=True,
            text=True,
            check=True,
        )
        left += out.stdout.split()
    return left


# ---------------------------------------------------------------- Prometheus text
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*"'
_VALUE = r"(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN)"
_SAMPLE = re.compile(
    rf"^(?P<name>{_NAME})(?:\{{(?P<labels>(?:{_LABEL})(?:,{_LABEL})*,?)?\}})?"
    rf" (?P<value>{_VALUE})(?: -?\d+)?$"
)
_META = re.compile(rf"^# (?P<kind>HELP|TYPE) (?P<name>{_NAME})(?: (?P<rest>.*))?$")
_ONE_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"')


def parse_metrics(text: str) -> dict[str, dict[str, Any]]:
    """Prometheus text exposition as family -> {"type", "samples": [(name, labels,
    value)]}: prometheus_client's parser when installed, else a strict one that raises
    ValueError on any line that is not a comment, a blank or a valid sample."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        pass
    else:
        families: dict[str, dict[str, Any]] = {}
        for fam in text_string_to_metric_families(text):
            families[fam.name] = {
                "type": fam.type,
                "samples": [(s.name, dict(s.labels), float(s.value)) for s in fam.samples],
            }
        return families
    return _parse_strict(text)


def _parse_strict(text: str) -> dict[str, dict[str, Any]]:
    families: dict[str, dict[str, Any]] = {}
    types: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            meta = _META.match(line)
            if meta and meta["kind"] == "TYPE":
                kind = (meta["rest"] or "").strip()
                if kind not in ("counter", "gauge", "histogram", "summary", "untyped", "info"):
                    raise ValueError(f"line {n}: unknown type {kind!r}")
                types[meta["name"]] = kind
                families.setdefault(meta["name"], {"type": kind, "samples": []})
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError(f"line {n}: not Prometheus text: {line!r}")
        name = m["name"]
        family = name
        for suffix in ("_bucket", "_sum", "_count", "_total", "_created"):
            base = name[: -len(suffix)]
            if name not in types and name.endswith(suffix) and base in types:
                family = base
                break
        labels = {k: _unescape(v) for k, v in _ONE_LABEL.findall(m["labels"] or "")}
        families.setdefault(family, {"type": types.get(family, "untyped"), "samples": []})
        families[family]["samples"].append((name, labels, float(m["value"])))
    return families


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value)


def sample(families: dict[str, dict[str, Any]], name: str, **labels: str) -> float | None:
    """The value of sample ``name`` with these labels (any family), or None."""
    for fam in families.values():
        for sname, slabels, value in fam["samples"]:
            if sname == name and all(slabels.get(k) == v for k, v in labels.items()):
                return float(value)
    return None
