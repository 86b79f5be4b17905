"""Topic names and subscription patterns: validation and matching. Pure, no I/O.

A topic is dot-separated segments of ``[A-Za-z0-9_-]``, at most 255 characters in all.
A pattern is a topic in which a segment may be ``*`` (exactly one segment) and whose last
segment may be ``>`` (one or more trailing segments).
"""

from __future__ import annotations

import re

from ._errors import InvalidTopicError

MAX_TOPIC_LENGTH = 255

_SEGMENT = r"[A-Za-z0-9_-]+"
_TOPIC_RE = re.compile(rf"{_SEGMENT}(?:\.{_SEGMENT})*")
_PATTERN_SEGMENT = rf"(?:{_SEGMENT}|\*)"
_PATTERN_RE = re.compile(rf"(?:{_PATTERN_SEGMENT}\.)*(?:{_PATTERN_SEGMENT}|>)")


def is_valid_topic(name: object) -> bool:
    """True when ``name`` is a concrete topic name (no wildcards)."""
    return (
        type(name) is str
        and len(name) <= MAX_TOPIC_LENGTH
        and _TOPIC_RE.fullmatch(name) is not None
    )


def is_valid_pattern(pattern: object) -> bool:
    """True when ``pattern`` is a topic name or a wildcard pattern."""
    return (
        type(pattern) is str
        and len(pattern) <= MAX_TOPIC_LENGTH
        and _PATTERN_RE.fullmatch(pattern) is not None
    )


# Topics already checked: publishers reuse a handful of names, and the regex is the costliest
# part of a publish. Bounded: cleared when full.
_CHECKED: set[str] = set()
_CHECKED_MAX = 4096


def is_valid_topic_cached(name: str) -> bool:
    """:func:`is_valid_topic` for a string, remembering the valid names (hot paths)."""
    if name in _CHECKED:
        return True
    if not is_valid_topic(name):
        return False
    if len(_CHECKED) >= _CHECKED_MAX:
        _CHECKED.clear()
    _CHECKED.add(name)
    return True


def check_topic(name: object) -> str:
    """Return ``name`` if it is a valid concrete topic; raise :class:`InvalidTopicError` if not."""
    # (the cache lookup inlined: this runs once per publish)
    if type(name) is str and (name in _CHECKED or is_valid_topic_cached(name)):
        return name
    raise InvalidTopicError(_explain(name, wildcards=False))


def check_pattern(pattern: object) -> str:
    """Return ``pattern`` if it is a valid topic or pattern; raise :class:`InvalidTopicError`."""
    if is_valid_pattern(pattern):
        return pattern  # type: ignore[return-value]
    raise InvalidTopicError(_explain(pattern, wildcards=True))


def is_pattern(pattern: str) -> bool:
    """True when a valid pattern contains a wildcard segment."""
    return "*" in pattern or ">" in pattern


def matches(pattern: str, topic: str) -> bool:
    """True when the concrete ``topic`` is matched by the valid ``pattern``."""
    if not is_pattern(pattern):
        return pattern == topic
    want = pattern.split(".")
    have = topic.split(".")
    for i, seg in enumerate(want):
        if seg == ">":
            return len(have) > i
        if i >= len(have) or (seg != "*" and seg != have[i]):
            return False
    return len(have) == len(want)


def _explain(value: object, *, wildcards: bool) -> str:
    kind = "topic pattern" if wildcards else "topic name"
    if type(value) is not str:
        return f"a {kind} must be a string, not {type(value).__name__}"
    if not value:
        return f"a {kind} must not be empty"
    if len(value) > MAX_TOPIC_LENGTH:
        return f"a {kind} is at most {MAX_TOPIC_LENGTH} characters (got {len(value)})"
    rule = "dot-separated segments of letters, digits, '_' and '-'"
    if wildcards:
        rule += "; a segment may be '*', and the last may be '>'"
    elif "*" in value or ">" in value:
        return f"{value!r} is a pattern; publish to a concrete topic ({rule})"
    return f"invalid {kind} {value!r}: use {rule}, e.g. 'ticks.ACME'"
