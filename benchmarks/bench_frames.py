"""Frame ingest benchmark: livenb's column window against a per-message ``pd.concat`` window.

Batches of flat numeric records (``px`` float, ``qty`` int, ``bid``, ``ask``) go into a
:class:`livenb._columns.ColumnWindow` of 100,000 rows exactly as a subscription feeds it
(``ingest(topic, first_seq, ts, records)``, one call per received batch), then the window is
turned into a DataFrame with :func:`livenb.frames.snapshot_to_frame`. The naive alternative keeps
a DataFrame window with ``pd.concat([frame, pd.DataFrame([record])]).tail(window)`` per message;
it is so slow that it runs on far fewer messages, and both are compared in rows per second.

A second "mixed" case (a string ``sym`` on every record, an extra field on every 1,000th) is
measured for information only.

Targets (issue): the window is >= 300x faster than the naive loop and ingests >= 500k rows/s.
Each measurement is one timed run that includes any warm-up cost. The script always exits 0,
unless ``--check`` is given and a target is missed (exit 1).

Run: ``.venv/bin/python benchmarks/bench_frames.py [--quick] [--check]``
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from livenb._columns import ColumnWindow
from livenb._window import Window
from livenb.frames import snapshot_to_frame

WINDOW_ROWS = 100_000
BATCH = 100
TARGET_RATIO = 300.0
TARGET_RATE = 500_000.0
TOPIC = "ticks"
SYMBOLS = ("ACME", "BOLT", "CRUX", "DYNE", "EXPO")

Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Sizes:
    """How many rows each method gets."""

    window_rows: int  # rows pushed through the column window (more than it holds: it wraps)
    naive_rows: int  # messages for the per-message pd.concat loop


@dataclass(frozen=True, slots=True)
class Result:
    """One timed measurement."""

    case: str
    method: str
    rows: int
    seconds: float

    @property
    def rate(self) -> float:
        """Rows per second (inf when the clock did not move)."""
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True, slots=True)
class CaseResults:
    """The three measurements of one record shape."""

    ingest: Result
    snapshot: Result
    naive: Result

    @property
    def ratio(self) -> float:
        """How many times more rows/s the column window ingests than the naive loop."""
        return self.ingest.rate / self.naive.rate


# ---------------------------------------------------------------------- records
def flat_records(n: int, seed: int = 1) -> list[Record]:
    """``n`` flat numeric records: ``px`` float, ``qty`` int, ``bid`` and ``ask`` floats."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        px = 100.0 + rng.random()
        out.append({"px": px, "qty": rng.randint(1, 1_000), "bid": px - 0.01, "ask": px + 0.01})
    return out


def mixed_records(n: int, seed: int = 2) -> list[Record]:
    """Flat records plus a string ``sym``; every 1,000th also carries a new field ``halt_ms``."""
    rng = random.Random(seed)
    out = flat_records(n, seed)
    for i, record in enumerate(out):
        record["sym"] = rng.choice(SYMBOLS)
        if i % 1_000 == 999:
            record["halt_ms"] = rng.randint(1, 500)
    return out


# ---------------------------------------------------------------------- methods
def timed(run: Callable[[], object]) -> tuple[float, object]:
    """Run ``run()`` once; return the seconds it took and its result."""
    start = time.perf_counter()
    value = run()
    return time.perf_counter() - start, value


def ingest_window(records: list[Record], batch: int = BATCH) -> ColumnWindow:
    """Feed ``records`` into a fresh window in batches, as a subscription does."""
    window = ColumnWindow(Window(WINDOW_ROWS))
    for start in range(0, len(records), batch):
        window.ingest(TOPIC, start + 1, time.time(), records[start : start + batch])
    return window


def naive_concat(records: Sequence[Record], window_rows: int = WINDOW_ROWS) -> pd.DataFrame:
    """The naive window: one ``pd.concat`` per message, then ``tail`` to bound it."""
    frame = pd.DataFrame([{"seq": 1, "ts": time.time(), **records[0]}])
    for seq, record in enumerate(records[1:], start=2):
        row = pd.DataFrame([{"seq": seq, "ts": time.time(), **record}])
        frame = pd.concat([frame, row], ignore_index=True).tail(window_rows)
    return frame


def snapshot_frame(window: ColumnWindow) -> pd.DataFrame:
    """The DataFrame a subscription's ``frame`` property returns."""
    return snapshot_to_frame(window.snapshot())


