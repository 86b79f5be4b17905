"""The render pump: the one place live widget updates leave for the front end.

Data arrives on livenb's loop thread as fast as the hub sends it; a browser can redraw a
table perhaps ten times a second, and Jupyter's server silently drops iopub messages above
1,000 a second. So widgets never send from the loop thread and never on data arrival:
one daemon thread wakes every ``TICK`` seconds and asks each due view for its update.

- A view is due at most ``rate`` times a second (its own setting, 10 by default).
- The whole process sends at most ``max_messages`` messages a second (200 by default), a
  token bucket shared by all views; when it runs short, views are served round-robin, so a
  busy view cannot starve the others, and a skipped view sends everything it owes at its
  next turn (an update carries all rows since the previous one).
- Only this thread calls a view's ``pump``, so a view's state needs no lock; requests from
  the front end (reset, pause) only set flags and :meth:`Pump.wake` it.

:class:`Schedule` holds the policy and is pure (the clock is passed in); :class:`Pump` is
the thread around it.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Final, Protocol

log = logging.getLogger("livenb.widgets")

DEFAULT_RATE: Final = 10.0  # updates per second per view
DEFAULT_MAX_MESSAGES: Final = 200.0  # widget messages per second, the whole process
TICK: Final = 0.02


class Pumped(Protocol):
    """A live view: ``pump()`` sends its update (if any) and returns the messages sent."""

    rate: float

    def pump(self) -> int: ...


class Schedule:
    """Which views to serve now: per-view rate, a process-wide message budget, fairness."""

    def __init__(self, max_messages: float = DEFAULT_MAX_MESSAGES) -> None:
        if not max_messages > 0:
            raise ValueError("max_messages must be > 0")
        self.max_messages = max_messages
        self.burst = max(1.0, max_messages / 10)  # about 100 ms worth
        self._tokens = self.burst
        self._refilled: float | None = None
        self._next: dict[int, float] = {}  # id(view) -> earliest next turn
        self._order: list[int] = []  # round-robin order of ids
        self.deferred = 0  # turns postponed because the budget ran out

    def add(self, key: int, now: float) -> None:
        if key not in self._next:
            self._next[key] = now
            self._order.append(key)

    def remove(self, key: int) -> None:
        if self._next.pop(key, None) is not None:
            self._order.remove(key)

    def soon(self, key: int, now: float) -> None:
        """Serve ``key`` at the next tick (a reset or a resume was asked for)."""
        if key in self._next:
            self._next[key] = min(self._next[key], now)

    def due(self, now: float, rates: dict[int, float]) -> list[int]:
        """The views to serve at ``now``, at most as many as the budget allows; each one
        served is not due again before ``1 / rate`` seconds. Call :meth:`spent` after."""
        if self._refilled is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.max_messages)
        self._refilled = now
        out: list[int] = []
        waiting = 0
        for key in self._order:
            if self._next[key] > now:
                continue
            if len(out) >= int(self._tokens):
                waiting += 1
                continue
            out.append(key)
            self._next[key] = now + 1.0 / rates.get(key, DEFAULT_RATE)
        self.deferred += waiting
        if out:  # the served go to the back of the line
            served = set(out)
            self._order = [k for k in self._order if k not in served] + out
        return out

    def spent(self, messages: int) -> None:
        """Take the messages just sent from the budget."""
        self._tokens -= messages


class Pump:
    """The daemon thread that serves every live view (see the module docstring)."""

    def __init__(self, max_messages: float = DEFAULT_MAX_MESSAGES) -> None:
        self.schedule = Schedule(max_messages)
        self._views: dict[int, weakref.ref[Pumped]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.messages = 0
        self.failures = 0
        self.started = time.monotonic()

    def add(self, view: Pumped) -> None:
        """Serve ``view`` until :meth:`remove` (or until it is garbage collected)."""
        key = id(view)
        with self._lock:
            self._views[key] = weakref.ref(view, lambda _: self._forget(key))
            self.schedule.add(key, time.monotonic())
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="livenb-pump", daemon=True)
                self._thread.start()
        self._wake.set()

    def remove(self, view: Pumped) -> None:
        self._forget(id(view))

    def _forget(self, key: int) -> None:
        with self._lock:
            self._views.pop(key, None)
            self.schedule.remove(key)

    def wake(self, view: Pumped | None = None) -> None:
        """Serve ``view`` (or just look again) at the next tick."""
        if view is not None:
            with self._lock:
                self.schedule.soon(id(view), time.monotonic())
        self._wake.set()

    def stats(self) -> dict[str, float | int]:
        elapsed = max(1e-9, time.monotonic() - self.started)
        return {
            "views": len(self._views),
            "messages": self.messages,
            "messages_per_second": self.messages / elapsed,
            "deferred": self.schedule.deferred,
            "failures": self.failures,
            "max_messages": self.schedule.max_messages,
        }

    def _run(self) -> None:
        while True:
            self._wake.wait(TICK)
            self._wake.clear()
            with self._lock:
                views = {k: ref() for k, ref in self._views.items()}
                rates = {k: v.rate for k, v in views.items() if v is not None}
                due = self.schedule.due(time.monotonic(), rates)
            for key in due:
                view = views.get(key)
                if view is None:
                    continue
                try:
                    sent = view.pump()
                except Exception:  # one broken view must not stop the others
                    self.failures += 1
                    log.exception("livenb: a live widget failed to update")
                    sent = 0
                self.messages += sent
                with self._lock:
                    self.schedule.spent(sent)
            time.sleep(0)  # let the kernel's threads run between ticks


_pump: Pump | None = None
_pump_lock = threading.Lock()


def pump() -> Pump:
    """The process's pump (created on first use)."""
    global _pump
    with _pump_lock:
        if _pump is None:
            _pump = Pump()
        return _pump
