"""AsyncHub: the WebSocket hub on asyncio (websockets), driving the pure :class:`HubCore`."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import math
import os
import secrets
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from . import _protocol as p
from ._errors import LivenbError, ProtocolError
from ._fdlimit import check_capacity
from ._history import (
    DEFAULT_HISTORY,
    DEFAULT_HISTORY_TOTAL_BYTES,
    Batch,
    HistoryLimits,
    limits_for,
)
from ._journal import Journal
from ._keepalive import DEFAULT_PING_INTERVAL, DEFAULT_PING_TIMEOUT, Liveness, ping
from ._origins import allowlist, is_loopback, origin_allowed
from ._pages import SECURITY_HEADERS, is_upgrade, page
from ._permissions import grants
from ._redact import traffic_logger
from ._redis import RedisEngine
from ._state import (
    DEFAULT_MAX_SUBSCRIPTIONS,
    DEFAULT_MAX_TOPICS,
    DEFAULT_RATE_LIMIT,
    Action,
    Close,
    FoldableAck,
    Forward,
    HubCore,
    Persist,
    Send,
)
from ._throttle import DEFAULT_AUTH_FAILURE_BURST, DEFAULT_AUTH_FAILURE_RATE, FailureThrottle
from ._tls import self_signed, server_context
from ._topics import check_pattern, is_pattern, matches
from ._wswrite import FLUSH_BYTES, flush, write_all

if TYPE_CHECKING:
    from .widgets import StatusPanel

log = logging.getLogger("livenb.hub")

DEFAULT_PORT: Final = 8765
DEFAULT_MAX_CONNECTIONS: Final = 1000
DEFAULT_MAX_SIZE: Final = 1 << 20  # largest frame a client may send (close 1009 above it)
DEFAULT_QUEUE_FRAMES: Final = 10_000  # per-connection outgoing queue bound, in frames ...
DEFAULT_QUEUE_RECORDS: Final = 100_000  # ... in records (of queued msg frames) ...
DEFAULT_QUEUE_BYTES: Final = 32 << 20  # ... and in bytes
DEFAULT_SEND_TIMEOUT: Final = 10.0
DEFAULT_AUTH_TIMEOUT: Final = 5.0  # connected -> {"op":"auth"} received (browsers)
DEFAULT_MAX_UNAUTHENTICATED: Final = 100  # connections waiting for their auth message
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0  # TCP accepted -> WebSocket open (incl. TLS)
# A connection's sender task ends after this long with nothing to send (and starts again
# with the next frame): tens of thousands of idle subscribers then hold no task each.
SENDER_IDLE: Final = 2.0
# A held ack of cumulative pubs (protocol section 5.4) goes out at most this long after the
# first frame it acknowledges was stored (or before any other reply). Every ack costs the hub
# a write and the publisher a frame to read; at most one per connection per ACK_DELAY cuts
# that to a few hundred a second whatever the publish rate, and delays only flush().
ACK_DELAY: Final = 0.002
CLOSE_TRY_AGAIN_LATER: Final = 1013  # retryable: the waiting places were taken meanwhile

# What happens when a subscriber's outgoing queue would exceed one of its bounds.
DISCONNECT: Final = "disconnect"  # close 4008; the client reconnects and resumes from history
DROP_OLDEST: Final = "drop_oldest"  # drop the oldest queued records, queue a gap for them
LATEST: Final = "latest"  # keep the newest queued msg frame per topic (then its newest record)
SLOW_CONSUMER_POLICIES: Final = (DISCONNECT, DROP_OLDEST, LATEST)
DEFAULT_SLOW_CONSUMER: Final = DISCONNECT
SLOW_CONSUMER_POLICY: Final = DEFAULT_SLOW_CONSUMER  # the default (kept for compatibility)
GAP_SLOW_CONSUMER: Final = "slow_consumer"  # gap reason: records dropped from a slow queue

_MSG_PREFIX: Final = b'{"op":"msg","topic":"'
_SEQ_FIELD: Final = b'","seq":'
_CONTROL: Final = 0  # any frame that is not a msg: never dropped by a policy
_MSG: Final = 1  # records of one topic, shared by every receiving peer: never mutated
_GAP: Final = 2  # a gap this peer owes its subscriber (slow_consumer); extended in place


def _format_url(scheme: str, host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


class _Item:
    """One queued frame. A msg item is made once per published frame and shared by every
    peer that queues it; its topic and first seq are parsed from the frame only when an
    overflow policy needs them. A gap item belongs to one peer and may grow while queued.
    A replay item is a msg frame replayed from history on resume."""

    __slots__ = ("first", "frame", "kind", "last", "records", "replay", "topic")

    def __init__(self, frame: bytes, records: int, kind: int, replay: bool = False) -> None:
        self.frame = frame
        self.records = records  # records this frame carries (0 unless a msg)
        self.kind = kind
        self.replay = replay
        self.topic: str | None = None
        self.first = 0
        self.last = 0

    @classmethod
    def of(cls, action: Send) -> _Item:
        frame = action.frame
        if action.replay or (not action.records and frame.startswith(_MSG_PREFIX)):
            # A resume's replay (sent without a record count): count its records once.
            records = action.records
            if not records:
                obj = orjson.loads(frame)
                records = 1 if "data" in obj else len(obj["batch"])
            return cls(frame, records, _MSG, True)
        if action.records:
            return cls(frame, action.records, _MSG)
        return cls(frame, 0, _CONTROL)

    @classmethod
    def gap(cls, topic: str, first: int, last: int) -> _Item:
        item = cls(b"", 0, _GAP)
        item.topic = topic
        item.first = first
        item.last = last
        item.frame = p.encode(p.Gap(topic, first, last, GAP_SLOW_CONSUMER))
        return item

    def parse(self) -> str:
        """The topic of a msg item (its ``first``/``last`` are set too); cached."""
        topic = self.topic
        if topic is not None:
            return topic
        frame = self.frame
        end = frame.find(_SEQ_FIELD, len(_MSG_PREFIX))
        stop = frame.find(b",", end + len(_SEQ_FIELD)) if end > 0 else -1
        if stop > 0:  # the layout encode_msg_frame writes; topic names need no escaping
            topic = frame[len(_MSG_PREFIX) : end].decode()
            first = int(frame[end + len(_SEQ_FIELD) : stop])
        else:  # pragma: no cover - any other layout
            obj = orjson.loads(frame)
            topic, first = obj["topic"], obj["seq"]
        self.first = first
        self.last = first + self.records - 1
        self.topic = topic
        return topic


_OPEN: Final = State.OPEN
_IDLE_QUEUE: Final[deque[_Item]] = deque()  # shared by idle peers; never appended to


class _Peer:
    """One connection's outgoing side: direct writes while the connection keeps up, else a
    bounded queue drained by its own sender task.

    A frame offered while nothing is queued and the connection's transport is below its
    write limit (websockets' ``write_limit``, not paused) is written at once, like
    websockets' ``broadcast()``: no task, no queue. It is corked until the loop's current
    step ends, so a burst leaves in one write (of at most ``FLUSH_BYTES``). Otherwise it is
    queued, and the sender writes it once the transport has room, in order.

    The queue holds at most ``max_frames`` frames, ``max_records`` records (in msg frames) and
    ``max_bytes`` bytes. What happens when a new frame would exceed a bound is the ``policy``:

    - ``disconnect``: :meth:`offer` returns False; the hub closes the connection with 4008
      (slow consumer) and the client resumes from the topic's history.
    - ``drop_oldest``: the oldest queued msg frames are dropped until the new frame fits; each
      dropped range is reported in its place by a ``gap`` frame (reason ``slow_consumer``;
      ranges of one topic are merged into one gap frame).
    - ``latest``: every topic keeps only its newest queued msg frame (and, if that is still too
      much, only its newest record); what was replaced is reported by ``gap`` frames.

    Frames other than msg frames (acks, errors, subscribed, gaps, pongs) are never dropped:
    when they alone overflow the queue, :meth:`offer` returns False under every policy. Records
    dropped by a policy are counted in :attr:`dropped_records`.

    A resume's replay is admitted on top of the bounds (its frames are the ones the topic's
    history holds, so it is bounded by the history limits): were it counted, a replay larger
    than the queue would close the connection on every resume and the client would never catch
    up. Frames queued behind it face the bounds as usual.
    """

    __slots__ = (
        "bytes",
        "closing",
        "conn",
        "corked",
        "dropped_records",
        "hub",
        "liveness",
        "max_bytes",
        "max_frames",
        "max_records",
        "pending_ack",
        "ping_sent",
        "pinger",
        "policy",
        "queue",
        "records",
        "replay_bytes",
        "replay_frames",
        "replay_records",
        "sender",
        "wake",
        "ws",
    )

    def __init__(
        self,
        conn: int,
        ws: ServerConnection,
        max_frames: int,
        max_bytes: int,
        max_records: int = DEFAULT_QUEUE_RECORDS,
        policy: str = DEFAULT_SLOW_CONSUMER,
    ) -> None:
        self.conn = conn
        self.ws = ws
        # Idle connections share one empty queue (a deque costs about 760 bytes): a peer
        # gets its own with its first frame and gives it back when its sender goes idle.
        self.queue: deque[_Item] = _IDLE_QUEUE
        self.bytes = 0  # every queued frame, replay included
        self.records = 0
        self.replay_frames = 0  # the replay's share, not held against the bounds
        self.replay_bytes = 0
        self.replay_records = 0
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.max_records = max_records
        self.policy = policy
        self.dropped_records = 0
        self.wake: asyncio.Event | None = None  # made with the sender
        self.closing = False
        # The sender task is made on the first queued frame: an idle subscriber costs no
        # task (memory per connection matters at tens of thousands of them).
        self.sender: asyncio.Task[None] | None = None
        # The hub that starts senders, uncorks and sends held acks (one reference rather
        # than a bound method each: memory per connection). None in unit tests.
        self.hub: AsyncHub | None = None
        self.corked = 0  # bytes written to the protocol and not yet to the transport
        # The newest ack of cumulative pubs, held for up to ACK_DELAY (or until the next
        # reply): the pubs stored meanwhile are acknowledged by one ack.
        self.pending_ack: FoldableAck | None = None
        self.liveness = Liveness()  # the hub-wide keepalive reads these
        self.ping_sent: float | None = None
        self.pinger: asyncio.Task[None] | None = None

    def offer(self, item: _Item) -> bool:
        """Queue ``item`` (applying the overflow policy when it does not fit); False when the
        connection must be closed as a slow consumer."""
        if item.kind == _CONTROL and self.pending_ack is not None and not self.settle_ack():
            return False  # replies keep their order: the held ack goes first
        ws = self.ws
        # writable(ws) and put(), inlined: this runs once per frame and receiving peer
        if not self.queue and not ws.paused and ws.protocol.state is _OPEN and not ws.send_in_progress:
            frame = item.frame
            ws.protocol.send_text(frame)
            hub = self.hub
            if not self.corked and hub is not None:
                hub._uncork_soon(self)
            self.corked += len(frame)
            if self.corked >= FLUSH_BYTES or hub is None:
                self.uncork()
            return True
        if item.replay or self._fits(item):
            self._append(item)
            return True
        if self.policy == DROP_OLDEST:
            return self._drop_oldest(item)
        if self.policy == LATEST:
            return self._latest(item)
        return False

    def clear(self) -> int:
        """Forget every queued frame; return how many there were."""
        dropped = len(self.queue)
        self.queue.clear()
        self.bytes = self.records = 0
        self.replay_frames = self.replay_bytes = self.replay_records = 0
        return dropped

    def _fits(self, item: _Item) -> bool:
        return (
            len(self.queue) - self.replay_frames < self.max_frames
            and self.bytes - self.replay_bytes + len(item.frame) <= self.max_bytes
            and self.records - self.replay_records + item.records <= self.max_records
        )

    def _own_queue(self) -> deque[_Item]:
        if self.queue is _IDLE_QUEUE:
            self.queue = deque()
        return self.queue

    def _append(self, item: _Item) -> None:
        self._own_queue().append(item)
        self._count(item, 1)
        self._kick()

    def _kick(self) -> None:
        """Wake the sender, starting it on the first frame."""
        if self.wake is None:
            self.wake = asyncio.Event()
            if self.hub is not None:
                self.hub._start_sender(self)
        self.wake.set()

    def _count(self, item: _Item, sign: int) -> None:
        size = len(item.frame) * sign
        records = item.records * sign
        self.bytes += size
        self.records += records
        if item.replay:
            self.replay_frames += sign
            self.replay_bytes += size
            self.replay_records += records

    def _grow(self, gap: _Item, last: int) -> None:
        """Extend a queued gap item of this peer to ``last`` (re-encoded, bytes kept exact)."""
        assert gap.topic is not None
        before = len(gap.frame)
        gap.last = last
        gap.frame = p.encode(p.Gap(gap.topic, gap.first, last, GAP_SLOW_CONSUMER))
        self.bytes += len(gap.frame) - before

    # ------------------------------------------------------------------ drop_oldest
    def _drop_oldest(self, item: _Item) -> bool:
        dropped = 0
        while not self._fits(item):
            freed = self._drop_one()
            if not freed:
                break
            dropped += freed
        if self._fits(item):
            self._append(item)
            self.dropped_records += dropped
            return True
        if item.kind != _MSG:
            return False  # control frames alone fill the queue: the peer is not reading
        # The new frame alone exceeds a bound (or only control frames are left): it is the
        # one dropped, and reported like the others. A queued gap of its topic with no msg
        # frame of the topic after it may simply grow.
        topic = item.parse()
        for queued in reversed(self.queue):
            if queued.kind == _MSG and queued.parse() == topic:
                break
            if queued.kind == _GAP and queued.topic == topic:
                if queued.last + 1 == item.first:
                    self._grow(queued, item.last)
                    if self.bytes - self.replay_bytes > self.max_bytes:
                        return False
                    self.dropped_records += dropped + item.records
                    return True
                break
        gap = _Item.gap(topic, item.first, item.last)
        if not self._fits(gap):
            return False
        self._append(gap)
        self.dropped_records += dropped + item.records
        return True

    def _drop_one(self) -> int:
        """Drop the oldest queued msg frame held against the bounds (not a replay), reporting
        it with a gap in its place; return the records dropped (0: there is none to drop)."""
        queue = self.queue
        gaps: dict[str, _Item] = {}  # per topic: a gap with no msg frame of the topic after it
        for i, queued in enumerate(queue):
            if queued.kind == _GAP:
                assert queued.topic is not None
                gaps[queued.topic] = queued
            elif queued.kind == _MSG:
                topic = queued.parse()
                if queued.replay:
                    gaps.pop(topic, None)
                    continue
                self._count(queued, -1)
                gap = gaps.get(topic)
                if gap is not None and gap.last + 1 == queued.first:
                    del queue[i]
                    self._grow(gap, queued.last)
                else:
                    gap = _Item.gap(topic, queued.first, queued.last)
                    queue[i] = gap
                    self._count(gap, 1)
                return queued.records
        return 0

    # ------------------------------------------------------------------ latest
    def _latest(self, item: _Item) -> bool:
        items = [*self.queue, item]
        dropped = 0
        for trim in (False, True):
            items, lost = _conflate(items, trim)
            dropped += lost
            live = [i for i in items if not i.replay]
            size = sum(len(i.frame) for i in live)
            records = sum(i.records for i in live)
            if (
                len(live) <= self.max_frames
                and size <= self.max_bytes
                and records <= self.max_records
            ):
                self.clear()
                queue = self._own_queue()
                for queued in items:
                    queue.append(queued)
                    self._count(queued, 1)
                self.dropped_records += dropped
                self._kick()
                return True
        return False  # one record per topic plus the control frames do not fit

    # ------------------------------------------------------------------ sending
    def take(self) -> bytes:
        """Remove and return the oldest queued frame (the queue must not be empty)."""
        item = self.queue.popleft()
        self._count(item, -1)
        return item.frame

    def hold_ack(self, ack: FoldableAck) -> bool:
        """Hold ``ack`` in place of the one held before, which it acknowledges too when it is
        a later frame of the same producer; otherwise the held one is sent first. The held
        ack goes out within ``ACK_DELAY`` (:meth:`settle_ack`). False when the connection
        must close (slow consumer)."""
        held = self.pending_ack
        if held is not None and (held.pid != ack.pid or ack.request_id <= held.request_id):
            if not self.settle_ack():  # folds nothing: another producer's, or out of order
                return False
            held = None
        self.pending_ack = ack
        if held is None:
            if self.hub is None:
                return self.settle_ack()
            self.hub._hold_ack_soon(self)
        return True

    def settle_ack(self) -> bool:
        """Send the held ack, if any; False when the connection must close (slow consumer)."""
        ack, self.pending_ack = self.pending_ack, None
        if ack is None:
            return True
        return self.offer(_Item(p.encode_ack(ack.request_id, ack.seq, ack.count), 0, _CONTROL))

    def uncork(self) -> None:
        """Hand what :meth:`offer` left in the protocol buffer to the transport."""
        if self.corked:
            self.corked = 0
            try:
                flush(self.ws)
            except Exception:  # the connection is going away; its reader sees the close
                log.debug("livenb hub: write to connection %d failed", self.conn, exc_info=True)

    async def run_sender(self, send_timeout: float) -> None:
        ws = self.ws
        wake = self.wake
        assert wake is not None
        while True:
            try:
                async with asyncio.timeout(SENDER_IDLE):
                    await wake.wait()
            except TimeoutError:
                if not self.queue:  # idle: end the task; the next frame starts another
                    self.wake = self.sender = None
                    self.queue = _IDLE_QUEUE
                    return
            wake.clear()
            await write_all(ws, self._drain_queue(), send_timeout=send_timeout, drain=False)

    def _drain_queue(self) -> Iterator[bytes]:
        """The queued frames, oldest first, each taken off the queue as it is read (frames
        queued meanwhile included): no frame stays referenced once the sender is idle."""
        while self.queue:
            yield self.take()


def _conflate(items: list[_Item], trim: bool) -> tuple[list[_Item], int]:
    """Keep each topic's newest msg frame (with ``trim``: only its newest record), with a gap
    frame where the replaced records were; return the new items and the records dropped.
    Gap items in ``items`` belong to the calling peer and may be extended."""
    newest: dict[str, int] = {}
    for i, queued in enumerate(items):
        if queued.kind == _MSG:
            newest[queued.parse()] = i
    out: list[_Item] = []
    open_gaps: dict[str, _Item] = {}  # a topic's gap with none of its msg frames after it
    changed: list[_Item] = []
    dropped = 0

    def report(topic: str, first: int, last: int) -> None:
        gap = open_gaps.get(topic)
        if gap is not None and gap.last + 1 == first:
            gap.last = last
            changed.append(gap)
        else:
            open_gaps[topic] = gap = _Item.gap(topic, first, last)
            out.append(gap)

    for i, queued in enumerate(items):
        if queued.kind == _GAP:
            assert queued.topic is not None
            open_gaps[queued.topic] = queued
        elif queued.kind == _MSG:
            topic = queued.parse()
            if newest[topic] != i:
                dropped += queued.records
                report(topic, queued.first, queued.last)
                continue
            if trim and queued.records > 1:
                dropped += queued.records - 1
                report(topic, queued.first, queued.last - 1)
                queued = _newest_record(queued)
            open_gaps.pop(topic, None)
        out.append(queued)
    for gap in changed:
        assert gap.topic is not None
        gap.frame = p.encode(p.Gap(gap.topic, gap.first, gap.last, GAP_SLOW_CONSUMER))
    return out, dropped


def _newest_record(item: _Item) -> _Item:
    """A msg item with only the newest record of ``item`` (for this peer alone)."""
    obj = orjson.loads(item.frame)
    topic = item.parse()
    frame = p.encode_msg_frame(topic, item.last, obj["ts"], obj["batch"][-1:])
    newest = _Item(frame, 1, _MSG, item.replay)
    newest.topic = topic
    newest.first = newest.last = item.last
    return newest


class AsyncHub:
    """A livenb hub on the running asyncio loop.

    ``await hub.start()`` (or ``async with``) binds ``host:port`` (``port=0`` picks a free port,
    read it back from :attr:`port`). By default a random access token is required
    (:attr:`token`); ``auth=False`` turns that off. Every outgoing queue is bounded; see
    :meth:`stats` for the counters.

    Slow consumers: each connection's outgoing queue holds at most ``queue_frames`` frames,
    ``queue_records`` records and ``queue_bytes`` bytes, drained by its own sender task, so a
    stalled subscriber costs the hub no more than that and never slows the others. When a
    frame would overflow it, ``slow_consumer`` decides: ``"disconnect"`` (default: close with
    4008, a retryable code; the client resumes from the topic's history), ``"drop_oldest"``
    (drop the oldest queued records and tell the subscriber with ``gap`` frames, reason
    ``slow_consumer``) or ``"latest"`` (keep each topic's newest queued frame, then its newest
    record; the rest is reported as gaps). Under every policy a connection that does not take
    a single frame within ``send_timeout`` seconds is closed with 4008.
    """

    is_hub: Final = True  # closed after clients at interpreter exit

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        token: str | None = None,
        auth: bool = True,
        max_size: int = DEFAULT_MAX_SIZE,
        queue_frames: int = DEFAULT_QUEUE_FRAMES,
        queue_bytes: int = DEFAULT_QUEUE_BYTES,
        queue_records: int = DEFAULT_QUEUE_RECORDS,
        slow_consumer: str = DEFAULT_SLOW_CONSUMER,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        auth_timeout: float = DEFAULT_AUTH_TIMEOUT,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
        history: HistoryLimits = DEFAULT_HISTORY,
        history_rules: Mapping[str, HistoryLimits] | None = None,
        history_total_bytes: int = DEFAULT_HISTORY_TOTAL_BYTES,
        max_topics: int = DEFAULT_MAX_TOPICS,
        max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS,
        journal: str | os.PathLike[str] | None = None,
        engine: str | None = None,
        engine_prefix: str = "livenb",
        origins: Iterable[str] = (),
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        rate_limit: float | None = DEFAULT_RATE_LIMIT,
        rate_burst: float | None = None,
        tokens: Mapping[str, Mapping[str, Iterable[str]]] | None = None,
        tls: bool = False,
        certfile: str | os.PathLike[str] | None = None,
        keyfile: str | os.PathLike[str] | None = None,
        insecure: bool = False,
        compression: bool = False,
        max_unauthenticated: int = DEFAULT_MAX_UNAUTHENTICATED,
        auth_failure_burst: int = DEFAULT_AUTH_FAILURE_BURST,
        auth_failure_rate: float = DEFAULT_AUTH_FAILURE_RATE,
    ) -> None:
        if keyfile is not None and certfile is None:
            raise ValueError("keyfile= needs certfile=")
        self.tls = tls or certfile is not None
        if not is_loopback(host) and not (self.tls and auth):
            if not insecure:
                raise LivenbError(
                    f"binding to {host!r} exposes the hub beyond this machine: that needs both "
                    "a token and TLS (tls=True, or certfile=/keyfile=), so the token and the "
                    "records do not cross the network in clear text; or bind 127.0.0.1 and "
                    "tunnel (ssh -L); or pass insecure=True (livenb serve --insecure) if you "
                    "accept the risk"
                )
            log.warning(
                "livenb hub: bound to %s with insecure=True and without %s: the traffic can be "
                "read or forged on the network",
                host,
                "TLS" if auth else "a token",
            )
        self.certfile = None if certfile is None else Path(certfile)
        self.keyfile = None if keyfile is None else Path(keyfile)
        self.cafile: Path | None = None  # with a self-signed certificate: give it to clients
        if max_connections < 1 or max_unauthenticated < 1:
            raise ValueError("max_connections and max_unauthenticated must be >= 1")
        self.origins = allowlist(origins)
        self._own_origins: frozenset[tuple[str, str, int]] = frozenset()  # set at start
        # A secret path prefix for the hub's page behind a proxy (see browser_url): a
        # WebSocket opened from that page may come from the proxy's origin.
        self._page_key = secrets.token_urlsafe(16)
        self.max_connections = max_connections
        self.max_unauthenticated = max_unauthenticated
        self._throttle = FailureThrottle(auth_failure_burst, auth_failure_rate)
        # Connections let in without an Authorization header that have not sent their auth
        # message yet; capped, so they cannot take every connection slot for auth_timeout.
        self._unauthenticated: set[ServerConnection] = set()
        self._refused: dict[str, int] = {
            "origin": 0,  # HTTP 403
            "token": 0,  # HTTP 401, or close 4401 (wrong, missing or late auth message)
            "throttled": 0,  # HTTP 429: too many failed logins from the address
            "capacity": 0,  # HTTP 503: max_connections
            "unauthenticated": 0,  # HTTP 503: max_unauthenticated waiting for auth
        }
        self._oversized = 0  # connections closed with 1009
        self._fd_limit: int | None = None  # the soft file-descriptor limit after start
        if not auth and token is not None:
            raise ValueError("give a token or auth=False, not both")
        for given in [token or "", *(tokens or {})]:
            if given and len(given) < 16:  # the random default has 32 characters (192 bits)
                log.warning(
                    "livenb hub: a token of %d characters can be guessed; use at least 16 "
                    "random characters (or let the hub make one)",
                    len(given),
                )
        if slow_consumer not in SLOW_CONSUMER_POLICIES:
            raise ValueError(
                f"slow_consumer must be one of {', '.join(map(repr, SLOW_CONSUMER_POLICIES))} "
                f"(got {slow_consumer!r})"
            )
        if min(queue_frames, queue_bytes, queue_records) < 1:
            raise ValueError("queue_frames, queue_bytes and queue_records must be >= 1")
        if send_timeout <= 0:
            raise ValueError("send_timeout must be > 0 seconds")
        self.host = host
        self._requested_port = port
        self.token: str | None = (token or _new_token()) if auth else None
        self.max_size = max_size
        self.compression = compression
        self.queue_frames = queue_frames
        self.queue_bytes = queue_bytes
        self.queue_records = queue_records
        self.slow_consumer = slow_consumer
        self.send_timeout = send_timeout
        self.auth_timeout = auth_timeout
        if not handshake_timeout > 0:
            raise ValueError("handshake_timeout must be > 0 seconds")
        self.handshake_timeout = handshake_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.journal_path = None if journal is None else Path(journal)
        if engine is not None and journal is not None:
            raise ValueError("give journal= or engine=, not both (Redis keeps the history)")
        if engine is not None and not engine.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"engine must be a redis:// URL (got {engine!r})")
        self.engine_url = engine
        self.engine_prefix = engine_prefix
        self._engine: RedisEngine | None = None
        self._journal: Journal | None = None
        self._core_options: dict[str, Any] = {
            "token": self.token,
            "max_topics": max_topics,
            "max_subscriptions": max_subscriptions,
            "history": history,
            "history_rules": [
                (check_pattern(pattern), limits)
                for pattern, limits in (history_rules or {}).items()
            ],
            "history_total_bytes": history_total_bytes,
            "rate_limit": rate_limit,
            "rate_burst": rate_burst,
            "tokens": {t: grants(rights) for t, rights in (tokens or {}).items()},
        }
        self._core = HubCore(**self._core_options)
        self._server: Server | None = None
        self._peers: dict[int, _Peer] = {}
        self._corked: list[_Peer] = []  # peers with frames awaiting _uncork_all
        self._uncork_scheduled = False
        self._acks_held: list[_Peer] = []  # peers holding an ack for _send_held_acks
        self._ids = itertools.count(1)
        self._port: int | None = None
        self._started_at = 0.0
        self._slow_consumer_drops = 0  # connections closed as slow consumers
        self._dropped_records = 0  # by drop_oldest / latest, on connections now closed
        self._dead_peers = 0
        self._closers: set[asyncio.Task[None]] = set()  # 4008 closes in progress
        self._heartbeat: asyncio.Task[None] | None = None  # the hub-wide keepalive
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> Self:
        """Bind and start serving; raise :class:`LivenbError` when the address is unusable."""
        if self._server is not None:
            return self
        if self._closed:
            raise LivenbError("this hub was closed; create a new one")
        self._fd_limit = check_capacity(self.max_connections)
        if self.journal_path is not None and self._journal is None:
            await self._open_journal(self.journal_path)
        if self.engine_url is not None and self._engine is None:
            await self._open_engine(self.engine_url)
        ssl_context = None
        if self.tls:
            if self.certfile is None:  # tls=True: a self-signed certificate for this host
                self.certfile, self.keyfile = await asyncio.to_thread(
                    self_signed, None, self.host
                )
                self.cafile = self.certfile
            assert self.certfile is not None
            ssl_context = server_context(self.certfile, self.keyfile)
        try:
            self._server = await serve(
                self._handle,
                self.host,
                self._requested_port,
                ssl=ssl_context,
                open_timeout=self.handshake_timeout,  # slow or half-open handshakes are closed
                # permessage-deflate when asked for: websockets bounds every message's
                # *decompressed* size by max_size, so a compression bomb closes with 1009
                # after max_size bytes, never more.
                compression="deflate" if self.compression else None,
                max_size=self.max_size,
                ping_interval=None,  # livenb's own keepalive (see _keepalive.py)
                process_request=self._process_request,
                server_header=None,
                logger=traffic_logger("livenb.hub.websockets"),  # tokens masked
            )
        except OSError as exc:
            raise LivenbError(
                f"cannot listen on {self.host}:{self._requested_port} ({exc.strerror or exc}); "
                "pick another port, or port=0 for a free one"
            ) from exc
        self._port = self._server.sockets[0].getsockname()[1] if self._server.sockets else 0
        self._started_at = time.time()
        self._own_origins = own_origins(self.host, self._port, self.tls)
        if self.ping_interval is not None and self.ping_timeout is not None:
            self._heartbeat = asyncio.create_task(
                self._keepalive(self.ping_interval, self.ping_timeout), name="livenb-hub-keepalive"
            )
        log.info("livenb hub listening on %s (auth %s)", self.url, "on" if self.token else "OFF")
        if self.token is None:
            log.warning(
                "livenb hub %s: authentication is OFF (auth=False): any program or web page "
                "allowed to connect can read and publish every topic",
                self.url,
            )
        return self

    async def _open_engine(self, url: str) -> None:
        """Join the hubs that share ``url``: their epoch and numbering become this hub's."""
        core = self._core

        def maxlen(topic: str) -> int:  # stream entries are batches: at most one per record
            return max(1, limits_for(topic, core.history, core.history_rules).records)

        def now() -> float:
            return time.time()

        def on_batch(topic: str, first: int, ts: float, records: list[Any]) -> None:
            self._core.deliver(topic, first, ts, records, now())
            self._flush_core()

        def on_stored(forward: Forward, first: int, count: int, duplicate: bool) -> None:
            self._core.stored(forward, first, count, duplicate)
            self._flush_core()

        def on_refused(forward: Forward, code: str, message: str) -> None:
            self._core.refuse(forward, code, message)
            self._flush_core()

        engine = RedisEngine(
            url,
            on_batch=on_batch,
            on_stored=on_stored,
            on_refused=on_refused,
            maxlen_for=maxlen,
            prefix=self.engine_prefix,
        )
        epoch = await engine.start()
        self._core = HubCore(epoch=epoch, sequenced=False, **self._core_options)
        engine.wanted = self._core.wanted
        engine.discovered = self._discovered
        self._engine = engine
        log.info("livenb hub: Redis engine %s, epoch %s", url, epoch)

    def _discovered(self, topic: str) -> None:
        """A topic another node created: follow it if one of our patterns wants it."""
        engine = self._engine
        if engine is not None and self._core.wanted(topic) and not engine.tracks(topic):
            engine.follow(topic)

    async def _prime(self, conn: int, pattern: str) -> bool:
        """Before a ``sub`` with an engine: bring the topics it names into this hub (their
        history and last seq), so replies and resumes are the same on every node."""
        engine = self._engine
        assert engine is not None
        core = self._core
        try:
            if is_pattern(pattern):
                topics = sorted(t for t in await engine.known_topics() if matches(pattern, t))
            else:
                topics = [pattern]
            # Only what this connection may read (the core refuses the rest), and no more
            # topics than a node reads at most.
            topics = [
                t
                for t in topics
                if core.may_read(conn, t) and not core.knows(t) and not engine.tracks(t)
            ]
            if len(topics) > engine.room():
                raise LivenbError(
                    f"this hub already reads its maximum of {engine.max_tracked} topics"
                )
            for topic in topics:
                if engine.tracks(topic):  # primed meanwhile, for another connection
                    continue
                limits = limits_for(topic, core.history, core.history_rules)
                last, batches = await engine.prime(topic, max(1, limits.records), limits.bytes)
                if not core.knows(topic):
                    core.restore(topic, last, batches, time.time())
        except Exception as exc:  # Redis unreachable, or too many topics: refuse this sub
            if not isinstance(exc, LivenbError):
                engine._lost(exc)
            core.reject(
                conn,
                p.ENGINE_UNAVAILABLE,
                f"the hub cannot read {pattern!r} from its Redis engine ({exc}); subscribe again later",
                pattern,
            )
            self._flush_core()
            return False
        return True

    def _flush_core(self) -> None:
        for peer, code, reason in self._dispatch(self._core.drain()):
            self._close_peer(peer, code, reason)

    async def _open_journal(self, path: Path) -> None:
        """Load the journal: its epoch, seqs, recent history and producers become the hub's."""
        core = self._core

        def limits(topic: str) -> HistoryLimits:
            return limits_for(topic, core.history, core.history_rules)

        state = await asyncio.to_thread(Journal.load, path, limits)
        self._core = core = HubCore(epoch=state.epoch, journaled=True, **self._core_options)
        now = time.time()
        for topic, last in state.last_seq.items():
            core.restore(topic, last, _batches(topic, state.recent.get(topic, [])), now)
        for pid, highest in state.producers.items():
            core.producers.restore(pid, highest)
        loop = asyncio.get_running_loop()

        def durable(group: list[Persist]) -> None:  # on the journal's thread
            with contextlib.suppress(RuntimeError):  # the loop is gone: the hub is closed
                loop.call_soon_threadsafe(self._on_durable, group)

        def failed(exc: BaseException) -> None:  # on the journal's thread
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._journal_failed, exc)

        self._journal = Journal(path, limits, durable, on_failure=failed)
        self._journal.start()
        log.info("livenb hub: journal %s, epoch %s, %d topics", path, state.epoch, len(state.last_seq))

    def _journal_failed(self, exc: BaseException) -> None:
        """The journal cannot write: nothing more can be acknowledged. Close every connection
        (1011, retryable) and refuse new ones (HTTP 503) so clients keep their unacknowledged
        records and retry, instead of waiting on a hub that cannot keep its promise."""
        log.error("livenb hub: the journal failed (%r); refusing connections until restarted", exc)
        for peer in list(self._peers.values()):
            if not peer.closing:
                peer.closing = True
                task = asyncio.create_task(peer.ws.close(1011, "journal failed"))
                self._closers.add(task)
                task.add_done_callback(self._closers.discard)

    def _on_durable(self, group: list[Persist]) -> None:
        now = time.time()
        for batch in group:
            self._core.commit(batch, now)
        self._dispatch(self._core.drain())

    async def close(self) -> None:
        """Stop accepting, close every connection with 1001 (going away), and write what the
        journal still holds; idempotent."""
        self._closed = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.close()
        journal, self._journal = self._journal, None
        if journal is not None:
            await asyncio.to_thread(journal.close)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ facts
    @property
    def port(self) -> int:
        """The bound port (valid after start)."""
        if self._port is None:
            raise LivenbError("the hub is not started yet; await hub.start() first")
        return self._port

    @property
    def url(self) -> str:
        """The hub's ``ws://host:port`` (``wss://`` with TLS) URL (valid after start)."""
        return _format_url("wss" if self.tls else "ws", self.host, self.port)

    @property
    def epoch(self) -> str:
        return self._core.epoch

    @property
    def running(self) -> bool:
        return self._server is not None

    def stats(self) -> dict[str, Any]:
        """A snapshot of counters: connections, topics, frames and records in and out, drops.

        ``drops`` counts connections closed as slow consumers (4008);
        ``slow_consumer_drops_records`` the records that ``drop_oldest`` / ``latest`` dropped
        from outgoing queues (each reported to its subscriber in a gap frame)."""
        c = self._core.counters
        # list() copies in one step, so stats() is safe to call from another thread
        peers = list(self._peers.values())
        return {
            "url": self.url if self._port is not None else None,
            "running": self.running,
            "epoch": self._core.epoch,
            "uptime": time.time() - self._started_at if self._started_at else 0.0,
            "auth": self.token is not None,
            "connections": self._core.connections,
            "topics": self._core.topics,
            "subscriptions": self._core.subscriptions,
            "frames_in": c.frames_in,
            "records_in": c.records_in,
            "frames_out": c.frames_out,
            "records_out": c.records_out,
            "errors": dict(c.errors),
            "drops": self._slow_consumer_drops,
            "dead_peers": self._dead_peers,
            "refused": dict(self._refused),
            "unauthenticated": len(self._unauthenticated),
            "throttled_addresses": len(self._throttle),
            "oversized_frames": self._oversized,
            "rate_limited_records": c.rate_limited,
            "max_connections": self.max_connections,
            "fd_limit": self._fd_limit,
            "journal": None if self.journal_path is None else str(self.journal_path),
            "engine": None if self._engine is None else self._engine.stats(),
            "journal_commits": 0 if self._journal is None else self._journal.commits,
            "journal_failure": (
                None
                if self._journal is None or self._journal.failure is None
                else repr(self._journal.failure)
            ),
            "history_bytes": self._core.history_bytes,
            "replayed_frames": c.replayed,
            "gaps_reported": c.gaps,
            "duplicates_dropped": self._core.producers.duplicates,
            "slow_consumer_policy": self.slow_consumer,
            "slow_consumer_drops_records": self._dropped_records
            + sum(peer.dropped_records for peer in peers),
            "queued_frames": sum(len(peer.queue) for peer in peers),
            "queued_records": sum(peer.records for peer in peers),
            "queued_bytes": sum(peer.bytes for peer in peers),
        }

    def status(self, *, stale_after: float = 5.0, rate: float = 2.0) -> StatusPanel:
        """A live health panel: connections, topics, rates in and out, drops, gaps, refusals;
        marked stale when no records moved for ``stale_after`` seconds."""
        from .widgets import StatusPanel

        return StatusPanel(
            self.stats, "hub", stale_after=stale_after, rate=rate, title=f"livenb hub {self.url}"
        )

    def __repr__(self) -> str:
        where = self.url if self._port is not None else f"{self.host}:{self._requested_port}"
        auth = "token=***" if self.token else "auth=OFF (anyone who can connect can read and write)"
        state = "running" if self.running else "stopped"
        return f"<AsyncHub {where} {auth} {state}>"

    # ------------------------------------------------------------------ connections
    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        headers = request.headers
        connection = ", ".join(headers.get_all("Connection"))  # (headers may repeat)
        if not is_upgrade(connection, ", ".join(headers.get_all("Upgrade"))):
            return self._serve_page(ws, request)
        # A web page the user visits can open a WebSocket to localhost: only pages from an
        # allowed origin may (browsers always send Origin; other clients do not).
        origin = headers.get_all("Origin")
        if len(origin) > 1 or not self._origin_ok(origin[0] if origin else None, request.path):
            self._refused["origin"] += 1
            return ws.respond(HTTPStatus.FORBIDDEN, "livenb: this page's origin is not allowed\n")
        if len(self._peers) >= self.max_connections:
            self._refused["capacity"] += 1
            return ws.respond(HTTPStatus.SERVICE_UNAVAILABLE, "livenb: too many connections\n")
        if self._journal is not None and self._journal.failure is not None:
            return ws.respond(
                HTTPStatus.SERVICE_UNAVAILABLE, "livenb: the hub's journal failed; try later\n"
            )
        if self.token is None:
            return None  # auth is off: an Authorization header (e.g. from a proxy) is ignored
        authorization = headers.get_all("Authorization")
        if not authorization:  # may authenticate with {"op":"auth"} as its first message
            # Cheap early refusal; the place is taken in _handle, once the handshake is done.
            if len(self._unauthenticated) >= self.max_unauthenticated:
                return self._too_many_waiting(ws)
            return None
        scheme, _, presented = authorization[0].partition(" ")
        if (
            len(authorization) == 1
            and scheme.lower() == "bearer"
            and self._core.check_token(presented.strip())
        ):
            # The right token always gets in: the throttle must not let one local process
            # that keeps failing lock out everyone who shares its address (127.0.0.1).
            return None
        address = _address(ws)
        now = time.monotonic()
        if self._throttle.blocked(address, now):
            self._refused["throttled"] += 1
            wait = math.ceil(self._throttle.retry_after(address, now))
            response = ws.respond(
                HTTPStatus.TOO_MANY_REQUESTS,
                f"livenb: too many failed logins from this address; retry in {wait} s\n",
            )
            response.headers["Retry-After"] = str(wait)
            return response
        self._login_failed(ws)
        return ws.respond(HTTPStatus.UNAUTHORIZED, "livenb: missing or wrong access token\n")

    def _too_many_waiting(self, ws: ServerConnection) -> Response:
        self._refused["unauthenticated"] += 1
        return ws.respond(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "livenb: too many connections waiting to authenticate; retry, or send an "
            "Authorization header\n",
        )

    def _origin_ok(self, origin: str | None, path: str) -> bool:
        """No Origin (not a browser), an allowed one, the hub's own page (its own address, by
        a loopback name or the bound host), or a page served under the page key's path
        (through a proxy, whose origin the hub cannot know)."""
        if origin_allowed(origin, self.origins) or origin_allowed(origin, self._own_origins):
            return True
        prefix = f"/p/{self._page_key}/"
        return hmac.compare_digest(path[: len(prefix)].encode(), prefix.encode())

    def healthy(self) -> tuple[bool, str]:
        """``(True, "ok")`` while the hub serves and can keep its promises; else ``(False,
        why)``. What ``GET /healthz`` reports (200 or 503) to load balancers."""
        if self._closed or self._server is None:
            return False, "not serving"
        if self._journal is not None and self._journal.failure is not None:
            return False, "the journal failed"
        if self._engine is not None:
            return self._engine.healthy()
        return True, "ok"

    def _serve_health(self, ws: ServerConnection) -> Response:
        ok, why = self.healthy()
        body = orjson.dumps({"status": "ok" if ok else "unavailable", "reason": why})
        status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
        return _respond(ws, status, "application/json", body, {"Cache-Control": "no-store"})

    def _serve_page(self, ws: ServerConnection, request: Request) -> Response:
        if request.path.split("?", 1)[0] == "/healthz":  # for load balancers; no auth, no data
            return self._serve_health(ws)
        found = page(request.path)
        if found is None:
            return ws.respond(
                HTTPStatus.NOT_FOUND,
                "livenb: not found; this is a livenb hub (WebSocket), its page is at /\n",
            )
        content_type, body = found
        return _respond(ws, HTTPStatus.OK, content_type, body, SECURITY_HEADERS)

    def browser_url(self, *, token: bool = False) -> str:
        """Where a browser finds the hub's page (publish and watch topics from a phone or
        another browser). Under JupyterHub or Binder (``JUPYTERHUB_SERVICE_PREFIX`` set) it
        is the path through jupyter-server-proxy, ``<prefix>proxy/<port>/p/<key>/``, so it
        works wherever the notebook does; otherwise the hub's own ``http(s)://`` address.
        ``token=True`` appends ``#token=...`` (a fragment: browsers never send it, but a
        displayed link is saved in the notebook, so share it with care)."""
        path = f"p/{self._page_key}/"
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
        if prefix:
            base = f"/{prefix.strip('/')}".rstrip("/")  # "/user/ada" (or "" for "/")
            url = f"{base}/proxy/{self.port}/{path}"
        else:
            host = "127.0.0.1" if self.host in ("", "0.0.0.0") else "::1" if self.host == "::" else self.host
            url = f"{_format_url('https' if self.tls else 'http', host, self.port)}/{path}"
        if token and self.token:
            url += f"#token={self.token}"
        return url

    def _login_failed(self, ws: ServerConnection) -> None:
        """Count a refused token (header or auth message) against the client's address."""
        self._refused["token"] += 1
        self._throttle.failed(_address(ws), time.monotonic())

    async def _handle(self, ws: ServerConnection) -> None:
        conn = next(self._ids)
        # _process_request already refused a wrong header; a present one is a hub token.
        header = None if ws.request is None else ws.request.headers.get("Authorization")
        has_header = header is not None
        core = self._core
        core.open(
            conn,
            permissions=None if header is None else core.authorize(header.partition(" ")[2].strip()),
        )
        peer = _Peer(
            conn, ws, self.queue_frames, self.queue_bytes, self.queue_records, self.slow_consumer
        )
        peer.hub = self
        self._peers[conn] = peer
        try:
            if not has_header and self.token is not None:
                # Only connections whose handshake succeeded take a waiting place, so a
                # handshake refused after _process_request can never hold one.
                if len(self._unauthenticated) >= self.max_unauthenticated:
                    self._refused["unauthenticated"] += 1
                    await ws.close(CLOSE_TRY_AGAIN_LATER, "too many connections waiting to authenticate")
                    return
                self._unauthenticated.add(ws)
                try:
                    async with asyncio.timeout(self.auth_timeout):
                        await self._receive(conn, await ws.recv())
                except TimeoutError:
                    self._login_failed(ws)
                    await ws.close(p.CLOSE_UNAUTHORIZED, "no auth message in time")
                    return
                finally:
                    self._unauthenticated.discard(ws)  # authenticated, or on its way out
            async for frame in ws:
                peer.liveness.heard()
                await self._receive(conn, frame)
        except ConnectionClosed:
            pass
        finally:
            self._unauthenticated.discard(ws)
            close = ws.protocol.close_sent
            if close is not None and close.code == p.CLOSE_TOO_BIG:
                self._oversized += 1
            core.close(conn)
            del self._peers[conn]
            peer.closing = True  # a held ack or a corked write due later must not revive it
            peer.pending_ack = None
            self._dropped_records += peer.dropped_records
            for task in (peer.sender, peer.pinger):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _receive(self, conn: int, frame: str | bytes) -> None:
        peer = self._peers.get(conn)
        if peer is not None and peer.closing:
            return  # read only to reach the peer's close frame; nothing more is handled
        core = self._core
        sub = None
        if self._engine is not None and type(frame) is str and '"sub"' in frame:
            sub = _sub_of(frame)
            if sub is not None and core.authenticated(conn) and not await self._prime(conn, sub):
                return  # refused with engine_unavailable
            core = self._core
        if type(frame) is str:
            core.receive(conn, frame, time.time())
            if sub is not None and is_pattern(sub) and self._engine is not None:
                self._engine.sweep(core.wanted)  # topics found while it was being set up
        else:
            core.receive_binary(conn)
        if core.internal_failures:
            for exc in core.internal_failures:
                log.error("livenb hub: a request failed inside the hub", exc_info=exc)
            core.internal_failures.clear()
        for peer, code, reason in self._dispatch(core.drain()):
            if code == p.CLOSE_UNAUTHORIZED:
                self._login_failed(peer.ws)
            self._close_peer(peer, code, reason)

    def _dispatch(self, actions: list[Action]) -> list[tuple[_Peer, int, str]]:
        """Queue frames, hand batches to the journal; return the closes to carry out."""
        closes = []
        peers = self._peers
        for action in actions:
            if type(action) is Send:
                item = _Item.of(action)  # one per frame, shared by every target
                for target in action.targets:
                    peer = peers.get(target)
                    if peer is not None and not peer.closing and not peer.offer(item):
                        self._slow_consumer(peer)
            elif type(action) is FoldableAck:
                peer = peers.get(action.conn)
                if peer is not None and not peer.closing and not peer.hold_ack(action):
                    self._slow_consumer(peer)
            elif type(action) is Forward:
                assert self._engine is not None
                self._engine.submit(action)
            elif type(action) is Persist:
                assert self._journal is not None
                self._journal.submit(action)
            elif type(action) is Close:
                peer = peers.get(action.conn)
                if peer is not None:
                    closes.append((peer, action.code, action.reason))
        return closes

    def _dead_peer(self) -> None:
        self._dead_peers += 1
        log.warning("livenb hub: a peer stopped answering pings; connection aborted")

    def _slow_consumer(self, peer: _Peer) -> None:
        if peer.closing:
            return  # already on its way out; counted once
        self._slow_consumer_drops += 1
        peer.closing = True
        dropped = peer.clear()
        log.warning(
            "livenb hub: connection %d could not keep up (%d frames queued); closing it (%d)",
            peer.conn,
            dropped,
            p.CLOSE_SLOW_CONSUMER,
        )
        task = asyncio.create_task(self._close_slow(peer.ws), name=f"livenb-hub-close-{peer.conn}")
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)
        task.add_done_callback(_ignore_result)

    async def _close_slow(
        self,
        ws: ServerConnection,
        code: int = p.CLOSE_SLOW_CONSUMER,
        reason: str = "slow consumer",
    ) -> None:
        """Close with ``code``. The close frame waits behind what is already written; a peer
        that does not take it within ``send_timeout`` is aborted, which frees its buffers."""
        # websockets would otherwise abort on its own close_timeout (10 s) once the close
        # frame is handed over: send_timeout is the one bound, as documented.
        ws.close_timeout = self.send_timeout
        try:
            async with asyncio.timeout(self.send_timeout):
                await ws.close(code, reason)
        except TimeoutError:
            ws.transport.abort()

    def _close_peer(self, peer: _Peer, code: int, reason: str) -> None:
        """Close ``peer`` in the background: the close handshake needs the peer's reply, which
        may sit behind frames its handler has yet to read (and discard)."""
        if peer.closing:
            return
        peer.closing = True
        task = asyncio.create_task(self._close_slow(peer.ws, code, reason))
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    def _uncork_soon(self, peer: _Peer) -> None:
        """Write ``peer``'s corked frames once the loop's current step is done."""
        self._corked.append(peer)
        if not self._uncork_scheduled:
            self._uncork_scheduled = True
            asyncio.get_running_loop().call_soon(self._uncork_all)

    def _uncork_all(self) -> None:
        # Peers corked meanwhile (by a held ack going out) are written in the same pass: no
        # extra turn of the loop (each costs an epoll_wait).
        while self._corked:
            corked, self._corked = self._corked, []
            for peer in corked:
                peer.uncork()
        self._uncork_scheduled = False

    def _hold_ack_soon(self, peer: _Peer) -> None:
        """Send ``peer``'s held ack within ``ACK_DELAY`` (with every other peer's)."""
        self._acks_held.append(peer)
        if len(self._acks_held) == 1:
            asyncio.get_running_loop().call_later(ACK_DELAY, self._send_held_acks)

    def _send_held_acks(self) -> None:
        held, self._acks_held = self._acks_held, []
        for peer in held:
            if peer.closing:
                peer.pending_ack = None
            elif not peer.settle_ack():
                self._slow_consumer(peer)

    def _start_sender(self, peer: _Peer) -> None:
        peer.sender = asyncio.create_task(self._run_sender(peer), name=f"livenb-hub-send-{peer.conn}")

    async def _keepalive(self, interval: float, grace: float) -> None:
        """One task pings every quiet connection (not one task per connection): a peer that
        sent nothing for ``interval`` seconds gets a ping; one that then stays silent for
        ``grace`` seconds is aborted (see _keepalive.py for why writes do not count)."""
        step = max(0.05, min(1.0, interval / 4, grace / 4))
        while True:
            await asyncio.sleep(step)
            now = time.monotonic()
            for peer in list(self._peers.values()):
                if peer.ping_sent is None:
                    if now - peer.liveness.last_heard >= interval and not peer.closing:
                        peer.ping_sent = now
                        peer.pinger = asyncio.create_task(ping(peer.ws, peer.liveness))
                elif peer.liveness.last_heard >= peer.ping_sent:
                    peer.ping_sent = None  # heard from it since the ping
                elif now - peer.ping_sent >= grace:
                    peer.ping_sent = None
                    peer.ws.transport.abort()  # frees the socket at once; no close handshake
                    self._dead_peer()

    async def _run_sender(self, peer: _Peer) -> None:
        try:
            await peer.run_sender(self.send_timeout)
        except TimeoutError:
            if not peer.closing:  # else _close_slow is already on it
                log.warning("livenb hub: send to connection %d timed out; closing it", peer.conn)
                self._slow_consumer(peer)
        except ConnectionClosed:
            pass


