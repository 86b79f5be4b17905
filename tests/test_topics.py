from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from livenb import InvalidTopicError
from livenb._topics import (
    check_pattern,
    check_topic,
    is_pattern,
    is_valid_pattern,
    is_valid_topic,
    matches,
)

segment = st.text(alphabet="abcXYZ019_-", min_size=1, max_size=6)
topics = st.lists(segment, min_size=1, max_size=5).map(".".join)
pattern_segment = st.one_of(segment, st.just("*"))


@st.composite
def patterns(draw: st.DrawFn) -> str:
    segs = draw(st.lists(pattern_segment, min_size=1, max_size=5))
    if draw(st.booleans()):
        segs.append(">")
    return ".".join(segs)


def reference_match(pattern: str, topic: str) -> bool:
    """Recursive reference semantics: '*' one segment, '>' one or more trailing segments."""

    def go(ps: list[str], ts: list[str]) -> bool:
        if not ps:
            return not ts
        if ps[0] == ">":
            return len(ts) >= 1
        if not ts:
            return False
        return (ps[0] == "*" or ps[0] == ts[0]) and go(ps[1:], ts[1:])

    return go(pattern.split("."), topic.split("."))


@pytest.mark.parametrize(
    "name", ["ticks", "ticks.ACME", "a-b_c.9", "x" * 255, "a.b.c.d.e.f"]
)
def test_valid_topics(name: str) -> None:
    assert is_valid_topic(name)
    assert check_topic(name) == name


@pytest.mark.parametrize(
    "name",
    ["", ".", "a.", ".a", "a..b", "a b", "a/b", "ticks.*", "ticks.>", "é", "x" * 256, 5, None],
)
def test_invalid_topics(name: object) -> None:
    assert not is_valid_topic(name)
    with pytest.raises(InvalidTopicError):
        check_topic(name)


def test_error_message_explains_patterns_are_not_publishable() -> None:
    with pytest.raises(InvalidTopicError, match="pattern"):
        check_topic("ticks.*")


@pytest.mark.parametrize("pattern", ["*", ">", "ticks.*", "ticks.>", "*.ACME", "a.*.c.>"])
def test_valid_patterns(pattern: str) -> None:
    assert is_valid_pattern(pattern)
    assert check_pattern(pattern) == pattern
    assert is_pattern(pattern)


@pytest.mark.parametrize("pattern", ["ticks.>.x", "a*", "a.b*", ">.a", "a.>>", "", "a..*"])
def test_invalid_patterns(pattern: str) -> None:
    assert not is_valid_pattern(pattern)
    with pytest.raises(InvalidTopicError):
        check_pattern(pattern)


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("ticks", "ticks", True),
        ("ticks", "ticks.ACME", False),
        ("ticks.*", "ticks.ACME", True),
        ("ticks.*", "ticks", False),
        ("ticks.*", "ticks.ACME.x", False),
        ("ticks.>", "ticks.ACME", True),
        ("ticks.>", "ticks.ACME.x", True),
        ("ticks.>", "ticks", False),
        ("*.ACME", "ticks.ACME", True),
        (">", "a", True),
        (">", "a.b", True),
    ],
)
def test_matches_examples(pattern: str, topic: str, expected: bool) -> None:
    assert matches(pattern, topic) is expected


@given(patterns(), topics)
def test_matches_agrees_with_reference(pattern: str, topic: str) -> None:
    assert is_valid_pattern(pattern)
    assert matches(pattern, topic) == reference_match(pattern, topic)


@given(topics)
def test_topic_matches_itself_and_its_wildcards(topic: str) -> None:
    assert matches(topic, topic)
    segs = topic.split(".")
    assert matches(".".join(["*"] * len(segs)), topic)
    assert matches(">", topic)
    if len(segs) > 1:
        assert matches(".".join([*segs[:-1], ">"]), topic)
        assert not matches(topic + ".>", topic)
