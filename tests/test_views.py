"""The widget views (pure): only new rows and points, resets, bounds, decimation, status."""

from __future__ import annotations

import numpy as np
import pytest

from livenb._columns import ColumnWindow
from livenb._views import ChartView, StatusView, TableView, decimate, json_values
from livenb._window import Window


def window(rows: int = 100, seconds: float | None = None) -> ColumnWindow:
    return ColumnWindow(Window(rows, seconds))


def feed(w: ColumnWindow, start: int, n: int, ts: float = 1000.0) -> None:
    w.ingest("t", start, ts, [{"px": float(i), "name": f"r{i}"} for i in range(start, start + n)])


def test_table_sends_only_new_rows_and_at_most_its_limit() -> None:
    w = window()
    view = TableView(w, rows=5)
    first = view.update(reset=True)
    assert first is not None and first["reset"] and first["rows"] == [] and first["n"] == 0
    assert view.update() is None  # nothing new
    feed(w, 1, 3)
    m = view.update()
    assert m is not None and not m["reset"]
    assert (m["prev"], m["n"]) == (0, 3)
    assert m["columns"] == ["ts", "seq", "px", "name"]
    assert [row[1] for row in m["rows"]] == [1, 2, 3]
    feed(w, 4, 2)
    m = view.update()
    assert m is not None and (m["prev"], m["n"]) == (3, 5)
    assert [row[1] for row in m["rows"]] == [4, 5]  # only the new ones
    feed(w, 6, 50)
    m = view.update()
    assert m is not None and [row[1] for row in m["rows"]] == [51, 52, 53, 54, 55]
    m = view.update(reset=True)  # a front end asked: the newest rows again
    assert m is not None and m["reset"] and [row[1] for row in m["rows"]] == [51, 52, 53, 54, 55]


def test_table_columns_can_be_chosen() -> None:
    w = window()
    feed(w, 1, 2)
    m = TableView(w, rows=5, columns=["name", "missing", "seq"]).update()
    assert m is not None and m["columns"] == ["name", "seq"]
    assert m["rows"] == [["r1", 1], ["r2", 2]]


def test_values_are_json_safe() -> None:
    assert json_values("f", np.array([1.5, np.nan, np.inf])) == [1.5, None, None]
    assert json_values("O", np.array([{"a": 1}, None, 2.5, float("nan")], dtype=object)) == [
        "{'a': 1}",
        None,
        2.5,
        None,
    ]


def test_chart_appends_points_and_tells_where_the_window_starts() -> None:
    w = window(rows=10)
    view = ChartView(w, x="seq", y="px", max_points=100)
    feed(w, 1, 4)
    m = view.update()
    assert m is not None and m["x"] == [1.0, 2.0, 3.0, 4.0] and m["series"] == {"px": [1.0, 2.0, 3.0, 4.0]}
    assert m["cutoff"] == 1.0
    feed(w, 5, 10)  # the window (10 rows) moves past the first points
    m = view.update()
    assert m is not None and m["x"] == [float(i) for i in range(5, 15)]
    assert m["cutoff"] == 5.0


def test_chart_resends_a_decimated_window_when_many_rows_arrived() -> None:
    w = window(rows=100_000)
    view = ChartView(w, x="seq", y=["px"], max_points=200)
    records = [{"px": 0.0} for _ in range(50_000)]
    records[12_345] = {"px": 99.0}  # a spike must survive decimation
    w.ingest("t", 1, 1.0, records)
    m = view.update()
    assert m is not None and m["reset"]
    assert len(m["x"]) <= 200
    assert max(m["series"]["px"]) == 99.0
    assert m["x"][-1] == 50_000.0  # the newest point is always there


def test_chart_auto_series_are_the_numeric_fields() -> None:
    w = window()
    w.ingest("t", 1, 1.0, [{"a": 1, "b": 2.5, "s": "x", "nested": {"c": 3}}])
    m = ChartView(w).update()
    assert m is not None and set(m["series"]) == {"a", "b", "nested.c"}


def test_decimate_keeps_every_series_extremes() -> None:
    x = np.arange(10_000, dtype=np.float64)
    a = np.sin(x / 100)
    b = np.zeros(10_000)
    b[777] = -5
    keep = decimate(x, [a, b], 300)
    assert len(keep) <= 300
    assert 777 in keep and keep[0] == 0 and keep[-1] == 9_999
    assert np.isclose(a[keep].max(), a.max()) and np.isclose(a[keep].min(), a.min())
    assert list(decimate(x[:50], [a[:50]], 300)) == list(range(50))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_status_sends_changes_rates_and_a_stale_mark() -> None:
    stats = {"url": "ws://x", "connected": True, "records_received": 0, "records_published": 0,
             "latency": 0.0012, "reconnects": 0, "gaps": 0, "drops": 0, "subscriptions": 1}
    clock = Clock()
    view = StatusView(lambda: stats, "client", stale_after=5.0, clock=clock)
    m = view.update(reset=True)
    assert m is not None and m["fields"]["latency_ms"] == 1.2 and m["stale"] is False
    clock.now = 1.0
    assert view.update() is None  # nothing changed but the idle clock
    stats["records_received"] = 500
    clock.now = 2.0
    m = view.update()
    assert m is not None and m["fields"]["rate_in"] == 500.0 and m["fields"]["records_received"] == 500
    assert "url" not in m["fields"]  # unchanged fields are not sent again
    clock.now = 8.0
    m = view.update()
    assert m is not None and m["stale"] is True and m["fields"]["idle_s"] == 6.0
    with pytest.raises(ValueError):
        StatusView(lambda: stats, "server")


def test_chart_draws_numbers_and_skips_text_instead_of_failing() -> None:
    w = window()
    w.ingest("t", 1, 1.0, [{"px": 1.0, "sym": "A", "mixed": 1}])
    w.ingest("t", 2, 2.0, [{"px": 2.0, "sym": "B", "mixed": "n/a"}])  # mixed becomes object
    view = ChartView(w, x="sym", y=["px", "sym", "mixed"])
    m = view.update()
    assert m is not None
    assert m["series"] == {"px": [1.0, 2.0], "mixed": [1.0, None]}
    assert m["x"] == [0.0, 1.0]  # a text x falls back to row positions
    assert view.skipped == ["sym"]
