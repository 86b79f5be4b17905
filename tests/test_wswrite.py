"""Frames written without a coroutine per frame: what waits in a connection's protocol
buffer (not yet handed to the transport) stays bounded by FLUSH_BYTES, order is kept, and a
paused transport makes the writer wait (send()) instead of buffering on."""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.protocol import State

from livenb._server import _MSG, _Item, _Peer
from livenb._wswrite import FLUSH_BYTES, write_all


class FakeProtocol:
    state = State.OPEN

    def __init__(self) -> None:
        self.buffered: list[bytes] = []

    def send_text(self, data: bytes) -> None:
        self.buffered.append(data)


class FakeConnection:
    """What _wswrite and _Peer use of a websockets connection; records every hand-over."""

    def __init__(self) -> None:
        self.protocol = FakeProtocol()
        self.paused = False
        self.send_in_progress = None
        self.written: list[list[bytes]] = []  # one entry per send_data()
        self.sent: list[bytes] = []  # frames that went through send() (waited for room)
        self.largest_buffer = 0

    def send_data(self) -> None:
        self.largest_buffer = max(self.largest_buffer, sum(map(len, self.protocol.buffered)))
        self.written.append(self.protocol.buffered)
        self.protocol.buffered = []

    async def send(self, data: bytes, text: bool = True) -> None:
        self.send_data()
        self.sent.append(data)

    async def drain(self) -> None:
        pass


FRAME = b"x" * 1000


def frames_out(ws: FakeConnection) -> list[bytes]:
    return [f for chunk in ws.written for f in chunk]


def test_write_all_hands_over_at_most_flush_bytes_at_a_time_in_order() -> None:
    ws = FakeConnection()
    frames = [bytes([65 + i % 26]) * 1000 for i in range(300)]
    asyncio.run(write_all(ws, frames))  # type: ignore[arg-type]
    assert frames_out(ws) == frames
    assert len(ws.written) >= 300 * 1000 // FLUSH_BYTES
    assert ws.largest_buffer < FLUSH_BYTES + len(FRAME)


def test_write_all_waits_through_send_when_the_transport_is_paused() -> None:
    ws = FakeConnection()
    ws.paused = True
    asyncio.run(write_all(ws, [FRAME, FRAME]))  # type: ignore[arg-type]
    assert ws.sent == [FRAME, FRAME] and frames_out(ws) == []


class NoHurryHub:
    """A hub that uncorks only when told to (the end of the loop's step)."""

    def __init__(self) -> None:
        self.corked: list[Any] = []

    def _uncork_soon(self, peer: Any) -> None:
        self.corked.append(peer)


def test_a_peer_never_holds_more_than_flush_bytes_corked() -> None:
    ws = FakeConnection()
    peer = _Peer(1, ws, 10_000, 1 << 30)  # type: ignore[arg-type]
    hub = NoHurryHub()
    peer.hub = hub  # type: ignore[assignment]
    for _ in range(500):
        assert peer.offer(_Item(FRAME, 1, _MSG))
        assert peer.corked < FLUSH_BYTES
    assert len(peer.queue) == 0  # all written directly: the transport was never paused
    assert ws.largest_buffer < FLUSH_BYTES + len(FRAME)
    peer.uncork()  # the end of the step
    assert frames_out(ws) == [FRAME] * 500
    assert hub.corked == [peer] * len(ws.written)  # registered once per corked run


def test_a_paused_peer_queues_instead_of_writing() -> None:
    ws = FakeConnection()
    ws.paused = True
    peer = _Peer(1, ws, 10_000, 1 << 30)  # type: ignore[arg-type]
    assert peer.offer(_Item(FRAME, 1, _MSG))
    assert len(peer.queue) == 1 and ws.protocol.buffered == [] and peer.corked == 0
