"""Window bounds for subscription frames: how many rows, and optionally how old. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Final, TypeAlias

DEFAULT_ROWS: Final = 10_000
# A time-only window ("5min") still needs a row bound so memory stays bounded.
DEFAULT_TIME_WINDOW_ROWS: Final = 1_000_000

WindowSpec: TypeAlias = "int | str | timedelta | tuple[int, str | timedelta] | Window | None"

_UNITS: Final = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "min": 60.0,
    "m": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
}
_DURATION_RE: Final = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]+)\s*")


@dataclass(frozen=True, slots=True)
class Window:
    """At most ``rows`` rows, and (when ``seconds`` is set) only rows younger than that."""

    rows: int
    seconds: float | None = None

    def __post_init__(self) -> None:
        if type(self.rows) is not int or self.rows < 1:
            raise ValueError(f"a window holds at least 1 row (got rows={self.rows!r})")
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"a time window must be positive (got {self.seconds!r} s)")


def parse_duration(value: str | timedelta) -> float:
    """Seconds in ``"500ms"``, ``"30s"``, ``"5min"``, ``"2h"``, ``"1d"`` or a timedelta."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    match = _DURATION_RE.fullmatch(value.lower())
    if match is None or match.group(2) not in _UNITS:
        raise ValueError(
            f"cannot read {value!r} as a duration; use e.g. '500ms', '30s', '5min', '2h', '1d'"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def make_window(spec: WindowSpec) -> Window | None:
    """Normalise what a user passes as ``window=``; None means "no frame kept"."""
    if spec is None or isinstance(spec, Window):
        return spec
    if isinstance(spec, bool):
        raise TypeError("window must be a row count, a duration such as '5min', or both")
    if isinstance(spec, int):
        return Window(spec)
    if isinstance(spec, str | timedelta):
        return Window(DEFAULT_TIME_WINDOW_ROWS, parse_duration(spec))
    if isinstance(spec, tuple) and len(spec) == 2:
        rows, age = spec
        return Window(rows, parse_duration(age))
    raise TypeError(
        f"window must be a row count (10_000), a duration ('5min'), or both "
        f"((10_000, '5min')); got {spec!r}"
    )
