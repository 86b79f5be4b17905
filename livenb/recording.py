"""Record a subscription to Parquet as it streams, read a recording back, replay it.

- ``sub.record("ticks.parquet")`` (or ``livenb record PATTERN FILE``) writes every record the
  subscription receives: one row per record with ``topic``, ``seq``, ``ts`` (the hub's receive
  time, UTC) and ``data`` (the record as JSON text, so any record shape round-trips
  exactly). Rows are written in row groups by a writer thread, at least every
  ``flush_interval`` seconds; gaps the subscription reports, and rows the recorder had to
  drop, are kept in the file's footer (see :func:`recording_info`). The file is complete once the recorder is closed (``close()``, the
  ``with`` block, closing the subscription, or interpreter exit).
- :func:`read_recording` gives a DataFrame with the record fields as columns (flattened like
  ``sub.frame``).
- :func:`replay` (or ``livenb replay FILE --speed 10``) publishes a recording again with its
  original pacing scaled by ``speed``, with a progress bar (tqdm; a widget in notebooks).

Needs ``pyarrow`` (and ``tqdm`` for progress): ``pip install 'livenb[record]'``.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from . import _protocol as p
from ._errors import LivenbError

if TYPE_CHECKING:
    import pandas as pd

    from ._sync import Client

log = logging.getLogger("livenb.recording")

DEFAULT_ROW_GROUP: Final = 10_000
DEFAULT_FLUSH_INTERVAL: Final = 1.0
DEFAULT_MAX_BUFFERED: Final = 1_000_000  # rows waiting for the writer; beyond: dropped, counted
DEFAULT_MAX_BUFFERED_BYTES: Final = 256 << 20  # ... and their JSON bytes
SCHEMA_VERSION: Final = "1"

__all__ = ["Recorder", "read_recording", "recording_info", "recording_length", "replay"]


def _pyarrow() -> Any:
    try:
        # pyarrow imports this lazily on its first write; at interpreter exit that import
        # fails ("can't register atexit after shutdown") and the recording would be lost.
        import concurrent.futures.thread  # noqa: F401

        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise LivenbError(
            "recording needs pyarrow: pip install 'livenb[record]'"
        ) from None
    return pa, pq


class Recorder:
    """Writes records to a Parquet file from a writer thread (see the module docstring).

    :meth:`add` is called on livenb's loop thread for each delivered batch and only appends
    to a buffer; at most ``max_buffered`` rows wait for the writer, beyond that new rows are
    dropped and counted in :attr:`dropped` (and logged), never silently.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        pattern: str = "",
        row_group: int = DEFAULT_ROW_GROUP,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
    ) -> None:
        if row_group < 1 or not flush_interval > 0 or max_buffered < row_group:
            raise ValueError("need row_group >= 1, flush_interval > 0, max_buffered >= row_group")
        pa, pq = _pyarrow()
        self.path = Path(path)
        self.pattern = pattern
        self.row_group = row_group
        self.flush_interval = flush_interval
        self.max_buffered = max_buffered
        self.max_buffered_bytes = max_buffered_bytes
        self._buffered_bytes = 0
        self._schema = pa.schema(
            [
                ("topic", pa.string()),
                ("seq", pa.int64()),
                ("ts", pa.timestamp("us", tz="UTC")),
                ("data", pa.string()),
            ],
            metadata={"livenb.version": SCHEMA_VERSION, "livenb.pattern": pattern},
        )
        try:
            self._writer = pq.ParquetWriter(self.path, self._schema, compression="zstd")
        except OSError as exc:
            raise LivenbError(f"cannot write the recording {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self._topics: list[str] = []
        self._seqs: list[int] = []
        self._ts: list[float] = []
        self._data: list[str] = []
        self._wake = threading.Event()
        self._closed = False
        self._finished = False  # the file's footer is written
        self.rows_written = 0
        self.row_groups = 0
        self.dropped = 0
        self.gaps: list[dict[str, Any]] = []
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="livenb-recorder", daemon=True)
        self._thread.start()
        _open_recorders.add(self)

    # ------------------------------------------------------------------ loop thread
    def add(self, message: p.Msg) -> None:
        """Buffer one delivered batch (loop thread; never blocks on disk). What does not fit
        in ``max_buffered`` rows and ``max_buffered_bytes`` bytes is dropped and counted."""
        data = [orjson.dumps(r, option=orjson.OPT_SERIALIZE_NUMPY).decode() for r in message.records]
        with self._lock:
            if self._closed:
                return
            rows_left = self.max_buffered - len(self._seqs)
            bytes_left = self.max_buffered_bytes - self._buffered_bytes
            keep = 0
            while keep < min(len(data), rows_left) and len(data[keep]) <= bytes_left:
                bytes_left -= len(data[keep])
                keep += 1
            if keep < len(data):
                if not self.dropped:
                    log.warning(
                        "livenb: the recorder of %s cannot keep up; dropping rows (counted)",
                        self.path,
                    )
                self.dropped += len(data) - keep
                data = data[:keep]
            self._buffered_bytes = self.max_buffered_bytes - bytes_left
            self._topics += [message.topic] * keep
            self._seqs += range(message.seq, message.seq + keep)
            self._ts += [message.ts] * keep
            self._data += data
            if len(self._seqs) >= self.row_group:
                self._wake.set()

    def add_gap(self, gap: p.Gap) -> None:
        """Keep a reported gap for the file's metadata."""
        with self._lock:
            if len(self.gaps) < 10_000:
                self.gaps.append(
                    {"topic": gap.topic, "first": gap.first, "last": gap.last, "reason": gap.reason}
                )

    # ------------------------------------------------------------------ writer thread
    def _take(self) -> tuple[list[str], list[int], list[float], list[str]]:
        with self._lock:
            taken = (self._topics, self._seqs, self._ts, self._data)
            self._topics, self._seqs, self._ts, self._data = [], [], [], []
            self._buffered_bytes = 0
            return taken

    def _write(self, topics: list[str], seqs: list[int], ts: list[float], data: list[str]) -> None:
        pa, _ = _pyarrow()
        micros = [round(t * 1_000_000) for t in ts]
        table = pa.Table.from_arrays(
            [
                pa.array(topics, pa.string()),
                pa.array(seqs, pa.int64()),
                pa.array(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                pa.array(data, pa.string()),
            ],
            schema=self._schema,
        )
        self._writer.write_table(table, row_group_size=max(self.row_group, len(seqs)))
        self.rows_written += len(seqs)
        self.row_groups += 1

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            closing = self._closed
            batch = self._take()
            if batch[1] and self.failure is None:
                try:
                    self._write(*batch)
                except Exception as exc:  # disk full, ...: stop writing, say so
                    self.failure = exc
                    self._lost(len(batch[1]))
                    log.error("livenb: writing the recording %s failed: %r", self.path, exc)
            elif batch[1]:
                self._lost(len(batch[1]))
            if closing:
                return

    def _lost(self, rows: int) -> None:
        with self._lock:  # add() counts under the same lock
            self.dropped += rows

    # ------------------------------------------------------------------ lifecycle
    def close(self, timeout: float = 30.0) -> None:
        """Write what is buffered and finish the file (idempotent). Raises LivenbError when
        the writer cannot finish within ``timeout`` seconds (the file is then left open)."""
        with self._lock:
            if self._finished:
                return
            self._closed = True  # add() takes no more rows; the writer ends after one more pass
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():  # never finish a file under a writer still writing it
            raise LivenbError(
                f"the recording {self.path} is still being written after {timeout} s; "
                "call close() again to wait longer"
            )
        gaps = orjson.dumps(self.gaps).decode()
        try:
            self._writer.add_key_value_metadata(
                {"livenb.gaps": gaps, "livenb.dropped": str(self.dropped)}
            )
            self._writer.close()
        except Exception as exc:
            raise LivenbError(f"cannot finish the recording {self.path}: {exc}") from exc
        finally:
            self._finished = True
            _open_recorders.discard(self)
        if self.failure is not None:
            raise LivenbError(f"the recording {self.path} is incomplete: {self.failure!r}")

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "rows_written": self.rows_written,
            "row_groups": self.row_groups,
            "buffered": len(self._seqs),
            "dropped": self.dropped,
            "gaps": len(self.gaps),
            "failure": None if self.failure is None else repr(self.failure),
        }

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "recording"
        return f"<Recorder {self.path} {state}, {self.rows_written} rows written>"


