"""The livenb wire protocol: JSON text frames <-> typed messages. Pure, no I/O.

Every frame is one JSON object discriminated by ``op``; docs/protocol.md is the reference.
Decoding validates everything a peer controls and raises :class:`ProtocolError` carrying the
stable error code to send back. Unknown extra fields are ignored so that newer peers can add
optional fields without breaking older ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

import orjson

from ._errors import ProtocolError, SerializationError
from ._topics import is_pattern, is_valid_pattern, is_valid_topic, is_valid_topic_cached

# --- error codes sent in {"op":"err","code":...}; stable strings, documented in protocol.md ---
BAD_JSON: Final = "bad_json"
BAD_MESSAGE: Final = "bad_message"
UNKNOWN_OP: Final = "unknown_op"
BAD_FIELD: Final = "bad_field"
INVALID_TOPIC: Final = "invalid_topic"
BINARY_FRAME: Final = "binary_frame"
NOT_SUBSCRIBED: Final = "not_subscribed"
TOO_MANY_TOPICS: Final = "too_many_topics"
TOO_MANY_SUBSCRIPTIONS: Final = "too_many_subscriptions"
INTERNAL_ERROR: Final = "internal_error"  # a hub bug; the request was not carried out
RATE_LIMITED: Final = "rate_limited"  # over the connection's publish rate; nothing stored
FORBIDDEN: Final = "forbidden"  # the connection's token lacks the right for this topic
ENGINE_UNAVAILABLE: Final = "engine_unavailable"  # the hub's Redis is unreachable; retry
ERROR_CODES: Final = (
    BAD_JSON,
    BAD_MESSAGE,
    UNKNOWN_OP,
    BAD_FIELD,
    INVALID_TOPIC,
    BINARY_FRAME,
    NOT_SUBSCRIBED,
    TOO_MANY_TOPICS,
    TOO_MANY_SUBSCRIPTIONS,
    FORBIDDEN,
    RATE_LIMITED,
    INTERNAL_ERROR,
    ENGINE_UNAVAILABLE,
)

# --- WebSocket close codes the hub uses ---
# Application codes: 4000-4399 mean "reconnect (and resume)", 4400-4999 "do not reconnect".
CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001  # the hub is shutting down; reconnect elsewhere or later
CLOSE_TOO_BIG: Final = 1009  # a frame exceeded the hub's max_size
CLOSE_SLOW_CONSUMER: Final = 4008  # outgoing queue overflowed; reconnect and resume
CLOSE_UNAUTHORIZED: Final = 4401  # missing/wrong token in the first {"op":"auth"} message
CLOSE_RATE_LIMITED: Final = 4429  # kept publishing over the rate limit after rate_limited errors
RECONNECT_CODES: Final = range(4000, 4400)
FATAL_CODES: Final = range(4400, 5000)
# Standard codes after which reconnecting would only repeat the failure.
_FATAL_STANDARD: Final = frozenset({1000, 1002, 1003, 1007, 1008, 1009, 1010})


def should_reconnect(code: int | None) -> bool:
    """Whether a client should reconnect after the hub closed with ``code`` (None: the
    connection broke without a close frame)."""
    if code is None:
        return True
    if code in FATAL_CODES:
        return False
    if code in RECONNECT_CODES:
        return True
    return code not in _FATAL_STANDARD

RequestId: TypeAlias = "str | int"
MAX_PID_LENGTH: Final = 64
MAX_INT: Final = 2**63 - 1  # seqs and frame numbers are signed 64-bit everywhere
JSON: TypeAlias = Any


@dataclass(frozen=True, slots=True)
class Position:
    """Where a subscriber left off, sent with ``sub`` to resume.

    For a concrete topic: the hub ``epoch`` and the last ``seq`` seen. For a pattern: the
    ``epoch``, the last seq seen per topic (``topics``) and the hub time of the last contact
    (``ts``): records of other matching topics newer than ``ts`` are replayed too.
    """

    epoch: str
    seq: int | None = None
    topics: dict[str, int] | None = None
    ts: float | None = None


# ----------------------------------------------------------------- client -> hub messages
@dataclass(frozen=True, slots=True)
class Auth:
    token: str


@dataclass(frozen=True, slots=True)
class Sub:
    topic: str
    since: Position | None = None


@dataclass(frozen=True, slots=True)
class Unsub:
    topic: str


@dataclass(slots=True)  # not frozen: made per frame, and frozen ones construct 5x slower
class Pub:
    """A publish of one record (``single``: sent as ``data``) or a batch (sent as ``batch``)."""

    topic: str
    records: list[JSON]
    single: bool = False
    id: RequestId | None = None
    pid: str | None = None  # producer id: (pid, id) makes a retried frame idempotent
    cumulative: bool = False  # (with pid) a later frame's ack may acknowledge this one


@dataclass(frozen=True, slots=True)
class Ping:
    pass


ClientMessage: TypeAlias = Auth | Sub | Unsub | Pub | Ping


# ----------------------------------------------------------------- hub -> client messages
@dataclass(slots=True)  # not frozen: made per frame, and frozen ones construct 5x slower
class Msg:
    """Records of one topic; ``seq`` is the first record's, the rest follow consecutively."""

    topic: str
    seq: int
    ts: float
    records: list[JSON]
    single: bool = False


