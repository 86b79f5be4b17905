"""Regression tests for bugs found in review: each failed before its fix."""

from __future__ import annotations

import asyncio
import threading

import pytest

import livenb
from livenb import AsyncClient, AsyncHub, Hub

from .helpers import until, wait_until


async def test_publish_error_with_topic_leaves_live_subscription_alone(unit: float) -> None:
    async with AsyncHub(port=0, max_topics=1) as hub, AsyncClient(hub.url, hub.token) as c:
        await c.publish("a", 1, ack=True)  # the one topic the hub may hold
        sub = c.subscribe("b")
        await sub.wait_ready()
        with pytest.raises(livenb.RemoteError, match="too_many_topics"):
            await c.publish("b", 1, ack=True)
        await c.publish("b", 2)  # unacknowledged: the error goes to client.errors
        await c.flush()
        await until(lambda: len(c.errors) == 1, unit, "the error report")
        assert c.errors[0].code == "too_many_topics"
        assert not sub.closed
        sub2 = c.subscribe("a")
        await sub2.wait_ready()
        await c.publish("a", 3, ack=True)
        assert await asyncio.wait_for(sub2.wait(1), unit) == 1


async def test_refused_subscription_ends_only_itself(unit: float) -> None:
    async with AsyncHub(port=0, max_subscriptions=1) as hub, AsyncClient(hub.url, hub.token) as c:
        ok = c.subscribe("a")
        await ok.wait_ready()
        refused = c.subscribe("b")
        with pytest.raises(livenb.RemoteError, match="too_many_subscriptions"):
            await asyncio.wait_for(refused.wait_ready(), unit)
        assert refused.closed and not ok.closed
        assert c.stats()["subscriptions"] == 1


async def test_subscribe_then_close_at_once_leaves_nothing_on_the_hub(unit: float) -> None:
    async with AsyncHub(port=0) as hub, AsyncClient(hub.url, hub.token) as c:
        for _ in range(20):
            sub = c.subscribe("t")
            await sub.close()
        await c.ping()  # every control message before it has been handled
        assert hub.stats()["subscriptions"] == 0
        assert list(c.errors) == []


def test_flush_finishes_while_another_thread_keeps_publishing(hub: Hub, unit: float) -> None:
    # A flush waits for the backlog published before it: max_pending bounds that backlog
    # (the default, 8 MiB of tiny records, takes seconds to drain on a slow machine).
    with hub.connect(max_pending=256 << 10) as c:
        stop = threading.Event()

        def publish_forever() -> None:
            while not stop.is_set():
                try:
                    c.publish("busy", {"x": 1})
                except livenb.ConnectionClosedError:
                    return

        worker = threading.Thread(target=publish_forever)
        worker.start()
        try:
            for _ in range(5):
                c.flush(timeout=2 * unit)
        finally:
            stop.set()
            worker.join(2 * unit)


def test_hub_stats_is_safe_from_another_thread(hub: Hub, unit: float) -> None:
    stop = threading.Event()
    failures: list[BaseException] = []

    def churn() -> None:
        for _ in range(30):
            with hub.connect() as c:
                c.subscribe("x").close()

    def read_stats() -> None:
        while not stop.is_set():
            try:
                hub.stats()
            except BaseException as exc:
                failures.append(exc)
                return

    reader = threading.Thread(target=read_stats)
    reader.start()
    try:
        churn()
    finally:
        stop.set()
        reader.join(unit)
    assert failures == []


def test_oversized_record_is_refused_locally_and_nothing_is_lost(hub: Hub, unit: float) -> None:
    with hub.connect() as c:
        sub = c.subscribe("big")
        c.publish("big", {"i": 0})
        with pytest.raises(livenb.RecordTooLargeError, match="max_record"):
            c.publish("big", {"blob": "x" * (2 << 20)})
        c.publish("big", {"i": 1})
        sub.wait(2, timeout=unit)
        assert sub.frame["i"].tolist() == [0, 1]
        assert c.connected


def test_missing_token_is_an_authentication_error(hub: Hub, unit: float) -> None:
    c = livenb.connect(hub.url)  # no token: the hub waits for an auth message, then closes
    try:
        with pytest.raises(livenb.AuthenticationError, match="token"):
            for _ in range(1000):
                c.publish("x", 1, ack=True, timeout=unit)
    finally:
        c.close()


def test_timed_out_waits_leave_no_waiters_behind(hub: Hub) -> None:
    with hub.connect() as c:
        sub = c.subscribe("idle")
        for _ in range(20):
            with pytest.raises(livenb.LivenbTimeoutError):
                sub.wait(1, timeout=0.01)
        wait_until(lambda: not sub.aio._waiters, 5, "waiters to be forgotten")


def test_subscribe_timeout_leaves_no_subscription(unit: float) -> None:
    with livenb.serve(port=0, max_subscriptions=1) as h, h.connect() as c:
        c.subscribe("a")
        with pytest.raises(livenb.RemoteError):
            c.subscribe("b")
        assert c.stats()["subscriptions"] == 1


def test_close_flushes_what_was_published(unit: float) -> None:
    with livenb.serve(port=0) as h:
        c = h.connect(batch_delay=60)
        c.publish("T", {"x": 1})
        c.close()
        wait_until(lambda: h.stats()["records_in"] == 1, unit, "the flushed record")


def test_ping_after_the_hub_closed_us_is_a_livenb_error(hub: Hub, unit: float) -> None:
    c = livenb.connect(hub.url)  # no token: the hub closes at the first frame
    try:
        c.publish("T", {"x": 1})
        with pytest.raises(livenb.LivenbError):
            c.flush(timeout=unit)
            c.ping(timeout=unit)
    finally:
        c.close()


async def test_a_refusal_does_not_settle_earlier_frames(unit: float) -> None:
    """The hub's err for a later frame can overtake acks of earlier ones (a journaled hub acks
    after the commit); only the refused frame is settled."""
    from livenb._outbox import Frame

    client = AsyncClient("ws://127.0.0.1:9", None)
    client._loop = asyncio.get_running_loop()

    client._unacked.extend([Frame(1, b"a", 10, 1), Frame(2, b"b", 10, 1)])
    client._settle(2, livenb.RemoteError("too_many_topics", "full"))
    assert [f.id for f in client._unacked] == [1]
    assert not client._settled_through(1)
    client._settle(1, 1)
    assert client._settled_through(2) and client.records_settled == 2
    assert client._ack_waiters == {}


def test_close_finishes_and_counts_what_a_gone_hub_never_acknowledged(unit: float) -> None:
    with livenb.serve(port=0) as h:
        c = h.connect(reconnect_delay=0.01)
        c.publish("t", 1, ack=True)
    # The hub is gone: the client keeps reconnecting in vain; close must still finish
    # within its timeout, and count the record nobody confirmed.
    c.publish("t", 2)
    c.close(timeout=1.0)
    assert c.aio.closed
    assert c.stats()["drops"] == 1
