"""Hub routing state: connections, subscriptions, per-topic ``seq``. Pure, no I/O.

The hub's I/O layer drives :class:`HubCore` with "receive, then drain": it hands every frame a
connection sent to :meth:`HubCore.receive` (or :meth:`HubCore.receive_binary`) and then sends
what :meth:`HubCore.drain` returns. Frames for subscribers are encoded once per topic batch and
shared by every receiving connection.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

import orjson

from . import _protocol as p
from ._errors import ProtocolError
from ._topics import is_pattern, matches

DEFAULT_MAX_TOPICS: Final = 100_000
DEFAULT_MAX_SUBSCRIPTIONS: Final = 1_000


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``frame`` (a text frame) to each connection in ``targets``; it carries ``records``."""

    targets: tuple[int, ...]
    frame: bytes
    records: int = 0


@dataclass(frozen=True, slots=True)
class Close:
    """Close connection ``conn`` with WebSocket close ``code`` and ``reason``."""

    conn: int
    code: int
    reason: str


Action = Send | Close


@dataclass(slots=True)
class _Connection:
    authenticated: bool
    patterns: set[str] = field(default_factory=set)


@dataclass(slots=True)
class HubCounters:
    """Monotonic counters for ``hub.stats()``."""

    frames_in: int = 0
    records_in: int = 0
    frames_out: int = 0
    records_out: int = 0
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
    ) -> None:
        self.epoch: Final = epoch or secrets.token_hex(8)
        self._token = token
        self.max_topics = max_topics
        self.max_subscriptions = max_subscriptions
        self.counters = HubCounters()
        self._connections: dict[int, _Connection] = {}
        self._seq: dict[str, int] = {}  # topic -> last assigned seq
        self._exact: dict[str, set[int]] = {}  # topic -> subscribed connections
        self._patterns: dict[str, set[int]] = {}  # wildcard pattern -> connections
        self._routes: dict[str, tuple[int, ...]] = {}  # cache: topic -> receivers
        self._out: list[Action] = []

    # ------------------------------------------------------------------ connections
    def open(self, conn: int, *, authenticated: bool) -> None:
        """Register a new connection; unauthenticated ones must send ``auth`` first."""
        self._connections[conn] = _Connection(authenticated or self._token is None)

    def close(self, conn: int) -> None:
        """Forget a connection and all its subscriptions (idempotent)."""
        state = self._connections.pop(conn, None)
        if state is None:
            return
        for pattern in state.patterns:
            self._remove_route(conn, pattern)

    def check_token(self, presented: str | None) -> bool:
        """Constant-time token check; always true when the hub has no token."""
        if self._token is None:
            return True
        if presented is None:
            return False
        return hmac.compare_digest(presented.encode(), self._token.encode())

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
        """The last seq assigned on ``topic`` (0 when nothing was published yet)."""
        return self._seq.get(topic, 0)

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
            if not state.authenticated:
                self._out.append(Close(conn, p.CLOSE_UNAUTHORIZED, "authenticate first"))
                return
            self._error(conn, exc.code, exc.message, _request_id_of(frame))
            return
        if not state.authenticated:
            self._authenticate(conn, state, message)
            return
        match message:
            case p.Pub():
                self._publish(conn, message, now)
            case p.Sub(topic):
                self._subscribe(conn, state, topic)
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
        if not state.authenticated:
            self._out.append(Close(conn, p.CLOSE_UNAUTHORIZED, "authenticate first"))
            return
        self._error(conn, p.BINARY_FRAME, "livenb frames are JSON text frames, not binary")

    def drain(self) -> list[Action]:
        """Return and forget the actions produced since the last drain, in order."""
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------------ handlers
    def _authenticate(self, conn: int, state: _Connection, message: p.ClientMessage) -> None:
        if isinstance(message, p.Auth) and self.check_token(message.token):
            state.authenticated = True
            return
        reason = "wrong token" if isinstance(message, p.Auth) else "authenticate first"
        self._out.append(Close(conn, p.CLOSE_UNAUTHORIZED, reason))

    def _publish(self, conn: int, message: p.Pub, now: float) -> None:
        topic = message.topic
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
        self._seq[topic] = last + n
        self.counters.records_in += n
        receivers = self._routes.get(topic)
        if receivers is None:
            receivers = self._route(topic)
        if receivers:
            frame = p.encode_msg_frame(topic, first, now, records)
            self._out.append(Send(receivers, frame, n))
            self.counters.frames_out += len(receivers)
            self.counters.records_out += n * len(receivers)
        if message.id is not None:
            self._out.append(Send((conn,), p.encode(p.Ack(message.id, first, n))))

    def _subscribe(self, conn: int, state: _Connection, pattern: str) -> None:
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
        seq = None if is_pattern(pattern) else self._seq.get(pattern, 0)
        self._out.append(Send((conn,), p.encode(p.Subscribed(pattern, self.epoch, seq))))

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
        route = tuple(sorted(receivers))
        self._routes[topic] = route
        return route

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

    def receivers(self, topic: str) -> Iterable[int]:
        """Connections that would receive a record published on ``topic`` now."""
        return self._routes.get(topic) or self._route(topic)


def _request_id_of(frame: str | bytes) -> p.RequestId | None:
    """Best effort: the ``id`` of a frame that failed validation, so the error can cite it."""
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is dict:
        rid = obj.get("id")
        if type(rid) is str or type(rid) is int:
            return rid
    return None
