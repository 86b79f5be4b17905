"""Bounded outgoing queues: a subscriber that stops reading is cut off, counted, and costs
nobody else anything."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import textwrap
import time
from typing import Any

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
            async with (
                AsyncClient(hub.url, hub.token) as pub,
                AsyncClient(hub.url, hub.token) as healthy,
            ):
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


# ------------------------------------------------------------------ a frozen subscriber process

HUB_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import livenb
    hub = livenb.serve(port=0, **json.loads(sys.argv[1]))
    print(json.dumps({"url": hub.url, "token": hub.token}), flush=True)
    for line in sys.stdin:  # any line asks for the stats; end of input closes the hub
        print(json.dumps(hub.stats()), flush=True)
    hub.close()
    """
)

SUBSCRIBER_SCRIPT = textwrap.dedent(
    """
    import json, logging, sys, time
    import livenb
    seen = []  # the client's own account of each lost connection (with the close code)
    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())
    log = logging.getLogger("livenb.client")
    log.setLevel(logging.INFO)
    log.addHandler(Keep())
    url, token, topic, limit = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    client = livenb.connect(url, token=token)
    sub = client.subscribe(topic, window=1000)
    print("ready", flush=True)
    total = int(sys.stdin.readline())  # written by the test after SIGCONT
    deadline = time.monotonic() + limit
    while sub.stats()["last_seq"].get(topic, 0) < total and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = sub.stats()
    stats["client"] = client.stats()
    stats["log"] = seen
    stats["frame_last_seq"] = int(sub.frame["seq"].iloc[-1]) if len(sub.frame) else 0
    print(json.dumps(stats, default=str), flush=True)
    client.close()
    """
)

RATE = 5_000  # records per second
TICK = 0.01  # publish every 10 ms ...
PER_TICK = int(RATE * TICK)  # ... 50 records
RUN = 10.0  # seconds with the subscriber frozen
WARMUP = 2.5  # seconds before: fills the topic's history (10,000 records), so it is in the baseline
QUEUE_BYTES = 2 << 20
QUEUE_RECORDS = 5_000
MiB = 1 << 20


class ChildHub:
    """A hub in a child process that reports its stats on request (its memory is its own)."""

    def __init__(self, proc: asyncio.subprocess.Process, url: str, token: str) -> None:
        self.proc = proc
        self.url = url
        self.token = token

    @classmethod
    async def start(cls, unit: float, **options: object) -> ChildHub:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            HUB_SCRIPT,
            json.dumps(options),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        info = json.loads(await asyncio.wait_for(proc.stdout.readline(), 4 * unit))
        return cls(proc, info["url"], info["token"])

    async def stats(self, unit: float) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"stats\n")
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that
        # arrives as the line does (gh-86296), which once left the watcher below running.
        async with asyncio.timeout(unit):
            line = await self.proc.stdout.readline()
        stats = json.loads(line)
        assert isinstance(stats, dict)
        return stats

    def rss(self) -> int:
        """Resident memory of the hub process, in bytes."""
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    async def close(self, unit: float) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 4 * unit)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def start_subscriber(hub: ChildHub, topic: str, unit: float) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SUBSCRIBER_SCRIPT,
        hub.url,
        hub.token,
        topic,
        str(6 * unit),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    assert (await asyncio.wait_for(proc.stdout.readline(), 4 * unit)).strip() == b"ready"
    return proc


async def paced(publisher: AsyncClient, topic: str, start: int, seconds: float) -> int:
    """Publish RATE records/s (PER_TICK every TICK s) for ``seconds``; return the next number."""
    pad = "x" * 1000
    n = start
    began = time.monotonic()
    ticks = 0
    while (now := time.monotonic()) - began < seconds:
        due = int((now - began) / TICK) + 1  # catch up after a late wake-up
        while ticks < due:
            await publisher.publish_many(
                topic,
                [
                    {"sym": "ACME", "px": 100.0 + i % 7, "n": i, "pad": pad}
                    for i in range(n, n + PER_TICK)
                ],
            )
            n += PER_TICK
            ticks += 1
        await asyncio.sleep(max(0.0, began + ticks * TICK - time.monotonic()))
    return n


