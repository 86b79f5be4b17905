"""Compression: off by default; when on, the decompressed size of every message is bounded,
so a compression bomb costs the hub max_size bytes and closes only its sender with 1009."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from livenb import AsyncClient, AsyncHub, AsyncSubscription
from livenb import _protocol as p

from .faults import HubProcess

MIB = 1 << 20


def _rss_peak(pid: int) -> int:
    """The process's peak resident set size (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


async def _take(sub: AsyncSubscription, n: int) -> list[object]:
    """The data of the next ``n`` records of ``sub``."""
    return [(await anext(sub)).data for _ in range(n)]


def _bomb(size: int) -> str:
    """A pub message whose record is ``size`` bytes of one character: it deflates ~1000:1."""
    return '{"op":"pub","topic":"bomb","data":"' + "0" * size + '"}'


async def test_compression_is_off_by_default(unit: float) -> None:
    async with AsyncHub(port=0) as hub:
        headers = {"Authorization": f"Bearer {hub.token}"}
        async with connect(hub.url, additional_headers=headers, compression="deflate") as ws:
            assert ws.protocol.extensions == []  # offered, not accepted


async def test_compressed_round_trip(unit: float) -> None:
    async with (
        AsyncHub(port=0, compression=True) as hub,
        AsyncClient(hub.url, hub.token, compression=True) as pub,
        AsyncClient(hub.url, hub.token, compression=True) as sub_client,
    ):
        for client in (pub, sub_client):
            assert client._ws is not None
            assert [e.name for e in client._ws.protocol.extensions] == ["permessage-deflate"]
        sub = sub_client.subscribe("ticks")
        await sub.wait_ready()
        records = [{"i": i, "text": "x" * 200} for i in range(500)]
        for record in records:
            await pub.publish("ticks", record)
        await pub.flush()
        async with asyncio.timeout(unit):
            await sub.wait(len(records))
        assert await _take(sub, len(records)) == records


@pytest.fixture
def compressing_hub() -> Iterator[HubProcess]:
    hub = HubProcess(compression=True)
    try:
        yield hub
    finally:
        hub.close()


@pytest.mark.parametrize("fragments", [1, 50], ids=["one-frame", "fragmented"])
async def test_compression_bomb_is_refused_fast_with_bounded_memory(
    compressing_hub: HubProcess, fragments: int, unit: float
) -> None:
    hub = compressing_hub
    headers = {"Authorization": f"Bearer {hub.token}"}
    # Warm the hub up (a normal client, a compressed publish) before the baseline.
    async with AsyncClient(hub.url, hub.token, compression=True) as bystander:
        sub = bystander.subscribe("safe")
        await sub.wait_ready()
        await bystander.publish("safe", {"n": 0}, ack=True)
        baseline = _rss_peak(hub.proc.pid)

        bomb = _bomb(50 * MIB)
        async with connect(
            hub.url, additional_headers=headers, compression="deflate", max_size=None
        ) as ws:
            started = time.monotonic()
            with pytest.raises(ConnectionClosed) as closed:
                if fragments == 1:
                    await ws.send(bomb)
                else:
                    step = len(bomb) // fragments + 1
                    await ws.send(bomb[i : i + step] for i in range(0, len(bomb), step))
                async with asyncio.timeout(unit):
                    await ws.recv()
            refused_after = time.monotonic() - started
        assert closed.value.rcvd is not None and closed.value.rcvd.code == p.CLOSE_TOO_BIG
        growth = _rss_peak(hub.proc.pid) - baseline

        # The bystander is unaffected, and nothing of the bomb was stored.
        await bystander.publish("safe", {"n": 1}, ack=True)
        async with asyncio.timeout(unit):
            await sub.wait(2)
        assert await _take(sub, 2) == [{"n": 0}, {"n": 1}]
        assert await bystander.ping() >= 0  # the hub still answers
    print(f"\n50 MiB bomb ({fragments} frame(s)): closed 1009 after {refused_after:.3f} s, "
          f"hub peak RSS grew {growth / MIB:.2f} MiB")
    assert refused_after < 1.0
    assert growth < 20 * MIB
