"""AsyncHub and AsyncClient over real loopback sockets, on the test's own loop."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pandas as pd
import pytest
from websockets.asyncio.client import connect

import livenb
from livenb import AsyncClient, AsyncHub

from .helpers import until


async def test_publish_subscribe_iterate(ahub: AsyncHub, aclient: AsyncClient, unit: float) -> None:
    sub = aclient.subscribe("ticks")
    await asyncio.wait_for(sub.wait_ready(), unit)
    await aclient.publish("ticks", {"px": 1.0})
    await aclient.publish_many("ticks", [{"px": 2.0}, {"px": 3.0}])
    got = []
    async with asyncio.timeout(unit):
        async for record in sub:
            got.append(record)
            if len(got) == 3:
                break
    assert [r.data["px"] for r in got] == [1.0, 2.0, 3.0]
    assert [r.seq for r in got] == [1, 2, 3]
    assert all(r.topic == "ticks" and r.ts > 0 for r in got)


async def test_async_for_directly_on_subscribe(ahub: AsyncHub, unit: float) -> None:
    async with AsyncClient(ahub.url, ahub.token) as sub_client, AsyncClient(ahub.url, ahub.token) as pub_client:

        async def consume() -> list[int]:
            out = []
            async for record in sub_client.subscribe("t"):
                out.append(record.data)
                if len(out) == 5:
                    return out
            return out

        task = asyncio.create_task(consume())
        await until(lambda: ahub.stats()["subscriptions"] == 1, unit, "the subscription")
        for i in range(5):
            await pub_client.publish("t", i)
        assert await asyncio.wait_for(task, unit) == [0, 1, 2, 3, 4]


async def test_patterns_and_callbacks(ahub: AsyncHub, aclient: AsyncClient, unit: float) -> None:
    seen: list[livenb.Record] = []
    star = aclient.subscribe("ticks.*", on_record=seen.append)
    deep = aclient.subscribe("ticks.>")
    exact = aclient.subscribe("ticks.ACME")
    for s in (star, deep, exact):
        await s.wait_ready()
    await aclient.publish("ticks.ACME", {"px": 1})
    await aclient.publish("ticks.GLOBX", {"px": 2})
    await aclient.publish("ticks.GLOBX.bid", {"px": 3})
    await aclient.publish("other", {"px": 4})
    await asyncio.wait_for(deep.wait(3), unit)
    assert [r.topic for r in seen] == ["ticks.ACME", "ticks.GLOBX"]
    assert star.received == 2 and exact.received == 1
    f = deep.frame
    assert f["topic"].tolist() == ["ticks.ACME", "ticks.GLOBX", "ticks.GLOBX.bid"]
    assert "topic" not in exact.frame.columns


async def test_unsubscribe_stops_delivery(ahub: AsyncHub, aclient: AsyncClient, unit: float) -> None:
    a = aclient.subscribe("t")
    b = aclient.subscribe("t")  # shares the hub subscription
    await a.wait_ready()
    await b.wait_ready()
    assert ahub.stats()["subscriptions"] == 1
    await a.close()
    await aclient.publish("t", 1, ack=True)
    await asyncio.wait_for(b.wait(1), unit)
    assert a.received == 0
    await b.close()
    await until(lambda: ahub.stats()["subscriptions"] == 0, unit, "the unsubscription")
    with pytest.raises(livenb.ConnectionClosedError):
        await a.wait(5)


async def test_ack_returns_seq(aclient: AsyncClient) -> None:
    assert await aclient.publish("a", {"x": 1}, ack=True) == 1
    assert await aclient.publish_many("a", [1, 2, 3], ack=True) == 4
    await aclient.publish("a", 5)
    assert await aclient.publish("a", 6, ack=True) == 6


async def test_publish_dataframe(aclient: AsyncClient, unit: float) -> None:
    sub = aclient.subscribe("df")
    await sub.wait_ready()
    df = pd.DataFrame({"sym": ["A", "B"], "px": [1.5, 2.5], "n": [1, 2]})
    await aclient.publish_many("df", df)
    await asyncio.wait_for(sub.wait(2), unit)
    got = sub.frame
    assert got[["sym", "px", "n"]].to_dict("records") == df.to_dict("records")


async def test_micro_batching_groups_records(ahub: AsyncHub, unit: float) -> None:
    async with AsyncClient(ahub.url, ahub.token, batch_records=50, batch_delay=1.0) as c:
        for i in range(120):
            await c.publish("b", i)
        assert c.stats()["frames_sent"] <= 2  # two full frames of 50; 20 still lingering
        await c.flush()
        assert c.stats()["frames_sent"] == 3
    assert ahub.stats()["frames_in"] == 3
    assert ahub.stats()["records_in"] == 120


async def test_batch_delay_flushes_on_its_own(ahub: AsyncHub, unit: float) -> None:
    async with AsyncClient(ahub.url, ahub.token, batch_delay=0.01) as c:
        await c.publish("d", 1)
        await until(lambda: ahub.stats()["records_in"] == 1, unit, "the lingering record")


async def test_batch_bytes_limit(ahub: AsyncHub) -> None:
    async with AsyncClient(ahub.url, ahub.token, batch_bytes=1000, batch_delay=10) as c:
        for _ in range(10):
            await c.publish("big", {"blob": "x" * 300})
        await c.flush()
        assert c.stats()["frames_sent"] >= 4


async def test_hub_forwards_batches_as_batches(ahub: AsyncHub, aclient: AsyncClient, unit: float) -> None:
    sub = aclient.subscribe("fw")
    await sub.wait_ready()
    await aclient.publish_many("fw", list(range(100)))
    await asyncio.wait_for(sub.wait(100), unit)
    stats = ahub.stats()
    assert stats["frames_in"] == 2  # sub + one batch
    assert stats["frames_out"] == 1


async def test_wrong_token_is_rejected(ahub: AsyncHub) -> None:
    with pytest.raises(livenb.AuthenticationError):
        await AsyncClient(ahub.url, "nope").connect()


async def test_unreachable_hub() -> None:
    async with AsyncHub(port=0) as hub:
        url = hub.url
    with pytest.raises(livenb.HubUnreachableError):
        await AsyncClient(url, "x", open_timeout=2).connect()


async def test_port_in_use_is_a_clear_error(ahub: AsyncHub) -> None:
    with pytest.raises(livenb.LivenbError, match="cannot listen"):
        await AsyncHub(port=ahub.port).start()


async def test_subscription_to_invalid_pattern_raises_locally(aclient: AsyncClient) -> None:
    with pytest.raises(livenb.InvalidTopicError):
        aclient.subscribe("a..b")
    with pytest.raises(livenb.InvalidTopicError):
        await aclient.publish("a.*", 1)


async def test_hub_close_ends_subscriptions(unit: float) -> None:
    hub = await AsyncHub(port=0).start()
    client = await AsyncClient(hub.url, hub.token, reconnect=False).connect()
    sub = client.subscribe("t")
    await sub.wait_ready()
    await hub.close()
    with pytest.raises(livenb.ConnectionClosedError):
        async with asyncio.timeout(unit):
            async for _ in sub:
                pass
    with pytest.raises(livenb.ConnectionClosedError):
        await client.publish("t", 1)
    await client.close()


async def test_iterator_buffer_is_bounded_and_counts_drops(aclient: AsyncClient, unit: float) -> None:
    sub = aclient.subscribe("q", buffer=10)
    await sub.wait_ready()
    await aclient.publish_many("q", list(range(7)), ack=True)
    await aclient.publish_many("q", list(range(7, 25)), ack=True)
    await aclient.publish("q", 25, ack=True)
    await asyncio.wait_for(sub.wait(26), unit)
    assert sub.unread_dropped == 16
    assert sub.stats()["unread_policy"] == "drop_oldest"
    assert sub.stats()["unread"] == 10
    got = []
    async for record in sub:
        got.append((record.seq, record.data))
        if len(got) == 10:
            break
    assert got == [(s, s - 1) for s in range(17, 27)]
    assert sub.stats()["unread"] == 0


async def test_iteration_includes_records_before_first_next(aclient: AsyncClient, unit: float) -> None:
    sub = aclient.subscribe("early")
    await sub.wait_ready()
    await aclient.publish_many("early", [1, 2, 3], ack=True)
    await asyncio.wait_for(sub.wait(3), unit)
    got = []
    async for record in sub:
        got.append(record.data)
        if len(got) == 3:
            break
    assert got == [1, 2, 3]


async def test_callback_errors_are_counted_not_fatal(aclient: AsyncClient, unit: float) -> None:
    def boom(record: livenb.Record) -> None:
        raise ValueError("user bug")

    sub = aclient.subscribe("cb", on_record=boom)
    await sub.wait_ready()
    await aclient.publish_many("cb", [1, 2])
    await asyncio.wait_for(sub.wait(2), unit)
    assert sub.callback_errors == 2


async def test_ping_measures_latency(aclient: AsyncClient) -> None:
    rtt = await aclient.ping()
    assert rtt > 0 and aclient.latency == rtt


async def test_hub_stats_and_repr_hide_token(ahub: AsyncHub, aclient: AsyncClient) -> None:
    assert ahub.token and ahub.token not in repr(ahub) and "***" in repr(ahub)
    assert aclient.token and aclient.token not in repr(aclient)
    stats = ahub.stats()
    assert stats["connections"] == 1 and stats["auth"] is True
    assert stats["url"] == ahub.url


async def test_auth_off_is_loud(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="livenb.hub"):
        async with AsyncHub(port=0, auth=False) as hub:
            assert hub.token is None and "auth=OFF" in repr(hub)
            assert hub.stats()["auth"] is False
            async with AsyncClient(hub.url) as c:
                assert await c.publish("x", 1, ack=True) == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("authentication is OFF" in r.getMessage() for r in warnings)


async def test_tight_publish_loop_streams_while_running(ahub: AsyncHub, aclient: AsyncClient) -> None:
    frames_midway = -1
    for i in range(5000):
        await aclient.publish("stream", {"i": i})
        if i == 2500:
            frames_midway = aclient.stats()["frames_sent"]
    assert frames_midway >= 20  # sent as it went, not held until the loop ended


def test_generated_tokens_never_look_like_command_line_options() -> None:
    from livenb._server import _new_token

    tokens = {_new_token() for _ in range(2000)}
    assert len(tokens) == 2000 and not any(t.startswith("-") for t in tokens)
    assert all(len(t) == 32 for t in tokens)


async def test_a_connection_that_keeps_up_needs_no_sender_and_a_stalled_one_gets_one_back(
    unit: float,
) -> None:
    """A subscriber that keeps up is written to directly: no sender task, no queue of its own
    (memory per connection). One whose transport is over its write limit gets a queue and a
    sender, which end once it is idle again; nothing is lost or reordered either way."""
    from livenb._server import _IDLE_QUEUE, SENDER_IDLE

    async with (
        AsyncHub(port=0) as hub,
        AsyncClient(hub.url, hub.token) as c,
        connect(hub.url, additional_headers={"Authorization": f"Bearer {hub.token}"}) as raw,
    ):
        await raw.send('{"op":"sub","topic":"t"}')
        assert '"subscribed"' in await asyncio.wait_for(raw.recv(), unit)
        peer = hub._peers[max(hub._peers)]  # the raw connection: the newest
        assert await c.publish("t", 0, ack=True) == 1
        assert peer.sender is None and peer.queue is _IDLE_QUEUE
        # Stop reading: the hub's transport fills up, then the peer's queue.
        pad = "x" * 2000
        seq = 1
        while peer.sender is None:
            seq = await c.publish_many("t", [{"pad": pad}] * 50, ack=True) or seq
            assert seq < 100_000, "the peer never needed a queue"
        received = 0
        while received < seq:
            message = orjson.loads(await asyncio.wait_for(raw.recv(), unit))
            assert message["seq"] == received + 1  # in order, nothing missing
            received += 1 if "data" in message else len(message["batch"])
        await until(lambda: peer.sender is None, SENDER_IDLE + unit, "the idle sender to end")
        assert peer.queue is _IDLE_QUEUE and peer.wake is None
