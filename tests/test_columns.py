"""Column window ingest and the DataFrame built from it."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livenb import Window
from livenb._columns import ColumnWindow
from livenb.frames import snapshot_to_frame


def frame(w: ColumnWindow) -> pd.DataFrame:
    return snapshot_to_frame(w.snapshot())


def feed(w: ColumnWindow, batches: list[list[Any]], topic: str = "t", ts: float | None = None) -> None:
    seq = 1
    for batch in batches:
        w.ingest(topic, seq, time.time() if ts is None else ts, batch)
        seq += len(batch)


def test_fields_become_typed_columns_with_ts_and_seq() -> None:
    w = ColumnWindow(Window(10))
    feed(w, [[{"px": 1.5, "qty": 3, "ok": True, "sym": "A"}], [{"px": 2.0, "qty": 4, "ok": False, "sym": "B"}]], ts=1_700_000_000.25)
    f = frame(w)
    assert list(f.columns) == ["ts", "seq", "px", "qty", "ok", "sym"]
    assert str(f["ts"].dtype) == "datetime64[ns, UTC]"
    assert f["ts"].iloc[0] == pd.Timestamp(1_700_000_000.25, unit="s", tz="UTC")
    assert f["seq"].tolist() == [1, 2]
    assert f["px"].dtype == np.float64 and f["qty"].dtype == np.int64 and f["ok"].dtype == bool
    assert f["sym"].tolist() == ["A", "B"]


def test_row_bound_keeps_newest_in_order_across_wraparound() -> None:
    w = ColumnWindow(Window(7))
    feed(w, [[{"i": i} for i in range(k, k + 3)] for k in range(0, 30, 3)])
    f = frame(w)
    assert f["i"].tolist() == list(range(23, 30))
    assert f["seq"].tolist() == list(range(24, 31))


def test_batch_larger_than_window() -> None:
    w = ColumnWindow(Window(5))
    w.ingest("t", 1, 0.0, [{"i": i} for i in range(12)])
    f = frame(w)
    assert f["i"].tolist() == list(range(7, 12)) and f["seq"].tolist() == list(range(8, 13))


def test_grows_beyond_initial_capacity() -> None:
    w = ColumnWindow(Window(5000))
    feed(w, [[{"i": i} for i in range(k, k + 700)] for k in range(0, 7000, 700)])
    f = frame(w)
    assert f["i"].tolist() == list(range(2000, 7000))


def test_nested_dicts_flatten_and_non_dicts_go_to_value() -> None:
    w = ColumnWindow(Window(10))
    feed(w, [[{"a": {"b": 1, "c": {"d": "x"}}}, 42, "text", [1, 2]]])
    f = frame(w)
    assert f["a.b"].tolist()[0] == 1
    assert f["a.c.d"].tolist()[0] == "x"
    assert f["value"].tolist()[1:3] == [42, "text"]
    assert f["value"].tolist()[3] == [1, 2]


def test_new_field_mid_stream_adds_column_with_nan_before() -> None:
    w = ColumnWindow(Window(10))
    feed(w, [[{"a": 1}, {"a": 2}], [{"a": 3, "b": 7}]])
    f = frame(w)
    assert f["b"].isna().tolist() == [True, True, False]
    assert f["b"].iloc[2] == 7
    assert f["a"].dtype == np.int64


def test_missing_field_widens_int_to_float_stably() -> None:
    w = ColumnWindow(Window(3))
    feed(w, [[{"a": 1, "b": 1}], [{"a": 2}]])
    assert frame(w)["b"].dtype == np.float64
    feed(w, [[{"a": 3, "b": 3}], [{"a": 4, "b": 4}], [{"a": 5, "b": 5}]])
    assert frame(w)["b"].dtype == np.float64  # never narrows back


def test_type_change_upcasts_to_object_and_counts() -> None:
    w = ColumnWindow(Window(10))
    feed(w, [[{"x": 1.5}], [{"x": "oops"}], [{"x": 2.5}]])
    f = frame(w)
    assert f["x"].dtype == object
    assert f["x"].tolist() == [1.5, "oops", 2.5]
    assert w.type_changes == 1


def test_int_then_float_widens_without_counting() -> None:
    w = ColumnWindow(Window(10))
    feed(w, [[{"x": 1}], [{"x": 2.5}]])
    assert frame(w)["x"].tolist() == [1.0, 2.5]
    assert w.type_changes == 0


def test_meta_name_collisions_are_kept_under_data_prefix() -> None:
    w = ColumnWindow(Window(10), with_topic=True)
    w.ingest("t.x", 1, 0.0, [{"ts": 5, "seq": "s", "topic": "mine"}])
    f = frame(w)
    assert f["topic"].tolist() == ["t.x"]
    assert f["data.ts"].tolist() == [5] and f["data.topic"].tolist() == ["mine"]


def test_time_window_expires_old_rows() -> None:
    w = ColumnWindow(Window(100, 60.0))
    now = time.time()
    w.ingest("t", 1, now - 120, [{"i": 0}])
    w.ingest("t", 2, now - 30, [{"i": 1}])
    w.ingest("t", 3, now, [{"i": 2}])
    assert frame(w)["i"].tolist() == [1, 2]


def test_null_only_field_becomes_typed_later() -> None:
    w = ColumnWindow(Window(10))
    feed(w, [[{"a": None}], [{"a": "x"}]])
    f = frame(w)
    assert f["a"].tolist()[1] == "x"
    assert w.type_changes == 0


def test_big_ints_and_lists_do_not_crash() -> None:
    w = ColumnWindow(Window(10))
    feed(w, [[{"n": 1}], [{"n": 2**70}], [{"n": [1, [2]]}]])
    assert frame(w)["n"].tolist() == [1, 2**70, [1, [2]]]


def test_dtypes_stable_across_snapshots() -> None:
    w = ColumnWindow(Window(4))
    feed(w, [[{"s": "a", "f": 1.0, "i": 1}]])
    first = frame(w).dtypes.to_dict()
    feed(w, [[{"s": "b", "f": 2.0, "i": 2}] * 5])
    assert frame(w).dtypes.to_dict() == first


scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=3))
rows = st.dictionaries(st.sampled_from(["a", "b", "c"]), scalars, max_size=3)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(rows, min_size=1, max_size=4), min_size=1, max_size=8), st.integers(1, 6))
def test_ingest_never_crashes_and_keeps_last_rows(batches: list[list[dict[str, Any]]], limit: int) -> None:
    w = ColumnWindow(Window(limit))
    feed(w, batches)
    flat = [r for b in batches for r in b]
    f = frame(w)
    expected = flat[-limit:]
    assert len(f) == len(expected)
    assert f["seq"].tolist() == list(range(len(flat) - len(expected) + 1, len(flat) + 1))
    for col in ("a", "b", "c"):
        if col not in f:
            continue
        for got, row in zip(f[col].tolist(), expected, strict=True):
            want = row.get(col)
            if want is None:
                assert got is None or (isinstance(got, float) and np.isnan(got))
            else:
                assert got == want


@pytest.mark.parametrize("limit", [1, 2, 1024, 1025])
def test_window_sizes_around_capacity(limit: int) -> None:
    w = ColumnWindow(Window(limit))
    feed(w, [[{"i": i} for i in range(k, k + 333)] for k in range(0, 3330, 333)])
    assert frame(w)["i"].tolist() == list(range(3330 - limit, 3330))


def test_type_change_counted_the_same_however_records_are_batched() -> None:
    together = ColumnWindow(Window(10))
    feed(together, [[{"id": 1}, {"id": "x"}]])
    apart = ColumnWindow(Window(10))
    feed(apart, [[{"id": 1}], [{"id": "x"}]])
    assert together.type_changes == apart.type_changes == 1
    assert frame(together)["id"].tolist() == frame(apart)["id"].tolist() == [1, "x"]


def test_bools_and_numbers_mixed_in_one_batch_stay_exact() -> None:
    w = ColumnWindow(Window(10))
    feed(w, [[{"a": True}, {"a": 2}]])
    assert frame(w)["a"].tolist() == [True, 2]
    assert w.type_changes == 1


def test_columns_of_fields_gone_from_the_window_are_dropped() -> None:
    w = ColumnWindow(Window(10))
    feed(w, [[{f"k{i}": i, "v": i}] for i in range(5000)])
    f = frame(w)
    assert list(f.columns) == ["ts", "seq", "v", *[f"k{i}" for i in range(4990, 5000)]]


def test_column_count_is_bounded_and_overflow_counted() -> None:
    w = ColumnWindow(Window(10), max_columns=3)
    w.ingest("t", 1, 0.0, [{"a": 1, "b": 2, "c": 3, "d": 4, "e": None}])
    assert list(frame(w).columns) == ["ts", "seq", "a", "b", "c"]
    assert w.values_dropped == 1


def test_time_window_follows_the_hub_clock() -> None:
    w = ColumnWindow(Window(100, 60.0))
    hub_now = time.time() - 3600  # the hub's clock is an hour behind ours
    w.ingest("t", 1, hub_now - 120, [{"i": 0}])
    w.ingest("t", 2, hub_now - 30, [{"i": 1}])
    w.ingest("t", 3, hub_now, [{"i": 2}])
    assert frame(w)["i"].tolist() == [1, 2]
