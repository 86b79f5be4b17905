"""Topic permissions per token: checked on every publish and every delivery."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import livenb
from livenb import AsyncClient, AsyncHub
from livenb import _protocol as p
from livenb._permissions import Permissions, grants
from livenb._state import HubCore, Send
from livenb._topics import matches

segment = st.sampled_from(["a", "b", "c"])
topics = st.lists(segment, min_size=1, max_size=3).map(".".join)
patterns = st.one_of(
    topics,
    st.lists(st.one_of(segment, st.just("*")), min_size=1, max_size=3).map(".".join),
    st.lists(st.one_of(segment, st.just("*")), min_size=0, max_size=2).map(lambda s: ".".join([*s, ">"])),
)
permission_sets = st.builds(
    Permissions,
    st.lists(patterns, max_size=3).map(tuple),
    st.lists(patterns, max_size=3).map(tuple),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(permission_sets, min_size=1, max_size=4),
    st.lists(st.tuples(st.integers(0, 3), patterns), max_size=8),
    st.lists(st.tuples(st.integers(0, 3), topics), max_size=15),
    st.data(),
)
def test_no_record_crosses_a_missing_right(
    perms: list[Permissions],
    subscriptions: list[tuple[int, str]],
    publishes: list[tuple[int, str]],
    data: st.DataObject,
) -> None:
    tokens = {f"tok{i}": perm for i, perm in enumerate(perms)}
    core = HubCore(token="admin", tokens=tokens)
    conns = {i: perm for i, perm in enumerate(perms)}
    for i in conns:
        core.open(i, permissions=None)
        core.receive(i, orjson.dumps({"op": "auth", "token": f"tok{i}"}), 0.0)
    for conn, pattern in subscriptions:
        if conn in conns:
            core.receive(conn, orjson.dumps({"op": "sub", "topic": pattern}), 0.0)
    accepted: dict[str, int] = {}
    for conn, topic in publishes:
        if conn not in conns:
            continue
        core.receive(conn, orjson.dumps({"op": "pub", "topic": topic, "data": conn, "id": 1}), 1.0)
        if conns[conn].may_publish(topic):
            accepted[topic] = accepted.get(topic, 0) + 1
    # A resume replays history too: it must be filtered the same way.
    for conn in conns:
        core.receive(conn, orjson.dumps({"op": "sub", "topic": ">", "since": {"epoch": core.epoch, "topics": {}, "ts": 0.0}}), 2.0)
    for action in core.drain():
        if not isinstance(action, Send):
            continue
        message = p.decode_hub(action.frame)
        if isinstance(message, p.Msg):
            for conn in action.targets:
                assert conns[conn].may_read(message.topic), (conn, message.topic)
    for topic, count in accepted.items():
        assert core.last_seq(topic) == count  # exactly the permitted publishes were stored
    for topic in {t for _, t in publishes}:
        if topic not in accepted:
            assert core.last_seq(topic) == 0


def test_grants_parse_and_validate() -> None:
    assert grants({"publish": ["ticks.>"]}) == Permissions(("ticks.>",), ())
    with pytest.raises(ValueError, match="unknown rights"):
        grants({"write": ["x"]})
    with pytest.raises(ValueError, match="list"):
        grants({"publish": "ticks.>"})
    with pytest.raises(livenb.InvalidTopicError):
        grants({"subscribe": ["a..b"]})
    assert matches(">", "any.topic")


async def test_tokens_with_different_rights_over_real_sockets(unit: float) -> None:
    tokens = {
        "feed-bot-secret": {"publish": ["ticks.>"]},
        "viewer-secret": {"subscribe": ["ticks.>"]},
    }
    async with (
        AsyncHub(port=0, tokens=tokens) as hub,
        AsyncClient(hub.url, "feed-bot-secret") as bot,
        AsyncClient(hub.url, "viewer-secret") as viewer,
        AsyncClient(hub.url, hub.token) as admin,
    ):
        wide = viewer.subscribe(">")  # allowed, but delivers only what the viewer may read
        await wide.wait_ready()
        assert await bot.publish("ticks.ACME", {"px": 1}, ack=True) == 1
        with pytest.raises(livenb.RemoteError, match="forbidden"):
            await bot.publish("orders", {"id": 1}, ack=True)
        assert await admin.publish("orders", {"id": 2}, ack=True) == 1  # stored, not for viewer
        with pytest.raises(livenb.RemoteError, match="forbidden"):
            await viewer.publish("ticks.ACME", {"px": 2}, ack=True)
        refused = viewer.subscribe("orders")
        with pytest.raises(livenb.RemoteError, match="forbidden"):
            await asyncio.wait_for(refused.wait_ready(), unit)
        await admin.publish("ticks.X", {"px": 3}, ack=True)
        await asyncio.wait_for(wide.wait(2), unit)
        assert sorted(wide.frame["topic"].tolist()) == ["ticks.ACME", "ticks.X"]
        assert hub.stats()["errors"]["forbidden"] == 3
