"""Slow-consumer policies: ``disconnect`` (4008), ``drop_oldest`` and ``latest`` (gap frames).

Two levels: the bounded queue itself (``_Peer``, driven without a network, including a
property test over random sequences of offers and sends), and a real hub whose subscriber
stalls behind a FaultProxy that stops reading from the hub, next to a healthy subscriber.
Whatever the policy, nothing is lost silently: every seq is either delivered, in order and
once, or reported in a gap frame, and the queue never exceeds its bounds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from livenb import AsyncClient, AsyncHub
from livenb import _protocol as p
from livenb._server import (
    _MSG,
    DISCONNECT,
    DROP_OLDEST,
    GAP_SLOW_CONSUMER,
    LATEST,
    SLOW_CONSUMER_POLICIES,
    _Item,
    _Peer,
)
from livenb._state import Send

from .faults import DOWN, FaultProxy
from .helpers import until

# ----------------------------------------------------------------- the queue, without a network


@pytest.fixture(autouse=True)
def idle_queue_stays_empty() -> Any:
    """Idle peers share one empty queue: no policy may ever append to it."""
    from livenb._server import _IDLE_QUEUE

    yield
    assert not _IDLE_QUEUE


class Feed:
    """Publishes numbered records per topic into a peer, as the hub core would."""

    def __init__(self) -> None:
        self.next: dict[str, int] = {}

    def msg(self, topic: str, n: int = 1, pad: int = 0, *, replay: bool = False) -> _Item:
        first = self.next.get(topic, 1)
        self.next[topic] = first + n
        records = [{"i": first + k, "pad": "x" * pad} for k in range(n)]
        frame = p.encode_msg_frame(topic, first, 1.0, records)
        # The core sends a resume's replayed frames without a record count.
        return _Item.of(Send((1,), frame) if replay else Send((1,), frame, n))


def control(request_id: int) -> _Item:
    return _Item.of(Send((1,), p.encode(p.Ack(request_id, 1))))


class StalledConnection:
    """A connection whose transport is over its write limit: every frame offered is queued
    (the policies apply to the queue, not to what the transport already holds)."""

    paused = True


def make_peer(policy: str, frames: int = 1000, records: int = 1000, size: int = 1 << 20) -> _Peer:
    return _Peer(1, StalledConnection(), frames, size, records, policy)  # type: ignore[arg-type]


def check_bounds(peer: _Peer) -> None:
    """The counters are exact, and what is not a replay stays within the bounds."""
    queue = list(peer.queue)
    live = [item for item in queue if not item.replay]
    assert peer.bytes == sum(len(item.frame) for item in queue)
    assert peer.records == sum(item.records for item in queue)
    assert peer.replay_frames == len(queue) - len(live)
    assert peer.replay_bytes == sum(len(item.frame) for item in queue if item.replay)
    assert peer.replay_records == sum(item.records for item in queue if item.replay)
    assert len(live) <= peer.max_frames
    assert sum(len(item.frame) for item in live) <= peer.max_bytes
    assert sum(item.records for item in live) <= peer.max_records


def drain(peer: _Peer) -> list[p.HubMessage]:
    out = []
    while peer.queue:
        out.append(p.decode_hub(peer.take()))
    check_bounds(peer)
    assert peer.bytes == peer.records == 0
    return out


class Stream:
    """What one subscriber saw: checks that, per topic, msg and gap frames tile 1..N in order
    (no duplicate, nothing skipped without a gap)."""

    def __init__(self) -> None:
        self.next: dict[str, int] = {}
        self.delivered: dict[str, list[int]] = {}
        self.gapped: dict[str, int] = {}
        self.controls: list[p.HubMessage] = []
        self.last_event: dict[str, str] = {}

    def feed(self, messages: Iterable[p.HubMessage]) -> None:
        for message in messages:
            if isinstance(message, p.Msg):
                expected = self.next.get(message.topic, 1)
                assert message.seq == expected, (
                    f"{message.topic}: seq {message.seq}, expected {expected}"
                )
                n = len(message.records)
                assert [r["i"] for r in message.records] == list(
                    range(message.seq, message.seq + n)
                )
                self.delivered.setdefault(message.topic, []).extend(
                    range(message.seq, message.seq + n)
                )
                self.next[message.topic] = message.seq + n
                self.last_event[message.topic] = "msg"
            elif isinstance(message, p.Gap):
                assert message.reason == GAP_SLOW_CONSUMER
                assert message.last is not None and message.last >= message.first
                expected = self.next.get(message.topic, 1)
                assert message.first == expected, (
                    f"{message.topic}: gap from {message.first}, expected {expected}"
                )
                self.gapped[message.topic] = (
                    self.gapped.get(message.topic, 0) + message.last - message.first + 1
                )
                self.next[message.topic] = message.last + 1
                self.last_event[message.topic] = "gap"
            else:
                self.controls.append(message)

    @property
    def gapped_total(self) -> int:
        return sum(self.gapped.values())


def test_drop_oldest_replaces_the_oldest_records_by_one_gap_per_topic() -> None:
    feed = Feed()
    peer = make_peer(DROP_OLDEST, records=10)
    for _ in range(15):
        for topic in ("a", "b"):
            assert peer.offer(feed.msg(topic))
            check_bounds(peer)
    messages = drain(peer)
    # Merged gaps first (one per topic), then the ten newest records, in publish order.
    assert [type(m).__name__ for m in messages] == ["Gap", "Gap"] + ["Msg"] * 10
    assert messages[:2] == [
        p.Gap("a", 1, 10, GAP_SLOW_CONSUMER),
        p.Gap("b", 1, 10, GAP_SLOW_CONSUMER),
    ]
    stream = Stream()
    stream.feed(messages)
    assert stream.next == {"a": 16, "b": 16}
    assert peer.dropped_records == stream.gapped_total == 20


def test_drop_oldest_never_drops_control_frames() -> None:
    feed = Feed()
    peer = make_peer(DROP_OLDEST, frames=5)
    assert peer.offer(control(1))
    for _ in range(4):
        assert peer.offer(feed.msg("a"))
    assert peer.offer(control(2))  # room is made by dropping a msg frame, not the ack
    for _ in range(10):
        assert peer.offer(feed.msg("a"))
        check_bounds(peer)
    messages = drain(peer)
    acks = [m for m in messages if isinstance(m, p.Ack)]
    assert [a.id for a in acks] == [1, 2]
    Stream().feed(messages)
    # Only control frames left and another one comes: the peer is not reading; close it.
    peer = make_peer(DROP_OLDEST, frames=2)
    assert peer.offer(control(1)) and peer.offer(control(2))
    assert not peer.offer(control(3))


def test_drop_oldest_reports_a_frame_too_big_for_the_queue_as_a_gap() -> None:
    feed = Feed()
    peer = make_peer(DROP_OLDEST, records=5)
    assert peer.offer(feed.msg("a", 3))
    assert peer.offer(feed.msg("a", 8))  # more records than the whole queue may hold
    assert peer.offer(feed.msg("a", 2))
    messages = drain(peer)
    assert messages[0] == p.Gap("a", 1, 11, GAP_SLOW_CONSUMER)
    stream = Stream()
    stream.feed(messages)
    assert stream.delivered == {"a": [12, 13]}
    assert peer.dropped_records == 11


def test_latest_keeps_the_newest_frame_per_topic() -> None:
    feed = Feed()
    peer = make_peer(LATEST, records=12)
    for _ in range(10):
        for topic in ("a", "b", "c"):
            assert peer.offer(feed.msg(topic, 3))
            check_bounds(peer)
    stream = Stream()
    stream.feed(drain(peer))
    assert stream.next == {"a": 31, "b": 31, "c": 31}
    assert stream.last_event == {"a": "msg", "b": "msg", "c": "msg"}  # the newest survive
    for topic in "abc":
        assert stream.delivered[topic][-3:] == [28, 29, 30]
    assert peer.dropped_records == stream.gapped_total


def test_latest_trims_to_the_newest_record_when_frames_do_not_fit() -> None:
    feed = Feed()
    peer = make_peer(LATEST, records=4)
    for topic in ("a", "b"):
        assert peer.offer(feed.msg(topic, 3))
    assert peer.offer(feed.msg("c", 3))  # 9 records: one frame per topic is still too many
    stream = Stream()
    stream.feed(drain(peer))
    assert stream.delivered == {"a": [3], "b": [3], "c": [3]}
    assert stream.gapped == {"a": 2, "b": 2, "c": 2}
    # One record per topic does not fit either: then latest cannot be honoured; close.
    peer = make_peer(LATEST, records=2)
    assert peer.offer(feed.msg("x"))
    assert peer.offer(feed.msg("y"))
    assert not peer.offer(feed.msg("z"))


def test_disconnect_refuses_what_does_not_fit() -> None:
    feed = Feed()
    peer = make_peer(DISCONNECT, records=3)
    assert peer.offer(feed.msg("a", 2))
    assert not peer.offer(feed.msg("a", 2))
    assert peer.dropped_records == 0


@pytest.mark.parametrize("policy", SLOW_CONSUMER_POLICIES)
def test_a_replay_larger_than_the_queue_is_admitted_on_top_of_it(policy: str) -> None:
    feed = Feed()
    peer = make_peer(policy, frames=5, records=10)
    assert peer.offer(control(1))  # subscribed
    for _ in range(20):  # a resume's replay: 40 records, 20 frames
        assert peer.offer(feed.msg("a", 2, replay=True))
    check_bounds(peer)
    for _ in range(4):  # live frames behind it still have the whole queue
        assert peer.offer(feed.msg("a", 2))
    check_bounds(peer)
    if policy == DISCONNECT:
        assert not peer.offer(feed.msg("a", 3))
        return
    for _ in range(10):
        assert peer.offer(feed.msg("a", 2))
        check_bounds(peer)
    stream = Stream()
    stream.feed(drain(peer))
    assert stream.next == {"a": 69}
    assert peer.dropped_records == stream.gapped_total > 0
    if policy == DROP_OLDEST:  # the replay is kept: live records were the ones dropped
        assert stream.delivered["a"][:40] == list(range(1, 41))


def test_replayed_frames_count_their_records() -> None:
    frame = p.encode_msg_frame("a", 5, 1.0, [1, 2, 3])
    item = _Item.of(Send((1,), frame))  # what a resume replays: records=0 in the action
    assert item.records == 3
    assert item.parse() == "a" and (item.first, item.last) == (5, 7)
    assert item.replay and not _Item.of(Send((1,), frame, 3)).replay
    assert _Item.of(Send((1,), frame, 3, replay=True)).replay
    assert _Item.of(Send((1,), p.encode_msg_frame("a.b-c_d", 9, 1.0, [1]))).records == 1
    assert _Item.of(Send((1,), p.encode(p.Pong()))).records == 0


def test_hub_validates_the_policy() -> None:
    with pytest.raises(ValueError, match="slow_consumer"):
        AsyncHub(port=0, slow_consumer="block")
    with pytest.raises(ValueError, match="queue_records"):
        AsyncHub(port=0, queue_records=0)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("msg"), st.sampled_from("abc"), st.integers(1, 6), st.integers(0, 300)),
        st.tuples(st.just("ctl"), st.just(""), st.just(0), st.just(0)),
        st.tuples(
            st.just("replay"), st.sampled_from("abc"), st.integers(1, 6), st.integers(0, 300)
        ),
        st.tuples(st.just("send"), st.just(""), st.integers(1, 5), st.just(0)),
    ),
    max_size=120,
)


@pytest.mark.parametrize("policy", SLOW_CONSUMER_POLICIES)
@settings(max_examples=150, deadline=None)
@given(
    ops=OPS,
    frames=st.integers(3, 12),
    records=st.integers(3, 20),
    size=st.integers(600, 4000),
)
def test_any_sequence_keeps_bounds_and_loses_nothing_silently(
    policy: str, ops: list[tuple[str, str, int, int]], frames: int, records: int, size: int
) -> None:
    feed = Feed()
    peer = make_peer(policy, frames, records, size)
    stream = Stream()
    acks = 0
    for op, topic, n, pad in ops:
        if op == "send":
            for _ in range(min(n, len(peer.queue))):
                stream.feed([p.decode_hub(peer.take())])
        else:
            if op == "ctl":
                item = control(acks + 1)
            else:
                item = feed.msg(topic, n, pad, replay=op == "replay")
            if not peer.offer(item):  # the hub would close the connection now
                if policy == DISCONNECT:
                    assert not peer._fits(item)
                elif policy == DROP_OLDEST:  # only after dropping every queued record
                    assert all(queued.kind != _MSG or queued.replay for queued in peer.queue)
                return
            acks += op == "ctl"
        check_bounds(peer)
    stream.feed(drain(peer))
    assert stream.next == {t: n for t, n in feed.next.items()}, "every seq delivered or gapped"
    assert [m.id for m in stream.controls if isinstance(m, p.Ack)] == list(range(1, acks + 1))
    assert peer.dropped_records == stream.gapped_total
    if policy == DISCONNECT:
        assert stream.gapped_total == 0


# ----------------------------------------------------------------- a real hub, a stalled peer

TOPICS = ("flood.a", "flood.b")


async def recv_json(ws: ClientConnection, limit: float) -> dict[str, Any]:
    frame = await asyncio.wait_for(ws.recv(), limit)
    obj = orjson.loads(frame)
    assert isinstance(obj, dict)
    return obj


async def stalled_subscriber(url: str, token: str | None, unit: float) -> ClientConnection:
    ws = await connect(
        url,
        additional_headers={"Authorization": f"Bearer {token}"},
        max_queue=1,
        max_size=None,
        ping_interval=None,
    )
    for topic in TOPICS:
        await ws.send(orjson.dumps({"op": "sub", "topic": topic}).decode())
        assert (await recv_json(ws, unit))["op"] == "subscribed"
    return ws


async def flood(
    hub: AsyncHub, publisher: AsyncClient, until_stat: str, goal: int
) -> dict[str, int]:
    """Publish 2 KB records on every topic until ``hub.stats()[until_stat] >= goal``."""
    sent = dict.fromkeys(TOPICS, 0)
    blob = "x" * 2000
    while hub.stats()[until_stat] < goal and sum(sent.values()) < 100_000:
        for topic in TOPICS:
            first = sent[topic] + 1
            await publisher.publish_many(topic, [{"i": first + k, "pad": blob} for k in range(10)])
            sent[topic] += 10
        if sum(sent.values()) % 400 == 0:
            await publisher.flush()  # keeps the hub's intake paced with its fan-out
    await publisher.flush()
    return sent


@pytest.mark.parametrize("policy", [DROP_OLDEST, LATEST])
async def test_stalled_subscriber_is_told_exactly_what_it_missed(policy: str, unit: float) -> None:
    async with (
        AsyncHub(
            port=0,
            slow_consumer=policy,
            queue_frames=50,
            queue_records=200,
            send_timeout=6 * unit,  # the stall below is shorter: this is not a dead peer
            ping_interval=None,
        ) as hub,
        FaultProxy(("127.0.0.1", hub.port)) as proxy,
    ):
        stalled = await stalled_subscriber(proxy.url, hub.token, unit)
        try:
            async with (
                AsyncClient(hub.url, hub.token) as pub,
                AsyncClient(hub.url, hub.token) as healthy,
            ):
                subs = {t: healthy.subscribe(t, window=None) for t in TOPICS}
                for sub in subs.values():
                    await sub.wait_ready()
                proxy.faults.stall.add(DOWN)  # the proxy stops reading what the hub sends
                sent = await flood(hub, pub, "slow_consumer_drops_records", 2000)
                # The healthy subscriber got everything, in order, without a gap.
                for topic, sub in subs.items():
                    await asyncio.wait_for(sub.wait(sent[topic]), 4 * unit)
                    assert sub.received == sent[topic]
                    assert sub.gap_count == 0 and sub.last_seq[topic] == sent[topic]
                stats = hub.stats()
                assert stats["slow_consumer_policy"] == policy
                assert stats["drops"] == 0
                dropped = stats["slow_consumer_drops_records"]
                assert dropped >= 2000
                assert stats["queued_records"] <= 200 and stats["queued_frames"] <= 50
            proxy.faults.stall.clear()
            stream = Stream()
            while any(stream.next.get(t, 1) <= sent[t] for t in TOPICS):
                obj = await recv_json(stalled, 4 * unit)
                message = p.decode_hub(orjson.dumps(obj))
                stream.feed([message])
            assert stream.controls == []
            assert stream.gapped_total == dropped, "every dropped record is in a gap"
            assert sum(len(v) for v in stream.delivered.values()) + dropped == sum(sent.values())
            if policy == LATEST:
                assert stream.last_event == dict.fromkeys(TOPICS, "msg")  # newest survived
            assert hub.stats()["drops"] == 0
        finally:
            await stalled.close()


async def test_stalled_subscriber_behind_a_proxy_is_closed_with_4008(unit: float) -> None:
    async with (
        AsyncHub(port=0, queue_frames=50, queue_records=200, ping_interval=None) as hub,
        FaultProxy(("127.0.0.1", hub.port)) as proxy,
    ):
        stalled = await stalled_subscriber(proxy.url, hub.token, unit)
        try:
            async with (
                AsyncClient(hub.url, hub.token) as pub,
                AsyncClient(hub.url, hub.token) as healthy,
            ):
                subs = {t: healthy.subscribe(t, window=None) for t in TOPICS}
                for sub in subs.values():
                    await sub.wait_ready()
                proxy.faults.stall.add(DOWN)
                sent = await flood(hub, pub, "drops", 1)
                for topic, sub in subs.items():
                    await asyncio.wait_for(sub.wait(sent[topic]), 4 * unit)
                    assert sub.received == sent[topic] and sub.gap_count == 0
                stats = hub.stats()
                assert stats["drops"] == 1 and stats["slow_consumer_policy"] == DISCONNECT
                assert stats["slow_consumer_drops_records"] == 0
            proxy.faults.stall.clear()  # before the hub's close handshake times out
            # What it reads is an in-order prefix, no gap, then the retryable close code.
            stream = Stream()
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    obj = await recv_json(stalled, 4 * unit)
                    stream.feed([p.decode_hub(orjson.dumps(obj))])
            assert stream.gapped_total == 0
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == p.CLOSE_SLOW_CONSUMER
            assert p.should_reconnect(info.value.rcvd.code)
            await until(lambda: hub.stats()["connections"] == 0, 4 * unit, "the close")
            assert hub.stats()["drops"] == 1  # counted once
        finally:
            await stalled.close()


async def test_a_peer_that_never_answers_the_close_gets_send_timeout_not_less(unit: float) -> None:
    """send_timeout bounds a close handshake on its own: websockets' close_timeout (10 s by
    default, shorter here) must not abort a silent peer sooner than the hub promises."""
    send_timeout = 0.2 * unit
    async with (
        AsyncHub(port=0, send_timeout=send_timeout, ping_interval=None) as hub,
        connect(hub.url) as silent,
    ):
        assert hub._server is not None
        for server_side in hub._server.connections:
            server_side.close_timeout = send_timeout / 10
        silent.transport.pause_reading()  # never sees the close frame, never answers
        try:
            await silent.send("not an auth message")  # refused: the hub closes with 4401
            started = asyncio.get_running_loop().time()
            await until(lambda: hub.stats()["connections"] == 0, 4 * unit, "the abort")
            waited = asyncio.get_running_loop().time() - started
            assert waited >= 0.8 * send_timeout, f"aborted after {waited:.2f} s"
        finally:
            silent.transport.resume_reading()  # else closing waits out its close_timeout
