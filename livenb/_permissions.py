"""What a token may do: publish to and read from topics matching its patterns. Pure.

``tokens={"s3cret-feed": {"publish": ["ticks.>"]}, "s3cret-view": {"subscribe": ["ticks.>"]}}``
gives two more tokens besides the hub's own (which may do everything). A right not listed is
not granted. Checks are per topic: a wildcard subscription only ever delivers topics its
token may read, and a publish to a topic the token may not write is refused (``forbidden``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from ._topics import check_pattern, matches

RIGHTS: Final = ("publish", "subscribe")


@dataclass(frozen=True, slots=True)
class Permissions:
    """Patterns of the topics a token may publish to and read."""

    publish: tuple[str, ...] = (">",)
    subscribe: tuple[str, ...] = (">",)

    def may_publish(self, topic: str) -> bool:
        return any(matches(pattern, topic) for pattern in self.publish)

    def may_read(self, topic: str) -> bool:
        return any(matches(pattern, topic) for pattern in self.subscribe)


EVERYTHING: Final = Permissions()


def grants(rights: Mapping[str, Iterable[str]]) -> Permissions:
    """``{"publish": [patterns], "subscribe": [patterns]}`` as Permissions; ValueError for an
    unknown right, InvalidTopicError for a bad pattern."""
    unknown = set(rights) - set(RIGHTS)
    if unknown:
        raise ValueError(f"unknown rights {sorted(unknown)}; use 'publish' and 'subscribe'")
    if isinstance(rights.get("publish"), str) or isinstance(rights.get("subscribe"), str):
        raise ValueError("give each right a list of patterns, e.g. {'publish': ['ticks.>']}")
    return Permissions(
        tuple(check_pattern(p) for p in rights.get("publish", ())),
        tuple(check_pattern(p) for p in rights.get("subscribe", ())),
    )
