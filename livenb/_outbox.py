"""The publisher's micro-batching outbox: per-topic batches of encoded records.

Thread-safe: the blocking ``Client`` adds from the caller's thread while livenb's loop thread
takes frames out and sends them. Every frame is numbered (1, 2, 3, ...) and carries the
producer id, so the hub can acknowledge each one and store a resent frame only once.
Bounded by ``max_pending`` bytes of records added and not yet acknowledged (policy
``block``: publishers wait for room); callers check :meth:`Outbox.full`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from ._protocol import pub_frame

PENDING_POLICY: Final = "block"

# add() results: the flusher must be woken when a first record arrives (start the delay
# timer) or when a frame is complete (send at once).
WAKE_NONE = 0
WAKE_TIMER = 1
WAKE_NOW = 2


class Frame(NamedTuple):
    """A sealed pub frame: its number, bytes, its records' bytes and its record count."""

    id: int
    data: bytes
    payload: int
    records: int


@dataclass(slots=True)
class _Batch:
    records: list[bytes] = field(default_factory=list)
    size: int = 0  # bytes in the frame's batch list
    payload: int = 0  # bytes of the records alone (what counts against max_pending)


class Outbox:
    """Pending records grouped per topic into frames of at most ``max_records`` / ``max_bytes``."""

    def __init__(self, *, max_records: int, max_bytes: int, max_pending: int, pid: str) -> None:
        if max_records < 1 or max_bytes < 1 or max_pending < 1:
            raise ValueError("batch limits must be positive")
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.max_pending = max_pending
        self.pid = pid
        self.lock = threading.Lock()
        self.room = threading.Condition(self.lock)  # notified when pending bytes drop
        self._open: dict[str, _Batch] = {}  # topic -> batch still accepting records
        self._ready: list[Frame] = []  # sealed frames in publish order
        self._pending = 0  # bytes added and not yet released (acknowledged)
        self._next_id = 1
        self.oldest = 0.0  # monotonic time of the oldest open record
        self.records_added = 0

    @property
    def pending(self) -> int:
        return self._pending

    def full(self) -> bool:
        return self._pending >= self.max_pending

    def add(self, topic: str, encoded: list[bytes], *, seal: bool = False) -> tuple[int, int]:
        """Queue encoded records of ``topic``. With ``seal``, the frame holding the last one is
        sealed at once. Returns (wake code, number of the frame holding the last record, or
        0 while that frame is still open)."""
        with self.lock:
            was_empty = not self._open and not self._ready
            batch = self._open.get(topic)
            wake = WAKE_NONE
            last_id = 0
            for record in encoded:
                if batch is None:
                    batch = self._open[topic] = _Batch()
                    if len(self._open) == 1:
                        self.oldest = time.monotonic()
                if batch.records and batch.size + len(record) > self.max_bytes:
                    self._seal(topic, batch)
                    batch = self._open[topic] = _Batch()
                    wake = WAKE_NOW
                batch.records.append(record)
                batch.size += len(record) + 1
                batch.payload += len(record)
                self._pending += len(record)
                if len(batch.records) >= self.max_records or batch.size >= self.max_bytes:
                    last_id = self._seal(topic, batch)
                    batch = None
                    wake = WAKE_NOW
                else:
                    last_id = 0
            self.records_added += len(encoded)
            if seal and batch is not None:
                last_id = self._seal(topic, batch)
                wake = WAKE_NOW
            if wake == WAKE_NONE and was_empty:
                wake = WAKE_TIMER
            return wake, last_id

    def take(self) -> list[Frame]:
        """Seal every open batch and return all sealed frames, oldest first."""
        with self.lock:
            for topic, batch in list(self._open.items()):
                self._seal(topic, batch)
            frames, self._ready = self._ready, []
            return frames

    def seal_all(self) -> int:
        """Seal every open batch; return the number of the newest sealed frame (0: none)."""
        with self.lock:
            for topic, batch in list(self._open.items()):
                self._seal(topic, batch)
            return self._next_id - 1

    def first_ready_id(self) -> int:
        """The number of the oldest sealed frame not yet taken (a huge number: none)."""
        ready = self._ready
        return ready[0].id if ready else 1 << 62

    def has_ready(self) -> bool:
        return bool(self._ready)

    def release(self, nbytes: int) -> None:
        """Count ``nbytes`` of records as acknowledged and wake publishers waiting for room."""
        with self.lock:
            self._pending = max(0, self._pending - nbytes)
            self.room.notify_all()

    def discard(self) -> int:
        """Drop everything not yet taken; return the number of records dropped."""
        with self.lock:
            dropped = sum(len(b.records) for b in self._open.values())
            dropped += sum(frame.records for frame in self._ready)
            self._open.clear()
            self._ready.clear()
            self._pending = 0
            self.room.notify_all()
            return dropped

    def _seal(self, topic: str, batch: _Batch) -> int:
        del self._open[topic]
        frame_id = self._next_id
        self._next_id += 1
        data = pub_frame(topic, batch.records, frame_id, self.pid)
        self._ready.append(Frame(frame_id, data, batch.payload, len(batch.records)))
        return frame_id