@pytest.mark.skipif(
    not hasattr(signal, "SIGSTOP") or not os.path.exists("/proc/self/status"),
    reason="needs SIGSTOP and /proc (Linux)",
)
async def test_frozen_subscriber_costs_its_queue_bound_and_resumes(unit: float) -> None:
    """One SIGSTOPped subscriber and ten healthy ones at 5,000 records/s: the healthy ones
    get everything, the hub's memory grows by at most the stalled queue's bound plus 10 MiB,
    the frozen one is closed with 4008 and, after SIGCONT, resumes and reports its gap."""
    topic = "ticks.acme"
    hub = await ChildHub.start(
        unit,
        queue_bytes=QUEUE_BYTES,
        queue_records=QUEUE_RECORDS,
        send_timeout=6 * unit,  # the close frame still reaches it after SIGCONT
    )
    frozen: asyncio.subprocess.Process | None = None
    try:
        frozen = await start_subscriber(hub, topic, unit)
        async with contextlib.AsyncExitStack() as stack:
            publisher = await stack.enter_async_context(AsyncClient(hub.url, hub.token))
            healthy = []
            for _ in range(10):
                client = await stack.enter_async_context(AsyncClient(hub.url, hub.token))
                sub = client.subscribe(topic, window=None)
                await sub.wait_ready()
                healthy.append(sub)
            n = await paced(publisher, topic, 1, WARMUP)
            await publisher.flush()
            await asyncio.wait_for(asyncio.gather(*(s.wait(n - 1) for s in healthy)), 4 * unit)
            baseline = hub.rss()

            os.kill(frozen.pid, signal.SIGSTOP)
            stopped = time.monotonic()
            peak = baseline
            max_lag = 0
            closed_after: float | None = None  # seconds from SIGSTOP to the 4008 decision
            samples: list[dict[str, Any]] = []

            stop_watching = asyncio.Event()

            async def watch() -> None:
                nonlocal peak, max_lag, closed_after
                while not stop_watching.is_set():
                    peak = max(peak, hub.rss())
                    lag = publisher.records_settled - min(s.received for s in healthy)
                    max_lag = max(max_lag, lag)
                    samples.append(await hub.stats(unit))
                    if closed_after is None and samples[-1]["drops"]:
                        closed_after = time.monotonic() - stopped
                    await asyncio.sleep(0.05)

            watcher = asyncio.create_task(watch())
            try:
                n = await paced(publisher, topic, n, RUN)
                await publisher.flush()
                total = n - 1
                await asyncio.wait_for(asyncio.gather(*(s.wait(total) for s in healthy)), 4 * unit)
            finally:
                # Stopped by a flag, not cancel(): a swallowed cancellation would leave this
                # await hanging and, worse, a cancellation of the test itself swallowed with it.
                stop_watching.set()
                async with asyncio.timeout(2 * unit):
                    await watcher
            peak = max(peak, hub.rss())
            stats = await hub.stats(unit)
            growth = peak - baseline
            max_queued = max(s["queued_bytes"] for s in samples)
            print(
                f"hub RSS baseline {baseline / MiB:.1f} MiB, peak {peak / MiB:.1f} MiB, "
                f"growth {growth / MiB:.2f} MiB; max queued {max_queued / MiB:.2f} MiB; "
                f"4008 after {closed_after} s; healthy max lag {max_lag} records"
            )

            # The healthy ones got everything, in order, without a gap, all along.
            for sub in healthy:
                assert sub.received == total and sub.gap_count == 0
                assert sub.last_seq[topic] == total
            # Never more than about two seconds behind what the hub acknowledged.
            assert max_lag <= 2 * RATE * unit / 5, f"healthy subscribers fell {max_lag} behind"
            # The frozen one was closed as a slow consumer, once; it cost at most its bound.
            assert stats["drops"] == 1 and stats["slow_consumer_policy"] == "disconnect"
            assert stats["dead_peers"] == 0
            # (the ten healthy queues hold a frame or two of up to 100 records at times)
            assert max_queued <= QUEUE_BYTES + 10 * 2 * 100 * 1200
            assert max(s["queued_records"] for s in samples) <= QUEUE_RECORDS + 10 * 2 * 100
            assert growth <= QUEUE_BYTES + 10 * MiB, f"the hub grew by {growth / MiB:.1f} MiB"

            # Thawed, it reads what was buffered, sees 4008, reconnects and resumes.
            os.kill(frozen.pid, signal.SIGCONT)
            assert frozen.stdin is not None and frozen.stdout is not None
            frozen.stdin.write(f"{total}\n".encode())
            line = await asyncio.wait_for(frozen.stdout.readline(), 8 * unit)
            report = json.loads(line)
            print(
                "frozen subscriber after SIGCONT:",
                {
                    k: report[k]
                    for k in ("received", "missed", "gaps", "resumes", "recovered", "duplicates")
                },
            )
            assert report["last_seq"][topic] == total
            assert report["frame_last_seq"] == total
            assert report["resumes"] >= 1 and report["client"]["disconnects"] >= 1
            assert any("4008" in message for message in report["log"]), report["log"]
            assert report["recovered"] is True or report["gaps"] >= 1
            # Nothing lost silently: each record was received once or reported missing.
            assert report["received"] + report["missed"] == total
            assert report["client"]["gaps"] == report["gaps"]
    finally:
        if frozen is not None:
            if frozen.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(frozen.pid, signal.SIGCONT)
                    frozen.kill()
            if frozen.stdin is not None:
                frozen.stdin.close()
            await asyncio.wait_for(frozen.wait(), 4 * unit)
        await hub.close(unit)
