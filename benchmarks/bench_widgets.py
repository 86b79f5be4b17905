"""Widget pump benchmark: widget messages/s and kernel CPU while 50,000 records/s arrive.

A real ipykernel (jupyter_client) starts a hub, subscribes with a 10,000-row window and shows
a live table, a live chart and the hub's status panel; this process plays the front end (it
sends each widget's ``hello``, as the JavaScript view does) and counts the comm messages on
the kernel's iopub channel while a publisher pushes records at the target rate for a fixed
time. The kernel's CPU comes from /proc (user + system time of the kernel process).

Side by side, in the same run: the naive alternative a user would write without the pump, an
``ipywidgets.HTML`` whose value is set to the latest rows from an ``on_record`` callback
(every record, from livenb's loop thread). Jupyter's server drops iopub messages above
1,000 a second (its default ``iopub_msg_rate_limit``), silently.

Run: ``.venv/bin/python benchmarks/bench_widgets.py [--quick] [--rate 50000] [--seconds 10]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import queue
import re
import time
from pathlib import Path
from typing import Any

import jupyter_client

import livenb

PUMP = """\
import livenb
hub = livenb.serve(port=0)
client = hub.connect()
sub = client.subscribe("ticks", window=10_000)
widgets = [sub.table(rows=20), sub.chart(y="px"), hub.status()]
print("READY", hub.url, hub.token, " ".join(w.comm.comm_id for w in widgets))
"""

NAIVE = """\
import ipywidgets, livenb
hub = livenb.serve(port=0)
client = hub.connect()
sub = client.subscribe("ticks", window=10_000)
html = ipywidgets.HTML()
@sub.on_record
def show(record):  # what a user writes without a pump: redraw on every record
    html.value = f"<b>{record.seq}</b> px={record.data['px']}"
print("READY", hub.url, hub.token, html.comm.comm_id)
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(
    kc: Any, ids: set[str], publisher: livenb.Client, rate: int, seconds: float
) -> tuple[int, int, int, float]:
    """Publish ``rate`` records/s (batches of 500) for ``seconds`` while counting the
    widget comm messages on ``kc``'s iopub; returns (records published, messages, message
    bytes, seconds elapsed)."""
    messages = message_bytes = published = 0
    batch = 500
    started = time.monotonic()
    next_at = started
    while (now := time.monotonic()) - started < seconds:
        if now >= next_at:
            publisher.publish_many(
                "ticks", [{"px": 100.0 + (published + i) % 50, "qty": i} for i in range(batch)]
            )
            published += batch
            next_at += batch / rate
        try:
            msg = kc.get_iopub_msg(timeout=max(0.0, min(0.005, next_at - time.monotonic())))
        except queue.Empty:
            continue
        if msg["header"]["msg_type"] == "comm_msg" and msg["content"]["comm_id"] in ids:
            messages += 1
            message_bytes += len(str(msg["content"]["data"]))
    return published, messages, message_bytes, time.monotonic() - started


def run_case(name: str, code: str, rate: int, seconds: float, hello: bool) -> dict[str, Any]:
    manager = jupyter_client.KernelManager(kernel_name="python3")
    manager.start_kernel()
    kc = manager.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        msg_id = kc.execute(code)
        out = ""
        while True:
            msg = kc.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["header"]["msg_type"] == "stream":
                out += msg["content"]["text"]
            if msg["header"]["msg_type"] == "error":
                raise RuntimeError("\n".join(msg["content"]["traceback"]))
            if msg["header"]["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        match = re.search(r"READY (\S+) (\S+) (.+)", out)
        assert match, out
        url, token, ids = match.group(1), match.group(2), set(match.group(3).split())
        if hello:
            for comm_id in ids:
                content = {"comm_id": comm_id, "data": {"method": "custom", "content": {"type": "hello"}}}
                kc.shell_channel.send(kc.session.msg("comm_msg", content))
        time.sleep(1.0)
        while True:  # forget what came before the measurement
            try:
                kc.get_iopub_msg(timeout=0.05)
            except queue.Empty:
                break
        pid = manager.provisioner.process.pid  # type: ignore[union-attr]
        publisher = livenb.connect(url, token=token)
        cpu_before = cpu_seconds(pid)
        published, messages, message_bytes, elapsed = load(kc, ids, publisher, rate, seconds)
        cpu = cpu_seconds(pid) - cpu_before
        backlog = publisher.stats()["pending_bytes"]  # published, not yet taken by the hub
        with contextlib.suppress(livenb.LivenbError):  # a swamped kernel may never catch up
            publisher.close(timeout=5)
        return {
            "case": name,
            "records/s": published / elapsed,
            "widget msgs/s": messages / elapsed,
            "widget KiB/s": message_bytes / elapsed / 1024,
            "kernel CPU %": 100 * cpu / elapsed,
            "backlog KiB": backlog / 1024,
        }
    finally:
        kc.stop_channels()
        manager.shutdown_kernel(now=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s at 10,000 records/s")
    parser.add_argument("--rate", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    rate, seconds = (10_000, 2.0) if args.quick else (args.rate, args.seconds)
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, livenb {livenb.__version__}")
    print(f"ingest target: {rate:,} records/s for {seconds:g} s; one kernel per case\n")
    results = [
        run_case("livenb pump (table + chart + status)", PUMP, rate, seconds, hello=True),
        run_case("naive: HTML widget set per record", NAIVE, rate, seconds, hello=False),
    ]
    keys = list(results[0])
    print(" | ".join(f"{k:>14}" if k != "case" else f"{k:<38}" for k in keys))
    for r in results:
        print(" | ".join(f"{r[k]:>14,.1f}" if k != "case" else f"{r[k]:<38}" for k in keys))
    pump, naive = results
    print(
        f"\nwidget messages: pump {pump['widget msgs/s']:.0f}/s vs naive {naive['widget msgs/s']:.0f}/s "
        f"({naive['widget msgs/s'] / max(pump['widget msgs/s'], 1e-9):.0f}x fewer with the pump); "
        f"kernel CPU {pump['kernel CPU %']:.0f}% vs {naive['kernel CPU %']:.0f}%"
    )
    print("target: at most ~200 widget messages/s for the whole kernel (Jupyter drops above 1,000/s)")


if __name__ == "__main__":
    main()
