"""Hub routing state: connections, subscriptions, per-topic ``seq``. Pure, no I/O.

The hub's I/O layer drives :class:`HubCore` with "receive, then drain": it hands every frame a
connection sent to :meth:`HubCore.receive` (or :meth:`HubCore.receive_binary`) and then sends
what :meth:`HubCore.drain` returns. Frames for subscribers are encoded once per topic batch and
shared by every receiving connection.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

import orjson

from . import _protocol as p
from ._errors import ProtocolError
from ._history import (
    DEFAULT_HISTORY,
    DEFAULT_HISTORY_TOTAL_BYTES,
    Batch,
    HistoryLimits,
    TopicHistory,
    limits_for,
)
from ._permissions import EVERYTHING, Permissions
from ._producers import ProducerTable
from ._topics import is_pattern, matches

GAP_EPOCH_CHANGED: Final = "epoch_changed"  # the hub restarted without the old history
GAP_HISTORY_EXCEEDED: Final = "history_exceeded"  # older than what the topic's history keeps

DEFAULT_MAX_TOPICS: Final = 100_000
DEFAULT_MAX_SUBSCRIPTIONS: Final = 1_000
# Records per second per connection: far above what one client needs, far below a flood.
DEFAULT_RATE_LIMIT: Final = 1_000_000.0
# Rate-limited frames (forgiven at one per second) before a flooding connection is closed.
MAX_STRIKES: Final = 100


@dataclass(slots=True)  # not frozen: made per frame, and frozen ones construct 5x slower
class Send:
    """Send ``frame`` (a text frame) to each connection in ``targets``; it carries ``records``."""

    targets: tuple[int, ...]
    frame: bytes
    records: int = 0
    replay: bool = False  # a frame of a resume's replay (shared with the history)


@dataclass(slots=True)  # not frozen: made per frame, and frozen ones construct 5x slower
class FoldableAck:
    """The ack of a cumulative pub of ``conn`` (protocol section 5.4). The I/O layer may
    hold it until it has handled what it already read, replacing it by a later one (which
    acknowledges both), and encodes only the one it sends (:func:`_protocol.encode_ack`)."""

    conn: int
    request_id: int  # the frame number (cumulative pubs always have a pid)
    pid: str
    seq: int
    count: int


@dataclass(slots=True)  # not frozen: made per frame, and frozen ones construct 5x slower
class Persist:
    """A published batch to make durable; once it is, call :meth:`HubCore.commit`.

    ``dup_count`` > 0 marks a barrier for a retried frame: no records, only its ack (sent
    after everything before it is durable)."""

    conn: int
    topic: str
    first: int
    ts: float
    records: list[Any]
    request_id: p.RequestId | None
    pid: str | None
    dup_count: int = 0
    frame: bytes = b""  # the encoded msg frame (empty for a duplicate's barrier)
    cumulative: bool = False  # its ack may be folded into a later one (Pub.cumulative)


@dataclass(frozen=True, slots=True)
class Close:
    """Close connection ``conn`` with WebSocket close ``code`` and ``reason``."""

    conn: int
    code: int
    reason: str


@dataclass(slots=True)  # not frozen: made per frame, and frozen ones construct 5x slower
class Forward:
    """With an engine (``sequenced=False``): a checked publish for the engine to store. The
    engine assigns ``seq`` and ``ts``; call :meth:`HubCore.stored` with the result (it sends
    the ack), and every node's reader hands the stored batch to :meth:`HubCore.deliver`."""

    conn: int
    topic: str
    records: list[Any]
    request_id: p.RequestId | None
    pid: str | None
    body: bytes = b""  # the records as a JSON array, encoded once (what the engine stores)
    cumulative: bool = False  # its ack may be folded into a later one (Pub.cumulative)


Action = Send | Close | Persist | Forward | FoldableAck


@dataclass(slots=True)
class _Connection:
    perms: Permissions | None  # None until the connection has authenticated
    patterns: set[str] = field(default_factory=set)
    tokens: float = 0.0  # the publish rate limit's token bucket, in records
    refilled: float = float("-inf")  # when the bucket was last topped up (starts full)
    strikes: float = 0.0  # rate-limited frames, forgiven at one per second
    struck: float = 0.0  # when strikes was last updated


