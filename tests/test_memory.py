"""What the hub and the client keep costs what they count.

orjson writes into a buffer of about 4 KiB and shrinks it in place; kept as it is, every short
output would hold a page of memory (``_protocol.compact``). Each check runs in a fresh
interpreter, so that nothing freed earlier in the same heap hides the cost.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import livenb
from livenb import _protocol as p
from livenb._history import FRAME_OVERHEAD, Batch, HistoryLimits, TopicHistory

KEPT = 20_000
RECORD = {"sym": "ACME", "px": 101.5, "qty": 7, "side": "buy", "venue": "X"}

# Each expression makes one encoding of a short record as the hub or the client keeps it.
ENCODERS = {
    "msg frame (history, queues)": "p.encode_msg_frame('ticks.acme', i, 1.5, [dict(R, i=i)])",
    "record (outbox)": "p.encode_record(dict(R, i=i))",
    "records list (publish_many)": "p.encode_records_list([dict(R, i=i)])[0]",
    "ack (queues)": "p.encode_ack(i, i, 1)",
    "gap (queues)": "p.encode(p.Gap('ticks.acme', i, i + 1, 'slow_consumer'))",
    "records body (Redis engine)": "_records_body([dict(R, i=i)])",
}

KEEP_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from livenb import _protocol as p
    from livenb._state import _records_body
    R = json.loads(sys.argv[2])

    def rss():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024

    make = eval("lambda i: " + sys.argv[1])
    make(0)
    before = rss()
    kept = [make(i) for i in range(int(sys.argv[3]))]
    grown = rss() - before
    print(json.dumps({"per_item": grown / len(kept), "size": len(kept[-1])}))
    """
)


def test_compact_is_an_equal_copy() -> None:
    data = p.encode_record(RECORD)
    copy = p.compact(data)
    assert copy == data and type(copy) is bytes and copy is not data


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")
@pytest.mark.parametrize("what", sorted(ENCODERS))
def test_a_kept_encoding_costs_about_its_size(what: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", KEEP_SCRIPT, ENCODERS[what], json.dumps(RECORD), str(KEPT)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result = json.loads(out.stdout)
    # A page (4,096 bytes) each without the copy; the object header and list slot with it.
    assert result["per_item"] < result["size"] + 400, result


def test_history_counts_each_frame_with_its_overhead() -> None:
    history = TopicHistory(HistoryLimits(records=100, bytes=10 * (100 + FRAME_OVERHEAD), age=None))
    frame = b"x" * 100
    for seq in range(1, 13):
        history.append(Batch(seq, 0.0, 1, frame), now=0.0)
    assert len(history) == 10 and history.bytes == 10 * (100 + FRAME_OVERHEAD)
    assert history.evict_oldest() == 100 + FRAME_OVERHEAD


HUB_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import livenb
    hub = livenb.serve(port=0)
    print(json.dumps({"url": hub.url, "token": hub.token}), flush=True)
    for line in sys.stdin:
        print(json.dumps(hub.stats()), flush=True)
    hub.close()
    """
)


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")
def test_a_history_of_single_record_frames_costs_what_it_counts(unit: float) -> None:
    """30,000 one-record frames over three topics: the hub grows by about history_bytes (it
    grew by 30 times that when each kept frame held a page)."""
    with subprocess.Popen(
        [sys.executable, "-c", HUB_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as hub:
        try:
            grown, counted = _fill_history(hub, unit)
        finally:
            hub.kill()
    print(f"hub grew {grown / 2**20:.1f} MiB for {counted / 2**20:.1f} MiB of history counted")
    assert counted > 30_000 * FRAME_OVERHEAD
    assert grown <= 1.5 * counted + (4 << 20), (grown, counted)


def _fill_history(hub: subprocess.Popen[str], unit: float) -> tuple[int, int]:
    """Publish the one-record frames; return (RSS growth, history bytes counted)."""
    assert hub.stdin is not None and hub.stdout is not None
    stdin, stdout = hub.stdin, hub.stdout
    info = json.loads(stdout.readline())

    def history_bytes() -> int:
        stdin.write("stats\n")
        stdin.flush()
        return int(json.loads(stdout.readline())["history_bytes"])

    with livenb.connect(
        info["url"], token=info["token"], batch_records=1, batch_delay=0.0, timeout=4 * unit
    ) as client:
        client.publish("warm.up", RECORD, ack=True)
        before, counted_before = _rss(hub.pid), history_bytes()
        for i in range(30_000):
            client.publish(f"ticks.{i % 3}", dict(RECORD, i=i))
        client.flush(timeout=4 * unit)
        return _rss(hub.pid) - before, history_bytes() - counted_before