@dataclass(frozen=True, slots=True)
class Subscribed:
    topic: str
    epoch: str
    seq: int | None = None  # last seq of a concrete topic at subscribe time (0: none yet)
    recovered: bool | None = None  # with ``since``: True when nothing was missed
    ts: float | None = None  # hub time of the reply


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    topic: str


@dataclass(slots=True)  # not frozen: made per frame, and frozen ones construct 5x slower
class Ack:
    id: RequestId
    seq: int
    count: int = 1
    dup: bool = False  # a retried frame the hub had already stored (not stored again)


@dataclass(frozen=True, slots=True)
class Err:
    code: str
    message: str
    id: RequestId | None = None
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class Gap:
    """Records ``first``..``last`` of ``topic`` will never be delivered; ``last`` is None when
    everything from ``first`` on in the previous epoch is lost (reason ``epoch_changed``)."""

    topic: str
    first: int
    last: int | None
    reason: str
    sub: str | None = None  # in a resume: the subscription (topic or pattern) it answers


@dataclass(frozen=True, slots=True)
class Pong:
    pass


HubMessage: TypeAlias = Msg | Subscribed | Unsubscribed | Ack | Err | Gap | Pong


@dataclass(slots=True)
class _Fields:
    """Typed access to a decoded frame's fields with protocol-level errors."""

    obj: dict[str, Any]
    op: str = field(default="")

    def str_(self, name: str) -> str:
        value = self.obj.get(name)
        if type(value) is not str:
            raise _field_error(self.op, name, "a string", value)
        return value

    def topic(self, name: str = "topic", *, pattern: bool = False) -> str:
        value = self.str_(name)
        valid = is_valid_pattern(value) if pattern else is_valid_topic_cached(value)
        if not valid:
            kind = "topic or pattern" if pattern else "concrete topic"
            raise ProtocolError(
                INVALID_TOPIC,
                f"{value[:300]!r} is not a valid {kind}: dot-separated segments of "
                "[A-Za-z0-9_-]"
                + (", '*' for one segment, a final '>' for the rest" if pattern else "")
                + ", at most 255 characters",
            )
        return value

    def int_(self, name: str, *, minimum: int = 0) -> int:
        value = self.obj.get(name)
        if type(value) is not int or not minimum <= value <= MAX_INT:
            raise _field_error(self.op, name, f"an integer from {minimum} to 2**63-1", value)
        return value

    def float_(self, name: str) -> float:
        value = self.obj.get(name)
        if type(value) is int:
            return float(value)
        if type(value) is not float:
            raise _field_error(self.op, name, "a number", value)
        return value

    def request_id(self) -> RequestId | None:
        value = self.obj.get("id")
        if value is None:
            return None
        if type(value) is str or (type(value) is int and -MAX_INT <= value <= MAX_INT):
            return value
        raise _field_error(self.op, "id", "a string or a 64-bit integer", value)

    def records(self) -> tuple[list[JSON], bool]:
        has_data = "data" in self.obj
        has_batch = "batch" in self.obj
        if has_data == has_batch:
            raise ProtocolError(
                BAD_FIELD, f"'{self.op}' needs exactly one of 'data' (a record) or 'batch'"
            )
        if has_data:
            return [self.obj["data"]], True
        batch = self.obj["batch"]
        if type(batch) is not list or not batch:
            raise _field_error(self.op, "batch", "a non-empty list of records", batch)
        return batch, False


