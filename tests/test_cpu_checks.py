"""When the agent reads a run's CPU time (pure): when the run, on every CPU it may use,
could first have used the rest of its limit, and never more often than every CPU_POLL.
No Docker."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sandboxkit.agent import _run


def next_check(limit: float, now: float, used: float) -> float:
    return _run.Run._next_cpu_check(SimpleNamespace(cpu_limit=limit), now, used)  # type: ignore[arg-type]


def test_a_long_limit_is_read_when_it_could_first_run_out() -> None:
    # a compile with 30 s of CPU is not woken every 10 ms to be looked at
    assert next_check(30.0, 100.0, 0.0) == pytest.approx(100.0 + 30.0 / _run.CPU_RATE)
    assert next_check(30.0, 100.0, 0.0) - 100.0 > 100 * _run.CPU_POLL


def test_near_or_past_its_limit_it_is_read_every_poll() -> None:
    assert next_check(1.0, 5.0, 0.9999) == pytest.approx(5.0 + _run.CPU_POLL)
    assert next_check(1.0, 5.0, 2.0) == pytest.approx(5.0 + _run.CPU_POLL)


@pytest.mark.parametrize("limit", [0.05, 0.3, 2.0, 30.0])
def test_no_run_gets_further_past_its_limit_than_one_poll_on_every_cpu(limit: float) -> None:
    # the worst case: the run uses every CPU it may, all the time, between two reads
    now = used = 0.0
    reads = 0
    while used < limit:
        later = next_check(limit, now, used)
        used += (later - now) * _run.CPU_RATE
        now = later
        reads += 1
    assert used - limit <= _run.CPU_POLL * _run.CPU_RATE + 1e-9
    assert reads <= 3  # where every read came CPU_POLL apart, it took limit / CPU_POLL
