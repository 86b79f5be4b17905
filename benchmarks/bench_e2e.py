"""End-to-end benchmark: records/s from publish to a subscriber's frame, through a real hub.

Every case starts a hub on 127.0.0.1 port 0, connects a publisher and a separate subscriber
(``window=N``) in this process, publishes N records to one topic and stops the clock when the
subscriber has received all N. Each run is verified: the frame's ``seq`` column is exactly
1..N and every record's payload ``i`` is ``seq - 1`` (nothing lost, duplicated or reordered).

livenb cases
  blocking publish      ``client.publish(topic, record)`` per record (blocking API)
  blocking publish_many ``client.publish_many(topic, chunk)`` in chunks of 1,000
  async publish         ``await client.publish(topic, record)`` per record (AsyncHub/AsyncClient)

Baseline, in the same run: a minimal ``websockets`` server that forwards every JSON text frame
it receives to one subscriber connection; one record per frame, orjson encode and decode, no
compression (livenb does not compress either). The ratio livenb / baseline is printed.

``--profile`` also runs the blocking per-record case under cProfile (main thread and livenb's
loop thread) and prints the hottest functions.

Run: ``.venv/bin/python benchmarks/bench_e2e.py [--quick] [-n N] [--profile]``
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.metadata
import io
import os
import platform
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve

import livenb
from livenb._loop import loop_thread

TOPIC = "bench.ticks"
CHUNK = 1_000
TIMEOUT = 60.0  # seconds any one case may take before it is reported as failed

Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Result:
    """One end-to-end run: ``published`` is when the publish calls returned, ``total`` when the
    subscriber had every record (both in seconds from the first publish call)."""

    name: str
    records: int
    frames: int  # data frames the publisher sent
    published: float
    total: float

    @property
    def rate(self) -> float:
        """Records per second, publish to received."""
        return self.records / self.total if self.total > 0 else float("inf")


def make_records(n: int) -> list[Record]:
    """``n`` flat tick records; ``i`` numbers them from 0 so delivery order can be checked."""
    return [
        {"i": i, "px": 100.0 + (i % 500) * 0.01, "qty": i % 1_000, "bid": 99.99, "ask": 100.01}
        for i in range(n)
    ]


def verify_frame(frame: pd.DataFrame, n: int) -> None:
    """Raise AssertionError unless ``frame`` holds seqs 1..n in order with matching payloads."""
    expected = np.arange(1, n + 1, dtype=np.int64)
    if len(frame) != n or not np.array_equal(frame["seq"].to_numpy(), expected):
        raise AssertionError(f"frame has {len(frame)} rows, seq is not 1..{n} in order")
    if not np.array_equal(frame["i"].to_numpy(), expected - 1):
        raise AssertionError("frame payloads do not match their seqs")


# ---------------------------------------------------------------------- livenb, blocking
def publish_each(client: livenb.Client, records: list[Record]) -> None:
    """One blocking ``publish`` call per record."""
    for record in records:
        client.publish(TOPIC, record)


def publish_chunks(client: livenb.Client, records: list[Record]) -> None:
    """``publish_many`` in chunks of CHUNK records."""
    for start in range(0, len(records), CHUNK):
        client.publish_many(TOPIC, records[start : start + CHUNK])


def run_blocking(
    name: str, records: list[Record], publish: Callable[[livenb.Client, list[Record]], None]
) -> Result:
    """Publish with ``publish`` on the blocking API; wait on a separate subscriber client."""
    n = len(records)
    with livenb.serve(port=0) as hub, hub.connect() as publisher, hub.connect() as receiver:
        sub = receiver.subscribe(TOPIC, window=n)
        start = time.perf_counter()
        publish(publisher, records)
        published = time.perf_counter() - start
        sub.wait(n, timeout=TIMEOUT)
        total = time.perf_counter() - start
        verify_frame(sub.frame, n)
        frames = publisher.stats()["frames_sent"]
    return Result(name, n, frames, published, total)


# ---------------------------------------------------------------------- livenb, async
async def run_async_case(records: list[Record]) -> Result:
    """``await client.publish`` per record on AsyncHub/AsyncClient, all on this loop."""
    n = len(records)
    async with (
        livenb.AsyncHub(port=0) as hub,
        livenb.AsyncClient(hub.url, token=hub.token) as publisher,
        livenb.AsyncClient(hub.url, token=hub.token) as receiver,
    ):
        sub = receiver.subscribe(TOPIC, window=n)
        await sub.wait_ready()
        start = time.perf_counter()
        for record in records:
            await publisher.publish(TOPIC, record)
        published = time.perf_counter() - start
        async with asyncio.timeout(TIMEOUT):
            await sub.wait(n)
        total = time.perf_counter() - start
        verify_frame(sub.frame, n)
        frames = publisher.stats()["frames_sent"]
    return Result("livenb async publish", n, frames, published, total)


# ---------------------------------------------------------------------- websockets baseline
class Forwarder:
    """The baseline server: the first connection to say ``sub`` receives every frame that
    connections saying ``pub`` send (forwarded as is, one text frame each)."""

    def __init__(self) -> None:
        self.subscriber: ServerConnection | None = None
        self.ready = asyncio.Event()

    async def handle(self, ws: ServerConnection) -> None:
        role = await ws.recv()
        if role == "sub":
            self.subscriber = ws
            self.ready.set()
            await ws.wait_closed()
            return
        await self.ready.wait()
        target = self.subscriber
        assert target is not None
        async for frame in ws:
            await target.send(frame)


async def receive_all(ws: ClientConnection, n: int) -> list[int]:
    """Decode ``n`` frames with orjson; return each record's ``i`` in arrival order."""
    seen = []
    for _ in range(n):
        seen.append(orjson.loads(await ws.recv())["i"])
    return seen


