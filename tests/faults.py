"""Fault-injection kit for tests: a TCP proxy that misbehaves on demand, and a hub process
that can be frozen (SIGSTOP) or killed (SIGKILL).

Everything binds 127.0.0.1 on free ports; every loop is bounded by the test's timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field

UP = "up"  # client -> server
DOWN = "down"  # server -> client


@dataclass
class Faults:
    """What the proxy does to the bytes it forwards; change the fields at any time."""

    delay: float = 0.0  # seconds added before each chunk is forwarded
    rate: float | None = None  # bytes per second, per direction (None: unlimited)
    stall: set[str] = field(default_factory=set)  # directions no longer read ("stop reading")
    blackhole: set[str] = field(default_factory=set)  # directions whose bytes vanish
    truncate: set[str] = field(default_factory=set)  # next chunk: forward half, then cut


class _Link:
    def __init__(
        self,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.client = client
        self.server = server
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        for _, writer in (self.client, self.server):
            transport = writer.transport
            if not transport.is_closing():
                transport.abort()
        for task in self.tasks:
            task.cancel()


class FaultProxy:
    """A TCP proxy from 127.0.0.1:``port`` to ``target`` (host, port) with switchable faults.

    ``cut()`` aborts every proxied connection (both sides see a reset); ``target`` may be
    changed to point new connections at another server (a restarted hub on a new port).
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.faults = Faults()
        self.links: list[_Link] = []
        self.accepted = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def cut(self) -> int:
        """Abort every proxied connection now; return how many were cut."""
        links, self.links = self.links, []
        for link in links:
            link.abort()
        self.cuts += len(links)
        return len(links)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            upstream = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        link = _Link((reader, writer), upstream)
        self.links.append(link)
        link.tasks = [
            asyncio.create_task(self._pump(link, reader, upstream[1], UP)),
            asyncio.create_task(self._pump(link, upstream[0], writer, DOWN)),
        ]

    async def _pump(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, way: str
    ) -> None:
        faults = self.faults
        try:
            while True:
                while way in faults.stall:  # noqa: ASYNC110 - a plain set the test flips
                    await asyncio.sleep(0.01)
                chunk = await reader.read(65536)
                if not chunk:
                    break
                if faults.delay:
                    await asyncio.sleep(faults.delay)
                if faults.rate:
                    await asyncio.sleep(len(chunk) / faults.rate)
                if way in faults.blackhole:
                    continue
                if way in faults.truncate:
                    faults.truncate.discard(way)
                    writer.write(chunk[: max(1, len(chunk) // 2)])
                    with contextlib.suppress(ConnectionError):
                        await writer.drain()
                    link.abort()
                    return
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            link.abort()
            if link in self.links:
                self.links.remove(link)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


HUB_SCRIPT = textwrap.dedent(
    """
    import sys, signal, threading, json, logging
    import livenb
    # Everything livenb logs, DEBUG traffic included, goes to stderr: HubProcess.close()
    # checks that no token is in it.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    logging.getLogger("livenb").addHandler(handler)
    logging.getLogger("livenb").setLevel(logging.DEBUG)
    options = json.loads(sys.argv[1])
    hub = livenb.serve(port=0, **options)
    print(json.dumps({"url": hub.url, "port": hub.port, "token": hub.token, "epoch": hub.aio.epoch}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    stop.wait()
    hub.close()
    """
)


class HubProcess:
    """A hub in a child process (``python -c``), for SIGSTOP / SIGKILL tests."""

    def __init__(self, **options: object) -> None:
        import json

        self.options = options
        # A file, not a pipe: the DEBUG log of a busy hub would fill a pipe and stall it.
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HUB_SCRIPT, json.dumps(options)],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"hub process failed: {self.read_log()}")
        info = json.loads(line)
        self.url: str = info["url"]
        self.port: int = info["port"]
        self.token: str | None = info["token"]
        self.epoch: str = info["epoch"]

    def stop(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def cont(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def close(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.cont()
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        log = self.read_log()
        self.log.close()
        if self.token:
            assert self.token not in log, "the hub process logged its access token"
        assert "livenb.hub" in log, "the hub process's log is missing"  # so the check means something

    def read_log(self) -> str:
        """Everything the hub process logged so far."""
        self.log.seek(0)
        return self.log.read()


def wait_for(predicate: object, limit: float) -> float:
    """Block until ``predicate()`` is true; return the seconds it took (AssertionError after
    ``limit``)."""
    start = time.monotonic()
    while not predicate():  # type: ignore[operator]
        if time.monotonic() - start > limit:
            raise AssertionError(f"condition not met within {limit} s")
        time.sleep(0.01)
    return time.monotonic() - start
