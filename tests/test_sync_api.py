"""The blocking twins on livenb's loop thread, as a script or a notebook cell uses them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

import livenb
from livenb import Hub

from .helpers import wait_until


def run_script(code: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_hundred_thousand_records_exactly_once_in_order(hub: Hub, unit: float) -> None:
    n = 100_000
    with hub.connect() as pub, hub.connect() as watcher:
        sub = watcher.subscribe("ticks", window=n)
        for i in range(n):
            pub.publish("ticks", {"i": i, "px": 100.0 + i % 7})
        sub.wait(n, timeout=12 * unit)
        frame = sub.frame
    assert len(frame) == n
    assert frame["seq"].tolist() == list(range(1, n + 1))
    assert frame["i"].tolist() == list(range(n))
    assert hub.stats()["records_in"] == n


def test_publish_many_and_ack(hub: Hub, unit: float) -> None:
    with hub.connect() as c:
        sub = c.subscribe("m")
        assert c.publish_many("m", [{"a": 1}, {"a": 2}], ack=True) == 2
        assert c.publish("m", {"a": 3}, ack=True) == 3
        assert c.publish_many("m", []) is None
        sub.wait(3, timeout=unit)
        assert sub.frame["a"].tolist() == [1, 2, 3]
        assert sub.received == 3


def test_hub_connect_equals_module_connect(hub: Hub) -> None:
    with livenb.connect(hub.url, token=hub.token) as c:
        assert c.connected
        assert c.publish("x", 1, ack=True) == 1


def test_time_window_frame(hub: Hub, unit: float) -> None:
    with hub.connect() as c:
        sub = c.subscribe("tw", window="5min")
        c.publish_many("tw", [{"v": i} for i in range(10)])
        sub.wait(10, timeout=unit)
        assert len(sub.frame) == 10
        assert sub.frame.attrs["livenb.topic"] == "tw"


def test_records_iteration(hub: Hub, unit: float) -> None:
    with hub.connect() as c:
        sub = c.subscribe("it")
        c.publish_many("it", list(range(3)))
        got = [r.data for r in sub.records(timeout=unit)][:3]
        assert got == [0, 1, 2]


def test_wait_times_out_with_clear_error(hub: Hub) -> None:
    with hub.connect() as c:
        sub = c.subscribe("quiet")
        with pytest.raises(livenb.LivenbTimeoutError, match="did not finish within"):
            sub.wait(1, timeout=0.05)
        # The subscription is still usable after a timed-out wait.
        c.publish("quiet", 1)
        assert sub.wait(1, timeout=5) == 1


def test_blocking_call_from_loop_thread_raises(hub: Hub, unit: float) -> None:
    errors: list[BaseException] = []
    with hub.connect() as c:

        def callback(record: livenb.Record) -> None:
            try:
                c.publish("echo", record.data, ack=True)  # would wait on the loop itself
            except BaseException as exc:
                errors.append(exc)
            try:
                c.flush()
            except BaseException as exc:
                errors.append(exc)

        sub = c.subscribe("in", on_record=callback)
        c.publish("in", 1)
        sub.wait(1, timeout=unit)
    assert len(errors) == 2 and all(isinstance(e, livenb.LoopThreadError) for e in errors)
    assert "async" in str(errors[0])


def test_a_callback_may_publish_without_waiting(hub: Hub, unit: float) -> None:
    """A bridge: records of one topic republished to another from the callback."""
    with hub.connect() as c:
        out = c.subscribe("out")

        def bridge(record: livenb.Record) -> None:
            c.publish("out", {"doubled": record.data * 2})

        c.subscribe("in", on_record=bridge)
        c.publish_many("in", list(range(100)))
        out.wait(100, timeout=unit)
        assert out.frame["doubled"].tolist() == [i * 2 for i in range(100)]


def test_ctrl_c_cancels_a_blocking_call(hub: Hub, unit: float) -> None:
    if threading.current_thread() is not threading.main_thread():  # pragma: no cover
        pytest.skip("signals reach only the main thread")
    with hub.connect() as c:
        sub = c.subscribe("never")
        timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                sub.wait(10**9, timeout=10 * unit)
        finally:
            timer.cancel()
        # The loop thread is unharmed.
        assert c.publish("never", 1, ack=True, timeout=unit) == 1


def test_hub_keeps_serving_while_main_thread_blocks(hub: Hub, unit: float) -> None:
    # subprocess.run blocks this thread; the hub answers from the loop thread meanwhile.
    result = run_script(
        f"""
        import livenb
        with livenb.connect({hub.url!r}, token={hub.token!r}) as c:
            print(c.publish("from-child", {{"x": 1}}, ack=True))
        """,
        timeout=12 * unit,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


def test_publish_from_several_threads(hub: Hub, unit: float) -> None:
    with hub.connect() as c, hub.connect() as w:
        sub = w.subscribe("mt", window=4000)

        def work(k: int) -> None:
            for i in range(1000):
                c.publish("mt", {"k": k, "i": i})

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10 * unit)
        sub.wait(4000, timeout=10 * unit)
        f = sub.frame
        assert f["seq"].tolist() == list(range(1, 4001))
        for k in range(4):  # each thread's records stay in its own order
            assert f[f["k"] == k]["i"].tolist() == list(range(1000))


def test_publisher_blocks_when_pending_is_full_then_times_out(unit: float) -> None:
    with livenb.serve(port=0) as h, h.connect(max_pending=1000, batch_delay=5) as c:
        # Stall the sender by holding the loop thread, so nothing drains.
        gate = threading.Event()
        livenb._loop.loop_thread().call_soon(gate.wait, 10 * unit)
        try:
            with pytest.raises(livenb.LivenbTimeoutError, match="waited"):
                for _ in range(100):
                    c.publish("p", {"blob": "x" * 100}, timeout=0.1)
        finally:
            gate.set()
        c.flush(timeout=unit)


def test_serve_on_busy_port_is_clear(hub: Hub) -> None:
    with pytest.raises(livenb.LivenbError, match="cannot listen"):
        livenb.serve(port=hub.port)


def test_closed_hub_and_client_are_idempotent(unit: float) -> None:
    h = livenb.serve(port=0)
    c = h.connect()
    c.close()
    c.close()
    h.close()
    h.close()
    assert not h.running
    with pytest.raises(livenb.ConnectionClosedError):
        c.publish("x", 1)


def test_interpreter_exit_closes_everything_cleanly(unit: float) -> None:
    result = run_script(
        """
        import livenb
        hub = livenb.serve(port=0)
        client = hub.connect()
        sub = client.subscribe("t")
        for i in range(1000):
            client.publish("t", {"i": i})
        print("published")
        # no close(): interpreter exit must flush and close everything
        """,
        timeout=12 * unit,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "published"
    assert result.stderr == ""


def test_exit_flushes_pending_publishes_to_another_process(hub: Hub, unit: float) -> None:
    with hub.connect() as w:
        sub = w.subscribe("exit")
        result = run_script(
            f"""
            import livenb
            c = livenb.connect({hub.url!r}, token={hub.token!r}, batch_delay=60)
            for i in range(500):
                c.publish("exit", i)
            """,
            timeout=12 * unit,
        )
        assert result.returncode == 0, result.stderr
        sub.wait(500, timeout=unit)
        assert sub.frame["value"].tolist() == list(range(500))


def test_works_after_nest_asyncio_apply(unit: float) -> None:
    result = run_script(
        """
        import asyncio, nest_asyncio
        nest_asyncio.apply()
        import livenb
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        with livenb.serve(port=0) as hub, hub.connect() as c:
            sub = c.subscribe("n")
            c.publish_many("n", [{"v": i} for i in range(100)])
            sub.wait(100, timeout=10)
            print(len(sub.frame))
        async def main():
            async with livenb.AsyncHub(port=0) as h, livenb.AsyncClient(h.url, h.token) as ac:
                return await ac.publish("n", 1, ack=True)
        print(loop.run_until_complete(main()))
        """,
        timeout=12 * unit,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["100", "1"]


def test_subscription_closed_by_context_manager(hub: Hub, unit: float) -> None:
    with hub.connect() as c:
        with c.subscribe("cm") as sub:
            c.publish("cm", 1)
            sub.wait(1, timeout=unit)
        wait_until(lambda: hub.stats()["subscriptions"] == 0, unit, "unsubscribe")
        assert "closed" in repr(sub)
