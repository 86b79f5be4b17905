"""The side-by-side suite: livenb against bare websockets, python-socketio and naive code.

``python -m benchmarks [--smoke] [--runs 3] [-n 100000] [--scenarios relay,fanout-100,...]
[--systems livenb,...] [--out DIR] [--timeout S]``

Every system runs the same scenario the same way: its server in one process pinned to core 0,
its clients in other processes pinned to core 1 (when the machine has two cores); every
process of a case starts at once and is killed when the case ends. Each case runs ``--runs``
times (the systems of a scenario take turns, so drift hits them alike) and the median is
kept. Results go to ``DIR/results.json`` (every run, CPU seconds per role and CPU µs per
record), ``DIR/results.md`` (the table below, then CPU per role) and ``DIR/results.png``
(one chart per metric family, when matplotlib is installed); the table is printed too.

Systems: ``livenb`` (a hub with default settings but ``max_connections=5000``; the blocking
``livenb.connect`` client publishes, ``livenb.AsyncClient`` subscribes, one per connection),
``websockets`` (a bare relay written in ``benchmarks/workers.py``: every text message from a
publisher goes to every subscriber with ``websockets.broadcast()``; the clients use orjson;
no compression; no keepalive, as ``bench_connections.py``'s bare server),
``socketio`` (python-socketio on aiohttp, its ``AsyncClient``; ``emit`` to a room) and
``naive`` (what a user writes without livenb: the bare websockets relay, stdlib ``json``,
pandas). Ticks are ~100-byte JSON objects (``sym``, ``px``, ``qty``, ``bid``, ``ask``,
``venue``, ``i``); the DataFrame scenarios send flat numeric records (``i``, ``px``, ``qty``,
``bid``, ``ask``). Sizes are the defaults (``-n`` = 100,000); ``--smoke`` shrinks them.

Scenarios (``--scenarios`` takes names or their prefixes: ``relay``, ``fanout``, ...):

- ``relay-single`` (rec/s): one publisher, one subscriber, ``n`` ticks, every tick its own
  frame (livenb: ``batch_records=1, batch_delay=0``, one ``publish`` per tick). Records/s
  from the publisher's first send to the subscriber's last record.
- ``relay-batched`` (rec/s): the same with 100 ticks to a frame (websockets: a JSON array per
  message; socketio: a list per emit; livenb: its default micro-batching, one ``publish``
  per tick).
- ``relay-batched-many`` (rec/s): relay-batched where livenb hands 100 ticks to each
  ``publish_many`` call, as the websockets publisher hands 100 to each ``send`` (default
  settings otherwise). It separates the cost of one ``publish`` call per tick from the
  transport.
- ``fanout-10``, ``fanout-100``, ``fanout-1000`` (deliveries/s): one publisher, S subscriber
  connections (up to 500 per client process, all on core 1; livenb: one ``AsyncClient`` per
  connection, ``window=None``). The publisher sends ``6n / S`` ticks in frames of 10
  (livenb: ``batch_records=10`` and ``publish_many`` of 10). Deliveries/s = ticks x S /
  seconds from the first send until the last subscriber has every tick. Second metric,
  ``hub`` (deliveries per CPU-second of the server process alone): the subscribers share
  one core and cost more per delivery than any server, so end-to-end deliveries/s mostly
  measure them; the server's own cost per delivery is what compares livenb's fan-out with
  ``broadcast()``.
- ``latency-single-1k``, ``latency-single-10k`` (ms, p50 and p99, lower is better): one
  publisher paced at 1,000 or 10,000 ticks/s for 2 s (2,000 or 20,000 ticks), every tick its
  own frame, one subscriber (livenb: ``AsyncClient`` publisher with ``batch_records=1,
  batch_delay=0``, ``AsyncClient`` subscriber with ``window=None`` and an ``on_record``
  callback). Each tick carries ``t`` = ``time.time()`` taken just before its publish call;
  the subscriber computes ``time.time() - t`` on receipt, per tick (one machine, one clock),
  and reports the nearest-rank p50 and p99 over all ticks (no warm-up is dropped). asyncio
  sleeps have ~1 ms resolution, so every system's publisher sends the ticks that are due in
  bursts (about 10 at 10,000/s). The publisher's achieved rate, the max, and for livenb the
  p50/p99 of publish call -> hub receive time (the records' ``ts``) are in results.json.
- ``latency-batched-1k``, ``latency-batched-10k`` (livenb only): the same with livenb's default
  micro-batching (a frame leaves at 100 records or ``batch_delay`` = 5 ms after its first).
- ``memory-idle`` (KiB/conn, lower is better): the server's VmRSS (/proc) before and 2 s after
  2,000 idle subscribed connections (4 client processes of 500): livenb ``AsyncClient``\\ s
  each subscribed to a topic; websockets connections registered with the bare relay;
  socketio clients in a room. (after - before) / 2,000.
- ``frame-landing`` (rec/s; livenb vs naive): ``n`` flat numeric records into a DataFrame of
  the last 100,000 rows. livenb: ``publish_many`` in chunks of 1,000 (default batching),
  the subscriber ``subscribe(window=100_000)``, ``sub.wait(n)``, then ``sub.frame``. naive: the
  bare relay, 100 records per message with ``json.dumps``, a websockets client that
  ``json.loads`` each message into a ``deque(maxlen=100_000)`` of dicts and builds
  ``pd.DataFrame(list(deque))`` once at the end (its best case: a live view would rebuild the
  frame every time it is shown). Records/s from the first publish until the frame is built.
- ``frame-ingest`` (rec/s, and ms per frame view; livenb vs naive): the same landing without
  the network, in one process: ``3n`` flat records (made before the clock starts) in
  batches of 100 into livenb's ``ColumnWindow`` (as a subscription feeds it) then one
  ``snapshot_to_frame`` (what ``sub.frame`` does), against ``deque.extend`` then one
  ``pd.DataFrame(list(deque))``; records/s over both steps. "frame view" is one more
  DataFrame of the full 100,000-row window, timed alone: what every look at a live frame
  costs. (``bench_frames.py`` compares the window with a ``pd.concat``-per-message loop.)
- ``widget-pump`` (msgs/s and kernel CPU %, lower is better; livenb vs naive): a real Jupyter
  kernel (jupyter_client, pinned to core 0) runs a hub and a subscription with a 10,000-row
  window; livenb shows a live table, a live chart and the status panel (their ``hello`` is
  sent, as the front end does), naive sets an ``ipywidgets.HTML`` from ``on_record`` for
  every record (``bench_widgets.py``'s code). The worker process (core 1) plays the front
  end, publishes 50,000 records/s in batches of 500 for 5 s and counts the widgets' comm
  messages on iopub; the kernel's CPU (utime + stime from /proc) over those 5 s is the
  second metric. Achieved rate, KiB/s and the publisher's backlog are in results.json.

The table: one row per scenario (and metric), the unit (", lower is better" where it is),
the median per system ("—" where a system does not apply), then "livenb vs X" for each other
system: how many times better livenb is whatever the unit's direction (X / livenb for lower
is better), so > 1 always means livenb is ahead; last, the target, judged on livenb's own
value or on the plain ratio livenb / X (e.g. ``≤1.2x ws: ✗ 1.54x`` for memory).

CPU: the server's CPU seconds (utime + stime from /proc) from ``go`` until the last
subscriber is done, and each client process's ``time.process_time()`` over its measured
window, divided by the records published (fan-out: also per delivery), are in results.json
(``cpu_seconds`` per run, ``cpu_us_per_record`` median) and in the second table of
results.md. The server's figure has /proc's 10 ms resolution.

Targets (issue 7): relay-single >= 0.9x websockets and >= 5x socketio; relay-batched >= 0.7x
websockets; fanout-100 >= 1.0x websockets (end to end, and the hub's own cost); latency-single-10k p99 <= 2 ms; latency-batched
p99 <= batch_delay + 1 ms; memory-idle <= 1.2x websockets per connection; frame landing
>= 500,000 rec/s (judged on both frame rows); and, from ``bench_widgets.py``, at most
~200 widget messages/s.

``--smoke`` runs tiny sizes once (fewer subscribers and connections too): it proves the
harness works for every scenario and system (``make test`` runs it); it measures nothing,
and exits 1 if a case failed. Otherwise a failed case shows as ``error`` and the exit code
is 0.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks import cases

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS = ("livenb", "websockets", "socketio", "naive")
SHORT = {"websockets": "ws", "socketio": "sio", "naive": "naive"}
THREE = ("livenb", "websockets", "socketio")
PAIR = ("livenb", "naive")


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is (the defaults: a full run in about 6 minutes on 2 cores)."""

    n: int = 100_000  # relay and frame-landing records; fan-out deliveries: 6n; ingest: 3n
    fanout_per_frame: int = 10
    per_process: int = 500  # connections per client process
    latency_seconds: float = 2.0
    memory_conns: int = 2_000
    settle: float = 2.0  # memory: seconds idle before each RSS reading
    window: int = 100_000
    widget_rate: int = 50_000
    widget_seconds: float = 5.0
    widget_settle: float = 1.0
    timeout: float = 300.0  # any single wait of a case
    smoke: bool = False

    def subscribers(self, nominal: int) -> int:
        return {10: 2, 100: 3, 1000: 5}[nominal] if self.smoke else nominal


