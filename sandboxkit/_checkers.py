"""The built-in output checkers: pure functions, no I/O.

Each takes ``(expected, output)``, text or bytes, and returns whether the output is
accepted; ``exact`` compares bytes, the others the UTF-8 text. The
default compares whitespace-separated tokens, which is what most judges do; ``lines``
is Judge0's rule (trailing whitespace of each line and trailing blank lines ignored).
"""

from __future__ import annotations

import math
from collections.abc import Callable

Output = str | bytes
Compare = Callable[[Output, Output], bool]


def _text(data: Output) -> str:
    return data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data


def _bytes(data: Output) -> bytes:
    return data if isinstance(data, bytes) else data.encode("utf-8", errors="surrogateescape")


def tokens(expected: Output, output: Output) -> bool:
    """Equal as whitespace-separated tokens (spacing and line breaks do not matter)."""
    return _text(expected).split() == _text(output).split()


def exact(expected: Output, output: Output) -> bool:
    """Byte-for-byte equal."""
    return _bytes(expected) == _bytes(output)


def _strip_lines(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.splitlines()).rstrip()


def lines(expected: Output, output: Output) -> bool:
    """Equal line by line, ignoring trailing whitespace and trailing blank lines."""
    return _strip_lines(_text(expected)) == _strip_lines(_text(output))


def _number(token: str) -> float | None:
    try:
        return float(token)
    except ValueError:
        return None


def float_tolerance(tolerance: float) -> Compare:
    """Tokens equal, except numbers, which may differ by ``tolerance`` (abs or rel)."""

    def compare(expected: Output, output: Output) -> bool:
        want, got = _text(expected).split(), _text(output).split()
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
