"""Throttling failed logins per client address (pure: the caller passes the time).

Every address gets a budget of ``burst`` failed logins (wrong or missing token, no ``auth``
message in time) that refills at ``rate`` per second. An address whose budget is spent is
refused before its token is even looked at (HTTP 429), so guessing tokens, or holding
connections open without authenticating, costs the attacker time instead of costing the hub
work. The table of addresses is bounded; when it is full the address whose last failure is
the oldest is forgotten (counted in :attr:`FailureThrottle.evicted` if it still owed).
"""

from __future__ import annotations

from typing import Final

DEFAULT_AUTH_FAILURE_BURST: Final = 20
DEFAULT_AUTH_FAILURE_RATE: Final = 1.0  # failures per second an address may keep making
DEFAULT_MAX_ADDRESSES: Final = 10_000


class FailureThrottle:
    """A token bucket of failed logins per address."""

    def __init__(
        self,
        burst: int = DEFAULT_AUTH_FAILURE_BURST,
        rate: float = DEFAULT_AUTH_FAILURE_RATE,
        max_addresses: int = DEFAULT_MAX_ADDRESSES,
    ) -> None:
        if burst < 1 or not rate > 0 or max_addresses < 1:
            raise ValueError("need burst >= 1, rate > 0 and max_addresses >= 1")
        self.burst = burst
        self.rate = rate
        self.max_addresses = max_addresses
        self._spent: dict[str, tuple[float, float]] = {}  # address -> (failures owed, at)
        self.evicted = 0

    def _owed(self, address: str, now: float) -> float:
        entry = self._spent.get(address)
        if entry is None:
            return 0.0
        owed, at = entry
        return max(0.0, owed - (now - at) * self.rate)

    def blocked(self, address: str, now: float) -> bool:
        """True while ``address`` has no failed logins left to spend."""
        return self._owed(address, now) > self.burst - 1

    def retry_after(self, address: str, now: float) -> float:
        """Seconds until ``address`` may try again (0 when it may now)."""
        excess = self._owed(address, now) - (self.burst - 1)
        return max(0.0, excess / self.rate)

    def failed(self, address: str, now: float) -> None:
        """Count one failed login from ``address``."""
        owed = self._owed(address, now) + 1
        spent = self._spent
        spent.pop(address, None)
        if len(spent) >= self.max_addresses:
            self._evict(now)
        spent[address] = (owed, now)

    def _evict(self, now: float) -> None:
        # Entries are kept in order of their last failure: the first one failed longest ago,
        # so it is the closest to recovery (forgetting it early is counted).
        oldest = next(iter(self._spent))
        if self._owed(oldest, now) > 0:
            self.evicted += 1
        del self._spent[oldest]

    def __len__(self) -> int:
        return len(self._spent)
