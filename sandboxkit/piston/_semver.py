"""Version selectors as Piston reads them: npm's ``semver.satisfies(version, range)``.

A client names a runtime's version with an exact version (``3.11.2``), ``*``, or any
node-semver range (``3.x``, ``^3.10``, ``~1.2``, ``>=3.8 <4``, ``1.2 - 2``, ``a || b``).
The grammar and the lowering of partial versions, tildes, carets and hyphen ranges follow
node-semver's documentation; prerelease versions match only comparators of the same
``major.minor.patch`` that carry a prerelease themselves, as there. A selector that does
not parse matches nothing (Piston then answers that the runtime is unknown).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

_NUMBER = r"0|[1-9]\d*"
_IDENT = r"[0-9A-Za-z-]+"
_VERSION = re.compile(
    rf"^\s*[v=]?\s*({_NUMBER})\.({_NUMBER})\.({_NUMBER})"
    rf"(?:-({_IDENT}(?:\.{_IDENT})*))?(?:\+{_IDENT}(?:\.{_IDENT})*)?\s*$"
)
_PARTIAL = re.compile(
    rf"^[v=]?\s*(\*|[xX]|{_NUMBER})(?:\.(\*|[xX]|{_NUMBER})"
    rf"(?:\.(\*|[xX]|{_NUMBER})(?:-({_IDENT}(?:\.{_IDENT})*))?(?:\+{_IDENT}(?:\.{_IDENT})*)?)?)?$"
)
_OPERATORS = ("<=", ">=", "<", ">", "=", "~>", "~", "^")


@total_ordering
@dataclass(frozen=True)
class Version:
    """A semantic version: three numbers and an optional prerelease (build data dropped)."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[int | str, ...] = ()

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
        # a release sorts after all of its prereleases; numeric identifiers sort before
        # alphanumeric ones, numerically
        tags = tuple((0, p) if isinstance(p, int) else (1, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, tags)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        core = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            core += "-" + ".".join(str(p) for p in self.prerelease)
        return core


def _prerelease(text: str | None) -> tuple[int | str, ...]:
    if not text:
        return ()
    return tuple(int(p) if p.isdigit() else p for p in text.split("."))


def parse_version(text: str) -> Version | None:
    """``text`` as a full version (``1.2.3``, ``v1.2.3-rc.1``), or None."""
    found = _VERSION.match(text)
    if found is None:
        return None
    major, minor, patch, pre = found.groups()
    return Version(int(major), int(minor), int(patch), _prerelease(pre))


Comparator = tuple[str, Version]  # (operator, version), operator one of < <= > >= =


@dataclass(frozen=True)
class _Partial:
    """A version with trailing parts left out or wild (``1``, ``1.2.x``, ``*``)."""

    major: int | None
    minor: int | None
    patch: int | None
    prerelease: tuple[int | str, ...]

    def floor(self) -> Version:
        return Version(self.major or 0, self.minor or 0, self.patch or 0, self.prerelease)


def _parse_partial(text: str) -> _Partial | None:
    found = _PARTIAL.match(text)
    if found is None:
        return None
    parts: list[int | None] = []
    for raw in found.groups()[:3]:
        parts.append(None if raw is None or raw in "*xX" else int(raw))
    # a wild part makes every later one wild (1.x.3 means 1.x)
    for i in range(1, 3):
        if parts[i - 1] is None:
            parts[i] = None
    major, minor, patch = parts
    pre = _prerelease(found.group(4)) if patch is not None else ()
    return _Partial(major, minor, patch, pre)


def _zero_pre(major: int, minor: int, patch: int) -> Version:
    """The lowest version of ``major.minor.patch``, prereleases included (``X-0``)."""
    return Version(major, minor, patch, (0,))


def _x_range(p: _Partial) -> list[Comparator]:
    if p.major is None:
        return [(">=", Version(0, 0, 0))]
    if p.minor is None:
        return [(">=", p.floor()), ("<", _zero_pre(p.major + 1, 0, 0))]
    if p.patch is None:
        return [(">=", p.floor()), ("<", _zero_pre(p.major, p.minor + 1, 0))]
    return [("=", p.floor())]


def _tilde(p: _Partial) -> list[Comparator]:
    if p.major is None:
        return _x_range(p)
    if p.minor is None:
        return [(">=", p.floor()), ("<", _zero_pre(p.major + 1, 0, 0))]
    return [(">=", p.floor()), ("<", _zero_pre(p.major, p.minor + 1, 0))]


def _caret(p: _Partial) -> list[Comparator]:
    if p.major is None:
        return _x_range(p)
    if p.minor is None:
        return [(">=", p.floor()), ("<", _zero_pre(p.major + 1, 0, 0))]
    if p.major > 0:
        upper = _zero_pre(p.major + 1, 0, 0)
    elif p.patch is None or p.minor > 0:
        upper = _zero_pre(0, p.minor + 1, 0)
    else:
        upper = _zero_pre(0, 0, p.patch + 1)
    return [(">=", p.floor()), ("<", upper)]


def _primitive(op: str, p: _Partial) -> list[Comparator] | None:
    if op == "=":
        return _x_range(p)
    if p.major is None:  # >* and <* match nothing; >=* and <=* match everything
        return [("<", Version(0, 0, 0, (0,)))] if op in ("<", ">") else [(">=", Version(0, 0, 0))]
    if p.patch is not None:
        return [(op, p.floor())]
    if op == ">":  # >1.2 means >=1.3.0, >1 means >=2.0.0
        bumped = Version(p.major + 1, 0, 0) if p.minor is None else Version(p.major, p.minor + 1, 0)
        return [(">=", bumped)]
    if op == "<=":  # <=1.2 means <1.3.0-0
        upper = (
            _zero_pre(p.major + 1, 0, 0) if p.minor is None else _zero_pre(p.major, p.minor + 1, 0)
        )
        return [("<", upper)]
    if op == "<":  # <1.2 means <1.2.0-0
        return [("<", _zero_pre(p.major, p.minor or 0, 0))]
    return [(">=", p.floor())]  # >=1.2 means >=1.2.0


def _hyphen(low: _Partial, high: _Partial) -> list[Comparator]:
    out: list[Comparator] = []
    if low.major is not None:
        out.append((">=", low.floor()))
    if high.major is None:
        return out or [(">=", Version(0, 0, 0))]
    if high.minor is None:
        out.append(("<", _zero_pre(high.major + 1, 0, 0)))
    elif high.patch is None:
        out.append(("<", _zero_pre(high.major, high.minor + 1, 0)))
    else:
        out.append(("<=", high.floor()))
    return out


def _simple(token: str) -> list[Comparator] | None:
    for op in _OPERATORS:
        if token.startswith(op):
            partial = _parse_partial(token[len(op) :].strip())
            if partial is None:
                return None
            if op in ("~", "~>"):
                return _tilde(partial)
            if op == "^":
                return _caret(partial)
            return _primitive(op, partial)
    partial = _parse_partial(token)
    return None if partial is None else _x_range(partial)


def _comparator_set(text: str) -> list[Comparator] | None:
    text = text.strip()
    hyphen = re.fullmatch(r"(\S+)\s+-\s+(\S+)", text)
    if hyphen is not None:
        low, high = _parse_partial(hyphen.group(1)), _parse_partial(hyphen.group(2))
        if low is None or high is None:
            return None
        return _hyphen(low, high)
    # an operator may stand apart from its version (">= 1.2"): join them first
    text = re.sub(r"(<=|>=|<|>|=|~>|~|\^)\s+", r"\1", text)
    if not text:
        return [(">=", Version(0, 0, 0))]
    comparators: list[Comparator] = []
    for token in text.split():
        lowered = _simple(token)
        if lowered is None:
            return None
        comparators += lowered
    return comparators


def parse_range(text: str) -> list[list[Comparator]] | None:
    """A range as its comparator sets (any set may match), or None if it does not parse."""
    sets = []
    for part in text.split("||"):
        lowered = _comparator_set(part)
        if lowered is None:
            return None
        sets.append(lowered)
    return sets


def _holds(version: Version, op: str, bound: Version) -> bool:
    if op == "<":
        return version < bound
    if op == "<=":
        return version <= bound
    if op == ">":
        return version > bound
    if op == ">=":
        return version >= bound
    return version == bound


def _set_matches(version: Version, comparators: list[Comparator]) -> bool:
    if not all(_holds(version, op, bound) for op, bound in comparators):
        return False
    if not version.prerelease:
        return True
    # a prerelease matches only when a comparator names a prerelease of the same tuple
    core = (version.major, version.minor, version.patch)
    return any(
        bound.prerelease and (bound.major, bound.minor, bound.patch) == core
        for _, bound in comparators
    )


def satisfies(version: Version, selector: str) -> bool:
    """Whether ``version`` is within ``selector`` (False when it does not parse)."""
    sets = parse_range(selector)
    return sets is not None and any(_set_matches(version, s) for s in sets)
