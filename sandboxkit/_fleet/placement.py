"""Where a fleet's sandboxes go, and which one a run takes. Pure: no I/O, no clock.

Each engine is a :class:`Host` (its weight, an optional hard capacity, what it holds
now, whether it is up), shared by every warm pool of a :class:`~._sandbox_pool.SandboxPool`.
Each warm pool keeps a :class:`Placement`: one :class:`Spot` per host (that pool's
sandboxes there, and its target share of the pool's ``size``).

**The book of counts** is kept here and nowhere else: every sandbox is in one phase
(starting, idle, busy, leaving) and a change of phase is one :class:`Placement` method,
which moves it in three tallies at once: its spot's, the pool's (``Placement.total``,
what the pool's refills read) and its host's (every pool's, what capacity and load read).

- **Targets**: a pool's ``size`` idle sandboxes are split over the hosts that can serve
  it (up, image present) in proportion to their weights (largest remainder), so a down
  host's share moves to the others and comes back when it does.
- **A run** takes an idle sandbox from the host best placed to serve it: the one with the
  fewest busy sandboxes (every pool's) per unit of weight.
- **A refill** goes to the host furthest below its target; beyond the targets (a burst
  of waiters) to the host with the most free weight, never past a host's capacity.

Both choices use the power of two choices: two hosts drawn at random from an index of
the eligible ones (hosts with an idle sandbox; hosts below target), the better one
taken. That costs O(1) whatever the number of engines, and is known to keep the most
loaded host within O(log log n) of the average (Mitzenmacher), where always taking the
single best host would send every caller of a burst to the same one. With one or two
candidates the choice is exact.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

K = TypeVar("K", bound=Hashable)

FAILURES_TO_PAUSE = 5  # starts failing in a row on one host before it is left alone
RETRY_AFTER = 5.0  # seconds a paused host is left alone before one more try

Phase = Literal["starting", "idle", "busy", "leaving"]


def shares(total: int, weights: Mapping[K, float]) -> dict[K, int]:
    """``total`` split in proportion to ``weights`` (largest remainder; ties to the
    earlier key). Keys with weight <= 0 get nothing; no keys, nothing."""
    positive = {k: w for k, w in weights.items() if w > 0}
    out = {k: 0 for k in weights}
    if total <= 0 or not positive:
        return out
    whole = sum(positive.values())
    exact = {k: total * w / whole for k, w in positive.items()}
    for k, x in exact.items():
        out[k] = int(x)
    left = total - sum(out.values())
    order = sorted(positive, key=lambda k: exact[k] - int(exact[k]), reverse=True)
    for k in order[:left]:
        out[k] += 1
    return out


def backoff(failures: int) -> float:
    """Seconds to wait before a start after ``failures`` failed starts in a row."""
    if failures <= 0:
        return 0.0
    return float(min(10.0, 0.2 * 2 ** (failures - 1)))


class IndexedSet(Generic[K]):
    """A set with O(1) add, discard and uniform random sampling."""

    def __init__(self, items: Iterable[K] = ()) -> None:
        self._items: list[K] = []
        self._where: dict[K, int] = {}
        for item in items:
            self.add(item)

    def add(self, item: K) -> None:
        if item not in self._where:
            self._where[item] = len(self._items)
            self._items.append(item)

    def discard(self, item: K) -> None:
        i = self._where.pop(item, None)
        if i is None:
            return
        last = self._items.pop()
        if i < len(self._items):
            self._items[i] = last
            self._where[last] = i

    def __contains__(self, item: object) -> bool:
        return item in self._where

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._items))

    def pick(self, rng: random.Random, k: int) -> list[K]:
        """Up to ``k`` distinct items drawn uniformly (all of them when there are <= k)."""
        n = len(self._items)
        if n <= k:
            return list(self._items)
        if k == 2:
            i = rng.randrange(n)
            j = rng.randrange(n - 1)
            if j >= i:
                j += 1
            return [self._items[i], self._items[j]]
        return rng.sample(self._items, k)


@dataclass
class Counts:
    """Sandboxes in each phase of their life. ``leaving``: dropped by their pool, their
    container not yet gone from the engine (it still takes room there)."""

    starting: int = 0
    idle: int = 0
    busy: int = 0
    leaving: int = 0

    @property
    def pooled(self) -> int:
        """Starting, idle or busy: what a pool's ``max_size`` bounds."""
        return self.starting + self.idle + self.busy

    @property
    def on_engine(self) -> int:
        """Every container there, leaving ones too: what an engine's capacity bounds."""
        return self.pooled + self.leaving

    def move(self, leave: Phase | None, enter: Phase | None) -> None:
        """One sandbox goes from ``leave`` to ``enter`` (None: it did not exist / is gone)."""
        if leave is not None:
            setattr(self, leave, getattr(self, leave) - 1)
        if enter is not None:
            setattr(self, enter, getattr(self, enter) + 1)


