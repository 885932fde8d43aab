"""``sandboxkit serve`` as a user starts it: a real subprocess on a free port of
127.0.0.1 with its own SQLite file, stopped (and its sandboxes removed) by ``stop()``.
Shared by the server test modules."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import judge0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, db: Path, *extra: str, token: str | None = None) -> None:
        if token:
            extra = (*extra, "--auth-token", token)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.headers: dict[str, str] = {}
        args = [
            sys.executable,
            "-c",
            "from sandboxkit._cli_entry import main; main()",
            "serve",
            "--port",
            str(self.port),
            "--db",
            str(db),
            "--workers",
            "2",
            "--log-level",
            "warning",
            *extra,
        ]
        if "--auth-token" in extra:
            self.headers = {"X-Auth-Token": extra[extra.index("--auth-token") + 1]}
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while True:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                raise RuntimeError(f"sandboxkit serve exited: {out}")
            try:
                if httpx.get(self.url + "/about", headers=self.headers, timeout=2).is_success:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("sandboxkit serve did not answer within 180 s")
            time.sleep(0.2)

    def client(self) -> judge0.Client:
        return judge0.Client(self.url, dict(self.headers), retry_strategy=judge0.MaxWaitTime(300))

    def submit(self, body: dict[str, Any], query: str = "", **kw: Any) -> httpx.Response:
        return httpx.post(
            f"{self.url}/submissions?wait=true&{query}",
            json=body,
            headers=self.headers,
            timeout=300,
            **kw,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
