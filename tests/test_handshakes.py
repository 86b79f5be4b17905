"""Slow and half-open handshakes cost a bounded time and never block normal clients."""

from __future__ import annotations

import asyncio
import time

from livenb import AsyncClient, AsyncHub


async def test_half_open_handshakes_are_closed_and_others_still_connect(unit: float) -> None:
    deadline = 1.0
    async with AsyncHub(port=0, handshake_timeout=deadline) as hub:
        # 500 connections that start an HTTP upgrade and never finish it.
        slow: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        for _ in range(500):
            reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
            slow.append((reader, writer, time.monotonic()))
        # A normal client is not held up by them.
        started = time.monotonic()
        async with AsyncClient(hub.url, hub.token) as c:
            connect_time = time.monotonic() - started
            assert await c.publish("t", 1, ack=True) == 1
        assert connect_time < 1.0

        async def closed_after(reader: asyncio.StreamReader, opened: float) -> float:
            await reader.read()  # EOF once the hub gives up on the handshake
            return time.monotonic() - opened

        async with asyncio.timeout(4 * unit):
            waits = await asyncio.gather(*(closed_after(r, t) for r, _, t in slow))
        for _, writer, _ in slow:
            writer.close()
        assert max(waits) <= deadline + 0.5
        print(f"\nhandshakes: 500 half-open closed within {max(waits):.3f} s; client connected in {connect_time:.3f} s")
