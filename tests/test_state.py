"""HubCore without a network: receive frames, drain actions."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livenb import _protocol as p
from livenb._permissions import EVERYTHING
from livenb._state import Close, FoldableAck, HubCore, Send


def frames_for(actions: list[Send | Close], conn: int) -> list[dict[str, object]]:
    return [
        orjson.loads(a.frame) for a in actions if isinstance(a, Send) and conn in a.targets
    ]


def core(**kwargs: object) -> HubCore:
    c = HubCore(**kwargs)  # type: ignore[arg-type]
    for conn in (1, 2, 3):
        c.open(conn, permissions=EVERYTHING)
    return c


def test_publish_assigns_consecutive_seqs_per_topic() -> None:
    c = core()
    c.receive(1, '{"op":"sub","topic":"a"}', 1.0)
    c.receive(2, '{"op":"pub","topic":"a","data":{"x":1}}', 2.0)
    c.receive(2, '{"op":"pub","topic":"a","batch":[{"x":2},{"x":3}],"id":"r1"}', 3.0)
    c.receive(2, '{"op":"pub","topic":"b","data":1}', 4.0)
    out = c.drain()
    to1 = frames_for(out, 1)
    assert to1[0] == {"op": "subscribed", "topic": "a", "epoch": c.epoch, "seq": 0, "ts": 1.0}
    assert to1[1] == {"op": "msg", "topic": "a", "seq": 1, "ts": 2.0, "data": {"x": 1}}
    assert to1[2] == {"op": "msg", "topic": "a", "seq": 2, "ts": 3.0, "batch": [{"x": 2}, {"x": 3}]}
    assert len(to1) == 3  # nothing from topic b
    assert frames_for(out, 2) == [{"op": "ack", "id": "r1", "seq": 2, "count": 2}]
    assert c.last_seq("a") == 3 and c.last_seq("b") == 1
    assert c.counters.records_in == 4


def test_a_cumulative_pub_gets_a_foldable_ack_and_a_duplicate_a_plain_one() -> None:
    c = core()
    c.receive(2, '{"op":"pub","topic":"a","batch":[1,2],"id":1,"pid":"p","cumulative":true}', 1.0)
    c.receive(2, '{"op":"pub","topic":"a","data":3,"id":2,"pid":"p"}', 1.0)
    c.receive(2, '{"op":"pub","topic":"a","batch":[1,2],"id":1,"pid":"p","cumulative":true}', 1.0)
    folded, own, dup = c.drain()
    assert folded == FoldableAck(2, 1, "p", 1, 2)
    assert isinstance(own, Send) and orjson.loads(own.frame) == {"op": "ack", "id": 2, "seq": 3, "count": 1}
    assert isinstance(dup, Send) and orjson.loads(dup.frame)["dup"] is True


def test_frame_encoded_once_for_all_receivers() -> None:
    c = core()
    for conn in (1, 2, 3):
        c.receive(conn, '{"op":"sub","topic":"t.>"}', 0.0)
    c.drain()
    c.receive(3, '{"op":"pub","topic":"t.x","batch":[1,2,3]}', 1.0)
    (send,) = c.drain()
    assert isinstance(send, Send)
    assert send.targets == (1, 2, 3)
    assert send.records == 3
    assert c.counters.records_out == 9


def test_overlapping_patterns_deliver_once_per_connection() -> None:
    c = core()
    for pattern in ("t.x", "t.*", "t.>", ">"):
        c.receive(1, orjson.dumps({"op": "sub", "topic": pattern}), 0.0)
    c.drain()
    c.receive(2, '{"op":"pub","topic":"t.x","data":1}', 1.0)
    sends = [a for a in c.drain() if isinstance(a, Send)]
    assert len(sends) == 1 and sends[0].targets == (1,)


def test_unsubscribe_and_close_remove_routes() -> None:
    c = core()
    c.receive(1, '{"op":"sub","topic":"t"}', 0.0)
    c.receive(2, '{"op":"sub","topic":"*"}', 0.0)
    c.drain()
    c.receive(1, '{"op":"unsub","topic":"t"}', 0.0)
    assert frames_for(c.drain(), 1) == [{"op": "unsubscribed", "topic": "t"}]
    c.close(2)
    c.receive(3, '{"op":"pub","topic":"t","data":1}', 1.0)
    assert c.drain() == []
    assert c.subscriptions == 0


def test_unsub_without_sub_is_an_error() -> None:
    c = core()
    c.receive(1, '{"op":"unsub","topic":"t"}', 0.0)
    (err,) = frames_for(c.drain(), 1)
    assert err["code"] == p.NOT_SUBSCRIBED and err["topic"] == "t"


def test_ping_pong() -> None:
    c = core()
    c.receive(1, '{"op":"ping"}', 0.0)
    assert frames_for(c.drain(), 1) == [{"op": "pong"}]


def test_bad_frames_get_errors_and_change_nothing() -> None:
    c = core()
    c.receive(1, '{"op":"sub","topic":"t"}', 0.0)
    c.receive(2, '{"op":"pub","topic":"t","data":1}', 0.0)
    c.drain()
    for bad in ("nope", "[]", '{"op":"zap"}', '{"op":"pub","topic":"t"}', '{"op":"pub","topic":"t t","data":1}'):
        c.receive(2, bad, 0.0)
    c.receive_binary(2)
    out = c.drain()
    assert frames_for(out, 1) == []
    codes = [f["code"] for f in frames_for(out, 2)]
    assert codes == [p.BAD_JSON, p.BAD_MESSAGE, p.UNKNOWN_OP, p.BAD_FIELD, p.INVALID_TOPIC, p.BINARY_FRAME]
    assert c.last_seq("t") == 1
    c.receive(2, '{"op":"pub","topic":"t","data":2}', 0.0)
    assert frames_for(c.drain(), 1)[0]["seq"] == 2


def test_error_cites_request_id() -> None:
    c = core()
    c.receive(1, '{"op":"pub","topic":"bad topic","data":1,"id":9}', 0.0)
    (err,) = frames_for(c.drain(), 1)
    assert err["id"] == 9


def test_topic_limit() -> None:
    c = core(max_topics=2)
    for topic in ("a", "b", "c"):
        c.receive(1, orjson.dumps({"op": "pub", "topic": topic, "data": 1, "id": topic}), 0.0)
    out = frames_for(c.drain(), 1)
    assert [f["op"] for f in out] == ["ack", "ack", "err"]
    assert out[2]["code"] == p.TOO_MANY_TOPICS and out[2]["id"] == "c"
    assert c.topics == 2


def test_subscription_limit() -> None:
    c = core(max_subscriptions=1)
    c.receive(1, '{"op":"sub","topic":"a"}', 0.0)
    c.receive(1, '{"op":"sub","topic":"a"}', 0.0)  # same one again: fine
    c.receive(1, '{"op":"sub","topic":"b"}', 0.0)
    out = frames_for(c.drain(), 1)
    assert [f["op"] for f in out] == ["subscribed", "subscribed", "err"]
    assert out[2]["code"] == p.TOO_MANY_SUBSCRIPTIONS


def test_unauthenticated_connection_must_auth_first() -> None:
    c = HubCore(token="s3cret")
    c.open(1, permissions=None)
    c.open(2, permissions=None)
    c.open(3, permissions=None)
    c.receive(1, '{"op":"sub","topic":"t"}', 0.0)
    c.receive(2, '{"op":"auth","token":"wrong"}', 0.0)
    c.receive(3, '{"op":"auth","token":"s3cret"}', 0.0)
    c.receive(3, '{"op":"sub","topic":"t"}', 0.0)
    out = c.drain()
    closes = [a for a in out if isinstance(a, Close)]
    assert [(a.conn, a.code) for a in closes] == [(1, p.CLOSE_UNAUTHORIZED), (2, p.CLOSE_UNAUTHORIZED)]
    assert frames_for(out, 3)[0]["op"] == "subscribed"
    assert frames_for(out, 1) == [] and frames_for(out, 2) == []


def test_token_check_is_exact() -> None:
    c = HubCore(token="abc")
    assert c.check_token("abc")
    assert not c.check_token("abcd") and not c.check_token("") and not c.check_token(None)
    assert HubCore().check_token(None)


@settings(max_examples=60)
@given(
    st.lists(
        st.tuples(st.integers(1, 3), st.sampled_from(["a", "a.b", "a.c", "b"]), st.integers(1, 4)),
        max_size=30,
    )
)
def test_seq_is_gapless_per_topic(publishes: list[tuple[int, str, int]]) -> None:
    c = core()
    c.receive(1, '{"op":"sub","topic":">"}', 0.0)
    c.drain()
    seen: dict[str, list[int]] = {}
    for conn, topic, n in publishes:
        c.receive(conn, orjson.dumps({"op": "pub", "topic": topic, "batch": list(range(n))}), 0.0)
        for f in frames_for(c.drain(), 1):
            count = len(f["batch"]) if "batch" in f else 1  # type: ignore[arg-type]
            seen.setdefault(f["topic"], []).extend(range(f["seq"], f["seq"] + count))  # type: ignore[arg-type,operator]
    for seqs in seen.values():
        assert seqs == list(range(1, len(seqs) + 1))


@pytest.mark.parametrize("conn", [99])
def test_frames_from_unknown_connections_are_ignored(conn: int) -> None:
    c = core()
    c.receive(conn, '{"op":"ping"}', 0.0)
    c.receive_binary(conn)
    assert c.drain() == []


def test_record_too_deep_to_relay_is_refused_and_not_stored() -> None:
    c = core()
    c.receive(1, '{"op":"sub","topic":"t"}', 0.0)
    c.drain()
    deep = "[" * 300 + "]" * 300
    c.receive(2, '{"op":"pub","topic":"t","data":' + deep + ',"id":5}', 1.0)
    (err,) = frames_for(c.drain(), 2)
    assert err["code"] == p.BAD_FIELD and err["id"] == 5
    assert c.last_seq("t") == 0
    c.receive(2, '{"op":"pub","topic":"t","data":1}', 1.0)
    assert frames_for(c.drain(), 1)[0]["seq"] == 1


def test_publish_rate_limit_refuses_then_closes_a_flooder() -> None:
    c = HubCore(rate_limit=10.0, rate_burst=10.0)
    for conn in (1, 2):
        c.open(conn, permissions=EVERYTHING)
    c.receive(2, '{"op":"sub","topic":"t"}', 0.0)
    c.drain()
    c.receive(1, '{"op":"pub","topic":"t","batch":[1,2,3,4,5,6,7,8,9,10],"id":1}', 0.0)
    assert frames_for(c.drain(), 1)[0]["op"] == "ack"  # the burst
    c.receive(1, '{"op":"pub","topic":"t","data":11,"id":2}', 0.0)
    (err,) = frames_for(c.drain(), 1)
    assert err["code"] == p.RATE_LIMITED and err["id"] == 2
    c.receive(1, '{"op":"pub","topic":"t","data":11,"id":3}', 0.5)  # 5 tokens came back
    assert frames_for(c.drain(), 1)[0]["op"] == "ack"
    assert c.last_seq("t") == 11  # the refused record was not stored
    for _ in range(200):
        c.receive(1, '{"op":"pub","topic":"t","batch":[1,2,3,4,5,6,7,8,9,10,11,12]}', 0.5)
    closes = [a for a in c.drain() if isinstance(a, Close)]
    assert closes and closes[0].code == p.CLOSE_RATE_LIMITED
    assert c.counters.rate_limited >= 12 * 100


def test_the_engine_body_fails_exactly_when_the_msg_frame_would() -> None:
    """With an engine the core encodes the records once (the array the engine stores); that
    encoding must refuse exactly the records whose msg frame could not be encoded."""
    from livenb import _protocol as proto
    from livenb._state import _records_body

    def nested(depth: int) -> object:
        value: object = 1
        for _ in range(depth):
            value = {"a": value}
        return value

    for depth in range(240, 260):
        for records in ([nested(depth)], [nested(depth), 1]):
            try:
                proto.encode_msg_frame("t", 1, 0.0, records)
                frame_ok = True
            except TypeError:
                frame_ok = False
            try:
                body = _records_body(records)
                body_ok = True
            except TypeError:
                body_ok = False
            assert body_ok == frame_ok, (depth, len(records))
            if body_ok:
                assert orjson.loads(body) == records
