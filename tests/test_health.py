"""GET /healthz for load balancers, and the hub's file-descriptor limit."""

from __future__ import annotations

import http.client
import json
import resource
import subprocess
import sys

import livenb
from livenb._fdlimit import RESERVED, check_capacity, raise_soft_limit


def health(port: int) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/healthz")
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    return response.status, body


def test_healthz_is_200_while_serving_and_needs_no_token(hub: livenb.Hub) -> None:
    status, body = health(hub.port)
    assert (status, body) == (200, {"status": "ok", "reason": "ok"})
    assert hub.aio.healthy() == (True, "ok")


def test_healthz_is_503_when_the_journal_failed(tmp_path: object, unit: float) -> None:
    from pathlib import Path

    with livenb.serve(port=0, journal=Path(str(tmp_path)) / "hub.journal") as hub:
        journal = hub.aio._journal
        assert journal is not None
        journal.failure = OSError("disk full")  # what the writer thread records on failure
        status, body = health(hub.port)
        assert status == 503 and body == {"status": "unavailable", "reason": "the journal failed"}
        journal.failure = None


def test_the_hub_raises_its_soft_file_limit_as_far_as_allowed() -> None:
    # In a child process: the limit is process-wide.
    code = """
import resource, livenb
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
with livenb.serve(port=0, max_connections=5000) as hub:
    print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], hub.stats()["fd_limit"], hard)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    soft, reported, hard = (int(x) for x in result.stdout.split())
    expected = 5000 + RESERVED if hard == resource.RLIM_INFINITY else min(5000 + RESERVED, hard)
    assert soft == reported == expected


def test_the_limit_is_never_lowered() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert raise_soft_limit(1) == (soft, hard)
    assert check_capacity(0) == soft
