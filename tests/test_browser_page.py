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


def test_the_browser_client_resumes_after_a_hub_restart(
    browser: Any, tmp_path: Any, unit: float
) -> None:
    """livenb.js in Chromium: a restarted hub (same journal) is reconnected to; the watched
    topic resumes with nothing lost or repeated, and a publish made while it was down is
    stored exactly once."""
    from .faults import free_port

    port = free_port()
    journal = tmp_path / "hub.journal"
    hub = livenb.serve(port=port, journal=journal)
    token = hub.token
    page = browser.new_page()
    try:
        page.goto(hub.browser_url(token=True))
        page.wait_for_selector("#status.open", timeout=unit * 2000)
        page.click("#watch")
        page.wait_for_selector("#log li:has-text('subscribed to demo')", timeout=unit * 1000)
        with hub.connect() as c:
            for n in (1, 2, 3):
                c.publish("demo", {"n": n}, ack=True)
        page.wait_for_selector("#log li:has-text('#3 ')", timeout=unit * 2000)
        hub.close()
        page.wait_for_selector("#status.error", timeout=unit * 2000)  # reconnecting
        page.fill("#record", '{"n": 4, "while": "down"}')
        page.click("#publish")  # kept until the hub is back, then sent once
        hub = livenb.serve(port=port, journal=journal, token=token)
        page.wait_for_selector("#result:has-text('stored as seq 4')", timeout=unit * 4000)
        with hub.connect() as c:
            c.publish("demo", {"n": 5}, ack=True)
        page.wait_for_selector("#log li:has-text('#5 ')", timeout=unit * 2000)
        log = page.locator("#log li").all_inner_texts()
        seqs = [int(text.split("#")[1].split()[0]) for text in log if text.startswith("demo #")]
        assert sorted(seqs) == [1, 2, 3, 4, 5]  # each once: resumed, not replayed again
        stats = page.evaluate("window.livenbPage.client.stats")
        assert stats["reconnects"] >= 1 and stats["gaps"] == 0
    finally:
        page.close()
        hub.close()
