"""AsyncHub: the WebSocket hub on asyncio (websockets), driving the pure :class:`HubCore`."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import Mapping
from http import HTTPStatus
from types import TracebackType
from typing import Any, Final, Self

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from . import _protocol as p
from ._errors import LivenbError
from ._history import DEFAULT_HISTORY, DEFAULT_HISTORY_TOTAL_BYTES, HistoryLimits
from ._keepalive import DEFAULT_PING_INTERVAL, DEFAULT_PING_TIMEOUT, Liveness, keepalive
from ._state import DEFAULT_MAX_SUBSCRIPTIONS, DEFAULT_MAX_TOPICS, Close, HubCore, Send
from ._topics import check_pattern

log = logging.getLogger("livenb.hub")

DEFAULT_PORT: Final = 8765
DEFAULT_MAX_SIZE: Final = 1 << 20  # largest frame a client may send (close 1009 above it)
DEFAULT_QUEUE_FRAMES: Final = 10_000  # per-connection outgoing queue bound, in frames ...
DEFAULT_QUEUE_BYTES: Final = 32 << 20  # ... and in bytes
DEFAULT_SEND_TIMEOUT: Final = 10.0
DEFAULT_AUTH_TIMEOUT: Final = 10.0
SLOW_CONSUMER_POLICY: Final = "disconnect"


def _format_url(scheme: str, host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


class _Peer:
    """One connection's outgoing side: a bounded queue drained by its own sender task.

    Overflow policy ``disconnect``: a connection whose queue would exceed ``max_frames`` or
    ``max_bytes`` is closed with code 4008 (slow consumer); the hub counts it in ``drops``.
    """

    __slots__ = ("bytes", "closing", "conn", "max_bytes", "max_frames", "queue", "wake", "ws")

    def __init__(self, conn: int, ws: ServerConnection, max_frames: int, max_bytes: int) -> None:
        self.conn = conn
        self.ws = ws
        self.queue: deque[bytes] = deque()
        self.bytes = 0
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.wake = asyncio.Event()
        self.closing = False

    def offer(self, frame: bytes) -> bool:
        """Queue ``frame``; False when the bound would be exceeded (nothing is queued then)."""
        if len(self.queue) >= self.max_frames or self.bytes + len(frame) > self.max_bytes:
            return False
        self.queue.append(frame)
        self.bytes += len(frame)
        self.wake.set()
        return True

    async def run_sender(self, send_timeout: float) -> None:
        ws = self.ws
        queue = self.queue
        while True:
            await self.wake.wait()
            self.wake.clear()
            while queue:
                frame = queue.popleft()
                self.bytes -= len(frame)
                async with asyncio.timeout(send_timeout):
                    await ws.send(frame, text=True)


class AsyncHub:
    """A livenb hub on the running asyncio loop.

    ``await hub.start()`` (or ``async with``) binds ``host:port`` (``port=0`` picks a free port,
    read it back from :attr:`port`). By default a random access token is required
    (:attr:`token`); ``auth=False`` turns that off. Every outgoing queue is bounded; see
    :meth:`stats` for the counters.
    """

    is_hub: Final = True  # closed after clients at interpreter exit

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        token: str | None = None,
        auth: bool = True,
        max_size: int = DEFAULT_MAX_SIZE,
        queue_frames: int = DEFAULT_QUEUE_FRAMES,
        queue_bytes: int = DEFAULT_QUEUE_BYTES,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        auth_timeout: float = DEFAULT_AUTH_TIMEOUT,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
        history: HistoryLimits = DEFAULT_HISTORY,
        history_rules: Mapping[str, HistoryLimits] | None = None,
        history_total_bytes: int = DEFAULT_HISTORY_TOTAL_BYTES,
        max_topics: int = DEFAULT_MAX_TOPICS,
        max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS,
    ) -> None:
        if not auth and token is not None:
            raise ValueError("give a token or auth=False, not both")
        self.host = host
        self._requested_port = port
        self.token: str | None = (token or secrets.token_urlsafe(24)) if auth else None
        self.max_size = max_size
        self.queue_frames = queue_frames
        self.queue_bytes = queue_bytes
        self.send_timeout = send_timeout
        self.auth_timeout = auth_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._core = HubCore(
            token=self.token,
            max_topics=max_topics,
            max_subscriptions=max_subscriptions,
            history=history,
            history_rules=[
                (check_pattern(pattern), limits)
                for pattern, limits in (history_rules or {}).items()
            ],
            history_total_bytes=history_total_bytes,
        )
        self._server: Server | None = None
        self._peers: dict[int, _Peer] = {}
        self._ids = itertools.count(1)
        self._port: int | None = None
        self._started_at = 0.0
        self._slow_consumer_drops = 0
        self._dead_peers = 0
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> Self:
        """Bind and start serving; raise :class:`LivenbError` when the address is unusable."""
        if self._server is not None:
            return self
        if self._closed:
            raise LivenbError("this hub was closed; create a new one")
        try:
            self._server = await serve(
                self._handle,
                self.host,
                self._requested_port,
                compression=None,
                max_size=self.max_size,
                ping_interval=None,  # livenb's own keepalive (see _keepalive.py)
                process_request=self._process_request,
                server_header=None,
                logger=logging.getLogger("livenb.hub.websockets"),
            )
        except OSError as exc:
            raise LivenbError(
                f"cannot listen on {self.host}:{self._requested_port} ({exc.strerror or exc}); "
                "pick another port, or port=0 for a free one"
            ) from exc
        self._port = self._server.sockets[0].getsockname()[1] if self._server.sockets else 0
        self._started_at = time.time()
        log.info("livenb hub listening on %s (auth %s)", self.url, "on" if self.token else "OFF")
        return self

    async def close(self) -> None:
        """Stop accepting, close every connection with 1001 (going away); idempotent."""
        self._closed = True
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await server.wait_closed()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ facts
    @property
    def port(self) -> int:
        """The bound port (valid after start)."""
        if self._port is None:
            raise LivenbError("the hub is not started yet; await hub.start() first")
        return self._port

    @property
    def url(self) -> str:
        """The hub's ``ws://host:port`` URL (valid after start)."""
        return _format_url("ws", self.host, self.port)

    @property
    def epoch(self) -> str:
        return self._core.epoch

    @property
    def running(self) -> bool:
        return self._server is not None

    def stats(self) -> dict[str, Any]:
        """A snapshot of counters: connections, topics, frames and records in and out, drops."""
        c = self._core.counters
        return {
            "url": self.url if self._port is not None else None,
            "running": self.running,
            "epoch": self._core.epoch,
            "uptime": time.time() - self._started_at if self._started_at else 0.0,
            "auth": self.token is not None,
            "connections": self._core.connections,
            "topics": self._core.topics,
            "subscriptions": self._core.subscriptions,
            "frames_in": c.frames_in,
            "records_in": c.records_in,
            "frames_out": c.frames_out,
            "records_out": c.records_out,
            "errors": dict(c.errors),
            "drops": self._slow_consumer_drops,
            "dead_peers": self._dead_peers,
            "history_bytes": self._core.history_bytes,
            "replayed_frames": c.replayed,
            "gaps_reported": c.gaps,
            "duplicates_dropped": self._core.producers.duplicates,
            "slow_consumer_policy": SLOW_CONSUMER_POLICY,
            # list() copies in one step, so stats() is safe to call from another thread
            "queued_frames": sum(len(peer.queue) for peer in list(self._peers.values())),
            "queued_bytes": sum(peer.bytes for peer in list(self._peers.values())),
        }

    def __repr__(self) -> str:
        where = self.url if self._port is not None else f"{self.host}:{self._requested_port}"
        auth = "token=***" if self.token else "auth=OFF (anyone who can connect can read and write)"
        state = "running" if self.running else "stopped"
        return f"<AsyncHub {where} {auth} {state}>"

    # ------------------------------------------------------------------ connections
    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        if self.token is None:
            return None  # auth is off: an Authorization header (e.g. from a proxy) is ignored
        headers = request.headers.get_all("Authorization")
        if not headers:
            return None  # may authenticate with {"op":"auth"} as its first message
        scheme, _, presented = headers[0].partition(" ")
        if (
            len(headers) > 1
            or scheme.lower() != "bearer"
            or not self._core.check_token(presented.strip())
        ):
            return ws.respond(HTTPStatus.UNAUTHORIZED, "livenb: missing or wrong access token\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        conn = next(self._ids)
        # _process_request already refused a wrong header; a present one is the right token.
        has_header = ws.request is not None and "Authorization" in ws.request.headers
        core = self._core
        core.open(conn, authenticated=has_header)
        peer = _Peer(conn, ws, self.queue_frames, self.queue_bytes)
        self._peers[conn] = peer
        sender = asyncio.create_task(self._run_sender(peer), name=f"livenb-hub-send-{conn}")
        liveness = Liveness()
        heartbeat = None
        if self.ping_interval is not None and self.ping_timeout is not None:
            heartbeat = asyncio.create_task(
                keepalive(ws, liveness, self.ping_interval, self.ping_timeout, self._dead_peer),
                name=f"livenb-hub-keepalive-{conn}",
            )
        try:
            if not has_header and self.token is not None:
                try:
                    async with asyncio.timeout(self.auth_timeout):
                        await self._receive(conn, await ws.recv())
                except TimeoutError:
                    await ws.close(p.CLOSE_UNAUTHORIZED, "no auth message in time")
                    return
            async for frame in ws:
                liveness.heard()
                await self._receive(conn, frame)
        except ConnectionClosed:
            pass
        finally:
            core.close(conn)
            del self._peers[conn]
            for task in (sender, heartbeat):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _receive(self, conn: int, frame: str | bytes) -> None:
        if type(frame) is str:
            self._core.receive(conn, frame, time.time())
        else:
            self._core.receive_binary(conn)
        for action in self._core.drain():
            if type(action) is Send:
                peers = self._peers
                frame_out = action.frame
                for target in action.targets:
                    peer = peers.get(target)
                    if peer is not None and not peer.closing and not peer.offer(frame_out):
                        self._slow_consumer(peer)
            elif type(action) is Close:
                peer = self._peers.get(action.conn)
                if peer is not None:
                    await self._close_peer(peer, action.code, action.reason)

    def _dead_peer(self) -> None:
        self._dead_peers += 1
        log.warning("livenb hub: a peer stopped answering pings; connection aborted")

    def _slow_consumer(self, peer: _Peer) -> None:
        self._slow_consumer_drops += 1
        peer.closing = True
        dropped = len(peer.queue)
        peer.queue.clear()
        peer.bytes = 0
        log.warning(
            "livenb hub: connection %d could not keep up (%d frames queued); closing it (%d)",
            peer.conn,
            dropped,
            p.CLOSE_SLOW_CONSUMER,
        )
        task = asyncio.create_task(peer.ws.close(p.CLOSE_SLOW_CONSUMER, "slow consumer"))
        task.add_done_callback(_ignore_result)

    async def _close_peer(self, peer: _Peer, code: int, reason: str) -> None:
        peer.closing = True
        await peer.ws.close(code, reason)

    async def _run_sender(self, peer: _Peer) -> None:
        try:
            await peer.run_sender(self.send_timeout)
        except TimeoutError:
            log.warning("livenb hub: send to connection %d timed out; closing it", peer.conn)
            self._slow_consumer(peer)
        except ConnectionClosed:
            pass


def _ignore_result(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()
