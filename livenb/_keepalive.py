"""Heartbeats that notice a dead or frozen peer even when our writes are blocked.

websockets' own keepalive awaits room in the write buffer before it sends a ping, so a peer
that stops reading (a frozen process, a stalled network) is never timed out. This one sends
each ping from a separate task and judges only by what arrives: when nothing (no frame, no
pong) came in for ``timeout`` seconds after a ping was due, the connection is aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed

DEFAULT_PING_INTERVAL = 20.0
DEFAULT_PING_TIMEOUT = 20.0


class Liveness:
    """When we last heard from the peer (monotonic seconds); call :meth:`heard` on input."""

    __slots__ = ("last_heard",)

    def __init__(self) -> None:
        self.last_heard = time.monotonic()

    def heard(self) -> None:
        self.last_heard = time.monotonic()


async def keepalive(
    ws: Connection,
    liveness: Liveness,
    interval: float,
    grace: float,
    on_dead: Callable[[], None],
) -> None:
    """Ping every ``interval`` seconds; abort ``ws`` and call ``on_dead`` when the peer is
    silent for ``grace`` seconds (the ping timeout) after a ping. Runs until cancelled or the peer is dead;
    a dead peer is detected within ``interval + grace`` of its last sign of life."""
    pinger: asyncio.Task[None] | None = None
    try:
        while True:
            await asyncio.sleep(max(0.0, liveness.last_heard + interval - time.monotonic()))
            if time.monotonic() - liveness.last_heard < interval:
                continue  # heard from the peer meanwhile: no ping needed yet
            sent = time.monotonic()
            if pinger is None or pinger.done():
                pinger = asyncio.create_task(ping(ws, liveness))
            await asyncio.sleep(max(0.0, grace - (time.monotonic() - sent)))
            if liveness.last_heard < sent:
                ws.transport.abort()  # frees the socket at once; no close handshake
                on_dead()
                return
    finally:
        if pinger is not None:
            pinger.cancel()


async def ping(ws: Connection, liveness: Liveness) -> None:
    """Ping ``ws`` once; its pong counts as hearing from the peer (a client's keepalive
    task, and the hub's single keepalive for all its connections, both use it)."""
    with contextlib.suppress(ConnectionClosed, asyncio.CancelledError):
        pong = await ws.ping()
        await pong
        liveness.heard()