SMOKE = Sizes(
    n=300,
    per_process=3,
    latency_seconds=0.05,
    memory_conns=6,
    settle=0.1,
    window=200,
    widget_rate=2_000,
    widget_seconds=0.3,
    widget_settle=0.2,
    timeout=60.0,
    smoke=True,
)


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    family: str  # the chart it goes to


def _throughput(unit: str) -> Metric:
    return Metric("throughput", unit, unit, True, "throughput")


HUB = Metric("hub", "hub", "deliveries/hub CPU-s", True, "throughput")
P50 = Metric("p50", "p50", "ms", False, "latency")
P99 = Metric("p99", "p99", "ms", False, "latency")
MEMORY = Metric("memory", "", "KiB/conn", False, "memory")
MSGS = Metric("msgs", "msgs/s", "msgs/s", False, "widgets")
VIEW = Metric("view", "frame view", "ms", False, "latency")
KERNEL_CPU = Metric("kernel_cpu", "kernel CPU", "% of a core", False, "widgets")


@dataclass(frozen=True)
class Scenario:
    name: str
    systems: tuple[str, ...]
    metrics: tuple[Metric, ...]
    run: Callable[[str, Sizes], cases.Measure]
    params: Callable[[Sizes], dict[str, Any]]


def _relay(per_frame: int, many: bool = False) -> Scenario:
    name = "relay-single" if per_frame == 1 else "relay-batched" + ("-many" if many else "")
    return Scenario(
        name,
        ("livenb", "websockets") if many else THREE,
        (_throughput("rec/s"),),
        lambda system, s: cases.relay(system, s.n, per_frame, s.timeout, many),
        lambda s: {"records": s.n, "per_frame": per_frame, "publish_many": many},
    )


