"""The side-by-side benchmark suite's smoke run: the harness works for every system (tiny
sizes, one run; it measures nothing and asserts no speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_suite_runs_every_system(tmp_path: Path, unit: float) -> None:
    pytest.importorskip("socketio", reason="python-socketio is not installed (.[test])")
    pytest.importorskip("aiohttp", reason="aiohttp is not installed (.[test])")
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60 * unit, check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    data = json.loads((tmp_path / "results.json").read_text())
    cases = {(r["scenario"], r["system"]) for r in data["results"]}
    assert cases == {
        (scenario, system)
        for scenario in ("relay-single", "relay-batched")
        for system in ("livenb", "websockets", "socketio")
    }
    assert all(r["median"] > 0 and r["records"] == 300 for r in data["results"])
    assert "| relay-single |" in (tmp_path / "results.md").read_text()
