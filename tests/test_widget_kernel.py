"""Widgets in a real kernel, updated while the kernel is idle (a raw iopub listener: nbclient
only records messages that arrive while a cell runs).

The test plays the front end: it sends the widget's ``hello`` over the comm channel, as the
JavaScript view does when it renders, then publishes from this process while the kernel
sits idle, and reads the comm messages the render pump sends from its own thread.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import livenb

jupyter_client = pytest.importorskip("jupyter_client", reason="jupyter_client is not installed")
kernelspec = pytest.importorskip("jupyter_client.kernelspec")
pytest.importorskip("ipykernel", reason="ipykernel is not installed")

SETUP = """\
import livenb
hub = livenb.serve(port=0)
client = hub.connect()
sub = client.subscribe("ticks", window=10_000)
table = sub.table(rows=5)
chart = sub.chart(y="px")
display(table, chart)
print("HUB", hub.url, hub.token, table.comm.comm_id, chart.comm.comm_id)
"""


class Kernel:
    """A real ipykernel with its channels; run() executes a cell and returns its stdout."""

    def __init__(self, manager: Any = None) -> None:
        self.manager = manager or jupyter_client.KernelManager(kernel_name="python3")
        self.manager.start_kernel()
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float) -> tuple[str, str]:
        """Execute ``code``; return (stdout, the execute request's msg_id) once idle."""
        msg_id = self.client.execute(code)
        out = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                raise AssertionError("\n".join(msg["content"]["traceback"]))
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out), msg_id

    def say_hello(self, comm_id: str) -> str:
        """What the widget's JavaScript sends when it renders; returns the message id."""
        content = {"comm_id": comm_id, "data": {"method": "custom", "content": {"type": "hello"}}}
        msg = self.client.session.msg("comm_msg", content)
        self.client.shell_channel.send(msg)
        return str(msg["header"]["msg_id"])

    def widget_messages(self, comm_ids: set[str], until: Any, timeout: float) -> list[dict[str, Any]]:
        """Collect the custom comm messages of ``comm_ids`` until ``until(messages)``."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while not until(got):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; got {len(got)} widget messages")
            try:
                msg = self.client.get_iopub_msg(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if msg["header"]["msg_type"] != "comm_msg":
                continue
            data = msg["content"]["data"]
            if msg["content"]["comm_id"] in comm_ids and data.get("method") == "custom":
                got.append(msg)
        return got

    def drain(self, comm_ids: set[str], seconds: float) -> list[dict[str, Any]]:
        """The comm messages of ``comm_ids`` that arrive within ``seconds``."""
        got = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = self.client.get_iopub_msg(timeout=left)
            except queue.Empty:
                break
            if msg["header"]["msg_type"] == "comm_msg" and msg["content"]["comm_id"] in comm_ids:
                got.append(msg)
        return got

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def ipykernel6(tmp_path: Path, unit: float) -> Any:
    """A kernel manager for ipykernel 6 (this environment has 7): the same Python and
    packages, with ipykernel 6 installed on its own and put first on the kernel's path."""
    target = tmp_path / "ipykernel6"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
         "ipykernel>=6.29,<7"],
        capture_output=True, text=True, timeout=60 * unit, check=False,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    spec_dir = tmp_path / "kernels" / "ipykernel6"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel 6)",
        "language": "python",
        "env": {"PYTHONPATH": str(target)},
    }))
    specs = kernelspec.KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    return jupyter_client.KernelManager(kernel_name="ipykernel6", kernel_spec_manager=specs)


@pytest.fixture(params=["ipykernel7", "ipykernel6"])
def kernel(request: pytest.FixtureRequest, tmp_path: Path, unit: float) -> Iterator[Kernel]:
    """The installed ipykernel (7), and ipykernel 6: updates from a thread broke differently
    on each (ipywidgets#4001, ipykernel#1451)."""
    k = Kernel(ipykernel6(tmp_path, unit) if request.param == "ipykernel6" else None)
    try:
        out, _ = k.run("import ipykernel; print('IPYKERNEL', ipykernel.__version__)", 6 * unit)
        major = out.split("IPYKERNEL ")[1].split(".")[0]
        assert major == request.param[-1], out
        yield k
    finally:
        k.close()


