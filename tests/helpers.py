"""Small test helpers shared by the test modules."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(condition: Callable[[], bool], limit: float, what: str = "condition") -> None:
    """Wait until ``condition()`` holds, polling; fail after ``limit`` seconds.

    For state that offers no event to wait on (such as hub counters); the poll interval is a
    responsiveness choice, not a synchronisation guess: the condition decides.
    """
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit} s waiting for {what}")
        await asyncio.sleep(0.002)


def wait_until(condition: Callable[[], bool], timeout: float, what: str = "condition") -> None:
    """Blocking twin of :func:`until`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.002)
