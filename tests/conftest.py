"""Shared test setup: one scaled timeout unit, no skips when LIVENB_REQUIRE_ALL=1, and no
access token in any log livenb writes during any test."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import pytest

import livenb
from livenb._client import AsyncClient
from livenb._state import HubCore

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


# ---------------------------------------------------------------------------- no token in logs
# Every token a hub or a client is given during a test (generated, configured, or wrong ones
# presented on purpose) is remembered; every record livenb logs during that test, at every
# level including the DEBUG traffic of the websockets connections it owns, is searched for
# them. A test whose logs contain one fails.
_TOKENS: set[str] = set()


def _remember(cls: type, tokens_of: Callable[[Any], Iterable[str | None]]) -> None:
    original = cls.__init__

    @functools.wraps(original)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        _TOKENS.update(t for t in tokens_of(self) if t and len(t) >= 6)

    cls.__init__ = init  # type: ignore[misc]


_remember(HubCore, lambda core: [token.decode() for token, _ in core._tokens])
_remember(AsyncClient, lambda client: [client.token])


class _TokenLeakWatch(logging.Handler):
    """Checks every formatted record (message and traceback) against the known tokens."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.leaks: list[str] = []
        self.records = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        text = self.format(record)
        for token in list(_TOKENS):
            if token in text:
                self.leaks.append(f"{record.name}: {text.replace(token, '<TOKEN>')[:300]}")


@pytest.fixture(autouse=True)
def no_token_in_logs() -> Iterator[_TokenLeakWatch]:
    """Log everything livenb logs at DEBUG during the test; fail the test if a token shows."""
    library = logging.getLogger("livenb")
    watch = _TokenLeakWatch()
    level = library.level
    library.setLevel(logging.DEBUG)
    library.addHandler(watch)
    try:
        yield watch
    finally:
        library.removeHandler(watch)
        library.setLevel(level)
        _TOKENS.clear()
    assert not watch.leaks, "an access token was logged:\n" + "\n".join(watch.leaks[:5])
