"""The side-by-side suite: livenb, bare websockets and python-socketio in one harness.

``python -m benchmarks [--smoke] [--runs 3] [--out DIR] [--scenarios relay-single,...]``

Every system runs the same scenario the same way: its server in one process, its clients in
others, the server pinned to core 0 and the clients to core 1 where the machine has two;
each case runs ``--runs`` times and the median is kept. Results go to ``DIR/results.json``,
``DIR/results.md`` (a table with the ratios) and ``DIR/results.png`` (a chart, when
matplotlib is installed); the table is printed too.

Scenarios so far (the rest of issue 7 builds on this harness):

- ``relay-single``: one publisher, one subscriber, every record its own frame.
- ``relay-batched``: the same with 100 records to a frame (livenb: its default
  micro-batching, publishing one record per call).

``--smoke`` runs tiny sizes once: it proves the harness works (``make test`` runs it), it
measures nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SYSTEMS = ("livenb", "websockets", "socketio")
SCENARIOS = {"relay-single": 1, "relay-batched": 100}  # records per frame
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    scenario: str
    system: str
    records: int
    runs: list[float]  # records per second, one per run

    @property
    def median(self) -> float:
        return statistics.median(self.runs)


def _pinned(core: int) -> Any:
    """A preexec_fn pinning the child to ``core`` (when the machine has it)."""
    cores = os.cpu_count() or 1

    def pin() -> None:
        if hasattr(os, "sched_setaffinity") and cores > 1:
            os.sched_setaffinity(0, {core % cores})

    return pin


def _spawn(role: str, system: str, args: dict[str, Any], core: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.workers", role, system, json.dumps(args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_pinned(core),  # the orchestrator starts no threads: safe to fork
    )


def _line(proc: subprocess.Popen[str], timeout: float) -> Any:
    """The next JSON line the worker prints (bounded: it must come within ``timeout``)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line:
        raise RuntimeError(f"{proc.args[3:5]} said nothing within {timeout} s (exit {proc.poll()})")
    return json.loads(line)


def relay_once(system: str, n: int, per_frame: int, timeout: float) -> float:
    """Records per second from the publisher's first send to the subscriber's last record."""
    server = _spawn("server", system, {}, core=0)
    procs = [server]
    try:
        info = _line(server, timeout)
        args = {"port": info["port"], "token": info["token"], "n": n, "per_frame": per_frame}
        subscriber = _spawn("subscribe", system, args, core=1)
        procs.append(subscriber)
        assert _line(subscriber, timeout) == "ready"
        publisher = _spawn("publish", system, args, core=1)
        procs.append(publisher)
        start = _line(publisher, timeout)["start"]
        done = _line(subscriber, timeout)
        if done["count"] < n:
            raise RuntimeError(f"{system}: {done['count']} of {n} records arrived")
        publisher.wait(timeout)
        return n / (done["last"] - start)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()


def run(scenarios: list[str], n: int, runs: int, timeout: float) -> list[Result]:
    results = []
    for scenario in scenarios:
        per_frame = SCENARIOS[scenario]
        for system in SYSTEMS:
            rates = [relay_once(system, n, per_frame, timeout) for _ in range(runs)]
            result = Result(scenario, system, n, rates)
            results.append(result)
            print(f"  {scenario:<14} {system:<10} {result.median:>12,.0f} records/s", flush=True)
    return results


def table(results: list[Result]) -> str:
    """A Markdown table: each scenario's median per system and livenb's ratios."""
    lines = [
        "| scenario | livenb rec/s | websockets rec/s | socketio rec/s | livenb / websockets | livenb / socketio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for scenario in dict.fromkeys(r.scenario for r in results):
        by = {r.system: r.median for r in results if r.scenario == scenario}
        lines.append(
            f"| {scenario} | {by['livenb']:,.0f} | {by['websockets']:,.0f} | {by['socketio']:,.0f} "
            f"| {by['livenb'] / by['websockets']:.2f}x | {by['livenb'] / by['socketio']:.2f}x |"
        )
    return "\n".join(lines)


def chart(results: list[Result], path: Path) -> bool:
    """A bar chart of the medians; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    scenarios = list(dict.fromkeys(r.scenario for r in results))
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(SYSTEMS)
    for k, system in enumerate(SYSTEMS):
        values = [next(r.median for r in results if r.scenario == s and r.system == system) for s in scenarios]
        ax.bar([i + k * width for i in range(len(scenarios))], values, width, label=system)
    ax.set_xticks([i + width for i in range(len(scenarios))], scenarios)
    ax.set_ylabel("records per second (median)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run: check the harness")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("-n", type=int, default=100_000, help="records per run")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    n, runs = (300, 1) if args.smoke else (args.n, args.runs)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    machine = {
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(f"python {machine['python']}, {machine['cores']} cores; {n:,} records, {runs} run(s) each")
    results = run(scenarios, n, runs, timeout=60.0 if args.smoke else 600.0)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps({"machine": machine, "results": [asdict(r) | {"median": r.median} for r in results]}, indent=2)
    )
    markdown = table(results)
    (args.out / "results.md").write_text(markdown + "\n")
    drew = chart(results, args.out / "results.png")
    print("\n" + markdown)
    print(f"\nwritten: {args.out}/results.json, results.md" + (", results.png" if drew else ""))
    return 0