_open_recorders: weakref.WeakSet[Recorder] = weakref.WeakSet()


@atexit.register
def _close_open_recorders() -> None:
    for recorder in list(_open_recorders):
        try:
            recorder.close(timeout=5.0)
        except Exception:  # exiting: say so, do not raise
            log.exception("livenb: could not finish the recording %s", recorder.path)


# ---------------------------------------------------------------------------- reading
def _rows(path: str | os.PathLike[str], batch_size: int = 10_000) -> Iterator[tuple[str, float, Any]]:
    """(topic, ts seconds, record) of every row, in file order."""
    _, pq = _pyarrow()
    try:
        source = pq.ParquetFile(path)
    except (OSError, ValueError) as exc:
        raise LivenbError(f"cannot read the recording {path}: {exc}") from exc
    names = set(source.schema_arrow.names)
    if not {"topic", "ts", "data"} <= names:
        raise LivenbError(f"{path} is not a livenb recording (columns: {sorted(names)})")
    for batch in source.iter_batches(batch_size=batch_size, columns=["topic", "ts", "data"]):
        topics = batch.column(0).to_pylist()
        micros = batch.column(1).cast("int64").to_pylist()
        data = batch.column(2).to_pylist()
        for topic, us, text in zip(topics, micros, data, strict=True):
            yield topic, us / 1_000_000, orjson.loads(text)


