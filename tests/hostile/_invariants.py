"""What must hold after every hostile program, written once.

``check`` runs a program through the public API and then asserts: the call returned
within its limit plus the host's backstop and a scheduling grace; the status is the
expected one; no container of the run remains (every container labelled with the pool's
id is one of its idle warm sandboxes or an open session); the pool is back to full
strength; and a canary run right after gives exactly the right answer, in a sandbox with
no leftover process or file.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from box_procs import PROCS

import sandboxkit as sk
from sandboxkit._fleet.labels import LABEL_POOL
from sandboxkit._run.reader import HOST_GRACE

# Slack for a shared 2-core CI machine (acquiring a sandbox, scheduling). A bound on a
# hung call, not a speed claim: timings live in benchmarks/.
GRACE = 12.0
SETTLE_TIMEOUT = 60.0


@dataclass
class PoolView:
    idle: set[str]
    sessions: set[str]
    starting: int
    busy: int
    full: bool


def view(pool: sk.SandboxPool) -> PoolView:
    warm = list(pool._pools.values())
    return PoolView(
        idle={b.cid for w in warm for b in w._idle},
        sessions={b.cid for w in warm for b in w._leased},
        starting=sum(w.state.starting for w in warm),
        # (reuse mode) a sandbox being scrubbed after its run counts busy until it is idle
        busy=sum(w.state.busy - len(w._scrubbing) for w in warm),
        full=all(w.state.idle >= w.state.size for w in warm),
    )


async def containers(pool: sk.SandboxPool) -> set[str]:
    """Every container the engine holds with this pool's label, whatever its state."""
    found = await pool.engine.list_containers({LABEL_POOL: pool.pool_id})
    return {c.id for c in found}


async def settle(pool: sk.SandboxPool, timeout: float = SETTLE_TIMEOUT) -> None:
    """Wait until only idle warm sandboxes (and open sessions) remain and the pool is full."""
    deadline = time.monotonic() + timeout
    while True:
        present = await containers(pool)
        v = view(pool)
        leaked = present - v.idle - v.sessions
        done = (
            not leaked
            and v.starting == 0
            and v.busy == len(v.sessions)
            and v.full
            and v.idle <= present
        )
        if done:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"pool did not settle: leftover containers {sorted(c[:12] for c in leaked)}, "
                f"missing idle {sorted(c[:12] for c in v.idle - present)}, health {pool.health()}"
            )
        await asyncio.sleep(0.1)


async def canary(pool: sk.SandboxPool) -> None:
    """A benign run right after: exact output, fresh workdir, no stray process."""
    nonce = secrets.token_hex(8)
    code = PROCS + (  # the agent's own helpers are not leftovers (see box_procs)
        f"print({nonce!r}, sum(range(10)), sorted(os.listdir('/work')), len(procs),"
        " sorted(os.listdir('/tmp')))\n"
    )
    r = await pool.run(code, limits=sk.Limits(time=10))
    assert (r.status, r.stderr) == ("ok", ""), r
    assert r.stdout == f"{nonce} 45 ['main.py'] 2 []\n", r.stdout


def short(r: sk.RunResult) -> str:
    return (
        f"status={r.status} exit={r.exit_code} signal={r.signal} "
        f"stdout={r.stdout[-300:]!r} stderr={r.stderr[-600:]!r}"
    )


async def check(
    pool: sk.SandboxPool,
    code: str,
    expect: str | tuple[str, ...],
    *,
    language: str = "python",
    limits: sk.Limits | None = None,
    stdin: str | bytes | None = None,
    files: Mapping[str, bytes] | None = None,
) -> sk.RunResult:
    """Run one hostile program and assert every invariant; return its result."""
    lim = limits or pool.limits
    wanted = (expect,) if isinstance(expect, str) else expect
    started = time.monotonic()
    r = await pool.run(code, language=language, limits=limits, stdin=stdin, files=files)
    took = time.monotonic() - started
    spec = sk.get_language(language)
    compile_time = spec.compile_time if spec.compile is not None else 0.0
    bound = lim.time + compile_time + 2 * HOST_GRACE + GRACE
    assert took <= bound, f"the call took {took:.1f}s, over {bound:.1f}s: {short(r)}"
    assert r.status in wanted, f"wanted {wanted}: {short(r)}"
    await settle(pool)
    await canary(pool)
    return r
