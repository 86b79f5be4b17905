"""The journal on its own: durable batches, reload after a restart, retention."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

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


def test_a_new_journal_is_private_to_its_owner(tmp_path: Path) -> None:
    previous = os.umask(0o022)  # the usual umask, which would give 0644
    try:
        path = tmp_path / "hub.journal"
        durable = threading.Event()
        journal = Journal(path, lambda t: LIMITS, lambda group: durable.set())
        journal.start()
        journal.submit(Persist(1, "a", 1, 1.0, [{"x": 1}], None, None))
        assert durable.wait(10)
        files = sorted(f.name for f in tmp_path.iterdir())
        assert files == ["hub.journal", "hub.journal-shm", "hub.journal-wal"]
        for name in files:  # SQLite's -wal and -shm files follow the database's mode
            mode = (tmp_path / name).stat().st_mode
            assert mode & 0o077 == 0, (name, oct(mode))
        journal.close()
    finally:
        os.umask(previous)


def test_an_existing_world_readable_journal_gets_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "hub.journal"
    Journal.load(path, lambda t: LIMITS)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="livenb.journal"):
        Journal.load(path, lambda t: LIMITS)
    assert "can be read by other users (mode 644)" in caplog.text
    assert path.stat().st_mode & 0o777 == 0o644  # left as the owner set it
