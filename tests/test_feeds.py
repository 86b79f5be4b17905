"""livenb.feeds: the synthetic ticker and the pacing helper (no network, fake clocks)."""

from __future__ import annotations

import itertools
import math
import random
import subprocess
import sys

import pytest

from livenb.feeds import DEFAULT_SYMBOLS, default_batch, paced, symbols_for, ticker

FIELDS = {"sym", "px", "qty", "bid", "ask"}


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
