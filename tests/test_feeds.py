"""livenb.feeds: the synthetic ticker, the taxi fleet and the pacing helper (no network, fake
clocks)."""

from __future__ import annotations

import itertools
import json
import math
import random
import subprocess
import sys
from collections import defaultdict
from typing import Any

import pytest

from livenb.feeds import (
    DEFAULT_BOUNDS,
    DEFAULT_SYMBOLS,
    default_batch,
    paced,
    symbols_for,
    taxi_ids,
    taxis,
    ticker,
)

FIELDS = {"sym", "px", "qty", "bid", "ask"}
TAXI_FIELDS = {"taxi", "lat", "lon", "speed", "status", "event", "trip_id", "fare", "trip_km"}


class FakeTime:
    """A clock that only moves when ``sleep`` is called (or ``advance`` in a test)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


# ------------------------------------------------------------------------------ ticker
def test_ticker_is_deterministic_with_a_seed() -> None:
    first = list(itertools.islice(ticker(seed=7), 500))
    again = list(itertools.islice(ticker(seed=7), 500))
    other = list(itertools.islice(ticker(seed=8), 500))
    assert first == again
    assert first != other


def test_ticker_leaves_the_global_random_state_alone() -> None:
    state = random.getstate()
    list(itertools.islice(ticker(seed=1), 100))
    list(itertools.islice(ticker(), 100))
    assert random.getstate() == state


def test_ticker_records_have_the_documented_fields() -> None:
    records = list(itertools.islice(ticker(seed=3, max_qty=50), 2_000))
    for record in records:
        assert set(record) == FIELDS
        assert record["sym"] in DEFAULT_SYMBOLS
        assert type(record["px"]) is float
        assert type(record["bid"]) is float
        assert type(record["ask"]) is float
        assert type(record["qty"]) is int
        assert 1 <= record["qty"] <= 50
        assert 0 < record["bid"] <= record["px"] <= record["ask"]
    assert {r["sym"] for r in records} == set(DEFAULT_SYMBOLS)


def test_ticker_prices_stay_positive_under_wild_volatility() -> None:
    for record in itertools.islice(ticker(["X"], seed=5, volatility=0.5), 20_000):
        assert record["bid"] > 0
        assert record["px"] > 0
        assert math.isfinite(record["ask"])


def test_ticker_is_a_random_walk_around_the_start_price() -> None:
    prices = [r["px"] for r in itertools.islice(ticker(["X"], seed=11, start=50.0), 1_000)]
    assert len(set(prices)) > 100  # it moves
    assert 25 < prices[-1] < 100  # but not wildly at volatility=0.001
    flat = list(itertools.islice(ticker(["X"], seed=11, start=50.0, volatility=0.0), 50))
    assert {r["px"] for r in flat} == {50.0}


def test_ticker_start_prices_per_symbol() -> None:
    records = itertools.islice(ticker(["A", "B"], seed=2, start={"A": 10.0}, volatility=0), 100)
    assert {r["sym"]: r["px"] for r in records} == {"A": 10.0, "B": 100.0}


def test_ticker_symbol_count() -> None:
    assert symbols_for(3) == DEFAULT_SYMBOLS[:3]
    assert symbols_for(7) == (*DEFAULT_SYMBOLS, "SYM006", "SYM007")
    assert symbols_for(["B", "A"]) == ("B", "A")
    seen = {r["sym"] for r in itertools.islice(ticker(7, seed=1), 1_000)}
    assert seen == set(symbols_for(7))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"symbols": 0},
        {"symbols": []},
        {"symbols": "ACME"},
        {"symbols": ["A", "A"]},
        {"volatility": -0.1},
        {"start": 0.0},
        {"start": {"ACME": -1.0}},
        {"max_qty": 0},
        {"spread": float("nan")},
    ],
)
def test_ticker_rejects_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ticker(**kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ taxis
def rounds(n: int, count: int, **kwargs: Any) -> list[dict[str, Any]]:
    """``count`` rounds of a fleet of ``n`` taxis."""
    return list(itertools.islice(taxis(n, **kwargs), n * count))


def km_between(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Street (Manhattan) distance in km between two records' positions."""
    lat_a, lon_a, lat_b, lon_b = (float(r[k]) for r in (a, b) for k in ("lat", "lon"))
    north = abs(lat_a - lat_b) * 111.32
    east = abs(lon_a - lon_b) * 111.32 * math.cos(math.radians((lat_a + lat_b) / 2))
    return north + east


def test_taxi_ids() -> None:
    assert taxi_ids(3) == ("T01", "T02", "T03")
    assert taxi_ids(100)[-1] == "T100"
    assert taxi_ids(100)[0] == "T001"
    assert list(taxi_ids(120)) == sorted(taxi_ids(120))


def test_taxis_are_deterministic_with_a_seed() -> None:
    first = rounds(10, 200, seed=7)
    assert first == rounds(10, 200, seed=7)
    assert first != rounds(10, 200, seed=8)


def test_taxis_leave_the_global_random_state_alone() -> None:
    state = random.getstate()
    rounds(5, 100, seed=1)
    rounds(5, 100)
    assert random.getstate() == state


