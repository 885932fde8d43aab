"""The built-in output checkers: pure functions, no I/O.

Each takes ``(expected, output)`` and returns whether the output is accepted. The
default compares whitespace-separated tokens, which is what most judges do; ``lines``
is Judge0's rule (trailing whitespace of each line and trailing blank lines ignored).
"""

from __future__ import annotations

import math
from collections.abc import Callable

Compare = Callable[[str, str], bool]


def tokens(expected: str, output: str) -> bool:
    """Equal as whitespace-separated tokens (spacing and line breaks do not matter)."""
    return expected.split() == output.split()


def exact(expected: str, output: str) -> bool:
    """Byte-for-byte (after decoding) equal."""
    return expected == output


def _strip_lines(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.splitlines()).rstrip()


def lines(expected: str, output: str) -> bool:
    """Equal line by line, ignoring trailing whitespace and trailing blank lines."""
    return _strip_lines(expected) == _strip_lines(output)


def _number(token: str) -> float | None:
    try:
        return float(token)
    except ValueError:
        return None


def float_tolerance(tolerance: float) -> Compare:
    """Tokens equal, except numbers, which may differ by ``tolerance`` (abs or rel)."""

    def compare(expected: str, output: str) -> bool:
        want, got = expected.split(), output.split()
        if len(want) != len(got):
            return False
        for w, g in zip(want, got, strict=True):
            if w == g:
                continue
            a, b = _number(w), _number(g)
            if a is None or b is None:
                return False
            if math.isnan(a) or math.isnan(b):
                if not (math.isnan(a) and math.isnan(b)):
                    return False
                continue
            if math.isinf(a) or math.isinf(b):
                if a != b:
                    return False
                continue
            diff = abs(a - b)
            # a tiny slack for the rounding of the comparison itself
            if diff > tolerance * (1 + 1e-9) and diff > tolerance * abs(a) * (1 + 1e-9):
                return False
        return True

    return compare


BUILTIN: dict[str, Compare] = {"tokens": tokens, "exact": exact, "lines": lines}
