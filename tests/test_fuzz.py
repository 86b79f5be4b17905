"""Fuzzing a live hub: >= 10,000 hypothesis-generated protocol messages and >= 100,000 random
byte chunks, with 0 unhandled exceptions, 0 hub exits, and every rejection a documented code.

The hub runs on livenb's loop thread (``livenb.serve``); the fuzzers talk to it over plain
blocking ``websockets`` connections authenticated with the ``Authorization`` header. Frames go
out in bursts, each followed by ``{"op":"ping"}``; the replies up to its ``pong`` are checked
against an oracle built from docs/protocol.md section 8.1 (one reply per ``sub``, ``unsub``,
``ping`` and ``pub`` with ``id``, in order; a refused frame gets one ``err`` with the code
:func:`livenb._protocol.decode_client` assigns). Any ERROR record on the ``livenb`` or
``websockets`` loggers, and anything reaching the loop's exception handler, fails the test.

Reproducible: hypothesis runs derandomized (same examples every run) and without shrinking
(a failure names the single frame that breaks the hub, replayed alone on a fresh
connection); the byte chunks come from a seeded ``random.Random``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import string
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

import livenb
from livenb import _protocol as p
from livenb._errors import ProtocolError
from livenb._history import HistoryLimits
from livenb._loop import loop_thread

from .conftest import UNIT
from .helpers import wait_until

HYPOTHESIS_MESSAGES = 10_000
BYTE_CHUNKS = 100_000
CHUNK_BURST = 250  # chunks per round trip in part 2
MAX_SIZE = 1 << 20  # the hub's default incoming frame limit (close 1009 above it)
CLOSE_INVALID_UTF8 = 1007

# Small limits, so that the fuzzers reach them: too_many_topics, too_many_subscriptions,
# per-topic and hub-wide history eviction, a topic family without history.
HUB_OPTIONS: dict[str, Any] = {
    "max_topics": 32,  # includes RESERVED_TOPICS, created first
    "max_subscriptions": 32,
    "queue_frames": 500_000,  # resumes of '>' may replay a lot; 4008 is not what is fuzzed
    "history": HistoryLimits(records=8, bytes=16 << 10, age=None),
    "history_rules": {"nohist.>": HistoryLimits(records=0)},
    "history_total_bytes": 256 << 10,
}


# ---------------------------------------------------------------------------- capture
class Capture(logging.Handler):
    """Collects ERROR (or exception-carrying) log records and loop exception contexts."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.problems: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info is not None:
            text = f"log {record.name} {record.levelname}: {record.getMessage()}"
            if record.exc_info is not None:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self.problems.append(text)

    def loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.problems.append(f"loop exception handler: {context!r}")


async def _swap_exception_handler(handler: Any) -> Any:
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(handler)
    return previous


@dataclass
class Fuzz:
    hub: livenb.Hub
    capture: Capture

    @property
    def epoch(self) -> str:
        return self.hub.aio.epoch

    def mark(self) -> int:
        """A position in the problem list; a test checks only what came after its mark."""
        return len(self.capture.problems)

    def new_problems(self, since: int) -> str:
        return "\n".join(self.capture.problems[since:])


@pytest.fixture(scope="module")
def fuzz() -> Iterator[Fuzz]:
    capture = Capture()
    loggers = [logging.getLogger("livenb"), logging.getLogger("websockets")]
    for logger in loggers:
        logger.addHandler(capture)
    previous = loop_thread().run(_swap_exception_handler(capture.loop_exception), UNIT)
    try:
        with livenb.serve(port=0, timeout=UNIT, **HUB_OPTIONS) as hub:
            # Create the topics the tests rely on before random ones use up max_topics.
            with hub.connect(timeout=UNIT) as client:
                for topic in RESERVED_TOPICS:
                    client.publish(topic, 0, ack=True, timeout=UNIT)
            yield Fuzz(hub, capture)
    finally:
        loop_thread().run(_swap_exception_handler(previous), UNIT)
        for logger in loggers:
            logger.removeHandler(capture)


