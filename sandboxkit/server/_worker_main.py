"""``sandboxkit worker``: a process that judges submissions from a shared PostgreSQL
store on the engines it is given, until SIGTERM or SIGINT (then it stops claiming,
finishes what it holds within a grace period, and leaves)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

from .._backends import EngineLike
from .._egress.policy import Egress
from .._errors import InvalidInput
from .._sandbox_pool import SandboxPool
from ._judging import Judging
from ._metrics import Metrics
from ._store import is_postgres_url, open_store
from ._worker import Worker

log = logging.getLogger("sandboxkit.worker")


async def run_worker(
    db: str,
    *,
    engines: Sequence[EngineLike] | None = None,
    concurrency: int = 2,
    lease_seconds: float = 10.0,
    name: str | None = None,
    metrics_port: int | None = None,
    warm_languages: Sequence[str] = ("python",),
    pool_size: int = 1,
    exact: bool = False,
    grace: float = 60.0,
    stop: asyncio.Event | None = None,
    allow_network: bool = False,
    network: Egress | None = None,
) -> None:
    """Judge from ``db`` until ``stop`` is set (or SIGTERM/SIGINT arrives).

    ``concurrency`` is bounded by what the engines can hold: past the pool's
    capacity it is lowered (and said so), never queued inside the worker.

    ``allow_network``: honour ``enable_network`` (off: such a submission runs with no
    network, whatever the API node accepted); ``network``: what it may then reach, the
    operator's egress policy (as ``serve --network-allow``); None: the engine's whole
    bridge."""
    if not is_postgres_url(db):
        raise InvalidInput("a worker needs the shared store: --db postgresql://USER@HOST/DB")
    if concurrency < 1:
        raise InvalidInput("concurrency must be >= 1")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    pool = SandboxPool(
        languages=warm_languages,
        size=pool_size,
        exact=exact,
        # room for the busy sandboxes and the warm ones behind them (each serves one run)
        max_size=max(concurrency + pool_size, 2 * pool_size, pool_size + 4),
        engines=engines,
    )
    store = open_store(db)
    await store.open()
    judging = Judging(pool, owned=True, network=network, allow_network=allow_network)
    metrics_server = None
    try:
        await judging.open()
        capacity = await _capacity(pool)
        if capacity is not None and concurrency > capacity:
            log.warning("concurrency %d is past the engines' capacity: %d", concurrency, capacity)
            concurrency = capacity
        metrics = Metrics()
        worker = Worker(
            store, judging, name=name, concurrency=concurrency, lease=lease_seconds, metrics=metrics
        )
        if metrics_port is not None:
            from prometheus_client import start_http_server

            metrics_server, _thread = start_http_server(
                metrics_port, addr="127.0.0.1", registry=metrics.registry
            )
        worker.start()
        log.info(
            "worker %s judging from the store, concurrency %d",
            worker.name,
            concurrency,
            extra={"worker": worker.name},
        )
        await stop.wait()
        log.info("worker %s stopping", worker.name, extra={"worker": worker.name})
        await worker.stop(grace)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if metrics_server is not None:
            metrics_server.shutdown()
        await judging.close()
        await store.close()


async def _capacity(pool: SandboxPool) -> int | None:
    """The most sandboxes the pool's engines hold (None: no cap is known)."""
    status = await pool.engine_status()
    caps = [s.capacity for s in status if s.state == "up"]
    if not caps or any(c is None for c in caps):
        return pool.max_size
    return min(pool.max_size, sum(c for c in caps if c is not None))
