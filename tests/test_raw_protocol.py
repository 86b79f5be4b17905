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


async def test_cumulative_pubs_read_together_get_one_ack(ahub: AsyncHub, unit: float) -> None:
    """Section 5.4: frames marked cumulative may be acknowledged by a later frame's ack; an
    err (or any other reply) is never overtaken by an ack held back for an earlier frame."""
    from livenb._wswrite import flush, put

    def pub(n: int, topic: str = "t") -> bytes:
        return json.dumps({"op": "pub", "topic": topic, "data": n, "id": n, "pid": "p9", "cumulative": True}).encode()

    async with connect(ahub.url, additional_headers={"Authorization": f"Bearer {ahub.token}"}) as ws:
        for frame in [pub(1), pub(2), pub(3), pub(4, "bad topic"), pub(5), pub(6), b'{"op":"ping"}']:
            put(ws, frame)
        flush(ws)  # one write: the hub reads the burst at once
        replies = []
        while not replies or replies[-1]["op"] != "pong":
            replies.append(await recv(ws, unit))
    acks = [r for r in replies if r["op"] == "ack"]
    err = next(r for r in replies if r["op"] == "err")
    assert err["id"] == 4 and err["code"] == "invalid_topic"
    assert [r["op"] for r in replies] == ["ack", "err", "ack", "pong"]
    assert (acks[0]["id"], acks[0]["seq"]) == (3, 3)  # settles frames 1-3
    assert (acks[1]["id"], acks[1]["seq"]) == (6, 5)  # settles frames 5-6 (4 was refused)


async def test_frames_not_cumulative_get_one_ack_each(ahub: AsyncHub, unit: float) -> None:
    from livenb._wswrite import flush, put

    async with connect(ahub.url, additional_headers={"Authorization": f"Bearer {ahub.token}"}) as ws:
        for n in (1, 2, 3):
            put(ws, json.dumps({"op": "pub", "topic": "t", "data": n, "id": n, "pid": "p8"}).encode())
        flush(ws)
        assert [(await recv(ws, unit))["id"] for _ in range(3)] == [1, 2, 3]


async def test_acks_of_different_producers_on_one_connection_are_not_folded(
    ahub: AsyncHub, unit: float
) -> None:
    """A connection that relays two producers gets an ack for each frame that a later one
    cannot cover: ack N settles only lower numbers of its own pid."""
    from livenb._wswrite import flush, put

    def pub(pid: str, n: int) -> bytes:
        return json.dumps({"op": "pub", "topic": "t", "data": n, "id": n, "pid": pid, "cumulative": True}).encode()

    async with connect(ahub.url, additional_headers={"Authorization": f"Bearer {ahub.token}"}) as ws:
        for frame in [pub("A", 10), pub("B", 3), pub("B", 4), pub("B", 2), b'{"op":"ping"}']:
            put(ws, frame)
        flush(ws)
        replies = []
        while not replies or replies[-1]["op"] != "pong":
            replies.append(await recv(ws, unit))
    acks = [(r["id"], r["seq"], r.get("dup", False)) for r in replies if r["op"] == "ack"]
    # A/10 on its own; B/3 folded into B/4; B/2 after B/4 is a duplicate (numbers only grow)
    assert acks == [(10, 1, False), (4, 3, False), (2, 0, True)]
