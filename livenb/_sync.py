"""Blocking twins: Hub, Client and Subscription, living on livenb's loop thread.

Each wraps its async twin and forwards to it through :func:`livenb._loop.run`; every blocking
method takes ``timeout`` (seconds; None waits without limit) and raises LivenbTimeoutError
when it runs out, LoopThreadError when called from the loop thread (e.g. in a callback).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from . import _protocol as p
from ._client import (
    DEFAULT_BUFFER,
    AsyncClient,
    AsyncSubscription,
    GapCallback,
    Record,
    RecordCallback,
    encode_records,
)
from ._errors import LivenbError, LivenbTimeoutError, LoopThreadError
from ._loop import loop_thread
from ._protocol import Gap
from ._server import DEFAULT_PORT, AsyncHub
from ._topics import check_topic
from ._window import DEFAULT_ROWS, WindowSpec

if TYPE_CHECKING:
    import pandas as pd

    from .recording import Recorder
    from .widgets import LiveChart, LiveTable, StatusPanel

DEFAULT_TIMEOUT: Final = 30.0


def _guard() -> None:
    if loop_thread().in_loop_thread():
        raise LoopThreadError(
            "blocking livenb calls cannot run on livenb's loop thread (e.g. inside a "
            "subscription callback); use the async twin there: client.aio"
        )


class _Twin:
    """What every blocking twin shares: a context manager that closes, and the twin's repr."""

    aio: AsyncHub | AsyncClient | AsyncSubscription

    def close(self, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        twin = type(self.aio).__name__
        return repr(self.aio).replace(twin, twin.removeprefix("Async"), 1)


class Subscription(_Twin):
    """A live subscription: ``frame`` (DataFrame of the window), ``wait``, iteration.

    Made by :meth:`Client.subscribe`; the async twin is :attr:`aio`.
    """

    aio: AsyncSubscription

    def __init__(self, aio: AsyncSubscription) -> None:
        self.aio = aio

    @property
    def pattern(self) -> str:
        return self.aio.pattern

    @property
    def frame(self) -> pd.DataFrame:
        """A pandas DataFrame snapshot of the window (a copy; safe to keep and modify)."""
        return self.aio.frame

    @property
    def received(self) -> int:
        """Records received in total since subscribing."""
        return self.aio.received

    def stats(self) -> dict[str, Any]:
        return self.aio.stats()

    def wait(self, count: int, timeout: float | None = DEFAULT_TIMEOUT) -> int:
        """Block until at least ``count`` records have arrived in total; return the total."""
        _guard()
        return loop_thread().run(self.aio.wait(count), timeout)

    def on_record(self, callback: RecordCallback) -> RecordCallback:
        """Run ``callback(record)`` on livenb's loop thread for each record; must not block."""
        return self.aio.on_record(callback)

    def on_gap(self, callback: GapCallback) -> GapCallback:
        """Run ``callback(gap)`` on livenb's loop thread whenever records are known lost."""
        return self.aio.on_gap(callback)

    @property
    def gaps(self) -> list[Gap]:
        """The newest reported gaps (records that will never arrive), oldest first."""
        return list(self.aio.gaps)

    @property
    def recovered(self) -> bool | None:
        """The last resume's answer: True when nothing was missed (None: never resumed)."""
        return self.aio.recovered

    def records(self, timeout: float | None = DEFAULT_TIMEOUT) -> Iterator[Record]:
        """Iterate over records as they arrive; stops when no record came for ``timeout``
        seconds (None: never) or the subscription closes."""
        _guard()
        aiter = self.aio.__aiter__()
        while True:
            try:
                yield loop_thread().run(aiter.__anext__(), timeout)
            except StopAsyncIteration:
                return
            except LivenbTimeoutError:
                return

    def __iter__(self) -> Iterator[Record]:
        return self.records(timeout=None)

    def close(self, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        _guard()
        loop_thread().run(self.aio.close(), timeout)


    def table(
        self, rows: int = 20, *, columns: Sequence[str] | None = None, rate: float = 10.0
    ) -> LiveTable:
        """A live table widget of the newest ``rows`` rows; see AsyncSubscription.table."""
        return self.aio.table(rows, columns=columns, rate=rate)

    def chart(
        self,
        x: str = "ts",
        y: str | Sequence[str] | None = None,
        *,
        max_points: int = 2000,
        height: int = 300,
        rate: float = 10.0,
        mode: str = "lines",
    ) -> LiveChart:
        """A live chart widget (lines, or ``mode="markers"``); see AsyncSubscription.chart."""
        return self.aio.chart(x, y, max_points=max_points, height=height, rate=rate, mode=mode)

    def record(self, path: str | os.PathLike[str], **options: Any) -> Recorder:
        """Write every record from now on to a Parquet file; see AsyncSubscription.record."""
        return self.aio.record(path, **options)

    @property
    def recorders(self) -> list[Recorder]:
        """The recordings this subscription feeds."""
        return self.aio.recorders

    def _repr_html_(self) -> str:
        return self.frame.tail(20)._repr_html_()  # type: ignore[operator,no-any-return]



class Client(_Twin):
    """A blocking connection to a hub (see :func:`connect`); the async twin is :attr:`aio`.

    ``publish`` queues a record and returns at once (it blocks only while ``max_pending``
    bytes wait to be sent); records go out micro-batched within ``batch_delay``.
    """

    aio: AsyncClient

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        **options: Any,
    ) -> None:
        _guard()
        self.aio = AsyncClient(url, token, **options)
        loop_thread().run(self.aio.connect(), timeout)
        loop_thread().own(self.aio)

    @property
    def url(self) -> str:
        return self.aio.url

    @property
    def connected(self) -> bool:
        return self.aio.connected

    def publish(
        self, topic: str, record: Any, *, ack: bool = False, timeout: float | None = DEFAULT_TIMEOUT
    ) -> int | None:
        """Publish one record. Returns None, or with ``ack=True`` its seq once the hub has it.

        Without ``ack`` this may also be called from a subscription callback (on livenb's
        loop thread), where it never waits: if ``max_pending`` bytes are already waiting
        for the hub, it raises LivenbError instead of blocking the loop."""
        topic = check_topic(topic)
        encoded = p.encode_record(record)
        aio = self.aio
        outbox = aio.outbox
        if ack or outbox.pending >= outbox.max_pending or threading.get_ident() == aio._thread_id:
            return self._publish(topic, [encoded], ack, timeout)
        aio.enqueue_one(topic, encoded)  # the hot path: room, no ack, not from a callback
        return None

    def publish_many(
        self,
        topic: str,
        records: Iterable[Any] | pd.DataFrame,
        *,
        ack: bool = False,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> int | None:
        """Publish records (a list of dicts or a DataFrame) in order; with ``ack=True`` return
        the last record's seq once the hub has them all. Like :meth:`publish`, callable from
        a subscription callback without ``ack``."""
        check_topic(topic)
        encoded = encode_records(records)
        if not encoded:
            return None
        return self._publish(topic, encoded, ack, timeout)

    def _publish(
        self, topic: str, encoded: list[bytes], ack: bool, timeout: float | None
    ) -> int | None:
        if loop_thread().in_loop_thread():  # from a callback: never block the loop
            if ack:
                _guard()  # raises: waiting for the ack would stop the loop that receives it
            if self.aio.outbox.full():
                raise LivenbError(
                    "cannot publish from a callback: the outbox is full (max_pending bytes "
                    "wait for the hub) and waiting here would stop livenb's loop"
                )
            self.aio.enqueue(topic, encoded)
            return None
        if ack:
            return loop_thread().run(self.aio._publish(topic, encoded, True), timeout)
        self._wait_for_room(timeout)
        self.aio.enqueue(topic, encoded)
        return None

    def _wait_for_room(self, timeout: float | None) -> None:
        outbox = self.aio.outbox
        if not outbox.full():
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        with outbox.room:
            while outbox.full() and not self.aio.closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise LivenbTimeoutError(
                        f"publish waited {timeout} s for the hub to take earlier records; "
                        "the connection may be too slow for this rate"
                    )
                outbox.room.wait(remaining)

    def subscribe(
        self,
        pattern: str,
        window: WindowSpec = DEFAULT_ROWS,
        *,
        on_record: RecordCallback | None = None,
        buffer: int = DEFAULT_BUFFER,
        timeout: float | None = DEFAULT_TIMEOUT,
        record: str | os.PathLike[str] | None = None,
    ) -> Subscription:
        """Subscribe to a topic or pattern and wait for the hub to confirm it.

        ``window``: rows kept in ``sub.frame`` (``10_000``), a duration (``"5min"``), both
        (``(10_000, "5min")``), or None for no frame. ``record="file.parquet"``: record
        every record of the subscription to Parquet from the first one (``sub.recorders``).
        """
        _guard()
        if record is not None:
            from .recording import _pyarrow

            _pyarrow()  # imported here, not on the loop thread (it takes a while the first time)

        async def make() -> AsyncSubscription:
            sub = self.aio.subscribe(
                pattern, window=window, on_record=on_record, buffer=buffer, record=record
            )
            try:
                await sub.wait_ready()
            except BaseException:  # refused, timed out or interrupted: leave nothing behind
                await asyncio.shield(sub.close())
                raise
            return sub

        return Subscription(loop_thread().run(make(), timeout))

    def flush(self, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Block until the hub has acknowledged everything published before this call."""
        _guard()
        loop_thread().run(self.aio.flush(), timeout)

    def ping(self, timeout: float | None = DEFAULT_TIMEOUT) -> float:
        """Round-trip time to the hub in seconds."""
        _guard()
        return loop_thread().run(self.aio.ping(), timeout)

    def stats(self) -> dict[str, Any]:
        return self.aio.stats()

    def status(self, *, stale_after: float = 5.0, rate: float = 2.0) -> StatusPanel:
        """A live health panel of this client; see AsyncClient.status."""
        return self.aio.status(stale_after=stale_after, rate=rate)

    def close(self, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Wait up to ``timeout`` seconds for the hub to acknowledge what was published, then
        close (idempotent); records still unacknowledged are counted in ``stats()["drops"]``."""
        _guard()
        try:
            budget = None if timeout is None else timeout * 0.8  # leave time to finish closing
            loop_thread().run(self.aio.close(budget), timeout)
        finally:
            loop_thread().disown(self.aio)




class Hub(_Twin):
    """A hub serving on livenb's loop thread (see :func:`serve`); the async twin is :attr:`aio`."""

    aio: AsyncHub

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        **options: Any,
    ) -> None:
        _guard()
        self.aio = AsyncHub(host, port, **options)
        loop_thread().run(self.aio.start(), timeout)
        loop_thread().own(self.aio)

    @property
    def url(self) -> str:
        """``ws://host:port`` to give to :func:`connect`."""
        return self.aio.url

    @property
    def token(self) -> str | None:
        """The access token clients must present (None only with ``auth=False``)."""
        return self.aio.token

    @property
    def port(self) -> int:
        return self.aio.port

    @property
    def running(self) -> bool:
        return self.aio.running

    def stats(self) -> dict[str, Any]:
        """Counters: connections, topics, frames and records in/out, errors, drops."""
        return self.aio.stats()

    def browser_url(self, *, token: bool = False) -> str:
        """Where a browser finds the hub's page; see AsyncHub.browser_url."""
        return self.aio.browser_url(token=token)

    def status(self, *, stale_after: float = 5.0, rate: float = 2.0) -> StatusPanel:
        """A live health panel of this hub; see AsyncHub.status."""
        return self.aio.status(stale_after=stale_after, rate=rate)

    @property
    def cafile(self) -> Path | None:
        """With ``tls=True``: the self-signed certificate clients must trust (``cafile=``)."""
        return self.aio.cafile

    def connect(self, **options: Any) -> Client:
        """A :class:`Client` of this hub (same as ``livenb.connect(hub.url, token=hub.token)``,
        plus ``cafile=hub.cafile`` for a self-signed TLS hub)."""
        if self.aio.cafile is not None:
            options.setdefault("cafile", self.aio.cafile)
        return Client(self.url, self.token, **options)

    def close(self, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Stop serving and close every connection (idempotent)."""
        _guard()
        try:
            loop_thread().run(self.aio.close(), timeout)
        finally:
            loop_thread().disown(self.aio)




def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    **options: Any,
) -> Hub:
    """Start a hub on livenb's loop thread and return it once it is listening.

    ``port=0`` picks a free port. Options are :class:`AsyncHub`'s (``token``, ``auth``,
    ``max_size``, ...). Raises LivenbError if the address cannot be used.
    """
    return Hub(host, port, timeout=timeout, **options)


def connect(
    url: str,
    token: str | None = None,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    **options: Any,
) -> Client:
    """Connect a blocking :class:`Client` to the hub at ``url`` with its access ``token``."""
    return Client(url, token, timeout=timeout, **options)
