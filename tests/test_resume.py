"""No silent loss across faults: cut connections, lost acks, killed hubs.

Each test is bounded in time and runs on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import os
import random
import time

import pytest

from livenb import AsyncClient, AsyncHub, Record
from livenb import _protocol as p
from livenb._state import GAP_EPOCH_CHANGED

from .faults import DOWN, FaultProxy, HubProcess, free_port
from .helpers import until

SOAK_SECONDS = float(os.environ.get("LIVENB_SOAK_SECONDS", "30"))


async def test_resume_replays_what_a_cut_connection_missed(unit: float) -> None:
    async with AsyncHub(port=0) as hub, FaultProxy(("127.0.0.1", hub.port)) as proxy:
        sub_client = AsyncClient(proxy.url, hub.token, reconnect_delay=0.01, reconnect_max_delay=0.05)
        async with sub_client, AsyncClient(hub.url, hub.token) as pub:
            sub = sub_client.subscribe("t", window=1000)
            await sub.wait_ready()
            await pub.publish_many("t", list(range(10)), ack=True)
            await asyncio.wait_for(sub.wait(10), unit)
            proxy.cut()
            await pub.publish_many("t", list(range(10, 30)), ack=True)  # while it is away
            await asyncio.wait_for(sub.wait(30), 2 * unit)
            assert sub.frame["value"].tolist() == list(range(30))
            assert sub.frame["seq"].tolist() == list(range(1, 31))
            assert sub.resumes == 1 and sub.recovered is True and sub.gap_count == 0
            assert sub_client.reconnects == 1


async def test_resume_beyond_history_reports_a_gap(unit: float) -> None:
    from livenb._history import HistoryLimits

    async with AsyncHub(port=0, history=HistoryLimits(records=5)) as hub, FaultProxy(
        ("127.0.0.1", hub.port)
    ) as proxy:
        gaps: list[p.Gap] = []
        async with AsyncClient(
            proxy.url, hub.token, reconnect_delay=0.01, reconnect_max_delay=0.05
        ) as c, AsyncClient(hub.url, hub.token) as pub:
            sub = c.subscribe("t")
            sub.on_gap(gaps.append)
            await sub.wait_ready()
            await pub.publish("t", 0, ack=True)
            await asyncio.wait_for(sub.wait(1), unit)
            hub_address = proxy.target
            proxy.target = ("127.0.0.1", free_port())  # nothing listens: reconnects fail
            proxy.cut()
            for i in range(1, 21):
                await pub.publish("t", i, ack=True)
            proxy.target = hub_address
            await asyncio.wait_for(sub.wait(6), 2 * unit)
            await until(lambda: sub.resumes == 1, unit, "the resume")
            assert sub.recovered is False
            assert [(g.first, g.last, g.reason) for g in gaps] == [(2, 16, "history_exceeded")]
            assert sub.frame["seq"].tolist() == [1, 17, 18, 19, 20, 21]
            assert sub.frame.attrs["livenb.gaps"][0]["first"] == 2
            assert sub.missed == 15


async def test_lost_ack_retry_is_stored_exactly_once(unit: float) -> None:
    async with (
        AsyncHub(port=0) as hub,
        FaultProxy(("127.0.0.1", hub.port)) as proxy,
        AsyncClient(hub.url, hub.token) as watcher,
        AsyncClient(proxy.url, hub.token, reconnect_delay=0.01) as pub,
    ):
        sub = watcher.subscribe("once")
        await sub.wait_ready()
        proxy.faults.blackhole.add(DOWN)  # the hub's acks vanish
        publishing = asyncio.create_task(pub.publish("once", {"n": 1}, ack=True))
        await asyncio.wait_for(sub.wait(1), unit)  # stored by the hub ...
        assert not publishing.done()  # ... but the publisher never heard
        proxy.faults.blackhole.clear()
        proxy.cut()  # the publisher reconnects and sends the frame again
        assert await asyncio.wait_for(publishing, 2 * unit) == 1
        assert pub.frames_resent >= 1
        await pub.publish("once", {"n": 2}, ack=True)
        await asyncio.wait_for(sub.wait(2), unit)
        assert sub.frame["n"].tolist() == [1, 2]  # the retry was not stored again
        assert hub.stats()["duplicates_dropped"] == 1
        assert hub.stats()["records_in"] == 2


async def test_cuts_every_few_seconds_lose_nothing(unit: float) -> None:
    """A proxy cuts the subscriber every 2-5 s while ~5,000 records/s are published."""
    rng = random.Random(7)
    rate, tick = 5000, 0.02
    per_tick = int(rate * tick)
    async with AsyncHub(port=0) as hub, FaultProxy(("127.0.0.1", hub.port)) as proxy:
        total_expected = int(SOAK_SECONDS * rate) + per_tick
        sub_client = AsyncClient(proxy.url, hub.token, reconnect_delay=0.02, reconnect_max_delay=0.2)
        async with sub_client, AsyncClient(hub.url, hub.token) as pub:
            sub = sub_client.subscribe("soak", window=total_expected)
            await sub.wait_ready()
            start = time.monotonic()
            next_cut = start + rng.uniform(2, 5)
            sent = 0
            cuts = 0
            while time.monotonic() - start < SOAK_SECONDS:
                await pub.publish_many("soak", [{"i": sent + k} for k in range(per_tick)])
                sent += per_tick
                if time.monotonic() >= next_cut:
                    cuts += proxy.cut()
                    next_cut = time.monotonic() + rng.uniform(2, 5)
                await asyncio.sleep(tick)
            await pub.flush()
            await asyncio.wait_for(sub.wait(sent), 4 * unit)
            frame = sub.frame
            assert cuts >= int(SOAK_SECONDS / 5)
            assert len(frame) == sent
            assert frame["seq"].tolist() == list(range(1, sent + 1))  # each once, in order
            assert frame["i"].tolist() == list(range(sent))
            assert sub.resumes == sub_client.reconnects >= cuts
            assert sub.gap_count == 0 and sub.recovered is True  # every resume recovered
            print(f"\nsoak: {sent} records, {cuts} cuts, {sub.duplicates} duplicate records skipped")


@pytest.mark.timeout(180)
async def test_killed_memory_hub_restarts_leave_no_silent_gap(unit: float) -> None:
    """A memory-only hub is SIGKILLed and restarted 10 times under a steady publisher:
    every restart is reported as an epoch change, and every missing seq lies in a gap."""
    token = "kill-test-token"
    hub = HubProcess(token=token)
    epochs = [hub.epoch]
    received: dict[str, list[int]] = {}
    gaps: list[tuple[str | None, p.Gap]] = []
    async with FaultProxy(("127.0.0.1", hub.port)) as proxy:
        sub_client = AsyncClient(proxy.url, token, reconnect_delay=0.02, reconnect_max_delay=0.2)
        pub = AsyncClient(proxy.url, token, reconnect_delay=0.02, reconnect_max_delay=0.2)
        try:
            await sub_client.connect()
            await pub.connect()

            def on_record(record: Record) -> None:
                received.setdefault(sub.epoch or "", []).append(record.seq)

            sub = sub_client.subscribe("k", window=None, on_record=on_record)
            sub.on_gap(lambda gap: gaps.append((sub.epoch, gap)))
            await sub.wait_ready()

            async def publish_steadily() -> None:
                i = 0
                while True:
                    await pub.publish_many("k", [{"i": i + k} for k in range(20)])
                    i += 20
                    await asyncio.sleep(0.01)

            publisher = asyncio.create_task(publish_steadily())
            try:
                for _ in range(10):
                    current = epochs[-1]
                    await until(lambda e=current: len(received.get(e, ())) >= 50, 4 * unit, "records")
                    await asyncio.sleep(random.uniform(0, 0.3))  # a random point mid-stream
                    hub.kill()
                    hub.close()
                    hub = HubProcess(token=token)
                    epochs.append(hub.epoch)
                    proxy.target = ("127.0.0.1", hub.port)
                    proxy.cut()
                await until(lambda: len(received.get(epochs[-1], ())) >= 50, 4 * unit, "records")
            finally:
                publisher.cancel()
        finally:
            await sub_client.close()
            await pub.close()
            hub.close()
    epoch_changes = [g for _, g in gaps if g.reason == GAP_EPOCH_CHANGED]
    assert len(epoch_changes) == 10  # every restart detected
    for epoch in epochs:
        seqs = received.get(epoch, [])
        covered = set(seqs)
        for gap_epoch, gap in gaps:
            if gap_epoch == epoch and gap.last is not None:
                covered.update(range(gap.first, gap.last + 1))
        assert seqs == sorted(set(seqs)), "duplicates or disorder within an epoch"
        top = max(covered, default=0)
        assert covered == set(range(1, top + 1)), f"a silent gap in epoch {epoch}"


@pytest.mark.timeout(120)
async def test_journaled_hub_killed_mid_stream_loses_no_acked_publish(
    tmp_path: object, unit: float
) -> None:
    """kill -9 of a hub with a journal, mid-stream: every acknowledged publish is there
    after the restart, the subscriber resumes with recovered=True and sees no duplicate."""
    from pathlib import Path

    journal = str(Path(str(tmp_path)) / "hub.journal")
    token = "journal-test-token"
    hub = HubProcess(token=token, journal=journal)
    first_epoch = hub.epoch
    acked: list[int] = []  # values of acknowledged publishes
    async with FaultProxy(("127.0.0.1", hub.port)) as proxy:
        sub_client = AsyncClient(proxy.url, token, reconnect_delay=0.02, reconnect_max_delay=0.2)
        pub = AsyncClient(proxy.url, token, reconnect_delay=0.02, reconnect_max_delay=0.2)
        try:
            await sub_client.connect()
            await pub.connect()
            sub = sub_client.subscribe("j", window=100_000)
            await sub.wait_ready()

            async def publish_with_acks() -> None:
                i = 0
                while True:
                    await pub.publish_many("j", [{"i": i + k} for k in range(9)])
                    await pub.publish("j", {"i": i + 9}, ack=True)
                    acked.append(i + 9)
                    i += 10

            publisher = asyncio.create_task(publish_with_acks())
            try:
                for _ in range(3):
                    goal = len(acked) + 20
                    await until(lambda g=goal: len(acked) >= g, 4 * unit, "acks")
                    await asyncio.sleep(random.uniform(0, 0.05))
                    hub.kill()  # SIGKILL mid-stream
                    hub.close()
                    hub = HubProcess(token=token, journal=journal)
                    assert hub.epoch == first_epoch  # the journal keeps the epoch
                    proxy.target = ("127.0.0.1", hub.port)
                    proxy.cut()
                goal = len(acked) + 20
                await until(lambda g=goal: len(acked) >= g, 4 * unit, "acks")
            finally:
                publisher.cancel()
            await pub.flush()  # everything published is now stored: i = 0 .. total-1
            total = pub.outbox.records_added
            await asyncio.wait_for(sub.wait(1), unit)
            await until(lambda: sub.last_seq.get("j", 0) >= total, 4 * unit, "catching up")
            frame = sub.frame
            values = frame["i"].tolist()
            assert len(values) == len(set(values)), "a record was stored twice"
            assert frame["seq"].tolist() == list(range(1, len(frame) + 1))
            assert sub.gap_count == 0 and sub.recovered is True and sub.resumes >= 3
            assert set(acked) <= set(values)  # every acknowledged publish survived
            assert sorted(values) == list(range(total))  # and, after the flush, all others
            print(f"\njournal: {total} records, {len(acked)} acked publishes, 3 kills, 0 lost")
        finally:
            await sub_client.close()
            await pub.close()
            hub.close()


async def test_client_does_not_reconnect_after_a_final_close_code(unit: float) -> None:
    import livenb

    async with AsyncHub(port=0) as hub:
        client = AsyncClient(hub.url, None, reconnect_delay=0.01)  # no token: closed with 4401
        await client.connect()
        with pytest.raises(livenb.AuthenticationError):
            await asyncio.wait_for(client.publish("t", 1, ack=True), unit)
        assert client.closed and client.reconnects == 0
        await client.close()


async def test_client_reconnects_after_a_slow_consumer_close(unit: float) -> None:
    async with AsyncHub(port=0) as hub, AsyncClient(hub.url, hub.token, reconnect_delay=0.01) as c:
        sub = c.subscribe("t")
        await sub.wait_ready()
        peer = next(iter(hub._peers.values()))
        await peer.ws.close(p.CLOSE_SLOW_CONSUMER, "slow consumer")
        await until(lambda: c.reconnects == 1 and c.connected, unit, "the reconnect")
        async with AsyncClient(hub.url, hub.token) as pub:
            await pub.publish("t", 1, ack=True)
        assert await asyncio.wait_for(sub.wait(1), unit) == 1


async def test_a_failing_journal_stops_the_hub_from_promising(tmp_path: object, unit: float) -> None:
    """When the journal cannot write, nothing is acknowledged, connections are closed and new
    ones refused; the publisher keeps its records to resend."""
    import livenb
    from livenb._journal import Journal

    def broken_write(self: Journal, group: object) -> None:
        raise OSError(28, "No space left on device")

    async with (
        AsyncHub(port=0, journal=f"{tmp_path}/hub.journal") as hub,
        AsyncClient(hub.url, hub.token, reconnect_delay=0.01, reconnect_max_delay=0.05) as c,
    ):
        assert await c.publish("t", 1, ack=True) == 1
        assert hub._journal is not None
        hub._journal._write = broken_write.__get__(hub._journal)  # type: ignore[method-assign]
        publishing = asyncio.create_task(c.publish("t", 2, ack=True))
        await until(lambda: hub.stats()["journal_failure"] is not None, unit, "the failure")
        await until(lambda: not c.connected, unit, "the hub closing the connection")
        assert not publishing.done()  # never acknowledged ...
        assert c.stats()["unacked_frames"] + c.stats()["pending_bytes"] > 0  # ... and kept
        with pytest.raises(livenb.HubUnreachableError, match="503"):
            await AsyncClient(hub.url, hub.token).connect()
        publishing.cancel()
