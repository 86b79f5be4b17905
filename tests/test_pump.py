"""The render pump: per-view rate, a kernel-wide message cap, fairness, one thread."""

from __future__ import annotations

import itertools
import threading
import time

from livenb._pump import Pump, Schedule

from .helpers import wait_until


def test_each_view_is_served_at_most_at_its_rate() -> None:
    schedule = Schedule(max_messages=1000)
    schedule.add(1, 0.0)
    rates = {1: 10.0}
    served = [t / 100 for t in range(100) if schedule.due(t / 100, rates)]  # 1 s in 10 ms ticks
    assert len(served) == 10
    assert all(b - a >= 0.1 - 1e-9 for a, b in itertools.pairwise(served))


def test_the_process_wide_budget_caps_messages_and_serves_views_in_turn() -> None:
    schedule = Schedule(max_messages=100)
    views = list(range(50))
    for key in views:
        schedule.add(key, 0.0)
    rates = dict.fromkeys(views, 1000.0)  # each view would like 1,000 a second
    counts = dict.fromkeys(views, 0)
    sent = 0
    for tick in range(1, 201):  # 2 s in 10 ms ticks
        served = schedule.due(tick / 100, rates)
        for key in served:
            counts[key] += 1
        sent += len(served)
        schedule.spent(len(served))  # each served view sent one message
    # 100 a second for 2 s, plus the initial burst
    assert sent <= 2 * 100 + schedule.burst + 1
    assert sent >= 2 * 100 - 10
    assert min(counts.values()) >= 3  # round-robin: nobody starves
    assert schedule.deferred > 0


def test_soon_brings_a_view_forward() -> None:
    schedule = Schedule()
    schedule.add(7, 0.0)
    assert schedule.due(0.0, {7: 1.0}) == [7]
    assert schedule.due(0.5, {7: 1.0}) == []
    schedule.soon(7, 0.5)
    assert schedule.due(0.5, {7: 1.0}) == [7]


class FakeView:
    """Always has an update; counts the calls and the threads they came from."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.calls = 0
        self.threads: set[str] = set()

    def pump(self) -> int:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        return 1


def test_the_pump_thread_serves_every_view_within_the_cap(unit: float) -> None:
    pump = Pump(max_messages=200)
    views = [FakeView(rate=50.0) for _ in range(20)]  # 1,000 a second wanted in all
    for view in views:
        pump.add(view)
    time.sleep(1.0)
    for view in views:
        pump.remove(view)
    sent = sum(v.calls for v in views)
    assert 100 <= sent <= 200 * 1.0 + pump.schedule.burst + 20
    assert all(v.calls > 0 for v in views)
    assert set().union(*(v.threads for v in views)) == {"livenb-pump"}
    stats = pump.stats()
    assert stats["messages"] == sent and stats["views"] == 0


def test_a_failing_view_does_not_stop_the_others(unit: float) -> None:
    class Broken(FakeView):
        def pump(self) -> int:
            raise RuntimeError("boom")

    pump = Pump()
    broken, good = Broken(rate=100.0), FakeView(rate=100.0)
    pump.add(broken)
    pump.add(good)
    wait_until(lambda: good.calls > 5 and pump.failures > 5, unit, "the good view served")
    pump.remove(broken)
    pump.remove(good)


def test_a_forgotten_view_is_dropped(unit: float) -> None:
    import gc

    pump = Pump()
    view = FakeView(rate=100.0)
    pump.add(view)
    assert pump.stats()["views"] == 1
    del view
    gc.collect()
    wait_until(lambda: pump.stats()["views"] == 0, unit, "the view forgotten")
