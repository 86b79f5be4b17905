"""History, resume and idempotent publishing in the pure hub core."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from livenb import _protocol as p
from livenb._history import Batch, HistoryLimits, TopicHistory, limits_for
from livenb._permissions import EVERYTHING
from livenb._producers import ProducerTable
from livenb._state import GAP_EPOCH_CHANGED, GAP_HISTORY_EXCEEDED, HubCore, Send


def out_for(c: HubCore, conn: int) -> list[dict[str, object]]:
    return [orjson.loads(a.frame) for a in c.drain() if isinstance(a, Send) and conn in a.targets]


def seqs_of(frames: list[dict[str, object]], topic: str | None = None) -> list[int]:
    seqs: list[int] = []
    for f in frames:
        if f["op"] == "msg" and (topic is None or f["topic"] == topic):
            n = len(f["batch"]) if "batch" in f else 1  # type: ignore[arg-type]
            seqs.extend(range(f["seq"], f["seq"] + n))  # type: ignore[arg-type,operator]
    return seqs


def publish(c: HubCore, topic: str, n: int, now: float = 1.0, conn: int = 9) -> None:
    c.receive(conn, orjson.dumps({"op": "pub", "topic": topic, "batch": list(range(n))} if n > 1 else {"op": "pub", "topic": topic, "data": 0}), now)


def make(**kwargs: object) -> HubCore:
    c = HubCore(**kwargs)  # type: ignore[arg-type]
    for conn in (1, 2, 9):
        c.open(conn, permissions=EVERYTHING)
    return c


def sub(c: HubCore, conn: int, topic: str, since: dict[str, object] | None, now: float = 2.0) -> None:
    msg: dict[str, object] = {"op": "sub", "topic": topic}
    if since is not None:
        msg["since"] = since
    c.receive(conn, orjson.dumps(msg), now)


def test_resume_within_history_replays_exactly_the_missed_records() -> None:
    c = make()
    for _ in range(5):
        publish(c, "t", 3)  # seqs 1..15 in batches of 3
    c.drain()
    sub(c, 1, "t", {"epoch": c.epoch, "seq": 7})
    frames = out_for(c, 1)
    assert frames[0] == {"op": "subscribed", "topic": "t", "epoch": c.epoch, "seq": 15, "recovered": True, "ts": 2.0}
    assert seqs_of(frames) == list(range(8, 16))  # the batch 7..9 is cut at 8
    publish(c, "t", 1)
    assert seqs_of(out_for(c, 1)) == [16]  # live continues right after the replay


def test_resume_beyond_history_reports_the_gap() -> None:
    c = make(history=HistoryLimits(records=5))
    for _ in range(10):
        publish(c, "t", 1)
    c.drain()
    sub(c, 1, "t", {"epoch": c.epoch, "seq": 2})
    frames = out_for(c, 1)
    assert frames[0]["recovered"] is False
    assert frames[1] == {"op": "gap", "topic": "t", "first": 3, "last": 5, "reason": GAP_HISTORY_EXCEEDED, "sub": "t"}
    assert seqs_of(frames) == [6, 7, 8, 9, 10]


def test_resume_after_epoch_change_reports_the_loss_and_replays_the_new_epoch() -> None:
    c = make()
    publish(c, "t", 2)
    c.drain()
    sub(c, 1, "t", {"epoch": "an-old-epoch", "seq": 40})
    frames = out_for(c, 1)
    assert frames[0]["recovered"] is False
    assert frames[1] == {"op": "gap", "topic": "t", "first": 41, "last": None, "reason": GAP_EPOCH_CHANGED, "sub": "t"}
    assert seqs_of(frames) == [1, 2]


def test_resume_when_up_to_date_replays_nothing() -> None:
    c = make()
    publish(c, "t", 4)
    c.drain()
    sub(c, 1, "t", {"epoch": c.epoch, "seq": 4})
    frames = out_for(c, 1)
    assert frames[0]["recovered"] is True and len(frames) == 1


def test_pattern_resume_uses_per_topic_positions_and_time_for_new_topics() -> None:
    c = make()
    publish(c, "a.x", 3, now=1.0)
    publish(c, "a.y", 2, now=1.0)
    publish(c, "a.z", 2, now=5.0)  # a topic created after the subscriber's last contact (ts 3)
    c.drain()
    sub(c, 1, "a.*", {"epoch": c.epoch, "topics": {"a.x": 1, "a.y": 2}, "ts": 3.0})
    frames = out_for(c, 1)
    assert frames[0]["recovered"] is True
    assert seqs_of(frames, "a.x") == [2, 3]
    assert seqs_of(frames, "a.y") == []
    assert seqs_of(frames, "a.z") == [1, 2]


def test_history_age_bound() -> None:
    c = make(history=HistoryLimits(age=10.0))
    publish(c, "t", 1, now=0.0)
    publish(c, "t", 1, now=20.0)
    c.drain()
    sub(c, 1, "t", {"epoch": c.epoch, "seq": 0}, now=21.0)
    frames = out_for(c, 1)
    assert frames[1]["op"] == "gap" and frames[1]["last"] == 1
    assert seqs_of(frames) == [2]


def test_history_rules_per_pattern_and_no_history() -> None:
    c = make(history=HistoryLimits(records=0), history_rules=[("keep.>", HistoryLimits(records=100))])
    publish(c, "keep.a", 3)
    publish(c, "drop", 3)
    c.drain()
    sub(c, 1, "keep.a", {"epoch": c.epoch, "seq": 0})
    assert seqs_of(out_for(c, 1)) == [1, 2, 3]
    sub(c, 1, "drop", {"epoch": c.epoch, "seq": 0})
    frames = out_for(c, 1)
    assert frames[1]["op"] == "gap" and seqs_of(frames) == []


def test_hub_wide_history_budget_evicts_oldest_first() -> None:
    c = make(history_total_bytes=2000)
    for i in range(50):
        publish(c, f"t{i % 3}", 1, now=float(i))
    assert c.history_bytes <= 2000


def test_retried_frame_is_stored_once_and_acked_again() -> None:
    c = make()
    c.receive(1, '{"op":"sub","topic":"t"}', 0.0)
    frame = '{"op":"pub","topic":"t","batch":[1,2],"id":1,"pid":"prod-A"}'
    c.receive(9, frame, 1.0)
    first = out_for(c, 9)
    c.drain()
    c.receive(9, frame, 2.0)  # the ack was lost: the producer sends the frame again
    again = out_for(c, 9)
    assert first == [{"op": "ack", "id": 1, "seq": 1, "count": 2}]
    assert again == [{"op": "ack", "id": 1, "seq": 1, "count": 2, "dup": True}]
    assert c.last_seq("t") == 2
    c.receive(9, '{"op":"pub","topic":"t","data":3,"id":2,"pid":"prod-A"}', 3.0)
    c.receive(2, '{"op":"pub","topic":"t","data":3,"id":1,"pid":"prod-B"}', 3.0)
    assert c.last_seq("t") == 4


def test_producer_table_is_bounded() -> None:
    table = ProducerTable(max_producers=2, recent=2)
    for pid in ("a", "b", "c"):
        table.stored(pid, 1, 1, 1)
    assert len(table) == 2 and table.forgotten == 1
    assert table.seen("a", 1) is None  # forgotten: would be stored again
    for i in range(1, 5):
        table.stored("b", i, i, 1)
    assert table.seen("b", 1) == (0, 0)  # stored, position no longer known
    assert table.seen("b", 4) == (4, 1)


def test_limits_for_first_matching_rule() -> None:
    a, b, d = HistoryLimits(records=1), HistoryLimits(records=2), HistoryLimits()
    rules = [("x.*", a), ("x.>", b)]
    assert limits_for("x.y", d, rules) is a
    assert limits_for("x.y.z", d, rules) is b
    assert limits_for("q", d, rules) is d


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=30), st.integers(1, 20), st.data())
def test_resume_is_exact_or_reports_a_gap(batches: list[int], keep: int, data: st.DataObject) -> None:
    c = make(history=HistoryLimits(records=keep))
    for n in batches:
        publish(c, "t", n)
    c.drain()
    total = sum(batches)
    seen = data.draw(st.integers(0, total))
    sub(c, 1, "t", {"epoch": c.epoch, "seq": seen})
    frames = out_for(c, 1)
    gaps = [f for f in frames if f["op"] == "gap"]
    covered = [s for g in gaps for s in range(g["first"], g["last"] + 1)]  # type: ignore[arg-type,operator]
    assert sorted(covered + seqs_of(frames)) == list(range(seen + 1, total + 1))
    assert frames[0]["recovered"] is (not gaps)


def test_topic_history_unit() -> None:
    h = TopicHistory(HistoryLimits(records=4, bytes=10**6, age=None))
    for first in (1, 3, 5):
        h.append(Batch(first, 0.0, 2, b"xx"), 0.0)
    assert h.records == 4 and h.first_seq(6) == 3
    assert [b.first for b in h.after(3)] == [3, 5]
    assert [b.first for b in h.after(4)] == [5]
    assert p.Gap("t", 1, None, "x") == p.decode_hub(p.encode(p.Gap("t", 1, None, "x")))


def test_pattern_resume_after_epoch_change_reports_every_known_topic() -> None:
    c = make()
    publish(c, "a.new", 2)  # the restarted hub knows only this topic so far
    c.drain()
    sub(c, 1, "a.*", {"epoch": "old", "topics": {"a.x": 7, "a.y": 3}, "ts": 1.0})
    frames = out_for(c, 1)
    assert frames[0]["recovered"] is False
    gaps = [(f["topic"], f["first"], f["last"], f["reason"]) for f in frames if f["op"] == "gap"]
    assert gaps == [("a.x", 8, None, GAP_EPOCH_CHANGED), ("a.y", 4, None, GAP_EPOCH_CHANGED)]
    assert seqs_of(frames, "a.new") == [1, 2]  # all of the new epoch came after the restart


def test_replayed_frames_are_marked_as_replay() -> None:
    c = make()
    publish(c, "t", 3)
    c.drain()
    sub(c, 1, "t", {"epoch": c.epoch, "seq": 0})
    sends = [a for a in c.drain() if isinstance(a, Send)]
    assert [s.replay for s in sends] == [False, True]