# ---------------------------------------------------------------------- checks
def check_window_frame(frame: pd.DataFrame, total: int) -> None:
    """Raise AssertionError unless ``frame`` holds the newest window rows in seq order."""
    rows = min(total, WINDOW_ROWS)
    expected = np.arange(total - rows + 1, total + 1)
    if len(frame) != rows or not np.array_equal(frame["seq"].to_numpy(), expected):
        raise AssertionError(f"window frame has {len(frame)} rows, wrong seqs; expected {rows}")
    for name, dtype in (("px", "float64"), ("qty", "int64")):
        if str(frame[name].dtype) != dtype:
            raise AssertionError(f"column {name} is {frame[name].dtype}, expected {dtype}")


def check_naive_frame(frame: pd.DataFrame, total: int) -> None:
    """Raise AssertionError unless the naive frame holds every message in order."""
    if len(frame) != min(total, WINDOW_ROWS) or int(frame["seq"].iloc[-1]) != total:
        raise AssertionError(f"naive frame has {len(frame)} rows; expected {total}")


# ---------------------------------------------------------------------- cases
def run_case(name: str, make: Callable[[int], list[Record]], sizes: Sizes) -> CaseResults:
    """Measure window ingest, snapshot and the naive loop on records made by ``make``."""
    records = make(sizes.window_rows)
    seconds, window = timed(lambda: ingest_window(records))
    assert isinstance(window, ColumnWindow)
    ingest = Result(name, f"ColumnWindow.ingest (batches of {BATCH})", len(records), seconds)

    seconds, frame = timed(lambda: snapshot_frame(window))
    assert isinstance(frame, pd.DataFrame)
    check_window_frame(frame, len(records))
    snapshot = Result(name, "snapshot -> DataFrame", len(frame), seconds)

    naive_input = records[: sizes.naive_rows]
    seconds, naive_frame = timed(lambda: naive_concat(naive_input))
    assert isinstance(naive_frame, pd.DataFrame)
    check_naive_frame(naive_frame, len(naive_input))
    naive = Result(name, "pd.concat per message + tail", len(naive_input), seconds)
    return CaseResults(ingest, snapshot, naive)


# ---------------------------------------------------------------------- report
def environment() -> str:
    """One line: interpreter, library versions and the machine's core count."""
    return (
        f"python {platform.python_version()} | numpy {np.__version__} | "
        f"pandas {pd.__version__} | {os.cpu_count()} cores | "
        f"{platform.system()} {platform.machine()}"
    )


def print_table(results: Sequence[CaseResults]) -> None:
    """The measurements, one row each, with the ratio per case."""
    print(f"{'case':<6} {'method':<36} {'rows':>9} {'seconds':>9} {'rows/s':>12}")
    for case in results:
        for r in (case.ingest, case.snapshot, case.naive):
            print(f"{r.case:<6} {r.method:<36} {r.rows:>9,} {r.seconds:>9.4f} {r.rate:>12,.0f}")
        label = "ratio window / naive (rows/s)"
        print(f"{case.ingest.case:<6} {label:<36} {'':>9} {'':>9} {case.ratio:>11,.0f}x")


def verdicts(flat: CaseResults) -> list[tuple[str, bool]]:
    """(message, passed) for each issue target, judged on the flat numeric case."""
    ratio, rate = flat.ratio, flat.ingest.rate
    return [
        (f"ratio {ratio:,.0f}x (target >= {TARGET_RATIO:,.0f}x)", ratio >= TARGET_RATIO),
        (f"ingest {rate:,.0f} rows/s (target >= {TARGET_RATE:,.0f})", rate >= TARGET_RATE),
    ]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer rows (a smoke run)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run both cases, print the table and verdicts; return the exit code."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sizes = Sizes(100_000, 500) if args.quick else Sizes(300_000, 2_000)
    print("livenb frame ingest: ColumnWindow vs per-message pd.concat")
    print(environment())
    print(
        f"window {WINDOW_ROWS:,} rows; window ingest {sizes.window_rows:,} rows, naive "
        f"{sizes.naive_rows:,} messages (its frame never grows past that: its best case); "
        "one timed run each, warm-up included\n"
    )
    flat = run_case("flat", flat_records, sizes)
    mixed = run_case("mixed", mixed_records, sizes)
    print_table([flat, mixed])
    print()
    results = verdicts(flat)
    for message, passed in results:
        print(f"{'PASS' if passed else 'FAIL'}  flat: {message}")
    print(f"info  mixed (str sym + occasional new field): ratio {mixed.ratio:,.0f}x")
    missed = not all(passed for _, passed in results)
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
