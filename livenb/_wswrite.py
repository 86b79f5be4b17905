"""Writing text frames to a websockets connection without a coroutine per frame.

``Connection.send()`` enters an async context manager, writes, and awaits the transport's
drain for every message: most of the cost of a small frame. livenb writes frames straight
into the connection's protocol buffer instead (what websockets' own ``broadcast()`` does)
and hands that buffer to the transport once for a whole burst, falling back to ``send()``
only when the transport is over its write limit or the connection is not open. Order is
kept: everything goes through the one protocol buffer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Final

from websockets.asyncio.connection import Connection
from websockets.protocol import State

# Buffered frames are handed to the transport at the latest once they reach this size, so
# the transport's own write limit (websockets' write_limit) keeps bounding what waits.
FLUSH_BYTES: Final = 64 << 10


def writable(ws: Connection) -> bool:
    """True when a frame may be written now: the connection is open, no fragmented message is
    being sent, and the transport is below its write limit (not paused)."""
    return not ws.paused and ws.protocol.state is State.OPEN and ws.send_in_progress is None


def put(ws: Connection, frame: bytes) -> None:
    """Append a text frame to the protocol buffer (call :func:`writable` first); it reaches
    the socket with the next :func:`flush` (or any send of the connection)."""
    ws.protocol.send_text(frame)


def flush(ws: Connection) -> None:
    """Hand what :func:`put` buffered to the transport (one write for all of it)."""
    ws.send_data()


async def write_all(
    ws: Connection,
    frames: Iterable[bytes],
    *,
    send_timeout: float | None = None,
    drain: bool = True,
) -> None:
    """Write ``frames`` in order, buffered and handed over together (every ``FLUSH_BYTES``)
    while the transport has room; otherwise wait for room like ``send()`` (at most
    ``send_timeout`` seconds per frame, then TimeoutError) or raise ConnectionClosed.
    ``frames`` is read lazily, so it may be a queue being drained. With ``drain``, return
    only once the transport is below its write limit again."""
    buffered = 0
    for frame in frames:
        if writable(ws):
            ws.protocol.send_text(frame)
            buffered += len(frame)
            if buffered >= FLUSH_BYTES:
                ws.send_data()
                buffered = 0
        else:
            # send() hands over what is buffered first (one protocol buffer), then waits.
            async with asyncio.timeout(send_timeout):
                await ws.send(frame, text=True)
            buffered = 0
    if buffered:
        ws.send_data()
    if drain and ws.paused:
        await ws.drain()
