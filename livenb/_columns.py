"""Column buffers behind ``Subscription.frame``: a bounded ring of typed numpy columns.

Records are ingested a batch at a time straight into per-column arrays (never one DataFrame
per message), so a snapshot is a few array copies. Column kinds and their numpy storage:

==== ============ ==========================================================
kind storage      holds
==== ============ ==========================================================
f    float64      numbers; missing values are NaN
i    int64        integers, while no value in the window is missing
b    bool         booleans, while no value in the window is missing
s    object       strings (None for missing)
O    object       anything else, and fields whose type changed
==== ============ ==========================================================

A column only ever widens (i -> f when a value is missing or a float arrives, b/s -> O when a
value is missing or another type arrives), so a frame's dtypes are stable over time. A
widening to ``O`` caused by a value of a different type is counted in ``type_changes``.

Thread safety: ingest runs on livenb's loop thread and snapshots on any thread; both hold
the window's lock only for array copies.
"""

from __future__ import annotations

import contextlib
import itertools
import operator
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ._window import Window

META_COLUMNS: Final = ("ts", "seq", "topic")
_MISSING: Final = {"f": np.nan, "i": None, "b": None, "s": None, "O": None}
_DTYPES: Final = {"f": np.float64, "i": np.int64, "b": np.bool_, "s": object, "O": object}
_INITIAL_CAPACITY: Final = 1024
DEFAULT_MAX_COLUMNS: Final = 1000


# (column name, raw values, values as an array, their kind)
_Batch = tuple[str, Sequence[Any], "npt.NDArray[Any]", str]


class _NeedsFlatten(Exception):
    """A batch holds nested dicts; flatten the rows and ingest again."""


@dataclass(slots=True)
class _Column:
    kind: str
    data: npt.NDArray[Any]
    typed: bool = True  # False while the column has only ever seen missing values
    last: int = 0  # the last row this column was written for; before the window: dropped


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Ordered copies of a window's rows (oldest first); safe to use on any thread."""

    ts: npt.NDArray[np.float64]
    seq: npt.NDArray[np.int64]
    topic: npt.NDArray[Any] | None
    columns: dict[str, tuple[str, npt.NDArray[Any]]]