@dataclass(eq=False)
class Host:
    """One engine as placement sees it; shared by every warm pool of a SandboxPool."""

    key: str
    weight: float = 1.0
    capacity: int | None = None  # most sandboxes at once (all pools); None: no cap
    up: bool = True
    counts: Counts = field(default_factory=Counts)  # every pool's sandboxes here

    def __post_init__(self) -> None:
        if not self.weight > 0:
            raise ValueError("weight must be > 0")

    @property
    def live(self) -> int:
        """Containers here now, of every pool (starting, idle, busy, leaving)."""
        return self.counts.on_engine

    @property
    def busy(self) -> int:
        return self.counts.busy

    @property
    def room(self) -> bool:
        return self.capacity is None or self.live < self.capacity

    @property
    def load(self) -> float:
        """Busy sandboxes per unit of weight: lower is better placed to serve a run."""
        return self.busy / self.weight

    @property
    def fill(self) -> float:
        """Sandboxes held per unit of weight: lower has more room for a new one."""
        return self.live / self.weight


@dataclass(eq=False)
class Spot:
    """One host's part of one warm pool."""

    host: Host
    ready: bool = False  # the pool's image is on the host
    counts: Counts = field(default_factory=Counts)  # this pool's sandboxes on the host
    target: int = 0
    failures: int = 0  # failed starts in a row here
    failed_at: float = field(default=-1e18)  # when the last start failed (caller's clock)

    @property
    def idle(self) -> int:
        return self.counts.idle

    @property
    def starting(self) -> int:
        return self.counts.starting

    @property
    def busy(self) -> int:
        return self.counts.busy

    @property
    def usable(self) -> bool:
        return self.host.up and self.ready

    @property
    def short(self) -> int:
        """Sandboxes missing to reach the target (idle and starting count)."""
        return self.target - self.idle - self.starting

    def paused(self, now: float) -> bool:
        return self.failures >= FAILURES_TO_PAUSE and now - self.failed_at < RETRY_AFTER