# ---------------------------------------------------------------------------- connection
class Link:
    """A raw connection to the hub that is reopened after a (documented) close."""

    def __init__(self, fuzz: Fuzz) -> None:
        self.fuzz = fuzz
        self._ws: ClientConnection | None = None
        self._stack = contextlib.ExitStack()
        self.opened = 0

    @property
    def ws(self) -> ClientConnection:
        if self._ws is None:
            self._ws = self._stack.enter_context(
                connect(
                    self.fuzz.hub.url,
                    additional_headers={"Authorization": f"Bearer {self.fuzz.hub.token}"},
                    compression=None,
                    proxy=None,
                    max_size=None,
                    max_queue=4096,
                    open_timeout=UNIT,
                    close_timeout=UNIT,
                    ping_interval=None,
                )
            )
            self.opened += 1
        return self._ws

    def drop(self) -> None:
        self._ws = None
        self._stack.close()

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.drop()


# ---------------------------------------------------------------------------- oracle
@dataclass(frozen=True)
class Expect:
    """The reply one sent frame must get (docs/protocol.md 8.1 and 9)."""

    kind: str  # "err" | "pong" | "sub" | "unsub" | "ack" | "maybe" (pub without id) | "none"
    code: str | None = None
    id: Any = None
    topic: str | None = None
    alt: str | None = None  # a pub may also get an err with this code instead


def _id_of(frame: bytes) -> Any:
    """The ``id`` the hub echoes in an ``err`` (a string or a 64-bit integer, else none)."""
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is dict:
        rid = obj.get("id")
        if type(rid) is str or (type(rid) is int and -(2**63 - 1) <= rid <= 2**63 - 1):
            return rid
    return None


def expect_text(frame: bytes) -> Expect:
    try:
        message = p.decode_client(frame)
    except ProtocolError as exc:
        return Expect("err", exc.code, _id_of(frame))
    match message:
        case p.Ping():
            return Expect("pong")
        case p.Sub(topic):
            return Expect("sub", topic=topic)
        case p.Unsub(topic):
            return Expect("unsub", topic=topic)
        case p.Pub(topic, records, _single, request_id):
            kind = "maybe" if request_id is None else "ack"
            try:  # the hub re-encodes records in msg frames: orjson refuses > 254 levels
                p.encode_msg_frame(topic, 1, 0.0, records)
            except TypeError:  # relayed some other way, or refused as a bad field
                return Expect(kind, id=request_id, topic=topic, alt=p.BAD_FIELD)
            return Expect(kind, id=request_id, topic=topic)
    return Expect("none")  # auth after authentication: ignored


BINARY = Expect("err", p.BINARY_FRAME)


def _fits(e: Expect, m: p.HubMessage) -> bool:
    match m:
        case p.Err(code, _text, rid, topic):
            if e.kind == "err":
                return code == e.code and rid == e.id and topic == e.topic
            if e.kind == "sub":
                return code == p.TOO_MANY_SUBSCRIPTIONS and rid is None and topic == e.topic
            if e.kind == "unsub":
                return code == p.NOT_SUBSCRIBED and rid is None and topic == e.topic
            if e.kind in ("ack", "maybe"):
                if code == e.alt and rid == e.id and topic in (None, e.topic):
                    return True
                return code == p.TOO_MANY_TOPICS and rid == e.id and topic == e.topic
            return False
        case p.Pong():
            return e.kind == "pong"
        case p.Subscribed(topic):
            return e.kind == "sub" and topic == e.topic
        case p.Unsubscribed(topic):
            return e.kind == "unsub" and topic == e.topic
        case p.Ack(rid):
            return e.kind == "ack" and rid == e.id
    return False


def check_replies(
    ws: ClientConnection, pending: deque[tuple[Expect, bytes]], counts: Counter[str]
) -> None:
    """Read until ``pending`` (expectations with their frames, ending with the burst's ping)
    is used up; every reply must be the one the oracle expects, in order."""
    while pending:
        raw = ws.recv(timeout=UNIT)
        assert isinstance(raw, str), f"hub sent a binary frame: {raw!r}"
        try:
            message = p.decode_hub(raw)
        except ProtocolError as exc:
            raise AssertionError(f"hub sent an invalid frame ({exc.code}): {raw[:500]!r}") from None
        if isinstance(message, p.Err):
            assert message.code in p.ERROR_CODES, f"undocumented error code: {raw[:500]!r}"
            counts[message.code] += 1
        else:
            counts[type(message).__name__] += 1
        if isinstance(message, p.Msg | p.Gap):
            continue  # deliveries and replays interleave with replies
        while pending and pending[0][0].kind == "maybe" and not _fits(pending[0][0], message):
            pending.popleft()  # a pub without id that succeeded: no reply
        assert pending, f"reply with no request: {raw[:500]!r}"
        expect, frame = pending.popleft()
        assert _fits(expect, message), f"frame {frame[:300]!r} expected {expect}, got {raw[:500]!r}"