def _respond(
    ws: ServerConnection,
    status: HTTPStatus,
    content_type: str,
    body: bytes,
    extra: Mapping[str, str],
) -> Response:
    """An HTTP response with ``body`` (websockets' own respond() makes text/plain)."""
    response = ws.respond(status, "")
    response.body = body
    headers = response.headers
    del headers["Content-Length"], headers["Content-Type"]
    headers["Content-Length"] = str(len(body))
    headers["Content-Type"] = content_type
    for name, value in extra.items():
        headers[name] = value
    return response


def _new_token() -> str:
    """A random 192-bit token that does not start with "-" (a command line would take
    ``--token -abc`` for an option)."""
    while True:
        token = secrets.token_urlsafe(24)
        if not token.startswith("-"):
            return token


def own_origins(host: str, port: int, tls: bool) -> frozenset[tuple[str, str, int]]:
    """The origins of the hub's own page: its address by a loopback name or the bound
    host (never by whatever Host header a request brings: that would let a DNS-rebinding
    page through)."""
    names = {"127.0.0.1", "localhost", "[::1]"}
    if host not in ("", "0.0.0.0", "::"):
        names.add(f"[{host}]" if ":" in host and not host.startswith("[") else host)
    scheme = "https" if tls else "http"
    return allowlist(f"{scheme}://{name}:{port}" for name in names)


def _sub_of(frame: str) -> str | None:
    """The topic or pattern of a valid ``sub`` frame (None for anything else)."""
    try:
        message = p.decode_client(frame)
    except ProtocolError:
        return None
    return message.topic if isinstance(message, p.Sub) else None


def _address(ws: ServerConnection) -> str:
    """The client's IP address (the throttle's key)."""
    remote = ws.remote_address
    return str(remote[0]) if remote else "?"


def _ignore_result(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _batches(topic: str, rows: list[tuple[int, float, Any]]) -> list[Batch]:
    """Journal rows (seq, ts, record) as history batches: consecutive rows with one ts came
    from one published frame."""
    batches: list[Batch] = []
    group: list[Any] = []
    first = 0
    ts = 0.0
    for seq, row_ts, record in rows:
        if group and (row_ts != ts or seq != first + len(group)):
            batches.append(Batch(first, ts, len(group), p.encode_msg_frame(topic, first, ts, group)))
            group = []
        if not group:
            first, ts = seq, row_ts
        group.append(record)
    if group:
        batches.append(Batch(first, ts, len(group), p.encode_msg_frame(topic, first, ts, group)))
    return batches
