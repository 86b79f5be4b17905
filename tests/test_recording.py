"""Record to Parquet while streaming, read it back, replay it with its pacing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import livenb
from livenb import _protocol as p
from livenb.recording import (
    Recorder,
    read_recording,
    recording_info,
    recording_length,
    replay,
)

from .helpers import wait_until

pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed")

RECORDS = [
    {"sym": "ACME", "px": 101.5, "book": {"bid": 101.4, "ask": 101.6}},
    {"sym": "INITECH", "px": 99.0, "tags": ["a", "b"]},
    "a plain string",
    42,
    None,
    {"sym": "ACME", "px": 1e308, "unicode": "πλ ✓"},
]


def test_a_subscription_records_every_record_exactly(tmp_path: Path, unit: float) -> None:
    path = tmp_path / "ticks.parquet"
    with livenb.serve(port=0) as hub, hub.connect() as c:
        sub = c.subscribe("ticks.>")
        recorder = sub.record(path, row_group=100, flush_interval=0.05)
        many = [{"i": i, "x": i * 0.5} for i in range(2500)]
        c.publish_many("ticks.a", many)
        sub.wait(len(many), timeout=unit)
        # written while streaming, before the file is closed (and before the next records
        # are even published: so the file has more than one row group, however fast the
        # first batch arrived)
        wait_until(lambda: recorder.rows_written > 0, unit, "a row group written")
        for record in RECORDS:
            c.publish("ticks.b", record)
        c.flush()
        sub.wait(len(many) + len(RECORDS), timeout=unit)
        sub.close()  # finishes the file
    assert recorder.closed and recorder.stats()["dropped"] == 0
    table = pq.read_table(path)
    assert table.column_names == ["topic", "seq", "ts", "data"]
    assert table.num_rows == 2500 + len(RECORDS) == recording_length(path)
    assert pq.ParquetFile(path).metadata.num_row_groups > 1
    rows = table.to_pylist()
    assert [json.loads(r["data"]) for r in rows[2500:]] == RECORDS
    assert [r["seq"] for r in rows[:2500]] == list(range(1, 2501))
    assert {r["topic"] for r in rows} == {"ticks.a", "ticks.b"}
    assert recording_info(path) == {"rows": 2506, "pattern": "ticks.>", "gaps": [], "dropped": 0}
    frame = read_recording(path)
    assert list(frame.columns[:3]) == ["ts", "seq", "topic"]
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"  # as in sub.frame
    assert frame["i"].iloc[2499] == 2499 and frame["book.bid"].iloc[2500] == 101.4
    assert frame["value"].iloc[2502] == "a plain string"


def test_overflow_and_gaps_are_counted_never_silent(tmp_path: Path) -> None:
    path = tmp_path / "small.parquet"
    recorder = Recorder(path, row_group=10, max_buffered=10, flush_interval=60)
    recorder.add(p.Msg("t", 1, 1000.0, list(range(25))))  # more than may wait for the writer
    assert recorder.dropped == 15
    recorder.add_gap(p.Gap("t", 26, 30, "history_exceeded"))
    recorder.close()
    info = recording_info(path)
    assert info["gaps"] == [{"topic": "t", "first": 26, "last": 30, "reason": "history_exceeded"}]
    assert info["dropped"] == 15 and info["rows"] == 10


def _synthetic(path: Path, gaps: list[float]) -> None:
    """A recording whose records are ``gaps`` seconds apart."""
    recorder = Recorder(path)
    ts = 1_700_000_000.0
    for i, gap in enumerate([0.0, *gaps]):
        ts += gap
        recorder.add(p.Msg("orig", i + 1, ts, [{"i": i}]))
    recorder.close()


def test_replay_keeps_the_pacing_scaled_by_speed(tmp_path: Path, unit: float) -> None:
    path = tmp_path / "paced.parquet"
    _synthetic(path, [0.5, 0.5, 1.0])  # 2 s of recording
    with livenb.serve(port=0) as hub, hub.connect() as c:
        sub = c.subscribe("again")
        started = time.monotonic()
        assert replay(path, c, topic="again", speed=10, progress=False) == 4
        paced = time.monotonic() - started
        sub.wait(4, timeout=unit)
        assert sub.frame["i"].tolist() == [0, 1, 2, 3]
        started = time.monotonic()
        replay(path, c, topic="again", speed=0, progress=False)
        fast = time.monotonic() - started
        sub.wait(8, timeout=unit)
    assert paced >= 0.2  # 2 s / 10: it waited between records
    print(f"\nreplay: 2 s of records at speed 10 took {paced:.3f} s, at speed 0 {fast:.3f} s")


def test_record_and_replay_from_the_command_line(tmp_path: Path, unit: float) -> None:
    path = tmp_path / "cli.parquet"
    with livenb.serve(port=0) as hub:
        env = {"LIVENB_URL": hub.url, "LIVENB_TOKEN": str(hub.token), "PATH": "/usr/bin:/bin"}
        recorder = subprocess.Popen(
            [sys.executable, "-m", "livenb", "record", "cli.in", str(path), "--count", "300"],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert recorder.stderr is not None
        assert "recording cli.in" in recorder.stderr.readline()
        with hub.connect() as c:
            c.publish_many("cli.in", [{"n": i} for i in range(300)])
            c.flush()
        assert recorder.wait(4 * unit) == 0
        assert "wrote 300 records" in recorder.stderr.read()
        recorder.stderr.close()
        with hub.connect() as c:
            sub = c.subscribe("cli.out")
            result = subprocess.run(
                [sys.executable, "-m", "livenb", "replay", str(path), "--topic", "cli.out",
                 "--speed", "0"],
                env=env,
                capture_output=True,
                text=True,
                timeout=4 * unit,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            assert "300/300" in result.stderr  # the progress bar
            assert "published 300 records" in result.stderr
            sub.wait(300, timeout=unit)
            assert sub.frame["n"].tolist() == list(range(300))


def test_bad_recordings_get_clear_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.parquet"
    with pytest.raises(livenb.LivenbError, match="cannot read the recording"):
        read_recording(missing)
    other = tmp_path / "other.parquet"
    import pyarrow as pa

    pq.write_table(pa.table({"a": [1]}), other)
    with livenb.serve(port=0) as hub, hub.connect() as c, pytest.raises(
        livenb.LivenbError, match="not a livenb recording"
    ):
        replay(other, c, progress=False)
    with pytest.raises(livenb.LivenbError, match="cannot write"):
        Recorder(tmp_path / "no-such-dir" / "x.parquet")


def test_subscribe_with_record_misses_nothing_from_the_first_record(
    tmp_path: Path, unit: float
) -> None:
    """Records already flowing when the subscription starts are all in the file."""
    import threading

    path = tmp_path / "from-start.parquet"
    with livenb.serve(port=0) as hub, hub.connect() as publisher, hub.connect() as c:
        stop = threading.Event()

        def flood() -> None:
            while not stop.is_set():
                publisher.publish("busy", {"x": 1})

        worker = threading.Thread(target=flood)
        worker.start()
        try:
            sub = c.subscribe("busy", window=None, record=path)
            sub.wait(2000, timeout=unit)
        finally:
            stop.set()
            worker.join(unit)
        sub.close()  # finishes the file; nothing more is delivered after it
    assert recording_length(path) == sub.received  # every delivered record, none missing
    seqs = pq.read_table(path, columns=["seq"]).column("seq").to_pylist()
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # contiguous from the first


def test_closing_the_client_finishes_its_recordings(tmp_path: Path, unit: float) -> None:
    path = tmp_path / "client-close.parquet"
    with livenb.serve(port=0) as hub:
        c = hub.connect()
        sub = c.subscribe("t", record=path)
        c.publish_many("t", [{"i": i} for i in range(1000)])
        c.flush()
        sub.wait(1000, timeout=unit)
        c.close()  # not sub.close(): the client's end must finish the file too
    assert recording_length(path) == 1000  # readable: its footer was written


def test_a_script_that_exits_without_closing_keeps_its_recording(tmp_path: Path, unit: float) -> None:
    path = tmp_path / "at-exit.parquet"
    code = f"""
import livenb
hub = livenb.serve(port=0)
c = hub.connect()
sub = c.subscribe("t", record={str(path)!r})
for i in range(1000):
    c.publish("t", {{"i": i}})
c.flush()
sub.wait(1000, timeout=10)
# no close(): interpreter exit must finish the file
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=10 * unit, check=False)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert recording_info(path)["rows"] == 1000 and recording_info(path)["dropped"] == 0


def test_the_buffer_is_bounded_in_bytes_too(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "bytes.parquet", row_group=10, max_buffered=100,
                        max_buffered_bytes=1000, flush_interval=60)
    recorder.add(p.Msg("t", 1, 1.0, ["x" * 300] * 5))  # 302 bytes each as JSON
    assert recorder.dropped == 2  # three fit in 1,000 bytes
    recorder.close()
    assert recording_info(tmp_path / "bytes.parquet") == {
        "rows": 3, "pattern": "", "gaps": [], "dropped": 2,
    }