def round_trip(
    fuzz: Fuzz, link: Link, frames: list[tuple[bytes, bool]], counts: Counter[str]
) -> None:
    """Send ``frames`` ((payload, is_text) pairs) and a ping; check every reply up to the pong.

    When the hub closes the connection or stops answering, the failure names the frame that
    does it (see :func:`find_culprit`) and what the hub logged.
    """
    before = fuzz.mark()
    ws = link.ws
    pending: deque[tuple[Expect, bytes]] = deque()
    try:
        for payload, text in [*frames, (b'{"op":"ping"}', True)]:
            expect = expect_text(payload) if text else BINARY
            if expect.kind != "none":
                pending.append((expect, payload))
            ws.send(payload, text=text)
        check_replies(ws, pending, counts)
    except AssertionError:
        link.drop()  # unread replies would confuse the next burst
        raise
    except (ConnectionClosed, TimeoutError) as exc:
        link.drop()
        settle(fuzz)  # websockets closes (1011) before it logs the handler's exception
        what = (
            f"closed the connection ({exc.rcvd})"
            if isinstance(exc, ConnectionClosed)
            else f"sent no reply within {UNIT} s"
        )
        problems = fuzz.new_problems(before)
        raise AssertionError(
            f"the hub {what} during a burst of {len(frames)} frames; "
            f"{find_culprit(fuzz, frames)}\n{problems}"
        ) from None
    problems = fuzz.new_problems(before)
    assert not problems, problems


def find_culprit(fuzz: Fuzz, frames: list[tuple[bytes, bool]]) -> str:
    """Replay a failed burst one frame per fresh connection: which frame alone breaks it?

    (Replies already queued are lost when a connection dies, so the order of the replies
    does not tell.) Bounded: at most one round trip per frame, only after a failure.
    """
    for payload, text in frames:
        with Link(fuzz) as link:
            ws = link.ws
            try:
                ws.send(payload, text=text)
                ws.send(b'{"op":"ping"}', text=True)
                while True:
                    raw = ws.recv(timeout=UNIT)
                    if isinstance(raw, str) and raw.startswith('{"op":"pong"'):
                        break
            except ConnectionClosed as exc:
                settle(fuzz)
                return f"alone, this frame makes it close ({exc.rcvd}): {payload[:500]!r}"
            except TimeoutError:
                return f"alone, this frame gets no reply within {UNIT} s: {payload[:500]!r}"
    return "no single frame of it fails alone (the burst as a whole does)"


def settle(fuzz: Fuzz) -> None:
    """Wait (up to a unit) until the hub has finished with every connection, logging included:
    websockets closes with 1011 first and logs the handler's exception after that."""
    server = getattr(fuzz.hub.aio, "_server", None)
    tasks = getattr(server, "handler_tasks", None)
    with contextlib.suppress(AssertionError):
        if tasks is not None:
            wait_until(lambda: not tasks, UNIT, "connection handlers to finish")
        else:
            wait_until(lambda: fuzz.hub.stats()["connections"] == 0, UNIT, "closed connections")


def check_survived(fuzz: Fuzz, since: int) -> None:
    """No problem was recorded after ``since``, the hub runs, and a fresh client publishes
    and receives."""
    assert not fuzz.new_problems(since), fuzz.new_problems(since)
    hub = fuzz.hub
    assert hub.running
    with hub.connect(timeout=UNIT) as client, client.subscribe("survivor", timeout=UNIT) as sub:
        seq = client.publish("survivor", {"ok": True}, ack=True, timeout=UNIT)
        assert seq is not None and seq >= 1
        sub.wait(1, timeout=UNIT)
        assert sub.frame["ok"].tolist()[-1] is True
    assert not fuzz.new_problems(since), fuzz.new_problems(since)


# ---------------------------------------------------------------------------- part 1
class _Epoch:
    """Stands for the hub's real epoch (unknown when strategies are built)."""


