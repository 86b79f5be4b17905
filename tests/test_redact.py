"""Tokens never reach a log: livenb's websockets loggers mask headers and auth messages."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest
from websockets.asyncio.client import connect

from livenb import AsyncClient, AsyncHub
from livenb._redact import redact

from .conftest import _TokenLeakWatch


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        ("< Authorization: Bearer abc.DEF-123", "< Authorization: ***"),
        ("> authorization:Basic dXNlcjpwYXNz", "> authorization:***"),
        (
            r"""< TEXT '{"op":"auth","token":"s3cr\"et"}' [30 bytes]""",
            "< TEXT '***' [30 bytes]",  # an auth frame is masked whole
        ),
        (  # cut short by websockets' frame summary
            r"""< TEXT '{"op":"auth","token":"abcdefgh...' [900 bytes]""",
            "< TEXT '***' [900 bytes]",
        ),
        ("GET /?topic=t&token=abc123 HTTP/1.1", "GET /?topic=t&token=*** HTTP/1.1"),
        (  # cut in the middle by websockets: the token is there without its label
            r"""< TEXT '{"op": "auth", "client": "grafana-dashboard-xxx..."team-secret-2024-abc"}' [120 bytes]""",
            "< TEXT '***' [120 bytes]",
        ),
        (
            r"""< TEXT '{"op":"auth","token" :\n"team-secret-2024-abc"}' [45 bytes]""",
            "< TEXT '***' [45 bytes]",
        ),
        (r"""x {"token" :\n"abc"}""", r"""x {"token" :\n"***"}"""),
        ("sent bearer xyz to the hub", "sent bearer *** to the hub"),
        ('{"op":"pub","topic":"t","data":{"tokens":3}}', '{"op":"pub","topic":"t","data":{"tokens":3}}'),
    ],
)
def test_redact(line: str, masked: str) -> None:
    assert redact(line) == masked


async def test_debug_traffic_logs_mask_both_token_paths(
    no_token_in_logs: _TokenLeakWatch, caplog: pytest.LogCaptureFixture, unit: float
) -> None:
    caplog.set_level(logging.DEBUG, logger="livenb")
    async with AsyncHub(port=0) as hub:
        async with AsyncClient(hub.url, hub.token) as client:  # header path
            assert await client.publish("t", 1, ack=True) == 1
        async with connect(hub.url) as ws:  # first-message path, as a browser does it
            await ws.send(orjson.dumps({"op": "auth", "token": hub.token}).decode())
            await ws.send('{"op":"ping"}')
            await asyncio.wait_for(ws.recv(), unit)
        token = hub.token
    assert token is not None
    text = "\\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)
    # The traffic was logged (so the check below means something), with the token masked.
    assert "livenb.hub.websockets < Authorization: ***" in text
    assert "livenb.client.websockets > Authorization: ***" in text
    assert "< TEXT '***'" in text  # the auth frame, masked whole
    assert token not in text
    assert no_token_in_logs.records > 10 and not no_token_in_logs.leaks
