from __future__ import annotations

from datetime import timedelta

import pytest

from livenb import Window
from livenb._window import DEFAULT_TIME_WINDOW_ROWS, make_window, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("5min", 300), ("2h", 7200), ("1d", 86400), ("1.5 min", 90)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_make_window_forms() -> None:
    assert make_window(None) is None
    assert make_window(10) == Window(10)
    assert make_window("5min") == Window(DEFAULT_TIME_WINDOW_ROWS, 300.0)
    assert make_window(timedelta(seconds=3)) == Window(DEFAULT_TIME_WINDOW_ROWS, 3.0)
    assert make_window((100, "1s")) == Window(100, 1.0)


@pytest.mark.parametrize("bad", [0, -1, "5 parsecs", "min", True, 1.5, (1, 2, 3)])
def test_make_window_rejects(bad: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        make_window(bad)  # type: ignore[arg-type]
