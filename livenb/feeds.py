"""Synthetic feeds for demos, tests and benchmarks: no network, no numpy, no pandas.

``ticker()`` is an endless stock ticker (a geometric random walk per symbol), ``taxis()`` an
endless taxi fleet driving on a city grid (positions, pickups, drop-offs and fares), and
``paced()`` turns any iterable of records into batches released at a steady rate::

    import livenb
    from livenb.feeds import paced, taxis, ticker

    client = livenb.connect(url, token=token)
    for batch in paced(ticker(seed=1), rate=1_000, seconds=10):
        client.publish_many("ticks", batch)

    for batch in paced(taxis(20, seed=1), rate=200, batch=20, count=20 * 100):  # 100 rounds
        for record in batch:
            client.publish(f"taxis.{record['taxi']}", record)
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, TypeVar

__all__ = [
    "DEFAULT_BOUNDS",
    "DEFAULT_SYMBOLS",
    "default_batch",
    "paced",
    "symbols_for",
    "taxi_ids",
    "taxis",
    "ticker",
]

T = TypeVar("T")

DEFAULT_SYMBOLS: Final[tuple[str, ...]] = ("ACME", "GLOBX", "INITECH", "UMBRL", "HOOLI")

# (south, west, north, east) in degrees: a patch of Chicago, whose streets run north-south and
# east-west, west of the lake and the Loop.
DEFAULT_BOUNDS: Final[tuple[float, float, float, float]] = (41.850, -87.700, 41.920, -87.625)

# Kilometres per degree of latitude (and of longitude at the equator).
_KM_PER_DEGREE: Final = 111.32
# A moving taxi's speed is uniform in this fraction of max_speed; one round in ten it waits
# at a red light (speed 0, not moving).
_MIN_SPEED_FRACTION: Final = 0.3
_RED_LIGHT: Final = 0.1
# A trip's destination is at least this many blocks (Manhattan distance) from the pickup.
_MIN_TRIP_BLOCKS: Final = 2

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


def taxi_ids(n: int) -> tuple[str, ...]:
    """The ids of a fleet of ``n >= 1`` taxis: ``T01``, ``T02``, ... (zero-padded to at least
    two digits, so they sort in order and are valid topic segments: ``taxis.T01``). Raises
    ValueError otherwise."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of taxis must be an int >= 1 (got {n!r})")
    width = max(2, len(str(n)))
    return tuple(f"T{i:0{width}d}" for i in range(1, n + 1))


