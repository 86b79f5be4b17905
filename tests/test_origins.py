"""Origin allowlists, the exposure guard and the connection cap."""

from __future__ import annotations

import asyncio
import logging

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import livenb
from livenb import AsyncClient, AsyncHub
from livenb._origins import allowlist, is_loopback, origin_allowed, parse_origin


@pytest.mark.parametrize(
    ("origin", "parsed"),
    [
        ("http://localhost:8888", ("http", "localhost", 8888)),
        ("HTTPS://Example.com", ("https", "example.com", 443)),
        ("http://127.0.0.1", ("http", "127.0.0.1", 80)),
        ("https://[::1]:9000", ("https", "::1", 9000)),
        ("null", None),
        ("file://", None),
        ("http://user:pw@example.com", None),
        ("http://example.com/path", None),
        ("http://example.com:99999", None),
        ("javascript:alert(1)", None),
    ],
)
def test_parse_origin(origin: str, parsed: tuple[str, str, int] | None) -> None:
    assert parse_origin(origin) == parsed


def test_matching_is_exact_never_by_suffix_or_substring() -> None:
    allowed = allowlist(["https://example.com", "http://localhost:8888"])
    assert origin_allowed("https://example.com", allowed)
    assert origin_allowed("https://example.com:443", allowed)  # the default port, spelled out
    assert origin_allowed(None, allowed)  # not a browser
    for evil in (
        "https://evil-example.com",
        "https://example.com.evil.net",
        "https://sub.example.com",
        "http://example.com",  # another scheme
        "https://example.com:8443",  # another port
        "http://localhost:8889",
        "http://localhost",
        "null",
    ):
        assert not origin_allowed(evil, allowed), evil


def test_allowlist_rejects_non_origins() -> None:
    with pytest.raises(ValueError, match="not an origin"):
        allowlist(["example.com"])


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("example.com", False)],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


async def test_wrong_origin_gets_403_and_no_data(unit: float) -> None:
    async with AsyncHub(port=0, origins=["http://localhost:8888"]) as hub:
        headers = {"Authorization": f"Bearer {hub.token}"}
        with pytest.raises(InvalidStatus) as info:
            async with connect(hub.url, origin="http://evil.example", additional_headers=headers):  # type: ignore[arg-type]
                pass
        assert info.value.response.status_code == 403
        with pytest.raises(InvalidStatus) as suffix:
            async with connect(hub.url, origin="http://localhost:88889", additional_headers=headers):  # type: ignore[arg-type]
                pass
        assert suffix.value.response.status_code == 403
        async with connect(hub.url, origin="http://localhost:8888", additional_headers=headers) as ws:  # type: ignore[arg-type]
            await ws.send('{"op":"ping"}')
            assert await asyncio.wait_for(ws.recv(), unit) == '{"op":"pong"}'
        async with AsyncClient(hub.url, hub.token) as c:  # no Origin: not a browser
            assert await c.publish("t", 1, ack=True) == 1
        assert hub.stats()["refused"]["origin"] == 2


async def test_browsers_are_refused_by_default(unit: float) -> None:
    async with AsyncHub(port=0) as hub:
        with pytest.raises(InvalidStatus) as info:
            async with connect(hub.url, origin="http://localhost:8888"):  # type: ignore[arg-type]
                pass
        assert info.value.response.status_code == 403


def test_non_loopback_bind_is_refused_without_insecure() -> None:
    with pytest.raises(livenb.LivenbError, match="insecure=True"):
        livenb.AsyncHub("0.0.0.0", port=0)


def test_insecure_bind_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="livenb"), livenb.serve("0.0.0.0", port=0, insecure=True) as hub:
        assert hub.running
    assert any("insecure=True" in r.getMessage() for r in caplog.records)
    assert all(hub.token not in r.getMessage() for r in caplog.records)  # never a token in a log


async def test_connections_above_the_cap_get_503(unit: float) -> None:
    async with AsyncHub(port=0, max_connections=2) as hub:
        async with AsyncClient(hub.url, hub.token) as a, AsyncClient(hub.url, hub.token) as b:
            with pytest.raises(livenb.HubUnreachableError, match="503"):
                await AsyncClient(hub.url, hub.token).connect()
            assert await a.publish("t", 1, ack=True) == 1
            assert await b.publish("t", 2, ack=True) == 2
        assert hub.stats()["refused"]["capacity"] == 1


async def test_a_flooding_client_is_limited_and_others_lose_nothing(unit: float) -> None:
    async with (
        AsyncHub(port=0, rate_limit=1000.0) as hub,
        AsyncClient(hub.url, hub.token) as watcher,
        AsyncClient(hub.url, hub.token) as good,
    ):
        sub = watcher.subscribe("t", window=None)
        await sub.wait_ready()
        headers = {"Authorization": f"Bearer {hub.token}"}
        async with connect(hub.url, additional_headers=headers) as flooder:
            batch = ",".join(["1"] * 100)
            for _ in range(200):  # 20,000 records at once: 10x what 1,000/s allows
                await flooder.send('{"op":"pub","topic":"t","batch":[' + batch + "]}")
                await good.publish("t", {"ok": True})
            await good.flush()
            refusals = 0
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(2 * unit):
                    while True:
                        if '"rate_limited"' in str(await flooder.recv()):
                            refusals += 1
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
            assert refusals >= 1
        assert hub.stats()["rate_limited_records"] >= 10_000
        # The well-behaved publisher lost nothing.
        assert good.stats()["records_acked"] == 200 and good.stats()["errors"] == 0
