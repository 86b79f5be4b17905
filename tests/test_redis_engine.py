"""Hubs sharing topics through a real redis-server: every record exactly once and in order
on every node, resume on another node, patterns across nodes."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import livenb

from .faults import HubProcess
from .redis_server import RedisServer
from .test_nginx import Nginx

TOKEN = "shared-token-for-redis-nodes-0123456789"


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def nodes(redis_server: RedisServer) -> Iterator[list[HubProcess]]:
    hubs = [HubProcess(token=TOKEN, engine=redis_server.url) for _ in range(2)]
    try:
        yield hubs
    finally:
        for hub in hubs:
            hub.close()


def test_two_nodes_share_an_epoch(nodes: list[HubProcess]) -> None:
    assert nodes[0].epoch == nodes[1].epoch


def test_subscribers_on_both_nodes_get_every_record_once_in_order(
    nodes: list[HubProcess], unit: float
) -> None:
    a, b = nodes
    with (
        livenb.connect(a.url, token=TOKEN) as on_a,
        livenb.connect(b.url, token=TOKEN) as on_b,
        livenb.connect(a.url, token=TOKEN) as publisher,
    ):
        subs = [on_a.subscribe("ticks", window=5000), on_b.subscribe("ticks", window=5000)]
        for i in range(2000):
            publisher.publish("ticks", {"i": i})
        publisher.flush(timeout=4 * unit)
        for sub in subs:
            sub.wait(2000, timeout=4 * unit)
            frame = sub.frame
            assert frame["i"].tolist() == list(range(2000))
            assert frame["seq"].tolist() == list(range(1, 2001))
            assert sub.stats()["duplicates"] == 0 and sub.gaps == []


def test_killing_a_node_behind_nginx_loses_and_repeats_nothing(
    tmp_path: Path, nodes: list[HubProcess], unit: float
) -> None:
    """While records flow through nginx, the node serving the clients is SIGKILLed; they
    reconnect through nginx to the other node and resume there: the publisher's
    unacknowledged frames are stored once (Redis remembers each producer's last frame),
    the subscriber replays what it missed from the shared stream."""
    nginx = Nginx(tmp_path, [hub.port for hub in nodes], failover=True)
    try:
        nginx.wait(4 * unit)
        options = {"token": TOKEN, "cafile": nginx.cafile, "reconnect_max_delay": 0.3}
        with livenb.connect(nginx.url, **options) as subscriber, livenb.connect(nginx.url, **options) as publisher:
            sub = subscriber.subscribe("flow", window=10_000)
            serving = nodes[0]  # nginx sends every client there while it lives
            stop = threading.Event()
            published: list[int] = []

            def publish() -> None:
                i = 0
                while not stop.is_set() and i < 3000:
                    publisher.publish("flow", {"i": i}, timeout=8 * unit)
                    published.append(i)
                    i += 1
                    if i % 10 == 0:  # about 3 s in all: the kill lands mid-stream
                        time.sleep(0.01)

            worker = threading.Thread(target=publish)
            worker.start()
            sub.wait(300, timeout=4 * unit)
            # Both clients are on the first node: kill it.
            serving.kill()
            worker.join(30 * unit)
            assert not worker.is_alive()
            publisher.flush(timeout=8 * unit)
            sub.wait(len(published), timeout=8 * unit)
            frame = sub.frame
            assert frame["i"].tolist() == published  # none lost, none twice, in order
            assert frame["seq"].tolist() == list(range(1, len(published) + 1))
            assert len(published) == 3000
            assert subscriber.stats()["reconnects"] >= 1 and publisher.stats()["reconnects"] >= 1
            assert sub.gaps == []
    finally:
        nginx.close()


def test_a_pattern_on_one_node_finds_topics_made_on_the_other(
    nodes: list[HubProcess], unit: float
) -> None:
    a, b = nodes
    with livenb.connect(b.url, token=TOKEN) as watcher, livenb.connect(a.url, token=TOKEN) as maker:
        sub = watcher.subscribe("fleet.*", window=1000)
        for n in range(5):
            maker.publish(f"fleet.taxi{n}", {"n": n}, ack=True)
        sub.wait(5, timeout=4 * unit)
        frame = sub.frame
        assert sorted(frame["topic"].tolist()) == [f"fleet.taxi{n}" for n in range(5)]


def test_redis_restarted_mid_stream_leaves_no_silent_gap(
    redis_server: RedisServer, unit: float
) -> None:
    """redis-server is killed while records flow and started again on its append-only file:
    the hub reports the outage while it lasts (stats, /healthz), keeps publishes waiting
    (bounded), and its reader resumes where it was: subscribers get every record, once."""
    with livenb.serve(port=0, engine=redis_server.url) as hub, hub.connect() as c:
        sub = c.subscribe("steady", window=10_000)
        for i in range(500):
            c.publish("steady", {"i": i})
        c.flush(timeout=4 * unit)
        sub.wait(500, timeout=4 * unit)
        redis_server.kill()
        for i in range(500, 800):  # accepted by the hub, waiting for Redis
            c.publish("steady", {"i": i})
        deadline = time.monotonic() + 4 * unit
        while hub.stats()["engine"]["connected"]:
            assert time.monotonic() < deadline, "the outage was not noticed"
            time.sleep(0.02)
        engine = hub.stats()["engine"]
        assert engine["outages"] == 1 and engine["last_error"]
        assert hub.aio.healthy()[0] is False
        redis_server.start()
        c.flush(timeout=8 * unit)
        sub.wait(800, timeout=8 * unit)
        assert sub.frame["i"].tolist() == list(range(800))
        assert sub.frame["seq"].tolist() == list(range(1, 801))
        assert sub.gaps == []
        assert hub.stats()["engine"]["connected"] and hub.aio.healthy() == (True, "ok")
        assert hub.stats()["engine"]["reconnects"] >= 1


def test_serve_from_the_command_line_with_an_engine(redis_server: RedisServer, unit: float) -> None:
    import subprocess
    import sys

    server = subprocess.Popen(
        [sys.executable, "-m", "livenb", "serve", "--port", "0", "--engine", redis_server.url,
         "--token", TOKEN],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[-1]
        with livenb.connect(url, token=TOKEN) as c:
            assert c.publish("cli", {"x": 1}, ack=True) == 1
        import redis

        client = redis.Redis.from_url(redis_server.url)
        assert client.xlen("livenb:s:cli") == 1  # stored in Redis, not in the hub's memory
        client.close()
    finally:
        server.terminate()
        server.wait(10)
        for stream in (server.stdout, server.stderr):
            if stream is not None:
                stream.close()


def test_a_reader_that_stops_is_restarted(redis_server: RedisServer, unit: float) -> None:
    """A bug that ends the reader must not leave a deaf node: it is restarted, and records
    keep arriving."""
    with livenb.serve(port=0, engine=redis_server.url) as hub, hub.connect() as c:
        sub = c.subscribe("alive")
        c.publish("alive", {"n": 1}, ack=True)
        sub.wait(1, timeout=unit)
        engine = hub.aio._engine
        assert engine is not None
        original = engine.on_batch
        calls = {"n": 0}

        def broken_once(*args: object) -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("a bug in the reader")
            original(*args)  # type: ignore[arg-type]

        engine.on_batch = broken_once
        c.publish("alive", {"n": 2}, ack=True)
        c.publish("alive", {"n": 3}, ack=True)
        deadline = time.monotonic() + 4 * unit
        while hub.stats()["engine"]["task_restarts"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        sub.wait(3, timeout=4 * unit)
        assert sub.frame["n"].tolist() == [1, 2, 3]  # the batch that failed was read again
        assert hub.aio.healthy()[0] is False  # a task restarted just now: not healthy yet
        deadline = time.monotonic() + 4 * unit
        while hub.aio.healthy() != (True, "ok"):
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_a_redis_that_lost_its_data_is_reported_not_renumbered(unit: float) -> None:
    """Without persistence, a restarted Redis has forgotten the epoch and every seq: the hub
    says so (unhealthy, publishes refused with engine_unavailable) instead of numbering
    records a second time."""
    server = RedisServer(appendonly=False)
    try:
        with livenb.serve(port=0, engine=server.url) as hub, hub.connect() as c:
            assert c.publish("t", {"n": 1}, ack=True) == 1
            server.kill()
            server.start()
            deadline = time.monotonic() + 4 * unit
            while hub.stats()["engine"]["data_lost"] is None:
                assert time.monotonic() < deadline, "the data loss was not noticed"
                time.sleep(0.05)
            assert hub.aio.healthy()[0] is False
            with pytest.raises(livenb.RemoteError, match="engine_unavailable"):
                c.publish("t", {"n": 2}, ack=True, timeout=4 * unit)
    finally:
        server.close()


def test_the_status_panel_shows_the_engine(redis_server: RedisServer, unit: float) -> None:
    from livenb._views import StatusView

    with livenb.serve(port=0, engine=redis_server.url) as hub:
        view = StatusView(hub.stats, "hub")
        fields = view.fields()
        assert fields["engine"] == "connected" and fields["engine_waiting"] == 0
        redis_server.kill()
        deadline = time.monotonic() + 4 * unit
        while view.fields()["engine"] == "connected":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert view.fields()["engine"].startswith("down")
        redis_server.start()


def test_a_batch_sent_again_after_a_lost_reply_is_stored_once(
    redis_server: RedisServer, unit: float
) -> None:
    """The writer resends a batch whose reply it never got (the connection broke after Redis
    ran it): every frame is recognised by its producer id and number, stored once, and a
    frame Redis refuses stops the batch without leaving a trace."""
    import asyncio

    from livenb._redis import RedisEngine
    from livenb._state import Forward

    async def run() -> None:
        stored: list[tuple[int, bool]] = []
        refused: list[str] = []
        engine = RedisEngine(
            redis_server.url,
            on_batch=lambda *a: None,
            on_stored=lambda f, first, n, dup: stored.append((first, dup)),
            on_refused=lambda f, code, msg: refused.append(msg),
            maxlen_for=lambda topic: 1000,
        )
        await engine.start()
        # This test plays the writer's part itself: the engine's own writer would store the
        # same pending frames concurrently (and find them gone when the test clears them).
        writer = next(t for t in engine._tasks if t.get_name() == "livenb-redis-writer")
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        try:
            frames = [Forward(1, "t", [i], i + 1, "client-pid", b"[%d]" % i) for i in range(3)]
            frames.append(Forward(1, "t", [99], None, None, b"[99]"))  # no pid: the node's own
            for f in frames:
                engine.submit(f)
            batch = list(engine._pending)
            first = await engine._store(batch)
            again = await engine._store(batch)  # as after a lost reply
            assert [k for k, _ in first] == ["ok"] * 4
            assert [k for k, _ in again] == ["dup"] * 4
            assert await engine._redis.xlen("livenb:s:t") == 4
            assert await engine._redis.hget("livenb:seqs", "t") == "4"
            # A frame Redis refuses (here: its stream key holds another type) stops the
            # batch, uses no seq, and is refused to its publisher.
            await engine._redis.set("livenb:s:bad", "not a stream")
            engine._pending.clear()
            engine._pending_bytes = 0
            for f in (
                Forward(1, "bad", [1], 10, "client-pid", b"[1]"),
                Forward(1, "t", [5], 11, "client-pid", b"[5]"),
            ):
                engine.submit(f)
            results = await engine._store(list(engine._pending))
            assert results[0][0] == "err" and len(results) == 1
            assert await engine._redis.hget("livenb:seqs", "bad") is None
        finally:
            await engine.close()

    asyncio.run(run())


def test_health_recovers_after_an_outage_with_nothing_to_do(
    redis_server: RedisServer, unit: float
) -> None:
    with livenb.serve(port=0, engine=redis_server.url) as hub:  # no subscriber, no publisher
        redis_server.kill()
        deadline = time.monotonic() + 4 * unit
        while hub.aio.healthy()[0]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        redis_server.start()
        deadline = time.monotonic() + 4 * unit
        while hub.aio.healthy() != (True, "ok"):
            assert time.monotonic() < deadline, hub.aio.healthy()
            time.sleep(0.05)


def test_publishes_waiting_for_redis_are_bounded_in_frames_and_bytes() -> None:
    """Beyond max_pending frames or max_pending_bytes waiting for Redis, a publish is refused
    at once with engine_unavailable (and counted), never queued without bound."""
    from livenb._redis import RedisEngine
    from livenb._state import Forward

    refused: list[tuple[int, str]] = []
    engine = RedisEngine(
        "redis://127.0.0.1:1/0",  # never started: nothing is ever stored
        on_batch=lambda *a: None,
        on_stored=lambda *a: None,
        on_refused=lambda f, code, msg: refused.append((f.request_id, code)),  # type: ignore[misc]
        maxlen_for=lambda topic: 10,
        max_pending=3,
        max_pending_bytes=100,
    )
    for i in range(5):
        engine.submit(Forward(1, "t", [i], i + 1, "pid", b"[%d]" % i))
    assert [rid for rid, _ in refused] == [4, 5]  # the fourth and fifth: over 3 frames
    engine.submit(Forward(1, "u", ["x" * 200], 6, "pid", b'["' + b"x" * 200 + b'"]'))
    assert refused[-1] == (6, "engine_unavailable")  # over 100 bytes
    assert engine.stats()["pending_frames"] == 3 and engine.stats()["refused_frames"] == 3


def test_a_node_reads_a_bounded_number_of_topics(redis_server: RedisServer, unit: float) -> None:
    with livenb.serve(port=0, engine=redis_server.url) as hub, hub.connect() as c:
        assert hub.aio._engine is not None
        hub.aio._engine.max_tracked = 2
        c.subscribe("one")
        c.subscribe("two")
        with pytest.raises(livenb.RemoteError, match="engine_unavailable"):
            c.subscribe("three", timeout=2 * unit)
        assert hub.stats()["engine"]["tracked_topics"] == 2