def taxis(
    n: int = 20,
    *,
    seed: int | None = None,
    bounds: tuple[float, float, float, float] = DEFAULT_BOUNDS,
    streets: int = 15,
    step: float = 30.0,
    max_speed: float = 50.0,
    hail: float = 0.1,
    base_fare: float = 3.25,
    per_km: float = 1.40,
) -> Iterator[dict[str, Any]]:
    """An endless synthetic taxi fleet on a city grid: one dict per taxi per round.

    The city is a grid of ``streets`` streets each way spanning ``bounds`` (``(south, west,
    north, east)`` in degrees, default :data:`DEFAULT_BOUNDS`), and each round is ``step``
    simulated seconds. A round yields one record per taxi, in id order (:func:`taxi_ids`), so
    ``n`` consecutive records hold every taxi once::

        {"taxi": "T07", "lat": 41.8843, "lon": -87.6571, "speed": 31.4, "status": "hired",
         "event": "move", "trip_id": "T07-0002", "fare": None, "trip_km": None}

    - ``lat``/``lon`` (6 decimals) are always on a street and inside ``bounds``;
    - ``speed`` is km/h, uniform in 30%..100% of ``max_speed`` while driving, 0 while waiting
      at a red light (one round in ten) and on pickup and drop-off records;
    - ``status`` is ``"free"`` (cruising at random, never turning back at a corner) or
      ``"hired"`` (from the next corner, a shortest route along the streets to the trip's
      destination, a random corner at least two blocks from that next corner);
    - ``event`` is ``"move"``, ``"pickup"`` (a free taxi is hailed with probability ``hail``
      per round; it stands still that round, now ``"hired"`` with a new ``trip_id``) or
      ``"dropoff"`` (the taxi reached the destination; it stands there, ``"free"`` again, and
      the record carries the trip's ``trip_id``, ``trip_km``, the distance driven since the
      pickup (2 decimals), and ``fare = base_fare + per_km * trip_km`` (2 decimals));
    - ``trip_id`` (``"T07-0002"``: the taxi's second trip) is set on the records from pickup
      to drop-off, else None; ``fare`` and ``trip_km`` are None except on drop-offs.

    Every taxi starts free at a random spot. ``seed``: with the same seed and arguments the
    sequence is identical (``random.Random``; the global random state is neither used nor
    changed). Raises ValueError on bad arguments. The iterator never ends: bound it with
    ``itertools.islice(taxis(n), n * rounds)`` or :func:`paced`.
    """
    ids = taxi_ids(n)
    if len(bounds) != 4 or not all(isinstance(v, int | float) for v in bounds):
        raise ValueError(f"bounds must be (south, west, north, east) in degrees (got {bounds!r})")
    south, west, north, east = (float(v) for v in bounds)
    if not (-90 <= south < north <= 90 and -180 <= west < east <= 180):
        raise ValueError(
            f"bounds must be (south, west, north, east) with south < north and west < east, "
            f"within -90..90 and -180..180 (got {bounds!r})"
        )
    if isinstance(streets, bool) or not isinstance(streets, int) or streets < 2:
        raise ValueError(f"streets must be an int >= 2 (got {streets!r})")
    for name, value in {"step": step, "max_speed": max_speed}.items():
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a finite number > 0 (got {value!r})")
    if not 0 <= hail <= 1:
        raise ValueError(f"hail must be a probability in 0..1 (got {hail!r})")
    for name, value in {"base_fare": base_fare, "per_km": per_km}.items():
        if not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a finite number >= 0 (got {value!r})")
    city = _City(south, west, north, east, streets)
    rng = random.Random(seed)
    return _taxis(ids, city, rng, step, max_speed, hail, base_fare, per_km)


class _City:
    """The street grid: intersections ``(i, j)`` for ``0 <= i, j < streets`` (i east, j
    north), block lengths in km, and the conversion of grid positions to degrees."""

    def __init__(self, south: float, west: float, north: float, east: float, streets: int) -> None:
        self.south, self.west, self.north, self.east = south, west, north, east
        self.last = streets - 1
        mid = math.radians((south + north) / 2)
        self.block_km = (
            (east - west) * _KM_PER_DEGREE * math.cos(mid) / self.last,  # east-west blocks
            (north - south) * _KM_PER_DEGREE / self.last,  # north-south blocks
        )

    def neighbours(self, at: tuple[int, int]) -> list[tuple[int, int]]:
        i, j = at
        steps = ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1))
        return [(a, b) for a, b in steps if 0 <= a <= self.last and 0 <= b <= self.last]

    def lat_lon(self, x: float, y: float) -> tuple[float, float]:
        lat = round(self.south + (self.north - self.south) * y / self.last, 6)
        lon = round(self.west + (self.east - self.west) * x / self.last, 6)
        # Rounding never leaves bounds given to 6 decimals; clamp for finer ones.
        return min(max(lat, self.south), self.north), min(max(lon, self.west), self.east)


class _Taxi:
    """One taxi: driving from intersection ``at`` towards the adjacent ``to``, ``done`` of
    the way there (0 <= done < 1)."""

    def __init__(self, name: str, at: tuple[int, int], to: tuple[int, int], done: float) -> None:
        self.name = name
        self.at = at
        self.to = to
        self.done = done
        self.trips = 0
        self.trip_id: str | None = None
        self.destination: tuple[int, int] | None = None
        self.trip_km = 0.0

    def position(self) -> tuple[float, float]:
        (i, j), (a, b) = self.at, self.to
        return i + (a - i) * self.done, j + (b - j) * self.done


