"""Bounded outgoing queues: a subscriber that stops reading is cut off, counted, and costs
nobody else anything."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from livenb import AsyncClient, AsyncHub
from livenb import _protocol as p

from .helpers import until


async def test_stalled_subscriber_is_disconnected_and_counted(unit: float) -> None:
    async with AsyncHub(port=0, queue_frames=20, queue_bytes=1 << 20) as hub:
        headers = {"Authorization": f"Bearer {hub.token}"}
        # max_queue=1 and a tiny read buffer: this client stops reading almost at once.
        stalled = await connect(hub.url, additional_headers=headers, max_queue=1, max_size=None)
        try:
            await stalled.send('{"op":"sub","topic":"flood"}')
            async with AsyncClient(hub.url, hub.token) as pub, AsyncClient(hub.url, hub.token) as healthy:
                fine = healthy.subscribe("flood", window=None)
                await fine.wait_ready()
                await until(lambda: hub.stats()["subscriptions"] == 2, unit, "both subscriptions")
                blob = "x" * 4000
                sent = 0
                while hub.stats()["drops"] == 0 and sent < 50_000:
                    await pub.publish_many("flood", [{"b": blob}] * 10)
                    sent += 10
                    if sent % 1000 == 0:
                        await pub.flush()
                await pub.flush()
                assert hub.stats()["drops"] == 1
                assert hub.stats()["slow_consumer_policy"] == "disconnect"
                # The healthy subscriber got everything, in order.
                await asyncio.wait_for(fine.wait(sent), 4 * unit)
                assert fine.received == sent
            # The stalled client, once it reads again, finds the documented close code.
            with pytest.raises(ConnectionClosed) as info:
                async with asyncio.timeout(4 * unit):
                    while True:
                        await stalled.recv()
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == p.CLOSE_SLOW_CONSUMER
        finally:
            await stalled.close()
