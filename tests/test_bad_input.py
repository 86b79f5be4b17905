"""Bad input over a real socket: the sender gets an error, nobody else notices, nothing is lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from livenb import AsyncClient, AsyncHub
from livenb import _protocol as p


@pytest.fixture
async def raw(ahub: AsyncHub) -> AsyncIterator[ClientConnection]:
    async with connect(
        ahub.url, additional_headers={"Authorization": f"Bearer {ahub.token}"}, max_size=None
    ) as ws:
        yield ws


async def reply(ws: ClientConnection, unit: float) -> dict[str, object]:
    frame = await asyncio.wait_for(ws.recv(), unit)
    assert isinstance(frame, str), "hub frames are text frames"
    obj = orjson.loads(frame)
    assert isinstance(obj, dict)
    return obj


BAD_FRAMES = [
    pytest.param("{oops", p.BAD_JSON, id="malformed-json"),
    pytest.param('{"op":"pub","topic":"t","data":1', p.BAD_JSON, id="truncated-json"),
    pytest.param("[1, 2, 3]", p.BAD_MESSAGE, id="not-an-object"),
    pytest.param('{"op":"launch"}', p.UNKNOWN_OP, id="unknown-op"),
    pytest.param('{"topic":"t"}', p.BAD_FIELD, id="missing-op"),
    pytest.param('{"op":"pub","data":1}', p.BAD_FIELD, id="missing-topic"),
    pytest.param('{"op":"pub","topic":"t"}', p.BAD_FIELD, id="missing-data"),
    pytest.param('{"op":"pub","topic":["t"],"data":1}', p.BAD_FIELD, id="topic-wrong-type"),
    pytest.param('{"op":"pub","topic":"t","batch":"xyz"}', p.BAD_FIELD, id="batch-wrong-type"),
    pytest.param('{"op":"sub","topic":"t","since":"yesterday"}', p.BAD_FIELD, id="since-wrong-type"),
    pytest.param('{"op":"pub","topic":"no spaces","data":1}', p.INVALID_TOPIC, id="invalid-topic"),
    pytest.param('{"op":"pub","topic":"t.>","data":1}', p.INVALID_TOPIC, id="publish-to-pattern"),
    pytest.param('{"op":"sub","topic":"a.>.b"}', p.INVALID_TOPIC, id="invalid-pattern"),
    pytest.param('{"op":"pub","topic":"' + "x" * 300 + '","data":1}', p.INVALID_TOPIC, id="topic-too-long"),
]


@pytest.mark.parametrize(("frame", "code"), BAD_FRAMES)
async def test_bad_frame_gets_err_and_connection_survives(
    ahub: AsyncHub, raw: ClientConnection, frame: str, code: str, unit: float
) -> None:
    async with AsyncClient(ahub.url, ahub.token) as other:
        sub = other.subscribe("t")
        await sub.wait_ready()
        await raw.send('{"op":"pub","topic":"t","data":{"n":1},"id":1}')
        assert (await reply(raw, unit))["op"] == "ack"

        await raw.send(frame)
        err = await reply(raw, unit)
        assert err["op"] == "err" and err["code"] == code and err["message"]

        # The same connection still works, and the earlier record is not lost.
        await raw.send('{"op":"pub","topic":"t","data":{"n":2},"id":2}')
        assert await reply(raw, unit) == {"op": "ack", "id": 2, "seq": 2, "count": 1}
        await asyncio.wait_for(sub.wait(2), unit)
        assert sub.frame["n"].tolist() == [1, 2]
        assert other.errors == type(other.errors)()  # nothing reached the bystander
    assert ahub.stats()["errors"][code] >= 1


async def test_binary_frame_gets_err(ahub: AsyncHub, raw: ClientConnection, unit: float) -> None:
    await raw.send(b'{"op":"ping"}')
    err = await reply(raw, unit)
    assert err["code"] == p.BINARY_FRAME
    await raw.send('{"op":"ping"}')
    assert await reply(raw, unit) == {"op": "pong"}


async def test_invalid_utf8_text_is_closed_but_hub_survives(ahub: AsyncHub, unit: float) -> None:
    # A text frame with bad UTF-8 violates RFC 6455; websockets closes it with 1007.
    async with connect(ahub.url, additional_headers={"Authorization": f"Bearer {ahub.token}"}) as ws:
        await ws.send(b"\xff\xfe", text=True)
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), unit)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1007
    async with AsyncClient(ahub.url, ahub.token) as c:
        assert await c.publish("t", 1, ack=True) == 1


async def test_oversized_frame_closes_1009_and_nothing_accepted_is_lost(unit: float) -> None:
    hub = await AsyncHub(port=0, max_size=10_000).start()
    try:
        async with AsyncClient(hub.url, hub.token) as watcher:
            sub = watcher.subscribe("t")
            await sub.wait_ready()
            async with connect(hub.url, additional_headers={"Authorization": f"Bearer {hub.token}"}) as ws:
                await ws.send('{"op":"pub","topic":"t","data":"small","id":1}')
                assert (await reply(ws, unit))["op"] == "ack"
                await ws.send('{"op":"pub","topic":"t","data":"' + "x" * 20_000 + '"}')
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), unit)
                assert info.value.rcvd is not None and info.value.rcvd.code == p.CLOSE_TOO_BIG
            await asyncio.wait_for(sub.wait(1), unit)
            assert sub.frame["value"].tolist() == ["small"]
            # The hub serves everyone else as before.
            assert await watcher.publish("t", "after", ack=True) == 2
            await asyncio.wait_for(sub.wait(2), unit)
            assert hub.stats()["oversized_frames"] == 1  # counted
    finally:
        await hub.close()


async def test_flood_of_garbage_does_not_disturb_others(ahub: AsyncHub, raw: ClientConnection, unit: float) -> None:
    async with AsyncClient(ahub.url, ahub.token) as good:
        sub = good.subscribe("t")
        await sub.wait_ready()
        for i in range(200):
            await raw.send("garbage" if i % 2 else b"\x00\x01")
            await good.publish("t", i)
        await asyncio.wait_for(sub.wait(200), unit)
        assert sub.frame["value"].tolist() == list(range(200))
        for _ in range(200):
            assert (await reply(raw, unit))["op"] == "err"


async def test_frame_without_auth_is_closed_4401_with_no_data(ahub: AsyncHub, unit: float) -> None:
    async with AsyncClient(ahub.url, ahub.token) as c:
        await c.publish("secret", {"x": 1}, ack=True)
    async with connect(ahub.url) as ws:
        await ws.send('{"op":"sub","topic":"secret"}')
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), unit)
        assert info.value.rcvd is not None and info.value.rcvd.code == p.CLOSE_UNAUTHORIZED


async def test_first_message_auth_then_works(ahub: AsyncHub, unit: float) -> None:
    async with connect(ahub.url) as ws:
        await ws.send(orjson.dumps({"op": "auth", "token": ahub.token}).decode())
        await ws.send('{"op":"ping"}')
        assert await reply(ws, unit) == {"op": "pong"}


async def test_wrong_header_token_is_http_401(ahub: AsyncHub) -> None:
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as info:
        async with connect(ahub.url, additional_headers={"Authorization": "Bearer wrong"}):
            pass
    assert info.value.response.status_code == 401


async def test_auth_deadline_closes_silent_connections(unit: float) -> None:
    async with AsyncHub(port=0, auth_timeout=0.2) as hub, connect(hub.url) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), unit)
        assert info.value.rcvd is not None and info.value.rcvd.code == p.CLOSE_UNAUTHORIZED
