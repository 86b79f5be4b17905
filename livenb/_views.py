"""What live widgets send to the front end, computed without any widget or thread (pure).

A view turns a subscription window (or a stats dict) into small JSON messages: only the rows
or points that are new since the previous message, or a full ``reset`` when the front end
asks for one (it rendered, or it noticed a message was lost) or when sending everything
again is cheaper. Every message says which position it continues from (``prev``) and where
it ends (``n``), so a front end that missed one asks for a reset instead of showing a table
with a hole in it. Sizes are bounded: a table sends at most its ``rows``, a chart at most
its ``max_points`` (decimated by keeping each bucket's extremes, so spikes stay visible).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from ._columns import Snapshot

Message = dict[str, Any]

DEFAULT_TABLE_ROWS: Final = 20
MAX_TABLE_COLUMNS: Final = 50  # more than this is unreadable; pick with columns=[...]
DEFAULT_MAX_POINTS: Final = 2000
DEFAULT_STALE_AFTER: Final = 5.0


class Tail(Protocol):
    """What a view reads: a window's rows from a position on (see ColumnWindow.tail)."""

    def tail(self, after: int, limit: int) -> tuple[int, int, Snapshot]: ...

    def oldest(self) -> tuple[int, float, int] | None: ...


# ---------------------------------------------------------------------------- values
def json_values(kind: str, values: npt.NDArray[Any]) -> list[Any]:
    """A column as JSON-safe values: NaN and infinities become None, other objects text."""
    if kind == "f":
        return [v if math.isfinite(v) else None for v in values.tolist()]
    if kind in ("i", "b", "s"):
        return values.tolist()  # type: ignore[no-any-return]
    return [_plain(v) for v in values.tolist()]


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def _columns(snapshot: Snapshot) -> dict[str, tuple[str, npt.NDArray[Any]]]:
    """Every column of a snapshot by name, with its kind: ts, seq, [topic], then fields."""
    out: dict[str, tuple[str, npt.NDArray[Any]]] = {"ts": ("f", snapshot.ts), "seq": ("i", snapshot.seq)}
    if snapshot.topic is not None:
        out["topic"] = ("s", snapshot.topic)
    out.update(snapshot.columns)
    return out


# ---------------------------------------------------------------------------- table
class TableView:
    """The newest ``rows`` rows of a window, as ``rows`` messages.

    ``{"kind": "rows", "reset": bool, "prev": P, "n": N, "columns": [...], "rows": [[...]]}``:
    ``rows`` are the window rows at positions up to ``N`` (newest last); a front end that
    holds position ``P`` appends them and keeps the newest ``limit``; one whose position is
    not ``P`` asks for a reset. ``ts`` is in Unix seconds.
    """

    def __init__(
        self, source: Tail, rows: int = DEFAULT_TABLE_ROWS, columns: Sequence[str] | None = None
    ) -> None:
        if rows < 1:
            raise ValueError("a table shows at least 1 row")
        self.source = source
        self.limit = rows
        self.wanted = list(columns) if columns is not None else None
        self.sent = 0  # the position the front end holds

    def update(self, reset: bool = False) -> Message | None:
        """The next message (None when nothing is new and no reset is asked for)."""
        after = 0 if reset else self.sent
        _, total, snapshot = self.source.tail(after, self.limit)
        if total == self.sent and not reset:
            return None
        columns = _columns(snapshot)
        names = [n for n in (self.wanted or list(columns)) if n in columns][:MAX_TABLE_COLUMNS]
        values = [json_values(*columns[name]) for name in names]
        message = {
            "kind": "rows",
            "reset": reset,
            "prev": self.sent,
            "n": total,
            "limit": self.limit,
            "columns": names,
            "rows": [list(row) for row in zip(*values, strict=True)] if values else [],
        }
        self.sent = total
        return message


