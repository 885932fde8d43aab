"""``/metrics`` in Prometheus text format, on API nodes and on workers.

Each process has a registry of its own (never the global one: tests start several
servers in one interpreter). Counts that live in the store (the queue's depth,
submissions by status, live workers) are read from it when refreshed; the judging
latency is what this process observed itself.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

from .._egress.hub import EgressHub
from ._judge0 import IN_QUEUE, STATUSES
from ._store import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.queue_depth = Gauge(
            "sandboxkit_queue_depth", "Submissions In Queue", registry=self.registry
        )
        self.submissions = Gauge(
            "sandboxkit_submissions",
            "Submissions stored, by status",
            ["status"],
            registry=self.registry,
        )
        self.workers = Gauge(
            "sandboxkit_workers", "Workers with a fresh heartbeat", registry=self.registry
        )
        self.judging = Histogram(
            "sandboxkit_judging_seconds",
            "Time from claiming a submission to storing its result, in this process",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

        self.egress_bytes = Gauge(
            "sandboxkit_egress_bytes",
            "Bytes through the egress gateway of enable_network submissions, by direction",
            ["direction"],
            registry=self.registry,
        )
        self.egress_refused = Gauge(
            "sandboxkit_egress_refused",
            "Names refused to enable_network submissions by the egress policy",
            registry=self.registry,
        )

    def egress(self, hub: EgressHub | None) -> None:
        """The egress totals of the sandboxes gone so far (none without a policy)."""
        if hub is not None:
            self.egress_bytes.labels(direction="out").set(hub.bytes_out)
            self.egress_bytes.labels(direction="in").set(hub.bytes_in)
            self.egress_refused.set(hub.refused)

    async def refresh(self, store: Store) -> None:
        counts = await store.counts_by_status()
        for status_id, description in STATUSES.items():
            self.submissions.labels(status=description).set(counts.get(status_id, 0))
        self.queue_depth.set(counts.get(IN_QUEUE, 0))
        self.workers.set(len(await store.workers()))

    def render(self) -> bytes:
        return generate_latest(self.registry)
