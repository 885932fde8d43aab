"""The built-in output checkers: pure functions, no I/O.

Each takes ``(expected, output)``, text or bytes, and returns whether the output is
accepted; ``exact`` compares bytes, the others the UTF-8 text (invalid bytes replaced).
The default compares whitespace-separated tokens, which is what most judges do;
``lines`` compares line by line, trailing whitespace of each line and trailing blank
lines ignored (its docstring has the exact rules). Each has an ``explain_*`` twin
that says, for an output it rejects, where the first difference is
(``line 3: expected '42', got '41'``): the judge's ``TestResult.explanation``.
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
    """Equal line by line, ignoring trailing whitespace and trailing blank lines.

    The rules, in order:

    - both are read as UTF-8 text (invalid bytes replaced);
    - lines end at ``\\n``, ``\\r\\n`` or ``\\r`` (and the other line boundaries of
      :meth:`str.splitlines`), so Windows line endings match Unix ones;
    - whitespace at the end of each line is ignored (spaces, tabs);
    - blank lines at the end are ignored, and so is a missing final newline;
    - everything else counts: leading whitespace, the spacing inside a line, blank lines
      between lines, letter case.

    So ``"a b\\nc\\n"`` accepts ``"a b  \\r\\nc"`` but not ``"a  b\\nc"`` nor
    ``"a b\\n\\nc"``. (The Judge0-compatible server keeps Judge0's own rule, which
    also ignores blank lines and whitespace at the start.)
    """
    return _strip_lines(_text(expected)) == _strip_lines(_text(output))


def _number(token: str) -> float | None:
    try:
        return float(token)
    except ValueError:
        return None


def _close(want: str, got: str, tolerance: float) -> bool:
    """One token of :func:`float_tolerance`: equal text, or numbers close enough."""
    if want == got:
        return True
    a, b = _number(want), _number(got)
    if a is None or b is None:
        return False
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    diff = abs(a - b)
    # a tiny slack for the rounding of the comparison itself
    return diff <= tolerance * (1 + 1e-9) or diff <= tolerance * abs(a) * (1 + 1e-9)


def float_tolerance(tolerance: float) -> Compare:
    """Tokens equal, except numbers, which may differ by ``tolerance`` (abs or rel)."""

    def compare(expected: Output, output: Output) -> bool:
        want, got = _text(expected).split(), _text(output).split()
        if len(want) != len(got):
            return False
        return all(_close(w, g, tolerance) for w, g in zip(want, got, strict=True))

    return compare


BUILTIN: dict[str, Compare] = {"tokens": tokens, "exact": exact, "lines": lines}


# ------------------------------------------------------------------ explanations
Explain = Callable[[Output, Output], str]
WIDTH = 60  # characters of a line (or token) an explanation shows


def _show(text: str, column: int = 0) -> str:
    """``text`` quoted (escapes visible), cut to about WIDTH characters around
    ``column``, with ``…`` where it was cut."""
    if len(text) <= WIDTH:
        return repr(text)
    start = max(0, min(column - WIDTH // 3, len(text) - WIDTH))
    end = start + WIDTH
    return ("…" if start else "") + repr(text[start:end]) + ("…" if end < len(text) else "")


def _first_difference(a: str, b: str) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def _plural(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _line_difference(want: list[str], got: list[str]) -> str:
    """The first line that differs, numbered from 1: both, cut around the first
    differing character (its column given when the lines are long)."""
    for i, (w, g) in enumerate(zip(want, got, strict=False)):
        if w != g:
            column = _first_difference(w, g)
            where = f"line {i + 1}"
            if max(len(w), len(g)) > WIDTH:
                where += f", column {column + 1}"
            return f"{where}: expected {_show(w, column)}, got {_show(g, column)}"
    n = min(len(want), len(got))
    if len(want) > n:
        return (
            f"line {n + 1}: expected {_show(want[n])}, got nothing "
            f"(the output has {_plural(len(got), 'line')})"
        )
    if len(got) > n:
        return (
            f"line {n + 1}: expected nothing (the expected output has "
            f"{_plural(len(want), 'line')}), got {_show(got[n])}"
        )
    return ""


def explain_exact(expected: Output, output: Output) -> str:
    """Where ``output`` first differs from ``expected``, byte for byte (a ``\\r`` or a
    trailing space shows in the quoted lines); "" when they are equal."""
    want_bytes, got_bytes = _bytes(expected), _bytes(output)
    if want_bytes == got_bytes:
        return ""
    want = want_bytes.decode("utf-8", errors="backslashreplace").split("\n")
    got = got_bytes.decode("utf-8", errors="backslashreplace").split("\n")
    if want == [*got, ""]:
        return "the output does not end with a newline; the expected output does"
    if got == [*want, ""]:
        return "the output ends with a newline; the expected output does not"
    return _line_difference(want, got)


def explain_lines(expected: Output, output: Output) -> str:
    """Where ``output`` first differs from ``expected`` under :func:`lines`' rules (line
    numbers are the output's own); "" when it is accepted."""
    want = _strip_lines(_text(expected)).split("\n")
    got = _strip_lines(_text(output)).split("\n")
    if want == got:
        return ""
    if got == [""]:
        return f"the output is empty; expected {_plural(len(want), 'line')}, first {_show(want[0])}"
    return _line_difference(want, got)


def _numbered_tokens(text: str) -> list[tuple[int, str]]:
    """Whitespace-separated tokens with the line each is on (from 1)."""
    return [(n, t) for n, line in enumerate(text.splitlines(), 1) for t in line.split()]


def _token_difference(
    expected: Output,
    output: Output,
    same: Callable[[str, str], bool],
    why: Callable[[str, str], str] | None = None,
) -> str:
    want, got = _numbered_tokens(_text(expected)), _numbered_tokens(_text(output))
    for i, ((wl, w), (gl, g)) in enumerate(zip(want, got, strict=False)):
        if not same(w, g):
            where = f"token {i + 1} (line {gl} of the output"
            where += ")" if wl == gl else f", line {wl} of the expected output)"
            reason = why(w, g) if why is not None else ""
            return f"{where}: expected {_show(w)}, got {_show(g)}" + (
                f" ({reason})" if reason else ""
            )
    n = min(len(want), len(got))
    if len(want) > n:
        wl, w = want[n]
        return (
            f"the output ends after {_plural(n, 'token')}; expected {len(want)}, "
            f"the next being {_show(w)} (line {wl} of the expected output)"
        )
    if len(got) > n:
        gl, g = got[n]
        return (
            f"the output has {_plural(len(got), 'token')}, the expected output {n}: "
            f"the first extra is {_show(g)} (line {gl})"
        )
    return ""


def explain_tokens(expected: Output, output: Output) -> str:
    """The first token of ``output`` that differs from ``expected``'s (numbered from 1,
    with its line); "" when it is accepted."""
    return _token_difference(expected, output, str.__eq__)


def explain_float_tolerance(tolerance: float) -> Explain:
    """:func:`float_tolerance`'s twin: the first token out of tolerance, and by how much."""

    def why(want: str, got: str) -> str:
        a, b = _number(want), _number(got)
        if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
            return ""
        return f"off by {abs(a - b):.3g}, more than {tolerance:g}"

    def explain(expected: Output, output: Output) -> str:
        return _token_difference(expected, output, lambda w, g: _close(w, g, tolerance), why)

    return explain


EXPLAIN: dict[str, Explain] = {
    "tokens": explain_tokens,
    "exact": explain_exact,
    "lines": explain_lines,
}
