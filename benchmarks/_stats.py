"""Small numeric helpers for the benchmarks: percentiles, timing loops, the table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


def percentile(samples: list[float], q: float) -> float:
    """The ``q`` percentile (0-100) by linear interpolation; NaN for no samples."""
    if not samples:
        return float("nan")
    data = sorted(samples)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


@dataclass
class Latency:
    """Seconds per call of one path; shown in milliseconds."""

    name: str
    samples: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def p50(self) -> float:
        return percentile(self.samples, 50)

    @property
    def p90(self) -> float:
        return percentile(self.samples, 90)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples) if self.samples else float("nan")


async def time_calls(
    n: int,
    call: Callable[[], Awaitable[object]],
    before_each: Callable[[], Awaitable[object]] | None = None,
) -> list[float]:
    """Run ``call`` ``n`` times, timing each; ``before_each`` runs untimed first."""
    out: list[float] = []
    for _ in range(n):
        if before_each is not None:
            await before_each()
        t0 = time.perf_counter()
        await call()
        out.append(time.perf_counter() - t0)
    return out


def ms(seconds: float) -> str:
    return "n/a" if seconds != seconds else f"{seconds * 1e3:8.1f} ms"


def ratio(a: float, b: float) -> str:
    if a != a or b != b or b == 0:
        return "n/a"
    return f"{a / b:6.2f}x"


class Report:
    """Lines of the final table, printed together at the end of the run."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.verdicts: list[str] = []

    def section(self, title: str) -> None:
        self.lines += ["", title, "-" * len(title)]

    def row(self, text: str) -> None:
        self.lines.append("  " + text)

    def target(self, name: str, ok: bool | None, detail: str) -> None:
        mark = "SKIP" if ok is None else ("PASS" if ok else "MISS")
        self.verdicts.append(f"  [{mark}] {name}: {detail}")

    def print(self) -> None:
        print("\n".join(self.lines))
        print("\nTargets (benchmarks, not tests)")
        print("------------------------------")
        print("\n".join(self.verdicts))


@dataclass
class Line:
    """One row of the scoreboard: a path, what was measured, its target, the verdict."""

    path: str
    measured: str
    target: str
    mark: str


class Scoreboard:
    """Every row of issue 25's table beside its target, printed last: ✓ (target met),
    ``bar`` (only the lower bar met), ✗ (missed), or "skip" (not measured: why is in the row)."""

    def __init__(self) -> None:
        self.lines: list[Line] = []

    def add(
        self, path: str, measured: str, target: str, ok: bool | None, bar: bool | None = None
    ) -> None:
        if ok is None:
            mark = "skip"
        elif ok:
            mark = "✓"
        else:
            mark = "bar" if bar else "✗"
        self.lines.append(Line(path, measured, target, mark))

    def print(self) -> None:
        title = "Issue 25: every row beside its target (benchmarks, not tests)"
        print(f"\n{title}\n{'-' * len(title)}")
        widths = [
            max([len(head), *(len(getattr(line, key)) for line in self.lines)])
            for head, key in (("path", "path"), ("measured", "measured"), ("target", "target"))
        ]
        head = ("path", "measured", "target")
        print("  " + "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + "  ok")
        for line in self.lines:
            cells = (line.path, line.measured, line.target)
            print("  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)), end="")
            print(f"  {line.mark}")
