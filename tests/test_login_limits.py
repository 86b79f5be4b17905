"""Failed logins are counted and throttled per address; connections waiting to authenticate
are capped, so they cannot hold every connection slot."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from livenb import AsyncClient, AsyncHub, AuthenticationError, HubUnreachableError
from livenb import _protocol as p

from .helpers import until


async def _first_message_refused(url: str, first: str | None, unit: float) -> bytes:
    """Connect without a header, send ``first`` (or nothing); return what arrived before the
    4401 close."""
    received = b""
    async with connect(url) as ws:
        if first is not None:
            await ws.send(first)
        with pytest.raises(ConnectionClosed) as info:
            async with asyncio.timeout(unit):
                while True:
                    frame = await ws.recv()
                    received += frame.encode() if isinstance(frame, str) else frame
    assert info.value.rcvd is not None and info.value.rcvd.code == p.CLOSE_UNAUTHORIZED
    return received


async def test_first_message_failures_are_counted_and_leak_nothing(unit: float) -> None:
    async with AsyncHub(port=0, auth_timeout=0.3) as hub:
        async with AsyncClient(hub.url, hub.token) as owner:
            await owner.publish("private", {"x": 1}, ack=True)
        attempts = [
            orjson.dumps({"op": "auth", "token": "guess-" + "x" * 30}).decode(),
            '{"op":"sub","topic":"private"}',  # no auth at all
            '{"op":"sub","topic":"private","since":{"epoch":"' + hub.epoch + '","seq":0}}',
            "not json",
            None,  # silent until the deadline
        ]
        for first in attempts:
            assert await _first_message_refused(hub.url, first, unit) == b""
        assert hub.stats()["refused"]["token"] == len(attempts)
        # each handler finishes just after its close
        await until(lambda: hub.stats()["unauthenticated"] == 0, unit, "handlers to finish")


async def test_repeated_failures_from_an_address_are_throttled(unit: float) -> None:
    async with AsyncHub(port=0, auth_failure_burst=3, auth_failure_rate=5.0) as hub:
        for _ in range(3):
            with pytest.raises(AuthenticationError):
                await AsyncClient(hub.url, "wrong-" + "y" * 30, reconnect=False).connect()
        # Spent: even the right token is refused until the budget refills, with Retry-After.
        with pytest.raises(InvalidStatus) as info:
            async with connect(hub.url, additional_headers={"Authorization": f"Bearer {hub.token}"}):
                pass
        assert info.value.response.status_code == 429
        assert info.value.response.headers["Retry-After"] == "1"
        with pytest.raises(HubUnreachableError, match="too many failed logins"):
            await AsyncClient(hub.url, hub.token, reconnect=False).connect()
        stats = hub.stats()
        assert stats["refused"]["token"] == 3
        assert stats["refused"]["throttled"] == 2
        assert stats["throttled_addresses"] == 1
        await asyncio.sleep(0.25)  # one failure refilled (5 per second)
        async with AsyncClient(hub.url, hub.token) as client:
            assert await client.publish("t", 1, ack=True) == 1


async def test_first_message_failures_count_towards_the_throttle(unit: float) -> None:
    async with AsyncHub(port=0, auth_failure_burst=2, auth_failure_rate=0.1) as hub:
        wrong = orjson.dumps({"op": "auth", "token": "nope-" + "z" * 30}).decode()
        for _ in range(2):
            await _first_message_refused(hub.url, wrong, unit)
        with pytest.raises(InvalidStatus) as info:
            async with connect(hub.url):
                pass
        assert info.value.response.status_code == 429


async def test_connections_waiting_to_authenticate_are_capped(unit: float) -> None:
    async with AsyncHub(port=0, max_unauthenticated=2, auth_timeout=30) as hub:
        waiting = [await connect(hub.url) for _ in range(2)]
        with pytest.raises(InvalidStatus) as info:
            async with connect(hub.url):
                pass
        assert info.value.response.status_code == 503
        assert hub.stats()["refused"]["unauthenticated"] == 1
        assert hub.stats()["unauthenticated"] == 2
        # Clients with the token in their header are not held up by them.
        async with AsyncClient(hub.url, hub.token) as client:
            assert await client.publish("t", 1, ack=True) == 1
        # One of the waiting connections authenticates: its place is free again.
        await waiting[0].send(orjson.dumps({"op": "auth", "token": hub.token}).decode())
        await waiting[0].send('{"op":"ping"}')
        assert orjson.loads(await asyncio.wait_for(waiting[0].recv(), unit)) == {"op": "pong"}
        await until(lambda: hub.stats()["unauthenticated"] == 1, unit, "one place freed")
        async with connect(hub.url) as late:
            await late.send(orjson.dumps({"op": "auth", "token": hub.token}).decode())
            await late.send('{"op":"ping"}')
            assert orjson.loads(await asyncio.wait_for(late.recv(), unit)) == {"op": "pong"}
        # A waiting connection that goes away frees its place too.
        await waiting[1].close()
        for ws in waiting:
            await ws.close()
        await until(lambda: hub.stats()["unauthenticated"] == 0, unit, "places freed")


async def test_no_throttle_without_auth(unit: float) -> None:
    async with AsyncHub(port=0, auth=False, auth_failure_burst=1) as hub:
        for _ in range(3):
            async with AsyncClient(hub.url, "anything-goes-here") as client:
                assert await client.publish("t", 1, ack=True) >= 1
        assert hub.stats()["refused"]["throttled"] == 0
