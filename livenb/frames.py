"""pandas views of subscription windows (imports pandas; loaded only when a frame is asked for)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ._columns import Snapshot

_STRING_DTYPE: Any = "str" if int(pd.__version__.split(".")[0]) >= 3 else object


def snapshot_to_frame(snapshot: Snapshot, attrs: dict[str, Any] | None = None) -> pd.DataFrame:
    """A DataFrame of the window: ``ts`` (UTC datetime), ``seq``, [``topic``], then the fields.

    Column dtypes depend only on each column's kind, never on which rows are in the window,
    so repeated snapshots of a live stream have the same dtypes.
    """
    data: dict[str, Any] = {
        "ts": pd.to_datetime(snapshot.ts, unit="s", utc=True),
        "seq": snapshot.seq,
    }
    if snapshot.topic is not None:
        data["topic"] = pd.array(snapshot.topic, dtype=_STRING_DTYPE)
    for name, (kind, values) in snapshot.columns.items():
        if kind == "s":
            data[name] = pd.array(values, dtype=_STRING_DTYPE)
        elif kind == "O":
            data[name] = pd.Series(values, dtype=object, copy=False)
        else:
            data[name] = values
    frame = pd.DataFrame(data, index=pd.RangeIndex(len(snapshot.seq)), copy=False)
    if attrs:
        frame.attrs.update(attrs)
    return frame

