"""The failed-login throttle (pure): per-address budgets, refill, a bounded table."""

from __future__ import annotations

import pytest

from livenb._throttle import FailureThrottle


def test_an_address_is_blocked_after_its_burst_and_recovers_at_the_rate() -> None:
    throttle = FailureThrottle(burst=3, rate=2.0)
    for _ in range(2):
        throttle.failed("a", 0.0)
        assert not throttle.blocked("a", 0.0)
    throttle.failed("a", 0.0)
    assert throttle.blocked("a", 0.0)
    assert throttle.retry_after("a", 0.0) == pytest.approx(0.5)
    assert not throttle.blocked("b", 0.0)  # other addresses are unaffected
    assert throttle.blocked("a", 0.49)
    assert not throttle.blocked("a", 0.51)  # one failure refilled
    throttle.failed("a", 0.51)
    assert throttle.blocked("a", 0.51)
    assert not throttle.blocked("a", 10.0)
    assert throttle.retry_after("a", 10.0) == 0.0


def test_the_table_is_bounded_and_evictions_of_owing_addresses_are_counted() -> None:
    throttle = FailureThrottle(burst=2, rate=1.0, max_addresses=3)
    for i in range(5):
        throttle.failed(f"10.0.0.{i}", 0.0)
    assert len(throttle) == 3
    assert throttle.evicted == 2
    # An entry that has fully recovered is forgotten without counting.
    later = FailureThrottle(burst=2, rate=1.0, max_addresses=1)
    later.failed("x", 0.0)
    later.failed("y", 5.0)
    assert later.evicted == 0 and len(later) == 1


def test_bad_settings_are_refused() -> None:
    for kwargs in ({"burst": 0}, {"rate": 0.0}, {"max_addresses": 0}):
        with pytest.raises(ValueError):
            FailureThrottle(**kwargs)  # type: ignore[arg-type]