# ---------------------------------------------------------------------------- chart
class ChartView:
    """Series ``y`` against ``x`` over a window, as ``points`` messages.

    ``{"kind": "points", "reset": bool, "prev": P, "n": N, "x": [...], "series": {name: [...]},
    "cutoff": X}``: the front end appends the points (after a reset: replaces), then drops
    points with ``x < cutoff`` (they left the window) and keeps at most ``max_points``.
    When many rows arrived since the last message, the whole window is sent again as a
    reset, decimated to ``max_points``, so the chart always shows the window's shape.
    With ``y=None`` every numeric field is a series (at most 8). ``mode="markers"`` draws
    dots instead of lines (a scatter, e.g. ``x="lon", y="lat"``).
    """

    MAX_AUTO_SERIES: Final = 8

    def __init__(
        self,
        source: Tail,
        x: str = "ts",
        y: str | Sequence[str] | None = None,
        max_points: int = DEFAULT_MAX_POINTS,
        window_rows: int = 1_000_000,
        mode: str = "lines",
    ) -> None:
        if max_points < 10:
            raise ValueError("a chart keeps at least 10 points")
        if mode not in ("lines", "markers"):
            raise ValueError("mode is 'lines' or 'markers'")
        self.mode = mode
        self.source = source
        self.x = x
        self.y = [y] if isinstance(y, str) else (list(y) if y is not None else None)
        self.max_points = max_points
        self.window_rows = window_rows
        self.sent = 0
        self.skipped: list[str] = []  # y fields that were text, so not drawn

    def _series(self, columns: Mapping[str, tuple[str, npt.NDArray[Any]]]) -> list[str]:
        if self.y is not None:
            return [name for name in self.y if name in columns]
        numeric = [
            name
            for name, (kind, _) in columns.items()
            if kind in ("f", "i") and name not in ("ts", "seq", self.x)
        ]
        return numeric[: self.MAX_AUTO_SERIES]

    def update(self, reset: bool = False) -> Message | None:
        """The next message (None when nothing is new and no reset is asked for)."""
        budget = max(1, self.max_points // 4)  # more new rows than this: resend all
        first, total, snapshot = self.source.tail(0 if reset else self.sent, budget + 1)
        if total == self.sent and not reset:
            return None
        if not reset and (first > self.sent or total - first > budget):
            reset = True  # rows went by unseen, or too many: the decimated window instead
        if reset:
            first, total, snapshot = self.source.tail(0, self.window_rows)
        columns = _columns(snapshot)
        x_values = None
        if self.x in columns:
            x_values = as_numbers(*columns[self.x])
        if x_values is None:  # no such column, or not numbers: row positions
            x_values = np.arange(first, total, dtype=np.float64)
        names: list[str] = []
        series: list[npt.NDArray[np.float64]] = []
        for name in self._series(columns):
            values = as_numbers(*columns[name])
            if values is None:  # text cannot be drawn: left out and reported, not a failure
                if name not in self.skipped:
                    self.skipped.append(name)
                continue
            names.append(name)
            series.append(values)
        keep = decimate(x_values, series, self.max_points)
        message = {
            "kind": "points",
            "reset": reset,
            "prev": self.sent,
            "n": total,
            "x": json_values("f", x_values[keep]),
            "series": {name: json_values("f", s[keep]) for name, s in zip(names, series, strict=True)},
            "cutoff": _cutoff(self.source, self.x, self.x in columns and columns[self.x][0] != "s"),
            "max_points": self.max_points,
            "x_name": self.x,
            "mode": self.mode,
        }
        self.sent = total
        return message


def as_numbers(kind: str, values: npt.NDArray[Any]) -> npt.NDArray[np.float64] | None:
    """A column as float64 for drawing: numbers as they are, booleans as 0/1; None for text.
    An object column (mixed types) draws its numbers and leaves the rest out (NaN)."""
    if kind in ("f", "i", "b"):
        return values.astype(np.float64, copy=False)
    if kind == "O":
        return np.array(
            [v if isinstance(v, int | float) and not isinstance(v, bool) else np.nan for v in values],
            dtype=np.float64,
        )
    return None


def _cutoff(source: Tail, x: str, has_x: bool) -> float | None:
    """The x of the oldest row still in the window: the chart drops points before it. Only
    known for ``ts``, ``seq`` and row positions; other x columns need not grow with time."""
    oldest = source.oldest()
    if oldest is None:
        return None
    position, ts, seq = oldest
    if x == "ts":
        return ts
    if x == "seq":
        return float(seq)
    return None if has_x else float(position)


def decimate(
    x: npt.NDArray[np.float64], series: Sequence[npt.NDArray[np.float64]], max_points: int
) -> npt.NDArray[np.intp]:
    """Indices of at most ``max_points`` points that keep the shape of every series: the
    points are cut into buckets and each bucket keeps its first point and every series'
    minimum and maximum (NaN ignored)."""
    n = len(x)
    if n <= max_points:
        return np.arange(n)
    per_bucket = 1 + 2 * len(series)
    buckets = max(1, max_points // per_bucket)
    edges = np.linspace(0, n, buckets + 1).astype(np.intp)
    keep: set[int] = set()
    for lo, hi in itertools.pairwise(edges.tolist()):
        if hi <= lo:
            continue
        keep.add(int(lo))
        for values in series:
            chunk = values[lo:hi]
            if np.all(np.isnan(chunk)):
                continue
            keep.add(int(lo + np.nanargmin(chunk)))
            keep.add(int(lo + np.nanargmax(chunk)))
    keep.add(n - 1)  # the newest point is always drawn
    return np.array(sorted(keep), dtype=np.intp)


# ---------------------------------------------------------------------------- status
class StatusView:
    """A health panel from a ``stats()`` dict: only changed fields are sent.

    ``{"kind": "status", "reset": bool, "fields": {...}, "stale": bool}``. Rates (records per
    second in and out) are computed from counter differences between calls. ``stale`` turns
    on when the data counter has not moved for ``stale_after`` seconds.
    """

    def __init__(
        self,
        stats: Callable[[], Mapping[str, Any]],
        kind: str,
        stale_after: float = DEFAULT_STALE_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if kind not in ("hub", "client"):
            raise ValueError("a status panel shows a 'hub' or a 'client'")
        self.stats = stats
        self.kind = kind
        self.stale_after = stale_after
        self.clock = clock
        self._last: dict[str, Any] = {}
        self._counters: tuple[float, float, float] | None = None  # (at, in, out)
        self._moved_at = clock()
        self._data: float | None = None
        self._stale: bool | None = None

    def fields(self) -> dict[str, Any]:
        """The panel's fields now (rates need two calls; the first shows 0)."""
        s = self.stats()
        now = self.clock()
        if self.kind == "hub":
            counted_in, counted_out = float(s["records_in"]), float(s["records_out"])
        else:
            counted_in, counted_out = float(s["records_received"]), float(s["records_published"])
        rate_in = rate_out = 0.0
        if self._counters is not None:
            at, before_in, before_out = self._counters
            if now > at:
                rate_in = (counted_in - before_in) / (now - at)
                rate_out = (counted_out - before_out) / (now - at)
        self._counters = (now, counted_in, counted_out)
        data = counted_in + counted_out
        if data != self._data:
            self._data, self._moved_at = data, now
        if self.kind == "hub":
            refused = s.get("refused", {})
            fields = {
                "url": s.get("url"),
                "running": s.get("running"),
                "connections": s.get("connections"),
                "topics": s.get("topics"),
                "subscriptions": s.get("subscriptions"),
                "rate_in": round(rate_in, 1),
                "rate_out": round(rate_out, 1),
                "records_in": s.get("records_in"),
                "records_out": s.get("records_out"),
                "drops": s.get("drops"),
                "dropped_records": s.get("slow_consumer_drops_records"),
                "gaps": s.get("gaps_reported"),
                "refused": sum(refused.values()) if isinstance(refused, Mapping) else refused,
                "auth": s.get("auth"),
            }
            engine = s.get("engine")
            if isinstance(engine, Mapping):  # a Redis engine: its state, plainly
                if engine.get("data_lost"):
                    fields["engine"] = "data lost"
                elif engine.get("connected"):
                    fields["engine"] = "connected"
                else:
                    fields["engine"] = f"down {round(engine.get('down_for') or 0)} s"
                fields["engine_waiting"] = engine.get("pending_frames")
        else:
            latency = s.get("latency")
            fields = {
                "url": s.get("url"),
                "connected": s.get("connected"),
                "rate_in": round(rate_in, 1),
                "rate_out": round(rate_out, 1),
                "records_received": s.get("records_received"),
                "records_published": s.get("records_published"),
                "latency_ms": None if latency is None else round(latency * 1000, 2),
                "reconnects": s.get("reconnects"),
                "gaps": s.get("gaps"),
                "drops": s.get("drops"),
                "subscriptions": s.get("subscriptions"),
            }
        fields["idle_s"] = round(now - self._moved_at, 1)
        return fields

    def update(self, reset: bool = False) -> Message | None:
        """The changed fields (all of them on reset); None when nothing changed."""
        fields = self.fields()
        stale = fields["idle_s"] >= self.stale_after
        changed = {
            k: v for k, v in fields.items() if reset or k == "idle_s" or self._last.get(k) != v
        }
        if not reset and stale == self._stale and set(changed) <= {"idle_s"}:
            return None  # only the idle clock moved: not worth a message
        self._last = fields
        self._stale = stale
        return {"kind": "status", "reset": reset, "fields": changed, "stale": stale}
