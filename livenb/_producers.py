"""Idempotent publishing: remember what each producer already stored. Pure, no I/O.

A producer (a client) numbers its pub frames 1, 2, 3, ... and sends each with its producer id
``pid``. The hub stores a frame only when its number is above the producer's highest stored
one; a retry of a stored frame (after a cut connection) is acknowledged again, not stored.
Bounded: at most ``max_producers`` producers are remembered (the least recently active is
forgotten first), each with its last ``recent`` frames' acks.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Final

DEFAULT_MAX_PRODUCERS: Final = 10_000
DEFAULT_RECENT: Final = 1024


@dataclass(slots=True)
class _Producer:
    highest: int = 0
    recent: deque[tuple[int, int, int]] = field(default_factory=deque)  # (id, seq, count)


class ProducerTable:
    """The highest stored frame number per producer, and recent acks to repeat."""

    def __init__(
        self, max_producers: int = DEFAULT_MAX_PRODUCERS, recent: int = DEFAULT_RECENT
    ) -> None:
        self.max_producers = max_producers
        self.recent = recent
        self._producers: OrderedDict[str, _Producer] = OrderedDict()
        self.duplicates = 0
        self.forgotten = 0

    def __len__(self) -> int:
        return len(self._producers)

    def seen(self, pid: str, frame_id: int) -> tuple[int, int] | None:
        """For a frame already stored: its (seq, count) if still known, else (0, 0).
        For a new frame: None."""
        producer = self._producers.get(pid)
        if producer is None or frame_id > producer.highest:
            return None
        self.duplicates += 1
        self._producers.move_to_end(pid)
        for known_id, seq, count in producer.recent:
            if known_id == frame_id:
                return seq, count
        return 0, 0

    def restore(self, pid: str, highest: int) -> None:
        """From a journal: ``pid`` stored frames up to ``highest`` (their acks are unknown)."""
        self.stored(pid, highest, 0, 0)

    def stored(self, pid: str, frame_id: int, seq: int, count: int) -> None:
        """Record that frame ``frame_id`` of ``pid`` was stored as seqs ``seq``.."""
        producer = self._producers.get(pid)
        if producer is None:
            if len(self._producers) >= self.max_producers:
                self._producers.popitem(last=False)
                self.forgotten += 1
            producer = self._producers[pid] = _Producer()
        else:
            self._producers.move_to_end(pid)
        producer.highest = max(producer.highest, frame_id)
        producer.recent.append((frame_id, seq, count))
        if len(producer.recent) > self.recent:
            producer.recent.popleft()