HUB_EPOCH = _Epoch()


def _short(text: str) -> str:
    return repr(text) if len(text) <= 120 else f"{text[:60]!r}...{text[-40:]!r} ({len(text)} chars)"


@dataclass(frozen=True)
class Obj:
    """A JSON value to encode; ``ascii`` picks \\u escapes for non-ASCII characters."""

    value: Any
    ascii: bool

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # short hypothesis reprs
        printer.text(f"Obj({_short(repr(self.value))}, ascii={self.ascii})")


@dataclass(frozen=True)
class Raw:
    """Frame text sent as is (not producible by json.dumps: NaN, comments, deep nesting...)."""

    text: str

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(f"Raw({_short(self.text)})")


def encode_item(item: Obj | Raw, epoch: str) -> bytes:
    if isinstance(item, Raw):
        return item.text.encode()

    def default(value: object) -> object:
        if value is HUB_EPOCH:
            return epoch
        raise TypeError(repr(value))

    text = json.dumps(item.value, ensure_ascii=item.ascii, default=default)
    try:
        return text.encode()
    except UnicodeEncodeError:  # lone surrogates: only expressible as \\u escapes
        return json.dumps(item.value, ensure_ascii=True, default=default).encode()


TOPIC_CHARS = string.ascii_letters + string.digits + "_-"
NAMED_TOPICS = [
    "ticks", "ticks.ACME", "ticks.XYZ", "ticks.ACME.bid", "news", "sensor-3.temp_c",
    "a", "A.b.C", "nohist.x", "deep",
]  # fmt: skip
NAMED_PATTERNS = [
    "*", ">", "ticks.*", "ticks.>", "*.ACME", "ticks.*.bid", "*.*", "*.>", "nohist.>", "a.*",
]  # fmt: skip
RESERVED_TOPICS = [*NAMED_TOPICS, "survivor", "after.fuzz", "big"]
BAD_TOPICS = [
    "", ".", ".a", "a.", "a..b", "a b", "ticks/ACME", "tick\u00e9", "tick*", "a.>.b", ">.a",
    "**", "a.**", "\x00", "\U0001f600", " ticks", "ticks\n", "a" * 256, "a." * 128, "\ud800",
    "ticks.*", ">", "*", "a.*.b", "ticks.\u0130", "\u212a",
]  # fmt: skip
ODD_NUMBERS: list[Any] = [
    0, -1, 1, 2**31, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63),
    -(2**63) - 1, 10**30, -(10**30), 10**400, 1e308, -1e308, 5e-324, 0.0, -0.0, 1.5, True,
    False,
]  # fmt: skip