def _fanout(nominal: int) -> Scenario:
    def params(s: Sizes) -> dict[str, Any]:
        subscribers = s.subscribers(nominal)
        return {
            "subscribers": subscribers,
            "records": max(1, 6 * s.n // subscribers),
            "per_frame": s.fanout_per_frame,
        }

    def run(system: str, s: Sizes) -> cases.Measure:
        p = params(s)
        return cases.fanout(
            system, p["subscribers"], p["records"], p["per_frame"], s.per_process, s.timeout
        )

    return Scenario(f"fanout-{nominal}", THREE, (_throughput("deliveries/s"), HUB), run, params)


def _latency(rate: int, batched: bool) -> Scenario:
    def params(s: Sizes) -> dict[str, Any]:
        return {"rate": rate, "records": max(10, round(rate * s.latency_seconds))}

    return Scenario(
        f"latency-{'batched' if batched else 'single'}-{rate // 1000}k",
        ("livenb",) if batched else THREE,
        (P50, P99),
        lambda system, s: cases.latency(system, rate, params(s)["records"], batched, s.timeout),
        params,
    )


SCENARIOS = [
    _relay(1),
    _relay(100),
    _relay(100, many=True),
    _fanout(10),
    _fanout(100),
    _fanout(1000),
    _latency(1_000, batched=False),
    _latency(10_000, batched=False),
    _latency(1_000, batched=True),
    _latency(10_000, batched=True),
    Scenario(
        "memory-idle",
        THREE,
        (MEMORY,),
        lambda system, s: cases.memory(system, s.memory_conns, s.per_process, s.settle, s.timeout),
        lambda s: {"connections": s.memory_conns},
    ),
    Scenario(
        "frame-landing",
        PAIR,
        (_throughput("rec/s"),),
        lambda system, s: cases.frame_landing(system, s.n, s.window, s.timeout),
        lambda s: {"records": s.n, "window": s.window},
    ),
    Scenario(
        "frame-ingest",
        PAIR,
        (_throughput("rec/s"), VIEW),
        lambda system, s: cases.frame_ingest(system, 3 * s.n, s.window, 100, s.timeout),
        lambda s: {"records": 3 * s.n, "window": s.window, "batch": 100},
    ),
    Scenario(
        "widget-pump",
        PAIR,
        (MSGS, KERNEL_CPU),
        lambda system, s: cases.widget_pump(
            system, s.widget_rate, s.widget_seconds, s.widget_settle, s.timeout
        ),
        lambda s: {"rate": s.widget_rate, "seconds": s.widget_seconds},
    ),
]
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


# --------------------------------------------------------------------------------- targets
def _batch_delay_ms() -> float:
    """livenb's default flush interval (``AsyncClient(batch_delay=...)``), in ms."""
    try:
        import livenb

        default = inspect.signature(livenb.AsyncClient).parameters["batch_delay"].default
        return float(default) * 1000
    except (ImportError, KeyError, TypeError, ValueError):
        return 5.0


@dataclass(frozen=True)
class Target:
    """One of the issue's targets for livenb on one row."""

    kind: str  # "ratio" (livenb / other), "max" or "min" (livenb's own value)
    value: float
    other: str = ""
    source: str = ""  # where the target comes from, when not issue 7

    def judge(self, by: dict[str, float | None], metric: Metric) -> str:
        mine = by.get("livenb")
        other = by.get(self.other) if self.other else None
        if self.kind == "ratio":
            sign = "≥" if metric.higher_is_better else "≤"
            text = f"{sign}{self.value:g}x {SHORT[self.other]}"
            if mine is None or not other:
                return f"{text}: ?"
            ratio = mine / other
            met = ratio >= self.value if metric.higher_is_better else ratio <= self.value
            return f"{text}: {'✓' if met else '✗'} {ratio:.2f}x"
        sign = "≤" if self.kind == "max" else "≥"
        text = f"{sign}{_value(self.value, metric.unit)} {metric.unit}"
        if self.source:
            text += f" ({self.source})"
        if mine is None:
            return f"{text}: ?"
        met = mine <= self.value if self.kind == "max" else mine >= self.value
        return f"{text}: {'✓' if met else '✗'} {_value(mine, metric.unit)}"


def targets() -> dict[tuple[str, str], list[Target]]:
    batched = _batch_delay_ms() + 1.0
    return {
        ("relay-single", "throughput"): [
            Target("ratio", 0.9, "websockets"),
            Target("ratio", 5.0, "socketio"),
        ],
        ("relay-batched", "throughput"): [Target("ratio", 0.7, "websockets")],
        ("fanout-100", "throughput"): [Target("ratio", 1.0, "websockets")],
        ("fanout-100", "hub"): [Target("ratio", 1.0, "websockets")],
        ("latency-single-10k", "p99"): [Target("max", 2.0)],
        ("latency-batched-1k", "p99"): [Target("max", batched)],
        ("latency-batched-10k", "p99"): [Target("max", batched)],
        ("memory-idle", "memory"): [Target("ratio", 1.2, "websockets")],
        ("frame-landing", "throughput"): [Target("min", 500_000)],
        ("frame-ingest", "throughput"): [Target("min", 500_000)],
        ("widget-pump", "msgs"): [Target("max", 200, source="bench_widgets")],
    }


# --------------------------------------------------------------------------------- results
@dataclass
class Result:
    scenario: str
    metric: str
    label: str  # the table's row name
    system: str
    unit: str
    higher_is_better: bool
    family: str
    params: dict[str, Any]
    runs: list[float]  # the metric, one value per run
    cpu_seconds: list[dict[str, float]] = field(default_factory=list)  # per run, per role
    cpu_us_per_record: dict[str, float] = field(default_factory=dict)  # median per role
    details: list[dict[str, Any]] = field(default_factory=list)  # per run
    error: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.runs) if self.runs and self.error is None else None