@dataclass(slots=True)
class HubCounters:
    """Monotonic counters for ``hub.stats()``."""

    frames_in: int = 0
    records_in: int = 0
    frames_out: int = 0
    records_out: int = 0
    replayed: int = 0  # frames replayed from history on resume
    rate_limited: int = 0  # records refused by the publish rate limit
    gaps: int = 0  # gaps reported on resume
    errors: dict[str, int] = field(default_factory=dict)


class HubCore:
    """Routing state of one hub.

    Bounded: at most ``max_topics`` topics (a publish to a new topic beyond it gets
    ``err too_many_topics``) and ``max_subscriptions`` subscriptions per connection.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        epoch: str | None = None,
        max_topics: int = DEFAULT_MAX_TOPICS,
        max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS,
        rate_limit: float | None = DEFAULT_RATE_LIMIT,
        rate_burst: float | None = None,
        history: HistoryLimits = DEFAULT_HISTORY,
        history_rules: Iterable[tuple[str, HistoryLimits]] = (),
        history_total_bytes: int = DEFAULT_HISTORY_TOTAL_BYTES,
        journaled: bool = False,
        tokens: Mapping[str, Permissions] | None = None,
        sequenced: bool = True,
    ) -> None:
        self.epoch: Final = epoch or secrets.token_hex(8)
        self._token = token
        # (token, rights): the hub's own token may do everything
        self._tokens: list[tuple[bytes, Permissions]] = []
        if token is not None:
            self._tokens.append((token.encode(), EVERYTHING))
            self._tokens += [(t.encode(), perms) for t, perms in (tokens or {}).items()]
        elif tokens:
            raise ValueError("extra tokens need a hub with authentication on")
        self.max_topics = max_topics
        self.max_subscriptions = max_subscriptions
        if rate_limit is not None and not rate_limit > 0:
            raise ValueError("rate_limit must be > 0 records per second (or None: no limit)")
        self.rate_limit = rate_limit
        self.rate_burst = rate_burst if rate_burst is not None else rate_limit or 0.0
        self.counters = HubCounters()
        self._connections: dict[int, _Connection] = {}
        self._seq: dict[str, int] = {}  # topic -> last assigned seq
        self._committed: dict[str, int] = {}  # topic -> last durable (delivered) seq
        self.journaled = journaled
        # False: an engine (Redis) numbers records for every node; this core forwards
        # publishes to it and delivers what the engine's reader brings back.
        self.sequenced = sequenced
        self._exact: dict[str, set[int]] = {}  # topic -> subscribed connections
        self._patterns: dict[str, set[int]] = {}  # wildcard pattern -> connections
        self._routes: dict[str, tuple[int, ...]] = {}  # cache: topic -> receivers
        self._out: list[Action] = []
        self.history = history
        self.history_rules = list(history_rules)
        self.history_total_bytes = history_total_bytes
        self.history_bytes = 0
        self._histories: dict[str, TopicHistory] = {}
        self.producers = ProducerTable()
        self.internal_failures: list[Exception] = []  # the newest few, for the log

    # ------------------------------------------------------------------ connections
    def open(self, conn: int, *, permissions: Permissions | None) -> None:
        """Register a new connection with the rights of the token it presented; with None it
        must send ``auth`` first (on a hub without tokens it may do everything)."""
        if self._token is None:
            permissions = EVERYTHING
        self._connections[conn] = _Connection(permissions)

    def close(self, conn: int) -> None:
        """Forget a connection and all its subscriptions (idempotent)."""
        state = self._connections.pop(conn, None)
        if state is None:
            return
        for pattern in state.patterns:
            self._remove_route(conn, pattern)

    def check_token(self, presented: str | None) -> bool:
        """Constant-time token check; always true when the hub has no token."""
        return self.authorize(presented) is not None

    def authorize(self, presented: str | None) -> Permissions | None:
        """The rights of ``presented`` (None: not a token of this hub). Every token is
        compared, in constant time, so timing tells nothing about which one was close."""
        if self._token is None:
            return EVERYTHING
        found = None
        candidate = (presented or "").encode()
        for token, permissions in self._tokens:
            if hmac.compare_digest(candidate, token) and presented is not None:
                found = permissions
        return found

    @property
    def connections(self) -> int:
        return len(self._connections)

    @property
    def topics(self) -> int:
        return len(self._seq)

    @property
    def subscriptions(self) -> int:
        # list() copies in one step, so this is safe to read from another thread
        return sum(len(c.patterns) for c in list(self._connections.values()))

    def last_seq(self, topic: str) -> int:
        """The last committed seq of ``topic`` (0 when nothing was published yet)."""
        return self._committed.get(topic, 0)

    # ------------------------------------------------------------------ receive / drain
    def receive(self, conn: int, frame: str | bytes, now: float) -> None:
        """Handle one text frame from ``conn`` received at ``now`` (Unix seconds)."""
        state = self._connections.get(conn)
        if state is None:
            return
        self.counters.frames_in += 1
        try:
            message = p.decode_client(frame)
        except ProtocolError as exc:
            if state.perms is None:
                self._out.append(Close(conn, p.CLOSE_UNAUTHORIZED, "authenticate first"))
                return
            self._error(conn, exc.code, exc.message, _request_id_of(frame))
            return
        if state.perms is None:
            self._authenticate(conn, state, message)
            return
        try:
            self._dispatch(conn, state, message, now)
        except Exception as exc:  # a bug must cost one request, never the connection or hub
            self.internal_failures.append(exc)  # the I/O layer logs these
            del self.internal_failures[:-10]
            request_id = message.id if isinstance(message, p.Pub) else None
            self._error(conn, p.INTERNAL_ERROR, f"the hub failed on this request: {exc!r}", request_id)

    def _dispatch(
        self, conn: int, state: _Connection, message: p.ClientMessage, now: float
    ) -> None:
        match message:
            case p.Pub():
                self._publish(conn, message, now)
            case p.Sub(topic, since):
                self._subscribe(conn, state, topic, since, now)
            case p.Unsub(topic):
                self._unsubscribe(conn, state, topic)
            case p.Ping():
                self._out.append(Send((conn,), p.encode(p.Pong())))
            case p.Auth():
                pass  # already authenticated (by header or earlier message): harmless

    def receive_binary(self, conn: int) -> None:
        """Handle a binary frame from ``conn``: the protocol is text only."""
        state = self._connections.get(conn)
        if state is None:
            return
        self.counters.frames_in += 1
        if state.perms is None:
            self._out.append(Close(conn, p.CLOSE_UNAUTHORIZED, "authenticate first"))
            return
        self._error(conn, p.BINARY_FRAME, "livenb frames are JSON text frames, not binary")

    def drain(self) -> list[Action]:
        """Return and forget the actions produced since the last drain, in order."""
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------------ handlers
    def _authenticate(self, conn: int, state: _Connection, message: p.ClientMessage) -> None:
        permissions = self.authorize(message.token) if isinstance(message, p.Auth) else None
        if permissions is not None:
            state.perms = permissions
            return
        reason = "wrong token" if isinstance(message, p.Auth) else "authenticate first"
        self._out.append(Close(conn, p.CLOSE_UNAUTHORIZED, reason))

    def _within_rate(self, conn: int, message: p.Pub, n: int, now: float) -> bool:
        """Take ``n`` records from the connection's token bucket; refuse (err rate_limited)
        when it is empty, and close a connection that keeps flooding (4429)."""
        assert self.rate_limit is not None
        state = self._connections[conn]
        state.tokens = min(self.rate_burst, state.tokens + (now - state.refilled) * self.rate_limit)
        state.refilled = now
        if state.tokens >= n:
            state.tokens -= n
            return True
        self.counters.rate_limited += n
        state.strikes = max(0.0, state.strikes - (now - state.struck)) + 1
        state.struck = now
        if state.strikes > MAX_STRIKES:
            self._out.append(Close(conn, p.CLOSE_RATE_LIMITED, "publish rate limit exceeded"))
        else:
            self._error(
                conn,
                p.RATE_LIMITED,
                f"over the publish rate limit of {self.rate_limit:g} records/s; slow down",
                message.id,
                message.topic,
            )
        return False

    def _publish(self, conn: int, message: p.Pub, now: float) -> None:
        topic = message.topic
        perms = self._connections[conn].perms
        if perms is not EVERYTHING and not (perms and perms.may_publish(topic)):
            self._error(
                conn, p.FORBIDDEN, f"this token may not publish to {topic!r}", message.id, topic
            )
            return
        if self.rate_limit is not None and not self._within_rate(
            conn, message, len(message.records), now
        ):
            return
        if not self.sequenced:
            try:  # what cannot be relayed is refused before the engine stores it
                body = _records_body(message.records)
            except TypeError as exc:
                self._error(
                    conn, p.BAD_FIELD, f"a record cannot be relayed: {exc}", message.id, topic
                )
                return
            self.counters.records_in += len(message.records)
            self._out.append(
                Forward(
                    conn, topic, message.records, message.id, message.pid, body, message.cumulative
                )
            )
            return
        pid = message.pid
        if pid is not None:
            known = self.producers.seen(pid, message.id)  # type: ignore[arg-type]
            if known is not None:  # a retry of a stored frame: acknowledge, do not store
                seq, count = known
                dup = Persist(
                    conn, topic, seq, now, [], message.id, pid, count or len(message.records)
                )
                if self.journaled:
                    self._out.append(dup)  # acked only after what it duplicates is durable
                else:
                    self.commit(dup, now)
                return
        last = self._seq.get(topic)
        if last is None:
            if len(self._seq) >= self.max_topics:
                self._error(
                    conn,
                    p.TOO_MANY_TOPICS,
                    f"the hub holds its maximum of {self.max_topics} topics",
                    message.id,
                    topic,
                )
                return
            last = 0
        records = message.records
        n = len(records)
        first = last + 1
        try:  # encoded once, before anything is stored: what cannot be relayed is refused
            frame = p.encode_msg_frame(topic, first, now, records)
        except TypeError as exc:  # orjson: nested deeper than it encodes (254 levels)
            self._error(conn, p.BAD_FIELD, f"a record cannot be relayed: {exc}", message.id, topic)
            return
        self._seq[topic] = last + n
        self.counters.records_in += n
        if pid is not None:
            self.producers.stored(pid, message.id, first, n)  # type: ignore[arg-type]
        batch = Persist(
            conn, topic, first, now, records, message.id, pid, 0, frame, message.cumulative
        )
        if self.journaled:
            self._out.append(batch)  # delivered and acknowledged once it is on disk
        else:
            self.commit(batch, now)

    def commit(self, batch: Persist, now: float) -> None:
        """``batch`` is durable (or needs no journal): store it in the history, deliver it to
        the current subscribers, and acknowledge it."""
        conn, topic, first, ts, records = (
            batch.conn,
            batch.topic,
            batch.first,
            batch.ts,
            batch.records,
        )
        if batch.dup_count:  # a retry: only its ack, marked as a duplicate
            dup = p.Ack(batch.request_id, first, batch.dup_count, True)  # type: ignore[arg-type]
            self._out.append(Send((conn,), p.encode(dup)))
            return
        n = len(records)
        self._committed[topic] = first + n - 1
        receivers = self._routes.get(topic)
        if receivers is None:
            receivers = self._route(topic)
        history = self._histories.get(topic)
        if history is None:
            history = self._histories[topic] = TopicHistory(
                limits_for(topic, self.history, self.history_rules)
            )
        if receivers or history.limits.records:
            frame = batch.frame
            self._remember(history, Batch(first, ts, n, frame), now)
            if receivers:
                self._out.append(Send(receivers, frame, n))
                self.counters.frames_out += len(receivers)
                self.counters.records_out += n * len(receivers)
        if batch.request_id is not None and conn in self._connections:
            self._acknowledge(conn, batch.request_id, batch.pid, batch.cumulative, first, n)

    # ------------------------------------------------------------------ engine mode
    def stored(self, forward: Forward, first: int, count: int, duplicate: bool = False) -> None:
        """The engine stored ``forward`` as seqs ``first``.. (or had it already: ``duplicate``,
        with ``first`` 0 when it no longer knows where): acknowledge it."""
        if forward.request_id is not None and forward.conn in self._connections:
            cumulative = forward.cumulative and not duplicate  # a duplicate's ack says so
            self._acknowledge(
                forward.conn, forward.request_id, forward.pid, cumulative, first, count, duplicate
            )

    def _acknowledge(
        self,
        conn: int,
        request_id: p.RequestId,
        pid: str | None,
        cumulative: bool,
        first: int,
        count: int,
        duplicate: bool = False,
    ) -> None:
        """Acknowledge a stored pub of ``conn``: a cumulative one (protocol section 5.4) with a
        FoldableAck the I/O layer may fold into a later one, any other with its own ack."""
        if cumulative and pid is not None and type(request_id) is int:
            self._out.append(FoldableAck(conn, request_id, pid, first, count))
        elif duplicate:
            self._out.append(Send((conn,), p.encode(p.Ack(request_id, first, count, True))))
        else:
            self._out.append(Send((conn,), p.encode_ack(request_id, first, count)))

    def reject(self, conn: int, code: str, message: str, topic: str | None = None) -> None:
        """Answer a request of ``conn`` with ``err`` (the I/O layer refused it)."""
        if conn in self._connections:
            self._error(conn, code, message, topic=topic)

    def refuse(self, forward: Forward, code: str, message: str) -> None:
        """The engine could not store ``forward``: tell its publisher (nothing was stored)."""
        if forward.conn in self._connections:
            self._error(forward.conn, code, message, forward.request_id, forward.topic)

    def deliver(self, topic: str, first: int, ts: float, records: list[Any], now: float) -> None:
        """A batch the engine stored (on any node), read back in seq order: keep it in the
        history and send it to this node's subscribers. Batches already delivered are
        skipped; a hole (records trimmed from the engine before this node read them) is
        reported to the subscribers as a ``history_exceeded`` gap, never passed over."""
        last = self._committed.get(topic, 0)
        n = len(records)
        if first + n - 1 <= last:
            return  # already delivered (a reader resumed from an older position)
        if first <= last:
            records = records[last - first + 1 :]
            first, n = last + 1, len(records)
        receivers = self._routes.get(topic)
        if receivers is None:
            receivers = self._route(topic)
        if first > last + 1 and topic in self._committed and receivers:
            gap = p.encode(p.Gap(topic, last + 1, first - 1, GAP_HISTORY_EXCEEDED))
            self._out.append(Send(receivers, gap))
            self.counters.gaps += 1
        frame = p.encode_msg_frame(topic, first, ts, records)
        self._seq[topic] = self._committed[topic] = first + n - 1
        history = self._histories.get(topic)
        if history is None:
            history = self._histories[topic] = TopicHistory(
                limits_for(topic, self.history, self.history_rules)
            )
        self._remember(history, Batch(first, ts, n, frame), now)
        if receivers:
            self._out.append(Send(receivers, frame, n))
            self.counters.frames_out += len(receivers)
            self.counters.records_out += n * len(receivers)

    def authenticated(self, conn: int) -> bool:
        state = self._connections.get(conn)
        return state is not None and state.perms is not None

    def knows(self, topic: str) -> bool:
        """True when this core holds ``topic`` (primed from the engine, or delivered)."""
        return topic in self._committed

    def wanted(self, topic: str) -> bool:
        """True when a connection of this node subscribes to ``topic`` (exactly or by a
        pattern): the engine's reader must bring its records here."""
        return topic in self._exact or any(matches(p_, topic) for p_ in self._patterns)

    def subscribed_patterns(self) -> list[str]:
        """The wildcard patterns this node's connections subscribe to."""
        return list(self._patterns)

    def restore(self, topic: str, last: int, batches: Iterable[Batch], now: float) -> None:
        """Startup from a journal: ``topic`` was at seq ``last``, with these recent batches."""
        self._seq[topic] = self._committed[topic] = last
        history = self._histories[topic] = TopicHistory(
            limits_for(topic, self.history, self.history_rules)
        )
        for batch in batches:
            self._remember(history, batch, now)

    def _remember(self, history: TopicHistory, batch: Batch, now: float) -> None:
        before = history.bytes
        history.append(batch, now)
        self.history_bytes += history.bytes - before
        if self.history_bytes > self.history_total_bytes:
            self._evict_globally()

    def _evict_globally(self) -> None:
        """Over the hub-wide history budget: evict the oldest batches, whatever their topic."""
        while self.history_bytes > self.history_total_bytes:
            oldest = min(
                (h for h in self._histories.values() if len(h)),
                key=lambda h: h.oldest_ts() or 0.0,
                default=None,
            )
            if oldest is None:
                return
            self.history_bytes -= oldest.evict_oldest()

    def _subscribe(
        self, conn: int, state: _Connection, pattern: str, since: p.Position | None, now: float
    ) -> None:
        if not is_pattern(pattern) and not self._may_read(conn, pattern):
            self._error(conn, p.FORBIDDEN, f"this token may not read {pattern!r}", topic=pattern)
            return
        if pattern not in state.patterns:
            if len(state.patterns) >= self.max_subscriptions:
                self._error(
                    conn,
                    p.TOO_MANY_SUBSCRIPTIONS,
                    f"at most {self.max_subscriptions} subscriptions per connection",
                    topic=pattern,
                )
                return
            state.patterns.add(pattern)
            table = self._patterns if is_pattern(pattern) else self._exact
            table.setdefault(pattern, set()).add(conn)
            self._routes.clear()  # subscriptions change rarely; publishes are the hot path
        seq = None if is_pattern(pattern) else self._committed.get(pattern, 0)
        if since is None:
            reply = p.Subscribed(pattern, self.epoch, seq, None, now)
            self._out.append(Send((conn,), p.encode(reply)))
            return
        # The subscription is registered before the replay is queued, and nothing else runs
        # in between, so live records follow the replay with no gap and no overlap.
        gaps: list[p.Gap] = []
        frames: list[bytes] = []
        if is_pattern(pattern):
            seen = {
                t: n
                for t, n in (since.topics or {}).items()
                if matches(pattern, t) and self._may_read(conn, t)
            }
            if since.epoch != self.epoch:
                # Every topic the subscriber knew lost its tail with the old epoch; every
                # topic of this epoch is news to it (all of it came after the restart).
                for topic, last_seen in sorted(seen.items()):
                    gaps.append(p.Gap(topic, last_seen + 1, None, GAP_EPOCH_CHANGED))
                for topic in self._readable(conn, pattern):
                    self._resume(topic, 0, self.epoch, now, gaps, frames)
            else:
                for topic in self._readable(conn, pattern):
                    if topic in seen:
                        self._resume(topic, seen[topic], since.epoch, now, gaps, frames)
                    elif since.ts is not None:
                        self._resume_newer(topic, since.ts, now, gaps, frames)
        else:
            self._resume(pattern, since.seq or 0, since.epoch, now, gaps, frames)
        reply = p.Subscribed(pattern, self.epoch, seq, not gaps, now)
        gap_frames = [p.encode(replace(g, sub=pattern)) for g in gaps]
        self._out.append(Send((conn,), p.encode(reply)))
        self._out.extend(Send((conn,), frame) for frame in gap_frames)
        # Replayed frames are shared with the history (no copies), so they do not count
        # against the connection's live queue bound: a full replay always gets through.
        self._out.extend(Send((conn,), frame, replay=True) for frame in frames)
        self.counters.replayed += len(frames)
        self.counters.gaps += len(gaps)

    def _resume(
        self,
        topic: str,
        seen: int,
        epoch: str,
        now: float,
        gaps: list[p.Gap],
        frames: list[bytes],
    ) -> None:
        """Replay ``topic`` after seq ``seen`` of ``epoch``; report what cannot be replayed."""
        last = self._committed.get(topic, 0)
        history = self._histories.get(topic)
        if history is not None:
            self.history_bytes -= history.trim(now)
        first_kept = history.first_seq(last) if history is not None else last + 1
        if epoch != self.epoch:
            # A new hub epoch (a restart without the old history): the old epoch's records
            # after `seen` are gone, and this epoch's are replayed from its start.
            gaps.append(p.Gap(topic, seen + 1, None, GAP_EPOCH_CHANGED))
            seen = 0
        elif seen > last:
            seen = last  # ahead of the hub: nothing to replay
        if first_kept > seen + 1:
            gaps.append(p.Gap(topic, seen + 1, first_kept - 1, GAP_HISTORY_EXCEEDED))
        if history is not None:
            frames.extend(_replay(topic, history.after(seen), seen))

    def _resume_newer(
        self, topic: str, ts: float, now: float, gaps: list[p.Gap], frames: list[bytes]
    ) -> None:
        """A topic the subscriber never saw: replay what was published after hub time ``ts``."""
        history = self._histories.get(topic)
        if history is None:
            return
        self.history_bytes -= history.trim(now)
        batches = list(history.newer_than(ts))
        first_kept = history.first_seq(self._committed.get(topic, 0))
        if len(batches) == len(history) and first_kept > 1:
            # Everything retained is newer than ts; older records after ts may be evicted.
            oldest = history.oldest_ts()
            if oldest is None or oldest > ts:
                gaps.append(p.Gap(topic, 1, first_kept - 1, GAP_HISTORY_EXCEEDED))
        frames.extend(batch.frame for batch in batches)

    def _unsubscribe(self, conn: int, state: _Connection, pattern: str) -> None:
        if pattern not in state.patterns:
            self._error(conn, p.NOT_SUBSCRIBED, f"not subscribed to {pattern!r}", topic=pattern)
            return
        state.patterns.discard(pattern)
        self._remove_route(conn, pattern)
        self._out.append(Send((conn,), p.encode(p.Unsubscribed(pattern))))

    def _remove_route(self, conn: int, pattern: str) -> None:
        table = self._patterns if is_pattern(pattern) else self._exact
        members = table.get(pattern)
        if members is not None:
            members.discard(conn)
            if not members:
                del table[pattern]
        self._routes.clear()

    def _route(self, topic: str) -> tuple[int, ...]:
        receivers: set[int] = set(self._exact.get(topic, ()))
        for pattern, conns in self._patterns.items():
            if matches(pattern, topic):
                receivers.update(conns)
        # A wildcard never delivers a topic the connection's token may not read.
        route = tuple(sorted(c for c in receivers if self._may_read(c, topic)))
        self._routes[topic] = route
        return route

    def _readable(self, conn: int, pattern: str) -> list[str]:
        """Known topics matching ``pattern`` that ``conn`` may read, in order."""
        return sorted(
            t for t in self._committed if matches(pattern, t) and self._may_read(conn, t)
        )

    def may_read(self, conn: int, topic: str) -> bool:
        """True when ``conn``'s token may read ``topic``."""
        return conn in self._connections and self._may_read(conn, topic)

    def _may_read(self, conn: int, topic: str) -> bool:
        perms = self._connections[conn].perms
        return perms is EVERYTHING or (perms is not None and perms.may_read(topic))

    def _error(
        self,
        conn: int,
        code: str,
        message: str,
        request_id: p.RequestId | None = None,
        topic: str | None = None,
    ) -> None:
        self.counters.errors[code] = self.counters.errors.get(code, 0) + 1
        self._out.append(Send((conn,), p.encode(p.Err(code, message, request_id, topic))))



def _records_body(records: list[Any]) -> bytes:
    """``records`` as a JSON array, encoded so that it fails exactly when their msg frame
    would (nested one level deeper than the records, as the frame nests them): one encoding
    both checks that the batch can be relayed and gives the engine what it stores."""
    # Kept while the engine's buffer holds it: compact (see _protocol.compact); the slice
    # below is a copy already.
    if len(records) == 1:  # {"data": record}: the array is as deep as the frame
        return p.compact(orjson.dumps(records))
    return orjson.dumps([records])[1:-1]  # {"batch": [...]}: one level more


def _request_id_of(frame: str | bytes) -> p.RequestId | None:
    """Best effort: the ``id`` of a frame that failed validation, so the error can cite it."""
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is dict:
        rid = obj.get("id")
        if type(rid) is str or (type(rid) is int and -p.MAX_INT <= rid <= p.MAX_INT):
            return rid
    return None


def _replay(topic: str, batches: Iterable[Batch], seen: int) -> Iterator[bytes]:
    for batch in batches:
        if batch.first > seen:
            yield batch.frame
        else:  # the batch straddles `seen`: send only its newer records
            skip = seen - batch.first + 1
            yield p.encode_msg_frame(topic, seen + 1, batch.ts, batch.records()[skip:])
