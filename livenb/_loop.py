"""livenb's own event loop on a daemon thread, and the blocking bridge into it.

Blocking classes (Hub, Client, Subscription) keep their async twins on this loop, so a hub
started in one notebook cell keeps serving while later cells run blocking code, and no caller
needs ``asyncio.run`` or ``nest_asyncio``.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, Protocol, TypeVar

from ._errors import LivenbError, LivenbTimeoutError, LoopThreadError

T = TypeVar("T")
log = logging.getLogger("livenb.loop")

START_TIMEOUT: Final = 10.0
SHUTDOWN_TIMEOUT: Final = 5.0


class Closable(Protocol):
    async def close(self) -> None: ...


class LoopThread:
    """One daemon thread running one asyncio loop, started on first use."""

    def __init__(self, name: str = "livenb-loop") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._thread_id: int | None = None
        self._owned: weakref.WeakSet[Any] = weakref.WeakSet()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, starting the thread if needed (raises LivenbError on failure)."""
        loop = self._loop
        if loop is not None and loop.is_running():
            return loop
        return self._start()

    def _start(self, timeout: float = START_TIMEOUT) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is not None and self._loop.is_running():
                return self._loop
            started = threading.Event()
            failure: list[BaseException] = []
            # A fresh loop object whatever policy or patch (nest_asyncio) is installed.
            loop = asyncio.new_event_loop()

            def main() -> None:
                try:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(started.set)
                    loop.run_forever()
                except BaseException as exc:  # surfaced to the starter below
                    failure.append(exc)
                    started.set()
                finally:
                    with contextlib.suppress(Exception):  # best effort at exit
                        loop.run_until_complete(loop.shutdown_asyncgens())
                    loop.close()

            thread = threading.Thread(target=main, name=self._name, daemon=True)
            thread.start()
            if not started.wait(timeout):
                raise LivenbError(f"livenb's loop thread did not start within {timeout} s")
            if failure:
                raise LivenbError(f"livenb's loop thread failed to start: {failure[0]!r}")
            self._loop, self._thread, self._thread_id = loop, thread, thread.ident
            return loop

    def in_loop_thread(self) -> bool:
        return threading.get_ident() == self._thread_id

    def run(self, awaitable: Awaitable[T], timeout: float | None) -> T:
        """Run ``awaitable`` on the loop thread and block for its result.

        Raises LoopThreadError when called from the loop thread itself, LivenbTimeoutError
        after ``timeout`` seconds (None: no limit), and KeyboardInterrupt on Ctrl-C; in both
        of the latter the operation is cancelled.
        """
        if self.in_loop_thread():
            _close_unawaited(awaitable)
            raise LoopThreadError(
                "this blocking livenb call was made on livenb's own loop thread (for example "
                "from a subscription callback), where it would deadlock; use the async API "
                "there (client.aio)"
            )
        loop = self.loop
        future = asyncio.run_coroutine_threadsafe(_as_coroutine(awaitable), loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            # It may have finished right at the deadline (or raised TimeoutError itself):
            # then its own outcome stands; otherwise cancel it.
            if future.cancel() is False and future.done():
                return future.result()
            raise LivenbTimeoutError(
                f"the operation did not finish within {timeout} s and was cancelled; "
                "pass a larger timeout= if it is expected to take longer"
            ) from None
        except KeyboardInterrupt:
            future.cancel()
            raise

    def call_soon(self, callback: Callable[..., object], *args: Any) -> None:
        """Thread-safe: schedule ``callback(*args)`` on the loop."""
        self.loop.call_soon_threadsafe(callback, *args)

    def own(self, resource: Closable) -> None:
        """Close ``resource`` (an async hub or client) when the interpreter exits."""
        self._owned.add(resource)

    def disown(self, resource: Closable) -> None:
        self._owned.discard(resource)

    def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Close every owned resource, then stop the loop (idempotent; used at exit)."""
        loop = self._loop
        if loop is None or not loop.is_running() or self.in_loop_thread():
            return
        owned = list(self._owned)

        async def close_all() -> None:
            # Clients first, with part of the budget (they flush to hubs that may live here
            # too), then hubs, so a journaled hub always writes what it holds.
            clients = [r for r in owned if not getattr(r, "is_hub", False)]
            hubs = [r for r in owned if getattr(r, "is_hub", False)]
            await asyncio.gather(
                *(r.close(timeout * 0.5) for r in clients), return_exceptions=True
            )
            await asyncio.gather(*(r.close() for r in hubs), return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(close_all(), loop).result(timeout)
        except BaseException as exc:
            log.warning("livenb: closing at exit did not finish cleanly: %r", exc)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)
        self._loop = None


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _close_unawaited(awaitable: Awaitable[Any]) -> None:
    if isinstance(awaitable, Coroutine):
        awaitable.close()


_THREAD: Final = LoopThread()
atexit.register(_THREAD.shutdown)


def loop_thread() -> LoopThread:
    """The process-wide livenb loop thread."""
    return _THREAD


def run(awaitable: Awaitable[T], timeout: float | None) -> T:
    """Shorthand for ``loop_thread().run(awaitable, timeout)``."""
    return _THREAD.run(awaitable, timeout)
