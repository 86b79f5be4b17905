"""Processes of the side-by-side suite: a server per system, and the clients that load it.

``python -m benchmarks.workers ROLE SYSTEM JSON`` runs one role:

- ``server``: the system's relay on 127.0.0.1, a free port; prints ``{"port":..,"token":..}``.
- ``subscribe``: connects, subscribes to ``bench``, prints ``ready``, takes ``n`` records and
  prints ``{"last": <time.time() of the last record>, "count": n}``.
- ``publish``: sends ``n`` records (``per_frame`` to a frame) as fast as the system takes
  them; prints ``{"start": <time.time() before the first>}``.

Systems: ``livenb`` (a hub and its client), ``websockets`` (a minimal relay written here:
every text message from a publisher goes to every subscriber, one record or a JSON array of
records per message, orjson, no compression) and ``socketio`` (python-socketio on aiohttp,
its AsyncClient; emits to a room). Records are about 100 bytes of JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import orjson

TOPIC = "bench"


def record(i: int) -> dict[str, Any]:
    """A ~100-byte tick."""
    return {"sym": "ACME", "px": 101.25 + i % 7, "qty": 100 + i % 13, "bid": 101.2, "ask": 101.3,
            "venue": "XNAS", "i": i}


def say(obj: Any) -> None:
    print(json.dumps(obj), flush=True)


# --------------------------------------------------------------------------------- servers
async def websockets_server() -> None:
    from websockets.asyncio.server import broadcast, serve

    subscribers: set[Any] = set()

    async def handler(ws: Any) -> None:
        try:
            async for message in ws:
                if message == "sub":
                    subscribers.add(ws)
                    await ws.send("ok")
                else:
                    broadcast(subscribers, message)
        finally:
            subscribers.discard(ws)

    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
        say({"port": server.sockets[0].getsockname()[1], "token": None})
        await asyncio.Future()


async def socketio_server() -> None:
    import socketio
    from aiohttp import web

    sio = socketio.AsyncServer(async_mode="aiohttp", logger=False, engineio_logger=False)
    app = web.Application()
    sio.attach(app)

    @sio.on("sub")  # type: ignore[misc]
    async def sub(sid: str, *_: Any) -> str:  # (no data arrives as no argument)
        await sio.enter_room(sid, TOPIC)
        return "ok"

    @sio.on("flush")  # type: ignore[misc]
    async def flush(sid: str, *_: Any) -> str:  # answered after every earlier event
        return "ok"

    @sio.on("pub")  # type: ignore[misc]
    async def pub(sid: str, data: Any) -> None:
        await sio.emit("msg", data, room=TOPIC, skip_sid=sid)

    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    say({"port": port, "token": None})
    await asyncio.Future()


def livenb_server() -> None:
    import threading

    import livenb

    hub = livenb.serve(port=0, max_connections=5_000)
    say({"port": hub.port, "token": hub.token})
    threading.Event().wait()


# --------------------------------------------------------------------------------- clients
async def websockets_subscribe(port: int, n: int) -> None:
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None) as ws:
        await ws.send("sub")
        await ws.recv()
        say("ready")
        count = 0
        while count < n:
            message = orjson.loads(await ws.recv())
            count += len(message) if isinstance(message, list) else 1
        say({"last": time.time(), "count": count})


async def websockets_publish(port: int, n: int, per_frame: int) -> None:
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None) as ws:
        say({"start": time.time()})
        for first in range(0, n, per_frame):
            chunk = [record(i) for i in range(first, min(n, first + per_frame))]
            await ws.send(orjson.dumps(chunk if per_frame > 1 else chunk[0]).decode())


async def socketio_subscribe(port: int, n: int) -> None:
    import socketio

    client = socketio.AsyncClient()
    done = asyncio.Event()
    count = 0

    @client.on("msg")  # type: ignore[misc]
    async def on_msg(data: Any) -> None:
        nonlocal count
        count += len(data) if isinstance(data, list) else 1
        if count >= n:
            done.set()

    await client.connect(f"http://127.0.0.1:{port}", transports=["websocket"])
    await client.call("sub", None)
    say("ready")
    await done.wait()
    say({"last": time.time(), "count": count})
    await client.disconnect()


async def socketio_publish(port: int, n: int, per_frame: int) -> None:
    import socketio

    client = socketio.AsyncClient()
    await client.connect(f"http://127.0.0.1:{port}", transports=["websocket"])
    say({"start": time.time()})
    for first in range(0, n, per_frame):
        chunk = [record(i) for i in range(first, min(n, first + per_frame))]
        await client.emit("pub", chunk if per_frame > 1 else chunk[0])
    await client.call("flush", None, timeout=600)  # every emit has reached the server
    await client.disconnect()


def livenb_subscribe(port: int, token: str, n: int) -> None:
    import livenb

    with livenb.connect(f"ws://127.0.0.1:{port}", token=token) as client:
        sub = client.subscribe(TOPIC, window=None, buffer=1)
        say("ready")
        sub.wait(n, timeout=600)
        say({"last": time.time(), "count": sub.received})


def livenb_publish(port: int, token: str, n: int, per_frame: int) -> None:
    import livenb

    # per_frame 1: every record its own frame (no micro-batching); else livenb's defaults.
    options: dict[str, Any] = {"batch_records": 1, "batch_delay": 0.0} if per_frame == 1 else {}
    with livenb.connect(f"ws://127.0.0.1:{port}", token=token, **options) as client:
        say({"start": time.time()})
        for i in range(n):
            client.publish(TOPIC, record(i))
        client.flush(timeout=600)


def main(argv: list[str]) -> None:
    role, system, args = argv[0], argv[1], json.loads(argv[2]) if len(argv) > 2 else {}
    if role == "server":
        if system == "livenb":
            livenb_server()
        else:
            asyncio.run(websockets_server() if system == "websockets" else socketio_server())
    elif role == "subscribe":
        if system == "livenb":
            livenb_subscribe(args["port"], args["token"], args["n"])
        elif system == "websockets":
            asyncio.run(websockets_subscribe(args["port"], args["n"]))
        else:
            asyncio.run(socketio_subscribe(args["port"], args["n"]))
    elif role == "publish":
        if system == "livenb":
            livenb_publish(args["port"], args["token"], args["n"], args["per_frame"])
        elif system == "websockets":
            asyncio.run(websockets_publish(args["port"], args["n"], args["per_frame"]))
        else:
            asyncio.run(socketio_publish(args["port"], args["n"], args["per_frame"]))
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