class ColumnWindow:
    """The last ``window.rows`` rows (younger than ``window.seconds`` when set) as columns."""

    def __init__(
        self, window: Window, *, with_topic: bool = False, max_columns: int = DEFAULT_MAX_COLUMNS
    ) -> None:
        self.limit = window.rows
        self.max_age = window.seconds
        self.with_topic = with_topic
        self.max_columns = max_columns
        self.type_changes = 0
        self.values_dropped = 0  # values of new fields beyond max_columns (not stored)
        # hub clock minus ours, from the latest batch: time windows follow the hub's clock
        self._skew = 0.0
        self._lock = threading.Lock()
        self._cap = min(self.limit, _INITIAL_CAPACITY)
        self._total = 0  # rows ever written; row k lives in slot k % cap
        self._lo = 0  # first retained row
        self._ts = np.empty(self._cap, np.float64)
        self._seq = np.empty(self._cap, np.int64)
        self._topic: npt.NDArray[Any] | None = np.empty(self._cap, object) if with_topic else None
        self._columns: dict[str, _Column] = {}

    # ------------------------------------------------------------------ facts
    def __len__(self) -> int:
        return self._total - self._lo

    # ------------------------------------------------------------------ ingest
    def ingest(self, topic: str, first_seq: int, ts: float, records: list[Any]) -> None:
        """Append one batch of records (consecutive seqs from ``first_seq``, all at ``ts``)."""
        n = len(records)
        if n == 0:
            return
        if n > self.limit:  # only the newest `limit` rows can be in the window
            first_seq += n - self.limit
            records = records[n - self.limit :]
            n = self.limit
        rows = _as_rows(records)
        try:
            columns = self._columnize(rows)
        except _NeedsFlatten:
            rows = [_flatten(r) for r in rows]
            columns = self._columnize(rows)
        with self._lock:
            self._write(topic, first_seq, ts, n, columns)
            if self.max_age is not None:
                self._skew = ts - time.time()
                self._expire(self._cutoff())

    def _columnize(self, rows: list[dict[str, Any]]) -> list[_Batch]:
        """Split rows into typed column batches; raise _NeedsFlatten on nested dicts."""
        pairs: Iterable[tuple[str, Sequence[Any]]]
        if len(rows) == 1:
            pairs = [(k, [v]) for k, v in rows[0].items()]
        else:
            keys = list(rows[0])
            width = len(keys)
            # The usual case, rows of one shape, in C loops: as many keys as the first row
            # (so no extra ones) and every one of its keys (else KeyError).
            values = None
            if width > 1 and all(map(width.__eq__, map(len, rows))):
                with contextlib.suppress(KeyError):
                    values = list(map(operator.itemgetter(*keys), rows))
            if values is not None:
                pairs = zip(keys, zip(*values, strict=True), strict=True)
            else:
                keys = list(dict.fromkeys(itertools.chain.from_iterable(rows)))
                pairs = [(k, [r.get(k) for r in rows]) for k in keys]
        return [(_rename(k), values, *_to_array(values)) for k, values in pairs]

    def _write(
        self, topic: str, first_seq: int, ts: float, n: int, columns: list[_Batch]
    ) -> None:
        lo = max(self._lo, self._total + n - self.limit)
        if self._total + n - lo > self._cap:
            self._grow(min(self.limit, max(2 * self._cap, self._total + n - lo)), lo)
        had_rows = self._total > lo  # retained rows before this batch, which lack new fields
        start = self._total % self._cap
        slots = _slots(start, n, self._cap)
        _put(self._ts, slots, ts)
        _put(self._seq, slots, np.arange(first_seq, first_seq + n, dtype=np.int64))
        if self._topic is not None:
            _put(self._topic, slots, topic)
        seen = set()
        last = self._total + n - 1
        for name, values, array, kind in columns:
            seen.add(name)
            self._write_column(name, values, array, kind, slots, had_rows, last)
        gone = []
        for name, column in self._columns.items():
            if name in seen:
                continue
            if column.last < lo:  # no row in the window has this field any more
                gone.append(name)
                continue
            if column.kind in ("i", "b"):  # absent from this batch: missing values
                self._widen(column, "f" if column.kind == "i" else "O")
            _put(column.data, slots, _MISSING[column.kind])
        for name in gone:
            del self._columns[name]
        self._total += n
        self._lo = lo

    def _write_column(
        self,
        name: str,
        values: Sequence[Any],
        array: npt.NDArray[Any],
        kind: str,
        slots: list[slice],
        had_rows: bool,
        last: int,
    ) -> None:
        column = self._columns.get(name)
        if column is None and len(self._columns) >= self.max_columns:
            self.values_dropped += sum(v is not None for v in values)
            return
        if kind == "m":  # values of different types within this batch
            self.type_changes += 1
            kind = "O"
        if column is None or (not column.typed and kind != "n"):
            if column is not None:
                had_rows = True  # it existed, so earlier rows hold missing values
            if had_rows and kind in ("i", "b"):  # earlier rows of the window lack this field
                kind = "f" if kind == "i" else "O"
                array = array.astype(_DTYPES[kind])
            stored = "f" if kind == "n" else kind
            column = _Column(stored, np.empty(self._cap, _DTYPES[stored]), typed=kind != "n")

            if stored not in ("i", "b"):  # i/b columns never hold missing values
                column.data[:] = _MISSING[stored]
            self._columns[name] = column
        target = _merge_kind(column.kind, kind)
        if target != column.kind:
            if target == "O" and not (column.kind in ("b", "s") and kind == "n"):
                self.type_changes += 1
            self._widen(column, target)
        if target != kind:
            array = _cast(values, array, target)
        _put(column.data, slots, array)
        column.last = last

    def _widen(self, column: _Column, kind: str) -> None:
        column.data = column.data.astype(_DTYPES[kind])
        column.kind = kind

    def _grow(self, new_cap: int, lo: int) -> None:
        keep = np.arange(lo, self._total)
        old_slots = keep % self._cap
        new_slots = keep % new_cap

        def moved(array: npt.NDArray[Any], fill: Any) -> npt.NDArray[Any]:
            out = np.empty(new_cap, array.dtype)
            if fill is not None or array.dtype == object:
                out[:] = fill
            out[new_slots] = array[old_slots]
            return out

        self._ts = moved(self._ts, None)
        self._seq = moved(self._seq, None)
        if self._topic is not None:
            self._topic = moved(self._topic, None)
        for column in self._columns.values():
            column.data = moved(column.data, _MISSING[column.kind])
        self._cap = new_cap

    def _cutoff(self) -> float:
        assert self.max_age is not None
        return time.time() + self._skew - self.max_age

    def _expire(self, cutoff: float) -> None:
        if self._total == self._lo or self._ts[self._lo % self._cap] >= cutoff:
            return
        ordered = self._ordered(self._ts)
        self._lo += int(np.searchsorted(ordered, cutoff, side="left"))

    # ------------------------------------------------------------------ read
    def snapshot(self) -> Snapshot:
        """Copy the retained rows, oldest first (expiring rows older than the time bound)."""
        with self._lock:
            if self.max_age is not None:
                self._expire(self._cutoff())
            return Snapshot(
                ts=self._ordered(self._ts),
                seq=self._ordered(self._seq),
                topic=None if self._topic is None else self._ordered(self._topic),
                columns={
                    name: (col.kind, self._ordered(col.data))
                    for name, col in self._columns.items()
                },
            )

    def tail(self, after: int, limit: int) -> tuple[int, int, Snapshot]:
        """The rows at positions ``>= after`` still in the window, at most the newest
        ``limit``: ``(first, total, snapshot)`` where ``first`` is the first row's position
        and ``total`` the number of rows ever written (the next call's ``after``). Row
        positions count every row ever ingested, so a caller that keeps ``total`` gets each
        row once; ``first > after`` tells it that rows left the window unseen."""
        with self._lock:
            if self.max_age is not None:
                self._expire(self._cutoff())
            total = self._total
            first = max(after, self._lo, total - limit)
            if first >= total:
                first = total
            return (
                first,
                total,
                Snapshot(
                    ts=self._ordered(self._ts, first),
                    seq=self._ordered(self._seq, first),
                    topic=None if self._topic is None else self._ordered(self._topic, first),
                    columns={
                        name: (col.kind, self._ordered(col.data, first))
                        for name, col in self._columns.items()
                    },
                ),
            )

    def oldest(self) -> tuple[int, float, int] | None:
        """``(position, ts, seq)`` of the oldest row in the window (None when empty)."""
        with self._lock:
            if self.max_age is not None:
                self._expire(self._cutoff())
            if self._total == self._lo:
                return None
            slot = self._lo % self._cap
            return self._lo, float(self._ts[slot]), int(self._seq[slot])

    def _ordered(self, array: npt.NDArray[Any], first: int | None = None) -> npt.NDArray[Any]:
        """Copies of the rows from position ``first`` (default: the oldest retained) on."""
        lo = self._lo if first is None else first
        n = self._total - lo
        start = lo % self._cap
        if start + n <= self._cap:
            return array[start : start + n].copy()
        return np.concatenate((array[start:], array[: start + n - self._cap]))