def run(scenarios: list[Scenario], sizes: Sizes, runs: int) -> list[Result]:
    results: list[Result] = []
    for scenario in scenarios:
        measures: dict[str, list[cases.Measure]] = {system: [] for system in scenario.systems}
        errors: dict[str, str] = {}
        spent = dict.fromkeys(scenario.systems, 0.0)
        for _ in range(runs):  # the systems take turns
            for system in scenario.systems:
                if system in errors:
                    continue
                started = time.monotonic()
                try:
                    measures[system].append(scenario.run(system, sizes))
                except Exception as exc:  # one failed case must not end the suite
                    errors[system] = f"{type(exc).__name__}: {exc}"
                    print(f"  {scenario.name:<24} {system:<10} error: {errors[system]}", flush=True)
                spent[system] += time.monotonic() - started
        params = scenario.params(sizes)
        for system in scenario.systems:
            done = measures[system]
            per_record = [m.cpu_us_per_record() for m in done]
            roles = dict.fromkeys(role for p in per_record for role in p)
            cpu = {r: statistics.median(p[r] for p in per_record if r in p) for r in roles}
            for metric in scenario.metrics:
                label = scenario.name + (f" {metric.label}" if len(scenario.metrics) > 1 else "")
                result = Result(
                    scenario.name,
                    metric.key,
                    label,
                    system,
                    metric.unit,
                    metric.higher_is_better,
                    metric.family,
                    params,
                    [m.metrics[metric.key] for m in done],
                    [m.cpu for m in done],
                    cpu,
                    [m.extra for m in done],
                    errors.get(system),
                )
                results.append(result)
                shown = "error" if result.median is None else _value(result.median, metric.unit)
                print(
                    f"  {label:<24} {system:<10} {shown:>12} {metric.unit:<13}"
                    f" ({spent[system]:.1f} s for {len(done)} run(s))",
                    flush=True,
                )
    return results


