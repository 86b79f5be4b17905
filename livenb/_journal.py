"""The durable journal: SQLite in WAL mode, written by one thread with group commits.

Every published batch is written, with its producer's frame number, and committed with an
fsync (``synchronous=FULL``) before the hub delivers or acknowledges it. Under load, many
batches share one commit. On start the journal gives back the hub's epoch, each topic's last
seq, its recent records (the history) and the producers' highest frame numbers, so a hub
killed with SIGKILL restarts where it was: subscribers resume with ``recovered=True``, and a
publisher's retry of a frame stored just before the crash is not stored twice.

Retention: each topic keeps at most its history's record bound, and rows older than its
history's age bound are deleted (checked at most every ``trim_interval`` seconds).
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import orjson

from ._errors import LivenbError
from ._history import HistoryLimits
from ._protocol import compact
from ._state import Persist

log = logging.getLogger("livenb.journal")

MAX_GROUP: Final = 2000  # batches per commit at most
TRIM_INTERVAL: Final = 10.0

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    topic TEXT NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (topic, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS producers (pid TEXT PRIMARY KEY, highest INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS topics (topic TEXT PRIMARY KEY, last INTEGER NOT NULL);
"""


@dataclass
class JournalState:
    """What a journal holds at start."""

    epoch: str
    last_seq: dict[str, int] = field(default_factory=dict)
    recent: dict[str, list[tuple[int, float, object]]] = field(default_factory=dict)
    producers: dict[str, int] = field(default_factory=dict)


def _connect(path: Path, *, check_mode: bool = False) -> sqlite3.Connection:
    # The journal holds every record: a new one is the owner's alone (SQLite gives its -wal
    # and -shm files the same mode). An existing one keeps its mode, with a warning (once per
    # start: check_mode) if others may read it.
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if check_mode and path.stat().st_mode & 0o077:
            log.warning(
                "livenb journal %s can be read by other users (mode %o); chmod 600 it",
                path,
                path.stat().st_mode & 0o777,
            )
    else:
        os.close(fd)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")  # fsync at every commit: acked means on disk
    db.executescript(_SCHEMA)
    return db


class Journal:
    """A hub's on-disk store. :meth:`open` loads it; :meth:`submit` queues batches from the
    loop thread; ``on_durable(batches)`` is called (from the writer thread) after each commit.
    """

    def __init__(
        self,
        path: Path,
        limits_for: Callable[[str], HistoryLimits],
        on_durable: Callable[[list[Persist]], None],
        *,
        on_failure: Callable[[BaseException], None] | None = None,
        trim_interval: float = TRIM_INTERVAL,
    ) -> None:
        self.path = path
        self._limits_for = limits_for
        self._on_durable = on_durable
        self._on_failure = on_failure
        self._trim_interval = trim_interval
        self._queue: queue.SimpleQueue[Persist | None] = queue.SimpleQueue()
        self._db = _connect(path)
        self._thread: threading.Thread | None = None
        self._last_trim = time.monotonic()
        self.commits = 0
        self.batches_written = 0
        self.failure: BaseException | None = None

    @staticmethod
    def load(path: Path, limits_for: Callable[[str], HistoryLimits]) -> JournalState:
        """Read the epoch (creating one for a new journal), last seqs, recent records and
        producers. Raises LivenbError when the file is not a usable journal."""
        try:
            db = _connect(path, check_mode=True)
        except sqlite3.Error as exc:
            raise LivenbError(f"cannot open the journal {path}: {exc}") from exc
        try:
            row = db.execute("SELECT value FROM meta WHERE key='epoch'").fetchone()
            if row is None:
                epoch = secrets.token_hex(8)
                db.execute("INSERT INTO meta VALUES ('epoch', ?)", (epoch,))
            else:
                epoch = row[0]
            state = JournalState(epoch)
            # topics keeps each last seq even when retention deleted every record of a topic:
            # seqs must never be handed out twice within an epoch.
            for topic, last in db.execute("SELECT topic, last FROM topics").fetchall():
                state.last_seq[topic] = last
                keep = limits_for(topic).records
                rows = db.execute(
                    "SELECT seq, ts, data FROM records WHERE topic=? AND seq>? ORDER BY seq",
                    (topic, last - keep),
                ).fetchall()
                state.recent[topic] = [(seq, ts, orjson.loads(data)) for seq, ts, data in rows]
            state.producers = dict(db.execute("SELECT pid, highest FROM producers"))
            return state
        except sqlite3.Error as exc:
            raise LivenbError(f"the journal {path} is not usable: {exc}") from exc
        finally:
            db.close()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="livenb-journal", daemon=True)
        self._thread.start()

    def submit(self, batch: Persist) -> None:
        """Queue ``batch`` for the next commit (thread-safe, never blocks). After a write
        failure nothing more is queued: the hub stops taking connections (see AsyncHub)."""
        if self.failure is None:
            self._queue.put(batch)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the writer and close the file."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None
        self._db.close()

    # ------------------------------------------------------------------ writer thread
    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            stop = False
            while len(group) < MAX_GROUP:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
            try:
                self._write(group)
            except Exception as exc:  # a full disk, a removed file: the hub must know
                self.failure = exc
                log.exception("livenb journal: writing failed; publishes are not acknowledged")
                if self._on_failure is not None:
                    self._on_failure(exc)
                return
            self._on_durable(group)
            if stop:
                return

    def _write(self, group: list[Persist]) -> None:
        db = self._db
        rows = []
        producers: dict[str, int] = {}
        touched: dict[str, int] = {}
        for batch in group:
            if batch.pid is not None and type(batch.request_id) is int:
                producers[batch.pid] = max(producers.get(batch.pid, 0), batch.request_id)
            if not batch.records:
                continue
            for offset, record in enumerate(batch.records):
                # compact: a whole group's rows are kept until the transaction (see compact)
                data = compact(orjson.dumps(record))
                rows.append((batch.topic, batch.first + offset, batch.ts, data))
            touched[batch.topic] = batch.first + len(batch.records) - 1
        db.execute("BEGIN")
        try:
            if rows:
                db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)", rows)
            if touched:
                db.executemany(
                    "INSERT INTO topics VALUES (?, ?) ON CONFLICT(topic) "
                    "DO UPDATE SET last=MAX(last, excluded.last)",
                    list(touched.items()),
                )
            if producers:
                db.executemany(
                    "INSERT INTO producers VALUES (?, ?) ON CONFLICT(pid) "
                    "DO UPDATE SET highest=MAX(highest, excluded.highest)",
                    list(producers.items()),
                )
            self._trim(touched)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.commits += 1
        self.batches_written += len(group)

    def _trim(self, touched: dict[str, int]) -> None:
        db = self._db
        for topic, last in touched.items():
            keep = self._limits_for(topic).records
            if last > keep:
                db.execute("DELETE FROM records WHERE topic=? AND seq<=?", (topic, last - keep))
        now = time.monotonic()
        if now - self._last_trim < self._trim_interval:
            return
        self._last_trim = now
        wall = time.time()
        for topic in touched:
            age = self._limits_for(topic).age
            if age is not None:
                db.execute("DELETE FROM records WHERE topic=? AND ts<?", (topic, wall - age))
