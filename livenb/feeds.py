"""Synthetic feeds for demos, tests and benchmarks: no network, no numpy, no pandas.

``ticker()`` is an endless stock ticker (a geometric random walk per symbol), and ``paced()``
turns any iterable of records into batches released at a steady rate::

    import livenb
    from livenb.feeds import paced, ticker

    client = livenb.connect(url, token=token)
    for batch in paced(ticker(seed=1), rate=1_000, seconds=10):
        client.publish_many("ticks", batch)
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, TypeVar

__all__ = ["DEFAULT_SYMBOLS", "default_batch", "paced", "symbols_for", "ticker"]

T = TypeVar("T")

DEFAULT_SYMBOLS: Final[tuple[str, ...]] = ("ACME", "GLOBX", "INITECH", "UMBRL", "HOOLI")

# Beyond this many records per second a single batch holds about 1/20 s of records.
_BATCHES_PER_SECOND: Final = 20
_MAX_BATCH: Final = 5_000
# A consumer that fell further behind than this is not allowed to catch up in one burst.
_MAX_LAG: Final = 1.0


def symbols_for(symbols: Sequence[str] | int) -> tuple[str, ...]:
    """The symbol names for ``ticker(symbols)``.

    A sequence of names is returned as a tuple (it must be non-empty, without duplicates). An
    int ``k >= 1`` gives the first ``k`` of :data:`DEFAULT_SYMBOLS`, followed by ``SYM006``,
    ``SYM007``, ... when ``k`` exceeds them. Raises ValueError otherwise.
    """
    if isinstance(symbols, int):
        if isinstance(symbols, bool) or symbols < 1:
            raise ValueError(f"the number of symbols must be >= 1 (got {symbols!r})")
        extra = (f"SYM{i:03d}" for i in range(len(DEFAULT_SYMBOLS) + 1, symbols + 1))
        return (*DEFAULT_SYMBOLS[:symbols], *extra)
    if isinstance(symbols, str):
        raise ValueError("symbols is a sequence of names (e.g. ('ACME',)) or a count, not a str")
    names = tuple(symbols)
    if not names:
        raise ValueError("symbols must not be empty")
    if len(set(names)) != len(names):
        raise ValueError(f"symbols must be distinct (got {names!r})")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"each symbol must be a non-empty str (got {name!r})")
    return names


def ticker(
    symbols: Sequence[str] | int = DEFAULT_SYMBOLS,
    *,
    seed: int | None = None,
    start: float | Mapping[str, float] = 100.0,
    volatility: float = 0.001,
    spread: float = 0.0005,
    max_qty: int = 100,
    decimals: int = 2,
) -> Iterator[dict[str, Any]]:
    """An endless synthetic stock ticker: one dict per trade, for as long as you iterate.

    Each record is ``{"sym": str, "px": float, "qty": int, "bid": float, "ask": float}``. A
    random symbol trades at each step; its price moves by a factor ``exp(volatility * z)`` with
    ``z`` standard normal (a geometric random walk, so prices stay positive), ``qty`` is uniform
    in ``1..max_qty``, and ``bid``/``ask`` sit ``spread`` (relative) around ``px``. Prices are
    rounded to ``decimals`` places but never below one tick, so ``0 < bid <= px <= ask``.

    ``symbols``: names, or a count (see :func:`symbols_for`). ``start``: the first price of
    every symbol, or a mapping from symbol to first price (missing ones start at 100.0).
    ``seed``: with the same seed and arguments the sequence is identical (``random.Random``;
    the global random state is neither used nor changed). Raises ValueError on bad arguments.
    The iterator never ends: bound it with ``itertools.islice`` or :func:`paced`.
    """
    names = symbols_for(symbols)
    if volatility < 0 or not math.isfinite(volatility):
        raise ValueError(f"volatility must be a finite number >= 0 (got {volatility!r})")
    if spread < 0 or not math.isfinite(spread):
        raise ValueError(f"spread must be a finite number >= 0 (got {spread!r})")
    if max_qty < 1:
        raise ValueError(f"max_qty must be >= 1 (got {max_qty!r})")
    if decimals < 0:
        raise ValueError(f"decimals must be >= 0 (got {decimals!r})")
    if isinstance(start, Mapping):
        prices = [float(start.get(name, 100.0)) for name in names]
    else:
        prices = [float(start)] * len(names)
    for name, price in zip(names, prices, strict=True):
        if not (price > 0 and math.isfinite(price)):
            raise ValueError(f"the start price of {name} must be > 0 (got {price!r})")
    return _ticker(names, prices, random.Random(seed), volatility, spread, max_qty, decimals)


def _ticker(
    names: tuple[str, ...],
    prices: list[float],
    rng: random.Random,
    volatility: float,
    spread: float,
    max_qty: int,
    decimals: int,
) -> Iterator[dict[str, Any]]:
    tick = 10.0**-decimals
    half = spread / 2
    count = len(names)
    while True:
        i = rng.randrange(count)
        px = prices[i] * math.exp(volatility * rng.gauss(0.0, 1.0))
        # Stay clear of float underflow/overflow on absurdly long walks.
        px = min(max(px, 1e-9), 1e12)
        prices[i] = px
        yield {
            "sym": names[i],
            "px": max(round(px, decimals), tick),
            "qty": rng.randint(1, max_qty),
            "bid": max(round(px * (1 - half), decimals), tick),
            "ask": max(round(px * (1 + half), decimals), tick),
        }


def default_batch(rate: float) -> int:
    """The batch size :func:`paced` uses for ``rate``: about 1/20 s of records, 1..5000."""
    return max(1, min(_MAX_BATCH, round(rate / _BATCHES_PER_SECOND)))


def paced(
    records: Iterable[T],
    rate: float,
    *,
    batch: int | None = None,
    seconds: float | None = None,
    count: int | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> Iterator[list[T]]:
    """Yield lists of records from ``records`` at about ``rate`` records per second.

    Batches hold ``batch`` records (default :func:`default_batch`), the last one possibly
    fewer. Batch ``k`` is released when ``rate`` allows the records before it, sleeping in
    between; a consumer that falls behind gets the next batches without sleeping, but never
    catches up more than one second's worth in a burst. Iteration stops when ``records`` is
    exhausted, after ``count`` records in total (the last batch is cut to fit), or once
    ``seconds`` have elapsed since iteration began (checked before each batch is taken from
    ``records``, so none is taken or released after the deadline). The first batch is released
    at once (unless ``seconds`` is 0). Records are taken from ``records`` one batch at a time,
    just before that batch is released.
    Raises ValueError for ``rate <= 0``, ``batch < 1``, ``count < 0`` or ``seconds < 0``.

    ``clock`` and ``sleep`` default to :func:`time.monotonic` and :func:`time.sleep`; tests
    may pass fakes.
    """
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be a finite number of records per second > 0 (got {rate!r})")
    size = default_batch(rate) if batch is None else batch
    if size < 1:
        raise ValueError(f"batch must be >= 1 (got {batch!r})")
    if count is not None and count < 0:
        raise ValueError(f"count must be >= 0 (got {count!r})")
    if seconds is not None and seconds < 0:
        raise ValueError(f"seconds must be >= 0 (got {seconds!r})")
    return _paced(iter(records), rate, size, seconds, count, clock, sleep)


def _paced(
    source: Iterator[T],
    rate: float,
    size: int,
    seconds: float | None,
    count: int | None,
    clock: Callable[[], float],
    sleep: Callable[[float], object],
) -> Iterator[list[T]]:
    started = clock()
    deadline = None if seconds is None else started + seconds
    schedule = started  # when the next batch is due
    released = 0
    while count is None or released < count:
        now = clock()
        if schedule > now:
            if deadline is not None and schedule >= deadline:
                return
            sleep(schedule - now)
            now = clock()
        elif now - schedule > _MAX_LAG:
            schedule = now - _MAX_LAG
        if deadline is not None and now >= deadline:
            return
        take = size if count is None else min(size, count - released)
        chunk = list(itertools.islice(source, take))
        if not chunk:
            return
        yield chunk
        released += len(chunk)
        schedule += len(chunk) / rate
