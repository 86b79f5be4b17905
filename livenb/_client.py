"""AsyncClient and AsyncSubscription: a livenb connection on the running asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from . import _protocol as p
from ._errors import (
    AuthenticationError,
    ConnectionClosedError,
    HubUnreachableError,
    LivenbError,
    ProtocolError,
    RecordTooLargeError,
    RemoteError,
)
from ._outbox import WAKE_NONE, WAKE_NOW, Outbox
from ._topics import check_pattern, check_topic, matches
from ._window import DEFAULT_ROWS, WindowSpec, make_window

if TYPE_CHECKING:
    import pandas as pd

    from ._columns import ColumnWindow

log = logging.getLogger("livenb.client")

DEFAULT_BATCH_DELAY: Final = 0.005  # seconds a record may wait for batch-mates
DEFAULT_BATCH_RECORDS: Final = 100
DEFAULT_BATCH_BYTES: Final = 64 * 1024
DEFAULT_MAX_PENDING: Final = 8 << 20  # bytes published but not yet sent
DEFAULT_MAX_SIZE: Final = 16 << 20  # largest frame accepted from the hub
# Largest encoded record we publish: a hub's default max_size (1 MiB) less the frame envelope.
DEFAULT_MAX_RECORD: Final = (1 << 20) - 1024
DEFAULT_BUFFER: Final = 10_000  # unread records kept for iteration before dropping the oldest
UNREAD_POLICY: Final = "drop_oldest"
# err codes with a topic that mean "your sub was refused" (others concern a publish)
_SUBSCRIBE_REFUSALS: Final = frozenset({p.TOO_MANY_SUBSCRIPTIONS, p.INVALID_TOPIC, p.BAD_FIELD})


@dataclass(frozen=True, slots=True)
class Record:
    """One delivered record: its ``topic``, per-topic ``seq``, hub receive time ``ts``
    (Unix seconds) and the published ``data``."""

    topic: str
    seq: int
    ts: float
    data: Any


RecordCallback = Callable[[Record], object]


def encode_records(records: Iterable[Any] | pd.DataFrame) -> list[bytes]:
    """Encode a list of records or the rows of a DataFrame (one dict per row)."""
    if hasattr(records, "to_dict") and hasattr(records, "columns"):
        records = records.to_dict(orient="records")
    if isinstance(records, dict | str | bytes):
        raise TypeError("publish_many takes a list of records or a DataFrame; use publish for one")
    return [p.encode_record(r) for r in records]


class AsyncSubscription:
    """Records of one topic or pattern, as a bounded frame, an async iterator and callbacks.

    Create it with :meth:`AsyncClient.subscribe`. ``frame`` holds the last ``window`` rows;
    ``async for record in sub`` yields every record delivered since the subscription was made,
    as :class:`Record` objects. Records not yet iterated are buffered, at most ``buffer`` of
    them: beyond that the oldest unread ones are dropped (policy ``drop_oldest``) and counted
    in ``unread_dropped`` (a subscription used only for its frame needs no iteration, and
    its unread records cost one reference per batch). Callbacks run on the loop for each
    record and must not block.
    """

    def __init__(
        self,
        client: AsyncClient,
        pattern: str,
        window: WindowSpec,
        on_record: RecordCallback | None,
        buffer: int,
    ) -> None:
        self.client = client
        self.pattern = pattern
        spec = make_window(window)
        self._window: ColumnWindow | None = None
        if spec is not None:
            from ._columns import ColumnWindow  # numpy: only once a frame is wanted

            self._window = ColumnWindow(spec, with_topic=pattern_has_wildcards(pattern))
        self.received = 0
        self.unread_dropped = 0
        self.callback_errors = 0
        self.epoch: str | None = None
        self.last_seq: dict[str, int] = {}
        self.closed = False
        self._callbacks: list[RecordCallback] = [on_record] if on_record else []
        self._buffer = buffer
        # Unread batches for iteration; records are made into Record objects only when read.
        self._queue: deque[p.Msg] = deque()
        self._queued = 0  # records in _queue, minus the _head already read from the first
        self._head = 0
        self._wake = asyncio.Event()
        self._waiters: list[tuple[int, asyncio.Future[int]]] = []
        self._failure: BaseException | None = None
        self.ready: asyncio.Future[None] = client.loop.create_future()

    # ------------------------------------------------------------------ data in
    def _deliver(self, message: p.Msg) -> None:
        records = message.records
        n = len(records)
        seq = message.seq
        topic = message.topic
        if self._window is not None:
            self._window.ingest(topic, seq, message.ts, records)
        self.received += n
        self.last_seq[topic] = seq + n - 1
        if self._callbacks:
            ts = message.ts
            items = [Record(topic, seq + i, ts, data) for i, data in enumerate(records)]
            for callback in self._callbacks:
                for item in items:
                    self._call(callback, item)
        self._queue.append(message)
        self._queued += n
        if self._queued > self._buffer:
            self._drop_unread(self._queued - self._buffer)
        self._wake.set()
        if self._waiters:
            self._release_waiters()

    def _drop_unread(self, excess: int) -> None:
        queue = self._queue
        self.unread_dropped += excess
        self._queued -= excess
        while excess:
            available = len(queue[0].records) - self._head
            if excess >= available:
                queue.popleft()
                self._head = 0
                excess -= available
            else:
                self._head += excess
                excess = 0

    def _call(self, callback: RecordCallback, item: Record) -> None:
        try:
            callback(item)
        except Exception:
            self.callback_errors += 1
            log.exception("livenb: a subscription callback for %r raised", self.pattern)

    def _release_waiters(self) -> None:
        still = []
        for count, future in self._waiters:
            if future.done():
                continue
            if self.received >= count:
                future.set_result(self.received)
            else:
                still.append((count, future))
        self._waiters = still

    def _end(self, failure: BaseException | None) -> None:
        """The subscription is over (closed, or the connection failed with ``failure``)."""
        if self.closed:
            return
        self.closed = True
        self._failure = failure
        self._wake.set()
        error = failure or ConnectionClosedError(f"subscription to {self.pattern!r} is closed")
        if not self.ready.done():
            self.ready.set_exception(error)
            self.ready.exception()  # mark retrieved: nobody may be waiting for it
        for _, future in self._waiters:
            if not future.done():
                future.set_exception(error)
        self._waiters = []

    # ------------------------------------------------------------------ API
    def on_record(self, callback: RecordCallback) -> RecordCallback:
        """Call ``callback(record)`` on the loop for every new record (usable as a decorator)."""
        self._callbacks.append(callback)
        return callback

    async def wait_ready(self) -> None:
        """Wait for the hub to confirm the subscription; raise RemoteError if it refused."""
        await asyncio.shield(self.ready)

    async def wait(self, count: int) -> int:
        """Wait until at least ``count`` records have arrived in total; return the total."""
        if self.received >= count:
            return self.received
        if self.closed:
            raise self._failure or ConnectionClosedError("the subscription is closed")
        future: asyncio.Future[int] = self.client.loop.create_future()
        entry = (count, future)
        self._waiters.append(entry)
        try:
            return await future
        finally:
            if entry in self._waiters:  # cancelled or timed out: forget it
                self._waiters.remove(entry)

    @property
    def frame(self) -> pd.DataFrame:
        """A DataFrame snapshot of the window (any thread): ``ts``, ``seq``, [``topic``], fields."""
        if self._window is None:
            raise LivenbError("this subscription keeps no frame (window=None)")
        from .frames import snapshot_to_frame

        return snapshot_to_frame(self._window.snapshot(), self._attrs())

    def _attrs(self) -> dict[str, Any]:
        return {
            "livenb.topic": self.pattern,
            "livenb.epoch": self.epoch,
            "livenb.received": self.received,
            "livenb.type_changes": self.type_changes,
        }

    @property
    def type_changes(self) -> int:
        """Fields whose values changed type and were upcast to object in the frame."""
        return 0 if self._window is None else self._window.type_changes

    def stats(self) -> dict[str, Any]:
        return {
            "topic": self.pattern,
            "received": self.received,
            "rows": 0 if self._window is None else len(self._window),
            "unread": self._queued,
            "unread_dropped": self.unread_dropped,
            "unread_policy": UNREAD_POLICY,
            "type_changes": self.type_changes,
            "callback_errors": self.callback_errors,
            "last_seq": dict(self.last_seq),
            "closed": self.closed,
        }

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Record:
        queue = self._queue
        while not queue:
            if self.closed:
                if self._failure is not None:
                    raise self._failure
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()
        message = queue[0]
        i = self._head
        record = Record(message.topic, message.seq + i, message.ts, message.records[i])
        self._queued -= 1
        if i + 1 == len(message.records):
            queue.popleft()
            self._head = 0
        else:
            self._head = i + 1
        return record

    async def close(self) -> None:
        """Stop receiving (unsubscribe when no other local subscription needs the pattern)."""
        if not self.closed:
            self._end(None)
            await self.client._release(self)

    async def __aenter__(self) -> Self:
        await self.wait_ready()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "live"
        return f"<AsyncSubscription {self.pattern!r} received={self.received} {state}>"


def pattern_has_wildcards(pattern: str) -> bool:
    return "*" in pattern or ">" in pattern


class AsyncClient:
    """A connection to a livenb hub on the running loop.

    Publishes are micro-batched per topic: a frame goes out when it holds ``batch_records``
    records or ``batch_bytes`` bytes, or ``batch_delay`` seconds after its first record, or on
    :meth:`flush`. At most ``max_pending`` bytes wait to be sent; beyond that publishers wait.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        batch_delay: float = DEFAULT_BATCH_DELAY,
        batch_records: int = DEFAULT_BATCH_RECORDS,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_size: int = DEFAULT_MAX_SIZE,
        max_record: int = DEFAULT_MAX_RECORD,
        open_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
    ) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"a hub URL starts with ws:// or wss:// (got {url!r})")
        if batch_delay < 0:
            raise ValueError("batch_delay must be >= 0")
        self.url = url
        self.token = token
        self.batch_delay = batch_delay
        self.max_size = max_size
        self.max_record = max_record
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.outbox = Outbox(
            max_records=batch_records, max_bytes=batch_bytes, max_pending=max_pending
        )
        self._ws: ClientConnection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._kick = asyncio.Event()
        self._control_tail: asyncio.Task[None] | None = None
        self._flush_requested = False
        self._accepting = True  # False once close() began: no new records
        self.records_flushed = 0  # records written to the socket
        self._cycle: asyncio.Future[None] | None = None
        self._subs: dict[str, list[AsyncSubscription]] = {}
        self._routes: dict[str, tuple[AsyncSubscription, ...]] = {}
        self._acks: dict[p.RequestId, asyncio.Future[int]] = {}
        self._pings: deque[tuple[float, asyncio.Future[float]]] = deque()
        self._ids = itertools.count(1)
        self._failure: BaseException | None = None
        self._closing = False
        self.errors: deque[p.Err] = deque(maxlen=100)  # recent unsolicited errors from the hub
        self.frames_sent = 0
        self.records_received = 0
        self.unsent_dropped = 0
        self.latency: float | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise LivenbError("the client is not connected; await client.connect() first")
        return self._loop

    @property
    def connected(self) -> bool:
        return self._ws is not None and self._failure is None and not self._closing

    async def connect(self) -> Self:
        """Open the connection; raise AuthenticationError / HubUnreachableError on failure."""
        if self._ws is not None:
            return self
        self._loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        try:
            self._ws = await connect(
                self.url,
                additional_headers=headers,
                compression=None,
                max_size=self.max_size,
                open_timeout=self.open_timeout,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                proxy=None,
                user_agent_header="livenb",
            )
        except InvalidStatus as exc:
            if exc.response.status_code == 401:
                raise AuthenticationError(
                    f"the hub at {self.url} rejected the access token; pass token=hub.token "
                    "(or the token `livenb serve` printed)"
                ) from None
            raise HubUnreachableError(
                f"the server at {self.url} refused the WebSocket upgrade "
                f"(HTTP {exc.response.status_code}); is it a livenb hub?"
            ) from None
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            raise HubUnreachableError(
                f"cannot reach a livenb hub at {self.url} ({exc}); is it running? "
                "(start one with livenb.serve() or `livenb serve`)"
            ) from None
        self._cycle = self._loop.create_future()
        self._tasks = [
            asyncio.create_task(self._read_loop(), name="livenb-client-read"),
            asyncio.create_task(self._flush_loop(), name="livenb-client-flush"),
        ]
        return self

    async def close(self) -> None:
        """Flush what was published, then close the connection; idempotent."""
        if self._ws is None or self._closing:
            return
        self._accepting = False
        if self._failure is None:
            with contextlib.suppress(LivenbError):
                await self._flush()
        self._closing = True
        await self._ws.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fail(ConnectionClosedError("the client was closed"))

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "connected" if self.connected else "closed" if self._ws else "new"
        token = " token=***" if self.token else ""
        return f"<AsyncClient {self.url}{token} {state}>"

    # ------------------------------------------------------------------ publish
    def _check_open(self) -> None:
        if not self._accepting and self._failure is None:
            raise ConnectionClosedError("the client is closing; it takes no new records")
        if self._failure is not None:
            if isinstance(self._failure, LivenbError) and not isinstance(
                self._failure, ConnectionClosedError
            ):
                raise self._failure
            raise ConnectionClosedError(str(self._failure))
        if self._ws is None:
            raise LivenbError("the client is not connected; await client.connect() first")

    def enqueue(
        self, topic: str, encoded: list[bytes], request_id: p.RequestId | None = None
    ) -> int:
        """Thread-safe: queue encoded records of a checked topic for sending (no waiting).

        Returns the outbox's wake code (WAKE_NOW when a frame is complete). Raises
        RecordTooLargeError (nothing queued) when a record exceeds ``max_record`` bytes."""
        self._check_open()
        limit = self.max_record
        for record in encoded:
            if len(record) > limit:
                raise RecordTooLargeError(
                    f"a record of {len(record):,} bytes exceeds max_record={limit:,} (the hub "
                    "closes connections that send frames over its max_size, 1 MiB by default); "
                    "split it, or raise both limits together"
                )
        wake = self.outbox.add(topic, encoded, request_id)
        if wake != WAKE_NONE:
            if threading.get_ident() == self._thread_id:
                self._kick.set()
            else:
                self.loop.call_soon_threadsafe(self._kick.set)
        return wake

    async def publish(self, topic: str, record: Any, *, ack: bool = False) -> int | None:
        """Publish one record to ``topic``. With ``ack=True`` wait until the hub has taken it
        and return its seq; otherwise return None once it is queued (sent within
        ``batch_delay``)."""
        encoded = [p.encode_record(record)]
        return await self._publish(check_topic(topic), encoded, ack)

    async def publish_many(
        self, topic: str, records: Iterable[Any] | pd.DataFrame, *, ack: bool = False
    ) -> int | None:
        """Publish a list of records (or a DataFrame's rows) to ``topic`` in order.
        With ``ack=True`` return the last record's seq once the hub has taken them all."""
        encoded = encode_records(records)
        check_topic(topic)
        if not encoded:
            return None
        return await self._publish(topic, encoded, ack)

    async def _publish(self, topic: str, encoded: list[bytes], ack: bool) -> int | None:
        if not ack:
            if self.enqueue(topic, encoded) == WAKE_NOW:
                # A frame is complete: let the sender run, so a tight publish loop streams
                # instead of holding everything (and the loop) until it ends.
                await asyncio.sleep(0)
            if self.outbox.full():
                await self.flush()
            return None
        request_id = next(self._ids)
        future: asyncio.Future[int] = self.loop.create_future()
        self._acks[request_id] = future
        try:
            self.enqueue(topic, encoded, request_id)
            return await future
        finally:
            self._acks.pop(request_id, None)

    async def flush(self) -> None:
        """Send every record published before this call; return once they are written to the
        socket (records published meanwhile, e.g. from other threads, do not delay it)."""
        self._check_open()
        await self._flush()

    async def _flush(self) -> None:
        target = self.outbox.records_added
        try:
            while self.records_flushed < target:
                if self._failure is not None:
                    self._check_open()
                assert self._cycle is not None
                cycle = self._cycle
                self._flush_requested = True
                self._kick.set()
                await asyncio.shield(cycle)
        finally:
            self._flush_requested = False

    async def _flush_loop(self) -> None:
        outbox = self.outbox
        ws = self._ws
        assert ws is not None
        try:
            while True:
                await self._kick.wait()
                self._kick.clear()
                if not outbox.has_ready() and not self._flush_requested:
                    await self._linger(outbox.oldest + self.batch_delay)
                frames, payload, count = outbox.take()
                for frame in frames:
                    await ws.send(frame, text=True)
                self.frames_sent += len(frames)
                self.records_flushed += count
                outbox.release(payload)
                self._next_cycle()
        except ConnectionClosed as exc:
            self._fail(self._closed_error(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never leave publishers waiting on a dead sender
            log.exception("livenb: publisher failed")
            self._fail(ConnectionClosedError(f"the publisher failed: {exc!r}"))

    async def _linger(self, deadline: float) -> None:
        """Wait until ``deadline`` (monotonic) unless a batch fills or a flush is requested."""
        while not self.outbox.has_ready() and not self._flush_requested:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                async with asyncio.timeout(remaining):
                    await self._kick.wait()
            except TimeoutError:
                return
            self._kick.clear()

    def _next_cycle(self) -> None:
        cycle, self._cycle = self._cycle, self.loop.create_future()
        if cycle is not None and not cycle.done():
            cycle.set_result(None)

    # ------------------------------------------------------------------ subscribe
    def subscribe(
        self,
        pattern: str,
        *,
        window: WindowSpec = DEFAULT_ROWS,
        on_record: RecordCallback | None = None,
        buffer: int = DEFAULT_BUFFER,
    ) -> AsyncSubscription:
        """Subscribe to a topic or pattern (``ticks.*``, ``ticks.>``); returns at once.

        ``await sub.wait_ready()`` waits for the hub's confirmation; iterating does that too.
        Call on the client's own loop.
        """
        check_pattern(pattern)
        self._check_open()
        if threading.get_ident() != self._thread_id:
            raise LivenbError("AsyncClient.subscribe must be called on the client's event loop")
        if buffer < 1:
            raise ValueError("buffer must be >= 1")
        sub = AsyncSubscription(self, pattern, window, on_record, buffer)
        siblings = self._subs.setdefault(pattern, [])
        siblings.append(sub)
        self._routes.clear()
        if len(siblings) == 1:
            self._send_soon(p.Sub(pattern))
        else:
            first = siblings[0]
            sub.epoch = first.epoch
            if first.ready.done() and first.ready.exception() is None:
                sub.ready.set_result(None)
        return sub

    async def _release(self, sub: AsyncSubscription) -> None:
        siblings = self._subs.get(sub.pattern, [])
        if sub in siblings:
            siblings.remove(sub)
            self._routes.clear()
        if not siblings:
            self._subs.pop(sub.pattern, None)
            if self.connected:
                with contextlib.suppress(ConnectionClosed):
                    await asyncio.shield(self._send_soon(p.Unsub(sub.pattern)))

    def _send_soon(self, message: p.ClientMessage) -> asyncio.Task[None]:
        """Send a control message after every earlier one (a sub must precede its unsub)."""
        previous = self._control_tail

        async def send_in_order() -> None:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await previous
            await self._send(message)

        task = self.loop.create_task(send_in_order())
        task.add_done_callback(_log_failure)
        self._control_tail = task
        return task

    async def _send(self, message: p.ClientMessage) -> None:
        assert self._ws is not None
        await self._ws.send(p.encode(message), text=True)

    async def ping(self) -> float:
        """Round-trip time to the hub in seconds (an application-level ping)."""
        self._check_open()
        future: asyncio.Future[float] = self.loop.create_future()
        entry = (time.perf_counter(), future)
        self._pings.append(entry)
        try:
            await self._send(p.Ping())
            return await future
        except ConnectionClosed as exc:
            raise self._closed_error(exc) from None
        finally:
            if entry in self._pings:
                self._pings.remove(entry)
            if future.done() and not future.cancelled():
                future.exception()  # retrieved here, whatever happened

    # ------------------------------------------------------------------ receive
    async def _read_loop(self) -> None:
        ws = self._ws
        assert ws is not None
        failure: BaseException | None = None
        try:
            async for frame in ws:
                try:
                    message = p.decode_hub(frame)
                except ProtocolError as exc:
                    log.warning("livenb: ignoring an invalid frame from the hub: %s", exc)
                    continue
                self._handle(message)
        except ConnectionClosed as exc:
            failure = exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("livenb: the reader failed")
            failure = exc
        self._fail(self._closed_error(failure))

    def _closed_error(self, failure: BaseException | None) -> LivenbError:
        if isinstance(failure, ConnectionClosed):
            if failure.rcvd is not None and failure.rcvd.code == p.CLOSE_UNAUTHORIZED:
                return AuthenticationError(
                    f"the hub at {self.url} closed the connection: {failure.rcvd.reason} "
                    "(pass token=hub.token, or the token `livenb serve` printed)"
                )
            if failure.rcvd is not None and failure.rcvd.code == p.CLOSE_TOO_BIG:
                return ConnectionClosedError(
                    f"the hub at {self.url} closed the connection because a frame was larger "
                    "than its max_size; lower batch_bytes or publish smaller records"
                )
        detail = f": {failure}" if failure is not None else ""
        return ConnectionClosedError(f"the connection to {self.url} closed{detail}")

    def _handle(self, message: p.HubMessage) -> None:
        if type(message) is p.Msg:
            self.records_received += len(message.records)
            subs = self._routes.get(message.topic)
            if subs is None:
                subs = self._route(message.topic)
            for sub in subs:
                sub._deliver(message)
        elif type(message) is p.Subscribed:
            for sub in self._subs.get(message.topic, ()):
                sub.epoch = message.epoch
                if not sub.ready.done():
                    sub.ready.set_result(None)
        elif type(message) is p.Ack:
            ack_future = self._acks.get(message.id)
            if ack_future is not None and not ack_future.done():
                ack_future.set_result(message.seq + message.count - 1)
        elif type(message) is p.Err:
            self._on_error(message)
        elif type(message) is p.Pong and self._pings:
            started, future = self._pings.popleft()
            self.latency = time.perf_counter() - started
            if not future.done():
                future.set_result(self.latency)

    def _on_error(self, err: p.Err) -> None:
        error = RemoteError(err.code, err.message)
        if err.id is not None and err.id in self._acks:
            future = self._acks[err.id]
            if not future.done():
                future.set_exception(error)
            return
        pending = [
            sub for sub in self._subs.get(err.topic or "", ()) if not sub.ready.done()
        ]
        if pending and err.code in _SUBSCRIBE_REFUSALS:
            for sub in pending:
                self._subs[sub.pattern].remove(sub)
                sub._end(error)
            if not self._subs[err.topic or ""]:
                del self._subs[err.topic or ""]
            self._routes.clear()
            return
        self.errors.append(err)
        log.warning("livenb: the hub reported an error (%s): %s", err.code, err.message)

    def _route(self, topic: str) -> tuple[AsyncSubscription, ...]:
        route = tuple(
            sub for pattern, subs in self._subs.items() if matches(pattern, topic) for sub in subs
        )
        self._routes[topic] = route
        return route

    def _fail(self, failure: BaseException) -> None:
        if self._failure is not None:
            return
        self._failure = failure
        self.unsent_dropped += self.outbox.discard()
        for future in self._acks.values():
            if not future.done():
                future.set_exception(failure)
        for _, ping_future in self._pings:
            if not ping_future.done():
                ping_future.set_exception(failure)
        self._pings.clear()
        if self._cycle is not None and not self._cycle.done():
            self._cycle.set_exception(failure)
            self._cycle.exception()
        closing = isinstance(failure, ConnectionClosedError) and self._closing
        for subs in self._subs.values():
            for sub in subs:
                sub._end(None if closing else failure)
        self._subs.clear()
        self._routes.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "connected": self.connected,
            "records_sent": self.outbox.records_added,
            "frames_sent": self.frames_sent,
            "records_received": self.records_received,
            "pending_bytes": self.outbox.pending,
            "unsent_dropped": self.unsent_dropped,
            "subscriptions": sum(len(s) for s in self._subs.values()),
            "latency": self.latency,
            "errors": len(self.errors),
        }


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        if not isinstance(exc, ConnectionClosed):
            log.warning("livenb: sending a control message failed: %r", exc)
