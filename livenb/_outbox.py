"""The publisher's micro-batching outbox: per-topic batches of encoded records.

Thread-safe: the blocking ``Client`` adds from the caller's thread while livenb's loop thread
takes frames out and sends them. Bounded by ``max_pending`` bytes (added but not yet sent);
callers check :meth:`Outbox.full` and wait for room.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import orjson

from ._protocol import RequestId, pub_frame

# add() results: the flusher must be woken when a first record arrives (start the delay
# timer) or when a batch is complete (send at once).
WAKE_NONE = 0
WAKE_TIMER = 1
WAKE_NOW = 2


@dataclass(slots=True)
class _Batch:
    records: list[bytes] = field(default_factory=list)
    size: int = 0  # bytes in the frame's batch list
    payload: int = 0  # bytes of the records alone (what counts against max_pending)


class Outbox:
    """Pending records grouped per topic into frames of at most ``max_records`` / ``max_bytes``."""

    def __init__(self, *, max_records: int, max_bytes: int, max_pending: int) -> None:
        if max_records < 1 or max_bytes < 1 or max_pending < 1:
            raise ValueError("batch limits must be positive")
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.max_pending = max_pending
        self.lock = threading.Lock()
        self.room = threading.Condition(self.lock)  # notified when pending bytes drop
        self._open: dict[str, _Batch] = {}  # topic -> batch still accepting records
        # complete frames in publish order, with their records' bytes and count
        self._ready: deque[tuple[bytes, int, int]] = deque()
        self._pending = 0  # bytes added and not yet released by the sender
        self.oldest = 0.0  # monotonic time of the oldest open record
        self.records_added = 0

    @property
    def pending(self) -> int:
        return self._pending

    def full(self) -> bool:
        return self._pending >= self.max_pending

    def add(
        self, topic: str, encoded: list[bytes], request_id: RequestId | None = None
    ) -> int:
        """Queue encoded records of ``topic``; with ``request_id``, the last one's frame asks
        for an ack. Returns WAKE_NONE, WAKE_TIMER or WAKE_NOW. Caller holds no lock."""
        with self.lock:
            was_empty = not self._open and not self._ready
            batch = self._open.get(topic)
            wake = WAKE_NONE
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
                    self._seal(topic, batch)
                    batch = None
                    wake = WAKE_NOW
            self.records_added += len(encoded)
            if request_id is not None:
                if batch is not None:
                    self._seal(topic, batch, request_id)
                else:  # the last record's batch was just sealed; add the id to that frame
                    frame, payload, count = self._ready[-1]
                    tail = b',"id":' + orjson.dumps(request_id) + b"}"
                    self._ready[-1] = (frame[:-1] + tail, payload, count)
                wake = WAKE_NOW
            if wake == WAKE_NONE and was_empty:
                wake = WAKE_TIMER
            return wake

    def take(self) -> tuple[list[bytes], int, int]:
        """Seal every open batch; return all frames, oldest first, their records' bytes (pass
        that to :meth:`release` once they are sent) and their number of records."""
        with self.lock:
            for topic, batch in list(self._open.items()):
                self._seal(topic, batch)
            frames = [frame for frame, _, _ in self._ready]
            payload = sum(size for _, size, _ in self._ready)
            count = sum(n for _, _, n in self._ready)
            self._ready.clear()
            return frames, payload, count

    def has_ready(self) -> bool:
        return bool(self._ready)

    def empty(self) -> bool:
        return not self._open and not self._ready

    def release(self, nbytes: int) -> None:
        """Count ``nbytes`` of records as sent and wake publishers waiting for room."""
        with self.lock:
            self._pending = max(0, self._pending - nbytes)
            self.room.notify_all()

    def discard(self) -> int:
        """Drop everything (the connection is gone); return the number of records dropped."""
        with self.lock:
            dropped = sum(len(b.records) for b in self._open.values())
            dropped += sum(count for _, _, count in self._ready)
            self._open.clear()
            self._ready.clear()
            self._pending = 0
            self.room.notify_all()
            return dropped

    def _seal(self, topic: str, batch: _Batch, request_id: RequestId | None = None) -> None:
        del self._open[topic]
        frame = pub_frame(topic, batch.records, request_id)
        self._ready.append((frame, batch.payload, len(batch.records)))