class Placement:
    """The spots of one warm pool, its counts, and the two choices (take, place) over them.

    The caller reports every change of phase through one method below; each moves the
    sandbox in the spot's, the pool's and the host's tallies at once and keeps the two
    indexes (spots with an idle sandbox, spots below target) current, in O(1).
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self.spots: dict[str, Spot] = {}
        self.size = 0
        self.total = Counts()  # this pool's sandboxes on every host: the sum of its spots
        self._stocked: IndexedSet[str] = IndexedSet()  # usable, idle > 0
        self._short: IndexedSet[str] = IndexedSet()  # usable, below target
        self._usable: IndexedSet[str] = IndexedSet()
        self.examined = 0  # spots looked at by the choices (the O(1) claim is tested)

    # ------------------------------------------------------------------ membership
    def add(self, host: Host, *, ready: bool = False) -> Spot:
        spot = self.spots.get(host.key)
        if spot is None:
            spot = self.spots[host.key] = Spot(host, ready=ready)
        else:
            spot.ready = spot.ready or ready
        self.retarget(self.size)
        return spot

    def set_ready(self, key: str, ready: bool = True) -> None:
        self.spots[key].ready = ready
        self.retarget(self.size)

    def retarget(self, size: int) -> None:
        """Split ``size`` over the usable spots by weight; O(engines), on changes only."""
        self.size = size
        usable = {k: s.host.weight for k, s in self.spots.items() if s.usable}
        targets = shares(size, usable)
        for key, spot in self.spots.items():
            spot.target = targets.get(key, 0)
            self._index(key)

    def _index(self, key: str) -> None:
        spot = self.spots[key]
        usable = spot.usable
        for index, member in (
            (self._usable, usable),
            (self._stocked, usable and spot.idle > 0),
            (self._short, usable and spot.short > 0),
        ):
            if member:
                index.add(key)
            else:
                index.discard(key)

    def host_up(self, key: str) -> None:
        """A host came back: its failed starts are forgotten and it takes its share again."""
        self.spots[key].failures = 0
        self.retarget(self.size)

    def host_changed(self) -> None:
        """A host went down, or changed weight: targets move."""
        self.retarget(self.size)

    def resume_paused(self, now: float) -> None:
        """Hosts left alone after repeated failed starts get one more try once
        ``RETRY_AFTER`` has passed (an engine restart?), instead of failing forever."""
        for spot in self.spots.values():
            if spot.failures >= FAILURES_TO_PAUSE and not spot.paused(now):
                spot.failures = FAILURES_TO_PAUSE - 1

    # ------------------------------------------------------------------ changes of phase
    def _move(self, key: str, leave: Phase | None, enter: Phase | None) -> Spot:
        """The one place counts change: the spot's, the pool's and the host's together."""
        spot = self.spots[key]
        for counts in (spot.counts, self.total, spot.host.counts):
            counts.move(leave, enter)
        self._index(key)
        return spot

    def begin_start(self, key: str) -> None:
        self._move(key, None, "starting")

    def end_start(self, key: str, *, ok: bool, now: float = 0.0) -> None:
        """A start finished: the sandbox is idle (``ok``), or none was made (failed or
        cancelled, its container already removed)."""
        if ok:
            self._move(key, "starting", "idle").failures = 0
        else:
            spot = self._move(key, "starting", None)
            spot.failures += 1
            spot.failed_at = now

    def start_dropped(self, key: str) -> None:
        """A start succeeded but the sandbox is not kept (the pool closed, or its host
        went down meanwhile): it leaves at once; freed() follows."""
        self._move(key, "starting", "leaving").failures = 0

    def idle_to_busy(self, key: str) -> None:
        self._move(key, "idle", "busy")

    def idle_gone(self, key: str) -> None:
        """An idle sandbox left (died, too old, surplus, its host down); freed() follows."""
        self._move(key, "idle", "leaving")

    def busy_to_idle(self, key: str) -> None:
        """A run's sandbox, scrubbed, serves again (a pool's reuse mode)."""
        self._move(key, "busy", "idle")

    def busy_done(self, key: str) -> None:
        """A run's sandbox was given back, not to serve again; freed() follows."""
        self._move(key, "busy", "leaving")

    def freed(self, key: str) -> None:
        """A sandbox's container is gone from its host (counted against capacity no more)."""
        self._move(key, "leaving", None)

    # ------------------------------------------------------------------ choices
    def choose_idle(self, avoid: frozenset[str] = frozenset()) -> str | None:
        """The spot a run takes its sandbox from: an idle one on the host with the
        fewest busy sandboxes per weight, hosts in ``avoid`` only if nothing else."""
        best: str | None = None
        for key in self._stocked.pick(self.rng, 2):
            self.examined += 1
            if key in avoid:
                continue
            if best is None or self._serve_rank(key) < self._serve_rank(best):
                best = key
        if best is None and len(self._stocked) > 2:
            for key in self._stocked:  # both draws were avoided: look at every one
                self.examined += 1
                if key not in avoid:
                    return key
        if best is None and self._stocked:
            return next(iter(self._stocked))
        return best

    def _serve_rank(self, key: str) -> tuple[float, int]:
        """Fewest busy per weight first; then the spot furthest over its target, so
        takes drain a surplus and the idle sandboxes drift back to their targets."""
        spot = self.spots[key]
        return (spot.host.load, spot.target - spot.idle)

    def misplaced(self) -> str | None:
        """A usable spot below target while another holds more than its target (the pool
        is at size but lopsided): where a rebalancing start should go. O(engines)."""
        short = over = None
        for key, spot in self.spots.items():
            if spot.usable and spot.host.room and spot.short > 0 and short is None:
                short = key
            if spot.idle > spot.target:
                over = key
        return short if over is not None else None

    def choose_start(self, now: float = 0.0) -> str | None:
        """The spot a new sandbox starts on, or None when no usable host has room."""
        key = self._best(self._short, now, below_target=True)
        if key is None:
            key = self._best(self._usable, now, below_target=False)
        return key

    def _eligible(self, key: str, now: float) -> bool:
        spot = self.spots[key]
        return spot.usable and spot.host.room and not spot.paused(now)

    def _rank(self, key: str, below_target: bool) -> tuple[bool, float, float]:
        spot = self.spots[key]
        deficit = spot.short / spot.target if below_target and spot.target else 0.0
        return (spot.failures > 0, -deficit, spot.host.fill)

    def _best(self, index: IndexedSet[str], now: float, *, below_target: bool) -> str | None:
        best: str | None = None
        for key in index.pick(self.rng, 2):
            self.examined += 1
            if self._eligible(key, now) and (
                best is None or self._rank(key, below_target) < self._rank(best, below_target)
            ):
                best = key
        if best is None and len(index) > 2:
            for key in index:  # both draws full or paused: the rare full scan
                self.examined += 1
                if self._eligible(key, now) and (
                    best is None or self._rank(key, below_target) < self._rank(best, below_target)
                ):
                    best = key
        return best

    # ------------------------------------------------------------------ views
    def all_paused(self, now: float) -> bool:
        """Whether every usable spot is paused after repeated failures."""
        return bool(self._usable) and all(self.spots[k].paused(now) for k in self._usable)
