"""livenb's widgets in real front ends, in a real Chromium: JupyterLab runs the quickstart and
its live table changes on screen; Voila renders the stock-ticker notebook and its table and
chart update."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .browser import ROOT, JupyterProcess, chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def distinct_texts(locator: Any, seconds: float) -> set[str]:
    """The texts ``locator`` showed while watched for ``seconds``."""
    seen = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen.add(locator.inner_text())
        time.sleep(0.1)
    return seen


def copy_notebook(name: str, tmp_path: Path) -> Path:
    """Front ends write checkpoints next to a notebook: give them a copy."""
    work = tmp_path / "nb"
    work.mkdir()
    shutil.copy(ROOT / "notebooks" / name, work / name)
    return work


def test_jupyterlab_runs_the_quickstart_and_the_table_moves(
    browser: Any, tmp_path: Path, unit: float
) -> None:
    work = copy_notebook("01-quickstart.ipynb", tmp_path)
    lab = JupyterProcess("lab", f"--ServerApp.root_dir={work}", cwd=work)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        lab.wait_ready(f"/api/status?token={lab.token}", 12 * unit)
        page.goto(f"{lab.base}/lab/tree/01-quickstart.ipynb?token={lab.token}")
        # The notebook says "idle" before its kernel is ready: wait for the status bar.
        page.get_by_text("(ipykernel) | Idle").wait_for(timeout=unit * 12_000)
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_text("Run All Cells", exact=True).click()
        table = page.locator(".livenb-table").first
        table.wait_for(timeout=unit * 12_000)
        texts = distinct_texts(table, 3.0)
        assert len(texts) >= 2, texts  # it moved while records arrived
        final = table.inner_text()
        assert "Pause" in final and "seq" in final and "rows received" in final
        page.locator(".livenb-chart canvas").first.wait_for(timeout=unit * 4_000)
        page.locator(".livenb-status").first.wait_for(timeout=unit * 4_000)
        page.get_by_text("(ipykernel) | Idle").wait_for(timeout=unit * 12_000)  # ran to the end
        assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
    finally:
        page.close()
        lab.close()


def test_voila_renders_the_ticker_and_it_updates(browser: Any, tmp_path: Path, unit: float) -> None:
    pytest.importorskip("voila", reason="voila is not installed")
    work = copy_notebook("02-stock-ticker.ipynb", tmp_path)
    voila = JupyterProcess("voila", str(work / "02-stock-ticker.ipynb"), cwd=work)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        voila.wait_listening(12 * unit)
        page.goto(f"{voila.base}/?token={voila.token}", timeout=unit * 24_000)
        table = page.locator(".livenb-table").first
        table.wait_for(timeout=unit * 24_000)
        chart = page.locator(".livenb-chart").first
        chart.wait_for(timeout=unit * 4_000)
        assert len(distinct_texts(table, 3.0)) >= 2
        assert len(distinct_texts(chart.locator(".livenb-info"), 3.0)) >= 2
    finally:
        page.close()
        voila.close()
