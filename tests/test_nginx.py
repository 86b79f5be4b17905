"""The nginx configuration in deploy/ in front of a real hub: TLS termination, WebSocket
upgrade, /healthz, and a client that reconnects through nginx when its hub goes away."""

from __future__ import annotations

import http.client
import re
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import livenb

from .faults import HubProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class Nginx:
    """deploy/nginx.conf with its marked values filled in, run in the foreground."""

    def __init__(self, tmp: Path, hubs: list[int], *, failover: bool = False) -> None:
        """``failover``: every client goes to the first hub while it lives, the others are
        backups (instead of hashing), so a test knows which hub to kill."""
        if not Path(NGINX).exists():
            pytest.skip("nginx is not installed (apt-get install nginx)")
        trustme = pytest.importorskip("trustme")
        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1")
        cert.private_key_and_cert_chain_pem.write_to_path(str(tmp / "hub.pem"))
        ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
        self.cafile = tmp / "ca.pem"
        self.port = free_port()
        conf = (ROOT / "deploy" / "nginx.conf").read_text()
        servers = "\n".join(
            f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=5s{' backup' if failover and i else ''};"
            for i, port in enumerate(hubs)
        )
        if failover:
            conf = conf.replace("        hash $remote_addr consistent;\n", "")
        conf = re.sub(r"(?m)^        server 127\.0\.0\.1:\d+ .*\n", "", conf)
        conf = conf.replace("        keepalive 32;", servers + "\n        keepalive 32;")
        conf = conf.replace("listen 443 ssl;", f"listen 127.0.0.1:{self.port} ssl;")
        conf = conf.replace("/etc/ssl/livenb/fullchain.pem", str(tmp / "hub.pem"))
        conf = conf.replace("/etc/ssl/livenb/privkey.pem", str(tmp / "hub.pem"))
        conf = conf.replace("worker_processes auto;", "worker_processes 1;")
        (tmp / "logs").mkdir()
        (tmp / "nginx.conf").write_text(conf)
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf"),
             "-g", f"daemon off; pid {tmp / 'nginx.pid'}; error_log {tmp / 'logs' / 'error.log'};"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.url = f"wss://localhost:{self.port}"
        self.tmp = tmp

    def wait(self, timeout: float) -> None:
        context = ssl.create_default_context(cafile=str(self.cafile))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(self.proc.stdout.read().decode() if self.proc.stdout else "nginx exited")
            conn = http.client.HTTPSConnection("localhost", self.port, timeout=2, context=context)
            try:
                conn.request("GET", "/healthz")
                if conn.getresponse().status in (200, 503):
                    return
            except OSError:
                time.sleep(0.1)
            finally:
                conn.close()
        raise AssertionError("nginx did not come up")

    def close(self) -> None:
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def hub_process() -> Iterator[HubProcess]:
    hub = HubProcess(token="shared-token-behind-nginx-0123456789")
    try:
        yield hub
    finally:
        hub.close()


def test_the_shipped_config_keeps_what_livenb_needs() -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert "hash $remote_addr consistent;" in conf
    seconds = int(re.search(r"proxy_read_timeout (\d+)s;", conf).group(1))  # type: ignore[union-attr]
    assert seconds > 40  # longer than livenb's ping interval plus its timeout


def test_a_client_works_through_nginx_with_tls(tmp_path: Path, hub_process: HubProcess, unit: float) -> None:
    nginx = Nginx(tmp_path, [hub_process.port])
    try:
        nginx.wait(4 * unit)
        with livenb.connect(nginx.url, token=hub_process.token, cafile=nginx.cafile) as c:
            sub = c.subscribe("through.nginx")
            for i in range(500):
                c.publish("through.nginx", {"i": i})
            c.flush()
            sub.wait(500, timeout=unit)
            assert sub.frame["i"].tolist() == list(range(500))
        context = ssl.create_default_context(cafile=str(nginx.cafile))
        conn = http.client.HTTPSConnection("localhost", nginx.port, timeout=5, context=context)
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        assert response.status == 200 and b'"ok"' in response.read()
        conn.close()
    finally:
        nginx.close()


def test_clients_move_to_another_hub_when_theirs_dies(tmp_path: Path, unit: float) -> None:
    """Two hubs behind nginx; the one serving the client is SIGKILLed; the client reconnects
    through nginx to the other. These hubs keep their topics in memory, so the move is
    reported as an epoch_changed gap (with a shared Redis engine it is seamless)."""
    token = "shared-token-behind-nginx-0123456789"
    hubs = [HubProcess(token=token), HubProcess(token=token)]
    nginx = Nginx(tmp_path, [h.port for h in hubs])
    try:
        nginx.wait(4 * unit)
        with livenb.connect(nginx.url, token=token, cafile=nginx.cafile, reconnect_max_delay=0.5) as c:
            sub = c.subscribe("moving")
            c.publish("moving", {"n": 1}, ack=True)
            sub.wait(1, timeout=unit)
            first = next(h for h in hubs if h.epoch == sub.aio.epoch)
            other = next(h for h in hubs if h is not first)
            first.kill()
            deadline = time.monotonic() + 4 * unit
            while sub.aio.epoch != other.epoch:  # resubscribed on the other hub
                assert time.monotonic() < deadline, "the client did not move"
                time.sleep(0.05)
            c.publish("moving", {"n": 2}, ack=True, timeout=2 * unit)
            sub.wait(2, timeout=2 * unit)
            assert c.stats()["reconnects"] >= 1
            assert [g.reason for g in sub.gaps] == ["epoch_changed"]  # told, never silent
            assert sub.frame["n"].tolist() == [1, 2]
    finally:
        nginx.close()
        for hub in hubs:
            hub.close()
