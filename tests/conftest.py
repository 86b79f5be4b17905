"""Shared test setup: one scaled timeout unit, and no skips when LIVENB_REQUIRE_ALL=1."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

import livenb

# One timeout unit (seconds), scaled on slow machines with LIVENB_TIMEOUT_SCALE=3 etc.
UNIT = float(os.environ.get("LIVENB_TIMEOUT_SCALE", "1")) * 5.0
REQUIRE_ALL = os.environ.get("LIVENB_REQUIRE_ALL") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped, but LIVENB_REQUIRE_ALL=1 forbids skips: {report.longrepr}"


@pytest.fixture
def unit() -> float:
    """The scaled timeout unit in seconds."""
    return UNIT


@pytest.fixture
async def ahub() -> AsyncIterator[livenb.AsyncHub]:
    """An AsyncHub on 127.0.0.1 and a free port, on the test's loop."""
    async with livenb.AsyncHub(port=0) as hub:
        yield hub


@pytest.fixture
async def aclient(ahub: livenb.AsyncHub) -> AsyncIterator[livenb.AsyncClient]:
    async with livenb.AsyncClient(ahub.url, ahub.token) as client:
        yield client


@pytest.fixture
def hub() -> Iterator[livenb.Hub]:
    """A blocking Hub on livenb's loop thread, on a free port."""
    with livenb.serve(port=0) as h:
        yield h
