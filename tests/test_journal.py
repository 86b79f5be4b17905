"""The journal on its own: durable batches, reload after a restart, retention."""

from __future__ import annotations

import threading
from pathlib import Path

from livenb._history import HistoryLimits
from livenb._journal import Journal
from livenb._state import Persist

LIMITS = HistoryLimits(records=5)


def write(path: Path, batches: list[Persist]) -> None:
    done = threading.Event()
    written: list[Persist] = []

    def on_durable(group: list[Persist]) -> None:
        written.extend(group)
        if len(written) == len(batches):
            done.set()

    journal = Journal(path, lambda topic: LIMITS, on_durable)
    journal.start()
    for batch in batches:
        journal.submit(batch)
    assert done.wait(10)
    journal.close()
    assert written == batches  # in order, each once


def test_reload_gives_epoch_last_seqs_recent_records_and_producers(tmp_path: Path) -> None:
    path = tmp_path / "hub.journal"
    epoch = Journal.load(path, lambda t: LIMITS).epoch
    write(
        path,
        [
            Persist(1, "a", 1, 10.0, [{"x": 1}, {"x": 2}], 1, "p1"),
            Persist(1, "a", 3, 11.0, [{"x": 3}], 2, "p1"),
            Persist(2, "b", 1, 12.0, ["text"], 7, "p2"),
        ],
    )
    state = Journal.load(path, lambda t: LIMITS)
    assert state.epoch == epoch  # the same epoch across restarts
    assert state.last_seq == {"a": 3, "b": 1}
    assert state.recent["a"] == [(1, 10.0, {"x": 1}), (2, 10.0, {"x": 2}), (3, 11.0, {"x": 3})]
    assert state.recent["b"] == [(1, 12.0, "text")]
    assert state.producers == {"p1": 2, "p2": 7}


def test_retention_keeps_the_last_seq(tmp_path: Path) -> None:
    path = tmp_path / "hub.journal"
    write(path, [Persist(1, "a", i, 1.0, [i], None, None) for i in range(1, 21)])
    state = Journal.load(path, lambda t: LIMITS)
    assert state.last_seq == {"a": 20}
    assert [seq for seq, _, _ in state.recent["a"]] == [16, 17, 18, 19, 20]


def test_a_new_journal_file_gets_a_new_epoch(tmp_path: Path) -> None:
    one = Journal.load(tmp_path / "one", lambda t: LIMITS).epoch
    two = Journal.load(tmp_path / "two", lambda t: LIMITS).epoch
    assert one != two
