"""The hub's own page over plain HTTP, its origin rules, and browser_url()."""

from __future__ import annotations

import http.client

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

import livenb
from livenb import AsyncHub


def get(port: int, path: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path)
    response = conn.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    conn.close()
    return response


def test_the_page_and_the_client_are_served(hub: livenb.Hub) -> None:
    ahub = hub.aio  # served on livenb's loop thread, so blocking HTTP calls are fine here
    key_path = ahub.browser_url().split(str(ahub.port), 1)[1]
    for path, kind, needle in [
        ("/", "text/html", b"<title>livenb hub</title>"),
        (key_path, "text/html", b'src="page.js"'),
        (key_path + "page.js", "text/javascript", b'from "./livenb.js"'),
        ("/livenb.js", "text/javascript", b"export class LivenbClient"),
        ("/proxy/8765/livenb.js?v=1", "text/javascript", b"export class LivenbClient"),
    ]:
        response = get(ahub.port, path)
        assert response.status == 200, path
        assert response.getheader("Content-Type", "").startswith(kind)
        assert needle in response.body  # type: ignore[attr-defined]
        csp = response.getheader("Content-Security-Policy", "")
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert response.getheader("X-Content-Type-Options") == "nosniff"
    assert ahub.token is not None
    assert ahub.token.encode() not in get(ahub.port, "/").body  # type: ignore[attr-defined]
    missing = get(ahub.port, "/etc/passwd")
    assert missing.status == 404


async def _status(url: str, origin: str, host: str | None = None) -> int:
    headers = {"Origin": origin}
    if host is not None:
        headers["Host"] = host
    try:
        async with connect(url, additional_headers=headers):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_the_hubs_own_origin_is_allowed_and_nothing_else(ahub: AsyncHub) -> None:
    port = ahub.port
    base = f"ws://127.0.0.1:{port}/"
    assert await _status(base, f"http://127.0.0.1:{port}") == 101
    assert await _status(base, f"http://localhost:{port}") == 101
    assert await _status(base, f"http://127.0.0.1:{port + 1}") == 403  # another port
    assert await _status(base, f"https://127.0.0.1:{port}") == 403  # another scheme
    # DNS rebinding: the attacker's name resolves to 127.0.0.1; Origin and Host agree.
    assert await _status(base, f"http://evil.example:{port}", f"evil.example:{port}") == 403
    # Behind a proxy (jupyter-server-proxy keeps the browser's Origin): the page key's path.
    key_url = base + ahub.browser_url().split(f"{port}/", 1)[1]
    assert await _status(key_url, "https://hub.example.org") == 101
    assert await _status(base + "p/not-the-key/", "https://hub.example.org") == 403
    assert ahub.stats()["refused"]["origin"] == 4


async def test_the_page_still_needs_the_token(ahub: AsyncHub, unit: float) -> None:
    url = f"ws://127.0.0.1:{ahub.port}/"
    async with connect(url, additional_headers={"Origin": f"http://127.0.0.1:{ahub.port}"}) as ws:
        await ws.send('{"op":"sub","topic":"t"}')  # no auth message first
        with pytest.raises(Exception, match="4401"):
            await ws.recv()
    async with connect(url, additional_headers={"Origin": f"http://127.0.0.1:{ahub.port}"}) as ws:
        await ws.send(orjson.dumps({"op": "auth", "token": ahub.token}).decode())
        await ws.send('{"op":"ping"}')
        assert orjson.loads(await ws.recv()) == {"op": "pong"}


def test_browser_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    with livenb.serve(port=0) as hub:
        url = hub.browser_url()
        assert url.startswith(f"http://127.0.0.1:{hub.port}/p/") and url.endswith("/")
        assert "#token=" not in url
        assert hub.browser_url(token=True) == f"{url}#token={hub.token}"
        monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ada/")
        proxied = hub.browser_url()
        assert proxied == f"/user/ada/proxy/{hub.port}/" + url.split(f"{hub.port}/", 1)[1]
    with livenb.serve(port=0, tls=True) as tls_hub:
        monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX")
        assert tls_hub.browser_url().startswith(f"https://127.0.0.1:{tls_hub.port}/p/")
