from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from livenb import ProtocolError, SerializationError
from livenb import _protocol as p

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=12,
)
topics = st.lists(st.text(alphabet="abXY09_-", min_size=1, max_size=5), min_size=1, max_size=4).map(
    ".".join
)
patterns = st.one_of(topics, topics.map(lambda t: t + ".*"), topics.map(lambda t: t + ".>"))
request_ids = st.one_of(st.none(), st.integers(min_value=0, max_value=2**53), st.text(max_size=10))
records = st.lists(json_values, min_size=1, max_size=5)


@st.composite
def pubs(draw: st.DrawFn) -> p.Pub:
    recs = draw(records)
    single = draw(st.booleans())
    if single:
        recs = recs[:1]
    if draw(st.booleans()):  # idempotent form: producer id and a positive integer id
        pid = draw(st.text(min_size=1, max_size=64))
        return p.Pub(draw(topics), recs, single, draw(st.integers(1, 2**53)), pid, draw(st.booleans()))
    return p.Pub(draw(topics), recs, single, draw(request_ids))


@st.composite
def subs(draw: st.DrawFn) -> p.Sub:
    topic = draw(patterns)
    if draw(st.booleans()):
        return p.Sub(topic)
    epoch = draw(st.text(max_size=8))
    if "*" in topic or ">" in topic:
        seqs = draw(st.none() | st.dictionaries(topics, st.integers(0, 2**53), max_size=3))
        ts = draw(st.none() | st.floats(0, 4e9))
        return p.Sub(topic, p.Position(epoch, None, seqs, ts))
    return p.Sub(topic, p.Position(epoch, draw(st.integers(0, 2**53))))


@st.composite
def msgs(draw: st.DrawFn) -> p.Msg:
    recs = draw(records)
    single = draw(st.booleans())
    if single:
        recs = recs[:1]
    ts = draw(st.floats(min_value=0, max_value=4e9, allow_nan=False))
    return p.Msg(draw(topics), draw(st.integers(1, 2**53)), ts, recs, single)


client_messages = st.one_of(
    pubs(),
    subs(),
    st.builds(p.Unsub, patterns),
    st.builds(p.Auth, st.text(max_size=30)),
    st.just(p.Ping()),
)
hub_messages = st.one_of(
    msgs(),
    st.builds(
        p.Subscribed,
        patterns,
        st.text(max_size=8),
        st.none() | st.integers(0, 2**53),
        st.none() | st.booleans(),
        st.none() | st.floats(0, 4e9),
    ),
    st.builds(p.Unsubscribed, patterns),
    st.builds(
        p.Ack,
        st.integers(0, 2**53) | st.text(max_size=5),
        st.integers(1, 2**53),
        st.integers(1, 1000),
        st.booleans(),
    ),
    st.builds(p.Err, st.sampled_from(p.ERROR_CODES), st.text(max_size=30), request_ids, st.none() | topics),
    st.builds(p.Gap, topics, st.integers(0, 100), st.none() | st.integers(0, 100), st.text(max_size=10)),
    st.just(p.Pong()),
)


@given(client_messages)
def test_client_roundtrip(message: p.ClientMessage) -> None:
    assert p.decode_client(p.encode(message)) == message


@given(hub_messages)
def test_hub_roundtrip(message: p.HubMessage) -> None:
    assert p.decode_hub(p.encode(message)) == message


@given(pubs())
def test_spliced_pub_frame_equals_encoded(message: p.Pub) -> None:
    encoded = [p.encode_record(r) for r in message.records]
    if message.single or len(encoded) > 1:
        frame = p.pub_frame(message.topic, encoded, message.id, message.pid, message.cumulative)
        assert p.decode_client(frame) == message