segments = st.text(TOPIC_CHARS, min_size=1, max_size=6)
topics = st.one_of(
    st.sampled_from(NAMED_TOPICS),
    st.lists(segments, min_size=1, max_size=4).map(".".join),
    st.sampled_from(["a" * 255, "a." * 127 + "a"]),
)
patterns = st.one_of(
    topics,
    st.sampled_from(NAMED_PATTERNS),
    st.builds(
        lambda parts, tail: ".".join(parts) + tail,
        st.lists(st.one_of(segments, st.just("*")), min_size=1, max_size=4),
        st.sampled_from(["", ".>"]),
    ),
)
odd_strings = st.one_of(
    st.sampled_from(BAD_TOPICS),
    st.text(max_size=20),
    st.text(st.characters(codec="utf-8"), max_size=300),
    st.text(st.characters(categories=["Cs", "Co", "Cc", "Zs"]), max_size=10),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(ODD_NUMBERS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
ids = st.one_of(st.integers(-5, 50), st.text(max_size=12), st.sampled_from(ODD_NUMBERS))
epochs = st.one_of(st.just(HUB_EPOCH), st.text("0123456789abcdef", min_size=16, max_size=16))
since_values = st.one_of(
    st.fixed_dictionaries({"epoch": epochs, "seq": st.integers(0, 2**64 - 1)}),
    st.fixed_dictionaries(
        {"epoch": epochs},
        optional={
            "topics": st.dictionaries(topics, st.integers(0, 50), max_size=3),
            "ts": st.one_of(st.floats(-1e12, 1e12), st.integers(0, 2**40)),
            "seq": st.integers(0, 100),
        },
    ),
)

auth_messages = st.fixed_dictionaries({"op": st.just("auth"), "token": st.text(max_size=40)})
ping_messages = st.fixed_dictionaries({"op": st.just("ping")}, optional={"id": ids})
sub_messages = st.fixed_dictionaries(
    {"op": st.just("sub"), "topic": patterns}, optional={"since": since_values}
)
unsub_messages = st.fixed_dictionaries({"op": st.just("unsub"), "topic": patterns})


@st.composite
def pub_messages(draw: st.DrawFn) -> dict[str, Any]:
    msg: dict[str, Any] = {"op": "pub", "topic": draw(topics)}
    if draw(st.booleans()):
        msg["data"] = draw(json_values)
    else:
        msg["batch"] = draw(st.lists(json_values, min_size=1, max_size=5))
    producer = draw(st.sampled_from(["none", "id", "pid"]))
    if producer == "id":
        msg["id"] = draw(ids)
    elif producer == "pid":  # small pools, so that retries (dup acks) happen
        msg["pid"] = draw(st.sampled_from(["p1", "p2", "x" * 64]))
        msg["id"] = draw(st.integers(1, 30))
    return msg


bad_topic_messages = st.fixed_dictionaries(
    {"op": st.sampled_from(["pub", "sub", "unsub"]), "topic": odd_strings},
    optional={"data": json_values, "id": ids},
)
valid_messages = st.one_of(
    pub_messages(), sub_messages, unsub_messages, ping_messages, auth_messages
)
wrong_values = st.one_of(json_values, odd_strings, since_values)


@st.composite
def mutated_messages(draw: st.DrawFn) -> Any:
    msg = dict(draw(valid_messages))
    how = draw(
        st.sampled_from(["drop", "retype", "extra", "op", "id", "pid", "since", "both", "wrap"])
    )
    if how == "drop":
        del msg[draw(st.sampled_from(sorted(msg)))]
    elif how == "retype":
        msg[draw(st.sampled_from(sorted(msg)))] = draw(wrong_values)
    elif how == "extra":
        msg.update(draw(st.dictionaries(st.text(max_size=10), json_values, min_size=1, max_size=3)))
    elif how == "op":
        msg["op"] = draw(
            st.one_of(
                st.sampled_from(
                    ["PUB", "Ping", "pub ", "sub\x00", "msg", "ack", "err", "pong", "gap", ""]
                ),
                st.text(max_size=12),
                json_values,
            )
        )
    elif how == "id":
        msg["id"] = draw(st.one_of(json_values, st.sampled_from(ODD_NUMBERS)))
    elif how == "pid":
        msg["pid"] = draw(st.one_of(json_values, st.text(max_size=70)))
        if draw(st.booleans()):
            msg["id"] = draw(st.one_of(ids, json_values))
    elif how == "since":
        msg["since"] = draw(
            st.one_of(
                json_values,
                st.fixed_dictionaries({"epoch": wrong_values, "seq": wrong_values}),
                st.fixed_dictionaries(
                    {"epoch": epochs, "topics": wrong_values, "ts": wrong_values}
                ),
            )
        )
    elif how == "both":
        msg["data"] = draw(json_values)
        msg["batch"] = draw(st.one_of(st.lists(json_values, max_size=3), json_values))
    else:
        return draw(st.one_of(st.just([msg]), scalars, st.lists(json_values, max_size=3)))
    return msg


def _nest(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "]" * depth
    if kind == "dict":
        return '{"a":' * depth + "null" + "}" * depth
    return '[{"a":' * (depth // 2) + "1" + "}]" * (depth // 2)


DEPTHS = [1, 64, 200, 251, 252, 253, 254, 255, 256, 300, 1000, 1022, 1023, 1024, 1025, 3000]
DEEP_PLACES = {
    "data": '{"op":"pub","topic":"deep","data":%s,"id":"deep"}',
    "batch": '{"op":"pub","topic":"deep","batch":[1,%s],"id":"deep"}',
    "extra": '{"op":"ping","x":%s}',
    "since": '{"op":"sub","topic":"deep.*","since":{"epoch":"e","topics":%s}}',
    "top": "%s",
}
RAW_FRAMES = [
    "", " ", "null", "true", "1", '"ping"', "{}", "[]", "[{}]", '{"op":null}', '{"op":1}',
    '{"op":"ping"} {"op":"ping"}', '{"op":"ping"}\n', "\ufeff" + '{"op":"ping"}',
    '{"op":"ping",}', '{"op":"ping"/*c*/}', "{'op':'ping'}", '{"op":"ping"', '{"op":"ping"}}',
    '{"op":"ping","op":"pub"}', '{"op":"pub","op":"ping"}',
    '{"op":"pub","topic":"t","data":NaN}', '{"op":"pub","topic":"t","data":Infinity}',
    '{"op":"pub","topic":"t","data":-Infinity,"id":1}', '{"op":"pub","topic":"t","data":1e400}',
    '{"op":"pub","topic":"t","data":1,"id":5.0}', '{"op":"pub","topic":"t","data":1,"id":5e0}',
    '{"op":"pub","topic":"t","data":1,"id":18446744073709551616}',
    '{"op":"pub","topic":"t","data":1,"id":18446744073709551615}',
    '{"op":"pub","topic":"t","data":1,"id":-9223372036854775809}',
    '{"op":"pub","topic":"t","data":"\\ud800"}', '{"op":"pub","topic":"t","data":"\\udc00\\ud800"}',
    '{"op":"pub","topic":"t","data":"\\u0000"}', '{"op":"pub","topic":"t","data":01}',
    '{"op":"pub","topic":"t","data":.5}', '{"op":"pub","topic":"t","data":+1}',
    '{"op":"pub","topic":"t","data":"\x01"}', '{"op":"sub","topic":"t","since":{"epoch":"e","seq":1.0}}',
    '{"op":"sub","topic":"t","since":{"epoch":"e","seq":-0}}',
    '{"op":"pub","topic":"t\\u002ex","data":1,"id":"esc"}', '{"\\u006fp":"ping"}',
    '{"op":"pub","topic":"t","batch":[],"id":7}', '{"op":"pub","topic":"t","data":null,"id":null}',
    '{"op":"pub","topic":"t","pid":"p9","id":0,"data":1}',
]  # fmt: skip

raw_frames = st.one_of(
    st.sampled_from(RAW_FRAMES).map(Raw),
    st.builds(
        lambda place, depth, kind: Raw(DEEP_PLACES[place] % _nest(depth, kind)),
        st.sampled_from(sorted(DEEP_PLACES)),
        st.sampled_from(DEPTHS),
        st.sampled_from(["list", "dict", "mixed"]),
    ),
    st.builds(  # a valid message cut short
        lambda value, cut: Raw(json.dumps(value)[: max(0, len(json.dumps(value)) - cut)]),
        pub_messages(),
        st.integers(1, 20),
    ),
)

fuzz_items = st.one_of(
    st.builds(Obj, valid_messages, st.booleans()),
    st.builds(Obj, bad_topic_messages, st.booleans()),
    st.builds(Obj, mutated_messages(), st.booleans()),
    raw_frames,
)
BURST = st.lists(fuzz_items, min_size=40, max_size=60)
EXAMPLES = 250


def test_hypothesis_protocol_messages(fuzz: Fuzz) -> None:
    start = fuzz.mark()
    counts: Counter[str] = Counter()
    sent = 0
    with Link(fuzz) as link:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            # No shrinking: each shrink step is a network round trip (and a reconnect after a
            # crash); round_trip names the offending frame instead.
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.data_too_large,
                HealthCheck.large_base_example,
            ],
        )
        @given(burst=BURST)
        def burst_gets_documented_replies(burst: list[Obj | Raw]) -> None:
            nonlocal sent
            frames = [(encode_item(item, fuzz.epoch), True) for item in burst]
            sent += len(frames)
            round_trip(fuzz, link, frames, counts)

        burst_gets_documented_replies()
        opened = link.opened
    print(f"\nhypothesis: {sent} messages, {opened} connection(s), replies {dict(counts)}")
    assert sent >= HYPOTHESIS_MESSAGES
    assert opened == 1, "the hub closed the fuzzing connection"
    for code in (p.BAD_JSON, p.BAD_FIELD, p.INVALID_TOPIC, p.UNKNOWN_OP, p.BAD_MESSAGE):
        assert counts[code], f"no {code} at all: the generator lost its reach"
    assert counts[p.TOO_MANY_TOPICS] and counts[p.TOO_MANY_SUBSCRIPTIONS]
    assert counts["Ack"] and counts["Subscribed"] and counts["Unsubscribed"]
    check_survived(fuzz, start)


# ---------------------------------------------------------------------------- part 2
JSON_TOKENS = [
    "{", "}", "[", "]", ":", ",", '"', '"op"', '"pub"', '"sub"', '"unsub"', '"ping"', '"auth"',
    '"topic"', '"data"', '"batch"', '"id"', '"pid"', '"since"', '"epoch"', '"seq"', '"ticks"',
    '"ticks.*"', '">"', "null", "true", "false", "0", "-1", "1e400", "NaN", "2.5", '"\\u00e9"',
    '"\\ud800"', " ", "\n", "\\", '{"op":', '{"op":"pub","topic":"t","data":',
]  # fmt: skip
SAMPLE_FRAMES = [
    orjson.dumps(m)
    for m in (
        {"op": "pub", "topic": "ticks.ACME", "data": {"px": 1.5, "sym": "ACME"}, "id": 1},
        {"op": "pub", "topic": "t", "batch": [1, "two", None, [3]]},
        {"op": "sub", "topic": "ticks.*", "since": {"epoch": "0" * 16, "seq": 3}},
        {"op": "unsub", "topic": "ticks.>"},
        {"op": "ping"},
        {"op": "auth", "token": "x"},
        {"op": "pub", "topic": "t", "data": "\u00e9\u4e2d\U0001f600", "pid": "p", "id": 2},
    )
]
INVALID_UTF8 = [
    b"\xff",
    b"\xfe",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe2\x82",
    b"\x80",
]


def _text_chunk(rng: random.Random, size: int) -> bytes:
    flavour = rng.random()
    if flavour < 0.3:
        return "".join(rng.choices(string.printable, k=size)).encode()
    if flavour < 0.5:
        chars = (rng.randrange(0x110000) for _ in range(size))
        return "".join(chr(c) for c in chars if not 0xD800 <= c <= 0xDFFF).encode()
    if flavour < 0.8:
        out: list[str] = []
        length = 0
        while length < size:
            token = rng.choice(JSON_TOKENS)
            out.append(token)
            length += len(token)
        return "".join(out).encode()
    frame = bytearray(rng.choice(SAMPLE_FRAMES))  # a real frame with a few bytes mutated
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(frame) + 1)
        op = rng.random()
        if op < 0.4 and at < len(frame):
            frame[at] = rng.randrange(0x20, 0x7F)
        elif op < 0.7:
            frame[at:at] = bytes([rng.randrange(0x20, 0x7F)])
        else:
            del frame[at : at + rng.randint(1, 8)]
    return bytes(frame).decode("utf-8", "replace").encode()  # a cut may split a character


def random_chunks(rng: random.Random, count: int) -> Iterator[tuple[bytes, str]]:
    """``count`` chunks: (payload, "text" | "binary" | "invalid"); "invalid" is a text frame
    that is not UTF-8 (the WebSocket layer closes with 1007)."""
    for _ in range(count):
        size = rng.randint(0, 200) if rng.random() < 0.99 else rng.randint(201, 64 << 10)
        kind = rng.random()
        if kind < 0.003:
            payload = _text_chunk(rng, size)
            at = rng.randrange(len(payload) + 1)
            yield payload[:at] + rng.choice(INVALID_UTF8) + payload[at:], "invalid"
        elif kind < 0.3:
            yield rng.randbytes(size), "binary"
        else:
            yield _text_chunk(rng, size), "text"


def expect_invalid_utf8_close(fuzz: Fuzz, link: Link, payload: bytes) -> None:
    before = fuzz.mark()
    ws = link.ws
    ws.send(payload, text=True)
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=UNIT)  # the preceding burst was answered: nothing else may come
    link.drop()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == CLOSE_INVALID_UTF8, (
        f"expected close {CLOSE_INVALID_UTF8} after {payload[:200]!r}, got {closed.value!r}"
    )
    problems = fuzz.new_problems(before)
    assert not problems, problems