def test_taxi_records_have_the_documented_fields() -> None:
    records = rounds(12, 300, seed=3)
    ids = taxi_ids(12)
    for k, record in enumerate(records):
        assert set(record) == TAXI_FIELDS
        assert record["taxi"] == ids[k % 12]  # rounds: every taxi once, in id order
        assert type(record["lat"]) is float
        assert type(record["lon"]) is float
        assert type(record["speed"]) is float
        assert 0.0 <= record["speed"] <= 50.0
        assert record["status"] in ("free", "hired")
        assert record["event"] in ("move", "pickup", "dropoff")
        if record["event"] == "dropoff":
            assert type(record["fare"]) is float
            assert type(record["trip_km"]) is float
        else:
            assert record["fare"] is None
            assert record["trip_km"] is None
        if record["event"] in ("pickup", "dropoff"):
            assert record["speed"] == 0.0  # standing at the kerb
        assert (record["trip_id"] is None) == (
            record["status"] == "free" and record["event"] != "dropoff"
        )
    json.dumps(records)  # plain JSON values: publishable as they are
    assert {r["event"] for r in records} == {"move", "pickup", "dropoff"}
    moving = [r["speed"] for r in records if r["event"] == "move" and r["speed"] > 0]
    assert min(moving) >= 15.0  # 30% of max_speed
    assert any(r["event"] == "move" and r["speed"] == 0.0 for r in records)  # red lights


@pytest.mark.parametrize(
    ("bounds", "streets"),
    [(DEFAULT_BOUNDS, 15), ((-33.95, 151.15, -33.85, 151.25), 4), ((0.0, 0.0, 0.5, 0.25), 2)],
)
def test_taxis_stay_on_the_streets_inside_the_bounds(
    bounds: tuple[float, float, float, float], streets: int
) -> None:
    south, west, north, east = bounds
    records = rounds(8, 400, seed=5, bounds=bounds, streets=streets)
    for record in records:
        assert south <= record["lat"] <= north
        assert west <= record["lon"] <= east
        # On a street: on one of the grid's east-west or north-south lines (or both).
        y = (record["lat"] - south) / (north - south) * (streets - 1)
        x = (record["lon"] - west) / (east - west) * (streets - 1)
        assert min(abs(y - round(y)), abs(x - round(x))) < 1e-4, record
    # They go everywhere, corners included, over enough rounds.
    assert min(r["lat"] for r in records) == south
    assert max(r["lat"] for r in records) == north
    assert min(r["lon"] for r in records) == west
    assert max(r["lon"] for r in records) == east


def test_taxis_drive_no_faster_than_max_speed() -> None:
    records = rounds(10, 300, seed=9, step=20.0, max_speed=40.0)
    last: dict[str, dict[str, Any]] = {}
    moved = 0
    for record in records:
        before = last.get(record["taxi"])
        if before is not None:
            km = km_between(before, record)
            assert km <= 40.0 * 20.0 / 3600 + 1e-3
            if record["event"] == "pickup" or (record["event"] == "move" and not record["speed"]):
                assert km == 0.0  # standing still
            moved += km > 0
        last[record["taxi"]] = record
    assert moved > len(records) // 2


def test_taxi_trips_start_and_end() -> None:
    records = rounds(20, 500, seed=11, base_fare=2.5, per_km=2.0)
    trips: dict[str, list[dict[str, Any]]] = defaultdict(list)  # trip_id -> its records
    current: dict[str, str | None] = dict.fromkeys(taxi_ids(20))
    for record in records:
        taxi, trip = record["taxi"], record["trip_id"]
        if record["event"] == "pickup":
            assert current[taxi] is None, "picked up while hired"
            assert record["status"] == "hired"
            assert trip is not None and trip not in trips  # a new trip
            assert trip.startswith(f"{taxi}-")
            current[taxi] = trip
        elif record["event"] == "dropoff":
            assert current[taxi] == trip is not None
            assert record["status"] == "free"
            current[taxi] = None
        else:
            assert trip == current[taxi]
            assert record["status"] == ("free" if trip is None else "hired")
        if trip is not None:
            trips[trip].append(record)

    ended = {t: rs for t, rs in trips.items() if rs[-1]["event"] == "dropoff"}
    assert len(ended) > 100  # plenty of trips over 500 rounds
    per_taxi = {r[0]["taxi"] for r in ended.values()}
    assert per_taxi == set(taxi_ids(20))  # every taxi completed a trip
    numbers = defaultdict(list)
    for trip in trips:
        taxi, number = trip.split("-")
        numbers[taxi].append(int(number))
    assert all(n == list(range(1, len(n) + 1)) for n in numbers.values())  # T05-0001, -0002...
    for trip, rs in ended.items():
        pickup, dropoff = rs[0], rs[-1]
        assert pickup["event"] == "pickup", trip
        assert dropoff["fare"] == pytest.approx(2.5 + 2.0 * dropoff["trip_km"], abs=0.006)
        # The route follows the streets: at least as long as the straight street distance
        # between the positions it reported, and it ends more than a block from the pickup.
        driven = sum(km_between(a, b) for a, b in itertools.pairwise(rs))
        assert dropoff["trip_km"] >= driven - 0.02
        assert km_between(pickup, dropoff) > 0.4  # more than one block (0.44 km or more)
        assert dropoff["trip_km"] <= (len(rs) - 1) * 50.0 * 30.0 / 3600 + 0.01


