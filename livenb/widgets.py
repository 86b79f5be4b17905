"""Live widgets: a table, a chart and a status panel that follow a subscription or a hub.

``sub.table()``, ``sub.chart(y="px")``, ``hub.status()`` and ``client.status()`` return these
widgets; as a cell's last line they display like any other widget (anywidget, with the
front-end code in ``livenb/static``, nothing loaded from the network). They receive data over
the Jupyter comm channel, so they work wherever the notebook's widgets work (JupyterLab,
Notebook 7, Voila, Binder), with no browser connection to the hub.

Updates are sent by the render pump (:mod:`livenb._pump`): at most ``rate`` a second per
widget (10 by default), at most ``max_messages`` a second for the whole kernel (200, see
:func:`configure`), only what is new since the previous update. A widget sends nothing
until a front end shows it (the front end says hello and gets a full snapshot), and
nothing while it is paused (the Pause button, or ``widget.paused = True``); on resume it
sends a fresh snapshot.

This module imports ipywidgets/anywidget; ``import livenb`` does not load it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from . import _pump
from ._views import (
    DEFAULT_MAX_POINTS,
    DEFAULT_STALE_AFTER,
    DEFAULT_TABLE_ROWS,
    ChartView,
    StatusView,
    TableView,
    Tail,
)

_STATIC = Path(__file__).parent / "static"
DEFAULT_STATUS_RATE = 2.0

__all__ = ["LiveChart", "LiveTable", "LiveWidget", "StatusPanel", "configure", "pump_stats"]


def configure(*, max_messages: float | None = None) -> None:
    """Set the kernel-wide cap on widget messages per second (default 200). Jupyter's server
    drops iopub messages above 1,000 a second, silently, so keep well below that."""
    if max_messages is not None:
        if not max_messages > 0:
            raise ValueError("max_messages must be > 0")
        _pump.pump().schedule.max_messages = max_messages
        _pump.pump().schedule.burst = max(1.0, max_messages / 10)


def pump_stats() -> dict[str, float | int]:
    """The render pump's counters: live views, messages sent (and per second), turns
    deferred by the kernel-wide cap, failures."""
    return _pump.pump().stats()


class LiveWidget(anywidget.AnyWidget):
    """Base of the live widgets: one view, served by the render pump."""

    _esm = _STATIC / "widgets.js"
    _css = _STATIC / "widgets.css"
    view_kind = traitlets.Unicode("").tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    paused = traitlets.Bool(False).tag(sync=True)
    height = traitlets.Int(300).tag(sync=True)

    def __init__(self, view: TableView | ChartView | StatusView, rate: float, **traits: Any) -> None:
        if not rate > 0:
            raise ValueError("rate (updates per second) must be > 0")
        super().__init__(**traits)
        self.rate = float(rate)
        self.view = view
        self.messages_sent = 0
        # Views showing this widget now: each says hello when it renders and bye when it is
        # removed (a re-run cell, a closed notebook), so a widget nobody sees sends nothing.
        self.views = 0
        self._lock = threading.Lock()
        self._reset = False  # a view asked for a full snapshot; taken by the pump
        self.on_msg(self._on_front_end)
        self.observe(self._on_pause, names="paused")
        self._pump = _pump.pump()
        self._pump.add(self)

    # ---------------------------------------------------------------- front end -> kernel
    def _on_front_end(self, _widget: Any, content: Mapping[str, Any], _buffers: Any) -> None:
        kind = content.get("type") if isinstance(content, Mapping) else None
        if kind == "bye":
            with self._lock:
                self.views = max(0, self.views - 1)
        elif kind in ("hello", "resync"):
            with self._lock:
                if kind == "hello":
                    self.views += 1
                self._reset = True
            self._pump.wake(self)

    def _on_pause(self, change: Mapping[str, Any]) -> None:
        if not change["new"]:  # resumed: a fresh snapshot rather than the backlog
            with self._lock:
                self._reset = True
            self._pump.wake(self)

    # ---------------------------------------------------------------- pump thread only
    def pump(self) -> int:
        """Send this widget's update, if any (called by the pump thread only)."""
        if self.paused or not self.views:
            return 0
        with self._lock:  # taken and cleared at once: a request arriving now is kept
            reset, self._reset = self._reset, False
        try:
            message = self.view.update(reset=reset)
        except Exception:
            if reset:  # the snapshot is still owed
                with self._lock:
                    self._reset = True
            raise
        if message is None:
            return 0
        self.send(message)
        self.messages_sent += 1
        return 1

    def __repr__(self) -> str:
        state = " paused" if self.paused else ""
        return f"<{type(self).__name__} {self.title!r} rate={self.rate:g}/s{state}>"

    def close(self) -> None:
        pump = getattr(self, "_pump", None)  # absent when __init__ failed
        if pump is not None:
            pump.remove(self)
        super().close()


class LiveTable(LiveWidget):
    """The newest ``rows`` rows of a subscription's window, newest first."""

    def __init__(
        self,
        source: Tail,
        *,
        rows: int = DEFAULT_TABLE_ROWS,
        columns: Sequence[str] | None = None,
        rate: float = _pump.DEFAULT_RATE,
        title: str = "",
    ) -> None:
        super().__init__(TableView(source, rows, columns), rate, view_kind="table", title=title)


class LiveChart(LiveWidget):
    """Line chart of ``y`` (one or more numeric fields) against ``x`` over the window."""

    def __init__(
        self,
        source: Tail,
        *,
        x: str = "ts",
        y: str | Sequence[str] | None = None,
        max_points: int = DEFAULT_MAX_POINTS,
        height: int = 300,
        rate: float = _pump.DEFAULT_RATE,
        title: str = "",
        window_rows: int = 1_000_000,
        mode: str = "lines",
    ) -> None:
        view = ChartView(source, x, y, max_points, window_rows, mode)
        super().__init__(view, rate, view_kind="chart", title=title, height=height)


class StatusPanel(LiveWidget):
    """Health of a hub or a client: connections, rates, latency, reconnects, gaps, drops, and
    a "stale" mark when no records moved for ``stale_after`` seconds."""

    def __init__(
        self,
        stats: Callable[[], Mapping[str, Any]],
        kind: str,
        *,
        stale_after: float = DEFAULT_STALE_AFTER,
        rate: float = DEFAULT_STATUS_RATE,
        title: str = "",
    ) -> None:
        super().__init__(StatusView(stats, kind, stale_after), rate, view_kind="status", title=title)