def test_random_byte_chunks(fuzz: Fuzz) -> None:
    start = fuzz.mark()
    rng = random.Random(20240611)
    counts: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    with Link(fuzz) as link:
        burst: list[tuple[bytes, bool]] = []
        for payload, kind in random_chunks(rng, BYTE_CHUNKS):
            kinds[kind] += 1
            if kind == "invalid":
                if burst:
                    round_trip(fuzz, link, burst, counts)
                    burst = []
                expect_invalid_utf8_close(fuzz, link, payload)
                continue
            burst.append((payload, kind == "text"))
            if len(burst) == CHUNK_BURST:
                round_trip(fuzz, link, burst, counts)
                burst = []
        round_trip(fuzz, link, burst, counts)
        opened = link.opened
    print(f"\nbyte chunks: {dict(kinds)}, {opened} connection(s), replies {dict(counts)}")
    assert sum(kinds.values()) >= BYTE_CHUNKS
    assert opened == kinds["invalid"] + 1, "the hub closed a connection it should have kept"
    assert counts[p.BINARY_FRAME] == kinds["binary"]
    assert counts[p.BAD_JSON] and kinds["invalid"]
    check_survived(fuzz, start)


# ---------------------------------------------------------------------------- edges
@pytest.mark.parametrize("depth", [1, 100, 250, 251, 252, 253, 254, 255, 500, 1022, 1023, 1024])
@pytest.mark.parametrize("place", ["data", "batch"])
def test_deeply_nested_records(fuzz: Fuzz, place: str, depth: int) -> None:
    """JSON nested as deep as the hub's parser accepts is relayed or refused with an err,
    never a crashed connection (a subscriber must receive what was acknowledged)."""
    start = fuzz.mark()
    counts: Counter[str] = Counter()
    with Link(fuzz) as link:
        round_trip(fuzz, link, [(b'{"op":"sub","topic":"deep"}', True)], counts)
        frame = DEEP_PLACES[place] % _nest(depth, "list")
        round_trip(fuzz, link, [(frame.encode(), True)], counts)
        assert link.opened == 1
    assert counts["Msg"] == counts["Ack"], "an acknowledged record did not reach the subscriber"
    assert not fuzz.new_problems(start), fuzz.new_problems(start)