# ---------------------------------------------------------------------- helpers (pure)
def _slots(start: int, n: int, cap: int) -> list[slice]:
    if start + n <= cap:
        return [slice(start, start + n)]
    return [slice(start, cap), slice(0, start + n - cap)]


def _put(array: npt.NDArray[Any], slots: list[slice], values: Any) -> None:
    if len(slots) == 1 or np.ndim(values) == 0:
        for s in slots:
            array[s] = values
        return
    first = slots[0].stop - slots[0].start
    array[slots[0]] = values[:first]
    array[slots[1]] = values[first:]


def _as_rows(records: list[Any]) -> list[dict[str, Any]]:
    if set(map(type, records)) == {dict}:
        return records
    return [r if type(r) is dict else {"value": r} for r in records]


def _rename(key: str) -> str:
    # A record field may not shadow the hub's columns; keep it under "data.<name>".
    return f"data.{key}" if key in META_COLUMNS else key


def _flatten(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if type(value) is dict and value:
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


_FLOATS: Final = (frozenset({float}), frozenset({float, int}))
_INTS: Final = frozenset({int})
_BOOLS: Final = frozenset({bool})
_STRS: Final = frozenset({str})


def _to_array(values: Sequence[Any]) -> tuple[npt.NDArray[Any], str]:
    """The values as a 1-d array and their kind: f, i, b, s, O, m (mixed types: stored as O
    and counted as a type change) or n (all missing)."""
    # The set of Python types decides the kind (numpy's own inference would turn bools into
    # ints and numbers into strings when they are mixed).
    types = frozenset(map(type, values))
    try:
        if types in _FLOATS:
            return np.array(values, dtype=np.float64), "f"
        if types == _INTS:
            return np.array(values, dtype=np.int64), "i"
    except OverflowError:  # an int beyond 64 bits: keep exact values as objects
        pass
    if types == _BOOLS:
        return np.array(values, dtype=np.bool_), "b"
    if types == _STRS:
        return _object_array(values), "s"
    return _classify(values)


def _classify(values: Sequence[Any]) -> tuple[npt.NDArray[Any], str]:
    kinds = set()
    for v in values:
        t = type(v)
        if t is dict:
            if v:
                raise _NeedsFlatten
            kinds.add("O")
        elif t is float or (t is int and -(2**63) <= v < 2**63):
            kinds.add("num")
        elif t is bool:
            kinds.add("b")
        elif t is str:
            kinds.add("s")
        elif v is not None:
            kinds.add("O")
    has_missing = any(v is None for v in values)
    if not kinds:
        return np.full(len(values), np.nan), "n"
    if kinds == {"num"}:
        return np.array(values, dtype=np.float64), "f"  # None -> NaN
    kind = kinds.pop() if len(kinds) == 1 else "m"
    if kind == "b" and has_missing:
        kind = "O"
    return _object_array(values), kind


def _object_array(values: Sequence[Any]) -> npt.NDArray[Any]:
    # fromiter never broadcasts nested lists into extra dimensions.
    return np.fromiter(values, dtype=object, count=len(values))


_ORDER: Final = {"i": 0, "f": 1}


def _merge_kind(column: str, batch: str) -> str:
    """The column kind that holds both the column's values and a batch of kind ``batch``."""
    if batch == column:
        return column
    if batch == "n":  # only missing values in this batch
        return {"i": "f", "b": "O"}.get(column, column)
    if column in _ORDER and batch in _ORDER:
        return "f"
    return "O"


def _cast(values: Sequence[Any], array: npt.NDArray[Any], kind: str) -> npt.NDArray[Any]:
    if kind == "O" or kind == "s":
        return _object_array(values) if array.dtype != object else array
    return array.astype(_DTYPES[kind])