def test_idle_kernel_widgets_update_from_the_pump(kernel: Kernel, unit: float) -> None:
    out, setup_id = kernel.run(SETUP, 6 * unit)
    match = re.search(r"HUB (\S+) (\S+) (\S+) (\S+)", out)
    assert match, out
    url, token, table_id, chart_id = match.groups()
    for comm_id in (table_id, chart_id):
        kernel.say_hello(comm_id)
    snapshots = kernel.widget_messages(
        {table_id, chart_id}, lambda got: len(got) >= 2, 4 * unit
    )
    assert all(m["content"]["data"]["content"]["reset"] for m in snapshots)

    # The kernel is idle now: records published from elsewhere still reach both widgets.
    with livenb.connect(url, token=token) as publisher:
        publisher.publish_many("ticks", [{"px": float(i), "i": i} for i in range(2000)])
        publisher.flush()

        def complete(got: list[dict[str, Any]]) -> bool:
            ends = {m["content"]["comm_id"]: m["content"]["data"]["content"]["n"] for m in got}
            return ends.get(table_id) == 2000 and ends.get(chart_id) == 2000

        updates = kernel.widget_messages({table_id, chart_id}, complete, 4 * unit)
    table = [m["content"]["data"]["content"] for m in updates if m["content"]["comm_id"] == table_id]
    chart = [m["content"]["data"]["content"] for m in updates if m["content"]["comm_id"] == chart_id]
    assert table[-1]["columns"] == ["ts", "seq", "px", "i"]
    assert [row[3] for row in table[-1]["rows"]] == [1995, 1996, 1997, 1998, 1999]
    assert chart[-1]["series"]["px"][-1] == 1999.0
    # Each message continues the previous one: no hole a front end would have to resync.
    for stream, first in ((table, snapshots[0]), (chart, snapshots[1])):
        position = first["content"]["data"]["content"]["n"]
        for message in stream:
            assert message["prev"] == position or message["reset"]
            position = message["n"]
    # Sent from the pump thread while idle, the messages still carry a parent header the
    # front end can place (the kernel's current parent), never an empty one.
    for m in updates:
        assert m["parent_header"].get("msg_id"), m["parent_header"]
    del setup_id


def test_widget_messages_stay_under_the_kernel_cap(kernel: Kernel, unit: float) -> None:
    code = SETUP + """
from livenb.widgets import configure
configure(max_messages=50)
subs = [client.subscribe(f"t{i}") for i in range(20)]
tables = [s.table(rate=20) for s in subs]
print("IDS", " ".join(t.comm.comm_id for t in tables))
"""
    out, _ = kernel.run(code, 6 * unit)
    url, token = re.search(r"HUB (\S+) (\S+)", out).groups()  # type: ignore[union-attr]
    ids = re.search(r"IDS (.+)", out).group(1).split()  # type: ignore[union-attr]
    for comm_id in ids:
        kernel.say_hello(comm_id)
    kernel.widget_messages(set(ids), lambda got: len(got) >= len(ids), 4 * unit)
    with livenb.connect(url, token=token) as publisher:
        started = time.monotonic()
        counted: list[dict[str, Any]] = []
        while time.monotonic() - started < 2.0:
            for i in range(20):  # every table has something new all the time
                publisher.publish(f"t{i}", {"x": 1})
            counted += kernel.drain(set(ids), 0.02)
        elapsed = time.monotonic() - started
    # 20 tables x 20 updates a second would be 400 a second; the cap is 50 (plus a burst).
    rate = len(counted) / elapsed
    assert rate <= 50 * 1.3 + 5 / elapsed, rate
    assert len({m["content"]["comm_id"] for m in counted}) == len(ids)  # every table served