async def run_baseline(records: list[Record]) -> Result:
    """Plain websockets + orjson, one record per frame, through :class:`Forwarder`."""
    n = len(records)
    forwarder = Forwarder()
    async with serve(forwarder.handle, "127.0.0.1", 0, compression=None) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with (
            connect(url, compression=None) as receiver,
            connect(url, compression=None) as publisher,
        ):
            await receiver.send("sub")
            await publisher.send("pub")
            await forwarder.ready.wait()
            receiving = asyncio.create_task(receive_all(receiver, n))
            start = time.perf_counter()
            for record in records:
                await publisher.send(orjson.dumps(record), text=True)
            published = time.perf_counter() - start
            async with asyncio.timeout(TIMEOUT):
                seen = await receiving
            total = time.perf_counter() - start
    if seen != list(range(n)):
        raise AssertionError("baseline lost or reordered records")
    return Result("websockets baseline (1 record/frame)", n, n, published, total)


# ---------------------------------------------------------------------- profile
def profile_blocking(records: list[Record], top: int = 15) -> str:
    """cProfile the blocking per-record case on both threads; the hottest functions as text."""
    main_prof, loop_prof = cProfile.Profile(), cProfile.Profile()
    loop_thread().run(_call(loop_prof.enable), None)
    main_prof.enable()
    try:
        run_blocking("profiled", records, publish_each)
    finally:
        main_prof.disable()
        loop_thread().run(_call(loop_prof.disable), None)
    out = io.StringIO()
    for title, prof in (("main thread (publisher)", main_prof), ("loop thread", loop_prof)):
        out.write(f"\n--- {title}: top {top} by own time\n")
        stats = pstats.Stats(prof, stream=out)
        stats.strip_dirs().sort_stats("tottime").print_stats(top)
    return out.getvalue()


async def _call(function: Callable[[], object]) -> None:
    """Run ``function`` on the loop that awaits this (here: livenb's loop thread)."""
    function()


# ---------------------------------------------------------------------- report
def environment() -> str:
    """One line: interpreter, library versions and the machine's core count."""
    return (
        f"python {platform.python_version()} | livenb {livenb.__version__} | "
        f"websockets {importlib.metadata.version('websockets')} | orjson {orjson.__version__} | "
        f"numpy {np.__version__} | pandas {pd.__version__} | {os.cpu_count()} cores"
    )


def print_table(results: Sequence[Result], baseline: Result) -> None:
    """One row per case with its ratio to the baseline's records/s."""
    print(
        f"{'case':<38} {'records':>8} {'frames':>8} {'publish s':>10} {'total s':>9} "
        f"{'records/s':>11} {'vs baseline':>12}"
    )
    for r in results:
        ratio = r.rate / baseline.rate
        print(
            f"{r.name:<38} {r.records:>8,} {r.frames:>8,} {r.published:>10.3f} {r.total:>9.3f} "
            f"{r.rate:>11,.0f} {ratio:>11.2f}x"
        )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-n", type=int, default=100_000, help="records per case (100,000)")
    parser.add_argument("--quick", action="store_true", help="10,000 records per case")
    parser.add_argument("--profile", action="store_true", help="cProfile the blocking case")
    parser.add_argument("--check", action="store_true", help="accepted for `make bench`; no-op")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every case once, print the table; a failed delivery check raises."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    n = 10_000 if args.quick else args.n
    records = make_records(n)
    print("livenb end to end: publish -> hub -> subscriber frame, 127.0.0.1")
    print(environment())
    print(f"{n:,} records per case, one timed run each (warm-up included), verified in order\n")
    results = [
        run_blocking("livenb blocking publish (per record)", records, publish_each),
        run_blocking(f"livenb blocking publish_many ({CHUNK:,})", records, publish_chunks),
        asyncio.run(run_async_case(records)),
    ]
    baseline = asyncio.run(run_baseline(records))
    print_table([*results, baseline], baseline)
    if args.profile:
        print(profile_blocking(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
