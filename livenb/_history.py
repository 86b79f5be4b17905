"""Per-topic bounded history of published batches, for resume. Pure, no I/O.

A topic's history keeps the newest batches within three bounds: records, bytes (the memory
its frames take: their encoded bytes plus ``FRAME_OVERHEAD`` each) and age. It is evicted a
whole batch at a time from the oldest end, so a bound is never exceeded and is undershot by
less than one batch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from ._topics import matches

DEFAULT_HISTORY_RECORDS: Final = 10_000
DEFAULT_HISTORY_BYTES: Final = 8 << 20
DEFAULT_HISTORY_AGE: Final = 3600.0
DEFAULT_HISTORY_TOTAL_BYTES: Final = 256 << 20
# What a retained frame costs besides its encoded bytes: its Batch, the bytes object's header,
# the ts float, the seq int and the deque slot (measured on CPython 3.11: about 190 bytes).
# Counted, so that the byte bounds hold for memory even when every frame holds one record.
FRAME_OVERHEAD: Final = 200


@dataclass(frozen=True, slots=True)
class HistoryLimits:
    """Bounds of one topic's history: at most ``records`` records, ``bytes`` bytes of memory
    (frames plus ``FRAME_OVERHEAD`` each), none older than ``age`` seconds (None: no age
    bound). ``records=0`` keeps no history."""

    records: int = DEFAULT_HISTORY_RECORDS
    bytes: int = DEFAULT_HISTORY_BYTES
    age: float | None = DEFAULT_HISTORY_AGE

    def __post_init__(self) -> None:
        if self.records < 0 or self.bytes < 0 or (self.age is not None and self.age <= 0):
            raise ValueError(f"history limits must be non-negative (got {self})")


@dataclass(slots=True)  # not frozen: made per frame, and frozen ones construct 5x slower
class Batch:
    """One published frame of ``count`` records: seqs ``first``..``first + count - 1``.

    Only the encoded frame is kept, not the parsed records: a history holds up to 10,000
    records per topic, and freeing a dict per record as it aged out cost the hub 17% of its
    time under batched load; :meth:`records` decodes them again when needed (rarely)."""

    first: int
    ts: float
    count: int
    frame: bytes  # the encoded msg frame, replayed as is

    @property
    def last(self) -> int:
        return self.first + self.count - 1

    def records(self) -> list[Any]:
        """The records, decoded from the frame."""
        obj = orjson.loads(self.frame)
        records: list[Any] = [obj["data"]] if "data" in obj else obj["batch"]
        return records


class TopicHistory:
    """The retained batches of one topic, oldest first."""

    __slots__ = ("_batches", "bytes", "limits", "records")

    def __init__(self, limits: HistoryLimits) -> None:
        self.limits = limits
        self._batches: deque[Batch] = deque()
        self.records = 0
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._batches)

    def append(self, batch: Batch, now: float) -> None:
        """Add the newest batch, then evict what falls outside the limits."""
        if self.limits.records == 0 or self.limits.bytes == 0:
            return
        self._batches.append(batch)
        self.records += batch.count
        self.bytes += len(batch.frame) + FRAME_OVERHEAD
        self.trim(now)

    def trim(self, now: float) -> int:
        """Evict batches beyond the limits at time ``now``; return the bytes freed."""
        limits = self.limits
        freed = 0
        batches = self._batches
        cutoff = None if limits.age is None else now - limits.age
        while batches and (
            self.records > limits.records
            or self.bytes > limits.bytes
            or (cutoff is not None and batches[0].ts < cutoff)
        ):
            freed += self.evict_oldest()
        return freed

    def evict_oldest(self) -> int:
        batch = self._batches.popleft()
        self.records -= batch.count
        size = len(batch.frame) + FRAME_OVERHEAD
        self.bytes -= size
        return size

    def oldest_ts(self) -> float | None:
        return self._batches[0].ts if self._batches else None

    def first_seq(self, last_seq: int) -> int:
        """The oldest retained seq (``last_seq + 1`` when nothing is retained)."""
        return self._batches[0].first if self._batches else last_seq + 1

    def after(self, seq: int) -> Iterator[Batch]:
        """Retained batches holding records newer than ``seq`` (the first may start earlier)."""
        for batch in self._batches:
            if batch.last > seq:
                yield batch

    def newer_than(self, ts: float) -> Iterator[Batch]:
        """Retained batches stamped after hub time ``ts``."""
        for batch in self._batches:
            if batch.ts > ts:
                yield batch


DEFAULT_HISTORY: Final = HistoryLimits()


def limits_for(
    topic: str, default: HistoryLimits, rules: Sequence[tuple[str, HistoryLimits]]
) -> HistoryLimits:
    """The limits of the first rule whose pattern matches ``topic``, else ``default``."""
    for pattern, limits in rules:
        if matches(pattern, topic):
            return limits
    return default
