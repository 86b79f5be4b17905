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
# timer) or when a frame is complete (send at once). A flusher that is not asleep (see
# Outbox.sleep) is never woken: it looks for ready frames before it sleeps again.
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
    size: int = 0  # bytes in the frame's batch list: the records' bytes plus one per record


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
        # Bytes added and not yet released (acknowledged). Only the outbox writes it, under
        # the lock; callers read it (a plain attribute: publish() reads it every call).
        self.pending = 0
        self._next_id = 1
        self.oldest = 0.0  # monotonic time of the oldest open record
        self._asleep = WAKE_NONE  # what wakes the flusher (WAKE_NONE: it is running)
        self.records_added = 0

    def full(self) -> bool:
        return self.pending >= self.max_pending

    def add(
        self, topic: str, encoded: list[bytes], *, seal: bool = False
    ) -> tuple[int, int, bool]:
        """Queue encoded records of ``topic``. With ``seal``, the frame holding the last one is
        sealed at once. Returns (wake code, number of the frame holding the last record, or
        0 while that frame is still open, whether the sleeping flusher must be woken: a
        running one finds the frames itself)."""
        with self.lock:
            return self._add_locked(topic, encoded, seal)

    def _add_locked(self, topic: str, encoded: list[bytes], seal: bool) -> tuple[int, int, bool]:
        # (the body of add(); the caller holds the lock)
        was_empty = not self._open and not self._ready
        batch = self._open.get(topic)
        wake = WAKE_NONE
        last_id = 0
        if batch is None and len(encoded) >= self.max_records:
            taken = self._add_full_frames(topic, encoded, seal)
            if taken:
                self.records_added += taken
                encoded = encoded[taken:]
                wake, last_id = WAKE_NOW, self._next_id - 1
        final = len(encoded) - 1
        max_records, max_bytes = self.max_records, self.max_bytes
        # The batch's list and size live in locals in this loop (written back before any
        # seal and at the end): publish_many runs it once per record.
        records = batch.records if batch is not None else []
        size = batch.size if batch is not None else 0
        added = 0
        for i, record in enumerate(encoded):
            n = len(record)
            if batch is None:
                batch = self._open[topic] = _Batch()
                records, size = batch.records, 0
                if len(self._open) == 1:
                    self.oldest = time.monotonic()
            elif records and size + n > max_bytes:
                batch.size = size
                self._seal(topic, batch)
                batch = self._open[topic] = _Batch()
                records, size = batch.records, 0
                wake = WAKE_NOW
            records.append(record)
            size += n + 1
            added += n
            if len(records) >= max_records or size >= max_bytes:
                batch.size = size
                last_id = self._seal(topic, batch, individual=seal and i == final)
                batch = None
                wake = WAKE_NOW
            else:
                last_id = 0
        if batch is not None:
            batch.size = size
        self.pending += added
        self.records_added += len(encoded)
        if seal and batch is not None:
            last_id = self._seal(topic, batch, individual=True)
            wake = WAKE_NOW
        if wake == WAKE_NONE and was_empty:
            wake = WAKE_TIMER
        signal = self._asleep != WAKE_NONE and wake >= self._asleep
        if signal:
            self._asleep = WAKE_NONE  # one wake per sleep
        return wake, last_id, signal

    def add_one(self, topic: str, record: bytes) -> tuple[int, bool]:
        """:meth:`add` for one record, unsealed (the hot path of ``publish``): returns (wake
        code, whether the sleeping flusher must be woken)."""
        size = len(record)
        # `with`, not acquire() then try: a KeyboardInterrupt (a notebook's interrupt button)
        # can land between acquire() returning and the try, leaving the lock held for good;
        # `with` costs 80 ns more here and has no such gap.
        with self.lock:
            batch = self._open.get(topic)
            if batch is None or batch.size + size > self.max_bytes:
                wake, _, signal = self._add_locked(topic, [record], False)
                return wake, signal
            batch.records.append(record)
            batch.size += size + 1
            self.pending += size
            self.records_added += 1
            if len(batch.records) < self.max_records and batch.size < self.max_bytes:
                return WAKE_NONE, False  # an open batch was there: the timer already runs
            self._seal(topic, batch)
            signal = self._asleep != WAKE_NONE
            if signal:
                self._asleep = WAKE_NONE
            return WAKE_NOW, signal

    def sleep(self, until: int) -> bool:
        """The flusher is about to wait: True, and it will be woken by the first add() whose
        wake code is at least ``until`` (WAKE_TIMER: any record; WAKE_NOW: a complete
        frame); False (do not wait) when what would wake it is already there: sealed
        frames, or (for WAKE_TIMER) open batches whose delay must start."""
        with self.lock:
            if self._ready or (until == WAKE_TIMER and self._open):
                return False
            self._asleep = until
            return True

    def awake(self) -> None:
        """The flusher runs again (woken, or its wait ended): no add() needs to wake it."""
        self._asleep = WAKE_NONE

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
            self.pending = max(0, self.pending - nbytes)
            self.room.notify_all()

    def discard(self) -> int:
        """Drop everything not yet taken; return the number of records dropped."""
        with self.lock:
            dropped = sum(len(b.records) for b in self._open.values())
            dropped += sum(frame.records for frame in self._ready)
            self._open.clear()
            self._ready.clear()
            self.pending = 0
            self.room.notify_all()
            return dropped

    def _seal(self, topic: str, batch: _Batch, individual: bool = False) -> int:
        del self._open[topic]
        return self._frame(topic, batch.records, batch.size, individual)

    def _frame(self, topic: str, records: list[bytes], size: int, individual: bool) -> int:
        """Queue a sealed frame of ``records`` (``size``: their bytes plus one per record)."""
        frame_id = self._next_id
        self._next_id += 1
        # Frames nobody awaits one by one may be acknowledged together (a later frame's ack
        # settles them): the hub sends one ack per burst instead of one per frame.
        data = pub_frame(topic, records, frame_id, self.pid, cumulative=not individual)
        count = len(records)
        self._ready.append(Frame(frame_id, data, size - count, count))
        return frame_id

    def _add_full_frames(self, topic: str, encoded: list[bytes], seal: bool) -> int:
        """publish_many's fast path, for a topic with no open batch: seal each run of
        ``max_records`` records that fits ``max_bytes`` as a frame at once (what the
        record-by-record loop would do, without its per-record work). Returns how many
        records it took (the rest go through the loop)."""
        step, taken, total = self.max_records, 0, len(encoded)
        while total - taken >= step:
            records = encoded[taken : taken + step]
            size = sum(map(len, records)) + step
            if size >= self.max_bytes:
                break
            taken += step
            self.pending += size - step
            self._frame(topic, records, size, individual=seal and taken == total)
        return taken