# --------------------------------------------------------------------------------- report
def _value(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.2f}" if value < 100 else f"{value:,.0f}"
    if unit in ("KiB/conn", "% of a core"):
        return f"{value:.1f}" if value < 1000 else f"{value:,.0f}"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _short(value: float) -> str:
    """A compact bar label: 1.2M, 35k, 950, 4.2, 0.35."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.2g}" if value < 10 else f"{value:.0f}"


def _advantage(mine: float | None, other: float | None, higher_is_better: bool) -> str:
    """How many times better livenb is (>1: livenb better), whatever the metric's direction."""
    if mine is None or other is None or mine <= 0 or other <= 0:
        return "—"
    return f"{(mine / other if higher_is_better else other / mine):.2f}x"


def _systems_in(results: list[Result]) -> list[str]:
    return [s for s in SYSTEMS if any(r.system == s for r in results)]


def _rows(results: list[Result]) -> list[tuple[str, list[Result]]]:
    rows: dict[str, list[Result]] = {}
    for result in results:
        rows.setdefault(result.label, []).append(result)
    return list(rows.items())


def table(results: list[Result]) -> str:
    """A Markdown table: one row per scenario (and metric), the median per system, livenb's
    advantage over each other system (>1 = livenb better, for every unit) and the targets."""
    others = [s for s in SYSTEMS if s != "livenb" and any(r.system == s for r in results)]
    head = ["scenario", "unit", *_systems_in(results)]
    head += [f"livenb vs {SHORT[s]}" for s in others]
    head.append("target (livenb)")
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---", "---"] + ["---:"] * (len(head) - 3) + ["---"]) + "|",
    ]
    goals = targets()
    for label, row in _rows(results):
        first = row[0]
        by: dict[str, float | None] = {r.system: r.median for r in row}
        errors = {r.system for r in row if r.error}
        unit = first.unit + ("" if first.higher_is_better else ", lower is better")
        cells = [label, unit]
        for system in _systems_in(results):
            if system in errors:
                cells.append("error")
            elif system in by and by[system] is not None:
                cells.append(_value(by[system], first.unit))  # type: ignore[arg-type]
            else:
                cells.append("—")
        for other in others:
            cells.append(_advantage(by.get("livenb"), by.get(other), first.higher_is_better))
        metric = next(
            m
            for s in SCENARIOS
            if s.name == first.scenario
            for m in s.metrics
            if m.key == first.metric
        )
        cells.append(
            "; ".join(t.judge(by, metric) for t in goals.get((first.scenario, first.metric), []))
            or "—"
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_table(results: list[Result]) -> str:
    """CPU µs per published record, per role (median over runs), where it was measured."""
    lines = [
        "| scenario | system | CPU µs per published record, per role (fan-out: every "
        "record goes to all subscribers) |",
        "|---|---|---|",
    ]
    seen = set()
    for r in results:
        key = (r.scenario, r.system)
        if key in seen or not r.cpu_us_per_record:
            continue
        seen.add(key)
        roles = ", ".join(f"{role} {us:,.1f}" for role, us in r.cpu_us_per_record.items())
        lines.append(f"| {r.scenario} | {r.system} | {roles} |")
    return "\n".join(lines)


FAMILIES = {
    "throughput": ("throughput (median, log scale; higher is better)", True),
    "latency": ("milliseconds: latency, frame view (median; log scale; lower is better)", True),
    "memory": ("idle memory, KiB per connection (lower is better)", False),
    "widgets": ("widget pump at the ingest rate (log scale; lower is better)", True),
}
COLORS = {"livenb": "#1f77b4", "websockets": "#ff7f0e", "socketio": "#2ca02c", "naive": "#d62728"}


def chart(results: list[Result], path: Path) -> bool:
    """One bar chart per metric family; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    families = [f for f in FAMILIES if any(r.family == f and r.median for r in results)]
    if not families:
        return False
    # throughput and latency get a row each; memory and widgets (a row or two each) share one
    wide = [[f, f] for f in families if f in ("throughput", "latency")]
    narrow = [f for f in families if f not in ("throughput", "latency")]
    layout = wide + ([narrow * (2 // len(narrow))] if narrow else [])
    fig, axes = plt.subplot_mosaic(layout, figsize=(12, 3.8 * len(layout)))
    for family in families:
        ax = axes[family]
        rows = [(label, row) for label, row in _rows(results) if row[0].family == family]
        width = 0.8 / 3
        drawn: set[str] = set()
        for i, (_, row) in enumerate(rows):
            present = [r for s in SYSTEMS for r in row if r.system == s and r.median]
            for k, r in enumerate(present):  # the systems of this row, centred on it
                x = i + (k - (len(present) - 1) / 2) * width
                label = r.system if r.system not in drawn else None
                drawn.add(r.system)
                bars = ax.bar([x], [r.median], width, label=label, color=COLORS[r.system])
                ax.bar_label(bars, [_short(r.median)], fontsize=6, padding=1)  # type: ignore[list-item]
        labels = [
            f"{row[0].scenario}\n{row[0].label[len(row[0].scenario) :].strip() or row[0].unit}"
            for _, row in rows
        ]
        ax.set_xticks(range(len(rows)), labels, fontsize=7)
        ax.set_xlim(-0.6, len(rows) - 0.4)
        title, log = FAMILIES[family]
        ax.set_title(title, fontsize=10)
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------------- main
def select(names: str) -> list[Scenario]:
    """Scenarios by name or prefix (``fanout`` selects every fan-out), in the suite's order."""
    wanted = [w.strip() for w in names.split(",") if w.strip()]
    unknown = [
        w for w in wanted if not any(s.name == w or s.name.startswith(w + "-") for s in SCENARIOS)
    ]
    if unknown:
        raise ValueError(f"unknown scenarios: {', '.join(unknown)} (known: {', '.join(BY_NAME)})")
    return [s for s in SCENARIOS if any(s.name == w or s.name.startswith(w + "-") for w in wanted)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, one run: check the harness"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "-n", type=int, default=Sizes.n, help="relay and frame records (fan-out: 6n, ingest: 3n)"
    )
    parser.add_argument(
        "--scenarios", default=",".join(BY_NAME), help="names or prefixes, comma-separated"
    )
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help="only these systems (e.g. livenb)"
    )
    parser.add_argument("--timeout", type=float, default=None, help="seconds any one wait may take")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else Sizes(n=args.n)
    if args.timeout:
        sizes = replace(sizes, timeout=args.timeout)
    runs = 1 if args.smoke else max(1, args.runs)
    systems = {s.strip() for s in args.systems.split(",") if s.strip()}
    if systems - set(SYSTEMS):
        parser.error(f"unknown systems: {', '.join(sorted(systems - set(SYSTEMS)))}")
    try:
        scenarios = [
            replace(s, systems=tuple(x for x in s.systems if x in systems))
            for s in select(args.scenarios)
        ]
    except ValueError as exc:
        parser.error(str(exc))
    scenarios = [s for s in scenarios if s.systems]
    machine = {
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(
        f"python {machine['python']}, {machine['cores']} cores; n = {sizes.n:,}, "
        f"{runs} run(s) each{' (smoke: sizes scaled down, measures nothing)' if args.smoke else ''}",
        flush=True,
    )
    started = time.monotonic()
    results = run(scenarios, sizes, runs)
    wall = time.monotonic() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "sizes": asdict(sizes),
                "runs": runs,
                "wall_seconds": wall,
                "results": [asdict(r) | {"median": r.median} for r in results],
            },
            indent=2,
        )
    )
    markdown = (
        f"{machine['date']}, python {machine['python']}, {machine['cores']} cores, "
        f"median of {runs} run(s), n = {sizes.n:,}{' (smoke)' if args.smoke else ''}. "
        '"livenb vs X" is how many times better livenb is (>1: livenb better, whatever the '
        "unit's direction); the target column shows livenb's own value or its plain ratio "
        "livenb / X.\n\n" + table(results) + "\n\n" + cpu_table(results)
    )
    (args.out / "results.md").write_text(markdown + "\n")
    drew = chart(results, args.out / "results.png")
    print("\n" + markdown)
    print(
        f"\n{wall:.0f} s; written: {args.out}/results.json, results.md"
        + (", results.png" if drew else "")
    )
    failed = [f"{r.scenario}/{r.system}" for r in results if r.error]
    return 1 if args.smoke and failed else 0
