"""Heartbeats: a frozen peer (SIGSTOP) is noticed within ping_interval + ping_timeout.

A frozen process keeps its sockets open and its kernel keeps ACKing, so only the heartbeat can
tell. The bound below is the issue's correctness bound (interval + timeout + 0.5 s of
scheduling slack), checked on both sides: the hub noticing a frozen client, and a client
noticing a frozen hub. The application-level ``{"op":"ping"}`` / ``{"op":"pong"}`` exchange is
covered in test_bad_input.py and test_raw_protocol.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
import time
from collections.abc import AsyncIterator

import pytest

from livenb import AsyncClient, AsyncHub

from .faults import HubProcess
from .helpers import until

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP (POSIX)")

INTERVAL = 0.5
TIMEOUT = 0.5
BOUND = INTERVAL + TIMEOUT + 0.5

CLIENT_SCRIPT = textwrap.dedent(
    """
    import sys
    import livenb
    client = livenb.connect(sys.argv[1], token=sys.argv[2])
    sub = client.subscribe("heartbeat", window=None)
    print("ready", flush=True)
    sys.stdin.readline()  # parked here until the test ends it
    """
)


@contextlib.asynccontextmanager
async def client_process(
    url: str, token: str, unit: float
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A blocking livenb client in a child process, subscribed and ready."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLIENT_SCRIPT,
        url,
        token,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 4 * unit)
        assert line.strip() == b"ready", line
        yield proc
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
        if proc.stdin is not None:
            proc.stdin.close()
        await asyncio.wait_for(proc.wait(), 4 * unit)


async def test_hub_detects_a_sigstopped_client(unit: float) -> None:
    async with AsyncHub(port=0, ping_interval=INTERVAL, ping_timeout=TIMEOUT) as hub:
        assert hub.token is not None
        async with client_process(hub.url, hub.token, unit) as child:
            await until(lambda: hub.stats()["subscriptions"] == 1, unit, "the child's subscription")
            before = hub.stats()["connections"]
            assert before == 1 and hub.stats()["dead_peers"] == 0
            os.kill(child.pid, signal.SIGSTOP)
            frozen = time.monotonic()
            await until(
                lambda: hub.stats()["connections"] == before - 1 and hub.stats()["dead_peers"] == 1,
                4 * unit,
                "the hub to drop the frozen client",
            )
            detected = time.monotonic() - frozen
            print(f"detected in {detected:.3f} s")  # shown with pytest -rP
            assert detected <= BOUND, f"took {detected:.3f} s (bound {BOUND} s)"
            assert hub.stats()["subscriptions"] == 0


async def test_client_detects_a_sigstopped_hub(unit: float) -> None:
    hub = HubProcess(ping_interval=INTERVAL, ping_timeout=TIMEOUT)
    try:
        client = AsyncClient(hub.url, hub.token, ping_interval=INTERVAL, ping_timeout=TIMEOUT)
        async with client:
            sub = client.subscribe("heartbeat", window=None)
            await asyncio.wait_for(sub.wait_ready(), unit)
            assert client.connected
            hub.stop()
            frozen = time.monotonic()
            await until(lambda: not client.connected, 4 * unit, "the client to notice")
            detected = time.monotonic() - frozen
            print(f"detected in {detected:.3f} s")  # shown with pytest -rP
            assert detected <= BOUND, f"took {detected:.3f} s (bound {BOUND} s)"
            await until(lambda: client.stats()["disconnects"] == 1, unit, "the count")
            assert not client.closed  # it keeps trying to reconnect
            hub.cont()
            # Thawed, the hub is reachable again: the client reconnects and resubscribes.
            await until(lambda: client.connected and sub.resumes >= 1, 4 * unit, "the resume")
    finally:
        hub.close()