def recording_length(path: str | os.PathLike[str]) -> int:
    """Rows in a recording (from its footer; nothing is read)."""
    _, pq = _pyarrow()
    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except (OSError, ValueError) as exc:
        raise LivenbError(f"cannot read the recording {path}: {exc}") from exc


def recording_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a recording's footer says: ``rows``, ``pattern``, ``gaps`` (the gaps reported
    while recording: topic, first, last, reason) and ``dropped`` (rows the recorder could
    not keep up with)."""
    _, pq = _pyarrow()
    try:
        meta = pq.ParquetFile(path).metadata
    except (OSError, ValueError) as exc:
        raise LivenbError(f"cannot read the recording {path}: {exc}") from exc
    pairs = {k.decode(): v.decode() for k, v in (meta.metadata or {}).items()}
    schema = pq.read_schema(path).metadata or {}
    pattern = schema.get(b"livenb.pattern", b"").decode()
    return {
        "rows": int(meta.num_rows),
        "pattern": pattern,
        "gaps": orjson.loads(pairs.get("livenb.gaps", "[]")),
        "dropped": int(pairs.get("livenb.dropped", "0")),
    }


def read_recording(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A recording as a DataFrame: ``ts`` (UTC), ``seq``, ``topic``, then the record fields
    (nested fields flattened with dots; a non-dict record is the ``value`` column)."""
    import pandas as pd

    _, pq = _pyarrow()
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise LivenbError(f"cannot read the recording {path}: {exc}") from exc
    base = table.select(["ts", "seq", "topic"]).to_pandas()
    base["ts"] = base["ts"].astype("datetime64[ns, UTC]")  # the dtype sub.frame uses
    records = [orjson.loads(text) for text in table.column("data").to_pylist()]
    fields = pd.json_normalize([r if isinstance(r, dict) else {"value": r} for r in records])
    # A record field named like a metadata column keeps its value as data.<name>.
    fields = fields.rename(columns={c: f"data.{c}" for c in ("ts", "seq", "topic") if c in fields.columns})
    frame: pd.DataFrame = pd.concat([base, fields], axis=1)
    return frame


# ---------------------------------------------------------------------------- replay
def replay(
    path: str | os.PathLike[str],
    client: Client,
    *,
    topic: str | None = None,
    speed: float = 1.0,
    progress: bool = True,
    timeout: float | None = 60.0,
) -> int:
    """Publish a recording through ``client`` with its original pacing divided by ``speed``
    (``speed=0``: as fast as possible); to ``topic``, or each record's own topic. Shows a
    tqdm progress bar when ``progress`` (a widget in notebooks, a bar in terminals). Returns
    the records published, once the hub has acknowledged them all."""
    if speed < 0:
        raise ValueError("speed must be >= 0 (0: as fast as possible)")
    total = recording_length(path)
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            raise LivenbError("progress bars need tqdm: pip install 'livenb[record]'") from None
        bar = tqdm(total=total, unit="rec", desc=f"replay {Path(path).name}")
    started = time.monotonic()
    first_ts: float | None = None
    published = 0
    try:
        for record_topic, ts, record in _rows(path):
            if first_ts is None:
                first_ts = ts
            if speed > 0:
                wait = started + (ts - first_ts) / speed - time.monotonic()
                if wait > 0.002:  # records closer than that go out together
                    time.sleep(wait)
            client.publish(topic or record_topic, record)
            published += 1
            if bar is not None and published % 500 == 0:
                bar.update(500)
        client.flush(timeout=timeout)
    finally:
        if bar is not None:
            bar.update(published - bar.n)
            bar.close()
    return published
