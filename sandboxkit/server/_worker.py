"""A worker: claims submissions from the store, judges them, stores each result once.

The same loop serves ``sandboxkit serve`` (in-process workers) and ``sandboxkit
worker`` (a process of its own, on any host with an engine). A claimed submission is
held by a lease renewed every third of its length while it is judged; a worker that
loses its lease (it stalled, or its database link did, for longer than the lease)
stops judging that submission, and its late result would be refused anyway. A
submission whose workers keep dying is judged at most ``max_attempts`` times, then ends
as Internal Error, so nothing stays Processing for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import replace

from ._judge0 import INTERNAL_ERROR
from ._judging import Judging
from ._metrics import Metrics
from ._requests import now
from ._store import Claim, Store, WorkerBeat
from ._submission import Outcome

log = logging.getLogger("sandboxkit.worker")


def default_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    def __init__(
        self,
        store: Store,
        judging: Judging,
        *,
        name: str | None = None,
        concurrency: int = 2,
        lease: float = 10.0,
        max_attempts: int = 5,
        beat_every: float = 2.0,
        poll_every: float = 1.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.judging = judging
        self.name = name or default_name()
        self.concurrency = max(1, concurrency)
        self.lease = max(1.0, lease)
        self.max_attempts = max_attempts
        self.beat_every = beat_every
        self.poll_every = poll_every
        self.metrics = metrics
        self.working = 0
        self.judged = 0
        self.failed = 0
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # ---- life cycle
    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(i)) for i in range(self.concurrency)]
        self._tasks.append(asyncio.create_task(self._beat()))

    async def stop(self, grace: float = 0.0) -> None:
        """Stop: within ``grace`` seconds the submissions being judged finish; past it
        they are abandoned (their leases expire and another worker judges them)."""
        self._stopping.set()
        loops = self._tasks[:-1]
        try:
            if grace > 0 and loops:
                await asyncio.wait(loops, timeout=grace)
        finally:  # cancelled while waiting too: the loops never outlive the worker
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.store.forget_worker(self.name), 5)

    def beat(self) -> WorkerBeat:
        return WorkerBeat(self.name, self.concurrency, self.working, self.judged, self.failed)

    # ---- loops
    async def _beat(self) -> None:
        while True:
            try:
                await self.store.heartbeat(self.beat(), ttl=3 * self.beat_every)
                if self.metrics is not None:
                    await self.metrics.refresh(self.store)
                    network_pool = self.judging.network_pool
                    self.metrics.egress(network_pool.egress_hub if network_pool else None)
            except Exception as exc:  # noqa: BLE001 - the database is away: beat later
                log.warning("heartbeat failed: %s", exc, extra={"worker": self.name})
            await asyncio.sleep(self.beat_every)

    async def _loop(self, index: int) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                claim = await self.store.claim(self.name, self.lease)
            except Exception as exc:  # noqa: BLE001 - the database is away: try later
                log.warning("claim failed: %s", exc, extra={"worker": self.name})
                await asyncio.sleep(backoff)
                backoff = min(5.0, backoff * 2)
                continue
            backoff = 0.1
            if claim is None:
                waits = {
                    asyncio.ensure_future(self._stopping.wait()),
                    asyncio.ensure_future(self.store.wakeups.wait_queued(self.poll_every)),
                }
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiting in waits:
                        waiting.cancel()
                continue
            self.working += 1
            try:
                await self._handle(claim)
            except asyncio.CancelledError:
                # stopping past the grace: hand it back now rather than at lease expiry
                with contextlib.suppress(Exception):
                    await asyncio.shield(asyncio.wait_for(self.store.release(claim), 2))
                raise
            except Exception:  # a bug here must not end the loop
                log.exception("judging %s failed", claim.token, extra={"token": claim.token})
            finally:
                self.working -= 1

    async def _handle(self, claim: Claim) -> None:
        token = {"token": claim.token, "worker": self.name, "attempt": claim.attempt}
        started = time.perf_counter()
        if claim.attempt > self.max_attempts:
            log.error(
                "%s: judged %d times, no worker finished it",
                claim.token,
                claim.attempt - 1,
                extra=token,
            )
            outcome = Outcome(
                status_id=INTERNAL_ERROR,
                message=f"{claim.attempt - 1} workers stopped before finishing it",
            )
        else:
            log.info("%s: judging (attempt %d)", claim.token, claim.attempt, extra=token)
            judged = await self._judge_holding_lease(claim)
            if judged is None:
                return
            outcome = judged
        outcome = replace(outcome, finished_at=now())
        if not await self.store.finish(claim, outcome):
            log.warning("%s: result refused, another worker took it over", claim.token, extra=token)
            return
        elapsed = time.perf_counter() - started
        self.judged += 1
        if outcome.status_id == INTERNAL_ERROR:
            self.failed += 1
        if self.metrics is not None:
            self.metrics.judging.observe(elapsed)
        log.info("%s: status %d in %.3f s", claim.token, outcome.status_id, elapsed, extra=token)
        self.judging.call_back(claim.record.finished(outcome))

    async def _judge_holding_lease(self, claim: Claim) -> Outcome | None:
        """The result, judged while the lease is renewed; None if the lease was lost."""
        judging = asyncio.create_task(self.judging.judge(claim.record))
        try:
            while True:
                done, _ = await asyncio.wait({judging}, timeout=self.lease / 3)
                if done:
                    return judging.result()
                try:
                    held = await self.store.renew(claim, self.lease)
                except Exception as exc:  # noqa: BLE001 - unknown: keep judging; finish() decides
                    log.warning(
                        "%s: renew failed: %s", claim.token, exc, extra={"token": claim.token}
                    )
                    continue
                if not held:
                    log.warning(
                        "%s: lease lost, stopped judging", claim.token, extra={"token": claim.token}
                    )
                    return None
        finally:
            if not judging.done():
                judging.cancel()
                with contextlib.suppress(BaseException):
                    await judging
