"""A client written only from docs/protocol.md: plain websockets, plain JSON.

If this test needs anything the document does not say, the document is incomplete.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

from livenb import AsyncClient, AsyncHub

DOC = Path(__file__).parent.parent / "docs" / "protocol.md"


async def recv(ws: ClientConnection, unit: float) -> dict[str, object]:
    frame = await asyncio.wait_for(ws.recv(), unit)
    assert isinstance(frame, str)
    message = json.loads(frame)
    assert isinstance(message, dict)
    return message


async def send(ws: ClientConnection, message: dict[str, object]) -> None:
    await ws.send(json.dumps(message))


def test_document_names_every_op_and_code() -> None:
    from livenb import _protocol as p

    text = DOC.read_text()
    for op in ("auth", "sub", "unsub", "pub", "ping", "msg", "subscribed", "unsubscribed", "ack", "err", "gap", "pong"):
        assert f"`{op}`" in text, op
    for code in p.ERROR_CODES:
        assert f"`{code}`" in text, code
    for close in (1000, 1001, 1009, 4401, 4008):
        assert str(close) in text, close


async def test_example_session_as_documented(ahub: AsyncHub, unit: float) -> None:
    # Another client has published 41 records on "alerts" (section 12).
    async with AsyncClient(ahub.url, ahub.token) as other:
        await other.publish_many("alerts", [{"n": i} for i in range(41)], ack=True)

        # Browser-style: no header, auth as the first message (section 2.B).
        async with connect(ahub.url) as ws:
            await send(ws, {"op": "auth", "token": ahub.token})
            await send(ws, {"op": "sub", "topic": "ticks.*"})
            sub1 = await recv(ws, unit)
            assert sub1["op"] == "subscribed" and sub1["topic"] == "ticks.*"
            assert isinstance(sub1["epoch"], str) and "seq" not in sub1
            epoch = sub1["epoch"]

            await send(ws, {"op": "sub", "topic": "alerts"})
            reply = await recv(ws, unit)
            assert isinstance(reply.pop("ts"), float)  # the hub's time of the reply
            assert reply == {"op": "subscribed", "topic": "alerts", "epoch": epoch, "seq": 41}

            await send(ws, {"op": "pub", "topic": "ticks.ACME", "data": {"sym": "ACME", "px": 101.5}, "id": 1})
            msg = await recv(ws, unit)
            assert msg["op"] == "msg" and msg["topic"] == "ticks.ACME" and msg["seq"] == 1
            assert msg["data"] == {"sym": "ACME", "px": 101.5}
            assert isinstance(msg["ts"], float) and msg["ts"] > 1.7e9
            assert await recv(ws, unit) == {"op": "ack", "id": 1, "seq": 1, "count": 1}

            batch = [{"sym": "ACME", "px": 101.6}, {"sym": "ACME", "px": 101.7}]
            await send(ws, {"op": "pub", "topic": "ticks.ACME", "batch": batch, "id": "b2"})
            msg = await recv(ws, unit)
            assert msg["seq"] == 2 and msg["batch"] == batch
            assert await recv(ws, unit) == {"op": "ack", "id": "b2", "seq": 2, "count": 2}

            await other.publish("alerts", {"level": "warn", "text": "spread wide"})
            msg = await recv(ws, unit)
            assert msg["topic"] == "alerts" and msg["seq"] == 42
            assert msg["data"] == {"level": "warn", "text": "spread wide"}

            await send(ws, {"op": "pub", "topic": "ticks.*", "data": {"px": 1}, "id": 3})
            err = await recv(ws, unit)
            assert err["op"] == "err" and err["code"] == "invalid_topic" and err["id"] == 3

            await send(ws, {"op": "unsub", "topic": "news"})
            err = await recv(ws, unit)
            assert err["code"] == "not_subscribed" and err["topic"] == "news"

            await send(ws, {"op": "ping"})
            assert await recv(ws, unit) == {"op": "pong"}

            await send(ws, {"op": "unsub", "topic": "ticks.*"})
            assert await recv(ws, unit) == {"op": "unsubscribed", "topic": "ticks.*"}


async def test_header_auth_and_pattern_delivery(ahub: AsyncHub, unit: float) -> None:
    headers = {"Authorization": f"Bearer {ahub.token}"}
    async with connect(ahub.url, additional_headers=headers) as a, connect(ahub.url, additional_headers=headers) as b:
        await send(a, {"op": "sub", "topic": "s.>"})
        await send(a, {"op": "sub", "topic": "s.*"})  # overlapping: each record arrives once
        assert (await recv(a, unit))["op"] == "subscribed"
        assert (await recv(a, unit))["op"] == "subscribed"
        await send(b, {"op": "pub", "topic": "s.x", "batch": [1, 2, 3], "id": "z"})
        assert (await recv(b, unit))["op"] == "ack"
        msg = await recv(a, unit)
        assert msg["batch"] == [1, 2, 3] and msg["seq"] == 1
        await send(a, {"op": "ping"})
        assert await recv(a, unit) == {"op": "pong"}  # not a second copy of the batch
