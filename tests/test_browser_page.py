"""The hub's page in a real Chromium: a record published from the page reaches a Python
subscriber, and Python records reach the page, directly and through jupyter-server-proxy."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import livenb

from .browser import JupyterProcess, chromium, need_chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def exchange(browser: Any, hub: livenb.Hub, url: str, unit: float) -> None:
    """Open the page at ``url``, publish from it, watch a topic in it."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        with hub.connect() as client:
            sub = client.subscribe("demo")
            page.goto(url)
            page.wait_for_selector("#status.open", timeout=unit * 2000)
            assert "#token=" not in page.url  # the page takes the token out of the address bar
            page.fill("#record", '{"text": "from the browser", "n": 1}')
            page.click("#publish")
            page.wait_for_selector("#result:has-text('stored as seq 1')", timeout=unit * 2000)
            sub.wait(1, timeout=unit)
            assert sub.frame[["text", "n"]].to_dict("records") == [{"text": "from the browser", "n": 1}]
            page.click("#watch")
            page.wait_for_selector("#log li:has-text('subscribed to demo')", timeout=unit * 1000)
            client.publish("demo", {"from": "python"}, ack=True)
            page.wait_for_selector("#log li:has-text('\"from\":\"python\"')", timeout=unit * 2000)
        assert errors == []
    finally:
        page.close()


def test_the_hub_page_publishes_and_watches(browser: Any, unit: float) -> None:
    with livenb.serve(port=0) as hub:
        exchange(browser, hub, hub.browser_url(token=True), unit)


def test_the_hub_page_works_through_jupyter_server_proxy(
    browser: Any, unit: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    need_chromium()
    pytest.importorskip("jupyter_server_proxy", reason="jupyter-server-proxy is not installed")
    server = JupyterProcess("server")
    try:
        server.wait_ready(f"/api/status?token={server.token}", 12 * unit)
        monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/")  # as on JupyterHub and Binder
        with livenb.serve(port=0) as hub:
            path = hub.browser_url(token=True)
            assert path.startswith(f"/proxy/{hub.port}/p/")
            # Jupyter's own login: its token in the query once, then its cookie.
            page_path, fragment = path.split("#", 1)
            url = f"{server.base}{page_path}?token={server.token}#{fragment}"
            exchange(browser, hub, url, unit)
            assert hub.stats()["refused"]["origin"] == 0
    finally:
        server.close()