@pytest.mark.parametrize("text", [True, False], ids=["text", "binary"])
def test_oversize_frame_closes_1009_and_hub_survives(fuzz: Fuzz, text: bool) -> None:
    start = fuzz.mark()
    counts: Counter[str] = Counter()
    head, tail = b'{"op":"pub","topic":"big","data":"', b'","id":"big"}'
    fitting = head + b"x" * (MAX_SIZE - len(head) - len(tail)) + tail
    assert len(fitting) == MAX_SIZE
    with Link(fuzz) as link:
        round_trip(fuzz, link, [(fitting, text)], counts)  # exactly at the limit: processed
        assert counts["Ack" if text else p.BINARY_FRAME] == 1
        link.ws.send(fitting + b" ", text=text)
        with pytest.raises(ConnectionClosed) as closed:
            link.ws.recv(timeout=UNIT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == p.CLOSE_TOO_BIG
        link.drop()
        round_trip(fuzz, link, [(b'{"op":"ping"}', True)], counts)  # a new connection works
    check_survived(fuzz, start)


async def test_hub_survived_and_serves_a_fresh_async_client(fuzz: Fuzz, unit: float) -> None:
    """Runs last: after everything above, the same hub still serves async clients."""
    start = fuzz.mark()
    assert fuzz.hub.running
    hub = fuzz.hub
    previous = await _swap_exception_handler(fuzz.capture.loop_exception)  # this test's loop
    try:
        await _use_fresh_async_clients(hub, unit)
    finally:
        await _swap_exception_handler(previous)
    assert not fuzz.new_problems(start), fuzz.new_problems(start)


async def _use_fresh_async_clients(hub: livenb.Hub, unit: float) -> None:
    async with (
        livenb.AsyncClient(hub.url, hub.token) as publisher,
        livenb.AsyncClient(hub.url, hub.token) as subscriber,
    ):
        sub = subscriber.subscribe("after.fuzz")
        await asyncio.wait_for(sub.wait_ready(), unit)
        seq = await asyncio.wait_for(publisher.publish("after.fuzz", {"n": 1}, ack=True), unit)
        assert seq is not None
        async with asyncio.timeout(unit):
            record = await anext(aiter(sub))
        assert record.data == {"n": 1} and record.seq == seq
