"""Many idle subscribers: hub memory per connection, and one record delivered to all.

A hub runs in its own process; this process opens N WebSocket connections to it (N = 10,000
by default), each subscribed to one topic, and reads the hub's resident memory (VmRSS from
/proc) before and after. Then one record is published and the clock stops when every
connection has it. Side by side, in the same run and harness: a bare websockets server that
accepts N connections and broadcasts one message (``websockets.broadcast``), no compression,
like livenb.

Run: ``.venv/bin/python benchmarks/bench_connections.py [--quick] [-n 10000]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

import livenb

LIVENB_HUB = """
import json, sys, threading, signal, livenb
hub = livenb.serve(port=0, max_connections=int(sys.argv[1]) + 100)  # default keepalive on
print(json.dumps({"port": hub.port, "token": hub.token}), flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
stop.wait()
"""

BARE_HUB = """
import asyncio, json, signal, resource, sys
from websockets.asyncio.server import serve, broadcast
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
clients = set()
async def handler(ws):
    clients.add(ws)
    try:
        async for message in ws:
            if message == "send":
                broadcast(clients, '{"op":"msg","topic":"all","seq":1,"ts":0,"data":{"x":1}}')
    finally:
        clients.discard(ws)
async def main():
    async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
        print(json.dumps({"port": server.sockets[0].getsockname()[1], "token": None}), flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
asyncio.run(main())
"""


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def open_all(port: int, token: str | None, n: int, livenb_protocol: bool) -> list[ClientConnection]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    conns: list[ClientConnection] = []
    semaphore = asyncio.Semaphore(200)  # handshakes in flight at once

    async def one() -> None:
        async with semaphore:
            ws = await connect(
                f"ws://127.0.0.1:{port}", additional_headers=headers, compression=None,
                ping_interval=None, open_timeout=60, max_size=None,
            )
            if livenb_protocol:
                await ws.send('{"op":"sub","topic":"all"}')
                await ws.recv()  # subscribed
            conns.append(ws)

    await asyncio.gather(*(one() for _ in range(n)))
    return conns


async def run_case(name: str, script: str, n: int) -> dict[str, Any]:
    # The hub's own process (started before any connection, so blocking here is harmless).
    proc = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-c", script, str(n)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        await asyncio.sleep(0.5)
        before = rss(proc.pid)
        started = time.monotonic()
        conns = await open_all(info["port"], info["token"], n, livenb_protocol=info["token"] is not None)
        connect_time = time.monotonic() - started
        await asyncio.sleep(3.0)  # let the hub settle (idle connections drop their sender task)
        after = rss(proc.pid)
        started = time.monotonic()
        if info["token"] is not None:
            with livenb.connect(f"ws://127.0.0.1:{info['port']}", token=info["token"]) as publisher:
                publisher.publish("all", {"x": 1})
                publisher.flush()
                await asyncio.gather(*(ws.recv() for ws in conns))
        else:
            await conns[0].send("send")
            await asyncio.gather(*(ws.recv() for ws in conns))
        deliver = time.monotonic() - started
        for ws in conns:
            ws.transport.abort()
        return {
            "case": name,
            "connections": n,
            "connect s": connect_time,
            "hub RSS MiB": after / 2**20,
            "KiB/conn": (after - before) / n / 1024,
            "deliver-all ms": deliver * 1000,
        }
    finally:
        proc.terminate()
        proc.wait(30)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="1,000 connections")
    args = parser.parse_args()
    n = 1_000 if args.quick else args.n
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < n + 200:
        print(f"the hard file limit ({hard}) is below {n + 200}; raise it (ulimit -Hn) or lower -n")
        return
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, livenb {livenb.__version__}")
    results = [
        await run_case("livenb hub (idle subscribers)", LIVENB_HUB, n),
        await run_case("bare websockets (idle, broadcast)", BARE_HUB, n),
    ]
    keys = list(results[0])
    print(" | ".join(f"{k:<34}" if k == "case" else f"{k:>14}" for k in keys))
    for r in results:
        print(" | ".join(f"{r[k]:<34}" if k == "case" else f"{r[k]:>14,.1f}" for k in keys))
    ratio = results[0]["KiB/conn"] / results[1]["KiB/conn"]
    print(f"\nlivenb / bare websockets memory per connection: {ratio:.2f}x (target: <= 16 KiB per connection)")


if __name__ == "__main__":
    asyncio.run(main())