def _taxis(
    ids: tuple[str, ...],
    city: _City,
    rng: random.Random,
    step: float,
    max_speed: float,
    hail: float,
    base_fare: float,
    per_km: float,
) -> Iterator[dict[str, Any]]:
    fleet = []
    for name in ids:
        at = (rng.randint(0, city.last), rng.randint(0, city.last))
        fleet.append(_Taxi(name, at, rng.choice(city.neighbours(at)), rng.random()))
    while True:
        for taxi in fleet:
            event = "move"
            speed = 0.0
            fare = trip_km = None
            if taxi.trip_id is None and rng.random() < hail:
                event = "pickup"
                taxi.trips += 1
                taxi.trip_id = f"{taxi.name}-{taxi.trips:04d}"
                taxi.trip_km = 0.0
                taxi.destination = _destination(city, taxi, rng)
            elif rng.random() >= _RED_LIGHT:
                speed = round(rng.uniform(_MIN_SPEED_FRACTION, 1.0) * max_speed, 1)
                arrived = _drive(city, taxi, speed * step / 3600, rng)
                if arrived:
                    event = "dropoff"
                    speed = 0.0
                    trip_km = round(taxi.trip_km, 2)
                    fare = round(base_fare + per_km * trip_km, 2)
            lat, lon = city.lat_lon(*taxi.position())
            trip_id = taxi.trip_id
            if event == "dropoff":
                taxi.trip_id = taxi.destination = None
            yield {
                "taxi": taxi.name,
                "lat": lat,
                "lon": lon,
                "speed": speed,
                "status": "free" if taxi.trip_id is None else "hired",
                "event": event,
                "trip_id": trip_id,
                "fare": fare,
                "trip_km": trip_km,
            }


def _destination(city: _City, taxi: _Taxi, rng: random.Random) -> tuple[int, int]:
    """A random intersection at least two blocks from where the taxi is heading."""
    i, j = taxi.to
    while True:
        goal = (rng.randint(0, city.last), rng.randint(0, city.last))
        if abs(goal[0] - i) + abs(goal[1] - j) >= _MIN_TRIP_BLOCKS:
            return goal


def _drive(city: _City, taxi: _Taxi, km: float, rng: random.Random) -> bool:
    """Drive ``km`` along the streets; True when a hired taxi reached its destination (it
    stops there). A hired taxi's driven distance is added to its ``trip_km``."""
    while km > 0:
        length = city.block_km[0] if taxi.at[1] == taxi.to[1] else city.block_km[1]
        left = (1.0 - taxi.done) * length
        if km < left:
            taxi.done += km / length
            if taxi.trip_id is not None:
                taxi.trip_km += km
            return False
        km -= left
        if taxi.trip_id is not None:
            taxi.trip_km += left
        previous, taxi.at, taxi.done = taxi.at, taxi.to, 0.0
        if taxi.at == taxi.destination:
            taxi.to = rng.choice(city.neighbours(taxi.at))  # where it heads once free again
            return True
        taxi.to = _next_corner(city, taxi, previous, rng)
    return False


def _next_corner(
    city: _City, taxi: _Taxi, previous: tuple[int, int], rng: random.Random
) -> tuple[int, int]:
    """The next intersection: towards the destination when hired (a random one of the
    shortest routes), else a random street onwards (a U-turn only at a dead end)."""
    options = city.neighbours(taxi.at)
    if taxi.destination is not None:
        (i, j), (a, b) = taxi.at, taxi.destination
        closer = [(x, y) for x, y in options if abs(a - x) + abs(b - y) < abs(a - i) + abs(b - j)]
        return rng.choice(closer)
    onwards = [corner for corner in options if corner != previous]
    return rng.choice(onwards or options)


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
