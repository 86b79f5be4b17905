"""AsyncClient and AsyncSubscription: a livenb connection on the running asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import ssl as ssl_module
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
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
from ._keepalive import DEFAULT_PING_INTERVAL, DEFAULT_PING_TIMEOUT, Liveness, keepalive
from ._outbox import PENDING_POLICY, WAKE_NOW, WAKE_TIMER, Frame, Outbox
from ._redact import traffic_logger
from ._tls import client_context
from ._topics import check_pattern, check_topic, matches
from ._window import DEFAULT_ROWS, WindowSpec, make_window
from ._wswrite import write_all

if TYPE_CHECKING:
    import pandas as pd

    from ._columns import ColumnWindow
    from .recording import Recorder
    from .widgets import LiveChart, LiveTable, StatusPanel


log = logging.getLogger("livenb.client")

DEFAULT_BATCH_DELAY: Final = 0.005  # seconds a record may wait for batch-mates
DEFAULT_BATCH_RECORDS: Final = 100
DEFAULT_BATCH_BYTES: Final = 64 * 1024
DEFAULT_MAX_PENDING: Final = 8 << 20  # bytes published but not yet acknowledged
TIMER_SLACK: Final = 0.0015  # aim a batch this early: epoll rounds waits up to 1 ms, plus the loop
DEFAULT_RECONNECT_DELAY: Final = 0.1  # first backoff step (seconds), doubled per attempt
DEFAULT_RECONNECT_MAX_DELAY: Final = 5.0
DEFAULT_HEALTHY_AFTER: Final = 5.0  # a connection this old resets the backoff
DEFAULT_CLOSE_TIMEOUT: Final = 10.0  # close() waits this long for outstanding acks
DEFAULT_MAX_SIZE: Final = 16 << 20  # largest frame accepted from the hub
# Largest encoded record we publish: a hub's default max_size (1 MiB) less the frame envelope.
DEFAULT_MAX_RECORD: Final = (1 << 20) - 1024
DEFAULT_BUFFER: Final = 10_000  # unread records kept for iteration before dropping the oldest
UNREAD_POLICY: Final = "drop_oldest"
# err codes with a topic that mean "your sub was refused" (others concern a publish)
_SUBSCRIBE_REFUSALS: Final = frozenset(
    {p.TOO_MANY_SUBSCRIPTIONS, p.INVALID_TOPIC, p.BAD_FIELD, p.FORBIDDEN, p.ENGINE_UNAVAILABLE}
)


@dataclass(frozen=True, slots=True)
class Record:
    """One delivered record: its ``topic``, per-topic ``seq``, hub receive time ``ts``
    (Unix seconds) and the published ``data``."""

    topic: str
    seq: int
    ts: float
    data: Any


RecordCallback = Callable[[Record], object]
GapCallback = Callable[[p.Gap], object]
GAP_UNANNOUNCED: Final = "unannounced"  # a seq jump the hub did not report (a bug somewhere)
MAX_GAPS_KEPT: Final = 1000


def _gap_dict(gap: p.Gap) -> dict[str, Any]:
    return {"topic": gap.topic, "first": gap.first, "last": gap.last, "reason": gap.reason}


def encode_records(records: Iterable[Any] | pd.DataFrame) -> list[bytes]:
    """Encode a list of records or the rows of a DataFrame (one dict per row)."""
    if hasattr(records, "to_dict") and hasattr(records, "columns"):
        records = records.to_dict(orient="records")
    if isinstance(records, dict | str | bytes):
        raise TypeError("publish_many takes a list of records or a DataFrame; use publish for one")
    return p.encode_records_list(records)


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
        self.last_seq: dict[str, int] = {}  # per topic: the newest seq taken in (dedupe, resume)
        self.gaps: deque[p.Gap] = deque(maxlen=MAX_GAPS_KEPT)  # the newest reported gaps
        self.gap_count = 0
        self.missed = 0  # records known to be lost in gaps (an epoch change adds an unknown)
        self.duplicates = 0  # replayed records already taken in, skipped
        self.resumes = 0
        self.recovered: bool | None = None  # the last resume's answer from the hub
        self._gap_callbacks: list[GapCallback] = []
        self._recorders: list[Recorder] = []  # each gets every delivered batch
        self._finishing: asyncio.Future[None] | None = None  # recordings being finished
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
    def _on_subscribed(self, message: p.Subscribed) -> None:
        if self.epoch is not None and message.epoch != self.epoch:
            self.last_seq.clear()  # a new hub epoch numbers every topic from 1 again
        self.epoch = message.epoch
        if message.recovered is not None:
            self.resumes += 1
            self.recovered = message.recovered
        elif message.seq is not None:
            self.last_seq.setdefault(message.topic, message.seq)
        if not self.ready.done():
            self.ready.set_result(None)

    def _on_gap(self, gap: p.Gap) -> None:
        self.gaps.append(gap)
        self.gap_count += 1
        if gap.last is not None:
            self.missed += gap.last - gap.first + 1
            self.last_seq[gap.topic] = max(self.last_seq.get(gap.topic, 0), gap.last)
        for callback in self._gap_callbacks:
            try:
                callback(gap)
            except Exception:
                self.callback_errors += 1
                log.exception("livenb: a gap callback for %r raised", self.pattern)

    def _deliver(self, message: p.Msg) -> None:
        records = message.records
        n = len(records)
        seq = message.seq
        topic = message.topic
        last = self.last_seq.get(topic)
        if last is not None and seq != last + 1:
            if seq + n - 1 <= last:  # all seen before (a replay overlapping live data)
                self.duplicates += n
                return
            if seq <= last:
                skip = last - seq + 1
                self.duplicates += skip
                message = p.Msg(topic, last + 1, message.ts, records[skip:])
                records, n, seq = message.records, n - skip, last + 1
            else:  # never expected: the hub announces every gap; still, never a silent one
                self._on_gap(p.Gap(topic, last + 1, seq - 1, GAP_UNANNOUNCED))
        if self._window is not None:
            self._window.ingest(topic, seq, message.ts, records)
        for recorder in self._recorders:
            recorder.add(message)
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
        if self._recorders:  # however it ended (closed, client closed, fatal close): finish files
            self._finishing = asyncio.ensure_future(self._finish_recordings())
            self.client._finishing.add(self._finishing)
            self._finishing.add_done_callback(self.client._finishing.discard)
            self._finishing.add_done_callback(_log_recording_failure)

    async def _finish_recordings(self) -> None:
        """Finish every recording (each one, even if another fails); raise the first error."""
        recorders, self._recorders = self._recorders, []
        errors = []
        for recorder in recorders:
            try:
                await asyncio.to_thread(recorder.close)
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    # ------------------------------------------------------------------ API
    def on_gap(self, callback: GapCallback) -> GapCallback:
        """Call ``callback(gap)`` on the loop whenever records are known to be lost."""
        self._gap_callbacks.append(callback)
        return callback

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

    # ------------------------------------------------------------------ widgets
    def _live_window(self) -> ColumnWindow:
        if self._window is None:
            raise LivenbError("this subscription keeps no window (window=None): nothing to show")
        return self._window

    def table(
        self, rows: int = 20, *, columns: Sequence[str] | None = None, rate: float = 10.0
    ) -> LiveTable:
        """A live table widget of the newest ``rows`` rows (newest first), updated at most
        ``rate`` times a second with only the new rows. Display it (a cell's last line)."""
        from .widgets import LiveTable

        return LiveTable(
            self._live_window(), rows=rows, columns=columns, rate=rate, title=self.pattern
        )

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
        """A live line chart of ``y`` (a field or several; default: every numeric field)
        against ``x`` (``ts``, ``seq`` or a field) over the window, on a canvas; at most
        ``max_points`` points per series (decimated keeping extremes). ``mode="markers"``
        draws a scatter instead of lines."""
        from .widgets import LiveChart

        window = self._live_window()
        return LiveChart(
            window,
            x=x,
            y=y,
            max_points=max_points,
            height=height,
            rate=rate,
            title=self.pattern,
            window_rows=window.limit,
            mode=mode,
        )

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
            "livenb.gaps": [_gap_dict(g) for g in list(self.gaps)],  # list(): one step
            "livenb.recovered": self.recovered,
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
            "gaps": self.gap_count,
            "missed": self.missed,
            "duplicates": self.duplicates,
            "resumes": self.resumes,
            "recovered": self.recovered,
            "epoch": self.epoch,
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
        """Stop receiving (unsubscribe when no other local subscription needs the pattern);
        recordings made with :meth:`record` are finished."""
        if not self.closed:
            self._end(None)
            await self.client._release(self)
        if self._finishing is not None:
            await asyncio.shield(self._finishing)

    def record(self, path: str | os.PathLike[str], **options: Any) -> Recorder:
        """Write every record this subscription receives from now on to a Parquet file
        (``topic``, ``seq``, ``ts``, ``data`` as JSON), from a writer thread; see
        :mod:`livenb.recording`. The file is finished by ``recorder.close()`` or by closing
        the subscription. Records that arrived before this call are not in it; to record a
        subscription from its first record, pass ``record=`` to ``subscribe``. Needs pyarrow
        (``pip install 'livenb[record]'``)."""
        from .recording import Recorder

        self._check_open_for_recording()
        recorder = Recorder(path, pattern=self.pattern, **options)
        self._attach(recorder)
        return recorder

    def _attach(self, recorder: Recorder) -> None:
        self._recorders.append(recorder)
        self._gap_callbacks.append(recorder.add_gap)

    @property
    def recorders(self) -> list[Recorder]:
        """The recordings this subscription feeds (see :meth:`record`)."""
        return list(self._recorders)

    def _check_open_for_recording(self) -> None:
        if self.closed:
            raise LivenbError("this subscription is closed; subscribe again to record")

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
    """A connection to a livenb hub on the running loop, which survives connection loss.

    Publishes are micro-batched per topic: a frame goes out when it holds ``batch_records``
    records or ``batch_bytes`` bytes, or at most ``batch_delay`` seconds after its first record
    (aimed 1.5 ms sooner, since timers fire late), or on :meth:`flush`. Every frame is
    acknowledged by the hub; at most ``max_pending`` bytes may be published and not yet
    acknowledged (policy ``block``: publishers wait for room).

    When the connection breaks, the client reconnects on its own (``reconnect=True``):
    exponential backoff with full jitter from ``reconnect_delay`` up to
    ``reconnect_max_delay``, reset once a connection stayed up ``healthy_after`` seconds. It
    then resubscribes every subscription from its last seq (the hub replays what was missed,
    or reports a gap) and resends every unacknowledged frame (the hub stores each once). A
    close code in the do-not-reconnect range (wrong token, ...) ends the client instead.
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
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
        reconnect: bool = True,
        reconnect_delay: float = DEFAULT_RECONNECT_DELAY,
        reconnect_max_delay: float = DEFAULT_RECONNECT_MAX_DELAY,
        healthy_after: float = DEFAULT_HEALTHY_AFTER,
        cafile: str | os.PathLike[str] | None = None,
        ssl: ssl_module.SSLContext | None = None,
        compression: bool = False,
    ) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"a hub URL starts with ws:// or wss:// (got {url!r})")
        if batch_delay < 0:
            raise ValueError("batch_delay must be >= 0")
        if not 0 < reconnect_delay <= reconnect_max_delay:
            raise ValueError("need 0 < reconnect_delay <= reconnect_max_delay")
        self.url = url
        self.token = token
        if url.startswith("wss://"):
            self._ssl: ssl_module.SSLContext | None = ssl or client_context(cafile)
        elif ssl is not None or cafile is not None:
            raise ValueError(f"cafile= and ssl= are for wss:// URLs (got {url!r})")
        else:
            self._ssl = None
        self.batch_delay = batch_delay
        self.max_size = max_size
        self.compression = compression
        self.max_record = max_record
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.reconnect = reconnect
        self.reconnect_delay = reconnect_delay
        self.reconnect_max_delay = reconnect_max_delay
        self.healthy_after = healthy_after
        self.pid = secrets.token_hex(8)  # producer id: makes resent frames idempotent
        self.outbox = Outbox(
            max_records=batch_records, max_bytes=batch_bytes, max_pending=max_pending, pid=self.pid
        )
        self._ws: ClientConnection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id = 0
        self._session: list[asyncio.Task[None]] = []  # reader, flusher, keepalive
        self._lost: asyncio.Future[BaseException | None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._session_started = 0.0
        self._kick = asyncio.Event()
        self._control_tail: asyncio.Task[None] | None = None
        self._flush_requested = False
        self._accepting = True  # False once close() began: no new records
        self._unacked: deque[Frame] = deque()  # sent (or being sent), not yet acknowledged
        self._ack_waiters: dict[int, asyncio.Future[int]] = {}  # frame id -> publish(ack=True)
        self._settle_waiters: list[tuple[int, asyncio.Future[None]]] = []  # flush()
        self._subs: dict[str, list[AsyncSubscription]] = {}
        self._routes: dict[str, tuple[AsyncSubscription, ...]] = {}
        self._pings: deque[tuple[float, asyncio.Future[float]]] = deque()
        self._failure: BaseException | None = None
        self._closing = False
        self._hub_ts: float | None = None  # the newest hub time seen (pattern resumes)
        self._last_message = 0.0  # monotonic time of the last frame from the hub
        self.errors: deque[p.Err] = deque(maxlen=100)  # recent unsolicited errors from the hub
        self._finishing: set[asyncio.Future[None]] = set()  # recordings being finished
        self.frames_sent = 0
        self.frames_resent = 0
        self.records_settled = 0  # records the hub acknowledged (or refused with an error)
        self.records_received = 0
        self.unsent_dropped = 0
        self.reconnects = 0
        self.disconnects = 0
        self.latency: float | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise LivenbError("the client is not connected; await client.connect() first")
        return self._loop

    @property
    def connected(self) -> bool:
        """True while a connection to the hub is open (False while reconnecting)."""
        return self._ws is not None and self._failure is None and not self._closing

    @property
    def closed(self) -> bool:
        return self._failure is not None

    @property
    def last_message_age(self) -> float | None:
        """Seconds since the last frame from the hub (None before the first)."""
        return None if not self._last_message else time.monotonic() - self._last_message

    async def connect(self) -> Self:
        """Open the connection; raise AuthenticationError / HubUnreachableError on failure."""
        if self._loop is not None:
            return self
        self._loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        try:
            ws = await self._open()
        except BaseException:
            self._loop = None
            raise
        self._start_session(ws)
        self._supervisor = asyncio.create_task(self._supervise(), name="livenb-client-supervisor")
        return self

    async def _open(self) -> ClientConnection:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        try:
            return await connect(
                self.url,
                ssl=self._ssl,
                additional_headers=headers,
                # offered when asked for; the hub decides. max_size bounds each message
                # after decompression.
                compression="deflate" if self.compression else None,
                max_size=self.max_size,
                logger=traffic_logger("livenb.client.websockets"),  # tokens masked
                open_timeout=self.open_timeout,
                ping_interval=None,  # livenb's own keepalive (see _keepalive.py)
                proxy=None,
                user_agent_header="livenb",
            )
        except InvalidStatus as exc:
            if exc.response.status_code == 401:
                raise AuthenticationError(
                    f"the hub at {self.url} rejected the access token; pass token=hub.token "
                    "(or the token `livenb serve` printed)"
                ) from None
            status = exc.response.status_code
            said = (exc.response.body or b"").decode("utf-8", "replace").strip()[:300]
            if said.startswith("livenb: "):  # the hub explains (403, 429, 503)
                raise HubUnreachableError(
                    f"the hub at {self.url} refused the connection (HTTP {status}): "
                    f"{said.removeprefix('livenb: ')}"
                ) from None
            raise HubUnreachableError(
                f"the server at {self.url} refused the WebSocket upgrade "
                f"(HTTP {status}); is it a livenb hub?"
            ) from None
        except ssl_module.SSLCertVerificationError as exc:
            raise HubUnreachableError(
                f"the hub at {self.url} presented a certificate this client does not trust "
                f"({exc.verify_message}); pass cafile= (for tls=True: the hub's hub.cafile)"
            ) from None
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            hint = "is it running? (start one with livenb.serve() or `livenb serve`)"
            if self.url.startswith("ws://") and isinstance(exc, InvalidHandshake | EOFError):
                hint = "if the hub uses TLS, connect to its wss:// URL"
            raise HubUnreachableError(f"cannot reach a livenb hub at {self.url} ({exc}); {hint}") from None

    def _start_session(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._session_started = time.monotonic()
        self._lost = self.loop.create_future()
        liveness = Liveness()
        self._session = [
            asyncio.create_task(self._read_loop(ws, liveness), name="livenb-client-read"),
            asyncio.create_task(self._flush_loop(ws), name="livenb-client-flush"),
        ]
        if self.ping_interval is not None and self.ping_timeout is not None:
            self._session.append(
                asyncio.create_task(
                    keepalive(ws, liveness, self.ping_interval, self.ping_timeout, _no_op),
                    name="livenb-client-keepalive",
                )
            )

    def _lose(self, reason: BaseException | None) -> None:
        """The current connection is over (first reason wins); the supervisor takes it from here."""
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(reason)

    async def _end_session(self) -> None:
        ws, self._ws = self._ws, None
        tasks, self._session = self._session, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if ws is not None:
            ws.transport.abort()
        for _, future in self._pings:
            if not future.done():
                future.set_exception(ConnectionClosedError("the connection was lost"))
                future.exception()
        self._pings.clear()

    async def _supervise(self) -> None:
        """Reconnect after each loss, until closed or told not to."""
        attempt = 0
        while True:
            assert self._lost is not None
            reason = await self._lost
            healthy = time.monotonic() - self._session_started >= self.healthy_after
            await self._end_session()
            if self._closing:
                return
            self.disconnects += 1
            code = _close_code(reason)
            if not self.reconnect or not p.should_reconnect(code):
                self._fail(self._closed_error(reason))
                return
            if healthy:
                attempt = 0
            log.info("livenb: lost the connection to %s (%s); reconnecting", self.url, reason)
            while True:
                delay = min(self.reconnect_max_delay, self.reconnect_delay * 2**attempt)
                attempt += 1
                await asyncio.sleep(random.uniform(0, delay))  # full jitter
                try:
                    ws = await self._open()
                except AuthenticationError as exc:
                    self._fail(exc)
                    return
                except HubUnreachableError:
                    continue
                break
            self.reconnects += 1
            self._start_session(ws)
            self._resubscribe()

    async def close(self, flush_timeout: float | None = DEFAULT_CLOSE_TIMEOUT) -> None:
        """Wait up to ``flush_timeout`` seconds (None: no limit) for the hub to acknowledge what was
        published, then close; idempotent. Records still unacknowledged then are counted in
        ``stats()["drops"]`` and logged."""
        if self._loop is None or self._closing:
            return
        self._accepting = False
        try:
            if self.connected:
                async with asyncio.timeout(flush_timeout):
                    await self._flush()
        except (LivenbError, TimeoutError):
            pass
        finally:
            self._closing = True
            ws = self._ws
            if ws is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await ws.close()
            if self._supervisor is not None:
                self._supervisor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._supervisor
            await self._end_session()
            self._fail(ConnectionClosedError("the client was closed"))
            if self._finishing:  # recordings of the subscriptions just ended
                await asyncio.gather(*self._finishing, return_exceptions=True)

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        if self.closed:
            state = "closed"
        elif self.connected:
            state = "connected"
        else:
            state = "reconnecting" if self._loop is not None else "new"
        token = " token=***" if self.token else ""
        return f"<AsyncClient {self.url}{token} {state}>"

    # ------------------------------------------------------------------ publish
    def _check_open(self) -> None:
        if self._failure is not None:
            if isinstance(self._failure, LivenbError) and not isinstance(
                self._failure, ConnectionClosedError
            ):
                raise self._failure
            raise ConnectionClosedError(str(self._failure))
        if not self._accepting:
            raise ConnectionClosedError("the client is closing; it takes no new records")
        if self._loop is None:
            raise LivenbError("the client is not connected; await client.connect() first")

    def enqueue(self, topic: str, encoded: list[bytes], *, seal: bool = False) -> tuple[int, int]:
        """Thread-safe: queue encoded records of a checked topic for sending (no waiting).

        Returns the outbox's (wake code, frame id when sealed). Raises RecordTooLargeError
        (nothing queued) when a record exceeds ``max_record`` bytes."""
        self._check_open()
        limit = self.max_record
        for record in encoded:
            if len(record) > limit:
                raise RecordTooLargeError(
                    f"a record of {len(record):,} bytes exceeds max_record={limit:,} (the hub "
                    "closes connections that send frames over its max_size, 1 MiB by default); "
                    "split it, or raise both limits together"
                )
        wake, frame_id, signal = self.outbox.add(topic, encoded, seal=seal)
        if signal:
            self._wake_flusher()
        return wake, frame_id

    def _wake_flusher(self) -> None:
        """Wake the sleeping flusher, from its loop's thread or any other."""
        if threading.get_ident() == self._thread_id:
            self._kick.set()
        else:
            self.loop.call_soon_threadsafe(self._kick.set)

    def enqueue_one(self, topic: str, record: bytes) -> int:
        """:meth:`enqueue` for one encoded record, unsealed (the hot path); returns the wake
        code."""
        if self._failure is not None or not self._accepting or self._loop is None:
            self._check_open()  # raises the right error
        if len(record) > self.max_record:
            return self.enqueue(topic, [record])[0]  # raises RecordTooLargeError
        wake, signal = self.outbox.add_one(topic, record)
        if signal:
            self._wake_flusher()
        return wake

    async def publish(self, topic: str, record: Any, *, ack: bool = False) -> int | None:
        """Publish one record to ``topic``. With ``ack=True`` wait until the hub has stored it
        and return its seq; otherwise return None once it is queued (sent within
        ``batch_delay``; waits only while ``max_pending`` bytes await acknowledgement)."""
        if ack:
            return await self._publish(check_topic(topic), [p.encode_record(record)], ack)
        if self.enqueue_one(check_topic(topic), p.encode_record(record)) == WAKE_NOW:
            await asyncio.sleep(0)  # a frame is complete: let the sender run (see _publish)
        if self.outbox.full():
            await self.flush()
        return None

    async def publish_many(
        self, topic: str, records: Iterable[Any] | pd.DataFrame, *, ack: bool = False
    ) -> int | None:
        """Publish a list of records (or a DataFrame's rows) to ``topic`` in order.
        With ``ack=True`` return the last record's seq once the hub has stored them all."""
        encoded = encode_records(records)
        check_topic(topic)
        if not encoded:
            return None
        return await self._publish(topic, encoded, ack)

    async def _publish(self, topic: str, encoded: list[bytes], ack: bool) -> int | None:
        if not ack:
            wake, _ = self.enqueue(topic, encoded)
            if wake == WAKE_NOW:
                # A frame is complete: let the sender run, so a tight publish loop streams
                # instead of holding everything (and the loop) until it ends.
                await asyncio.sleep(0)
            if self.outbox.full():
                await self.flush()
            return None
        _, frame_id = self.enqueue(topic, encoded, seal=True)
        # No await between sealing and registering: the ack cannot arrive in between.
        future = self._ack_waiters[frame_id] = self.loop.create_future()
        try:
            return await asyncio.shield(future)
        finally:
            self._ack_waiters.pop(frame_id, None)

    async def flush(self) -> None:
        """Return once the hub has acknowledged every record published before this call
        (records published meanwhile, e.g. from other threads, do not delay it)."""
        self._check_open()
        await self._flush()

    async def _flush(self) -> None:
        # Every record published so far is in a frame numbered up to `target` once the open
        # batches are sealed; the flush is done when all those frames are settled.
        target = self.outbox.seal_all()
        if self._settled_through(target):
            return
        future: asyncio.Future[None] = self.loop.create_future()
        entry = (target, future)
        self._settle_waiters.append(entry)
        self._flush_requested = True
        self._kick.set()
        try:
            await future
        finally:
            if entry in self._settle_waiters:
                self._settle_waiters.remove(entry)
            self._flush_requested = bool(self._settle_waiters)

    def _settled_through(self, frame_id: int) -> bool:
        """True when every frame numbered up to ``frame_id`` is acknowledged or refused."""
        unsent = self.outbox.first_ready_id()
        unacked = self._unacked[0].id if self._unacked else unsent
        return min(unsent, unacked) > frame_id

    async def _flush_loop(self, ws: ClientConnection) -> None:
        outbox = self.outbox
        try:
            # After a reconnect: everything not acknowledged goes again, first and in order.
            for frame in list(self._unacked):
                await ws.send(frame.data, text=True)
                self.frames_resent += 1
            while True:
                if not self._flush_requested and outbox.sleep(WAKE_TIMER):
                    await self._kick.wait()
                    outbox.awake()
                    self._kick.clear()
                    if not outbox.has_ready() and not self._flush_requested:
                        await self._linger(outbox.oldest + self.batch_delay)
                frames = outbox.take()
                if not frames:  # a flush found nothing more to send: acks will settle it
                    self._flush_requested = False
                    continue
                self._unacked.extend(frames)
                await write_all(ws, [frame.data for frame in frames])
                self.frames_sent += len(frames)
        except ConnectionClosed as exc:
            self._lose(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never leave publishers waiting on a dead sender
            log.exception("livenb: publisher failed")
            self._lose(exc)

    async def _linger(self, deadline: float) -> None:
        """Wait until ``deadline`` (monotonic) unless a batch fills or a flush is requested."""
        outbox = self.outbox
        while not self._flush_requested:
            # Aim early by the timer slack: epoll rounds a wait up to the next millisecond
            # and the loop runs the timer after whatever is ready, so aiming at the deadline
            # itself sends 1-2 ms late (measured: benchmarks, latency-batched).
            remaining = deadline - time.monotonic() - TIMER_SLACK
            if remaining <= 0 or not outbox.sleep(WAKE_NOW):
                return
            try:
                async with asyncio.timeout(remaining):
                    await self._kick.wait()
            except TimeoutError:
                return
            finally:
                outbox.awake()
            self._kick.clear()

    def _settle(self, frame_id: int, result: int | BaseException) -> None:
        """An ack settles frames up to ``frame_id`` (the hub stores and acknowledges them in
        order, after the journal's commit when it has one). A refusal settles that frame only:
        an error is sent at once, while earlier frames may still await their commit."""
        unacked = self._unacked
        settled = []
        if isinstance(result, BaseException):
            for frame in unacked:
                if frame.id == frame_id:
                    settled.append(frame)
                    unacked.remove(frame)
                    break
        else:
            while unacked and unacked[0].id <= frame_id:
                settled.append(unacked.popleft())
        released = sum(frame.payload for frame in settled)
        self.records_settled += sum(frame.records for frame in settled)
        if released:
            self.outbox.release(released)
        future = self._ack_waiters.pop(frame_id, None)
        if future is not None and not future.done():
            if isinstance(result, BaseException):
                future.set_exception(result)
                future.exception()  # the publisher may have given up waiting
            else:
                future.set_result(result)
        if self._settle_waiters:
            for target, waiter in self._settle_waiters:
                if not waiter.done() and self._settled_through(target):
                    waiter.set_result(None)

    # ------------------------------------------------------------------ subscribe
    def subscribe(
        self,
        pattern: str,
        *,
        window: WindowSpec = DEFAULT_ROWS,
        on_record: RecordCallback | None = None,
        buffer: int = DEFAULT_BUFFER,
        record: str | os.PathLike[str] | None = None,
    ) -> AsyncSubscription:
        """Subscribe to a topic or pattern (``ticks.*``, ``ticks.>``); returns at once.

        ``await sub.wait_ready()`` waits for the hub's confirmation; iterating does that too.
        ``record="file.parquet"`` records every record of the subscription from its very
        first one (:meth:`AsyncSubscription.record` started later misses what came before).
        Call on the client's own loop.
        """
        check_pattern(pattern)
        self._check_open()
        if threading.get_ident() != self._thread_id:
            raise LivenbError("AsyncClient.subscribe must be called on the client's event loop")
        if buffer < 1:
            raise ValueError("buffer must be >= 1")
        sub = AsyncSubscription(self, pattern, window, on_record, buffer)
        if record is not None:  # attached before anything can arrive (this runs on the loop)
            from .recording import Recorder

            sub._attach(Recorder(record, pattern=pattern))
        siblings = self._subs.setdefault(pattern, [])
        siblings.append(sub)
        self._routes.clear()
        if len(siblings) == 1:
            if self.connected:
                self._send_soon(p.Sub(pattern))
            # else: the reconnect resubscribes it
        else:
            first = siblings[0]
            sub.epoch = first.epoch
            sub.last_seq.update(first.last_seq)  # it starts where its sibling is now
            if first.ready.done() and first.ready.exception() is None:
                sub.ready.set_result(None)
        return sub

    def _resubscribe(self) -> None:
        """After a reconnect: every subscription again, each from where it left off."""
        for pattern, siblings in self._subs.items():
            known = [s for s in siblings if s.epoch is not None]
            if not known:
                self._send_soon(p.Sub(pattern))
                continue
            epoch = known[0].epoch
            assert epoch is not None
            if pattern_has_wildcards(pattern):
                seqs: dict[str, int] = {}
                for sub in known:
                    for topic, seq in sub.last_seq.items():
                        seqs[topic] = min(seqs.get(topic, seq), seq)
                position = p.Position(epoch, None, seqs, self._hub_ts)
            else:
                position = p.Position(epoch, min(s.last_seq.get(pattern, 0) for s in known))
            self._send_soon(p.Sub(pattern, position))

    async def _release(self, sub: AsyncSubscription) -> None:
        siblings = self._subs.get(sub.pattern, [])
        if sub in siblings:
            siblings.remove(sub)
            self._routes.clear()
        if not siblings:
            self._subs.pop(sub.pattern, None)
            if self.connected:
                with contextlib.suppress(ConnectionClosed, ConnectionClosedError):
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
        ws = self._ws
        if ws is None:
            raise ConnectionClosedError("not connected (reconnecting)")
        await ws.send(p.encode(message), text=True)

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
    async def _read_loop(self, ws: ClientConnection, liveness: Liveness) -> None:
        reason: BaseException | None = None
        try:
            async for frame in ws:
                liveness.heard()
                self._last_message = liveness.last_heard
                try:
                    message = p.decode_hub(frame)
                except ProtocolError as exc:
                    log.warning("livenb: ignoring an invalid frame from the hub: %s", exc)
                    continue
                self._handle(message)
        except ConnectionClosed as exc:
            reason = exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("livenb: the reader failed")
            reason = exc
        if reason is None:  # the iterator ended: a clean close; keep its close code
            reason = _closed_exception(ws)
        self._lose(reason)

    def _closed_error(self, failure: BaseException | None) -> LivenbError:
        code = _close_code(failure)
        if isinstance(failure, ConnectionClosed) and failure.rcvd is not None:
            if code == p.CLOSE_UNAUTHORIZED:
                return AuthenticationError(
                    f"the hub at {self.url} closed the connection: {failure.rcvd.reason} "
                    "(pass token=hub.token, or the token `livenb serve` printed)"
                )
            if code == p.CLOSE_TOO_BIG:
                return ConnectionClosedError(
                    f"the hub at {self.url} closed the connection because a frame was larger "
                    "than its max_size; lower batch_bytes or publish smaller records"
                )
        if isinstance(failure, LivenbError):
            return failure
        detail = f": {failure}" if failure is not None else ""
        return ConnectionClosedError(f"the connection to {self.url} closed{detail}")

    def _handle(self, message: p.HubMessage) -> None:
        if type(message) is p.Msg:
            self.records_received += len(message.records)
            self._hub_ts = message.ts
            subs = self._routes.get(message.topic)
            if subs is None:
                subs = self._route(message.topic)
            for sub in subs:
                sub._deliver(message)
        elif type(message) is p.Ack:
            if type(message.id) is int:
                count = message.count
                seq = message.seq + count - 1 if message.seq else 0
                self._settle(message.id, seq)
        elif type(message) is p.Subscribed:
            if message.ts is not None:
                self._hub_ts = message.ts
            for sub in self._subs.get(message.topic, ()):
                sub._on_subscribed(message)
        elif type(message) is p.Gap:
            # A resume's gap concerns the subscriptions of that pattern only; any other gap
            # (e.g. a slow-consumer drop) every local subscription that matches the topic.
            targets = (
                self._subs.get(message.sub, ())
                if message.sub is not None
                else self._route(message.topic)
            )
            for sub in targets:
                sub._on_gap(message)
        elif type(message) is p.Err:
            self._on_error(message)
        elif type(message) is p.Pong and self._pings:
            started, future = self._pings.popleft()
            self.latency = time.perf_counter() - started
            if not future.done():
                future.set_result(self.latency)

    def _on_error(self, err: p.Err) -> None:
        error = RemoteError(err.code, err.message)
        if type(err.id) is int and any(f.id == err.id for f in self._unacked):
            # A refused frame: settled (it will not be stored); its publisher learns why, or,
            # when nobody waits for it, the client's error list and the log.
            if err.id not in self._ack_waiters:
                self.errors.append(err)
                log.warning("livenb: the hub refused a publish (%s): %s", err.code, err.message)
            self._settle(err.id, error)
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
        """The client is over: fail everything that waits on it."""
        if self._failure is not None:
            return
        self._failure = failure
        lost = self.outbox.discard() + sum(frame.records for frame in self._unacked)
        self._unacked.clear()
        if lost:
            self.unsent_dropped += lost
            log.warning(
                "livenb: %d published records were not confirmed by the hub at %s (%s)",
                lost,
                self.url,
                failure,
            )
        waiters: list[asyncio.Future[Any]] = [*self._ack_waiters.values()]
        waiters += [waiter for _, waiter in self._settle_waiters]
        waiters += [future for _, future in self._pings]
        for future in waiters:
            if not future.done():
                future.set_exception(failure)
                future.exception()
        self._pings.clear()
        closing = isinstance(failure, ConnectionClosedError) and self._closing
        for subs in self._subs.values():
            for sub in subs:
                sub._end(None if closing else failure)
        self._subs.clear()
        self._routes.clear()

    def status(self, *, stale_after: float = 5.0, rate: float = 2.0) -> StatusPanel:
        """A live health panel: connected, rates in and out, latency, reconnects, gaps,
        drops; marked stale when no records moved for ``stale_after`` seconds."""
        from .widgets import StatusPanel

        return StatusPanel(
            self.stats, "client", stale_after=stale_after, rate=rate, title=f"livenb client {self.url}"
        )

    def stats(self) -> dict[str, Any]:
        subs = [s for group in list(self._subs.values()) for s in list(group)]
        return {
            "url": self.url,
            "connected": self.connected,
            "reconnects": self.reconnects,
            "disconnects": self.disconnects,
            "latency": self.latency,
            "last_message_age": self.last_message_age,
            "records_published": self.outbox.records_added,
            "records_acked": self.records_settled,
            "frames_sent": self.frames_sent,
            "frames_resent": self.frames_resent,
            "records_received": self.records_received,
            "pending_bytes": self.outbox.pending,
            "pending_policy": PENDING_POLICY,
            "unacked_frames": len(self._unacked),
            "drops": self.unsent_dropped + sum(s.unread_dropped for s in subs),
            "gaps": sum(s.gap_count for s in subs),
            "subscriptions": len(subs),
            "errors": len(self.errors),
        }


def _close_code(reason: BaseException | None) -> int | None:
    if isinstance(reason, ConnectionClosed) and reason.rcvd is not None:
        return reason.rcvd.code
    return None


def _closed_exception(ws: ClientConnection) -> ConnectionClosed:
    """The ConnectionClosed of a connection whose frames ended (it carries the close code)."""
    return ws.protocol.close_exc


def _no_op() -> None:
    pass


def _log_recording_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("livenb: a recording could not be finished: %s", future.exception())


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        if not isinstance(exc, ConnectionClosed | ConnectionClosedError):
            log.warning("livenb: sending a control message failed: %r", exc)
