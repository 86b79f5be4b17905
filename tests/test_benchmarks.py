"""The side-by-side benchmark suite's smoke run: the harness works for every scenario and
system (tiny sizes, one run; it measures nothing and asserts no speed)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THREE = ("livenb", "websockets", "socketio")
PAIR = ("livenb", "naive")
# scenario -> (systems, metrics): what the suite promises to measure
EXPECTED = {
    "relay-single": (THREE, {"throughput"}),
    "relay-batched": (THREE, {"throughput"}),
    "relay-batched-many": (("livenb", "websockets"), {"throughput"}),
    "fanout-10": (THREE, {"throughput", "hub"}),
    "fanout-100": (THREE, {"throughput", "hub"}),
    "fanout-1000": (THREE, {"throughput", "hub"}),
    "latency-single-1k": (THREE, {"p50", "p99"}),
    "latency-single-10k": (THREE, {"p50", "p99"}),
    "latency-batched-1k": (("livenb",), {"p50", "p99"}),
    "latency-batched-10k": (("livenb",), {"p50", "p99"}),
    "memory-idle": (THREE, {"memory"}),
    "frame-landing": (PAIR, {"throughput"}),
    "frame-ingest": (PAIR, {"throughput", "view"}),
    "widget-pump": (PAIR, {"msgs", "kernel_cpu"}),
}


@pytest.mark.timeout(150)
def test_the_suite_runs_every_scenario_and_system(tmp_path: Path, unit: float) -> None:
    for module in ("socketio", "aiohttp", "jupyter_client", "ipykernel", "matplotlib"):
        if importlib.util.find_spec(module) is None:  # found, not imported: the suite does
            pytest.skip(f"{module} is not installed (.[test])")
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=24 * unit,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads((tmp_path / "results.json").read_text())
    results = data["results"]
    assert not [r for r in results if r["error"]], result.stdout[-3000:]
    cases = {(r["scenario"], r["system"], r["metric"]) for r in results}
    assert cases == {
        (scenario, system, metric)
        for scenario, (systems, metrics) in EXPECTED.items()
        for system in systems
        for metric in metrics
    }
    for r in results:  # tiny sizes: a KiB/conn or a CPU % may round to anything, even < 0
        assert len(r["runs"]) == 1 and r["median"] == r["runs"][0], r
        assert math.isfinite(r["median"]), r
        if r["metric"] in ("throughput", "p50", "p99", "view"):
            assert r["median"] > 0, r
    relay = next(r for r in results if r["scenario"] == "relay-single" and r["system"] == "livenb")
    assert set(relay["cpu_us_per_record"]) == {"server", "publisher", "subscriber"}
    markdown = (tmp_path / "results.md").read_text()
    for scenario in EXPECTED:
        assert f"| {scenario}" in markdown
    assert "| — |" in markdown  # a system that does not apply to a scenario
    assert (tmp_path / "results.png").stat().st_size > 0


def test_profile_summary_and_flamegraph_from_collapsed_stacks(tmp_path: Path) -> None:
    from benchmarks.profile_hub import _svg, summary

    raw = tmp_path / "stacks.txt"
    raw.write_text("main;run;handle <x> 30\nmain;run;send 10\nmain;idle 60\n")
    text = summary(raw)
    assert text.startswith("100 samples")
    assert "60.0%  main;idle" not in text and "60.0%  idle" in text  # own time, by frame
    assert "100.0%  main" in text and "40.0%  run" in text  # including callees
    _svg(raw, tmp_path / "p.svg")
    svg = (tmp_path / "p.svg").read_text()
    assert svg.startswith("<svg") and "handle &lt;x&gt; (30 samples, 30.0%)" in svg