def test_taxis_hail_probability() -> None:
    assert {r["status"] for r in rounds(5, 200, seed=1, hail=0.0)} == {"free"}
    first = rounds(5, 1, seed=1, hail=1.0)
    assert [r["event"] for r in first] == ["pickup"] * 5  # hailed at once


def test_taxis_feed_a_paced_publisher() -> None:
    fake = FakeTime()
    batches = list(
        paced(taxis(4, seed=2), 40.0, batch=4, count=4 * 10, clock=fake.clock, sleep=fake.sleep)
    )
    assert [[r["taxi"] for r in b] for b in batches] == [list(taxi_ids(4))] * 10


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": 0},
        {"n": True},
        {"n": 2.5},
        {"bounds": (41.9, -87.7, 41.8, -87.6)},  # south > north
        {"bounds": (41.8, -87.6, 41.9, -87.7)},  # west > east
        {"bounds": (41.8, -87.7, 41.9)},
        {"bounds": (-91.0, 0.0, 0.0, 1.0)},
        {"streets": 1},
        {"step": 0},
        {"step": float("inf")},
        {"max_speed": -1.0},
        {"hail": 1.5},
        {"hail": float("nan")},
        {"base_fare": -1.0},
        {"per_km": float("nan")},
    ],
)
def test_taxis_reject_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        taxis(**kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ paced
def test_paced_is_bounded_by_count_and_keeps_the_rate() -> None:
    fake = FakeTime()
    start = fake.now
    batches = list(
        paced(ticker(seed=1), 100.0, batch=10, count=255, clock=fake.clock, sleep=fake.sleep)
    )
    assert [len(b) for b in batches] == [10] * 25 + [5]
    assert sum(len(b) for b in batches) == 255
    # The first batch goes at once; batch k is due after 10*k records at 100 records/s.
    assert fake.now - start == pytest.approx(2.5)
    assert all(set(r) == FIELDS for b in batches for r in b)


def test_paced_is_bounded_by_seconds_without_sleeping_past_the_deadline() -> None:
    fake = FakeTime()
    start = fake.now
    batches = list(
        paced(itertools.count(), 100.0, batch=10, seconds=1.0, clock=fake.clock, sleep=fake.sleep)
    )
    assert sum(len(b) for b in batches) == 100
    assert list(itertools.chain.from_iterable(batches)) == list(range(100))
    assert fake.now - start <= 1.0


def test_paced_stops_when_the_source_ends() -> None:
    fake = FakeTime()
    batches = list(paced(range(25), 1e6, batch=10, clock=fake.clock, sleep=fake.sleep))
    assert batches == [list(range(10)), list(range(10, 20)), list(range(20, 25))]


def test_paced_takes_records_only_when_releasing_them() -> None:
    source = iter(range(100))
    fake = FakeTime()
    batches = paced(source, 10.0, batch=5, count=10, clock=fake.clock, sleep=fake.sleep)
    assert next(batches) == [0, 1, 2, 3, 4]
    assert next(source) == 5  # nothing was read ahead


def test_paced_does_not_burst_more_than_a_second_after_a_stall() -> None:
    fake = FakeTime()
    batches = paced(itertools.count(), 10.0, batch=1, clock=fake.clock, sleep=fake.sleep)
    next(batches)
    fake.advance(5.0)  # the consumer stalled for 5 s
    slept_before = len(fake.sleeps)
    burst = 0
    while len(fake.sleeps) == slept_before:
        next(batches)
        burst += 1
        assert burst < 100, "paced never slept again"
    assert burst <= 12  # about one second's worth (10 records at 10/s), not 50


def test_paced_default_batch_is_about_a_twentieth_of_a_second() -> None:
    assert default_batch(5_000) == 250
    assert default_batch(1) == 1
    assert default_batch(1e9) == 5_000
    fake = FakeTime()
    batches = list(paced(range(1_000), 2_000.0, count=1_000, clock=fake.clock, sleep=fake.sleep))
    assert [len(b) for b in batches] == [100] * 10


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 0},
        {"rate": -1},
        {"rate": float("inf")},
        {"batch": 0},
        {"count": -1},
        {"seconds": -1},
    ],
)
def test_paced_rejects_bad_arguments(kwargs: dict[str, float]) -> None:
    arguments: dict[str, float] = {"rate": 10.0, **kwargs}
    rate = arguments.pop("rate")
    with pytest.raises(ValueError):
        paced(range(10), rate, **arguments)  # type: ignore[arg-type]


def test_feeds_do_not_import_pandas(unit: float) -> None:
    code = "import sys, livenb.feeds; sys.exit('pandas' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], timeout=4 * unit, check=False)
    assert result.returncode == 0, "importing livenb.feeds imported pandas"
