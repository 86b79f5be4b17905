"""How one case of the side-by-side suite runs: its processes, clocks and CPU counters.

Each function here runs one scenario once for one system and returns a :class:`Measure`.
Every process of a case is started at once (imports overlap), pinned: the server to core 0,
every client process to core 1 (when the machine has two cores). The orchestrator hands the
server's port to the clients on their stdin, waits for every subscriber's ``ready``, then
tells the publisher ``go``. Every wait is bounded by ``timeout``; every process (and the
Jupyter kernel of the widget scenario) is killed in a ``finally`` block, and on Linux a
worker is also killed when the orchestrator dies (``PR_SET_PDEATHSIG``). All traffic goes to
127.0.0.1. The workers themselves are in :mod:`benchmarks.workers`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")


class CaseError(RuntimeError):
    """A case could not be measured (a worker failed, stalled, or records went missing)."""


@dataclass
class Measure:
    """One run of one case: its metrics, and the CPU each role spent while it was measured."""

    metrics: dict[str, float]
    records: int  # records published (what "per record" divides by)
    cpu: dict[str, float] = field(default_factory=dict)  # role -> CPU seconds
    extra: dict[str, Any] = field(default_factory=dict)

    def cpu_us_per_record(self) -> dict[str, float]:
        return {role: 1e6 * s / self.records for role, s in self.cpu.items() if self.records}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (every thread), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (VmRSS), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise CaseError(f"no VmRSS for process {pid}")


def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
    except OSError:
        return None


LIBC = _libc()
PR_SET_PDEATHSIG = 1


def _child_setup(core: int) -> Any:
    """A preexec_fn pinning the child to ``core`` (when the machine has it) and, on Linux,
    having it killed when the orchestrator dies (so no server outlives an interrupted run)."""
    cores = os.cpu_count() or 1

    def setup() -> None:
        if LIBC is not None:
            LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if hasattr(os, "sched_setaffinity") and cores > 1:
            os.sched_setaffinity(0, {core % cores})

    return setup


class Worker:
    """One ``python -m benchmarks.workers ROLE SYSTEM`` process, spoken to in JSON lines."""

    def __init__(self, role: str, system: str, core: int) -> None:
        self.name = f"{role} {system}"
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115  (closed in stop())
        self._buffer = b""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.workers", role, system],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            bufsize=0,
            preexec_fn=_child_setup(core),  # the orchestrator starts no threads: safe to fork
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, obj: Any) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(obj).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError as exc:
            raise CaseError(f"{self.name} is gone ({exc}){self.tail()}") from None

    def line(self, timeout: float) -> Any:
        """The next JSON line the worker prints; CaseError unless it comes within ``timeout``."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CaseError(f"{self.name} said nothing within {timeout:g} s{self.tail()}")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.proc.wait(2)
                    raise CaseError(f"{self.name} exited ({self.proc.poll()}){self.tail()}")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def expect(self, value: Any, timeout: float) -> None:
        got = self.line(timeout)
        if got != value:
            raise CaseError(f"{self.name} said {got!r}, expected {value!r}")

    def tail(self, limit: int = 1500) -> str:
        """The end of the worker's stderr, for error messages."""
        with contextlib.suppress(OSError, ValueError):
            self._stderr.seek(0)
            text = self._stderr.read().decode(errors="replace").strip()
            if text:
                return f"; its stderr ends:\n{text[-limit:]}"
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self._stderr.close()


def _server_of(system: str) -> str:
    return "websockets" if system == "naive" else system  # naive users run a bare relay


