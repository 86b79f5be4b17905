"""Live widgets in one process: what they send, when, and how much (front end simulated)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import livenb
from livenb.widgets import LiveWidget, pump_stats

from .helpers import wait_until


class Sent:
    """Captures what a widget sends to its front end, and plays the front end's part."""

    def __init__(self, widget: LiveWidget) -> None:
        self.widget = widget
        self.messages: list[dict[str, Any]] = []
        widget.send = self._capture  # type: ignore[method-assign]

    def _capture(self, content: dict[str, Any], buffers: Any = None) -> None:
        self.messages.append(content)

    def hello(self) -> None:
        self.widget._on_front_end(self.widget, {"type": "hello"}, [])


@pytest.fixture
def hub() -> Iterator[livenb.Hub]:
    with livenb.serve(port=0) as h:
        yield h


def test_widgets_display_as_widgets(hub: livenb.Hub) -> None:
    with hub.connect() as c:
        sub = c.subscribe("t")
        for widget, kind in ((sub.table(), "table"), (sub.chart(y="px"), "chart"),
                             (hub.status(), "status"), (c.status(), "status")):
            bundle = widget._repr_mimebundle_()
            assert "application/vnd.jupyter.widget-view+json" in bundle[0]
            assert widget.view_kind == kind
            assert "static" not in widget._esm and "export default" in widget._esm  # shipped inline
            widget.close()


def test_nothing_is_sent_before_a_front_end_shows_the_widget(hub: livenb.Hub, unit: float) -> None:
    with hub.connect() as c:
        sub = c.subscribe("t")
        table = sub.table(rows=5)
        sent = Sent(table)
        for i in range(10):
            c.publish("t", {"i": i})
        c.flush()
        sub.wait(10, timeout=unit)
        time.sleep(0.3)
        assert sent.messages == []
        sent.hello()
        wait_until(lambda: len(sent.messages) == 1, unit, "the snapshot")
        first = sent.messages[0]
        assert first["reset"] and [row[2] for row in first["rows"]] == [5, 6, 7, 8, 9]
        table.close()


def test_only_new_rows_follow_and_positions_chain(hub: livenb.Hub, unit: float) -> None:
    with hub.connect() as c:
        sub = c.subscribe("t")
        table = sub.table(rows=1000)
        sent = Sent(table)
        sent.hello()
        wait_until(lambda: sent.messages, unit, "the snapshot")
        for i in range(300):
            c.publish("t", {"i": i})
            if i % 50 == 0:
                c.flush()
                time.sleep(0.12)  # let the pump see several updates
        c.flush()
        wait_until(lambda: sent.messages[-1]["n"] == 300, unit, "all rows sent")
        table.close()
    position = 0
    seen = []
    for message in sent.messages:
        assert message["prev"] == position  # each continues the previous one
        position = message["n"]
        seen += [row[2] for row in message["rows"]]
    assert seen == list(range(300))  # every row once, none twice
    assert len(sent.messages) > 3


def test_a_flood_is_sent_at_the_widget_rate(hub: livenb.Hub, unit: float) -> None:
    with hub.connect() as c:
        sub = c.subscribe("ticks", window=10_000)
        table, chart = sub.table(rows=20, rate=10), sub.chart(y="px", rate=10)
        sent = [Sent(table), Sent(chart)]
        for s in sent:
            s.hello()
        started = time.monotonic()
        total = 0
        while time.monotonic() - started < 1.5:
            c.publish_many("ticks", [{"px": float(i)} for i in range(1000)])
            total += 1000
        c.flush()
        sub.wait(total, timeout=4 * unit)
        elapsed = time.monotonic() - started
        time.sleep(0.3)
        table.close()
        chart.close()
    for s in sent:
        # about 10 a second, never one per record
        assert len(s.messages) <= 10 * (elapsed + 0.5) + 2, len(s.messages)
        assert all(len(m.get("rows", m.get("x", []))) <= 10_000 for m in s.messages)
    assert max(len(m["rows"]) for m in sent[0].messages) <= 20
    assert max(len(m["x"]) for m in sent[1].messages) <= 2000
    assert total >= 1000


def test_pause_stops_updates_and_resume_sends_a_fresh_snapshot(hub: livenb.Hub, unit: float) -> None:
    with hub.connect() as c:
        sub = c.subscribe("t")
        table = sub.table(rows=3)
        sent = Sent(table)
        sent.hello()
        wait_until(lambda: sent.messages, unit, "the snapshot")
        table.paused = True
        before = len(sent.messages)
        for i in range(20):
            c.publish("t", {"i": i})
        c.flush()
        sub.wait(20, timeout=unit)
        time.sleep(0.3)
        assert len(sent.messages) == before
        table.paused = False
        wait_until(lambda: len(sent.messages) > before, unit, "the snapshot after resume")
        resumed = sent.messages[before]
        assert resumed["reset"] and [row[2] for row in resumed["rows"]] == [17, 18, 19]
        table.close()


def test_status_panels_report_health(hub: livenb.Hub, unit: float) -> None:
    with hub.connect() as c:
        panel = hub.status(stale_after=0.5)
        client_panel = c.status()
        sent, client_sent = Sent(panel), Sent(client_panel)
        sent.hello()
        client_sent.hello()
        wait_until(lambda: sent.messages and client_sent.messages, unit, "the first status")
        fields = sent.messages[0]["fields"]
        assert fields["connections"] == 1 and fields["url"] == hub.url and fields["auth"] is True
        assert client_sent.messages[0]["fields"]["connected"] is True
        wait_until(lambda: sent.messages[-1]["stale"], unit, "the stale mark")
        c.publish("t", 1, ack=True)
        wait_until(lambda: not sent.messages[-1]["stale"], unit, "fresh again")
        panel.close()
        client_panel.close()


def test_a_subscription_without_a_window_has_no_table(hub: livenb.Hub) -> None:
    with hub.connect() as c:
        sub = c.subscribe("t", window=None)
        with pytest.raises(livenb.LivenbError, match="window=None"):
            sub.table()
    assert pump_stats()["max_messages"] > 0


def test_a_widget_nobody_shows_any_more_sends_nothing(hub: livenb.Hub, unit: float) -> None:
    """A re-run cell leaves its old widget behind: when its view says bye, it stops."""
    with hub.connect() as c:
        sub = c.subscribe("t")
        old, new = sub.table(), sub.table()
        sent_old, sent_new = Sent(old), Sent(new)
        for s in (sent_old, sent_new):
            s.hello()
        wait_until(lambda: sent_old.messages and sent_new.messages, unit, "the snapshots")
        old._on_front_end(old, {"type": "bye"}, [])  # its cell was re-run
        assert (old.views, new.views) == (0, 1)
        before = len(sent_old.messages)
        for i in range(50):
            c.publish("t", {"i": i})
        c.flush()
        sub.wait(50, timeout=unit)
        wait_until(lambda: sent_new.messages[-1]["n"] == 50, unit, "the visible table updated")
        assert len(sent_old.messages) == before
        old.close()
        new.close()
