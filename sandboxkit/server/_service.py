"""The service the routes stand on: the store, this process's workers (if any), and what
the routes ask of them beyond a plain read (admitting new submissions, waiting for a
result). One per application, on ``app.state``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from .._errors import InvalidInput
from .._sandbox_pool import SandboxPool
from ._judging import CallbackPolicy, Judging
from ._metrics import Metrics
from ._settings import Settings
from ._store import UNFINISHED, Admission, Store, is_postgres_url, open_store
from ._submission import Submission
from ._worker import Worker

log = logging.getLogger("sandboxkit.server")


class Judge0Service:
    """The store behind the routes, and this process's workers (if any)."""

    def __init__(self, settings: Settings) -> None:
        if settings.workers < 0:
            raise InvalidInput("workers must be >= 0")
        if settings.workers == 0 and not is_postgres_url(settings.db):
            raise InvalidInput(
                "workers=0 (an API-only node) needs a shared PostgreSQL store "
                "(--db postgresql://...) that `sandboxkit worker` processes judge from"
            )
        self.settings = settings
        self.store: Store = open_store(settings.db)
        self.metrics = Metrics()
        self.worker: Worker | None = None
        self.judging: Judging | None = None
        #: Judge0's /statistics document and when (monotonic) it expires
        self.statistics: tuple[float, dict[str, Any]] | None = None

    async def start(self) -> None:
        await self.store.open()
        if self.settings.workers == 0:
            return
        cfg = self.settings
        self.judging = Judging(
            cfg.pool
            if cfg.pool is not None
            else SandboxPool(languages=cfg.warm_languages, size=cfg.pool_size, exact=cfg.exact),
            owned=cfg.pool is None,
            callbacks=CallbackPolicy(cfg.callback_tries, cfg.callback_timeout),
            network=cfg.network,
        )
        try:
            await self.judging.open()
        except BaseException:
            await self.store.close()
            raise
        self.worker = Worker(
            self.store,
            self.judging,
            concurrency=cfg.workers,
            lease=cfg.lease_seconds,
            metrics=self.metrics,
        )
        self.worker.start()

    async def stop(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
        if self.judging is not None:
            await self.judging.close()
        await self.store.close()

    async def submit(self, records: Sequence[Submission], client: str) -> None:
        """Store ``records`` durably (a 201 may follow) under the queue's cap and
        ``client``'s; raises QueueFull or TooManyInFlight and stores none past one."""
        cfg = self.settings
        admission = Admission(
            client=client,
            max_queue=cfg.max_queue_size,
            max_in_flight=cfg.max_in_flight_per_user,
        )
        await self.store.insert(records, admission)
        for record in records:
            log.info(
                "%s: stored (language %s)",
                record.token,
                record.language_id,
                extra={"token": record.token, "client": client},
            )

    async def wait_final(self, token: str) -> Submission | None:
        """The record once it is final, polling the store (woken by its notifications),
        or as it stands after ``wait_timeout``."""
        deadline = time.monotonic() + self.settings.wait_timeout
        with self.store.wakeups.watch(token) as finished:
            while True:
                finished.clear()  # before the read: a finish after it sets it again
                found = (await self.store.get_many([token])).get(token)
                left = deadline - time.monotonic()
                if found is None or found.status_id not in UNFINISHED or left <= 0:
                    return found
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(finished.wait(), min(1.0, left))