def _field_error(op: str, name: str, expected: str, value: object) -> ProtocolError:
    got = "missing" if value is None else f"got {type(value).__name__}"
    return ProtocolError(BAD_FIELD, f"'{op}' needs field '{name}' as {expected} ({got})")


def _load_object(frame: str | bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(BAD_JSON, f"frame is not valid JSON: {exc}") from None
    if type(obj) is not dict:
        raise ProtocolError(
            BAD_MESSAGE, f"a frame must be a JSON object with an 'op', not {type(obj).__name__}"
        )
    return obj


def _op(obj: dict[str, Any], allowed: Sequence[str]) -> _Fields:
    op = obj.get("op")
    if type(op) is not str:
        raise ProtocolError(BAD_FIELD, "a frame needs an 'op' field (a string)")
    if op not in allowed:
        raise ProtocolError(
            UNKNOWN_OP, f"unknown op {op[:50]!r}; expected one of {', '.join(allowed)}"
        )
    return _Fields(obj, op)


_CLIENT_OPS: Final = ("auth", "sub", "unsub", "pub", "ping")
_HUB_OPS: Final = ("msg", "subscribed", "unsubscribed", "ack", "err", "gap", "pong")


def decode_client(frame: str | bytes) -> ClientMessage:
    """Decode and validate one client -> hub frame; raise :class:`ProtocolError` if invalid."""
    f = _op(_load_object(frame), _CLIENT_OPS)
    op = f.op
    if op == "pub":
        records, single = f.records()
        request_id = f.request_id()
        pid = f.obj.get("pid")
        if pid is not None:
            if type(pid) is not str or not 0 < len(pid) <= MAX_PID_LENGTH:
                raise _field_error(op, "pid", f"a string of 1-{MAX_PID_LENGTH} characters", pid)
            if type(request_id) is not int or request_id < 1:
                raise _field_error(op, "id", "an integer >= 1 (required with pid)", request_id)
        cumulative = f.obj.get("cumulative", False)
        if cumulative is not False and (cumulative is not True or pid is None):
            raise _field_error(op, "cumulative", "a boolean (true only with pid)", cumulative)
        return Pub(f.topic(), records, single, request_id, pid, cumulative)
    if op == "sub":
        topic = f.topic(pattern=True)
        since = f.obj.get("since")
        return Sub(topic, None if since is None else _position(since, is_pattern(topic)))
    if op == "unsub":
        return Unsub(f.topic(pattern=True))
    if op == "auth":
        return Auth(f.str_("token"))
    return Ping()


def _position(since: object, pattern: bool) -> Position:
    if type(since) is not dict:
        raise _field_error("sub", "since", 'an object {"epoch":E,"seq":N}', since)
    g = _Fields(since, "sub.since")
    epoch = g.str_("epoch")
    if not pattern:
        return Position(epoch, g.int_("seq"))
    topics = since.get("topics")
    if topics is not None and not _is_position_map(topics):
        raise _field_error("sub.since", "topics", "an object of topic -> seq >= 0", topics)
    ts = None if since.get("ts") is None else g.float_("ts")
    return Position(epoch, None, topics, ts)


def _is_position_map(value: object) -> bool:
    return type(value) is dict and all(
        is_valid_topic(k) and type(v) is int and 0 <= v <= MAX_INT for k, v in value.items()
    )


def decode_hub(frame: str | bytes) -> HubMessage:
    """Decode one hub -> client frame; raise :class:`ProtocolError` if it is not valid."""
    obj = _load_object(frame)
    if obj.get("op") == "msg":  # the hot path: the same checks, without _Fields
        topic, seq, ts = obj.get("topic"), obj.get("seq"), obj.get("ts")
        if (
            type(topic) is str
            and type(seq) is int
            and 1 <= seq <= MAX_INT
            and (type(ts) is float or type(ts) is int)
            and is_valid_topic_cached(topic)
        ):
            if "data" in obj:
                if "batch" not in obj:
                    return Msg(topic, seq, float(ts), [obj["data"]], True)
            else:
                batch = obj.get("batch")
                if type(batch) is list and batch:
                    return Msg(topic, seq, float(ts), batch, False)
        # else: the checks below name what is wrong
    return _decode_hub_object(obj)


def _decode_hub_object(obj: dict[str, Any]) -> HubMessage:
    """Validate a decoded hub -> client frame field by field (every op; errors named)."""
    f = _op(obj, _HUB_OPS)
    op = f.op
    if op == "msg":
        records, single = f.records()
        return Msg(f.topic(), f.int_("seq", minimum=1), f.float_("ts"), records, single)
    if op == "subscribed":
        seq = f.obj.get("seq")
        recovered = f.obj.get("recovered")
        if recovered is not None and type(recovered) is not bool:
            raise _field_error(op, "recovered", "a boolean", recovered)
        return Subscribed(
            f.topic(pattern=True),
            f.str_("epoch"),
            None if seq is None else f.int_("seq"),
            recovered,
            None if f.obj.get("ts") is None else f.float_("ts"),
        )
    if op == "unsubscribed":
        return Unsubscribed(f.topic(pattern=True))
    if op == "ack":
        request_id = f.request_id()
        if request_id is None:
            raise _field_error(op, "id", "a string or an integer", None)
        dup = f.obj.get("dup") is True
        # seq 0 in a dup ack: stored earlier, but its position is no longer remembered
        return Ack(request_id, f.int_("seq", minimum=0 if dup else 1), f.int_("count", minimum=1), dup)
    if op == "err":
        topic = f.obj.get("topic")
        return Err(
            f.str_("code"),
            f.str_("message"),
            f.request_id(),
            None if topic is None else f.str_("topic"),
        )
    if op == "gap":
        last = None if f.obj.get("last") is None else f.int_("last")
        sub = None if f.obj.get("sub") is None else f.topic("sub", pattern=True)
        return Gap(f.topic(), f.int_("first"), last, f.str_("reason"), sub)
    return Pong()


def to_wire(message: ClientMessage | HubMessage) -> dict[str, Any]:
    """The JSON object for ``message`` (optional fields left out when unset)."""
    match message:
        case Pub(topic, records, single, request_id, pid, cumulative):
            obj: dict[str, Any] = {"op": "pub", "topic": topic}
            if single:
                obj["data"] = records[0]
            else:
                obj["batch"] = records
            if request_id is not None:
                obj["id"] = request_id
            if pid is not None:
                obj["pid"] = pid
            if cumulative:
                obj["cumulative"] = True
            return obj
        case Msg(topic, seq, ts, records, single):
            obj = {"op": "msg", "topic": topic, "seq": seq, "ts": ts}
            if single:
                obj["data"] = records[0]
            else:
                obj["batch"] = records
            return obj
        case Sub(topic, since):
            obj = {"op": "sub", "topic": topic}
            if since is not None:
                position: dict[str, Any] = {"epoch": since.epoch}
                if since.seq is not None:
                    position["seq"] = since.seq
                if since.topics is not None:
                    position["topics"] = since.topics
                if since.ts is not None:
                    position["ts"] = since.ts
                obj["since"] = position
            return obj
        case Unsub(topic):
            return {"op": "unsub", "topic": topic}
        case Auth(token):
            return {"op": "auth", "token": token}
        case Ping():
            return {"op": "ping"}
        case Pong():
            return {"op": "pong"}
        case Subscribed(topic, epoch, seq, recovered, ts):
            obj = {"op": "subscribed", "topic": topic, "epoch": epoch}
            if seq is not None:
                obj["seq"] = seq
            if recovered is not None:
                obj["recovered"] = recovered
            if ts is not None:
                obj["ts"] = ts
            return obj
        case Unsubscribed(topic):
            return {"op": "unsubscribed", "topic": topic}
        case Ack(request_id, seq, count, dup):
            obj = {"op": "ack", "id": request_id, "seq": seq, "count": count}
            if dup:
                obj["dup"] = True
            return obj
        case Err(code, text, request_id, topic):
            obj = {"op": "err", "code": code, "message": text}
            if request_id is not None:
                obj["id"] = request_id
            if topic is not None:
                obj["topic"] = topic
            return obj
        case Gap(topic, first, last, reason, sub):
            obj = {"op": "gap", "topic": topic, "first": first, "last": last, "reason": reason}
            if sub is not None:
                obj["sub"] = sub
            return obj
    raise TypeError(f"not a protocol message: {message!r}")  # pragma: no cover


def compact(data: bytes) -> bytes:
    """``data`` as an exact-size copy, for encoded frames and records that are kept.

    orjson writes into a buffer of about 4 KiB and shrinks it in place when done; the freed
    tail is too small for the next such buffer, so every orjson output kept alive holds a
    page of memory however short it is (measured: 3.9 KiB of RSS per kept 115-byte frame;
    a history of one-record frames took 30 times the bytes it counted). The copy costs
    about 50 ns, and the 4 KiB buffer goes straight back to the next encode."""
    return b"%b" % data


def encode(message: ClientMessage | HubMessage) -> bytes:
    """Encode ``message`` as one UTF-8 JSON frame (send it as a *text* frame)."""
    return dumps(to_wire(message))


def encode_msg_frame(topic: str, seq: int, ts: float, records: list[JSON]) -> bytes:
    """Hot path: the ``msg`` frame for records of one topic, encoded once for all receivers."""
    # compact: the hub keeps these in its history and queues
    if len(records) == 1:
        return b"%b" % orjson.dumps(
            {"op": "msg", "topic": topic, "seq": seq, "ts": ts, "data": records[0]}
        )
    return b"%b" % orjson.dumps({"op": "msg", "topic": topic, "seq": seq, "ts": ts, "batch": records})


def encode_ack(request_id: RequestId, seq: int, count: int) -> bytes:
    """Hot path: the ``ack`` of a stored frame (what ``encode(Ack(...))`` gives)."""
    return b"%b" % orjson.dumps({"op": "ack", "id": request_id, "seq": seq, "count": count})


def encode_record(record: object) -> bytes:
    """Encode one record for publishing; raise :class:`SerializationError` if it cannot be.

    numpy scalars and arrays, datetimes and dataclasses are accepted; NaN becomes null.
    """
    try:
        # compact (b"%b" %): the record waits in the outbox until its frame is sealed
        return b"%b" % orjson.dumps(record, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError as exc:  # orjson.JSONEncodeError subclasses TypeError
        raise SerializationError(
            f"record cannot be encoded as JSON ({exc}); publish dicts of str, numbers, "
            "bools, None, lists and nested dicts"
        ) from None


def encode_records_list(records: Iterable[object]) -> list[bytes]:
    """:func:`encode_record` for each record (one call, not one per record); raises
    :class:`SerializationError` like it."""
    dumps_, default, option = orjson.dumps, _default, orjson.OPT_SERIALIZE_NUMPY
    if type(records) is not list:
        records = list(records)  # read once: the error path reads them again
    try:
        # compact (b"%b" %): all of them are kept until their frames are sealed
        return [b"%b" % dumps_(record, default=default, option=option) for record in records]
    except TypeError:
        return [encode_record(record) for record in records]  # raises, naming the problem


def dumps(obj: object) -> bytes:
    """Encode a protocol object (no user data conversions), compact: it may be queued."""
    return compact(orjson.dumps(obj))


def _default(value: object) -> object:
    # pandas Timestamps are datetimes (handled natively); NaT, numpy datetime64 and Decimal are
    # not, so give them the obvious JSON forms instead of failing a whole batch.
    if type(value).__name__ in ("NaTType", "NAType"):
        return None
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if type(value).__name__ in ("Decimal", "Fraction"):
        return float(value)  # type: ignore[arg-type]
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def pub_frame(
    topic: str,
    encoded_records: Sequence[bytes],
    request_id: RequestId | None = None,
    pid: str | None = None,
    cumulative: bool = False,
) -> bytes:
    """Splice already-encoded records into one ``pub`` frame without re-encoding them.

    ``topic`` must be a valid topic name (which needs no JSON escaping).
    """
    tail = b"}" if request_id is None else b',"id":' + orjson.dumps(request_id) + b"}"
    if pid is not None:
        tail = b',"pid":' + orjson.dumps(pid) + (b',"cumulative":true' if cumulative else b"") + tail
    if len(encoded_records) == 1:
        return b'{"op":"pub","topic":"' + topic.encode() + b'","data":' + encoded_records[0] + tail
    return (
        b'{"op":"pub","topic":"'
        + topic.encode()
        + b'","batch":['
        + b",".join(encoded_records)
        + b"]"
        + tail
    )