def _groups(total: int, per_process: int) -> list[int]:
    """``total`` connections split into processes of at most ``per_process``."""
    count = max(1, -(-total // max(1, per_process)))
    base, extra = divmod(total, count)
    return [base + (1 if k < extra else 0) for k in range(count)]


def publish_subscribe(
    system: str,
    conns: int,
    per_process: int,
    sub_cfg: dict[str, Any],
    pub_cfg: dict[str, Any],
    timeout: float,
) -> dict[str, Any]:
    """One server, ``conns`` subscribers (in processes of ``per_process``), one publisher.

    Returns the publisher's ``start`` time and ``end`` line, every subscriber process's done
    line, and the server's CPU seconds from ``go`` to the last subscriber's done line.
    """
    workers: list[Worker] = []
    try:
        server = Worker("server", _server_of(system), core=0)
        workers.append(server)
        groups = _groups(conns, per_process)
        subs = [Worker("subscribe", system, core=1) for _ in groups]
        workers += subs
        publisher = Worker("publish", system, core=1)
        workers.append(publisher)
        info = server.line(timeout)
        for worker, k in zip(subs, groups, strict=True):
            worker.send(info | sub_cfg | {"conns": k, "timeout": timeout})
        publisher.send(info | pub_cfg | {"timeout": timeout})
        for worker in subs:
            worker.expect("ready", timeout)
        publisher.expect("ready", timeout)
        cpu0 = cpu_seconds(server.pid)
        publisher.send("go")
        start = publisher.line(timeout)["start"]
        dones = [worker.line(timeout) for worker in subs]
        server_cpu = cpu_seconds(server.pid) - cpu0
        end = publisher.line(timeout)
        return {"start": start, "dones": dones, "end": end, "server_cpu": server_cpu}
    finally:
        for worker in reversed(workers):
            worker.stop()


def _check_count(system: str, dones: list[dict[str, Any]], n: int) -> None:
    fewest = min(done["count"] for done in dones)
    if fewest < n:
        raise CaseError(f"{system}: a subscriber got {fewest} of {n} records (timed out)")


# --------------------------------------------------------------------------------- scenarios
def relay(system: str, n: int, per_frame: int, timeout: float, many: bool = False) -> Measure:
    """One publisher -> one subscriber, as fast as it goes: records/s from the publisher's
    first send to the subscriber's last record. ``many``: livenb hands ``per_frame`` records
    to each ``publish_many`` call (the others send them as one message anyway)."""
    run = publish_subscribe(
        system,
        1,
        1,
        {"mode": "count", "n": n},
        {"mode": "relay", "n": n, "per_frame": per_frame, "many": many},
        timeout,
    )
    (done,) = run["dones"]
    _check_count(system, run["dones"], n)
    seconds = done["last"] - run["start"]
    return Measure(
        {"throughput": n / seconds},
        n,
        {"server": run["server_cpu"], "publisher": run["end"]["cpu"], "subscriber": done["cpu"]},
        {"seconds": seconds},
    )


def fanout(
    system: str, subscribers: int, n: int, per_frame: int, per_process: int, timeout: float
) -> Measure:
    """One publisher -> ``subscribers`` connections: deliveries/s (records x subscribers /
    seconds from the first send to the last subscriber having every record)."""
    run = publish_subscribe(
        system,
        subscribers,
        per_process,
        {"mode": "count", "n": n},
        {"mode": "fanout", "n": n, "per_frame": per_frame},
        timeout,
    )
    _check_count(system, run["dones"], n)
    seconds = max(done["last"] for done in run["dones"]) - run["start"]
    deliveries = n * subscribers
    cpu = {
        "server": run["server_cpu"],
        "publisher": run["end"]["cpu"],
        "subscribers": sum(done["cpu"] for done in run["dones"]),
    }
    return Measure(
        # hub: deliveries per CPU-second of the server alone (the subscribers share one core
        # and cost more than the server, so end-to-end throughput mostly measures them)
        {"throughput": deliveries / seconds, "hub": deliveries / max(cpu["server"], 1 / CLK_TCK)},
        n,
        cpu,
        {
            "seconds": seconds,
            "deliveries": deliveries,
            "subscriber_processes": len(run["dones"]),
            "cpu_us_per_delivery": {role: 1e6 * s / deliveries for role, s in cpu.items()},
        },
    )


def latency(system: str, rate: float, n: int, batched: bool, timeout: float) -> Measure:
    """A publisher paced at ``rate`` records/s, one subscriber: p50/p99 of (receive time -
    the record's send time), in ms."""
    run = publish_subscribe(
        system,
        1,
        1,
        {"mode": "latency", "n": n},
        {"mode": "latency", "n": n, "per_frame": 100 if batched else 1, "rate": rate},
        timeout,
    )
    (done,) = run["dones"]
    _check_count(system, run["dones"], n)
    return Measure(
        {"p50": done["p50"], "p99": done["p99"]},
        n,
        {"server": run["server_cpu"], "publisher": run["end"]["cpu"], "subscriber": done["cpu"]},
        {"max_ms": done["max"], "achieved_rate": run["end"]["rate"]}
        | {k: done[k] for k in ("p50_to_hub", "p99_to_hub") if k in done},
    )


def memory(system: str, conns: int, per_process: int, settle: float, timeout: float) -> Measure:
    """Hub RSS before and after ``conns`` idle subscribed connections: KiB per connection."""
    workers: list[Worker] = []
    try:
        server = Worker("server", system, core=0)
        workers.append(server)
        groups = _groups(conns, per_process)
        subs = [Worker("subscribe", system, core=1) for _ in groups]
        workers += subs
        info = server.line(timeout)
        time.sleep(settle)  # the server is up and idle
        before = rss_bytes(server.pid)
        for worker, k in zip(subs, groups, strict=True):
            worker.send(info | {"mode": "idle", "conns": k, "timeout": timeout})
        started = time.monotonic()
        for worker in subs:
            worker.expect("ready", timeout)
        connect_seconds = time.monotonic() - started
        time.sleep(settle)  # let the server settle (finished handshakes, idle senders)
        after = rss_bytes(server.pid)
        return Measure(
            {"memory": (after - before) / conns / 1024},
            0,
            extra={
                "rss_before_MiB": before / 2**20,
                "rss_after_MiB": after / 2**20,
                "connect_seconds": connect_seconds,
                "client_processes": len(subs),
            },
        )
    finally:
        for worker in reversed(workers):
            worker.stop()


def frame_landing(system: str, n: int, window: int, timeout: float) -> Measure:
    """Flat numeric records through a relay into a subscriber's DataFrame window: records/s
    from the first publish until the subscriber's DataFrame is built."""
    run = publish_subscribe(
        system,
        1,
        1,
        {"mode": "frame", "n": n, "window": window},
        {"mode": "frame", "n": n, "per_frame": 100},
        timeout,
    )
    (done,) = run["dones"]
    _check_count(system, run["dones"], n)
    if done["rows"] != min(n, window):
        raise CaseError(f"{system}: the frame has {done['rows']} rows, not {min(n, window)}")
    seconds = done["last"] - run["start"]
    return Measure(
        {"throughput": n / seconds},
        n,
        {"server": run["server_cpu"], "publisher": run["end"]["cpu"], "subscriber": done["cpu"]},
        {"seconds": seconds},
    )


def frame_ingest(system: str, n: int, window: int, batch: int, timeout: float) -> Measure:
    """In-process ingest of ``n`` flat numeric records into a DataFrame window: records/s,
    and the ms one more DataFrame of the full window takes."""
    worker = Worker("ingest", system, core=1)
    try:
        worker.send({"n": n, "window": window, "batch": batch, "timeout": timeout})
        worker.expect("ready", timeout)
        done = worker.line(timeout)
        if done["rows"] != min(n, window):
            raise CaseError(f"{system}: the frame has {done['rows']} rows, not {min(n, window)}")
        return Measure(
            {"throughput": n / done["seconds"], "view": 1000 * done["view"]},
            n,
            {"ingest": done["cpu"]},
            {"seconds": done["seconds"]},
        )
    finally:
        worker.stop()


def widget_pump(system: str, rate: float, seconds: float, settle: float, timeout: float) -> Measure:
    """A real kernel with live widgets fed ``rate`` records/s: widget messages/s to the front
    end and the kernel's CPU."""
    worker = Worker("widgets", system, core=1)
    kernel: int | None = None
    try:
        worker.send({"rate": rate, "seconds": seconds, "settle": settle, "timeout": timeout})
        kernel = worker.line(timeout)["kernel_pid"]
        worker.expect("ready", timeout)
        done = worker.line(timeout + seconds)
        return Measure(
            {"msgs": done["msgs/s"], "kernel_cpu": done["kernel_cpu_pct"]},
            done["records"],
            {"kernel": done["kernel_cpu"], "publisher": done["cpu"]},
            {k: done[k] for k in ("records/s", "KiB/s", "backlog_KiB", "seconds")},
        )
    finally:
        worker.stop()
        if kernel is not None:
            _kill_kernel(kernel)


def _kill_kernel(pid: int) -> None:
    """Kill the widget worker's kernel if it outlived the worker (it runs in its own session)."""
    with contextlib.suppress(OSError):
        if b"ipykernel" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGKILL)