@given(msgs())
def test_msg_frame_hot_path_decodes(message: p.Msg) -> None:
    frame = p.encode_msg_frame(message.topic, message.seq, message.ts, message.records)
    decoded = p.decode_hub(frame)
    assert isinstance(decoded, p.Msg)
    assert decoded.records == message.records
    assert decoded.seq == message.seq


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", p.BAD_JSON),
        ("", p.BAD_JSON),
        ("[1,2]", p.BAD_MESSAGE),
        ('"pub"', p.BAD_MESSAGE),
        ("{}", p.BAD_FIELD),
        ('{"op": 3}', p.BAD_FIELD),
        ('{"op": "explode"}', p.UNKNOWN_OP),
        ('{"op": "pub", "topic": "t"}', p.BAD_FIELD),
        ('{"op": "pub", "topic": "t", "data": 1, "batch": [1]}', p.BAD_FIELD),
        ('{"op": "pub", "topic": "t", "batch": []}', p.BAD_FIELD),
        ('{"op": "pub", "topic": "t", "batch": {"a": 1}}', p.BAD_FIELD),
        ('{"op": "pub", "topic": 7, "data": 1}', p.BAD_FIELD),
        ('{"op": "pub", "topic": "a b", "data": 1}', p.INVALID_TOPIC),
        ('{"op": "pub", "topic": "ticks.*", "data": 1}', p.INVALID_TOPIC),
        ('{"op": "pub", "topic": "t", "data": 1, "id": [1]}', p.BAD_FIELD),
        ('{"op": "sub"}', p.BAD_FIELD),
        ('{"op": "sub", "topic": "a..b"}', p.INVALID_TOPIC),
        ('{"op": "sub", "topic": "t", "since": 5}', p.BAD_FIELD),
        ('{"op": "sub", "topic": "t", "since": {"epoch": "e", "seq": -1}}', p.BAD_FIELD),
        ('{"op": "sub", "topic": "t", "since": {"epoch": 1, "seq": 1}}', p.BAD_FIELD),
        ('{"op": "unsub", "topic": ""}', p.INVALID_TOPIC),
        ('{"op": "pub", "topic": "t", "data": 1, "pid": "p"}', p.BAD_FIELD),
        ('{"op": "pub", "topic": "t", "data": 1, "pid": "p", "id": "x"}', p.BAD_FIELD),
        ('{"op": "pub", "topic": "t", "data": 1, "pid": 5, "id": 1}', p.BAD_FIELD),
        ('{"op": "pub", "topic": "t", "data": 1, "id": 1, "cumulative": true}', p.BAD_FIELD),
        ('{"op": "pub", "topic": "t", "data": 1, "pid": "p", "id": 1, "cumulative": 1}', p.BAD_FIELD),
        ('{"op": "pub", "topic": "t", "data": 1, "pid": "p", "id": 1, "cumulative": "yes"}', p.BAD_FIELD),
        ('{"op": "sub", "topic": "t.*", "since": {"epoch": "e", "topics": {"a b": 1}}}', p.BAD_FIELD),
        ('{"op": "sub", "topic": "t", "since": {"epoch": "e"}}', p.BAD_FIELD),
        ('{"op": "auth"}', p.BAD_FIELD),
        ('{"op": "msg", "topic": "t", "seq": 1, "ts": 1.0, "data": 1}', p.UNKNOWN_OP),
    ],
)
def test_decode_client_rejects(frame: str, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        p.decode_client(frame)
    assert info.value.code == code
    assert code in p.ERROR_CODES
    assert info.value.message


def test_unknown_fields_are_ignored() -> None:
    assert p.decode_client('{"op":"ping","future":1}') == p.Ping()


def test_bool_is_not_an_integer_seq() -> None:
    with pytest.raises(ProtocolError):
        p.decode_client('{"op":"sub","topic":"t","since":{"epoch":"e","seq":true}}')


def test_encode_record_accepts_numpy_and_datetimes() -> None:
    when = datetime(2026, 1, 2, tzinfo=UTC)
    record: dict[str, Any] = {
        "f": np.float64(1.5),
        "i": np.int64(3),
        "arr": np.arange(3),
        "when": when,
        "nan": math.nan,
        "t": (1, 2),
    }
    decoded = orjson.loads(p.encode_record(record))
    assert decoded == {
        "f": 1.5,
        "i": 3,
        "arr": [0, 1, 2],
        "when": "2026-01-02T00:00:00+00:00",
        "nan": None,
        "t": [1, 2],
    }


def test_encode_record_rejects_unserializable_with_clear_error() -> None:
    with pytest.raises(SerializationError, match="JSON"):
        p.encode_record({"x": object()})


def test_encode_records_list_is_encode_record_for_each_and_fails_the_same_way() -> None:
    records = [{"a": 1}, np.float64(2.5), None, [1, 2]]
    assert p.encode_records_list(records) == [p.encode_record(r) for r in records]
    assert p.encode_records_list(r for r in records) == [p.encode_record(r) for r in records]
    with pytest.raises(SerializationError, match="JSON"):  # a generator is read only once
        p.encode_records_list(r for r in [{"a": 1}, {"x": object()}])


@pytest.mark.parametrize(
    ("code", "reconnect"),
    [
        (None, True),  # broken without a close frame
        (1001, True),  # hub going away (restart)
        (1006, True),
        (1011, True),
        (4008, True),  # slow consumer: resume from history
        (4000, True),
        (4399, True),
        (4400, False),
        (4401, False),  # wrong token: retrying cannot help
        (4999, False),
        (1000, False),
        (1008, False),
        (1009, False),  # a frame too big would be sent again
    ],
)
def test_close_code_ranges(code: int | None, reconnect: bool) -> None:
    assert p.should_reconnect(code) is reconnect


msg_fields = st.fixed_dictionaries(
    {"op": st.just("msg")},
    optional={
        "topic": st.one_of(topics, st.just("a b"), st.just("t.*"), st.integers(-(2**63), 2**64 - 1)),
        "seq": st.one_of(st.integers(-1, 3), st.just(2**63), st.floats(0, 3), st.booleans()),
        "ts": st.one_of(st.floats(0, 2e9), st.integers(0, 10), st.text(max_size=2), st.none()),
        "data": json_values,
        "batch": st.one_of(st.lists(json_values, max_size=3), st.integers(-(2**63), 2**64 - 1)),
    },
)


@given(msg_fields)
def test_the_msg_fast_path_accepts_and_refuses_exactly_what_the_full_checks_do(obj: dict[str, object]) -> None:
    frame = orjson.dumps(obj)
    try:
        expected: object = p._decode_hub_object(orjson.loads(frame))
    except ProtocolError as exc:
        expected = exc.code
    try:
        got: object = p.decode_hub(frame)
    except ProtocolError as exc:
        got = exc.code
    assert got == expected
