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
        # Spent: wrong tokens from this address now get 429 with Retry-After ...
        wrong = {"Authorization": "Bearer wrong-" + "y" * 30}
        with pytest.raises(InvalidStatus) as info:
            async with connect(hub.url, additional_headers=wrong):
                pass
        assert info.value.response.status_code == 429
        assert info.value.response.headers["Retry-After"] == "1"
        with pytest.raises(HubUnreachableError, match="too many failed logins"):
            await AsyncClient(hub.url, "wrong-" + "z" * 30, reconnect=False).connect()
        # ... but the right token still gets in: one process that keeps failing must not
        # lock out everyone who shares its address (on a laptop, everyone is 127.0.0.1).
        async with AsyncClient(hub.url, hub.token) as client:
            assert await client.publish("t", 1, ack=True) == 1
        stats = hub.stats()
        assert stats["refused"]["token"] == 3
        assert stats["refused"]["throttled"] == 2
        assert stats["throttled_addresses"] == 1


async def test_first_message_failures_count_towards_the_throttle(unit: float) -> None:
    async with AsyncHub(port=0, auth_failure_burst=2, auth_failure_rate=0.1) as hub:
        wrong = orjson.dumps({"op": "auth", "token": "nope-" + "z" * 30}).decode()
        for _ in range(2):
            await _first_message_refused(hub.url, wrong, unit)
        with pytest.raises(InvalidStatus) as info:  # a wrong header from there: throttled
            async with connect(hub.url, additional_headers={"Authorization": "Bearer nope"}):
                pass
        assert info.value.response.status_code == 429
        # Browsers (no header) are never refused for their address's failures: they may all
        # come through one proxy. The right auth message still works.
        async with connect(hub.url) as ws:
            await ws.send(orjson.dumps({"op": "auth", "token": hub.token}).decode())
            await ws.send('{"op":"ping"}')
            assert orjson.loads(await asyncio.wait_for(ws.recv(), unit)) == {"op": "pong"}


async def test_refused_handshakes_hold_no_waiting_place(unit: float) -> None:
    """A request that passes the first checks but whose handshake websockets then refuses
    (a bad Sec-WebSocket-Version) never takes one of the places kept for connections that
    have yet to send their auth message."""
    async with AsyncHub(port=0, max_unauthenticated=5) as hub:
        held = []
        for _ in range(20):
            reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
            writer.write(
                b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 99\r\n\r\n"
            )
            await writer.drain()
            status = await asyncio.wait_for(reader.readline(), unit)
            assert status.startswith(b"HTTP/1.1 4"), status  # refused by websockets itself
            held.append(writer)  # kept open, as an attacker would
        assert hub.stats()["unauthenticated"] == 0
        async with connect(hub.url) as ws:
            await ws.send(orjson.dumps({"op": "auth", "token": hub.token}).decode())
            await ws.send('{"op":"ping"}')
            assert orjson.loads(await asyncio.wait_for(ws.recv(), unit)) == {"op": "pong"}
        for writer in held:
            writer.close()


async def test_repeated_connection_headers_are_handled(unit: float) -> None:
    async with AsyncHub(port=0) as hub:
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
        writer.write(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nConnection: Upgrade\r\n"
            b"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer " + str(hub.token).encode() + b"\r\n\r\n"
        )
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), unit)
        assert b" 101 " in status  # not a 500 with a traceback in the log
        writer.close()


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
