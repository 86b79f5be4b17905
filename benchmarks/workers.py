"""Processes of the side-by-side suite: a server per system, and the clients that load it.

``python -m benchmarks.workers ROLE SYSTEM`` imports what the role needs, then reads one JSON
line of settings on stdin (so the orchestrator can start every process of a case at once and
hand out the server's port when it is known) and prints JSON lines on stdout. Every wait is
bounded by the settings' ``timeout``; a worker exits (``os._exit``) right after its last line.

Roles:

- ``server``: the system's relay on 127.0.0.1, a free port; prints ``{"port":..,"token":..}``
  at once (it reads no settings) and serves until it is killed.
- ``subscribe``: opens ``conns`` connections, each subscribed to ``bench``; prints ``"ready"``
  once every one is confirmed, then, by ``mode``:

  - ``count``: waits until every connection has ``n`` records; prints ``{"last": <time.time()
    when the last connection had all>, "count": <fewest records any connection got>, "cpu":
    <process CPU seconds from ready to done>}``.
  - ``latency``: one connection; for every record, ``time.time()`` at receipt minus the ``t``
    the publisher put in the record; prints ``count``, ``p50``, ``p99``, ``max`` (ms), ``cpu``
    (livenb also ``p50_to_hub`` and ``p99_to_hub``: the record's ``ts``, the hub's receive
    time, minus ``t``).
  - ``frame``: one connection whose records land in a DataFrame of the last ``window`` rows:
    livenb ``subscribe(window=...)`` then ``sub.frame``; ``naive`` a websockets client doing
    ``json.loads`` per message into a ``deque(maxlen=window)`` of dicts and
    ``pd.DataFrame(list(deque))`` at the end. ``last`` is taken after the frame is built.
  - ``idle``: holds the connections (nothing is published) until a line or EOF on stdin.

- ``publish``: connects, prints ``"ready"``, waits for ``"go"`` on stdin, prints
  ``{"start": time.time()}``, sends ``n`` records, then ``{"end":.., "cpu":..}``. ``per_frame``
  records to a frame; ``rate`` (records/s) paces the sends (see :func:`paced`), each record
  then carrying its send time ``t`` (``time.time()`` just before its publish call).
- ``ingest``: in-process DataFrame ingest, no network (``frame-ingest``).
- ``widgets``: a real Jupyter kernel fed at ``rate`` records/s (``widget-pump``).

Systems: ``livenb`` (a hub, ``livenb.serve(max_connections=5000)``; ``livenb.connect`` for
publishers, ``livenb.AsyncClient`` for subscribers and the paced publisher), ``websockets``
(a minimal relay written here: every text message from a publisher goes to every subscriber
with ``websockets.broadcast()``, one record or a JSON array of records per message, orjson,
no compression, no keepalive), ``socketio`` (python-socketio on aiohttp, its AsyncClient;
``emit`` to a room) and ``naive`` (what a user writes without livenb: the websockets relay,
stdlib ``json`` and pandas). Ticks (:func:`record`) are about 100 bytes of JSON; the
DataFrame scenarios send flat numeric records (:func:`flat_record`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sys
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

TOPIC = "bench"
CONNECT_CONCURRENCY = 20  # handshakes in flight per process (the accept backlog is 100)


def record(i: int) -> dict[str, Any]:
    """A ~100-byte tick."""
    return {
        "sym": "ACME",
        "px": 101.25 + i % 7,
        "qty": 100 + i % 13,
        "bid": 101.2,
        "ask": 101.3,
        "venue": "XNAS",
        "i": i,
    }


def flat_record(i: int) -> dict[str, Any]:
    """A flat numeric record (the DataFrame scenarios): ints and floats only."""
    px = 100.0 + (i % 1000) * 0.01
    return {"i": i, "px": px, "qty": 1 + i % 1000, "bid": px - 0.01, "ask": px + 0.01}


def say(obj: Any) -> None:
    print(json.dumps(obj), flush=True)


def hear() -> Any:
    """The next JSON line on stdin (EOF: the orchestrator is gone, so stop)."""
    line = sys.stdin.readline()
    if not line:
        raise SystemExit("stdin closed")
    return json.loads(line)


async def hear_async(limit: float) -> Any:
    """``hear()`` without blocking the loop (a thread), bounded by ``limit`` seconds."""
    return await asyncio.wait_for(asyncio.to_thread(hear), limit)


def raise_fd_limit(need: int) -> None:
    """Raise the soft limit on open files to ``need`` (at most the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of sorted ``values``, nearest rank."""
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(q * len(values) + 0.5) - 1))
    return values[k]


def latency_summary(latencies: list[float], cpu: float) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "last": time.time(),
        "count": len(ordered),
        "p50": percentile(ordered, 0.50) * 1000,
        "p99": percentile(ordered, 0.99) * 1000,
        "max": (ordered[-1] if ordered else float("nan")) * 1000,
        "cpu": cpu,
    }


async def paced(send: Callable[[dict[str, Any]], Awaitable[Any]], n: int, rate: float) -> float:
    """Send ``n`` records at ``rate`` a second; return the achieved rate.

    Record ``i`` is due ``i / rate`` seconds after the start; every due record is sent at
    once (stamped with ``time.time()`` at its send call), then the loop sleeps until the next
    one is due. asyncio's sleeps have a resolution of about 1 ms, so at 10,000 records/s the
    records leave in bursts of about 10, the same way for every system.
    """
    start = time.perf_counter()
    i = 0
    while i < n:
        now = time.perf_counter()
        due = start + i / rate
        if due > now:
            await asyncio.sleep(due - now)
            continue
        while i < n and start + i / rate <= now:
            tick = record(i)
            tick["t"] = time.time()
            await send(tick)
            i += 1
    elapsed = time.perf_counter() - start
    return n / elapsed if elapsed > 0 else float("inf")


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

    async with serve(
        handler, "127.0.0.1", 0, compression=None, max_size=None, ping_interval=None
    ) as server:
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


# --------------------------------------------------------------------------------- subscribers
class Subscribers:
    """``conns`` connections of one system in this process, counting what arrives."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.url = f"ws://127.0.0.1:{cfg['port']}"
        self.n: int = cfg.get("n", 0)
        self.timeout: float = cfg["timeout"]
        self.latencies: list[float] = []
        self.counts: list[int] = []
        self.done: list[float] = []
        self.finished = asyncio.Event()
        self.keep: list[Any] = []  # the connections (and their clients), kept alive
        self.rows: int | None = None  # frame mode: rows of the DataFrame built at the end
        self.to_hub: list[float] = []  # livenb latency: publish call -> hub receive time

    def got(self, k: int, records: int) -> None:
        self.counts[k] += records
        if self.counts[k] >= self.n and self.counts[k] - records < self.n:
            self.done.append(time.time())
            if len(self.done) == len(self.counts):
                self.finished.set()

    def got_timed(self, now: float, batch: Any) -> None:
        for item in batch if isinstance(batch, list) else (batch,):
            self.latencies.append(now - item["t"])
        self.got(0, len(batch) if isinstance(batch, list) else 1)

    async def open_all(self, open_one: Callable[[int], Awaitable[None]]) -> None:
        semaphore = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(k: int) -> None:
            async with semaphore:
                await open_one(k)

        self.counts = [0] * self.cfg["conns"]
        await asyncio.wait_for(
            asyncio.gather(*(one(k) for k in range(self.cfg["conns"]))), self.timeout
        )

    async def finish(self, cpu0: float) -> None:
        mode = self.cfg["mode"]
        if mode == "idle":
            await hear_async(self.timeout)
            say({"count": len(self.counts)})
            return
        with contextlib.suppress(TimeoutError):  # reported: count < n
            await asyncio.wait_for(self.finished.wait(), self.timeout)
        cpu = time.process_time() - cpu0
        if mode == "latency":
            say(latency_summary(self.latencies, cpu))
        else:
            last = max(self.done, default=time.time())
            say({"last": last, "count": min(self.counts), "cpu": cpu, "rows": self.rows})


async def livenb_subscribe(cfg: dict[str, Any]) -> None:
    import livenb

    subs = Subscribers(cfg)
    mode = cfg["mode"]
    window = cfg.get("window") if mode == "frame" else None
    if mode == "frame":
        import livenb.frames  # pandas, imported before the clock starts
    handles: list[Any] = []

    async def open_one(k: int) -> None:
        client = livenb.AsyncClient(subs.url, token=cfg["token"], open_timeout=subs.timeout)
        await client.connect()
        subs.keep.append(client)
        if mode == "latency":

            def on_record(rec: Any) -> None:
                subs.latencies.append(time.time() - rec.data["t"])
                subs.to_hub.append(rec.ts - rec.data["t"])  # the hub's receive time

            sub = client.subscribe(TOPIC, window=None, buffer=1, on_record=on_record)
        else:
            sub = client.subscribe(TOPIC, window=window, buffer=1)
        await sub.wait_ready()
        handles.append(sub)

    await subs.open_all(open_one)
    say("ready")
    cpu0 = time.process_time()

    async def wait_one(sub: Any, k: int) -> None:
        await sub.wait(subs.n)
        subs.counts[k] = sub.received
        subs.done.append(time.time())

    if mode == "idle":
        await subs.finish(cpu0)
        return
    try:
        await asyncio.wait_for(
            asyncio.gather(*(wait_one(s, k) for k, s in enumerate(handles))), subs.timeout
        )
        rows = len(handles[0].frame) if mode == "frame" else None
    except TimeoutError:
        rows = None
    cpu = time.process_time() - cpu0
    last = time.time() if mode == "frame" else max(subs.done, default=time.time())
    if mode == "latency":
        summary = latency_summary(subs.latencies, cpu)
        to_hub = sorted(subs.to_hub)
        summary["p50_to_hub"] = percentile(to_hub, 0.50) * 1000
        summary["p99_to_hub"] = percentile(to_hub, 0.99) * 1000
        say(summary)
        return
    count = min(s.received for s in handles)
    say({"last": last, "count": count, "cpu": cpu, "rows": rows})


async def websockets_subscribe(cfg: dict[str, Any]) -> None:
    from websockets.asyncio.client import connect

    subs = Subscribers(cfg)
    mode = cfg["mode"]
    naive = mode == "frame"
    if naive:
        import pandas as pd
    window: deque[Any] = deque(maxlen=cfg.get("window") or 1)
    readers: list[asyncio.Task[None]] = []

    async def read(ws: Any, k: int) -> None:
        try:
            await receive(ws, k)
        except Exception:  # a closed connection: report what arrived, now
            traceback.print_exc()
            subs.finished.set()

    async def receive(ws: Any, k: int) -> None:
        if mode == "latency":
            while subs.counts[k] < subs.n:
                message = await ws.recv()
                subs.got_timed(time.time(), orjson.loads(message))
        elif naive:  # what a user writes: stdlib json, a bounded list of dicts
            while subs.counts[k] < subs.n:
                batch = json.loads(await ws.recv())
                if isinstance(batch, list):
                    window.extend(batch)
                    subs.counts[k] += len(batch)
                else:
                    window.append(batch)
                    subs.counts[k] += 1
            subs.rows = len(pd.DataFrame(list(window)))
            subs.done.append(time.time())
            subs.finished.set()
        else:
            while subs.counts[k] < subs.n:
                message = orjson.loads(await ws.recv())
                subs.got(k, len(message) if isinstance(message, list) else 1)

    async def open_one(k: int) -> None:
        ws = await connect(
            subs.url,
            compression=None,
            max_size=None,
            ping_interval=None,
            open_timeout=subs.timeout,
        )
        subs.keep.append(ws)
        await ws.send("sub")
        await ws.recv()
        if mode != "idle":
            readers.append(asyncio.create_task(read(ws, k)))

    await subs.open_all(open_one)
    say("ready")
    cpu0 = time.process_time()
    await subs.finish(cpu0)


async def socketio_subscribe(cfg: dict[str, Any]) -> None:
    import socketio

    subs = Subscribers(cfg)
    mode = cfg["mode"]

    async def open_one(k: int) -> None:
        client = socketio.AsyncClient()
        subs.keep.append(client)
        if mode == "latency":

            @client.on("msg")  # type: ignore[misc]
            async def on_timed(data: Any) -> None:
                subs.got_timed(time.time(), data)

        elif mode != "idle":

            @client.on("msg")  # type: ignore[misc]
            async def on_msg(data: Any) -> None:
                subs.got(k, len(data) if isinstance(data, list) else 1)

        await client.connect(subs.url, transports=["websocket"], wait_timeout=subs.timeout)
        await client.call("sub", None, timeout=subs.timeout)

    await subs.open_all(open_one)
    say("ready")
    await subs.finish(time.process_time())


# --------------------------------------------------------------------------------- publishers
def livenb_publish(cfg: dict[str, Any]) -> None:
    """The blocking client, as a notebook uses it (relay, fan-out and frame scenarios)."""
    import livenb

    n, per_frame, mode = cfg["n"], cfg["per_frame"], cfg["mode"]
    if mode == "relay":  # 1: every record its own frame; else livenb's default micro-batching
        options: dict[str, Any] = {"batch_records": 1, "batch_delay": 0.0} if per_frame == 1 else {}
        chunk = per_frame if cfg.get("many") else 1  # many: publish_many of per_frame records
    elif mode == "fanout":  # frames of exactly per_frame records, like the others
        options, chunk = {"batch_records": per_frame}, per_frame
    else:  # frame: a bulk load with publish_many, default batching
        options, chunk = {}, 1_000
    make = flat_record if mode == "frame" else record
    records = [make(i) for i in range(n)]
    url = f"ws://127.0.0.1:{cfg['port']}"
    with livenb.connect(url, token=cfg["token"], timeout=cfg["timeout"], **options) as client:
        say("ready")
        hear()
        cpu0 = time.process_time()
        say({"start": time.time()})
        if chunk == 1:
            for item in records:
                client.publish(TOPIC, item)
        else:
            for first in range(0, n, chunk):
                client.publish_many(TOPIC, records[first : first + chunk])
        client.flush(timeout=cfg["timeout"])
        say({"end": time.time(), "cpu": time.process_time() - cpu0})


async def livenb_publish_paced(cfg: dict[str, Any]) -> None:
    """The async client, paced (latency scenarios); single or default micro-batching."""
    import livenb

    options: dict[str, Any] = (
        {"batch_records": 1, "batch_delay": 0.0} if cfg["per_frame"] == 1 else {}
    )
    url = f"ws://127.0.0.1:{cfg['port']}"
    async with livenb.AsyncClient(url, token=cfg["token"], **options) as client:
        say("ready")
        await hear_async(cfg["timeout"])
        cpu0 = time.process_time()
        say({"start": time.time()})

        async def send(item: dict[str, Any]) -> None:
            await client.publish(TOPIC, item)

        achieved = await paced(send, cfg["n"], cfg["rate"])
        await asyncio.wait_for(client.flush(), cfg["timeout"])
        say({"end": time.time(), "cpu": time.process_time() - cpu0, "rate": achieved})


async def websockets_publish(cfg: dict[str, Any]) -> None:
    from websockets.asyncio.client import connect

    naive = cfg["mode"] == "frame"
    dumps: Callable[[Any], str] = json.dumps if naive else (lambda o: orjson.dumps(o).decode())
    url = f"ws://127.0.0.1:{cfg['port']}"
    async with connect(url, compression=None, max_size=None, ping_interval=None) as ws:

        async def send(message: Any) -> None:
            await ws.send(dumps(message))

        await send_all(cfg, send, flat_record if naive else record)


async def socketio_publish(cfg: dict[str, Any]) -> None:
    import socketio

    client = socketio.AsyncClient()
    await client.connect(
        f"http://127.0.0.1:{cfg['port']}", transports=["websocket"], wait_timeout=cfg["timeout"]
    )

    async def send(message: Any) -> None:
        await client.emit("pub", message)

    async def settle() -> None:
        await client.call("flush", None, timeout=cfg["timeout"])  # every emit reached the server

    await send_all(cfg, send, record, settle)


async def send_all(
    cfg: dict[str, Any],
    send: Callable[[Any], Awaitable[None]],
    make: Callable[[int], dict[str, Any]],
    settle: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """The measured part of a bare system's publisher: ``ready``, wait for ``go``, then send
    ``n`` records paced at ``rate`` (one per message) or as fast as it goes (``per_frame``
    to a message, a list when more than one), ``settle``, and report."""
    n, per_frame = cfg["n"], cfg["per_frame"]
    say("ready")
    await hear_async(cfg["timeout"])
    cpu0 = time.process_time()
    say({"start": time.time()})
    achieved = None
    if cfg.get("rate"):
        achieved = await paced(send, n, cfg["rate"])
    else:
        for first in range(0, n, per_frame):
            chunk = [make(i) for i in range(first, min(n, first + per_frame))]
            await send(chunk if per_frame > 1 else chunk[0])
    if settle is not None:
        await settle()
    say({"end": time.time(), "cpu": time.process_time() - cpu0, "rate": achieved})


# --------------------------------------------------------------------------------- in-process
def ingest(system: str, cfg: dict[str, Any]) -> None:
    """Flat numeric records into a DataFrame window, in this process (no network).

    livenb: ``ColumnWindow.ingest`` per batch of ``batch`` records (as a subscription feeds
    it), then ``snapshot_to_frame`` (what ``sub.frame`` does). naive: ``deque.extend`` per
    batch, then ``pd.DataFrame(list(deque))``. Records are made before the clock starts.
    ``view`` is one more frame of the full window, timed alone (what each look costs).
    """
    import pandas as pd

    from livenb._columns import ColumnWindow
    from livenb._window import Window
    from livenb.frames import snapshot_to_frame

    n, size, batch = cfg["n"], cfg["window"], cfg["batch"]
    records = [flat_record(i) for i in range(n)]
    say("ready")
    cpu0 = time.process_time()
    start = time.perf_counter()
    if system == "livenb":
        window = ColumnWindow(Window(size))
        for first in range(0, n, batch):
            window.ingest(TOPIC, first + 1, time.time(), records[first : first + batch])
        frame = snapshot_to_frame(window.snapshot())
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu0
        start = time.perf_counter()
        frame = snapshot_to_frame(window.snapshot())
    else:
        rows: deque[Any] = deque(maxlen=size)
        for first in range(0, n, batch):
            rows.extend(records[first : first + batch])
        frame = pd.DataFrame(list(rows))
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu0
        start = time.perf_counter()
        frame = pd.DataFrame(list(rows))
    view = time.perf_counter() - start
    say({"seconds": seconds, "view": view, "rows": len(frame), "cpu": cpu})


def widgets(system: str, cfg: dict[str, Any]) -> None:
    """A real kernel showing live widgets while ``rate`` records/s arrive (``widget-pump``).

    As ``bench_widgets.run_case`` (its kernel code is reused): the kernel (pinned to core 0,
    every thread) runs a hub and either livenb's pump (table + chart + status panel, each
    sent its front end's ``hello``) or the naive ``ipywidgets.HTML`` set per record; this
    process (core 1) publishes in batches of 500 at ``rate`` for ``seconds`` and counts the
    widgets' comm messages on iopub; the kernel's CPU comes from /proc.
    """
    import queue
    import re

    import jupyter_client

    import livenb
    from benchmarks.bench_widgets import NAIVE, PUMP, cpu_seconds, load

    rate, seconds, timeout = cfg["rate"], cfg["seconds"], cfg["timeout"]
    manager = jupyter_client.KernelManager(kernel_name="python3")
    manager.start_kernel()
    kc = manager.client()
    kc.start_channels()
    try:
        pid = manager.provisioner.process.pid  # type: ignore[union-attr]
        say({"kernel_pid": pid})
        kc.wait_for_ready(timeout=timeout)
        pin_threads(pid, 0)
        msg_id = kc.execute(PUMP if system == "livenb" else NAIVE)
        out = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = kc.get_iopub_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                out += msg["content"]["text"]
            elif kind == "error":
                raise RuntimeError("\n".join(msg["content"]["traceback"]))
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                break
        match = re.search(r"READY (\S+) (\S+) (.+)", out)
        if not match:
            raise RuntimeError(f"the kernel did not start its hub: {out!r}")
        pin_threads(pid, 0)  # the hub's loop thread, started by the code above
        url, token, ids = match.group(1), match.group(2), set(match.group(3).split())
        if system == "livenb":  # the front end's hello, as the JavaScript view sends it
            for comm_id in ids:
                content = {
                    "comm_id": comm_id,
                    "data": {"method": "custom", "content": {"type": "hello"}},
                }
                kc.shell_channel.send(kc.session.msg("comm_msg", content))
        time.sleep(cfg["settle"])
        for _ in range(100_000):  # forget what came before the measurement
            try:
                kc.get_iopub_msg(timeout=0.05)
            except queue.Empty:
                break
        publisher = livenb.connect(url, token=token, timeout=timeout)
        say("ready")
        cpu_before = cpu_seconds(pid)
        cpu0 = time.process_time()
        published, messages, message_bytes, elapsed = load(kc, ids, publisher, rate, seconds)
        kernel_cpu = cpu_seconds(pid) - cpu_before
        cpu = time.process_time() - cpu0
        backlog = publisher.stats()["pending_bytes"]  # published, not yet taken by the hub
        with contextlib.suppress(livenb.LivenbError):  # a swamped kernel may never catch up
            publisher.close(timeout=5)
        say(
            {
                "records": published,
                "records/s": published / elapsed,
                "msgs/s": messages / elapsed,
                "KiB/s": message_bytes / elapsed / 1024,
                "kernel_cpu_pct": 100 * kernel_cpu / elapsed,
                "kernel_cpu": kernel_cpu,
                "cpu": cpu,
                "backlog_KiB": backlog / 1024,
                "seconds": elapsed,
            }
        )
    finally:
        kc.stop_channels()
        manager.shutdown_kernel(now=True)


def pin_threads(pid: int, core: int) -> None:
    """Pin every thread of process ``pid`` to ``core`` (when the machine has two cores)."""
    cores = os.cpu_count() or 1
    if cores < 2 or not hasattr(os, "sched_setaffinity"):
        return
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # the thread ended meanwhile
            os.sched_setaffinity(int(tid), {core % cores})


# --------------------------------------------------------------------------------- main
SUBSCRIBERS = {
    "livenb": livenb_subscribe,
    "websockets": websockets_subscribe,
    "naive": websockets_subscribe,
    "socketio": socketio_subscribe,
}


def preload(role: str, system: str) -> None:
    """Import what the role needs before the clock can start (and before reading stdin)."""
    if system == "livenb" or role in ("ingest", "widgets"):
        import livenb  # noqa: F401
    if system == "socketio":
        import socketio  # noqa: F401
    if system in ("websockets", "naive"):
        import websockets.asyncio.client  # noqa: F401
    if system == "naive" or role in ("ingest", "widgets"):
        import pandas  # noqa: F401


def run(role: str, system: str) -> None:
    preload(role, system)
    if role == "server":
        raise_fd_limit(20_000)
        if system == "livenb":
            livenb_server()
        elif system == "socketio":
            asyncio.run(socketio_server())
        else:
            asyncio.run(websockets_server())
        return
    cfg = hear()
    raise_fd_limit(cfg.get("conns", 1) + 200)
    if role == "subscribe":
        asyncio.run(SUBSCRIBERS[system](cfg))
    elif role == "publish":
        if system == "livenb" and cfg.get("rate"):
            asyncio.run(livenb_publish_paced(cfg))
        elif system == "livenb":
            livenb_publish(cfg)
        elif system == "socketio":
            asyncio.run(socketio_publish(cfg))
        else:
            asyncio.run(websockets_publish(cfg))
    elif role == "ingest":
        ingest(system, cfg)
    elif role == "widgets":
        widgets(system, cfg)
    else:
        raise SystemExit(f"unknown role {role!r}")


def main(argv: list[str]) -> None:
    try:
        run(argv[0], argv[1])
    except BaseException:  # reported on stderr; the orchestrator shows its tail
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    os._exit(0)  # no graceful close of hundreds of connections: the case is over


if __name__ == "__main__":
    main(sys.argv[1:])
